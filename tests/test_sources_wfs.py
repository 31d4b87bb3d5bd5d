"""WFS source against a real MapServer WFS (Debian cgi-mapserver) started on 127.0.0.1 by a fixture.

The served layer has 2,500 points and a per-response cap of 500 (``wfs_maxfeatures``); MapServer also caps
``resultType=hits`` at 500, so these tests exercise the "silent cap" rules for real.
"""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.sources import SourceError, content_hash, fetch_source, fetch_wfs_to_file, previous_snapshot
from tvb_tasks.sources.http import HttpOptions
from tvb_tasks.sources.wfs import bbox_param, build_filter, exception_message, parse_xml, read_wfs
from tvb_tasks.store import open_store

GML32 = "application/gml+xml; version=3.2"
FAST = HttpOptions(timeout_s=20, max_retries=2, backoff_s=0.05)


@pytest.fixture(scope="module")
def wfs(mapserver, tmp_path_factory):
    """(base URL, source GeoDataFrame) of a running MapServer WFS."""
    with mapserver.points(tmp_path_factory.mktemp("wfs"), n=2500, max_features=500) as (url, data):
        yield url, gpd.read_file(data)


def _same_points(got: gpd.GeoDataFrame, src: gpd.GeoDataFrame) -> None:
    """Same ids, attributes and positions (MapServer's GML carries 6 decimals: compare within 1e-5 m)."""
    a = got.sort_values("id").reset_index(drop=True)
    b = src.sort_values("id").reset_index(drop=True)
    assert list(a["id"]) == list(b["id"])
    assert list(a["name"]) == list(b["name"]) and list(a["value"]) == list(b["value"])
    assert float(a.geometry.distance(b.geometry.set_crs(a.crs, allow_override=True)).max()) < 1e-5


def test_complete_read_through_the_cap_geojson(wfs, caplog):
    url, src = wfs
    caplog.set_level(logging.INFO, logger="tvb_tasks.sources")
    res = read_wfs(url, "ms:pts", srs_name="EPSG:2154", opts=FAST)
    assert res.output_format.startswith("application/json")
    assert len(res.gdf) == 2500 and res.gdf["id"].is_unique
    assert sorted(res.gdf["id"]) == list(range(1, 2501))
    assert res.hits == 500 and res.server_cap == 500        # MapServer caps hits at its maximum…
    assert res.pages == 5                                    # …and we paged through anyway
    assert res.gdf.crs.to_epsg() == 2154
    assert content_hash(res.gdf) == content_hash(src)        # same features as the server's data
    assert any("exactly the server's cap" in r.getMessage() for r in caplog.records)
    assert any("features" in r.getMessage() and "pages" in r.getMessage() for r in caplog.records
               if r.name == "tvb_tasks.sources.wfs")


def test_gml_read_detects_capped_pages_and_checks_number_matched(wfs):
    url, src = wfs
    res = read_wfs(url, "ms:pts", srs_name="EPSG:2154", output_format=GML32, page_size=1000, opts=FAST)
    assert len(res.gdf) == 2500
    assert res.cap_detected                                  # asked 1000, got 500, more followed
    _same_points(res.gdf, src)
    # below the cap, MapServer reports numberMatched on the last (partial) page: the count is checked against it
    res = read_wfs(url, "ms:pts", srs_name="EPSG:2154", output_format=GML32, page_size=300, opts=FAST)
    assert len(res.gdf) == 2500 and not res.cap_detected
    assert res.number_matched == 2500 and res.completeness == "number_matched"


def test_wfs_110(wfs):
    url, src = wfs
    res = read_wfs(url, "ms:pts", version="1.1.0", srs_name="EPSG:2154", output_format="text/xml; subtype=gml/3.1.1",
                   opts=FAST)
    assert res.version == "1.1.0" and len(res.gdf) == 2500
    _same_points(res.gdf, src)


