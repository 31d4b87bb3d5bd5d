"""Culverts stay in the wet network (flagged busé) and each culvert under a road or railway is a wet rupture point;
river obstacles keep their Sandre ROE height of drop and fish pass, which set their severity."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from shapely import Point

from helpers.layers_scene import CRS, X0, Y0, b, base_config, line, make_scene
from tvb_tasks.config import load_territory
from tvb_tasks.layers import compute_layers, engine
from tvb_tasks.layers.ruptures import drop_height, obstacle_severity


def _scene(tmp_path, *, roads, obstacles=()):
    """Two wetlands joined by a stream whose middle 200 m (x 800–1000) are culverted."""
    cfg = base_config()
    cfg["buffer_m"] = 0
    cfg["corridors"]["wet"]["open_only"] = False
    cfg["rupture_points"]["culvert_severity"] = 3
    cfg["rupture_points"]["obstacles"] = {"drop_height_severity": {2.0: 4, 0.5: 3, 0.2: 2}, "unknown_severity": 3,
                                          "fish_pass_lowers_by": 1, "ignore_states": ["Détruit entièrement"]}
    stream = [(line((300, 500), (800, 500)), "stream", "open"),
              (line((800, 500), (1000, 500)), "stream", "culverted"),
              (line((1000, 500), (1500, 500)), "stream", "open")]
    return make_scene(tmp_path, outline=b(0, 0, 2000, 1000), config=cfg, water=stream, roads=roads,
                      obstacles=obstacles,
                      landuse=[(b(200, 400, 400, 600), "WET"), (b(1400, 400, 1600, 600), "WET")])


def test_culvert_under_a_road_is_a_rupture_point_and_stays_in_the_network(tmp_path):
    t, inputs = _scene(tmp_path, roads=[(line((900, 0), (900, 1000)), 3),      # over the culvert
                                        (line((1200, 0), (1200, 1000)), 3)])   # a bridge on the open stream
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    wet = gpd.read_file(out["gpkg"], layer="wet_corridors")
    assert wet["length_m"].sum() == pytest.approx(1200, abs=0.01)        # continuous through the culvert
    assert wet.loc[wet["buse"].astype(bool), "length_m"].sum() == pytest.approx(200, abs=0.01)
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    culverts = pts[pts["infrastructure"] == "culvert"]
    assert len(culverts) == 1
    c = culverts.iloc[0]
    assert (c["corridor_kind"], c["infra_class"], int(c["severity"])) == ("aquatique", "road", 3)
    assert c.geometry.distance(Point(X0 + 900, Y0 + 500)) < 0.01
    assert c["corridor_id"] in set(wet.loc[wet["buse"].astype(bool), "id"])
    assert "busé" in c["libelle"]
    bridges = pts[pts["infrastructure"] == "road"]                       # the open crossing only
    assert len(bridges) == 1 and bridges.geometry.iloc[0].distance(Point(X0 + 1200, Y0 + 500)) < 0.01


def test_culvert_under_no_road_gives_no_point(tmp_path):
    t, inputs = _scene(tmp_path, roads=[(line((1200, 0), (1200, 1000)), 3)])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert "culvert" not in set(pts["infrastructure"])


@pytest.mark.parametrize("culvert_max, points", [(None, 0), (5, 1)])
def test_a_culvert_under_a_local_road_counts_with_culvert_road_max_importance(tmp_path, culvert_max, points):
    # importance 5 is beyond road_max_importance (4 in the scene): no terrestrial rupture, but the pipe under it
    # still breaks the aquatic continuity when culvert_road_max_importance takes every road
    t, inputs = _scene(tmp_path, roads=[(line((900, 0), (900, 1000)), 5)])
    t = t.model_copy(update={"rupture_points": t.rupture_points.model_copy(
        update={"culvert_road_max_importance": culvert_max})})
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert int((pts["infrastructure"] == "culvert").sum()) == points if len(pts) else points == 0


def test_obstacle_severity_from_the_sandre_height_of_drop_and_fish_pass(tmp_path):
    t, _ = _scene(tmp_path, roads=[])
    roe = pd.DataFrame({
        "drop_height_m": ["2.5", "0.8", "0.3", "0.1", "", "", "1.2"],
        "drop_height_class": ["", "", "", "", "De 0.5m à inférieure à 1m", "", ""],
        "fish_pass_code": ["", "0", "", "", "", "", "5"],
        "fish_pass": ["", "Absence de passe", "", "", "", "", "Passe à Anguille"],
    })
    assert drop_height(roe).round(2).fillna(-1).tolist() == [2.5, 0.8, 0.3, 0.1, 0.75, -1, 1.2]
    #  ≥ 2 m → 4 · ≥ 0.5 m → 3 · ≥ 0.2 m → 2 · below → 1 · class midpoint 0.75 → 3 · unknown → 3 · fish pass: 3 − 1
    assert obstacle_severity(t, roe).tolist() == [4, 3, 2, 1, 3, 3, 2]


def test_obstacles_keep_their_attributes_on_the_rupture_points(tmp_path):
    t, inputs = _scene(tmp_path, roads=[], obstacles=[Point(X0 + 600, Y0 + 500.5), Point(X0 + 1300, Y0 + 500),
                                                      Point(X0 + 700, Y0 + 500)])
    roe = gpd.read_parquet(inputs["river_obstacles"])
    roe["drop_height_m"] = [1.6, np.nan, 3.0]
    roe["fish_pass_code"] = ["0", "", ""]
    roe["fish_pass"] = ["Absence de passe", "", ""]
    roe["state"] = ["Existant", "Existant", "Détruit entièrement"]
    roe.to_parquet(inputs["river_obstacles"])
    engine._CACHE.clear()
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    obs = pts[pts["infrastructure"] == "river_obstacle"].sort_values("drop_height_m")
    assert len(obs) == 2                                    # the destroyed weir is no obstacle
    assert obs["drop_height_m"].fillna(-1).tolist() == [1.6, -1]
    assert obs["severity"].tolist() == [3, 3]               # 1.6 m → 3; unknown → 3
    assert obs["fish_pass"].fillna("").tolist() == ["", ""]  # "absence de passe" is no fish pass


def test_call_maps_the_sandre_roe_fields():
    """The production ROE source maps the Sandre ObstEcoul attributes onto the names the layers read."""
    src = load_territory("call", "production").sources["river_obstacles"]
    assert src.typename == "sa:ObstEcoul"
    assert src.columns["drop_height_m"] == "HautChutEtObstEcoul"
    assert src.columns["drop_height_class"] == "LbHautChutClObstEcoul"
    assert src.columns["fish_pass_code"] == "CdTypeDispFranchPiscicole1"
    assert src.columns["state"] == "LbEtOuvrage"


@pytest.mark.parametrize("bridge_severity, expected", [(2, 2), (None, 3)])
def test_an_open_bridge_scores_below_a_culvert(tmp_path, bridge_severity, expected):
    # a culvert under a road (x = 900) and an open bridge (x = 1200) over the same stream: the culvert keeps
    # culvert_severity (3); the bridge gets bridge_severity (2), or the road's friction order (1000 → 3) when unset
    t, inputs = _scene(tmp_path, roads=[(line((900, 0), (900, 1000)), 3), (line((1200, 0), (1200, 1000)), 3)])
    t = t.model_copy(update={"rupture_points": t.rupture_points.model_copy(
        update={"bridge_severity": bridge_severity})})
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points").set_index("infrastructure")
    assert int(pts.loc["culvert", "severity"]) == 3 and int(pts.loc["road", "severity"]) == expected
    assert pts.loc["road", "libelle"].startswith("Point de rupture – pont")


def test_a_culvert_on_no_wet_corridor_is_labelled_hors_corridor(tmp_path):
    # a ditch culverted under the road (x = 900), 300 m north of the stream, links no wetland: no wet corridor
    # holds it, its point says so rather than leaving corridor_id empty
    t, inputs = _scene(tmp_path, roads=[(line((900, 0), (900, 1000)), 3)])
    ditch = gpd.GeoDataFrame({"name": ["Fossé"], "kind": ["stream"], "position": ["culverted"]},
                             geometry=[line((850, 800), (950, 800))], crs=CRS)
    water = gpd.read_parquet(inputs["watercourses"])
    pd.concat([water, ditch], ignore_index=True).to_parquet(inputs["watercourses"])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    culverts = pts[pts["infrastructure"] == "culvert"].sort_values("id")
    far = culverts[culverts.geometry.y > Y0 + 700]
    assert len(culverts) == 2 and far["corridor_id"].tolist() == ["hors corridor"]
    assert (culverts["corridor_id"] != "").all()


@pytest.mark.integration          # stages end to end: two layers runs then the output validation (GX)
def test_a_run_without_the_wet_sous_trame_has_no_culvert_points_and_a_typed_empty_wet_layer(tmp_path):
    """Chosen sous-trames without the trame bleue (the trigger form allows it): no culvert point without a
    sous-trame, an empty wet_corridors layer whose ``libelle`` is text, and the output suites of both layers pass."""
    from tvb_tasks.validate import validate_outputs

    t, inputs = _scene(tmp_path, roads=[(line((900, 0), (900, 1000)), 3)])
    with_wet = compute_layers(t, inputs, tmp_path / "wet", sous_trames=["forest", "wetland"])
    assert "culvert" in set(gpd.read_file(with_wet["gpkg"], layer="rupture_points")["infrastructure"])
    out = compute_layers(t, inputs, tmp_path / "dry", sous_trames=["forest"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert "culvert" not in set(pts["infrastructure"]) and not (pts["sous_trame"].astype(str) == "").any()
    wet = pyogrio.read_info(out["gpkg"], layer="wet_corridors")
    assert wet["features"] == 0
    assert dict(zip(wet["fields"], wet["dtypes"]))["libelle"] == "object"
    forest_only = t.model_copy(update={"sous_trames": {"forest": t.sous_trames["forest"]}})   # as the run has it
    verdict = validate_outputs(forest_only, out["gpkg"], None, tmp_path / "gate")
    for layer in ("wet_corridors", "rupture_points"):          # (no forest habitat in this scene: no reservoirs)
        assert verdict["sources"][layer]["success"], verdict["sources"][layer]["critical_failures"]
