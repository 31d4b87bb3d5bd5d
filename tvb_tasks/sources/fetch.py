"""Fetch a territory's sources into immutable snapshots (the stage the pipeline calls).

``fetch_source(territory, name, store)`` dispatches on ``territory.sources[name].kind``:

* ``file`` — read with pyogrio (path from ``territory.resolve_path``, optional ``layer``; CSV with ``x_column`` /
  ``y_column`` or ``wkt_column``), no reprojection;
* ``http`` — download ``url`` (conditional request with the last ETag / Last-Modified), then read as a file;
* ``wfs`` — :func:`tvb_tasks.sources.wfs.read_wfs` with ``srsName = territory.crs`` and a bbox from the territory
  outline (buffered ``bbox_buffer_m``, default :func:`source_buffer_m`: the computation buffer, at least 1000 m;
  ``bbox: false`` to disable), optional ``filter``;
* ``osm`` — :mod:`tvb_tasks.sources.osm`: one download, four derived snapshots ``<name>_roads``,
  ``<name>_railways``, ``<name>_watercourses``, ``<name>_landuse``.

A source naming a publisher's schema (``schema: <id>``, :mod:`tvb_tasks.sources.schemas`) gets its default knobs
(page size, timeout, retries) from it and is checked against it before the mapping (missing field, unknown code).
``TVB_SOURCE_URLS`` (JSON ``{source or published URL: URL}``) redirects URLs at run time (mirrors, test replicas).

Then ``columns`` (target ← source) and ``constant_columns`` are applied and the layer is stored as a content-
addressed snapshot (:mod:`tvb_tasks.sources.snapshot`). Credentials (``auth``, ``headers``) are passed in by the
caller (an Airflow hook, the CLI's environment) and never logged or stored.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import geopandas as gpd

from ..config import PROJECT_ROOT, Territory
from ..config_models import SourceConfig
from ..store import Store
from . import osm as osm_mod
from .errors import SourceError
from .files import apply_columns, read_vector
from .http import OPTION_KEYS as HTTP_OPTION_KEYS
from .http import HttpOptions, download, redact_url
from .schemas import check_layer, effective_knobs
from .snapshot import (
    commit_record,
    commit_snapshot,
    latest_snapshot,
    read_index,
    read_snapshot,
    snapshot_present,
    utc_now,
)
from .wfs import read_wfs

log = logging.getLogger("tvb_tasks.sources")

DEFAULT_TAG_RULES = "config/osm_tags.yaml"
FILE_OPTION_KEYS = ("x_column", "y_column", "wkt_column", "crs", "sep")


def cache_dir() -> Path:
    """Local working folder for downloads (``TVB_CACHE_DIR``, default ``var/cache`` in the project)."""
    return Path(os.environ.get("TVB_CACHE_DIR") or PROJECT_ROOT / "var" / "cache")


def _options(cfg: SourceConfig) -> dict[str, Any]:
    return cfg.options()


def source_buffer_m(territory: Territory, opts: Mapping[str, Any], key: str) -> float:
    """Buffer (m) around the outline for which a source is fetched: the source's own ``key`` option
    (``bbox_buffer_m`` / ``clip_buffer_m``) when given, else the layers' computation buffer
    (``territory.analysis_buffer_m()``, so habitat and friction beyond the outline are known), at least 1000 m."""
    if opts.get(key) is not None:
        return float(opts[key])
    return max(1000.0, territory.analysis_buffer_m())


def _params_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


URL_OVERRIDES_ENV = "TVB_SOURCE_URLS"


def url_overrides() -> dict[str, str]:
    """``TVB_SOURCE_URLS``: a JSON mapping ``{source name or published URL: URL to use}`` (tests point the production
    profile at local replicas with it; an operator at a mirror). Raises :class:`SourceError` when not valid JSON."""
    raw = os.environ.get(URL_OVERRIDES_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SourceError(f"{URL_OVERRIDES_ENV} is not a JSON mapping: {exc}") from None
    if not isinstance(value, dict):
        raise SourceError(f"{URL_OVERRIDES_ENV} must be a JSON mapping {{source or URL: URL}}")
    return {str(k): str(v) for k, v in value.items()}


def configured_url(cfg: SourceConfig, name: str) -> str | None:
    """The URL a source is read from: ``TVB_SOURCE_URLS`` by source name, then by published URL, else the YAML's."""
    overrides = url_overrides()
    return overrides.get(name) or overrides.get(cfg.url or "") or cfg.url


def _source_url(cfg: SourceConfig, name: str, url: str | None) -> str:
    url = url or configured_url(cfg, name)
    if not url:
        raise SourceError(f"source {name!r}: no URL (connection {cfg.connection_id!r} must provide it: pass url=)")
    return url


