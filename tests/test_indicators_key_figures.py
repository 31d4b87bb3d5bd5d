"""Key figures and the per-commune table of compute_indicators, on the hand-drawn scene (values by hand)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.indicators_scene import scene_territory, write_scene
from tvb_tasks.indicators import compute_indicators, load_published_figures
from tvb_tasks.indicators.key_figures import KEY_FIGURES, compare_with_published

EXPECTED = {
    "artificialised_share_pct": 30.0,                 # 60 ha of 200
    "natural_share_pct": 100 * (30 + 10 + 4 + 1.5 + 10 + 2 + 2) / 200,   # forest, wetland, grassland, mining: 29.75
    "territory_area_ha": 200.0,
    "terrestrial_corridors_km": 0.1 + 0.06 + 1.05,
    "terrestrial_corridors_to_restore_km": 0.06,
    "terrestrial_corridors_to_create_km": 1.05,
    "terrestrial_corridors_existing_km": 0.1,
    "wet_corridors_km": 1.0,                          # 1.4 km long, 1 km inside
    "terrestrial_reservoirs_relays_ha": 30 + 10 + 4 + 2 + 1.5 + 2,   # R1 R2 R4 M1 + relays F3 (inside) and G1
    "wet_reservoirs_relays_ha": 10.0,
    "rupture_points": 2,                              # the third point is outside
    "urban_nature_ha": 0.0,                           # no nature_en_ville polygon in the scene
    "rupture_sites": 2,                               # no site_id in the scene: each point is its own site
    "rupture_points_severity_4": 0,                   # severities 3 and 2 inside
    "vigilance_points": 0,                            # no vigilance_points layer in the scene
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kf")
    territory = scene_territory(tmp)
    result = compute_indicators(territory, write_scene(tmp / "tvb.gpkg"), tmp / "out")
    return territory, tmp / "out", result


def test_key_figures_by_hand(run):
    _, _, result = run
    assert set(result["key_figures"]) == set(EXPECTED) == set(KEY_FIGURES)
    for key, value in EXPECTED.items():
        assert result["key_figures"][key] == pytest.approx(value), key
    assert isinstance(result["key_figures"]["rupture_points"], int)


def test_urban_nature_is_its_own_key_figure():
    from tvb_tasks.indicators.key_figures import key_figures
    communes = pd.DataFrame({"area_ha": [100.0, 50.0], "artificial_ha": [40.0, 10.0], "natural_ha": [5.0, 5.0],
                             "urban_nature_ha": [7.5, 2.5], "terrestrial_corridors_km": 0.0,
                             "corridors_to_restore_km": 0.0, "corridors_to_create_km": 0.0,
                             "corridors_existing_km": 0.0, "wet_corridors_km": 0.0,
                             "terrestrial_reservoirs_relays_ha": 0.0, "wet_reservoirs_relays_ha": 0.0,
                             "rupture_points": 0, "rupture_sites": 0})
    assert key_figures(communes)["urban_nature_ha"] == 10.0
    assert KEY_FIGURES["urban_nature_ha"][1] == "ha"


def test_files_and_json_document(run):
    _, out, result = run
    names = {p.split("/")[-1] for p in result["files"]}
    assert names == {"indicators.json", "key_figures.csv", "communes.csv", "fragmentation.csv",
                     "connectivity_nodes.csv", "connectivity_links.csv"}
    doc = json.loads((out / "indicators.json").read_text(encoding="utf-8"))
    assert result["indicators_json"] == str(out / "indicators.json")
    assert {"territory", "key_figures", "published", "comparison", "fragmentation", "connectivity",
            "change"} <= set(doc)
    assert doc["territory"] == "call" and doc["change"] is None
    assert set(doc["fragmentation"]) == set(doc["connectivity"]) == {"forest", "grassland", "mining", "wetland"}
    forest = doc["connectivity"]["forest"]
    assert forest["distance_kind"] == "cost" and forest["n_nodes"] == 3
    assert forest["pc"] == pytest.approx((900 + 100 + 16 + 2 * (150 + 15 + 2.5)) / 200**2)
    assert forest["top_nodes"][0]["id"] == "R1" and forest["top_nodes"][0]["libelle"] == "Bois 1"
    # the wetland sous-trame (trame bleue) has no corridor: distances along its wet corridors (metres)
    assert doc["connectivity"]["wetland"]["distance_kind"] == "network_m"


def test_comparison_with_the_published_study(run):
    territory, out, _ = run
    published = load_published_figures(territory)["figures"]
    assert published["artificialised_share_pct"] == 45 and published["rupture_points"] == 190
    table = pd.read_csv(out / "key_figures.csv").set_index("indicator")
    assert table.loc["artificialised_share_pct", "published"] == 45
    assert table.loc["artificialised_share_pct", "difference"] == pytest.approx(30 - 45)
    assert table.loc["territory_area_ha", "difference_pct"] == pytest.approx(100 * (200 - 23940) / 23940)
    assert pd.isna(table.loc["terrestrial_corridors_existing_km", "published"])      # not in the study
    assert table.loc["rupture_points", "libelle"] == "Points de rupture"


def test_compare_with_published_handles_missing_values():
    rows = {r["indicator"]: r for r in compare_with_published({"territory_area_ha": 110.0},
                                                              {"territory_area_ha": 100.0})}
    assert rows["territory_area_ha"]["difference"] == pytest.approx(10.0)
    assert rows["territory_area_ha"]["difference_pct"] == pytest.approx(10.0)
    assert rows["rupture_points"]["difference"] is None


def test_commune_table_by_hand(run):
    _, out, _ = run
    table = pd.read_csv(out / "communes.csv", dtype={"insee": str}).set_index("insee")
    assert list(table.index) == ["62001", "62002"]
    a, b = table.loc["62001"], table.loc["62002"]
    assert (a["area_ha"], b["area_ha"]) == pytest.approx((100.0, 100.0))
    assert (a["artificial_pct"], b["artificial_pct"]) == pytest.approx((20.0, 40.0))
    assert a["natural_pct"] == pytest.approx(30 + 2.5 + 4 + 2)          # F1, F2 piece, F4, M1
    assert b["natural_pct"] == pytest.approx(7.5 + 1.5 + 10 + 2)        # F2 piece, F3 piece, W1, G1
    assert a["reservoirs_ha"] == pytest.approx(30 + 2.5 + 4 + 2)
    assert b["relays_ha"] == pytest.approx(1.5 + 2)
    assert b["wet_reservoirs_relays_ha"] == pytest.approx(10.0)
    assert a["corridors_to_create_km"] == pytest.approx(0.55) and b["corridors_to_create_km"] == pytest.approx(0.5)
    assert a["corridors_existing_km"] == pytest.approx(0.1) and b["corridors_existing_km"] == 0
    assert (a["wet_corridors_km"], b["wet_corridors_km"]) == pytest.approx((0.0, 1.0))
    assert a["rupture_points"] + b["rupture_points"] == 2 and b["rupture_points"] >= 1   # boundary point once
    assert a["meff_cbc_forest_ha"] == pytest.approx((900 + 16 + 25) / 100)
    assert b["meff_cut_forest_ha"] == pytest.approx((7.5**2 + 1.5**2) / 100)


def test_connectivity_tables(run):
    _, out, _ = run
    nodes = pd.read_csv(out / "connectivity_nodes.csv")
    forest = nodes[nodes["sous_trame"] == "forest"].set_index("id")
    assert list(forest.index) == ["R1", "R2", "R4"] and list(forest["rank"]) == [1, 2, 3]
    parts = forest[["dpc_intra", "dpc_flux", "dpc_connector"]].sum(axis=1)
    assert parts.to_numpy() == pytest.approx(forest["dpc"].to_numpy())
    links = pd.read_csv(out / "connectivity_links.csv")
    assert set(links.loc[links["sous_trame"] == "forest", "distance_kind"]) == {"cost"}


def test_vigilance_points_have_their_own_key_figure_apart_from_rupture_points(tmp_path):
    import geopandas as gpd
    from shapely import Point

    from helpers.indicators_scene import X0, Y0
    territory = scene_territory(tmp_path)
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    gpd.GeoDataFrame({"id": ["V0001", "V0002", "V0003"], "corridor_id": ["C3"] * 3, "sous_trame": "forest",
                      "infrastructure": "road", "infra_class": "4", "severity": 2, "libelle": "Point de vigilance"},
                     geometry=[Point(X0 + 500, Y0 + 550), Point(X0 + 1100, Y0 + 550), Point(X0 + 5000, Y0)],
                     crs="EPSG:2154").to_file(gpkg, layer="vigilance_points", driver="GPKG")
    figures = compute_indicators(territory, gpkg, tmp_path / "out")["key_figures"]
    assert figures["vigilance_points"] == 2                  # the third one is outside the communes
    assert figures["rupture_points"] == EXPECTED["rupture_points"]


def test_km_by_status_come_from_the_stretches_when_the_release_has_them(tmp_path):
    import geopandas as gpd
    from shapely.ops import substring

    from helpers.indicators_scene import scene_layers
    territory = scene_territory(tmp_path)
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    c3 = scene_layers()["corridors"].set_index("id").geometry["C3"]          # 1,050 m "to create"
    gpd.GeoDataFrame({"id": ["C3-S01", "C3-S02"], "corridor_id": ["C3", "C3"], "sous_trame": ["forest", "forest"],
                      "status": ["existing", "to_create"], "length_m": [750.0, 300.0]},
                     geometry=[substring(c3, 0, 750), substring(c3, 750, 1050)],
                     crs="EPSG:2154").to_file(gpkg, layer="corridor_stretches", driver="GPKG")
    figures = compute_indicators(territory, gpkg, tmp_path / "out")["key_figures"]
    assert figures["terrestrial_corridors_existing_km"] == pytest.approx(0.75)
    assert figures["terrestrial_corridors_to_create_km"] == pytest.approx(0.3)
    assert figures["terrestrial_corridors_to_restore_km"] == 0
    # the per-sous-trame details give the same km by status (from the stretches, not the whole corridors)
    import json
    doc = json.loads((tmp_path / "out" / "indicators.json").read_text(encoding="utf-8"))
    forest = next(r for r in doc["details"]["sous_trames"] if r["sous_trame"] == "forest")
    assert forest["corridors_existing_km"] == pytest.approx(0.75) and forest["corridors_to_create_km"] == pytest.approx(0.3)
    assert forest["corridors_to_restore_km"] == 0
