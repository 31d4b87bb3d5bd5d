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

Steps 1-2 live in :mod:`.wfs_capabilities`, the OGC encodings (safe XML, exception reports, CRS, BBOX, filters) in
:mod:`.wfs_ogc`; their names are also importable from here.
"""
from __future__ import annotations

import hashlib
import json
import logging
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

from ..errors import InvalidInputError
from .errors import SourceError
from .http import DEFAULT_DEADLINE_S, HttpOptions, new_session, redact_url, request
from .progress import Progress
from .snapshot import content_hash
from .wfs_capabilities import (  # noqa: F401 - these names are also importable from here
    CAPS_TTL_S,
    SUPPORTED_VERSIONS,
    WfsCapabilities,
    choose_output_format,
    describe_feature_type,
    get_capabilities,
    resolve_typename,
)
from .wfs_ogc import (  # noqa: F401
    NS,
    bbox_corners,
    bbox_param,
    build_filter,
    crs_urn,
    exception_message,
    parse_xml,
    raise_for_exception,
    sniff_root,
)

log = logging.getLogger("tvb_tasks.sources.wfs")

DEFAULT_PAGE_SIZE = 1000
ID_CANDIDATES = ("id", "cleabs", "gid", "fid", "objectid", "ogc_fid", "identifiant", "code", "cd_obstecoul")
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


def _getfeature_base(version: str, typename: str, srs: str | None, filters: Any, bbox: Sequence[Any] | None,
                     geometry_name: str | None) -> dict[str, Any]:
    """The GetFeature parameters common to the hits request and every page: layer, output CRS, filter or BBOX."""
    base: dict[str, Any] = {"SERVICE": "WFS", "REQUEST": "GetFeature", "VERSION": version,
                            ("TYPENAMES" if version.startswith("2") else "TYPENAME"): typename}
    if srs:
        base["SRSNAME"] = crs_urn(srs)
    if filters:
        base["FILTER"] = build_filter(version, filters, bbox, geometry_name)
    elif bbox is not None:
        base["BBOX"] = bbox_param(bbox)
    return base


def _sort_key(caps: WfsCapabilities, props: Sequence[str], sort_by: str | None, what: str,
              typename: str) -> str | None:
    """The property to page on: ``sort_by``, else an id-like property; None when the server does not sort."""
    if sort_by is None and caps.implements_sorting is not False:
        lowered = {p.lower(): p for p in props}
        sort_by = next((lowered[c] for c in ID_CANDIDATES if c in lowered), None)
    if sort_by and caps.implements_sorting is False:
        log.warning("WFS %s %s: server does not sort; paging without SORTBY=%s", what, typename, sort_by)
        sort_by = None
    if not sort_by:
        log.warning("WFS %s %s: no stable sort key; relying on the server's natural order (checked by page "
                    "digests and counts)", what, typename)
    return sort_by


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


@dataclass
class _Paging:
    """State of a paged read: the pages kept (with their digests, to catch a server ignoring STARTINDEX), the
    server's counts and the response cap seen."""

    size: int                       # features asked per page
    hits: int | None                # resultType=hits count
    hits_suspect: bool              # hits equals the server's cap: a lower bound only
    pages: list[_Page] = field(default_factory=list)
    digests: dict[str, int] = field(default_factory=dict)
    reported: int | None = None     # numberMatched of the pages
    cap_detected: bool = False
    observed_cap: int | None = None
    previous_short: int | None = None
    start: int = 0                  # STARTINDEX of the next page = features read so far


def _take_page(state: _Paging, page: _Page, tmpdir: Path, *, v2: bool, what: str, typename: str) -> bool:
    """Add a page to the read; False when the read is over (an empty page, or a server ignoring STARTINDEX after
    all the features it counted). Raises :class:`SourceError` when a page repeats an earlier one."""
    if page.n == 0:
        if state.reported is None and page.number_matched:
            state.reported = page.number_matched
        return False
    if page.number_matched is not None:
        state.reported = page.number_matched
    if page.digest in state.digests:
        if state.hits is not None and not state.hits_suspect and state.start == state.hits:
            log.warning("WFS %s %s: the server ignores STARTINDEX, but the %d features it counted were "
                        "all read", what, typename, state.hits)
            return False
        raise SourceError(
            f"WFS {what} {typename}: page {len(state.pages) + 1} (STARTINDEX={state.start}) repeats page "
            f"{state.digests[page.digest]}: the server ignores STARTINDEX, the layer cannot be read completely")
    state.digests[page.digest] = len(state.pages) + 1
    if page.lines:
        with open(tmpdir / "features.geojsonl", "a", encoding="utf-8") as sink:
            sink.write("\n".join(page.lines) + "\n")
        page.lines = None
    state.pages.append(page)
    if state.previous_short is not None and not state.cap_detected:
        # a short page followed by more features: the server caps its responses
        state.cap_detected, state.observed_cap = True, state.previous_short
        log.warning("WFS %s %s: the server returned %d features for %s=%d and more followed: it caps "
                    "its responses; paging on until an empty page", what, typename, state.previous_short,
                    "COUNT" if v2 else "MAXFEATURES", state.size)
    state.previous_short = page.n if page.n < state.size else None
    state.start += page.n
    return True