def _finish(ref: dict, started: float) -> dict:
    ref.setdefault("duration_s", round(time.monotonic() - started, 3))
    return ref


# --- territory outline ------------------------------------------------------------------------------------------
def territory_outline(territory: Territory, store: Store) -> tuple[Any, str]:
    """The territory outline (shapely, in ``territory.crs``) and the boundary snapshot id it comes from.

    Uses the latest snapshot of the boundary source, fetching it first when there is none.
    """
    bname = territory.boundary.source
    ref = latest_snapshot(store, territory.id, bname, accepted_only=True)
    if ref is None:
        ref = fetch_source(territory, bname, store)
    gdf = read_snapshot(store, ref, cache_dir() / "store")
    if gdf.empty:
        raise SourceError(f"territory {territory.id}: boundary source {bname!r} has no feature")
    if gdf.crs is None:
        raise SourceError(f"territory {territory.id}: boundary source {bname!r} has no CRS")
    return gdf.to_crs(territory.crs).union_all(), ref["snapshot_id"]


# --- file / http ------------------------------------------------------------------------------------------------
def _required(value: str | None, name: str, key: str) -> str:
    """A key the territory schema requires for this kind of source (``SourceConfig`` checks it on load)."""
    if not value:
        raise SourceError(f"source {name!r}: {key!r} is missing (required for this kind of source)")
    return value


def _read_local(path: Path, cfg: SourceConfig, name: str, what: str) -> gpd.GeoDataFrame:
    opts = _options(cfg)
    gdf = read_vector(path, layer=cfg.layer, what=what, **{k: opts.get(k) for k in FILE_OPTION_KEYS})
    return apply_columns(gdf, cfg.columns, cfg.constant_columns, what=what, value_maps=opts.get("value_maps"))


def _fetch_file(territory: Territory, name: str, cfg: SourceConfig, store: Store, *, force: bool) -> dict:
    started = time.monotonic()
    path = territory.resolve_path(_required(cfg.path, name, "path"))
    what = f"source {name!r} ({cfg.path})"
    gdf = _read_local(path, cfg, name, what)
    meta = {"kind": "file", "path": cfg.path, "layer": cfg.layer,
            "params": {"columns": cfg.columns, "constant_columns": cfg.constant_columns},
            "file_size": path.stat().st_size, "duration_s": round(time.monotonic() - started, 3)}
    return _finish(commit_snapshot(store, territory.id, name, gdf, role=cfg.role, metadata=meta, force=force), started)


def _download_name(url: str, cfg: SourceConfig) -> str:
    fmt = _options(cfg).get("format")
    base = PurePosixPath(urlsplit(url).path).name or "download"
    if fmt:
        base = f"{PurePosixPath(base).stem or 'download'}.{str(fmt).lstrip('.')}"
    return base


def _unchanged_ref(store: Store, territory: Territory, name: str, force: bool) -> dict | None:
    ref = latest_snapshot(store, territory.id, name)
    if ref is None:
        return None
    if not snapshot_present(store, ref):        # index kept, object deleted: download again and re-write it
        log.warning("%s/%s: snapshot %s is in the index but missing from the store: fetching it again",
                    territory.id, name, ref["snapshot_id"][:12])
        return None
    return {**ref, "changed": bool(force), "checked_at": utc_now()}


def _fetch_http(territory: Territory, name: str, cfg: SourceConfig, store: Store, *, force: bool, url: str | None,
                auth: Any, headers: Mapping[str, str] | None) -> dict:
    started = time.monotonic()
    url = _source_url(cfg, name, url)
    opts = _options(cfg)
    params = {k: v for k, v in opts.items() if k not in ("connection_id", *HTTP_OPTION_KEYS)}
    params["url"] = redact_url(url)
    phash = _params_hash(params)
    index, _ = read_index(store, territory.id, name)
    validators = index.get("http") or {}
    conditional = not force and index.get("params_hash") == phash and bool(index.get("snapshots"))
    dest = cache_dir() / "downloads" / territory.id / name / _download_name(url, cfg)
    result = download(url, dest, opts=HttpOptions.from_source(opts, auth=auth, headers=headers),
                      etag=validators.get("etag") if conditional else None,
                      last_modified=validators.get("last_modified") if conditional else None)
    if result.status == "not_modified":
        ref = _unchanged_ref(store, territory, name, force)
        if ref is not None:
            return _finish(ref, started)
        result = download(url, dest, opts=HttpOptions.from_source(opts, auth=auth, headers=headers))
    what = f"source {name!r} ({result.url})"
    if result.path is None:         # a download without validators is never "not modified"
        raise SourceError(f"{what}: the server sent no file")
    gdf = _read_local(result.path, cfg, name, what)
    http = {"etag": result.etag, "last_modified": result.last_modified, "sha256": result.sha256}
    meta = {"kind": "http", "url": result.url, "layer": cfg.layer, "params": {k: v for k, v in params.items()
                                                                             if k != "url"},
            "etag": result.etag, "last_modified": result.last_modified, "download_sha256": result.sha256,
            "download_bytes": result.size, "duration_s": round(time.monotonic() - started, 3)}
    ref = commit_snapshot(store, territory.id, name, gdf, role=cfg.role, metadata=meta, force=force, http=http,
                          params_hash=phash)
    return _finish(ref, started)


