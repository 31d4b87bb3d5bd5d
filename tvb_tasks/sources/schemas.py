"""Publishers' schemas of the production sources (``config/schemas/<id>.yaml``) and the checks made against them.

A schema file writes down, from the publisher's documentation (URLs in its ``docs``), what a live layer is:
typename, geometry name and type, CRS, field names and types, code lists and their meaning, licence and attribution,
the server's paging cap and default client knobs (page size, timeout, retries). ``service: geoplateforme`` pulls the
shared IGN Géoplateforme facts from ``_geoplateforme.yaml``. A field's ``values`` is its code list; ``codes:
{nomenclature, dimension}`` takes the code list from a land-use nomenclature CSV.

A territory source names its schema with ``schema: <id>``. Three checks use the files:

* :func:`check_mappings` (``tvb check-config --profile production``): the YAML ``columns``, ``value_maps``,
  ``filter`` and ``sort_by`` only name fields and values the schema has; :func:`check_overlays`: the
  ``landuse_overlays`` column and class keys likewise;
* :func:`check_layer` (at fetch, before the column mapping): every mapped field is there and every value of a
  coded field is in its code list — else a :class:`SourceError` naming source, field and value; a field flagged
  ``open_values: true`` (a descriptive label the publisher extends) only logs a warning for unlisted values;
* :func:`source_credits`: the licence and attribution of every source, for the release (STAC, report, web map).
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..config import PROJECT_ROOT, ConfigError, load_yaml, nomenclature_definition
from .errors import SourceError

log = logging.getLogger(__name__)

SCHEMA_DIR = PROJECT_ROOT / "config" / "schemas"
SHARED_SERVICES = {"geoplateforme": "_geoplateforme.yaml"}
KNOB_KEYS = ("page_size", "timeout_s", "max_retries", "backoff_s")
#: sources of these kinds must name a schema outside the default (sample) profile
LIVE_KINDS = ("wfs", "osm", "http")


@lru_cache(maxsize=64)
def load_schema(schema_id: str) -> dict:
    """The schema ``config/schemas/<id>.yaml`` with its shared service block expanded; :class:`ConfigError` if
    missing (naming the known ids)."""
    path = SCHEMA_DIR / f"{schema_id}.yaml"
    if schema_id.startswith("_") or not path.exists():
        known = ", ".join(sorted(p.stem for p in SCHEMA_DIR.glob("*.yaml") if not p.stem.startswith("_")))
        raise ConfigError(f"unknown source schema {schema_id!r} (known: {known})")
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    service = data.get("service")
    if isinstance(service, str):
        if service not in SHARED_SERVICES:
            raise ConfigError(f"schema {path}: unknown shared service {service!r}")
        data["service"] = load_yaml((SCHEMA_DIR / SHARED_SERVICES[service]).read_text(encoding="utf-8"))
    data.setdefault("fields", {})
    for field, spec in data["fields"].items():
        flag = (spec or {}).get("open_values", False)
        if not isinstance(flag, bool) or (flag and not (spec.get("values") or spec.get("codes"))):
            raise ConfigError(f"schema {path}: field {field!r}: open_values must be true / false on a field with "
                              f"'values' or 'codes' (got {flag!r})")
    data["path"] = str(path.relative_to(PROJECT_ROOT))
    return data


def open_values(schema: Mapping[str, Any], field: str) -> bool:
    """True when ``field``'s code list documents the known values but others are accepted (with a warning):
    descriptive labels the publisher extends (e.g. the ROE's ``LbTypeOuvrage`` with its sub-types)."""
    return bool((schema.get("fields", {}).get(field) or {}).get("open_values"))


@lru_cache(maxsize=32)
def _nomenclature_codes(nomenclature_id: str, dimension: str | None) -> frozenset[str]:
    _, definition = nomenclature_definition(nomenclature_id)
    path = PROJECT_ROOT / definition["codes_file"]
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return frozenset(r[definition["code_column"]].strip() for r in rows
                     if r.get(definition["code_column"]) and (dimension is None or r.get("dimension") == dimension))


def field_codes(schema: Mapping[str, Any], field: str) -> frozenset[str] | None:
    """The code list of ``field`` (strings), or None when the field is free text / numeric."""
    spec = schema.get("fields", {}).get(field) or {}
    if spec.get("values"):
        return frozenset(str(k) for k in spec["values"])
    codes = spec.get("codes")
    if codes:
        return _nomenclature_codes(codes["nomenclature"], codes.get("dimension"))
    return None


def knobs(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Default client knobs (page size, timeout, retries, backoff) of a schema's service."""
    return dict(((schema or {}).get("service") or {}).get("knobs") or {})


def effective_knobs(cfg: Any) -> dict[str, Any]:
    """Knobs of a source: its YAML values over the schema's defaults (``page_size`` capped at ``count_max``)."""
    opts = cfg.options() if hasattr(cfg, "options") else dict(cfg)
    schema = load_schema(opts["schema"]) if opts.get("schema") else None
    out = knobs(schema)
    out.update({k: opts[k] for k in KNOB_KEYS if opts.get(k) is not None})
    cap = ((schema or {}).get("service") or {}).get("count_max")
    if cap and out.get("page_size") and int(out["page_size"]) > int(cap):
        out["page_size"] = int(cap)
    return out


def _filter_properties(filters: Any) -> list[str]:
    if not filters:
        return []
    items = filters if isinstance(filters, list) else [filters]
    return [str(f["property"]) for f in items if isinstance(f, Mapping) and f.get("property")]


def check_mappings(name: str, cfg: Any) -> list[str]:
    """Errors of one source's YAML mapping against its schema (empty list: consistent)."""
    opts = cfg.options() if hasattr(cfg, "options") else dict(cfg)
    schema_id = opts.get("schema")
    if not schema_id:
        return []
    try:
        schema = load_schema(schema_id)
    except ConfigError as exc:
        return [f"source {name!r}: {exc}"]
    errors: list[str] = []
    fields = schema.get("fields") or {}
    if opts.get("kind") == "wfs" and schema.get("typename") and opts.get("typename") != schema["typename"]:
        errors.append(f"source {name!r}: typename {opts.get('typename')!r} is not the schema's "
                      f"{schema['typename']!r} ({schema['path']})")
    if opts.get("kind") != "wfs":
        return errors
    for target, field in (opts.get("columns") or {}).items():
        if field not in fields:
            errors.append(f"source {name!r}: column {target!r} ← field {field!r}: no field {field!r} in schema "
                          f"{schema_id} (fields: {', '.join(fields)})")
    for prop in _filter_properties(opts.get("filter")) + ([opts["sort_by"]] if opts.get("sort_by") else []):
        if prop not in fields:
            errors.append(f"source {name!r}: filter / sort_by field {prop!r} not in schema {schema_id}")
    source_field = dict(opts.get("columns") or {})          # target column → field of the layer
    for target, mapping in (opts.get("value_maps") or {}).items():
        field = source_field.get(target, target)
        codes = field_codes(schema, field)
        if codes is None:
            errors.append(f"source {name!r}: value_maps.{target} maps field {field!r}, which has no code list in "
                          f"schema {schema_id}")
            continue
        for value in mapping:
            if str(value) not in codes:
                errors.append(f"source {name!r}: value_maps.{target}: value {str(value)!r} of field {field!r} is not "
                              f"in the code list of schema {schema_id} ({', '.join(sorted(codes))})")
    return errors


def check_territory(territory: Any) -> list[str]:
    """Errors of every source mapping; outside the default profile a live source without a schema is an error."""
    errors: list[str] = []
    for name, cfg in territory.sources.items():
        schema_id = cfg.schema_id
        if territory.profile != "default" and cfg.kind in LIVE_KINDS and not schema_id:
            errors.append(f"source {name!r}: a {cfg.kind} source of profile {territory.profile!r} needs "
                          f"'schema: <id>' (config/schemas/)")
        errors.extend(check_mappings(name, cfg))
    errors.extend(check_overlays(territory))
    return errors


def check_overlays(territory: Any) -> list[str]:
    """Errors of the ``landuse_overlays``: the overlay ``column`` must be a field of its source's schema (through the
    source's ``columns`` when it is a renamed target), every ``classes`` key a value of that field's code list and
    (the source and the mapped land-use classes are checked when the territory loads). Each error names overlay,
    source, field and value."""
    errors: list[str] = []
    for i, overlay in enumerate(territory.landuse_overlays):
        where = f"landuse_overlays[{i}] (source {overlay.source!r})"
        cfg = territory.sources[overlay.source]     # known source and land-use classes: checked at load (config.py)
        schema_id = cfg.schema_id
        if not schema_id:
            continue
        schema = load_schema(schema_id)
        columns = dict(cfg.columns)
        field = columns.get(overlay.column, overlay.column)
        fields = schema.get("fields") or {}
        if overlay.column not in columns and overlay.column in columns.values():
            errors.append(f"{where}: column {overlay.column!r} is renamed by the source's columns (use its target "
                          f"{next(t for t, f in columns.items() if f == overlay.column)!r})")
            continue
        if field not in fields:
            errors.append(f"{where}: column {overlay.column!r} is not a field of schema {schema_id} "
                          f"(fields: {', '.join(fields)})")
            continue
        codes = field_codes(schema, field)
        if codes is None:
            errors.append(f"{where}: column {overlay.column!r} (field {field!r}) has no code list in schema "
                          f"{schema_id}: its classes cannot be checked")
            continue
        for value in overlay.classes:
            if str(value) not in codes:
                errors.append(f"{where}: class key {str(value)!r} of field {field!r} is not in the code list of "
                              f"schema {schema_id} ({', '.join(sorted(codes))})")
    return errors


def check_layer(gdf: Any, name: str, cfg: Any, *, url: str = "") -> None:
    """Check a fetched layer (before the column mapping) against the source's schema.

    Raises :class:`SourceError` naming the source, the field and the value when a mapped field is missing (e.g.
    renamed upstream) or a coded field holds a value outside its code list.
    """
    opts = cfg.options() if hasattr(cfg, "options") else dict(cfg)
    if not opts.get("schema"):
        return
    schema = load_schema(opts["schema"])
    if len(gdf) == 0:   # an empty GeoJSON answer carries no field names: nothing to check
        return
    where = f"source {name!r} ({url or schema.get('typename')})"
    wanted = set((opts.get("columns") or {}).values()) | set(_filter_properties(opts.get("filter")))
    missing = sorted(f for f in wanted if f not in gdf.columns)
    if missing:
        raise SourceError(f"{where}: field(s) {missing} of schema {opts['schema']} missing from the layer "
                          f"(renamed upstream?); fields served: {[c for c in gdf.columns if c != 'geometry']}")
    for field in schema.get("fields", {}):
        codes = field_codes(schema, field)
        if codes is None or field not in gdf.columns:
            continue
        values = gdf[field].dropna().astype(str).str.strip()
        unknown = sorted(set(values) - codes - {""})
        if unknown and open_values(schema, field):
            log.warning("%s: field %r holds value(s) %s outside the documented list of schema %s (open_values: "
                        "accepted)", where, field, unknown[:5], opts["schema"])
        elif unknown:
            raise SourceError(f"{where}: field {field!r} holds value(s) {unknown[:5]} not in the code list of "
                              f"schema {opts['schema']} ({schema['path']})")


def source_credits(territory: Any) -> list[dict[str, str]]:
    """Licence and attribution of each source with a schema (plain file sources of the sample are described in
    ``sample/call/SOURCES.md``): ``[{"source", "title", "publisher", "licence", "licence_url", "attribution"}]``."""
    out = []
    for name, cfg in territory.sources.items():
        schema_id = cfg.schema_id
        if not schema_id:
            continue
        schema = load_schema(schema_id)
        licence = schema.get("licence") or {}
        out.append({"source": name, "title": schema.get("title", schema_id), "publisher": schema.get("publisher", ""),
                    "licence": licence.get("name", ""), "licence_url": licence.get("url", ""),
                    "attribution": schema.get("attribution", "")})
    return out
