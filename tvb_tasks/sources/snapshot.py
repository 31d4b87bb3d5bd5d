"""Immutable, content-addressed snapshots of fetched layers (GeoParquet + metadata JSON) and their per-source index.

Layout in the store (``<t>`` territory id, ``<name>`` source name, ``<id>`` the content hash)::

    snapshots/<t>/<name>/<id>.parquet   GeoParquet, written once (create-only)
    snapshots/<t>/<name>/<id>.json      metadata: URL without secrets, parameters, time, counts, ETag, duration…
    snapshots/<t>/<name>/index.json     {"snapshots": [ref, …] oldest first, "checked_at", "http": validators}
                                        rewritten with compare-and-swap (get_with_etag + put_bytes(if_match=))

A snapshot the validation gate refused is marked ``"rejected": {"at", "reason"}`` in the index
(:func:`mark_rejected`): it stays listed (``tvb sources rejected``) but is never the baseline a later snapshot is
compared with (:func:`previous_snapshot` skips it) nor the outline source; :func:`clear_rejected` drops such entries
from the index (their files stay, content-addressed and harmless).

The snapshot id is :func:`content_hash`: a sha256 over the CRS, the column names and coarse types, and the sorted
per-feature digests (normalised geometry WKB + values). The same features give the same id whatever the row order,
the file timestamps or the transfer format; a fetch whose id equals the latest one writes nothing (``changed=False``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..store import NotFound, ObjectExists, PreconditionFailed, Store, StoreError

log = logging.getLogger("tvb_tasks.sources.snapshot")

HASH_METHOD = "tvb-canonical-v1"
CAS_ATTEMPTS = 8


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def snapshot_prefix(territory_id: str, name: str) -> str:
    return f"snapshots/{territory_id}/{name}"


def index_key(territory_id: str, name: str) -> str:
    return f"{snapshot_prefix(territory_id, name)}/index.json"


# --- canonical content hash -------------------------------------------------------------------------------------
def _coarse_type(series: pd.Series) -> str:
    if isinstance(series.dtype, gpd.array.GeometryDtype):
        return "geometry"
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "text"


def _canonical_value(value: Any) -> Any:
    """A JSON-stable form of a cell: None for missing, ints for integral floats, ISO strings for dates."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        return int(v) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (dt.datetime, dt.date, pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical_value(v) for k, v in sorted(value.items())}
    return str(value)


def _crs_text(gdf: gpd.GeoDataFrame) -> str | None:
    if gdf.crs is None:
        return None
    epsg = gdf.crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else gdf.crs.to_wkt()


def row_digests(gdf: gpd.GeoDataFrame) -> list[bytes]:
    """sha256 digest of every feature: normalised geometry WKB and values, in sorted column order."""
    geom_name = gdf.geometry.name
    columns = sorted(c for c in gdf.columns if c != geom_name)
    geoms = shapely.normalize(np.asarray(gdf.geometry.values, dtype=object))
    wkb = shapely.to_wkb(geoms, hex=True, byte_order=1, include_srid=False)
    values = gdf[columns].astype(object).to_numpy() if columns else np.empty((len(gdf), 0), dtype=object)
    out = []
    for g, row in zip(wkb, values):
        payload = json.dumps([g] + [_canonical_value(v) for v in row], ensure_ascii=False,
                             separators=(",", ":"))
        out.append(hashlib.sha256(payload.encode("utf-8")).digest())
    return out


def content_hash(gdf: gpd.GeoDataFrame) -> str:
    """Canonical sha256 (hex) of a layer's content: independent of row order, file timestamps and format."""
    geom_name = gdf.geometry.name
    header = {"method": HASH_METHOD, "crs": _crs_text(gdf),
              "columns": [[c, _coarse_type(gdf[c])] for c in sorted(c for c in gdf.columns if c != geom_name)]}
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode("utf-8"))
    for d in sorted(row_digests(gdf)):
        h.update(d)
    return h.hexdigest()


