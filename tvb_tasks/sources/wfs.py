"""OGC WFS fetcher (2.0.0 by default, 1.1.0 for servers that only speak it, e.g. QGIS Server): complete reads or errors.

One layer is read as follows:

1. ``GetCapabilities`` (parsed with owslib after a safe parse: lxml with ``resolve_entities=False``,
   ``no_network=True``, no DTD loading; entity declarations are refused): the version the server really speaks, the
   layer's existence, output formats, ``CountDefault`` / ``DefaultMaxFeatures`` (its per-response cap) and
   ``ImplementsSorting``;
2. ``DescribeFeatureType``: property names (stable sort key) and, for GML, the XSD given to GDAL so every page is
   typed the same;
3. ``GetFeature resultType=hits``: ``numberMatched`` (``numberOfFeatures`` in 1.1.0) when the server gives it;
4. paging with ``STARTINDEX`` / ``COUNT`` (``MAXFEATURES`` in 1.1.0) and ``SORTBY`` a stable key when the server
   sorts, GeoJSON when offered (GML otherwise, read with pyogrio / GDAL), until an **empty page**.

Completeness rules (a violation is a :class:`SourceError`, never partial data):

* features read == ``numberMatched`` reported by the pages when they report one, and == the ``hits`` count unless
  that count equals the server's cap (MapServer, for one, caps ``hits`` at ``wfs_maxfeatures``: such a count is a
  lower bound, never accepted as the total);
* a page shorter than asked means a capped response, not the end: paging goes on until a page comes back empty;
* a page identical to an earlier one means the server ignores ``STARTINDEX``: error;
* an OGC ``ExceptionReport`` (any HTTP status, any content type) is an error naming server, layer and message.

Work in projected coordinates (EPSG:2154): a bbox is ``(minx, miny, maxx, maxy, crs)`` in x/y (easting, or
longitude, first); it is sent in the CRS's authority axis order (lat/lon for EPSG:4326) with a URN ``srsName``.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import requests
from lxml import etree

from .errors import SourceError
from .http import DEFAULT_DEADLINE_S, HttpOptions, new_session, redact_url, request
from .progress import Progress
from .snapshot import content_hash

log = logging.getLogger("tvb_tasks.sources.wfs")

SUPPORTED_VERSIONS = ("2.0.0", "1.1.0")
DEFAULT_PAGE_SIZE = 1000
ID_CANDIDATES = ("id", "cleabs", "gid", "fid", "objectid", "ogc_fid", "identifiant", "code", "cd_obstecoul")
NS = {
    "wfs20": "http://www.opengis.net/wfs/2.0", "wfs11": "http://www.opengis.net/wfs",
    "ows11": "http://www.opengis.net/ows/1.1", "ows10": "http://www.opengis.net/ows",
    "fes": "http://www.opengis.net/fes/2.0", "ogc": "http://www.opengis.net/ogc",
    "gml32": "http://www.opengis.net/gml/3.2", "gml": "http://www.opengis.net/gml",
    "xsd": "http://www.w3.org/2001/XMLSchema",
}


# --- safe XML -----------------------------------------------------------------------------------------------------
def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True)


def parse_xml(content: bytes, what: str) -> etree._Element:
    """Parse untrusted XML: no external entities, no network, no DTD; entity declarations are refused."""
    try:
        root = etree.fromstring(content, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{what}: malformed XML ({exc})") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and list(dtd.iterentities()):
        raise SourceError(f"{what}: XML with entity declarations refused")
    return root


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def sniff_root(content: bytes) -> tuple[str, dict[str, str]] | None:
    """Local name and attributes of the root element of an XML document, or None when it is not XML."""
    head = content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return None
    try:
        for _event, elem in etree.iterparse(io.BytesIO(content), events=("start",), resolve_entities=False,
                                            no_network=True, load_dtd=False, huge_tree=False):
            return _local(elem.tag), {_local(k): v for k, v in elem.attrib.items()}
    except etree.XMLSyntaxError:
        return None
    return None


def exception_message(content: bytes, what: str) -> str | None:
    """The text of an OGC ExceptionReport / ServiceExceptionReport, or None when ``content`` is not one."""
    root_info = sniff_root(content)
    if not root_info or root_info[0] not in ("ExceptionReport", "ServiceExceptionReport"):
        return None
    root = parse_xml(content, what)
    parts = []
    for exc in root.iter():
        if _local(exc.tag) not in ("Exception", "ServiceException"):
            continue
        code = exc.get("exceptionCode") or exc.get("code")
        locator = exc.get("locator")
        texts = [t.strip() for t in exc.itertext() if t and t.strip()]
        label = code or "exception"
        if locator:
            label += f" (locator {locator})"
        parts.append(f"{label}: {' '.join(texts) or 'no message'}")
    return "; ".join(parts) or "empty exception report"


def raise_for_exception(resp: requests.Response, what: str, typename: str | None) -> None:
    """Raise :class:`SourceError` for an ExceptionReport (even with HTTP 200) or an HTTP error status."""
    layer = f" layer {typename}" if typename else ""
    message = exception_message(resp.content, what)
    if message is not None:
        raise SourceError(f"WFS {what}{layer}: server exception (HTTP {resp.status_code}): {message}")
    if resp.status_code >= 400:
        snippet = re.sub(r"\s+", " ", resp.text[:300]).strip()
        raise SourceError(f"WFS {what}{layer}: HTTP {resp.status_code} {resp.reason or ''}: {snippet}")


# --- CRS / bbox / filter ------------------------------------------------------------------------------------------
def crs_urn(crs: str) -> str:
    """``EPSG:2154`` → ``urn:ogc:def:crs:EPSG::2154`` (URNs and other strings are returned as given)."""
    m = re.fullmatch(r"(?i)epsg:(\d+)", crs.strip())
    return f"urn:ogc:def:crs:EPSG::{m.group(1)}" if m else crs.strip()


def _north_first(crs: str) -> bool:
    from pyproj import CRS

    axes = CRS.from_user_input(crs).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


def bbox_corners(bbox: Sequence[Any]) -> tuple[tuple[float, float], tuple[float, float], str]:
    """Lower / upper corners in the CRS's authority axis order and the CRS URN, from ``(minx, miny, maxx, maxy, crs)``."""
    if len(bbox) != 5:
        raise ValueError(f"bbox must be (minx, miny, maxx, maxy, crs), got {bbox!r}")
    minx, miny, maxx, maxy = (float(v) for v in bbox[:4])
    crs = str(bbox[4])
    if not (minx < maxx and miny < maxy):
        raise ValueError(f"empty bbox {bbox!r}")
    if _north_first(crs):
        return (miny, minx), (maxy, maxx), crs_urn(crs)
    return (minx, miny), (maxx, maxy), crs_urn(crs)


