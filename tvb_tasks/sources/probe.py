"""``tvb sources probe``: compare what the live services publish with the schema files (``config/schemas/``).

For each WFS source of a territory that names a schema: ``GetCapabilities`` (is the typename offered, the default
CRS, the server's ``CountDefault`` against the documented paging cap) and ``DescribeFeatureType`` (field names and
XSD types against the schema's). Only reads capabilities and schemas — no feature is downloaded. A difference is
something the pipeline depends on (a missing typename or field, another type, another default CRS or cap); fields
the server has beyond the schema are listed as notes.
"""
from __future__ import annotations

from typing import Any

from .errors import SourceError
from .fetch import configured_url
from .http import HttpOptions, redact_url
from .schemas import effective_knobs, load_schema
from .wfs import NS, describe_feature_type, get_capabilities, parse_xml

#: XSD type (local name) → schema type
XSD_TYPES = {"string": "string", "int": "int", "integer": "int", "long": "int", "short": "int", "double": "double",
             "float": "double", "decimal": "double", "boolean": "boolean", "date": "date", "dateTime": "datetime"}


def xsd_fields(xsd: bytes) -> dict[str, str]:
    """``{field: type}`` of the feature type's non-geometry elements (types mapped through :data:`XSD_TYPES`)."""
    root = parse_xml(xsd, "DescribeFeatureType")
    out: dict[str, str] = {}
    for elem in root.iter(f"{{{NS['xsd']}}}element"):
        name, typ = elem.get("name"), elem.get("type") or ""
        if not name or elem.getparent() is root or "gml:" in typ or typ.endswith("PropertyType"):
            continue
        if not typ:   # <simpleType><restriction base="…"> inline
            base = next((r.get("base") for r in elem.iter(f"{{{NS['xsd']}}}restriction")), "") or ""
            typ = base
        local = typ.split(":")[-1]
        out[name] = XSD_TYPES.get(local, local)
    return out


def _crs_code(crs: str | None) -> str | None:
    if not crs:
        return None
    tail = crs.replace("::", ":").split(":")[-1]
    return f"EPSG:{tail}" if tail.isdigit() else crs


def probe_source(name: str, cfg: Any) -> dict:
    """One source's report: ``{"source", "schema", "url", "typename", "differences": [...], "notes": [...]}``."""
    opts = cfg.options()
    schema = load_schema(opts["schema"])
    service = schema.get("service") or {}
    url = configured_url(cfg, name) or service.get("url")
    report = {"source": name, "schema": opts["schema"], "url": redact_url(url or ""), "typename": cfg.typename,
              "differences": [], "notes": []}
    diff, notes = report["differences"], report["notes"]
    if not url:
        diff.append("no service URL: neither the source (url / connection) nor its schema names one")
        return report
    http = HttpOptions.from_source({**opts, **effective_knobs(cfg)})
    try:
        caps = get_capabilities(url, cfg.version or "2.0.0", opts=http, use_cache=False)
    except SourceError as exc:
        diff.append(f"GetCapabilities failed: {exc}")
        return report
    if schema["typename"] not in caps.typenames:
        diff.append(f"typename {schema['typename']!r} not offered (layers: {', '.join(caps.typenames[:8])}"
                    f"{'…' if len(caps.typenames) > 8 else ''})")
        return report
    default_crs = _crs_code(caps.default_crs.get(schema["typename"]))
    if service.get("default_crs") and default_crs and default_crs != service["default_crs"]:
        diff.append(f"default CRS {default_crs} (schema: {service['default_crs']})")
    cap = service.get("count_max")
    if cap and caps.count_default and int(caps.count_default) != int(cap):
        diff.append(f"paging cap CountDefault={caps.count_default} (schema count_max: {cap})")
    elif cap and not caps.count_default:
        notes.append(f"server announces no CountDefault (schema count_max: {cap})")
    xsd, _, geom = describe_feature_type(url, schema["typename"], caps.version, opts=http, session=None)
    if xsd is None:
        diff.append("DescribeFeatureType failed")
        return report
    live = xsd_fields(xsd)
    want_geom = (schema.get("geometry") or {}).get("name")
    if want_geom and geom and geom != want_geom:
        diff.append(f"geometry field {geom!r} (schema: {want_geom!r})")
    for field, spec in (schema.get("fields") or {}).items():
        if field not in live:
            diff.append(f"field {field!r} missing (schema type {spec.get('type')})")
        elif spec.get("type") and live[field] != spec["type"]:
            diff.append(f"field {field!r} is {live[field]} (schema: {spec['type']})")
    extra = sorted(set(live) - set(schema.get("fields") or {}))
    if extra:
        notes.append(f"fields not in the schema: {', '.join(extra)}")
    return report


def probe_territory(territory: Any, only: str | None = None) -> list[dict]:
    """Probe every WFS source with a schema (or only ``only``); raises :class:`SourceError` for an unknown name."""
    names = [n for n, s in territory.sources.items() if s.kind == "wfs" and s.schema_id]
    if only:
        if only not in names:
            raise SourceError(f"territory {territory.id}: no WFS source {only!r} with a schema (have: {names})")
        names = [only]
    return [probe_source(n, territory.sources[n]) for n in names]


def format_report(reports: list[dict]) -> str:
    """Readable lines: one header per source, then its differences (``!``) and notes (``·``)."""
    lines = []
    for r in reports:
        status = "OK" if not r["differences"] else f"{len(r['differences'])} difference(s)"
        lines.append(f"{r['source']:<16} {r['typename']} @ {r['url']} [schema {r['schema']}]: {status}")
        lines += [f"    ! {d}" for d in r["differences"]] + [f"    · {n}" for n in r["notes"]]
    return "\n".join(lines)