# --- index ------------------------------------------------------------------------------------------------------
def read_index(store: Store, territory_id: str, name: str) -> tuple[dict, str]:
    """The source's index and its ETag (``""`` when there is none yet, the CAS token for "must not exist")."""
    key = index_key(territory_id, name)
    try:
        data, etag = store.get_with_etag(key)
    except NotFound:
        return {"territory": territory_id, "source": name, "snapshots": []}, ""
    try:
        return json.loads(data), etag
    except json.JSONDecodeError as exc:
        raise StoreError(f"{store.url(key)}: corrupt snapshot index ({exc})") from None


def update_index(store: Store, territory_id: str, name: str, mutate) -> dict:
    """Apply ``mutate(index) -> index`` with compare-and-swap, retrying when another writer got there first."""
    key = index_key(territory_id, name)
    for _ in range(CAS_ATTEMPTS):
        index, etag = read_index(store, territory_id, name)
        new = mutate(json.loads(json.dumps(index)))
        try:
            store.put_bytes(key, json.dumps(new, indent=1, ensure_ascii=False).encode("utf-8"), if_match=etag,
                            content_type="application/json")
            return new
        except PreconditionFailed:
            log.debug("%s: concurrent index update, retrying", key)
    raise StoreError(f"{store.url(key)}: could not update the snapshot index after {CAS_ATTEMPTS} attempts")


def latest_snapshot(store: Store, territory_id: str, name: str, *, accepted_only: bool = False) -> dict | None:
    """The newest index entry (``accepted_only``: the newest one the validation gate did not reject)."""
    snaps = read_index(store, territory_id, name)[0].get("snapshots") or []
    if accepted_only:
        snaps = [s for s in snaps if not s.get("rejected")]
    return dict(snaps[-1]) if snaps else None


def snapshot_present(store: Store, ref: dict | None) -> bool:
    """True when the objects an index entry names are in the store (HEAD requests): its GeoParquet and metadata,
    and for a multi-layer record (OSM) each layer's latest snapshot. An index kept while an object was deleted
    must not make a fetch answer "unchanged" for ever (every run would then fail with NotFound)."""
    if not ref:
        return False
    keys = [k for k in (ref.get("key"), ref.get("metadata_key")) if k]
    if not all(store.exists(k) for k in keys):
        return False
    layers = ref.get("layers") or {}
    for layer in layers.values() if isinstance(layers, dict) else []:
        if isinstance(layer, dict) and not all(store.exists(k) for k in (layer.get("key"), layer.get("metadata_key"))
                                               if k):
            return False
    return True


def previous_snapshot(territory_id: str, name: str, store: Store, before: str | None = None) -> dict | None:
    """The ref of the snapshot preceding ``before`` (a snapshot id) in the source's history, or None.

    ``before=None`` gives the latest snapshot. With an id, the newest entry before that id's latest occurrence
    that the validation gate did not reject (so validation compares the current snapshot with the last accepted
    one, never with a refused one); None when there is none, or the id is unknown.
    """
    snaps = read_index(store, territory_id, name)[0].get("snapshots") or []
    if before is None:
        return dict(snaps[-1]) if snaps else None
    for i in range(len(snaps) - 1, -1, -1):
        if snaps[i]["snapshot_id"] == before:
            for j in range(i - 1, -1, -1):
                if not snaps[j].get("rejected"):
                    return dict(snaps[j])
            return None
    return None


# --- rejected snapshots -----------------------------------------------------------------------------------------
def mark_rejected(store: Store, territory_id: str, name: str, snapshot_id: str, reason: str) -> int:
    """Mark every index entry of ``snapshot_id`` as refused by the validation gate. Returns the entries marked."""
    marked = [0]
    stamp = {"at": utc_now(), "reason": reason[:500]}

    def mutate(index: dict) -> dict:
        marked[0] = 0
        for entry in index.get("snapshots") or []:
            if entry.get("snapshot_id") == snapshot_id:
                entry["rejected"] = stamp
                marked[0] += 1
        return index

    update_index(store, territory_id, name, mutate)
    if marked[0]:
        log.warning("%s/%s: snapshot %s marked rejected (%s); it will not be a drift baseline", territory_id, name,
                    snapshot_id[:12], reason)
    return marked[0]


def _source_names(store: Store, territory_id: str) -> list[str]:
    prefix = f"snapshots/{territory_id}/"
    return sorted({k[len(prefix):].split("/")[0] for k in store.list(prefix) if k.endswith("/index.json")})