# --- wfs --------------------------------------------------------------------------------------------------------
def _fetch_wfs(territory: Territory, name: str, cfg: SourceConfig, store: Store, *, force: bool, url: str | None,
               auth: Any, headers: Mapping[str, str] | None) -> dict:
    started = time.monotonic()
    url = _source_url(cfg, name, url)
    opts = {**_options(cfg), **effective_knobs(cfg)}
    bbox = None
    if opts.get("bbox", True) is not False and name != territory.boundary.source:
        outline, _ = territory_outline(territory, store)
        minx, miny, maxx, maxy = outline.buffer(source_buffer_m(territory, opts, "bbox_buffer_m")).bounds
        bbox = (minx, miny, maxx, maxy, territory.crs)
    result = read_wfs(url, _required(cfg.typename, name, "typename"), version=cfg.version or "2.0.0", bbox=bbox, srs_name=territory.crs,
                      filters=opts.get("filter"), page_size=opts.get("page_size"), sort_by=opts.get("sort_by"),
                      output_format=opts.get("output_format"), geometry_name=opts.get("geometry_name"),
                      opts=HttpOptions.from_source(opts, auth=auth, headers=headers))
    check_layer(result.gdf, name, cfg, url=result.url)
    raw = result.gdf
    if raw.empty:   # no feature in the bbox: keep the mapped columns so the snapshot has the expected schema
        raw = raw.assign(**{c: None for c in cfg.columns.values() if c not in raw.columns})
    gdf = apply_columns(raw, cfg.columns, cfg.constant_columns, what=f"source {name!r} ({result.url})",
                        value_maps=opts.get("value_maps"))
    meta = {"kind": "wfs", "url": result.url, "typename": result.typename, "version": result.version,
            "params": {**result.params, "bbox": list(bbox) if bbox else None, "filter": opts.get("filter"),
                       "columns": cfg.columns, "constant_columns": cfg.constant_columns,
                       "value_maps": opts.get("value_maps")},
            **{k: v for k, v in result.summary().items() if k not in ("url", "typename", "version", "features")},
            "server_feature_count": result.number_matched,
            "duration_s": round(time.monotonic() - started, 3)}
    ref = commit_snapshot(store, territory.id, name, gdf, role=cfg.role, metadata=meta, force=force)
    return _finish(ref, started)


# --- osm --------------------------------------------------------------------------------------------------------
def _nomenclature_codes(territory: Territory) -> set[str] | None:
    """The nomenclature's codes (None when the file is absent); errors name the file, never echo its content."""
    from ..validate.gate import nomenclature_codes

    if not territory.resolve_path(territory.nomenclature.file).exists():
        return None
    try:
        return set(nomenclature_codes(territory)) or None
    except ValueError as exc:
        raise SourceError(str(exc)) from None


def _tag_rule_codes(territory: Territory, nomenclature_id: str | None) -> set[str] | None:
    """Codes the OSM tag rules may use: those of ``tag_rules_nomenclature`` (the nomenclature the rules file is
    written in, e.g. ``ocs2d``) when given, else the territory's."""
    if not nomenclature_id:
        return _nomenclature_codes(territory)
    from .schemas import _nomenclature_codes as codes_of

    return set(codes_of(nomenclature_id, None)) or None


def _year(last_modified: str | None) -> int:
    if last_modified:
        try:
            return email.utils.parsedate_to_datetime(last_modified).year
        except (TypeError, ValueError):
            pass
    return dt.datetime.now(dt.UTC).year