def bbox_param(bbox: Sequence[Any]) -> str:
    """KVP ``BBOX`` value in the CRS's axis order, e.g. ``'680000,7030000,700000,7040000,urn:ogc:def:crs:EPSG::2154'``."""
    lower, upper, urn = bbox_corners(bbox)
    return ",".join(f"{v:.10g}" for v in (*lower, *upper)) + f",{urn}"


def _filters_list(filters: Any) -> list[dict]:
    if filters is None:
        return []
    items = [filters] if isinstance(filters, Mapping) else list(filters)
    for f in items:
        if not isinstance(f, Mapping) or "property" not in f or "value" not in f:
            raise ValueError(f"a WFS filter is {{property: NAME, value: VALUE, op: equal|like}}, got {f!r}")
        if f.get("op", "equal") not in ("equal", "like"):
            raise ValueError(f"WFS filter op must be 'equal' or 'like' ('*' wildcard), got {f.get('op')!r}")
    return [dict(f) for f in items]


def build_filter(version: str, filters: Any = None, bbox: Sequence[Any] | None = None,
                 geometry_name: str | None = None) -> str:
    """An FES 2.0 (WFS 2.0) or OGC Filter 1.1 (WFS 1.1) ``<Filter>``: property tests AND a BBOX.

    Each filter is ``{property, value, op}`` with ``op`` ``equal`` (default) or ``like`` (``*`` any characters,
    ``.`` one character, ``!`` escape).
    """
    v2 = version.startswith("2")
    fes = NS["fes"] if v2 else NS["ogc"]
    gml = NS["gml32"] if v2 else NS["gml"]
    ref = "ValueReference" if v2 else "PropertyName"
    E = lambda ns, tag, **kw: etree.Element(f"{{{ns}}}{tag}", nsmap={"fes" if v2 else "ogc": fes, "gml": gml}, **kw)  # noqa: E731
    predicates = []
    for f in _filters_list(filters):
        if f.get("op", "equal") == "like":
            test = E(fes, "PropertyIsLike", wildCard="*", singleChar=".", escapeChar="!")
        else:
            test = E(fes, "PropertyIsEqualTo")
        etree.SubElement(test, f"{{{fes}}}{ref}").text = str(f["property"])
        etree.SubElement(test, f"{{{fes}}}Literal").text = str(f["value"])
        predicates.append(test)
    if bbox is not None:
        lower, upper, urn = bbox_corners(bbox)
        box = E(fes, "BBOX")
        if geometry_name:
            etree.SubElement(box, f"{{{fes}}}{ref}").text = geometry_name
        env = etree.SubElement(box, f"{{{gml}}}Envelope", srsName=urn)
        etree.SubElement(env, f"{{{gml}}}lowerCorner").text = f"{lower[0]:.10g} {lower[1]:.10g}"
        etree.SubElement(env, f"{{{gml}}}upperCorner").text = f"{upper[0]:.10g} {upper[1]:.10g}"
        predicates.append(box)
    root = E(fes, "Filter")
    if len(predicates) == 1:
        root.append(predicates[0])
    elif predicates:
        both = etree.SubElement(root, f"{{{fes}}}And")
        both.extend(predicates)
    return etree.tostring(root, encoding="unicode")


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


