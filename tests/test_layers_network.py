"""Corridor network method on hand-built scenes with known answers (issue 12: fractures and missing links, corridor
status from gaps and support, rupture downgrade, least-cost corridor polygons, rupture sites, dissolved lengths).

Scenes reuse the builders of ``helpers/layers_scene.py`` (EPSG:2154, 25 m cells, cropland background, friction 100).
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely import LineString, Point

from helpers.layers_scene import CRS, X0, Y0, b, base_config, line, make_scene, read
from tvb_tasks.indicators.communes import dissolved_status_lines
from tvb_tasks.layers import compute_layers, compute_sous_trame
from tvb_tasks.layers.corridors import corridor_status, downgrade_status, gap_and_support
from tvb_tasks.layers.ruptures import group_sites

WOODS = [(b(200, 325, 550, 675), "FOR"), (b(1300, 325, 1650, 675), "FOR")]   # 750 m of cropland between


def _woods(tmp_path, *, roads=(), railways=(), water=(), between=(), config=None):
    return make_scene(tmp_path, outline=b(0, 0, 2000, 1000), landuse=[*WOODS, *between], roads=roads,
                      railways=railways, water=water, config=config)


# --- fractures and missing links -------------------------------------------------------------------------------
def test_motorway_cutting_a_potential_link_gives_a_missing_link_and_a_severity_4_point(tmp_path):
    # the motorway (friction 10000) at x = 930 runs inside one column of cells [925, 950): crossing it costs
    # (100 + 10000) / 2 × 25 × 2 instead of 100 × 25 × 2 → the link (≈ 80,000 without it) exceeds max_cost
    t, inputs = _woods(tmp_path, roads=[(line((930, 0), (930, 1000)), 1)])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert len(cor) == 1
    c = cor.iloc[0]
    assert c["missing_link"] == 1 and c["status"] == "to_create" and "liaison manquante" in c["libelle"]
    assert c["cost"] < t.sous_trames["forest"].max_cost             # the potential link, without the barrier
    assert c["barrier_m"] == pytest.approx(25.0)                     # one cell: half a step on each side
    assert c["cost_saved"] == pytest.approx((10000 - 100) * 25.0)    # (f_barrier − f_crop) × 25 m
    assert c["improvement_score"] == pytest.approx(10000 - 100)      # cost saved per metre of barrier removed
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert len(pts) == 1
    p = pts.iloc[0]
    assert (p["severity"], p["missing_link"], p["infrastructure"], p["infra_class"]) == (4, 1, "road", "1")
    assert p["corridor_id"] == c["id"] and p["improvement_score"] == pytest.approx(9900)
    assert abs(p.geometry.x - (X0 + 930)) < 1e-6 and "rétablir" in p["libelle"]
    assert out["counts"]["missing_links"] == 1 and out["counts"]["rupture_points_missing_links"] == 1


def test_a_missing_link_on_supporting_land_is_to_restore_not_to_create(tmp_path):
    # a scrub strip (friction 5) joins the woods; the motorway cuts it: the land stretch is "existing", lowered one
    # step by the untreated barrier → "to restore" (the crossing is what is to create: the severity-4 point)
    cfg = base_config()
    cfg["sous_trames"]["forest"]["max_cost"] = 100000     # the motorway (≈ 250,000 to cross) cuts the link
    t, inputs = _woods(tmp_path, between=[(b(550, 450, 1300, 550), "GRA")], roads=[(line((930, 0), (930, 1000)), 1)],
                       config=cfg)
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert cor[["missing_link", "status", "downgraded"]].values.tolist() == [[1, "to_restore", 1]]
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert pts[["severity", "missing_link"]].values.tolist() == [[4, 1]]


def test_a_pair_the_real_network_links_round_the_barrier_is_not_drawn_twice(tmp_path):
    # the motorway stops 25 m short of the top edge: the real a–b corridor detours round it (≥ 25 % above the
    # potential one: a gain above min_gain_share) — one corridor for the pair, no missing link on top
    t, inputs = _woods(tmp_path, roads=[(line((930, 0), (930, 975)), 1)])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    cor = read(part, "corridors")
    assert len(cor) == 1 and cor["missing_link"].tolist() == [0] and part["counts"]["missing_links"] == 0
    assert cor["cost"].iloc[0] > 1.25 * 75000          # the detour: ≥ 25 % above the 750 m of crops straight


def test_a_missing_link_running_along_a_canal_gets_one_point_per_barrier(tmp_path):
    from tvb_tasks.layers.friction import Infrastructure
    from tvb_tasks.layers.ruptures import missing_link_ruptures

    t, _ = _woods(tmp_path)
    canal = gpd.GeoDataFrame({"infra_type": ["canal", "road"], "infra_class": ["canal", "1"],
                              "infra_name": ["Canal", "A21"], "friction": [10000.0, 10000.0]},
                             geometry=[LineString([(X0 + 930, Y0), (X0 + 930, Y0 + 1000)]),
                                       LineString([(X0 + 1200, Y0), (X0 + 1200, Y0 + 1000)])], crs=CRS)
    # the potential path zigzags over the canal's centre line three times, then crosses the motorway once
    zigzag = LineString([(X0 + 900, Y0 + 100), (X0 + 960, Y0 + 200), (X0 + 900, Y0 + 300), (X0 + 960, Y0 + 400),
                         (X0 + 1300, Y0 + 400)])
    paths = gpd.GeoDataFrame({"id": ["forest-C001"], "sous_trame": ["forest"], "barrier_m": [200.0],
                              "cost_saved": [1000.0], "improvement_score": [5.0]}, geometry=[zigzag], crs=CRS)
    pts = missing_link_ruptures(t, paths, Infrastructure(lines=canal))
    assert sorted(pts["infra_name"]) == ["A21", "Canal"] and (pts["severity"] == 4).all()
    first = pts.loc[pts["infra_name"] == "Canal"].geometry.iloc[0]
    assert first.distance(Point(X0 + 930, Y0 + 150)) < 1e-6          # the first crossing along the path


@pytest.mark.parametrize("max_barrier_m, n_missing", [(None, 1), (300, 0)])
def test_a_potential_path_along_a_barrier_is_no_fracture_beyond_max_barrier_m(tmp_path, max_barrier_m, n_missing):
    # a canal runs from wood to wood over a scrub strip (friction 5) its land use shows: the barrier-free path
    # follows it for 750 m (barrier_m ≈ 750): it runs along the canal, it does not cross it
    cfg = base_config()
    cfg["corridors"].setdefault("missing_links", {})["max_barrier_m"] = max_barrier_m
    cfg["sous_trames"]["forest"]["max_cost"] = 50000      # 750 m of crops (75,000) is beyond: no real link
    t, inputs = _woods(tmp_path, between=[(b(550, 500, 1300, 525), "GRA")],       # one row of cells
                       water=[(line((550, 512.5), (1300, 512.5)), "canal", "open", "Canal")], config=cfg)
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    assert part["counts"]["missing_links"] == n_missing
    if n_missing:
        assert read(part, "corridors").query("missing_link == 1")["barrier_m"].iloc[0] > 300


def test_canal_and_railway_are_barriers_too(tmp_path):
    cfg = base_config()
    t, inputs = _woods(tmp_path, water=[(line((930, 0), (930, 1000)), "canal", "open", "Canal")], config=cfg)
    pts = gpd.read_file(compute_layers(t, inputs, tmp_path / "o1", sous_trames=["forest"])["gpkg"],
                        layer="rupture_points")
    assert pts[["infrastructure", "severity", "missing_link"]].values.tolist() == [["canal", 4, 1]]
    (tmp_path / "rail").mkdir()
    t2, inputs2 = _woods(tmp_path / "rail", railways=[(line((930, 0), (930, 1000)), "in_use")])
    pts = gpd.read_file(compute_layers(t2, inputs2, tmp_path / "o2", sous_trames=["forest"])["gpkg"],
                        layer="rupture_points")      # the scene's in-use railways are friction 10000
    assert pts[["infrastructure", "severity", "missing_link"]].values.tolist() == [["railway", 4, 1]]


def test_no_missing_link_when_the_barrier_costs_little_or_is_disabled(tmp_path):
    # the motorway stops 100 m short of the woods' row: the real path goes round it at a small extra cost
    t, inputs = _woods(tmp_path, roads=[(line((930, 0), (930, 275)), 1)])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    cor = read(part, "corridors")
    assert len(cor) == 1 and cor["missing_link"].tolist() == [0]
    cfg = base_config()
    cfg["corridors"]["missing_links"] = {"enabled": False}
    (tmp_path / "off").mkdir()
    t2, inputs2 = _woods(tmp_path / "off", roads=[(line((930, 0), (930, 1000)), 1)], config=cfg)
    part = compute_sous_trame(t2, inputs2, "forest", tmp_path / "out2")
    assert part["counts"]["corridors"] == 0 and part["counts"]["missing_links"] == 0


def test_missing_links_are_not_in_the_connectivity_graph():
    from tvb_tasks.indicators.connectivity import links_from_corridors

    cor = gpd.GeoDataFrame({"id": ["c1", "c2"], "from_id": ["A", "B"], "to_id": ["B", "C"], "cost": [1.0, 2.0],
                            "missing_link": [0, 1]}, geometry=[Point(0, 0)] * 2, crs=CRS)
    assert links_from_corridors(cor, "x")[["from_id", "to_id"]].values.tolist() == [["A", "B"]]


# --- corridor status -------------------------------------------------------------------------------------------
class _Status:
    gap_min_friction, support_max_friction = 100, 5
    existing_max_gap_m, existing_min_support_share = 50, 0.6
    restore_max_gap_m, restore_min_support_share = 250, 0.0


def test_gap_and_support_along_a_chain_of_cells():
    lu = np.array([[1, 1, 100, 1000, 100, 5, 30]], dtype=np.float32)
    gap, support, total = gap_and_support(list(range(7)), 7, 25.0, lu, _Status)
    # each cell owns half of each adjacent step: ends 12.5 m, inner cells 25 m
    assert (gap, support, total) == (75.0, 12.5 + 25 + 25, 150.0)
    assert corridor_status(50, 0.6, _Status) == "existing"
    assert corridor_status(50, 0.59, _Status) == "to_restore"
    assert corridor_status(250, 0.0, _Status) == "to_restore"
    assert corridor_status(250.1, 1.0, _Status) == "to_create"


@pytest.mark.parametrize("gap_m, status", [(200, "to_restore"), (300, "to_create")])
def test_status_from_the_longest_gap_on_a_scene(tmp_path, gap_m, status):
    # a 100 m wide scrub strip (friction 5) joins the woods, interrupted by a cropland gap of gap_m metres
    x0 = 550 + (750 - gap_m) / 2
    t, inputs = _woods(tmp_path, between=[(b(550, 450, x0, 550), "GRA"), (b(x0 + gap_m, 450, 1300, 550), "GRA")])
    cor = read(compute_sous_trame(t, inputs, "forest", tmp_path / "out"), "corridors")
    assert len(cor) == 1
    assert cor["max_gap_m"].iloc[0] == pytest.approx(gap_m, abs=25)
    assert cor["status"].iloc[0] == status


@pytest.mark.parametrize("importance, status, downgraded", [(3, "to_restore", 1), (4, "existing", 0)])
def test_untreated_rupture_point_downgrades_the_status(tmp_path, importance, status, downgraded):
    # an existing corridor (scrub strip) crossed by a busy road (importance 3, severity 3) becomes "to restore";
    # a local road (importance 4, severity 2) does not downgrade it
    t, inputs = _woods(tmp_path, between=[(b(550, 450, 1300, 550), "GRA")],
                       roads=[(line((930, 0), (930, 1000)), importance)])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert cor[["status", "downgraded"]].values.tolist() == [[status, downgraded]]
    areas = gpd.read_file(out["gpkg"], layer="corridor_areas")
    assert areas["status"].tolist() == [status]


def test_downgrade_ignores_treated_points():
    cor = gpd.GeoDataFrame({"id": ["a", "b"], "status": ["existing", "to_create"], "downgraded": [0, 0]},
                           geometry=[Point(0, 0)] * 2, crs=CRS)
    pts = gpd.GeoDataFrame({"corridor_id": ["a", "b"], "severity": [4, 4], "treated": [True, False]},
                           geometry=[Point(0, 0)] * 2, crs=CRS)
    out = downgrade_status(cor, pts, 3)
    assert out["status"].tolist() == ["existing", "to_create"] and out["downgraded"].tolist() == [0, 0]


# --- corridor polygons -----------------------------------------------------------------------------------------
def test_least_cost_corridor_polygon_widens_with_the_margin(tmp_path):
    widths = {}
    for margin in (0, 2500, 25000):
        cfg = base_config()
        cfg["corridors"]["width"] = {"cost_margin": margin}
        (tmp_path / str(margin)).mkdir()
        t, inputs = _woods(tmp_path / str(margin), config=cfg)
        part = compute_sous_trame(t, inputs, "forest", tmp_path / f"out{margin}")
        cor, area, res = read(part, "corridors"), read(part, "corridor_areas"), read(part, "reservoirs")
        assert len(area) == 1 and area["corridor_id"].iloc[0] == cor["id"].iloc[0]
        poly = area.geometry.iloc[0]
        assert poly.intersection(res.geometry.union_all()).area == pytest.approx(0, abs=1e-6)   # outside cores
        crop_part = cor.geometry.iloc[0].difference(res.geometry.union_all().buffer(13))
        assert crop_part.within(poly.buffer(13))            # the centre line runs inside its corridor
        widths[margin] = area["area_ha"].iloc[0]
        assert area["area_ha"].iloc[0] == pytest.approx(poly.area / 1e4)
    # the woods face each other over 350 m: every row of that band is a least-cost path (cost-equal straight
    # moves), so the margin-0 corridor is the 750 × 350 m band (26.25 ha); a cell h cells above the band costs
    # ≈ 2 (√2 − 1) h × 2500 more (8-neighbour moves), so 2500 adds about one row each side, 25000 about 12
    assert widths[0] == pytest.approx(26.25, rel=0.1)
    assert widths[0] < widths[2500] < widths[25000]
    assert widths[2500] - widths[0] == pytest.approx(2 * 750 * 25 / 1e4)           # one 25 m row each side
    assert 2 * 750 * 12 * 25 / 1e4 <= widths[25000] - widths[0] <= 2 * 2 * 750 * 12 * 25 / 1e4


# --- sites and dissolved lengths -------------------------------------------------------------------------------
def test_rupture_points_grouped_into_sites():
    def pt(x, st, name="A21", kind="road"):
        return {"sous_trame": st, "infrastructure": kind, "infra_name": name, "geometry": Point(X0 + x, Y0)}

    pts = gpd.GeoDataFrame([pt(0, "forest"), pt(60, "grassland"), pt(140, "mining"), pt(400, "forest"),
                            pt(10, "forest", name="D58"), pt(20, "forest", kind="railway")], crs=CRS)
    sites = group_sites(pts, 100).tolist()
    assert sites == ["S0001", "S0001", "S0001", "S0002", "S0003", "S0004"]   # chained within 100 m, same road
    assert len(set(group_sites(pts, 0))) == 6


def test_sample_of_sites_in_a_release(tmp_path):
    # a pair of woods and, just north of it, a pair of grasslands: their corridors cross the same road at less
    # than site_tolerance_m (here 300 m) apart → two rupture points (one per sous-trame), one site
    cfg = base_config()
    cfg["rupture_points"]["site_tolerance_m"] = 300
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 2000, 1000), config=cfg, landuse=[
        (b(200, 100, 550, 450), "FOR"), (b(1300, 100, 1650, 450), "FOR"),
        (b(300, 460, 550, 710), "GRA"), (b(1300, 460, 1550, 710), "GRA")],
        roads=[(line((930, 0), (930, 1000)), 3)])
    out = compute_layers(t, inputs, tmp_path / "out")
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert sorted(pts["sous_trame"]) == ["forest", "grassland"]
    assert pts.geometry.iloc[0].distance(pts.geometry.iloc[1]) <= 300
    assert out["counts"]["rupture_points"] == 2 and out["counts"]["rupture_sites"] == 1
    assert pts["site_id"].nunique() == 1


def test_lengths_dissolved_across_sous_trames():
    shared = LineString([(0, 0), (1000, 0)])
    cor = gpd.GeoDataFrame({"sous_trame": ["forest", "grassland", "mining"],
                            "status": ["to_create", "existing", "to_restore"]},
                           geometry=[shared, shared, LineString([(0, 0), (0, 500)])], crs=CRS)
    tiers = dissolved_status_lines(cor).set_index("status").length
    assert tiers.to_dict() == {"existing": 1000.0, "to_restore": 500.0}     # counted once, at its best status
    assert tiers.sum() == pytest.approx(cor.geometry.union_all().length)


def test_barrier_through_a_reservoir_is_a_rupture_point(tmp_path):
    # a motorway runs north–south through the western wood (x = 380) and a canal through the eastern one: both are
    # "zones de conflit" for the forest; the canal is not one for a wetland (it is its habitat)
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 2000, 1000), landuse=[
        *WOODS, (b(1000, 700, 1200, 900), "WET")],
        roads=[(line((380, 0), (380, 1000)), 1)],
        water=[(line((1480, 0), (1480, 1000)), "canal", "open", "Canal"),
               (line((1100, 600), (1100, 1000)), "canal", "open", "Canal")])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest", "wetland"])
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    inres = pts[pts["corridor_kind"] == "reservoir"].sort_values("infrastructure")
    assert inres[["infrastructure", "sous_trame", "severity"]].values.tolist() == [["canal", "forest", 4],
                                                                                  ["road", "forest", 4]]
    res = gpd.read_file(out["gpkg"], layer="reservoirs").set_index("id")
    for _, p in inres.iterrows():
        assert p.geometry.within(res.loc[p["corridor_id"]].geometry.buffer(1e-6))
        assert "réservoir coupé" in p["libelle"]
    assert inres.geometry.y.round(1).tolist() == [Y0 + 500.0, Y0 + 500.0]     # the middle of each stretch


# --- issue 12 review: downgrade floor, per-barrier scores, vigilance points -------------------------------------
def test_a_rupture_never_brings_a_corridor_below_to_restore():
    cor = gpd.GeoDataFrame({"id": ["a", "b", "c"], "status": ["existing", "to_restore", "to_create"],
                            "downgraded": [0, 0, 0]}, geometry=[Point(0, 0)] * 3, crs=CRS)
    pts = gpd.GeoDataFrame({"corridor_id": ["a", "b", "c"], "severity": [3, 3, 4]}, geometry=[Point(0, 0)] * 3,
                           crs=CRS)
    out = downgrade_status(cor, pts, 3)
    assert out["status"].tolist() == ["to_restore", "to_restore", "to_create"]
    assert out["downgraded"].tolist() == [1, 0, 0]           # only a changed status counts as downgraded
    legacy = downgrade_status(cor, pts, 3, floor="to_create")
    assert legacy["status"].tolist() == ["to_restore", "to_create", "to_create"]


@pytest.mark.parametrize("floor, status", [("to_restore", "to_restore"), ("to_create", "to_create")])
def test_a_road_across_a_corridor_without_a_long_gap_leaves_it_to_restore(tmp_path, floor, status):
    # a scrub strip with a 200 m crop gap ("to restore": gap ≤ 250 m) crossed by a busy road (severity 3): the
    # crossing is the rupture point, the corridor stays "to restore" (a legacy floor "to_create" lowers it)
    cfg = base_config()
    cfg["corridors"]["status"]["downgrade_floor"] = floor
    t, inputs = _woods(tmp_path, between=[(b(550, 450, 825, 550), "GRA"), (b(1025, 450, 1300, 550), "GRA")],
                       roads=[(line((1150, 0), (1150, 1000)), 3)], config=cfg)
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert len(cor) == 1 and cor["max_gap_m"].iloc[0] == pytest.approx(200, abs=25)
    assert cor["status"].iloc[0] == status
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert pts["severity"].tolist() == [3]


def test_each_barrier_of_a_missing_link_gets_its_own_improvement_score():
    from affine import Affine

    from tvb_tasks.layers import costdistance as cd
    from tvb_tasks.layers.common import Grid
    from tvb_tasks.layers.corridors import barrier_crossing_scores

    # 5 × 20 cells of crops (friction 100, 25 m); reservoir a = column 0, b = column 19. A wall (friction 10000)
    # fills column 6; a second barrier fills column 12 but for its bottom row (a gap the real path uses freely)
    res, H, W = 25.0, 5, 20
    potential = np.full((H, W), 100.0, dtype=np.float32)
    friction = potential.copy()
    friction[:, 6] = 10000
    friction[:4, 12] = 10000
    grid = Grid(Affine(res, 0, 0, 0, -res, H * res), (H, W), CRS, res)
    src_rc = np.array([(r, c) for c in (0, 19) for r in range(H)])
    src_res = np.array([0] * H + [1] * H)
    acc = cd.accumulated_cost(friction, src_rc[src_res == 0], cell_size=res)
    real_cost = float(acc[:, 19].min())
    # 17 crop steps (2,500 each) + into and out of the wall ((100 + 10000) / 2 × 25 each) = 295,000
    assert real_cost == pytest.approx(17 * 2500 + 2 * 126250)
    path = [(2, c) for c in range(W)]                        # the potential (barrier-free) path, straight
    xy = np.array([[6.5 * res, 2.5 * res], [12.5 * res, 2.5 * res]])   # the two crossings (cell centres, row 2)
    wall, leaky = barrier_crossing_scores(xy, 0, 1, real_cost, path, friction, potential, src_rc, src_res, grid,
                                          knight=False, radius_m=75)
    # the wall alone removed (rows 0..4 within 75 m of row 2): the straight crop path, 19 × 2,500 = 47,500
    assert wall["cost_saved"] == pytest.approx(real_cost - 19 * 2500)
    assert wall["barrier_m"] == pytest.approx(25.0) and wall["improvement_score"] == pytest.approx(9900)
    # the leaky barrier alone removed: the wall still stands and the real path already passes its gap: nothing
    assert leaky["cost_saved"] == 0 and leaky["improvement_score"] == 0 and leaky["barrier_m"] == pytest.approx(25)


def test_two_barriers_on_a_missing_link_do_not_share_one_score(tmp_path):
    # the motorway (x = 930) and an in-use railway (x = 1100) with a 100 m gap at the woods' row: removing the
    # railway alone saves nothing while the motorway remains; the motorway's own score is the link's
    t, inputs = _woods(tmp_path, roads=[(line((930, 0), (930, 1000)), 1)],
                       railways=[(line((1100, 0), (1100, 450)), "in_use"), (line((1100, 550), (1100, 1000)), "in_use")])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    pts = gpd.read_file(out["gpkg"], layer="rupture_points").set_index("infrastructure")
    assert cor["missing_link"].tolist() == [1] and pts.loc["road", "severity"] == 4
    # the motorway alone saves (nearly) all the link saves; its score is per metre of motorway only
    assert pts.loc["road", "cost_saved"] == pytest.approx(cor["cost_saved"].iloc[0], rel=0.05)
    assert pts.loc["road", "improvement_score"] == pytest.approx(9900, rel=0.05)
    assert pts.loc["road", "barrier_m"] < cor["barrier_m"].iloc[0]          # the link's metres include the railway
    assert pts.loc["railway", "severity"] == 4 and pts.loc["railway", "cost_saved"] == 0
    assert pts.loc["railway", "improvement_score"] == 0


def test_local_roads_are_vigilance_points_not_rupture_points(tmp_path):
    # an existing corridor (scrub strip) crossed by a road of importance 4 (severity 2): one point de vigilance,
    # no rupture point, no downgrade
    cfg = base_config()
    cfg["rupture_points"].update(road_max_importance=3, vigilance_road_max_importance=4, vigilance_severity=2)
    t, inputs = _woods(tmp_path, between=[(b(550, 450, 1300, 550), "GRA")],
                       roads=[(line((930, 0), (930, 1000)), 4), (line((1800, 0), (1800, 1000)), 5)], config=cfg)
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert cor[["status", "downgraded"]].values.tolist() == [["existing", 0]]
    assert len(gpd.read_file(out["gpkg"], layer="rupture_points")) == 0
    vig = gpd.read_file(out["gpkg"], layer="vigilance_points")
    assert vig[["id", "severity", "infra_class", "corridor_id"]].values.tolist() == [["V0001", 2, "4", cor["id"].iloc[0]]]
    assert abs(vig.geometry.x.iloc[0] - (X0 + 930)) < 1e-6 and vig["libelle"].iloc[0].startswith("Point de vigilance")
    assert out["counts"]["vigilance_points"] == 1 and out["counts"]["rupture_points"] == 0


# --- status per stretch ----------------------------------------------------------------------------------------
def test_stretches_cut_at_long_gaps_and_add_up():
    from tvb_tasks.layers.corridors import stretch_bounds

    # 20 habitat cells, a 2-cell crop gap (50 m: a hedge gap, no cut), 10 habitat cells, 15 crop cells (375 m),
    # 20 habitat cells: three stretches, the middle one "to create"
    lu = np.array([[1] * 20 + [100] * 2 + [1] * 10 + [100] * 15 + [1] * 20], dtype=np.float32)
    n = lu.shape[1]
    out = stretch_bounds(list(range(n)), n, 25.0, lu, _Status)
    assert [(s, e, st) for s, e, st, *_ in out] == [(0, 31, "existing"), (32, 46, "to_create"),
                                                     (47, 66, "existing")]
    assert out[1][3] == pytest.approx(375.0) and out[0][4] == pytest.approx(50.0)
    assert sum(o[3] for o in out) == pytest.approx((n - 1) * 25.0)
    # a 200 m gap is a stretch "to restore" (a field to replant)
    lu2 = np.array([[1] * 10 + [100] * 8 + [1] * 10], dtype=np.float32)
    assert [o[2] for o in stretch_bounds(list(range(28)), 28, 25.0, lu2, _Status)] == \
        ["existing", "to_restore", "existing"]


def test_a_rupture_lowers_only_a_piece_of_the_stretch_it_cuts():
    from shapely import LineString as LS

    from tvb_tasks.layers.corridors import downgrade_stretches

    st = gpd.GeoDataFrame({"id": ["c-S01", "c-S02", "c-S03"], "corridor_id": ["c"] * 3,
                           "status": ["existing", "to_create", "existing"], "length_m": [100.0, 400.0, 400.0],
                           "downgraded": [0, 0, 0]},
                          geometry=[LS([(0, 0), (100, 0)]), LS([(100, 0), (500, 0)]), LS([(500, 0), (900, 0)])],
                          crs=CRS)
    pts = gpd.GeoDataFrame({"corridor_id": ["c", "c"], "severity": [3, 2]},
                           geometry=[Point(700, 0), Point(50, 0)], crs=CRS)
    out = downgrade_stretches(st, pts, 3, length_m=300)
    # S03 (500–900 m) cut at the crossing (700 m): 550–850 lowered, 50 m on either side keep "existing"
    assert out["id"].tolist() == ["c-S01", "c-S02", "c-S03a", "c-S03b", "c-S03c"]
    assert out["status"].tolist() == ["existing", "to_create", "existing", "to_restore", "existing"]
    assert out["downgraded"].tolist() == [0, 0, 0, 1, 0]
    assert out["length_m"].tolist() == pytest.approx([100, 400, 50, 300, 50])
    assert out.geometry.iloc[3].bounds == pytest.approx((550, 0, 850, 0))


def test_one_road_across_a_long_supported_corridor_lowers_only_the_crossing():
    # a 5 km "existing" corridor crossed by one busy road at 2 km and one near its end (4.9 km): only 300 m around
    # the first and the 250 m left at the end (clipped to the line) are "to restore"; by hand: 4.45 km existing
    from shapely import LineString as LS

    from tvb_tasks.layers.corridors import downgrade_stretches

    st = gpd.GeoDataFrame({"id": ["c-S01"], "corridor_id": ["c"], "status": ["existing"], "length_m": [5000.0],
                           "downgraded": [0]}, geometry=[LS([(0, 0), (5000, 0)])], crs=CRS)
    pts = gpd.GeoDataFrame({"corridor_id": ["c", "c"], "severity": [3, 4]},
                           geometry=[Point(2000, 10), Point(4900, 0)], crs=CRS)
    out = downgrade_stretches(st, pts, 3, length_m=300)
    km = out.groupby("status")["length_m"].sum() / 1000
    assert km.to_dict() == pytest.approx({"existing": 4.45, "to_restore": 0.55})
    assert out["status"].tolist() == ["existing", "to_restore", "existing", "to_restore"]
    assert out["length_m"].sum() == pytest.approx(5000)
    # two crossings closer than the piece length give one merged piece
    two = downgrade_stretches(st, pts.assign(geometry=[Point(2000, 0), Point(2100, 0)]), 3, length_m=300)
    assert two["length_m"].tolist() == pytest.approx([1850, 400, 2750])


def test_a_road_across_a_supported_corridor_lowers_the_crossing_not_the_corridor_km(tmp_path):
    # the scrub strip ("existing") crossed by a busy road at x = 930: the corridor is "to restore" as a whole, but
    # only the 300 m of its stretch centred on the road are; the rest of the strip stays existing
    t, inputs = _woods(tmp_path, between=[(b(550, 450, 1300, 550), "GRA")], roads=[(line((930, 0), (930, 1000)), 3)])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    st = gpd.read_file(out["gpkg"], layer="corridor_stretches")
    assert cor["status"].tolist() == ["to_restore"]
    low = st[st["downgraded"] == 1]
    assert low["status"].tolist() == ["to_restore"] and low["length_m"].sum() == pytest.approx(300, abs=1)
    assert low.geometry.iloc[0].centroid.x % 100_000 == pytest.approx(930, abs=25)   # scene offset in x
    assert set(st.loc[st["downgraded"] == 0, "status"]) == {"existing"}
    assert st["length_m"].sum() == pytest.approx(cor["length_m"].iloc[0], abs=0.01)
    assert out["lengths_km"]["corridors_to_restore"] == pytest.approx(0.3, abs=0.01)


def test_one_long_gap_makes_a_stretch_not_the_whole_corridor_to_create(tmp_path):
    # the scrub strip with a 300 m crop gap: the corridor is "to create" (its longest gap), but its km by status
    # come from its stretches: ≈ 300 m to create, the strip on either side existing
    x0 = 550 + (750 - 300) / 2
    t, inputs = _woods(tmp_path, between=[(b(550, 450, x0, 550), "GRA"), (b(x0 + 300, 450, 1300, 550), "GRA")])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    st = gpd.read_file(out["gpkg"], layer="corridor_stretches")
    assert cor["status"].tolist() == ["to_create"]
    assert st["status"].tolist() == ["existing", "to_create", "existing"]
    assert set(st["corridor_id"]) == set(cor["id"]) and st["libelle"].iloc[1].startswith("Tronçon à créer")
    assert st["length_m"].sum() == pytest.approx(cor["length_m"].iloc[0], abs=0.01)
    assert out["lengths_km"]["corridors_to_create"] == pytest.approx(0.3, abs=0.03)
    assert out["lengths_km"]["corridors_existing"] == pytest.approx(cor["length_m"].iloc[0] / 1000 - 0.3, abs=0.03)