def test_bbox_axis_order_and_filter(wfs, tmp_path):
    url, src = wfs
    expected = src.cx[681000:691000, 7031000:7037000]
    res = read_wfs(url, "ms:pts", bbox=(681000, 7031000, 691000, 7037000, "EPSG:2154"), opts=FAST)
    assert len(res.gdf) == len(expected) > 500
    assert set(res.gdf["id"]) == set(expected["id"])
    # the same box in EPSG:4326 (lon/lat given; sent lat/lon) covers the 2154 box's footprint
    lonlat = gpd.GeoSeries([shapely.box(681000, 7031000, 691000, 7037000)], crs=2154).to_crs(4326).total_bounds
    res4326 = read_wfs(url, "ms:pts", bbox=(*lonlat, "EPSG:4326"), srs_name="EPSG:2154", opts=FAST)
    assert set(expected["id"]) <= set(res4326.gdf["id"])
    assert bbox_param((2.7, 50.3, 2.9, 50.5, "EPSG:4326")).startswith("50.3,2.7,50.5,2.9,urn:ogc:def:crs:EPSG::4326")
    filtered = read_wfs(url, "ms:pts", bbox=(681000, 7031000, 691000, 7037000, "EPSG:2154"),
                        filters={"property": "category", "value": "a"}, opts=FAST)
    assert set(filtered.gdf["id"]) == set(expected.loc[expected["category"] == "a", "id"])
    liked = read_wfs(url, "ms:pts", filters=[{"property": "name", "value": "point 12*", "op": "like"},
                                             {"property": "category", "value": "b"}], opts=FAST)
    expected_like = src[src["name"].str.startswith("point 12") & (src["category"] == "b")]
    assert 0 < len(liked.gdf) == len(expected_like) and set(liked.gdf["id"]) == set(expected_like["id"])
    out = fetch_wfs_to_file(url, "ms:pts", tmp_path / "pts.gpkg", bbox=(681000, 7031000, 691000, 7037000,
                                                                       "EPSG:2154"), page_size=200)
    assert out["features"] == len(expected) and out["out_file"].endswith("pts.gpkg")
    assert len(gpd.read_file(tmp_path / "pts.gpkg")) == len(expected)


@pytest.mark.parametrize("version,status", [("2.0.0", 400), ("1.1.0", 200)])
def test_exception_report_is_an_error_naming_server_layer_message(wfs, tmp_path, version, status):
    url, _ = wfs
    with pytest.raises(SourceError) as err:
        fetch_wfs_to_file(url, "ms:broken", tmp_path / "broken.parquet", version=version)
    msg = str(err.value)
    assert url in msg and "broken" in msg and "Open failed" in msg and f"HTTP {status}" in msg
    assert not (tmp_path / "broken.parquet").exists()


def test_unknown_layer(wfs, tmp_path):
    url, _ = wfs
    with pytest.raises(SourceError, match=r"no layer 'ms:pst'.*ms:pts"):
        fetch_wfs_to_file(url, "ms:pst", tmp_path / "x.parquet")


def test_server_ignoring_startindex_is_detected(wfs):
    url, _ = wfs
    with pytest.raises(SourceError, match="ignores STARTINDEX"):
        read_wfs(url + "ignore-startindex/", "ms:pts", srs_name="EPSG:2154", opts=FAST)
    # a layer that fits in one page is complete even without paging (hits, below the cap, says so)
    small = read_wfs(url + "ignore-startindex/", "ms:pts", filters={"property": "category", "value": "a"},
                     bbox=(681000, 7031000, 689000, 7036000, "EPSG:2154"), opts=FAST)
    assert 0 < len(small.gdf) == small.hits < 500 and small.completeness == "number_matched"


def test_retries_5xx(wfs, caplog):
    url, _ = wfs
    caplog.set_level(logging.WARNING, logger="tvb_tasks.sources.http")
    res = read_wfs(url + "flaky/", "ms:pts", srs_name="EPSG:2154", opts=FAST)
    assert len(res.gdf) == 2500
    assert any("HTTP 503" in r.getMessage() and "retry" in r.getMessage() for r in caplog.records)


def test_timeout_is_a_clear_error_after_bounded_retries():
    with socket.socket() as sock:              # accepts connections (kernel backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/wfs?apikey=SECRET123"
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            read_wfs(url, "ms:pts", opts=HttpOptions(timeout_s=0.3, max_retries=2, backoff_s=0.05))
        elapsed = time.monotonic() - started
    msg = str(err.value)
    assert "timed out" in msg and "3 attempt" in msg and "SECRET123" not in msg
    assert elapsed < 5


def test_xml_entities_refused():
    evil = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1"><ows:Exception>'
            b'<ows:ExceptionText>&x;</ows:ExceptionText></ows:Exception></ows:ExceptionReport>')
    with pytest.raises(SourceError, match="entity declarations refused"):
        exception_message(evil, "test")
    with pytest.raises(SourceError, match="entity declarations refused"):
        parse_xml(evil, "test")
    f = build_filter("2.0.0", {"property": "nom", "value": "<&>"}, (1, 2, 3, 4, "EPSG:2154"))
    assert "&lt;&amp;&gt;" in f and "fes:And" in f and "urn:ogc:def:crs:EPSG::2154" in f


# --- fetch_source with snapshots ---------------------------------------------------------------------------------
def _territory(tmp_path: Path, url: str) -> object:
    """A copy of the CALL configuration whose boundary is a small box and with a WFS source on the fixture."""
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    for src in raw["sources"].values():
        if src.get("path"):
            src["path"] = str(PROJECT_ROOT / src["path"])
    boundary = tmp_path / "boundary.gpkg"
    gpd.GeoDataFrame({"nom": ["test"]}, geometry=[shapely.box(682000, 7032000, 688000, 7035000)],
                     crs=2154).to_file(boundary, layer="epci")
    raw["id"] = "wfstest"
    raw["sources"]["territory"] = {"kind": "file", "role": "boundary", "path": str(boundary), "layer": "epci"}
    raw["sources"]["points"] = {"kind": "wfs", "role": "protected_areas", "url": url, "typename": "ms:pts",
                                "version": "2.0.0", "bbox_buffer_m": 1000, "max_retries": 1, "backoff_s": 0.05,
                                "columns": {"name": "name", "nom": "category"},
                                "constant_columns": {"protection_type": "ENS"}}
    raw["profiles"] = {}
    raw["publish"]["basemap"] = {}              # keyed by profile: production's goes with the profile
    path = tmp_path / "wfstest.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return load_territory(path)


def test_fetch_source_snapshots_and_unchanged_second_fetch(wfs, tmp_path, monkeypatch):
    url, src = wfs
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    territory = _territory(tmp_path, url)
    store = open_store(str(tmp_path / "store"))
    first = fetch_source(territory, "points", store)
    expected = src.cx[681000:689000, 7031000:7036000]
    assert first["changed"] is True and first["feature_count"] == len(expected)
    assert first["key"] == f"snapshots/wfstest/points/{first['snapshot_id']}.parquet"
    snap = gpd.read_parquet(store.local_path(first["key"]))
    assert {"nom", "protection_type"} <= set(snap.columns) and "category" not in snap.columns
    assert set(snap["protection_type"]) == {"ENS"} and snap.crs.to_epsg() == 2154
    import json
    meta = json.loads(store.get_bytes(first["metadata_key"]))
    assert meta["url"] == url and meta["feature_count"] == len(expected) and meta["kind"] == "wfs"
    assert meta["params"]["bbox"][:4] == [681000, 7031000, 689000, 7036000]

    second = fetch_source(territory, "points", store)
    assert second["changed"] is False and second["snapshot_id"] == first["snapshot_id"]
    parquet = [k for k in store.list("snapshots/wfstest/points/") if k.endswith(".parquet")]
    assert parquet == [first["key"]]
    assert previous_snapshot("wfstest", "points", store)["snapshot_id"] == first["snapshot_id"]
    assert previous_snapshot("wfstest", "points", store, before=first["snapshot_id"]) is None