# --- reading pages ------------------------------------------------------------------------------------------------
def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class _Page:
    n: int
    number_matched: int | None
    number_returned: int | None
    digest: str
    gdf: gpd.GeoDataFrame | None = None
    crs: str | None = None          # GeoJSON "crs" member, when the server writes one
    lines: list[str] | None = None  # GeoJSON features, one JSON text each, until appended to the sequence file


def _read_geojson_page(content: bytes, what: str) -> _Page:
    """Parse a GeoJSON page: counts, digest and its features as JSON texts (ids dropped)."""
    try:
        doc = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        snippet = content[:200].decode("utf-8", "replace")
        raise SourceError(f"WFS {what}: response is neither GeoJSON nor an exception report ({exc}): "
                          f"{snippet!r}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise SourceError(f"WFS {what}: GeoJSON response is not a FeatureCollection")
    features = doc.get("features") or []
    for f in features:
        f.pop("id", None)          # identifiers differ between formats and servers: keep only properties
    matched = _int_or_none(doc.get("numberMatched", doc.get("totalFeatures")))
    lines = [json.dumps(f, sort_keys=True, ensure_ascii=False) for f in features]
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    crs = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    return _Page(len(features), matched, _int_or_none(doc.get("numberReturned")), digest, crs=crs, lines=lines)


def _read_gml_page(content: bytes, what: str, tmpdir: Path, index: int, xsd: Path | None) -> _Page:
    root = sniff_root(content)
    if root is None or root[0] not in ("FeatureCollection",):
        snippet = content[:200].decode("utf-8", "replace")
        raise SourceError(f"WFS {what}: response is not a GML FeatureCollection: {snippet!r}")
    attrs = root[1]
    matched = _int_or_none(attrs.get("numberMatched"))      # WFS 1.1 numberOfFeatures counts the page only
    returned = _int_or_none(attrs.get("numberReturned", attrs.get("numberOfFeatures")))
    if returned == 0:
        return _Page(0, matched, 0, "empty")
    path = tmpdir / f"page_{index:06d}.gml"
    path.write_bytes(content)
    opts = {"EXPOSE_GML_ID": "NO", "DOWNLOAD_SCHEMA": "NO"}
    if xsd is not None:
        opts["XSD"] = str(xsd)
    try:
        layers = pyogrio.list_layers(path)
        gdf = pyogrio.read_dataframe(path, layer=layers[0][0], **opts) if len(layers) else None
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise SourceError(f"WFS {what}: GML page {index} unreadable by GDAL ({exc})") from None
    finally:
        path.unlink(missing_ok=True)
        path.with_suffix(".gfs").unlink(missing_ok=True)
    n = 0 if gdf is None else len(gdf)
    if returned is not None and n != returned:
        raise SourceError(f"WFS {what}: GML page {index} says numberReturned={returned} but {n} features were read")
    digest = content_hash(gdf) if n else "empty"
    return _Page(n, matched, returned, digest, gdf=gdf)


@dataclass
class WfsResult:
    """A complete layer and how it was read. ``number_matched`` is the server's total when it gave a reliable one."""

    gdf: gpd.GeoDataFrame
    url: str                     # without secrets
    typename: str
    version: str
    output_format: str | None
    number_matched: int | None
    hits: int | None
    server_cap: int | None
    cap_detected: bool
    completeness: str            # "number_matched" (checked against the server's count) or "exhausted"
    pages: int
    bytes: int
    duration_s: float
    sort_by: str | None
    params: dict

    def summary(self) -> dict:
        return {"features": int(len(self.gdf)), "number_matched": self.number_matched, "hits": self.hits,
                "server_cap": self.server_cap, "cap_detected": self.cap_detected, "completeness": self.completeness,
                "pages": self.pages, "bytes": self.bytes, "duration_s": round(self.duration_s, 3),
                "version": self.version, "output_format": self.output_format, "sort_by": self.sort_by,
                "url": self.url, "typename": self.typename}


def _hits(url: str, base: dict, what: str, typename: str, version: str, opts: HttpOptions,
          session: requests.Session) -> int | None:
    resp = request("GET", url, opts=opts, session=session, what=f"WFS {what} {typename} hits",
                   params={**base, "RESULTTYPE": "hits"})
    raise_for_exception(resp, what, typename)
    info = sniff_root(resp.content)
    if not info or info[0] != "FeatureCollection":
        log.warning("WFS %s %s: unexpected resultType=hits answer; no count", what, typename)
        return None
    key = "numberMatched" if version.startswith("2") else "numberOfFeatures"
    return _int_or_none(info[1].get(key))


def read_wfs(url: str, typename: str, *, version: str = "2.0.0", bbox: Sequence[Any] | None = None,
             srs_name: str | None = None, filters: Any = None, page_size: int | None = None,
             sort_by: str | None = None, output_format: str | None = None, geometry_name: str | None = None,
             opts: HttpOptions | None = None, session: requests.Session | None = None,
             progress_every_s: float = 5.0, max_pages: int = 100_000) -> WfsResult:
    """Read a whole WFS layer (see the module docstring for the rules); raises :class:`SourceError` otherwise.

    ``bbox`` is ``(minx, miny, maxx, maxy, crs)``; ``srs_name`` the output CRS (default: the bbox CRS, else the
    layer's default); ``filters`` a ``{property, value}`` mapping or a list of them (ANDed, with the bbox);
    ``page_size`` features per request (default: the server's ``CountDefault``, else 1000); ``sort_by`` a property
    (default: an id-like property when the server sorts). The result is in ``srs_name``.
    """
    opts = (opts or HttpOptions()).started()       # one overall deadline for every request of this read
    session = session or new_session()
    what = redact_url(url)
    started = time.monotonic()
    caps = get_capabilities(url, version, opts=opts, session=session)
    version = caps.version
    typename = resolve_typename(caps, typename, what)
    fmt, kind = choose_output_format(caps, output_format)
    xsd_bytes, props, geom_prop = describe_feature_type(url, typename, version, opts=opts, session=session)
    srs = srs_name or (str(bbox[4]) if bbox is not None else None) or caps.default_crs.get(typename)
    v2 = version.startswith("2")

    base: dict[str, Any] = {"SERVICE": "WFS", "REQUEST": "GetFeature", "VERSION": version,
                            ("TYPENAMES" if v2 else "TYPENAME"): typename}
    if srs:
        base["SRSNAME"] = crs_urn(srs)
    if filters:
        base["FILTER"] = build_filter(version, filters, bbox, geometry_name or geom_prop)
    elif bbox is not None:
        base["BBOX"] = bbox_param(bbox)

    if sort_by is None and caps.implements_sorting is not False:
        lowered = {p.lower(): p for p in props}
        sort_by = next((lowered[c] for c in ID_CANDIDATES if c in lowered), None)
    if sort_by and caps.implements_sorting is False:
        log.warning("WFS %s %s: server does not sort; paging without SORTBY=%s", what, typename, sort_by)
        sort_by = None
    if not sort_by:
        log.warning("WFS %s %s: no stable sort key; relying on the server's natural order (checked by page "
                    "digests and counts)", what, typename)

    hits = _hits(url, base, what, typename, version, opts, session)
    cap = caps.count_default
    hits_suspect = hits is not None and cap is not None and hits == cap
    if hits_suspect:
        log.warning("WFS %s %s: resultType=hits says %d, exactly the server's cap: treated as a lower bound",
                    what, typename, hits)
    size = int(page_size or cap or DEFAULT_PAGE_SIZE)
    if size <= 0:
        raise ValueError("page_size must be positive")
    page_params = dict(base)
    if fmt:
        page_params["OUTPUTFORMAT"] = fmt
    if sort_by:
        page_params["SORTBY"] = f"{sort_by} ASC"
    progress = Progress(log, f"WFS {what} {typename}", total=None if hits_suspect else hits,
                        every_s=progress_every_s)

    pages: list[_Page] = []
    digests: dict[str, int] = {}
    reported: int | None = None
    cap_detected, observed_cap, previous_short, start = False, None, None, 0
    with tempfile.TemporaryDirectory(prefix="tvb-wfs-") as tmp:
        tmpdir = Path(tmp)
        xsd = None
        if kind == "gml" and xsd_bytes:
            xsd = tmpdir / "schema.xsd"
            xsd.write_bytes(xsd_bytes)
        while True:
            if len(pages) >= max_pages:
                raise SourceError(f"WFS {what} {typename}: more than {max_pages} pages; giving up")
            params = {**page_params, "STARTINDEX": start, ("COUNT" if v2 else "MAXFEATURES"): size}
            resp = request("GET", url, opts=opts, session=session, params=params,
                           what=f"WFS {what} {typename} page {len(pages) + 1}")
            raise_for_exception(resp, what, typename)
            if kind == "geojson":
                page = _read_geojson_page(resp.content, f"{what} {typename}")
            else:
                page = _read_gml_page(resp.content, f"{what} {typename}", tmpdir, len(pages) + 1, xsd)
            progress.update(features=page.n, pages=1, nbytes=len(resp.content))
            if page.n == 0:
                if reported is None and page.number_matched:
                    reported = page.number_matched
                break
            if page.number_matched is not None:
                reported = page.number_matched
            if page.digest in digests:
                if hits is not None and not hits_suspect and start == hits:
                    log.warning("WFS %s %s: the server ignores STARTINDEX, but the %d features it counted were "
                                "all read", what, typename, hits)
                    break
                raise SourceError(
                    f"WFS {what} {typename}: page {len(pages) + 1} (STARTINDEX={start}) repeats page "
                    f"{digests[page.digest]}: the server ignores STARTINDEX, the layer cannot be read completely")
            digests[page.digest] = len(pages) + 1
            if page.lines:
                with open(tmpdir / "features.geojsonl", "a", encoding="utf-8") as sink:
                    sink.write("\n".join(page.lines) + "\n")
                page.lines = None
            pages.append(page)
            if previous_short is not None and not cap_detected:
                # a short page followed by more features: the server caps its responses
                cap_detected, observed_cap = True, previous_short
                log.warning("WFS %s %s: the server returned %d features for %s=%d and more followed: it caps "
                            "its responses; paging on until an empty page", what, typename, previous_short,
                            "COUNT" if v2 else "MAXFEATURES", size)
            previous_short = page.n if page.n < size else None
            start += page.n
        progress.done()
        total = start
        gdf = _assemble(pages, kind, srs, tmpdir, what, typename)

    if cap_detected and hits is not None and hits == observed_cap:
        hits_suspect = True
    completeness = "exhausted"
    if reported is not None:
        if total != reported:
            raise SourceError(f"WFS {what} {typename}: incomplete read: {total} features read, server reported "
                              f"numberMatched={reported}")
        completeness = "number_matched"
    if hits is not None:
        if hits_suspect and total >= hits:
            log.warning("WFS %s %s: resultType=hits (%d) was capped; %d features read by paging to the end",
                        what, typename, hits, total)
        elif total != hits:
            raise SourceError(f"WFS {what} {typename}: incomplete read: {total} features read, resultType=hits "
                              f"gave {hits}")
        else:
            completeness = "number_matched"
    number_matched = reported if reported is not None else (hits if hits is not None and hits == total else None)
    log.info("WFS %s %s: %d features complete (%s), %d pages", what, typename, total, completeness, len(pages))
    metadata_params = {k: v for k, v in base.items() if k not in ("SERVICE", "REQUEST")}
    metadata_params.update({"page_size": size, "sort_by": sort_by, "output_format": fmt})
    return WfsResult(gdf=gdf, url=what, typename=typename, version=version, output_format=fmt,
                     number_matched=number_matched, hits=hits, server_cap=cap if cap else observed_cap,
                     cap_detected=cap_detected, completeness=completeness, pages=len(pages),
                     bytes=progress.bytes, duration_s=time.monotonic() - started, sort_by=sort_by,
                     params=metadata_params)


def _assemble(pages: list[_Page], kind: str, srs: str | None, tmpdir: Path, what: str,
              typename: str) -> gpd.GeoDataFrame:
    """One GeoDataFrame from the pages, in ``srs`` (reprojected if the server answered in another CRS)."""
    if not any(p.n for p in pages):
        return gpd.GeoDataFrame(geometry=[], crs=srs)
    if kind == "geojson":
        # one read of the whole sequence: one type inference for every column, whatever the page boundaries
        try:
            gdf = pyogrio.read_dataframe(f"GeoJSONSeq:{tmpdir / 'features.geojsonl'}")
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise SourceError(f"WFS {what} {typename}: GeoJSON unreadable by GDAL ({exc})") from None
        served = next((p.crs for p in pages if p.crs), None) or srs
        gdf = gdf.set_crs(served, allow_override=True) if served else gdf.set_crs(None, allow_override=True)
    else:
        frames = [p.gdf for p in pages if p.gdf is not None and len(p.gdf)]
        gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry=frames[0].geometry.name,
                               crs=frames[0].crs)
    if srs:
        if gdf.crs is None:
            gdf = gdf.set_crs(srs)
        elif not gdf.crs.equals(srs):
            log.warning("WFS %s %s: server answered in %s, not %s; reprojecting", what, typename,
                        gdf.crs.to_string(), srs)
            gdf = gdf.to_crs(srs)
    return gdf