def _fetch_osm(territory: Territory, name: str, cfg: SourceConfig, store: Store, *, force: bool, url: str | None,
               auth: Any, headers: Mapping[str, str] | None) -> dict:
    started = time.monotonic()
    url = _source_url(cfg, name, url)
    opts = {**_options(cfg), **effective_knobs(cfg)}
    rules_path = territory.resolve_path(opts.get("tag_rules") or DEFAULT_TAG_RULES)
    rules = osm_mod.load_tag_rules(rules_path, _tag_rule_codes(territory, opts.get("tag_rules_nomenclature")))
    outline, boundary_id = territory_outline(territory, store)
    buffer_m = source_buffer_m(territory, opts, "clip_buffer_m")
    clip_geom = outline.buffer(buffer_m)
    phash = _params_hash({"url": redact_url(url), "rules": rules.digest(), "boundary": boundary_id,
                          "buffer_m": buffer_m, "crs": territory.crs})
    index, _ = read_index(store, territory.id, name)
    validators = index.get("http") or {}
    dest = cache_dir() / "downloads" / territory.id / name / _download_name(url, cfg)
    sidecar = dest.with_name(dest.name + ".json")
    cached = json.loads(sidecar.read_text()) if sidecar.exists() and dest.exists() else None
    same_params = index.get("params_hash") == phash and bool(index.get("snapshots"))
    if not force and same_params:
        cond = validators
    elif not force and cached:
        cond = cached
    else:
        cond = {}
    http_opts = HttpOptions.from_source(opts, auth=auth, headers=headers)
    result = download(url, dest, opts=http_opts, etag=cond.get("etag"), last_modified=cond.get("last_modified"))
    if result.status == "not_modified":
        latest = latest_snapshot(store, territory.id, name) if same_params else None
        if same_params and not (snapshot_present(store, latest) and all(
                snapshot_present(store, latest_snapshot(store, territory.id, lname))
                for lname in (latest or {}).get("layers", {}))):
            log.warning("OSM %s: a snapshot in the index is missing from the store: extracting again", name)
            same_params = False
        if same_params and latest is not None:
            layers = {lname: {**(latest_snapshot(store, territory.id, lname) or {}), "changed": False}
                      for lname in (latest or {}).get("layers", {})}
            log.info("OSM %s: extract not modified and rules unchanged: nothing to do", result.url)
            return _finish({**latest, "changed": False, "checked_at": utc_now(), "layers": layers}, started)
        if cached:
            result = result.__class__("cached", dest, cached.get("etag"), cached.get("last_modified"),
                                      dest.stat().st_size, cached.get("sha256"), result.duration_s, result.url)
        else:
            result = download(url, dest, opts=http_opts)
    if result.status == "downloaded":
        sidecar.write_text(json.dumps({"etag": result.etag, "last_modified": result.last_modified,
                                       "sha256": result.sha256, "url": result.url}))
    t0 = time.monotonic()
    layers = osm_mod.extract_layers(dest, rules, crs=territory.crs, clip_geom=clip_geom,
                                    millesime=_year(result.last_modified))
    extract_s = round(time.monotonic() - t0, 3)
    http = {"etag": result.etag, "last_modified": result.last_modified, "sha256": result.sha256}
    common = {"kind": "osm", "url": result.url, "etag": result.etag, "last_modified": result.last_modified,
              "download_sha256": result.sha256, "download_bytes": result.size,
              "params": {"tag_rules": str(opts.get("tag_rules") or DEFAULT_TAG_RULES), "tag_rules_sha256":
                         rules.digest(), "clip_buffer_m": buffer_m, "boundary_snapshot_id": boundary_id,
                         "crs": territory.crs},
              "download_s": round(result.duration_s, 3), "extract_s": extract_s}
    refs = {}
    for lname, gdf in layers.items():
        derived = f"{name}_{lname}"
        refs[derived] = commit_snapshot(store, territory.id, derived, gdf, role=osm_mod.DERIVED_ROLES[lname],
                                        metadata={**common, "parent_source": name, "layer": lname,
                                                  "duration_s": round(time.monotonic() - started, 3)},
                                        force=force)
        refs[derived]["parent_source"] = name
    record_id = hashlib.sha256(json.dumps({k: r["snapshot_id"] for k, r in sorted(refs.items())})
                               .encode()).hexdigest()
    changed = force or any(r["changed"] for r in refs.values())
    record = {**common, "territory": territory.id, "source": name, "role": cfg.role,
              "feature_count": sum(r["feature_count"] for r in refs.values()),
              "layers": {k: {"snapshot_id": r["snapshot_id"], "key": r["key"], "feature_count": r["feature_count"]}
                         for k, r in refs.items()},
              "layers_index": {k: r["snapshot_id"] for k, r in refs.items()}}
    ref = commit_record(store, territory.id, name, record, role=cfg.role, record_id=record_id, changed=changed,
                        http=http, params_hash=phash)
    ref["layers"] = refs
    return _finish(ref, started)