def list_rejected(store: Store, territory_id: str) -> list[dict]:
    """Every rejected snapshot of the territory: ``{"source", "snapshot_id", "fetched_at", "rejected_at",
    "reason", "feature_count"}``, by source then time."""
    out = []
    for name in _source_names(store, territory_id):
        for entry in read_index(store, territory_id, name)[0].get("snapshots") or []:
            if entry.get("rejected"):
                out.append({"source": name, "snapshot_id": entry["snapshot_id"],
                            "fetched_at": entry.get("fetched_at"), "rejected_at": entry["rejected"].get("at"),
                            "reason": entry["rejected"].get("reason"), "feature_count": entry.get("feature_count")})
    return out


def clear_rejected(store: Store, territory_id: str, source: str | None = None) -> list[dict]:
    """Remove the rejected entries from the source indexes (one source, or all); return what was removed."""
    removed: list[dict] = []
    for name in _source_names(store, territory_id):
        if source is not None and name != source:
            continue
        gone: list[dict] = []

        def mutate(index: dict, gone: list[dict] = gone) -> dict:
            gone.clear()
            kept: list[dict] = []
            for entry in index.get("snapshots") or []:
                (gone if entry.get("rejected") else kept).append(entry)
            index["snapshots"] = kept
            return index

        if any(e.get("rejected") for e in read_index(store, territory_id, name)[0].get("snapshots") or []):
            update_index(store, territory_id, name, mutate)
            removed.extend({"source": name, "snapshot_id": e["snapshot_id"], "reason": e["rejected"].get("reason")}
                           for e in gone)
    return removed


# --- writing ----------------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path, dt.datetime, dt.date)):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def layer_summary(gdf: gpd.GeoDataFrame) -> dict:
    """Columns, geometry types, bounds and CRS of a layer (for metadata)."""
    bounds = [float(v) for v in gdf.total_bounds] if len(gdf) and not gdf.geometry.isna().all() else None
    if bounds and any(math.isnan(b) for b in bounds):
        bounds = None
    return {
        "crs": _crs_text(gdf),
        "columns": {c: str(gdf[c].dtype) for c in gdf.columns if c != gdf.geometry.name},
        "geometry_column": gdf.geometry.name,
        "geometry_types": sorted(str(t) for t in gdf.geom_type.dropna().unique()),
        "bounds": bounds,
    }


def _stamp(index: dict, now: str, http: dict | None, params_hash: str | None) -> dict:
    """Record in a source index when it was last checked and with which HTTP validators / parameters."""
    index["checked_at"] = now
    if http:
        index["http"] = http
    if params_hash:
        index["params_hash"] = params_hash
    return index


