"""Content-addressed snapshots: canonical hash, unchanged detection, index with compare-and-swap, URL redaction."""
from __future__ import annotations

import json
import threading

import geopandas as gpd
import pytest
import shapely

from tvb_tasks.sources import content_hash, previous_snapshot, redact_url
from tvb_tasks.sources.snapshot import commit_snapshot, read_index, update_index
from tvb_tasks.store import ObjectExists, open_store


def _layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": [1, 2, 3], "name": ["a", None, "c"], "importance": [1.0, 2.5, float("nan")]},
                            geometry=[shapely.Point(0, 0), shapely.LineString([(0, 0), (1, 1)]),
                                      shapely.box(0, 0, 2, 2)], crs=2154)


def test_hash_is_canonical():
    a = _layer()
    h = content_hash(a)
    assert len(h) == 64
    assert content_hash(a.iloc[::-1]) == h                                  # row order
    assert content_hash(a[["geometry", "importance", "name", "id"]]) == h     # column order
    ring = shapely.Polygon([(0, 0), (0, 2), (2, 2), (2, 0)])                  # same square, other start / orientation
    assert content_hash(a.set_geometry([a.geometry[0], a.geometry[1], ring], crs=2154)) == h
    b = a.copy()
    b.loc[1, "name"] = "b"
    assert content_hash(b) != h
    c = a.copy()
    c.loc[0, "geometry"] = shapely.Point(0, 0.001)
    assert content_hash(c) != h
    assert content_hash(a.set_crs(4326, allow_override=True)) != h
    assert content_hash(a.rename(columns={"name": "nom"})) != h


def test_hash_ignores_file_timestamps(tmp_path):
    import pyogrio

    a = _layer()
    # two writes a year apart: GDAL's OGR_CURRENT_DATE sets the GeoPackage's last_change timestamp
    for name, date in (("one", "2000-01-01T00:00:00.000Z"), ("two", "2001-01-01T00:00:00.000Z")):
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": date})
        try:
            a.to_file(tmp_path / f"{name}.gpkg", layer="l")
        finally:
            pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
    assert (tmp_path / "one.gpkg").read_bytes() != (tmp_path / "two.gpkg").read_bytes()
    assert content_hash(gpd.read_file(tmp_path / "one.gpkg")) == content_hash(gpd.read_file(tmp_path / "two.gpkg"))


def test_commit_unchanged_and_history(tmp_path):
    store = open_store(str(tmp_path / "store"))
    a = _layer()
    meta = {"kind": "file", "url": None}
    r1 = commit_snapshot(store, "t", "src", a, role="roads", metadata=meta)
    assert r1["changed"] and r1["key"] == f"snapshots/t/src/{r1['snapshot_id']}.parquet"
    before = sorted(store.list("snapshots/t/src/"))
    r2 = commit_snapshot(store, "t", "src", a.iloc[::-1], role="roads", metadata=meta)
    assert not r2["changed"] and r2["snapshot_id"] == r1["snapshot_id"]
    assert [k for k in sorted(store.list("snapshots/t/src/")) if k != "snapshots/t/src/index.json"] == \
        [k for k in before if k != "snapshots/t/src/index.json"]
    assert commit_snapshot(store, "t", "src", a, role="roads", metadata=meta, force=True)["changed"] is True
    b = a.iloc[:2]
    r3 = commit_snapshot(store, "t", "src", b, role="roads", metadata=meta)
    assert r3["changed"] and r3["feature_count"] == 2
    assert previous_snapshot("t", "src", store)["snapshot_id"] == r3["snapshot_id"]
    assert previous_snapshot("t", "src", store, before=r3["snapshot_id"])["snapshot_id"] == r1["snapshot_id"]
    assert previous_snapshot("t", "src", store, before=r1["snapshot_id"]) is None
    assert previous_snapshot("t", "other", store) is None
    m = json.loads(store.get_bytes(r3["metadata_key"]))
    assert m["previous_snapshot_id"] == r1["snapshot_id"] and m["feature_count"] == 2 and m["crs"] == "EPSG:2154"
    assert content_hash(gpd.read_parquet(store.local_path(r3["key"]))) == r3["snapshot_id"]   # id = content
    with pytest.raises(ObjectExists):
        store.put_bytes(r1["key"], b"tamper", create_only=True)            # immutable


def test_index_cas_under_concurrency(tmp_path):
    store = open_store(str(tmp_path / "store"))
    errors = []

    def worker(i):
        try:
            update_index(store, "t", "s", lambda idx: {**idx, "snapshots": idx["snapshots"] + [{"snapshot_id": str(i)}]})
        except Exception as exc:  # noqa: BLE001 - any error of a writer thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(s["snapshot_id"] for s in read_index(store, "t", "s")[0]["snapshots"]) == [str(i) for i in range(6)]


@pytest.mark.parametrize("url,expected", [
    ("https://user:pw@data.geopf.fr/wfs/ows?SERVICE=WFS&apikey=abc", "https://data.geopf.fr/wfs/ows?SERVICE=WFS"),
    ("https://h/x?token=1&access_token=2&Password=3&KEY=4&layer=a", "https://h/x?layer=a"),
    ("https://h/x.pbf?X-Amz-Signature=s&X-Amz-Credential=c", "https://h/x.pbf"),
    ("https://download.geofabrik.de/europe/france/nord-pas-de-calais-latest.osm.pbf",
     "https://download.geofabrik.de/europe/france/nord-pas-de-calais-latest.osm.pbf"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected
