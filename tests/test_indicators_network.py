"""Issue 12 indicators: Graphab probability convention, wet links along the watercourse network, meff on habitat
cut by the fragmenting infrastructure (FragScape), cut-off Dijkstra, provenance in the history and the change
section (method vs landscape change). Hand-built scenes, EPSG:2154, values by hand."""
from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
from shapely import LineString
from shapely.geometry import box

from helpers.indicators_scene import scene_territory, write_scene
from tvb_tasks.config import load_territory
from tvb_tasks.indicators import append_history, compute_indicators, indicators_config
from tvb_tasks.indicators.connectivity import analyse_network, network_links
from tvb_tasks.indicators.fragmentation import cut_by_infrastructure, fragmentation_metrics, habitat_patches
from tvb_tasks.indicators.history import (
    PROVENANCE_COLUMNS,
    change_causes,
    previous_provenance,
    provenance,
    read_history,
)
from tvb_tasks.publish.report import change_tables

CRS = "EPSG:2154"


def test_graphab_convention_is_configured():
    cfg = indicators_config(load_territory("call")).connectivity
    assert cfg.probability_at_threshold == 0.05          # p = 0.05 at the dispersal distance
    r = analyse_network(pd.DataFrame({"id": ["a", "b"], "area_ha": [1.0, 1.0]}),
                        pd.DataFrame({"from_id": ["a"], "to_id": ["b"], "distance": [300.0]}),
                        landscape_area_ha=10.0, distance_threshold=300.0, probability_at_threshold=0.05)
    assert r.links["probability"].iloc[0] == pytest.approx(0.05)
    assert r.summary["pc"] == pytest.approx((1 + 1 + 2 * 0.05) / 100)


def test_pairs_below_min_probability_count_as_unconnected():
    nodes = pd.DataFrame({"id": ["a", "b"], "area_ha": [1.0, 1.0]})
    links = pd.DataFrame({"from_id": ["a"], "to_id": ["b"], "distance": [2.0]})     # p = 0.5² = 0.25
    kept = analyse_network(nodes, links, landscape_area_ha=10.0, distance_threshold=1.0,
                           probability_at_threshold=0.5, min_probability=0.2)
    cut = analyse_network(nodes, links, landscape_area_ha=10.0, distance_threshold=1.0,
                          probability_at_threshold=0.5, min_probability=0.3)
    assert kept.summary["pc"] == pytest.approx(2.5 / 100) and cut.summary["pc"] == pytest.approx(2 / 100)


def test_wet_links_follow_the_watercourse_network():
    # wetlands W1 and W2 are 500 m apart edge to edge, but the stream joining them makes an L: 300 + 600 + 300 m
    res = gpd.GeoDataFrame({"id": ["W1", "W2", "W3"]}, geometry=[box(0, 0, 100, 100), box(600, 0, 700, 100),
                                                                 box(5000, 5000, 5100, 5100)], crs=CRS)
    stream = gpd.GeoDataFrame(geometry=[LineString([(50, 50), (50, 450), (650, 450), (650, 50)])], crs=CRS)
    links = network_links(res, stream, snap_m=1, max_distance_m=5000)
    assert links[["from_id", "to_id"]].values.tolist() == [["W1", "W2"]]          # W3 is off the network
    assert links["distance"].iloc[0] == pytest.approx(400 - 50 + 600 + 400 - 50)  # outside the wetlands only
    assert network_links(res, stream, snap_m=1, max_distance_m=1000).empty       # beyond the cut-off


def test_wetland_connectivity_uses_network_distances(tmp_path):
    territory = scene_territory(tmp_path)
    compute_indicators(territory, write_scene(tmp_path / "tvb.gpkg"), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "indicators.json").read_text(encoding="utf-8"))
    wet = doc["connectivity"]["wetland"]
    assert wet["distance_kind"] == "network_m"
    # the dispersal distance in metres: the wetland's cost threshold (100) / the water friction (1)
    assert wet["distance_threshold"] == pytest.approx(100.0)


def test_habitat_cut_by_roads_and_canals_before_meff():
    # a 100 ha square cut in two by a 10 m wide road: two patches of 49.5 ha (FragScape)
    habitat = gpd.GeoSeries([box(0, 0, 1000, 1000)], crs=CRS)
    road = gpd.GeoDataFrame({"infra_type": ["road"]}, geometry=[LineString([(500, -10), (500, 1010)])], crs=CRS)
    cut = habitat_patches(cut_by_infrastructure(habitat, road, {"road": 10.0}, "verte"))
    assert sorted(cut["area_total_ha"].round(6)) == [49.5, 49.5]
    m = fragmentation_metrics(cut["area_total_ha"].to_numpy(), cut["area_total_ha"].to_numpy(), 100.0)
    assert m["meff_cut_ha"] == pytest.approx(2 * 49.5**2 / 100) and m["meff_cbc_ha"] == m["meff_cut_ha"]
    wide = road.assign(width_m=30.0)                         # a width column wins over the default
    assert habitat_patches(cut_by_infrastructure(habitat, wide, {"road": 10.0}, "verte"))["area_total_ha"].sum() \
        == pytest.approx(97.0)
    canal = road.assign(infra_type="canal")                  # a canal is habitat of the trame bleue: no cut
    assert len(habitat_patches(cut_by_infrastructure(habitat, canal, {"canal": 20.0}, "bleue"))) == 1
    assert len(habitat_patches(cut_by_infrastructure(habitat, canal, {"canal": 20.0}, "verte"))) == 2


