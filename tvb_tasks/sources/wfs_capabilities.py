"""What a WFS server says about itself, for the fetcher (:mod:`.wfs`): ``GetCapabilities`` (cached a few minutes
per URL and version) and ``DescribeFeatureType``; the layer name and output format chosen from them."""
from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests
from lxml import etree

from .errors import SourceError
from .http import HttpOptions, redact_url, request
from .wfs_ogc import NS, _local, parse_xml, raise_for_exception

log = logging.getLogger("tvb_tasks.sources.wfs")

SUPPORTED_VERSIONS = ("2.0.0", "1.1.0")


# --- capabilities ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WfsCapabilities:
    """What a WFS server says about itself (the parts the fetcher uses)."""

    version: str
    typenames: tuple[str, ...]
    output_formats: tuple[str, ...]
    count_default: int | None
    implements_paging: bool | None
    implements_sorting: bool | None
    default_crs: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None


def _constraint_values(root: etree._Element) -> dict[str, str]:
    """``{name: value}`` of every ``Constraint`` (ows DefaultValue, Value or AllowedValues/Value)."""
    out = {}
    for c in root.iter():
        if _local(c.tag) != "Constraint" or not c.get("name"):
            continue
        for child in c.iter():
            if _local(child.tag) in ("DefaultValue", "Value") and child.text and child.text.strip():
                out[c.get("name")] = child.text.strip()
                break
    return out


def _bool(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() in ("true", "1", "yes")


_CAPS_CACHE: dict[tuple[str, str], tuple[float, WfsCapabilities]] = {}
CAPS_TTL_S = 600.0


def get_capabilities(url: str, version: str, *, opts: HttpOptions, session: requests.Session | None = None,
                     use_cache: bool = True) -> WfsCapabilities:
    """Fetch and parse ``GetCapabilities``; negotiates down to 1.1.0 when the server does not speak ``version``.

    Parsed capabilities are kept in memory for ``CAPS_TTL_S`` seconds per (URL, version): a territory's dozen
    layers on one server (the IGN document is several MB) cost one request.
    """
    key = (url, version)
    cached = _CAPS_CACHE.get(key)
    if use_cache and cached and time.monotonic() - cached[0] < CAPS_TTL_S:
        return cached[1]
    caps = _get_capabilities(url, version, opts=opts, session=session)
    _CAPS_CACHE[key] = (time.monotonic(), caps)
    return caps


def _get_capabilities(url: str, version: str, *, opts: HttpOptions, session: requests.Session | None
                      ) -> WfsCapabilities:
    from owslib.wfs import WebFeatureService

    what = redact_url(url)
    if version not in SUPPORTED_VERSIONS:
        raise SourceError(f"WFS {what}: unsupported version {version!r} (use one of {SUPPORTED_VERSIONS})")
    accept = ",".join([version] + [v for v in SUPPORTED_VERSIONS if v != version])
    resp = request("GET", url, opts=opts, session=session, what=f"WFS {what} GetCapabilities", params={
        "SERVICE": "WFS", "REQUEST": "GetCapabilities", "VERSION": version, "ACCEPTVERSIONS": accept})
    raise_for_exception(resp, what, None)
    root = parse_xml(resp.content, f"WFS {what} GetCapabilities")
    if _local(root.tag) != "WFS_Capabilities":
        raise SourceError(f"WFS {what}: not a WFS capabilities document (root <{_local(root.tag)}>)")
    served = root.get("version") or version
    if served not in SUPPORTED_VERSIONS:
        raise SourceError(f"WFS {what}: server speaks WFS {served}, only {SUPPORTED_VERSIONS} are supported")
    if served != version:
        log.warning("WFS %s: server answered WFS %s to a %s request; using %s", what, served, version, served)
    try:
        wfs = WebFeatureService(url, version=served, xml=etree.tostring(root))
    except Exception as exc:  # noqa: BLE001 - owslib raises many types on odd documents
        raise SourceError(f"WFS {what}: unreadable capabilities ({type(exc).__name__}: {exc})") from None
    formats: list[str] = []
    for op in getattr(wfs, "operations", []):
        if op.name == "GetFeature":
            formats += list((op.parameters.get("outputFormat") or {}).get("values") or [])
    for elem in root.iter():
        if _local(elem.tag) in ("Format", "OutputFormat") and elem.text and elem.text.strip() not in formats:
            formats.append(elem.text.strip())
    constraints = _constraint_values(root)
    cap = constraints.get("CountDefault") or constraints.get("DefaultMaxFeatures")
    default_crs = {}
    for name, meta in wfs.contents.items():
        crs = [str(c.getcodeurn()) for c in (getattr(meta, "crsOptions", None) or [])]
        if crs:
            default_crs[name] = crs[0]
    title = getattr(getattr(wfs, "identification", None), "title", None)
    return WfsCapabilities(
        version=served, typenames=tuple(wfs.contents), output_formats=tuple(formats),
        count_default=int(cap) if cap and cap.isdigit() else None,
        implements_paging=_bool(constraints.get("ImplementsResultPaging")),
        implements_sorting=_bool(constraints.get("ImplementsSorting")),
        default_crs=default_crs, title=title)


def resolve_typename(caps: WfsCapabilities, typename: str, what: str) -> str:
    """The server's spelling of ``typename`` (a unique local-name match is accepted), else SourceError."""
    if typename in caps.typenames:
        return typename
    local = typename.split(":")[-1]
    matches = [t for t in caps.typenames if t.split(":")[-1] == local]
    if len(matches) == 1:
        return matches[0]
    close = difflib.get_close_matches(typename, caps.typenames, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(caps.typenames)} layers offered)"
    raise SourceError(f"WFS {what}: no layer {typename!r} in the capabilities{hint}")


