"""OSM source: a real small .osm.pbf (tests/fixtures/osm, ODbL) served over local HTTP with ETag / 304."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from helpers.servers import FileServer
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.sources import SourceError, fetch_all, fetch_source, previous_snapshot
from tvb_tasks.sources.osm import (
    extract_layers,
    landuse_from_osm,
    load_tag_rules,
    roads_from_osm,
    watercourses_from_osm,
)
from tvb_tasks.store import open_store

FIXTURES = Path(__file__).parent / "fixtures" / "osm"
PBF = FIXTURES / "test.osm.pbf"
RULES = PROJECT_ROOT / "config" / "osm_tags.yaml"
# the extract covers lon 26.93–26.97, lat 60.52–60.54 (Finland): the test territory works in EPSG:3067
OUTLINE_4326 = shapely.box(26.935, 60.522, 26.965, 60.538)


def _territory(tmp_path: Path, url: str) -> object:
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    for src in raw["sources"].values():
        if src.get("path"):
            src["path"] = str(PROJECT_ROOT / src["path"])
    boundary = tmp_path / "boundary.gpkg"
    gpd.GeoDataFrame({"nom": ["Kouvola test"]}, geometry=[OUTLINE_4326], crs=4326).to_crs(3067).to_file(
        boundary, layer="epci")
    raw.update(id="osmtest", crs="EPSG:3067", profiles={})
    raw["publish"]["basemap"] = {}              # keyed by profile: production's goes with the profile
    raw["sources"]["territory"] = {"kind": "file", "role": "boundary", "path": str(boundary), "layer": "epci"}
    raw["sources"]["osm"] = {"kind": "osm", "role": "osm", "url": url, "tag_rules": str(RULES),
                             "clip_buffer_m": 200, "max_retries": 1, "backoff_s": 0.05}
    path = tmp_path / "osmtest.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return load_territory(path)


@pytest.fixture()
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    with FileServer({"/extracts/test-latest.osm.pbf": PBF.read_bytes()}) as server:
        yield server, f"{server.url}/extracts/test-latest.osm.pbf"


def test_osm_layers_snapshots_and_conditional_refetch(served, tmp_path):
    server, url = served
    territory = _territory(tmp_path, url)
    store = open_store(str(tmp_path / "store"))
    first = fetch_source(territory, "osm", store)
    layers = first["layers"]
    assert set(layers) == {"osm_roads", "osm_railways", "osm_watercourses", "osm_landuse"}
    assert first["changed"] and first["key"] is None and first["role"] == "osm"

    def snap(name):
        return gpd.read_parquet(store.local_path(layers[name]["key"]))

    roads, rail, water, landuse = (snap(n) for n in ("osm_roads", "osm_railways", "osm_watercourses", "osm_landuse"))
    assert list(roads.columns) == ["id", "name", "importance", "nature", "geometry"]
    assert list(rail.columns) == ["id", "name", "status", "geometry"]
    assert list(water.columns) == ["id", "name", "kind", "position", "geometry"]
    assert list(landuse.columns) == ["id", "code_cs", "code_us", "millesime", "geometry"]
    assert roads.crs.to_epsg() == 3067 and len(roads) > 50
    assert set(roads["importance"]) <= {1, 2, 3, 4, 5} and 1 in set(roads["importance"])      # the motorway
    assert set(roads.loc[roads["nature"] == "motorway", "importance"]) == {1}
    assert "cycleway" not in set(roads["nature"]) and "footway" not in set(roads["nature"])
    assert set(rail["status"]) == {"in_use"} and len(rail) >= 1
    assert set(water["kind"]) == {"stream"} and set(water["position"]) <= {"open", "culverted"}
    assert len(landuse) > 5 and landuse["code_cs"].str.startswith("CS").all()
    assert set(landuse["millesime"]) == {2023}          # the fixture server's Last-Modified (Nov 2023)
    # clipped to the outline buffered by 200 m
    clip = gpd.GeoSeries([OUTLINE_4326], crs=4326).to_crs(3067).buffer(200.5).iloc[0]
    for gdf in (roads, rail, water, landuse):
        assert gdf.geometry.within(clip).all()
    meta = json.loads(store.get_bytes(layers["osm_roads"]["metadata_key"]))
    assert meta["url"] == url and meta["etag"] and meta["parent_source"] == "osm"
    assert meta["params"]["tag_rules_sha256"]
    assert server.counts[("/extracts/test-latest.osm.pbf", 200)] == 1

    second = fetch_source(territory, "osm", store)
    assert server.counts[("/extracts/test-latest.osm.pbf", 304)] == 1       # not downloaded again
    assert server.counts[("/extracts/test-latest.osm.pbf", 200)] == 1
    assert second["changed"] is False and second["snapshot_id"] == first["snapshot_id"]
    assert {k: v["snapshot_id"] for k, v in second["layers"].items()} == \
           {k: v["snapshot_id"] for k, v in layers.items()}
    assert all(v["changed"] is False for v in second["layers"].values())
    assert previous_snapshot("osmtest", "osm_roads", store)["snapshot_id"] == layers["osm_roads"]["snapshot_id"]

    # force: downloaded again, reported changed, but no duplicate snapshot (same content)
    forced = fetch_source(territory, "osm", store, force=True)
    assert server.counts[("/extracts/test-latest.osm.pbf", 200)] == 2
    assert forced["changed"] is True and forced["snapshot_id"] == first["snapshot_id"]
    assert len([k for k in store.list("snapshots/osmtest/osm_roads/") if k.endswith(".parquet")]) == 1


def test_fetch_all_flattens_osm_layers(served, tmp_path):
    _server, url = served
    territory = _territory(tmp_path, url)
    refs = fetch_all(territory, open_store(str(tmp_path / "store")))
    assert {"territory", "osm_roads", "osm_railways", "osm_watercourses", "osm_landuse"} <= set(refs)
    assert "osm" not in refs and all(r["key"].endswith(".parquet") for r in refs.values())
    assert refs["osm_landuse"]["role"] == "landuse_overlay" and refs["osm_roads"]["role"] == "roads"


def test_http_error_is_clear(served, tmp_path):
    _server, url = served
    territory = _territory(tmp_path, url.replace("test-latest", "missing"))
    with pytest.raises(SourceError, match="HTTP 404"):
        fetch_source(territory, "osm", open_store(str(tmp_path / "store")))


# --- tag rules on hand-made features ---------------------------------------------------------------------------
def _lines(**cols):
    n = len(next(iter(cols.values())))
    geoms = [shapely.LineString([(i, 0), (i, 1)]) for i in range(n)]
    return gpd.GeoDataFrame({"osm_id": [str(100 + i) for i in range(n)], **cols}, geometry=geoms, crs=4326)


def test_culverted_and_kinds():
    rules = load_tag_rules(RULES)
    lines = _lines(waterway=["stream", "stream", "canal", "drain", "riverbank", None],
                   tunnel=[None, "culvert", None, "yes", None, None], culvert=[None] * 6, covered=[None] * 6,
                   location=[None] * 6, name=["a", "b", "Canal de la Deûle", None, None, None])
    w = watercourses_from_osm(lines, rules.watercourses)
    assert list(w["kind"]) == ["stream", "stream", "canal", "ditch"]
    assert list(w["position"]) == ["open", "culverted", "open", "culverted"]
    assert list(w["id"]) == ["w100", "w101", "w102", "w103"]


def test_road_importance_and_landuse_codes():
    rules = load_tag_rules(RULES)
    r = roads_from_osm(_lines(highway=["motorway", "primary", "secondary", "tertiary", "residential", "footway"],
                              name=[None] * 6), rules.roads)
    assert list(r["importance"]) == [1, 2, 3, 4, 5]
    polys = gpd.GeoDataFrame({"osm_id": [None, "7", None], "osm_way_id": ["1", None, "3"],
                              "natural": ["wetland", "wood", None], "wetland": ["reedbed", None, None],
                              "landuse": [None, None, "parking"], "man_made": [None] * 3, "leisure": [None] * 3},
                             geometry=[shapely.box(0, 0, 1, 1)] * 3, crs=4326)
    lu = landuse_from_osm(polys, rules.landuse, 2024)
    assert list(lu["id"]) == ["w1", "r7"] and list(lu["code_cs"]) == ["CS6.4.1", "CS4.3.2"]


def test_bad_tag_rules(tmp_path):
    bad = tmp_path / "rules.yaml"
    raw = load_yaml(RULES.read_text(encoding="utf-8"))
    raw["roads"]["importance"]["motorway"] = 9
    bad.write_text(dump_yaml(raw))
    with pytest.raises(SourceError, match=r"(?s)rules.yaml.*roads.importance.*1..5"):
        load_tag_rules(bad)
    raw["roads"]["importance"]["motorway"] = 1
    raw["landuse"]["rules"][0]["code_cs"] = "CS9.9.9"
    bad.write_text(dump_yaml(raw))
    with pytest.raises(SourceError, match=r"CS9\.9\.9"):
        load_tag_rules(bad, valid_codes={"CS6.4.1", "US6.2.3"})


def test_extract_without_clip_reads_the_whole_file():
    layers = extract_layers(PBF, load_tag_rules(RULES), crs="EPSG:3067", millesime=2024)
    assert len(layers["roads"]) > len(extract_layers(
        PBF, load_tag_rules(RULES), crs="EPSG:3067", millesime=2024,
        clip_geom=gpd.GeoSeries([shapely.box(26.94, 60.525, 26.95, 60.53)], crs=4326).to_crs(3067).iloc[0]
    )["roads"])