def _read_pages(url: str, page_params: dict, state: _Paging, kind: str, tmpdir: Path, xsd: Path | None, *,
                v2: bool, what: str, typename: str, opts: HttpOptions, session: requests.Session,
                progress: Progress, max_pages: int) -> None:
    """GetFeature pages from STARTINDEX 0 until the read is over (:func:`_take_page`), into ``state``."""
    while True:
        if len(state.pages) >= max_pages:
            raise SourceError(f"WFS {what} {typename}: more than {max_pages} pages; giving up")
        params = {**page_params, "STARTINDEX": state.start, ("COUNT" if v2 else "MAXFEATURES"): state.size}
        resp = request("GET", url, opts=opts, session=session, params=params,
                       what=f"WFS {what} {typename} page {len(state.pages) + 1}")
        raise_for_exception(resp, what, typename)
        if kind == "geojson":
            page = _read_geojson_page(resp.content, f"{what} {typename}")
        else:
            page = _read_gml_page(resp.content, f"{what} {typename}", tmpdir, len(state.pages) + 1, xsd)
        progress.update(features=page.n, pages=1, nbytes=len(resp.content))
        if not _take_page(state, page, tmpdir, v2=v2, what=what, typename=typename):
            return


def _check_complete(state: _Paging, *, what: str, typename: str) -> tuple[str, int | None]:
    """``(completeness, number_matched)`` of a finished read; raises :class:`SourceError` when the features read
    are fewer or more than the server counted (numberMatched of the pages, else resultType=hits)."""
    total, hits, reported = state.start, state.hits, state.reported
    hits_suspect = state.hits_suspect or (state.cap_detected and hits is not None and hits == state.observed_cap)
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
    return completeness, number_matched


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

    Steps: capabilities (version, layer name, output format) and DescribeFeatureType → GetFeature parameters and
    sort key → resultType=hits → pages until an empty one (:func:`_read_pages`) → one frame → the counts checked
    (:func:`_check_complete`).
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
    base = _getfeature_base(version, typename, srs, filters, bbox, geometry_name or geom_prop)
    sort_by = _sort_key(caps, props, sort_by, what, typename)

    hits = _hits(url, base, what, typename, version, opts, session)
    cap = caps.count_default
    hits_suspect = hits is not None and cap is not None and hits == cap
    if hits_suspect:
        log.warning("WFS %s %s: resultType=hits says %d, exactly the server's cap: treated as a lower bound",
                    what, typename, hits)
    size = int(page_size or cap or DEFAULT_PAGE_SIZE)
    if size <= 0:
        raise InvalidInputError("page_size must be positive")
    page_params = dict(base)
    if fmt:
        page_params["OUTPUTFORMAT"] = fmt
    if sort_by:
        page_params["SORTBY"] = f"{sort_by} ASC"
    progress = Progress(log, f"WFS {what} {typename}", total=None if hits_suspect else hits,
                        every_s=progress_every_s)

    state = _Paging(size=size, hits=hits, hits_suspect=hits_suspect)
    with tempfile.TemporaryDirectory(prefix="tvb-wfs-") as tmp:
        tmpdir = Path(tmp)
        xsd = None
        if kind == "gml" and xsd_bytes:
            xsd = tmpdir / "schema.xsd"
            xsd.write_bytes(xsd_bytes)
        _read_pages(url, page_params, state, kind, tmpdir, xsd, v2=v2, what=what, typename=typename, opts=opts,
                    session=session, progress=progress, max_pages=max_pages)
        progress.done()
        gdf = _assemble(state.pages, kind, srs, tmpdir, what, typename)

    completeness, number_matched = _check_complete(state, what=what, typename=typename)
    log.info("WFS %s %s: %d features complete (%s), %d pages", what, typename, state.start, completeness,
             len(state.pages))
    metadata_params = {k: v for k, v in base.items() if k not in ("SERVICE", "REQUEST")}
    metadata_params.update({"page_size": size, "sort_by": sort_by, "output_format": fmt})
    return WfsResult(gdf=gdf, url=what, typename=typename, version=version, output_format=fmt,
                     number_matched=number_matched, hits=hits, server_cap=cap if cap else state.observed_cap,
                     cap_detected=state.cap_detected, completeness=completeness, pages=len(state.pages),
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
        raise InvalidInputError(f"{out}: unsupported output format (use .parquet, .gpkg or .geojson)")
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