# --- provenance -------------------------------------------------------------------------------------------------
def test_change_causes():
    base = provenance({"landuse": "a"}, "h1", 25, "v1")
    assert change_causes(base, base) == {"inputs_changed": False, "configuration_changed": False,
                                         "resolution_changed": False, "parameters_changed": False,
                                         "code_changed": False, "method_only": False}
    finer = provenance({"landuse": "a"}, "h2", 10, "v1")
    assert change_causes(finer, base)["method_only"] is True and change_causes(finer, base)["resolution_changed"]
    new_data = provenance({"landuse": "b"}, "h2", 25, "v2")
    assert change_causes(new_data, base)["method_only"] is False
    assert change_causes(base, None)["method_only"] is None
    # resolution vs the other parameters: the parameters hash (configuration without the resolution) tells them apart
    assert change_causes(finer, base)["parameters_changed"] is None             # not recorded: unknown
    p25 = provenance({"landuse": "a"}, "h1", 25, "v1", parameters_hash="p1")
    p10 = provenance({"landuse": "a"}, "h2", 10, "v1", parameters_hash="p1")
    assert change_causes(p10, p25)["parameters_changed"] is False and change_causes(p10, p25)["resolution_changed"]
    tuned = provenance({"landuse": "a"}, "h3", 10, "v1", parameters_hash="p2")
    assert change_causes(tuned, p25)["parameters_changed"] is True
    assert change_causes(provenance({"landuse": "a"}, "h2", 25, "v1"), base)["parameters_changed"] is True


def test_parameters_hash_leaves_out_only_the_resolution(tmp_path):
    t = scene_territory(tmp_path)
    finer = t.model_copy(update={"resolution_m": 10.0})
    assert finer.config_hash() != t.config_hash()
    assert finer.config_hash(exclude_resolution=True) == t.config_hash(exclude_resolution=True)


def test_history_rows_carry_provenance_and_old_histories_still_read(tmp_path):
    territory = scene_territory(tmp_path)
    rec = provenance({"landuse": "aa"}, "cfg1", 25.0, "code1")
    r1 = compute_indicators(territory, write_scene(tmp_path / "tvb.gpkg"), tmp_path / "r1", provenance=rec)
    h = append_history(None, r1["indicators_json"], release_id="r1", released_at="2026-01-05T03:00:00Z",
                       snapshot_ids=rec["snapshot_ids"], out_path=tmp_path / "h" / "indicators.parquet")
    rows = read_history(h)
    assert (rows["config_hash"] == "cfg1").all() and (rows["resolution_m"] == "25").all()
    assert (rows["code_version"] == "code1").all()
    assert previous_provenance(h) == rec
    old = pd.read_parquet(h).drop(columns=PROVENANCE_COLUMNS)     # a history written before provenance
    old.to_parquet(tmp_path / "old.parquet")
    assert (read_history(tmp_path / "old.parquet")["config_hash"] == "").all()
    assert previous_provenance(tmp_path / "old.parquet") is None


def test_change_section_flags_a_method_only_change(tmp_path):
    territory = scene_territory(tmp_path)
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    r1 = compute_indicators(territory, gpkg, tmp_path / "r1", provenance=provenance({"landuse": "aa"}, "c1", 25, "v"))
    rec2 = provenance({"landuse": "aa"}, "c2", 10, "v")        # same inputs, 25 → 10 m
    compute_indicators(territory, write_scene(tmp_path / "tvb2.gpkg", drop_reservoir="R4"), tmp_path / "r2",
                       previous_indicators=r1["indicators_json"], provenance=rec2, previous_release_id="r1")
    doc = json.loads((tmp_path / "r2" / "indicators.json").read_text(encoding="utf-8"))
    assert doc["change"]["previous_release"] == "r1"    # the previous indicators.json does not name its release
    causes = doc["change"]["causes"]
    assert causes["method_only"] is True and causes["inputs_changed"] is False and causes["resolution_changed"]
    table = pd.read_csv(tmp_path / "r2" / "change.csv")
    assert table.loc[table["change_abs"] != 0, "method_only"].all()
    tables = change_tables(doc, {})
    origin = next(t for t in tables if t.title == "Origine des changements")
    assert ["Données sources", "inchangée(s)"] in origin.rows and "méthode" in origin.note
    assert "seule méthode" in tables[0].note


def test_cbc_uses_the_unclipped_habitat_patches_when_present(tmp_path):
    # forest R4 (200 × 200 m, 40 m from the northern edge) continues 300 m beyond the territory in the optional
    # habitat_patches layer: inside, the patch grows to 200 × 240 m (4.8 ha); the whole patch is 200 × 540 m
    # (10.8 ha) and counts for CBC only
    from helpers.indicators_scene import bx, scene_layers, write_gpkg

    territory = scene_territory(tmp_path)
    layers = scene_layers()
    layers["habitat_patches"] = gpd.GeoDataFrame({"sous_trame": ["forest"]}, geometry=[bx(250, 760, 450, 1300)],
                                                crs=CRS)
    compute_indicators(territory, write_gpkg(layers, tmp_path / "ext.gpkg"), tmp_path / "ext")
    compute_indicators(territory, write_scene(tmp_path / "plain.gpkg"), tmp_path / "plain")

    def meff(name):
        doc = json.loads((tmp_path / name / "indicators.json").read_text(encoding="utf-8"))
        t = doc["fragmentation"]["forest"]["territory"]
        return t["meff_cut_ha"], t["meff_cbc_ha"]

    (cut_e, cbc_e), (cut_p, cbc_p) = meff("ext"), meff("plain")
    assert cut_e - cut_p == pytest.approx((4.8**2 - 4**2) / 200)
    assert (cbc_e - cut_e) - (cbc_p - cut_p) == pytest.approx(4.8 * (10.8 - 4.8) / 200)