def commit_snapshot(store: Store, territory_id: str, name: str, gdf: gpd.GeoDataFrame, *, role: str,
                    metadata: dict, force: bool = False, http: dict | None = None, params_hash: str | None = None,
                    snapshot_id: str | None = None) -> dict:
    """Store ``gdf`` as snapshot ``<content hash>`` unless it equals the latest one; return the source ref.

    ``metadata`` (already free of secrets) is completed with counts, layer summary and timing and written next to
    the GeoParquet. ``http`` (ETag / Last-Modified) and ``params_hash`` are kept in the index for the next
    conditional request. Returns ``{"source", "role", "snapshot_id", "key", "metadata_key", "changed",
    "feature_count", "fetched_at", …}``; ``changed`` is False when the content equals the latest snapshot (then
    nothing but the index's ``checked_at`` is written), and True with ``force``.
    """
    snapshot_id = snapshot_id or content_hash(gdf)
    prefix = snapshot_prefix(territory_id, name)
    now = utc_now()
    latest = latest_snapshot(store, territory_id, name)
    if latest and latest["snapshot_id"] == snapshot_id:
        if snapshot_present(store, latest):
            log.info("%s/%s: content unchanged (snapshot %s)", territory_id, name, snapshot_id[:12])
            update_index(store, territory_id, name, lambda index: _stamp(index, now, http, params_hash))
            return {**latest, "changed": bool(force), "checked_at": now}
        log.warning("%s/%s: snapshot %s is in the index but missing from the store: writing it again",
                    territory_id, name, snapshot_id[:12])

    key, metadata_key = f"{prefix}/{snapshot_id}.parquet", f"{prefix}/{snapshot_id}.json"
    meta = {
        "snapshot_id": snapshot_id, "hash_method": HASH_METHOD, "territory": territory_id, "source": name,
        "role": role, "key": key, "fetched_at": now, "feature_count": int(len(gdf)),
        "previous_snapshot_id": latest["snapshot_id"] if latest else None,
        **metadata, **layer_summary(gdf),
    }
    with tempfile.TemporaryDirectory(prefix="tvb-snap-") as tmp:
        path = Path(tmp) / "snapshot.parquet"
        gdf.to_parquet(path, index=False, compression="zstd", write_covering_bbox=True)
        try:
            store.put_file(key, path, create_only=True, content_type="application/vnd.apache.parquet")
        except ObjectExists:
            log.info("%s: already stored (same content seen before)", key)
    with contextlib.suppress(ObjectExists):
        store.put_bytes(metadata_key, json.dumps(meta, indent=1, ensure_ascii=False, default=_json_default)
                        .encode("utf-8"), create_only=True, content_type="application/json")
    ref = {"source": name, "role": role, "snapshot_id": snapshot_id, "key": key, "metadata_key": metadata_key,
           "changed": True, "feature_count": int(len(gdf)), "fetched_at": now,
           "number_matched": metadata.get("number_matched"), "etag": (http or {}).get("etag")}

    def append(index: dict) -> dict:
        snaps = index.setdefault("snapshots", [])
        if not snaps or snaps[-1]["snapshot_id"] != snapshot_id:     # a concurrent fetch may have added it
            snaps.append({k: v for k, v in ref.items() if k != "changed"})
        return _stamp(index, now, http, params_hash)

    update_index(store, territory_id, name, append)
    log.info("%s/%s: new snapshot %s (%d features)", territory_id, name, snapshot_id[:12], len(gdf))
    return dict(ref)


def commit_record(store: Store, territory_id: str, name: str, record: dict, *, role: str, record_id: str,
                  changed: bool, http: dict | None = None, params_hash: str | None = None) -> dict:
    """Index a metadata-only snapshot (e.g. an OSM download that produced several layers) under ``record_id``.

    Writes ``snapshots/<t>/<name>/<record_id>.json`` once and appends it to the index unless it is already the latest
    entry. The returned ref has ``key=None`` (no GeoParquet of its own).
    """
    prefix = snapshot_prefix(territory_id, name)
    now = utc_now()
    metadata_key = f"{prefix}/{record_id}.json"
    latest = latest_snapshot(store, territory_id, name)
    same = latest is not None and latest["snapshot_id"] == record_id
    if not same or not store.exists(metadata_key):
        with contextlib.suppress(ObjectExists):
            store.put_bytes(metadata_key, json.dumps({**record, "snapshot_id": record_id, "fetched_at": now,
                                                      "previous_snapshot_id": latest["snapshot_id"] if latest
                                                      else None}, indent=1, ensure_ascii=False,
                                                     default=_json_default).encode("utf-8"),
                            create_only=True, content_type="application/json")
    entry = {"source": name, "role": role, "snapshot_id": record_id, "key": None, "metadata_key": metadata_key,
             "feature_count": int(record.get("feature_count") or 0), "fetched_at": now,
             "layers": record.get("layers_index") or {}, "etag": (http or {}).get("etag")}

    def mutate(index: dict) -> dict:
        if not same:
            index.setdefault("snapshots", []).append(entry)
        return _stamp(index, now, http, params_hash)

    update_index(store, territory_id, name, mutate)
    base = latest if same and latest is not None else entry
    return {**base, "changed": changed, "checked_at": now}


def read_snapshot(store: Store, ref_or_key: dict | str, cache_dir: str | Path) -> gpd.GeoDataFrame:
    """Load a snapshot's GeoParquet (a ref dict or its key) as a GeoDataFrame."""
    key = ref_or_key["key"] if isinstance(ref_or_key, dict) else ref_or_key
    return gpd.read_parquet(store.materialize(key, cache_dir))