def write_layer(gdf: gpd.GeoDataFrame, out_file: str | Path, layer: str | None = None) -> Path:
    """Write a layer as GeoParquet (``.parquet``/``.geoparquet``), GeoPackage (``.gpkg``) or GeoJSON."""
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".geoparquet"):
        gdf.to_parquet(out, index=False, compression="zstd", write_covering_bbox=True)
    elif suffix == ".gpkg":
        gdf.to_file(out, layer=layer or out.stem, driver="GPKG")
    elif suffix in (".geojson", ".json"):
        gdf.to_file(out, driver="GeoJSON")
    else:
        raise ValueError(f"{out}: unsupported output format (use .parquet, .gpkg or .geojson)")
    return out


def fetch_wfs_to_file(url: str, typename: str, out_file: str | Path, *, bbox: Sequence[Any] | None = None,
                      version: str = "2.0.0", page_size: int | None = None, srs_name: str | None = None,
                      filters: Any = None, sort_by: str | None = None, output_format: str | None = None,
                      auth: Any = None, headers: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                      max_retries: int = 4, backoff_s: float = 1.0,
                      deadline_s: float | None = DEFAULT_DEADLINE_S) -> dict:
    """Read a complete WFS layer and write it to ``out_file`` (GeoParquet, GeoPackage or GeoJSON by extension).

    ``bbox`` is ``(minx, miny, maxx, maxy, crs)`` in x/y order. Returns ``{"features": n, "number_matched": m or
    None, "hits", "pages", "bytes", "duration_s", "completeness", "server_cap", "cap_detected", "version",
    "output_format", "sort_by", "url" (no secrets), "typename", "out_file", "crs"}``. Raises :class:`SourceError`
    (with the server's message) on an exception report or an incomplete read; nothing is written then.
    ``timeout_s`` is the connect/read timeout, ``deadline_s`` the overall limit of the whole read (seconds).
    """
    opts = HttpOptions(timeout_s=timeout_s, connect_timeout_s=min(15.0, timeout_s), max_retries=max_retries,
                       backoff_s=backoff_s, auth=auth, headers=dict(headers or {}), deadline_s=deadline_s)
    result = read_wfs(url, typename, version=version, bbox=bbox, srs_name=srs_name, filters=filters,
                      page_size=page_size, sort_by=sort_by, output_format=output_format, opts=opts)
    out = write_layer(result.gdf, out_file, layer=result.typename.split(":")[-1])
    crs = result.gdf.crs.to_string() if result.gdf.crs is not None else None
    return {**result.summary(), "out_file": str(out), "crs": crs}