def choose_output_format(caps: WfsCapabilities, wanted: str | None = None) -> tuple[str | None, str]:
    """``(OUTPUTFORMAT value or None for the server default, "geojson" | "gml")``: GeoJSON when offered."""
    if wanted:
        return wanted, ("geojson" if "json" in wanted.lower() else "gml")
    for f in caps.output_formats:
        low = f.lower().replace(" ", "")
        if low in ("application/json", "application/geo+json", "geojson", "json") or "subtype=geojson" in low:
            return f, "geojson"
    prefs = (("application/gml+xml;version=3.2", "gml/3.2.1") if caps.version.startswith("2")
             else ("gml/3.1.1",))
    for pref in prefs:
        for f in caps.output_formats:
            if pref in f.lower().replace(" ", ""):
                return f, "gml"
    return None, "gml"


def describe_feature_type(url: str, typename: str, version: str, *, opts: HttpOptions,
                          session: requests.Session | None) -> tuple[bytes | None, list[str], str | None]:
    """``(XSD bytes, property names, geometry property name)``; ``(None, [], None)`` when the server fails."""
    what = redact_url(url)
    tn = "TYPENAMES" if version.startswith("2") else "TYPENAME"
    try:
        resp = request("GET", url, opts=opts, session=session, what=f"WFS {what} DescribeFeatureType",
                       params={"SERVICE": "WFS", "REQUEST": "DescribeFeatureType", "VERSION": version, tn: typename})
        raise_for_exception(resp, what, typename)
        root = parse_xml(resp.content, f"WFS {what} DescribeFeatureType")
    except SourceError as exc:
        log.warning("%s; reading without a schema", exc)
        return None, [], None
    props, geom = [], None
    for elem in root.iter(f"{{{NS['xsd']}}}element"):
        name, typ = elem.get("name"), elem.get("type") or ""
        if not name or elem.getparent() is root:
            continue
        if "gml:" in typ or typ.endswith("PropertyType"):
            geom = geom or name
        else:
            props.append(name)
    return resp.content, props, geom
