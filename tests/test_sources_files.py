"""File and HTTP sources: formats, column mapping, errors, conditional downloads and retries (local HTTP server)."""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from helpers.servers import FileServer
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.sources import SourceError, fetch_source, previous_snapshot
from tvb_tasks.sources.files import apply_columns, read_vector
from tvb_tasks.store import open_store


def _layer(n: int = 5, crs: int = 2154) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"code": [f"c{i}" for i in range(n)], "libelle": [f"zone {i}" for i in range(n)],
                             "surface": [float(i) for i in range(n)]},
                            geometry=[shapely.box(650000 + i * 100, 7030000, 650050 + i * 100, 7030050)
                                      for i in range(n)], crs=crs)


def test_formats_read_the_same_features(tmp_path):
    src = _layer()
    src.to_file(tmp_path / "a.gpkg", layer="zones")
    _layer(2).to_file(tmp_path / "a.gpkg", layer="other")
    src.to_file(tmp_path / "a.geojson", driver="GeoJSON")
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    src.to_file(shp_dir / "zones.shp")
    with zipfile.ZipFile(tmp_path / "zones.zip", "w") as z:
        for f in shp_dir.iterdir():
            z.write(f, f.name)
    csv = tmp_path / "points.csv"
    csv.write_text("name;x;y\nA;650000.5;7030000\nB;651000;7031000\n", encoding="utf-8")

    gpkg = read_vector(tmp_path / "a.gpkg", layer="zones")
    assert len(gpkg) == 5 and gpkg.crs.to_epsg() == 2154
    assert len(read_vector(tmp_path / "a.geojson")) == 5
    shp = read_vector(tmp_path / "zones.zip")
    assert list(shp["code"]) == list(src["code"]) and shp.crs.to_epsg() == 2154
    pts = read_vector(csv, x_column="x", y_column="y", crs="EPSG:2154", sep=";")
    assert list(pts["name"]) == ["A", "B"] and pts.geometry.iloc[0].x == 650000.5 and pts.crs.to_epsg() == 2154

    with pytest.raises(SourceError, match=r"several layers \(zones, other\)|several layers \(other, zones\)"):
        read_vector(tmp_path / "a.gpkg")
    with pytest.raises(SourceError, match=r"no layer 'nope' \(layers: "):
        read_vector(tmp_path / "a.gpkg", layer="nope")
    with pytest.raises(SourceError, match="no such file"):
        read_vector(tmp_path / "missing.gpkg")
    with pytest.raises(SourceError, match="x_column"):
        read_vector(csv, sep=";")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,x,y\nA,1,2\nB,oops,3\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"1 row\(s\) without numeric x/y \(e.g. lines \[3\]\)"):
        read_vector(bad, x_column="x", y_column="y")


def test_apply_columns(tmp_path):
    out = apply_columns(_layer(), {"id": "code", "nom": "libelle"}, {"millesime": 2021}, what="test")
    assert {"id", "nom", "millesime", "surface"} <= set(out.columns)
    assert "code" not in out.columns and "libelle" not in out.columns and set(out["millesime"]) == {2021}
    mapped = apply_columns(_layer(), {"status": "code"}, None, what="test",
                           value_maps={"status": {"c0": "in_use", "c1": "disused"}})
    assert list(mapped["status"]) == ["in_use", "disused", "c2", "c3", "c4"]
    with pytest.raises(SourceError, match="value_maps"):
        apply_columns(_layer(), None, None, what="test", value_maps={"nothere": {}})
    with pytest.raises(SourceError, match=r"column\(s\) \['nothere'\].*columns: \['code', 'libelle', 'surface'\]"):
        apply_columns(_layer(), {"id": "nothere"}, None, what="test")


def _territory(tmp_path: Path, extra_sources: dict) -> object:
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    for src in raw["sources"].values():
        if src.get("path"):
            src["path"] = str(PROJECT_ROOT / src["path"])
    raw["id"] = "filetest"
    raw["profiles"] = {}
    raw["publish"]["basemap"] = {}              # keyed by profile: production's goes with the profile
    raw["sources"].update(extra_sources)
    path = tmp_path / "filetest.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return load_territory(path)


def test_file_source_is_not_reprojected(tmp_path, monkeypatch):
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    _layer().to_crs(4326).to_file(tmp_path / "wgs84.gpkg", layer="zones")
    territory = _territory(tmp_path, {"local": {"kind": "file", "role": "landuse", "path": str(tmp_path / "wgs84.gpkg"),
                                                "layer": "zones", "columns": {"code_cs": "code"},
                                                "constant_columns": {"millesime": 2021}}})
    store = open_store(str(tmp_path / "store"))
    ref = fetch_source(territory, "local", store)
    snap = gpd.read_parquet(store.local_path(ref["key"]))
    assert snap.crs.to_epsg() == 4326 and list(snap["code_cs"]) == [f"c{i}" for i in range(5)]
    assert ref["role"] == "landuse" and ref["feature_count"] == 5


def test_http_source_conditional_download_retries_and_no_secrets(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    caplog.set_level(logging.DEBUG)                       # urllib3 logs request lines at DEBUG
    _layer().to_file(tmp_path / "v1.geojson", driver="GeoJSON")
    changed = _layer()
    changed.loc[0, "libelle"] = "renamed"
    changed.to_file(tmp_path / "v2.geojson", driver="GeoJSON")
    path = "/data/zones.geojson"
    with FileServer({path: (tmp_path / "v1.geojson").read_bytes()}) as server:
        url = f"{server.url}{path}?apikey=SECRET42&format=json"
        territory = _territory(tmp_path, {"zones": {"kind": "http", "role": "protected_areas", "url": url,
                                                    "max_retries": 3, "backoff_s": 0.01,
                                                    "columns": {"name": "libelle"},
                                                    "constant_columns": {"protection_type": "ENS"}}})
        store = open_store(str(tmp_path / "store"))
        server.fail_first[path] = 2                                     # two 503 answers, then the file
        first = fetch_source(territory, "zones", store, headers={"Authorization": "Bearer TOKEN99"})
        assert first["changed"] and first["feature_count"] == 5
        assert server.counts[(path, 503)] == 2 and server.counts[(path, 200)] == 1
        assert server.seen_headers[-1].get("Authorization") == "Bearer TOKEN99"
        meta = json.loads(store.get_bytes(first["metadata_key"]))
        assert meta["url"] == f"{server.url}{path}?format=json" and meta["etag"]

        second = fetch_source(territory, "zones", store)
        assert server.counts[(path, 304)] == 1 and server.counts[(path, 200)] == 1
        assert second["changed"] is False and second["snapshot_id"] == first["snapshot_id"]

        server.files[path] = (tmp_path / "v2.geojson").read_bytes()
        third = fetch_source(territory, "zones", store)
        assert third["changed"] and third["snapshot_id"] != first["snapshot_id"]
        assert previous_snapshot("filetest", "zones", store, before=third["snapshot_id"])["snapshot_id"] == \
            first["snapshot_id"]
    text = caplog.text + json.dumps(meta) + "".join(
        store.get_bytes(k).decode() for k in store.list("snapshots/filetest/zones/") if k.endswith(".json"))
    assert "SECRET42" not in text and "TOKEN99" not in text