# --- public API -------------------------------------------------------------------------------------------------
def fetch_source(territory: Territory, name: str, store: Store, *, force: bool = False, url: str | None = None,
                 auth: Any = None, headers: Mapping[str, str] | None = None,
                 http_overrides: Mapping[str, Any] | None = None) -> dict:
    """Fetch source ``name`` of ``territory`` into a snapshot; return its ref.

    Returns ``{"source", "role", "snapshot_id" (sha256 hex), "key" ("snapshots/<t>/<name>/<id>.parquet"),
    "metadata_key", "changed", "feature_count", "fetched_at" (ISO UTC, when the snapshot was first written),
    "duration_s", …}``; ``changed`` is False when the content equals the latest snapshot (nothing new written;
    downstream work can be skipped). ``force`` ignores conditional-request validators and reports ``changed=True``.

    For an ``osm`` source the ref describes the download (``key`` None, ``snapshot_id`` a hash of the derived ids)
    and ``ref["layers"]`` is ``{"<name>_roads": ref, "<name>_railways": ref, "<name>_watercourses": ref,
    "<name>_landuse": ref}``, each an ordinary snapshot ref (role roads / railways / watercourses /
    landuse_overlay, ``parent_source`` = ``name``).

    ``url`` overrides the YAML URL (e.g. from an Airflow connection); ``auth`` ((user, password) or a requests
    auth object) and ``headers`` carry credentials, never logged nor stored. ``http_overrides`` (e.g. from the
    CLI's ``--timeout`` / ``--deadline``) replace the source's ``timeout_s`` / ``connect_timeout_s`` /
    ``deadline_s`` / ``max_retries`` for this fetch only. Raises :class:`SourceError`.
    """
    if name not in territory.sources:
        raise SourceError(f"territory {territory.id}: unknown source {name!r} "
                          f"(sources: {', '.join(territory.sources)})")
    cfg = territory.sources[name]
    overrides = {k: v for k, v in (http_overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(HTTP_OPTION_KEYS))
    if unknown:
        raise SourceError(f"source {name!r}: unknown HTTP option(s) {unknown} (known: {', '.join(HTTP_OPTION_KEYS)})")
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    if cfg.kind == "file":
        log.info("fetching source %s/%s (file)", territory.id, name)
    else:
        limits = HttpOptions.from_source(_options(cfg))
        log.info("fetching source %s/%s (%s; timeout %g s, overall deadline %s)", territory.id, name, cfg.kind,
                 limits.timeout_s, f"{limits.deadline_s:g} s" if limits.deadline_s else "none")
    if cfg.kind == "file":
        return _fetch_file(territory, name, cfg, store, force=force)
    if cfg.kind == "http":
        return _fetch_http(territory, name, cfg, store, force=force, url=url, auth=auth, headers=headers)
    if cfg.kind == "wfs":
        try:
            return _fetch_wfs(territory, name, cfg, store, force=force, url=url, auth=auth, headers=headers)
        except SourceError as exc:   # the WFS client names the server and layer; say which source it was
            if f"source {name!r}" in str(exc):
                raise
            raise SourceError(f"source {name!r}: {exc}") from exc
    if cfg.kind == "osm":
        return _fetch_osm(territory, name, cfg, store, force=force, url=url, auth=auth, headers=headers)
    raise SourceError(f"source {name!r}: unsupported kind {cfg.kind!r}")  # pragma: no cover - pydantic-checked


def fetch_all(territory: Territory, store: Store, *, force: bool = False,
              credentials: Mapping[str, Mapping[str, Any]] | None = None,
              http_overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Fetch every source in order (the boundary first); return ``{name: ref}``, every ref with a GeoParquet ``key``.

    An ``osm`` source is represented by its derived layers only (``<name>_roads``, ``<name>_railways``,
    ``<name>_watercourses``, ``<name>_landuse``); its download record is in its own index (``fetch_source`` returns
    it). ``credentials`` maps a source name to ``{"url"?, "auth"?, "headers"?}``.
    """
    credentials = credentials or {}
    order = [territory.boundary.source] + [n for n in territory.sources if n != territory.boundary.source]
    out: dict[str, dict] = {}
    for name in order:
        extra = dict(credentials.get(name) or {})
        ref = fetch_source(territory, name, store, force=force, url=extra.get("url"), auth=extra.get("auth"),
                           headers=extra.get("headers"), http_overrides=http_overrides)
        if ref.get("layers"):
            out.update(ref["layers"])
        else:
            out[name] = ref
    return out
