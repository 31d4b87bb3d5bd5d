"""Restoration priorities and project screening on hand-built scenes whose answer is known.

Scene (forest sous-trame, EPSG:2154, offset to Lambert-93): three pairs of reservoirs far apart (no link between
pairs), each pair joined by one corridor "to restore" of the same length, cost and mean friction, crossed once by
the same road (importance 2, friction 1000):

* pair L: two large woods (100 ha each), corridor CL, rupture point PL;
* pairs S and T: two small woods each (4 ha), corridors CS and CT, rupture points PS and PT — identical twins, so
  CT ranks just below CS (ties go to the smaller id) until something makes CT more urgent or cheaper.

Expected: every gain of pair L exceeds those of S / T (PC grows with a_i·a_j); a project on CT lifts it above CS,
and so does a managed sector over CT; a project over CL reports CL and a connectivity loss; a project far from
everything reports nothing.
"""
from __future__ import annotations

import math
import re

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from helpers.priorities_scene import CRS, bx, ln, project, pt, scene
from tvb_tasks.indicators.connectivity import _pc_sum, decay_constant
from tvb_tasks.priorities import compute_priorities, rupture_sites
from tvb_tasks.priorities.network import build_network, degradation, improvement, lowered, shortest_paths
from tvb_tasks.priorities.ranking import barrier_saving, element_width_m, restored_cost, urgency
from tvb_tasks.priorities.screening import read_project, screen_project


def rank_of(priorities: gpd.GeoDataFrame, ident: str) -> int:
    return int(priorities.loc[priorities["id"] == ident, "rank"].iloc[0])


# --- network: incremental updates are exact -----------------------------------------------------------------------
def test_lowered_link_update_matches_a_full_recomputation():
    rng = np.random.default_rng(7)
    n = 30
    links = {}
    for _ in range(70):
        a, b = sorted(rng.choice(n, 2, replace=False))
        links[(int(a), int(b))] = float(rng.uniform(10, 100))
    limit = 1e9
    dist = shortest_paths(n, links, limit)
    for (a, b), d in list(links.items())[:10]:
        new = lowered(dist, a, b, d / 4, limit)
        ref = shortest_paths(n, {**links, (a, b): d / 4}, limit)
        np.testing.assert_allclose(new, ref)
    g = nx.Graph()                                   # and the base matrix agrees with networkx
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((a, b, d) for (a, b), d in links.items())
    np.testing.assert_allclose(dist, nx.floyd_warshall_numpy(g, nodelist=range(n)))


def test_improvement_equals_pc_difference_by_hand():
    nodes = pd.DataFrame({"id": ["a", "b"], "area_ha": [10.0, 20.0]})
    links = pd.DataFrame({"from_id": ["a"], "to_id": ["b"], "distance": [1000.0]})
    net = build_network(nodes, links, distance_threshold=1000, probability_at_threshold=0.5, min_probability=1e-6)
    k = decay_constant(1000, 0.5)
    before = 100 + 400 + 2 * 200 * math.exp(-k * 1000)
    after = 100 + 400 + 2 * 200 * math.exp(-k * 250)
    dpc, dec = improvement(net, [("a", "b", 250.0)])
    assert net.pc_sum == pytest.approx(before)
    assert dpc == pytest.approx(100 * (after - before) / before)
    assert dec == pytest.approx(math.sqrt(after) - math.sqrt(before))
    assert improvement(net, [("a", "b", 2000.0)]) == (0.0, 0.0)     # a longer link changes nothing
    loss, ec_loss = degradation(net, area_loss_ha={}, removed_links=[("a", "b")], lengthened_links=[])
    assert loss == pytest.approx(100 * (500 - before) / before) and ec_loss < 0
    assert degradation(net, area_loss_ha={"a": 10.0}, removed_links=[], lengthened_links=[])[0] == \
        pytest.approx(100 * (400 - before) / before)


def test_local_improvement_equals_a_full_recomputation():
    # 60 nodes on a line 400 m apart with random extra links; the cut-off (≈ 3,000 m) leaves most pairs at +inf,
    # so each change touches a block of the matrix (issue #18); one, two and three links lowered at once,
    # a new link added, a link joining two parts that were out of reach of each other
    rng = np.random.default_rng(11)
    n = 60
    ids = [f"n{i}" for i in range(n)]
    nodes = pd.DataFrame({"id": ids, "area_ha": rng.uniform(1, 50, n)})
    pairs = [(i, i + 1, 400.0) for i in range(n - 1) if i != 29]           # 29–30 not linked: two parts
    pairs += [(int(a), int(a) + 2, float(rng.uniform(700, 1200))) for a in rng.choice(n - 2, 15, replace=False)]
    links = pd.DataFrame(pairs, columns=["from_id", "to_id", "distance"]).assign(
        from_id=lambda f: [ids[i] for i in f["from_id"]], to_id=lambda f: [ids[i] for i in f["to_id"]])
    net = build_network(nodes, links, distance_threshold=1000, probability_at_threshold=0.05, min_probability=0.001)
    assert np.isinf(net.dist).mean() > 0.7                                  # the blocks are small

    def full(changes):
        table = dict(net.links)
        for a, b, d in changes:
            key = (min(ids.index(a), ids.index(b)), max(ids.index(a), ids.index(b)))
            table[key] = min(table.get(key, np.inf), d)
        after = _pc_sum(net.areas, shortest_paths(n, table, net.limit), net.k)
        return 100 * (after - net.pc_sum) / net.pc_sum, math.sqrt(after) - math.sqrt(net.pc_sum)

    for changes in ([("n5", "n6", 100.0)], [("n10", "n11", 0.0), ("n12", "n13", 50.0)],
                    [("n20", "n24", 300.0)], [("n29", "n30", 200.0)],
                    [("n28", "n29", 10.0), ("n29", "n30", 200.0), ("n31", "n32", 10.0)]):
        got = improvement(net, changes)
        assert got == pytest.approx(full(changes), rel=1e-9, abs=1e-12)
        assert got[0] > 0
    assert improvement(net, [("n5", "n6", 500.0)]) == (0.0, 0.0)           # longer: no change
    assert improvement(net, [("n5", "zz", 1.0)]) == (0.0, 0.0)              # unknown id ignored


def test_cut_off_leaves_far_pairs_out():
    nodes = pd.DataFrame({"id": ["a", "b"], "area_ha": [1.0, 1.0]})
    links = pd.DataFrame({"from_id": ["a"], "to_id": ["b"], "distance": [50_000.0]})
    net = build_network(nodes, links, distance_threshold=1000, probability_at_threshold=0.5, min_probability=0.001)
    assert math.isinf(net.dist[0, 1]) and net.pc_sum == pytest.approx(2.0)


def test_restored_cost_and_barrier_saving(territory):
    assert restored_cost(60_000, 1000, 30, 5) == pytest.approx(35_000)
    assert restored_cost(1200, 1000, 1.5, 5) == 1200                 # already cheap: unchanged
    assert restored_cost(5000, 1000, 30, 5) == 1000                  # never below friction 1
    # road importance 2 = friction 1000 in call.yaml, burned at its configured 15 m right-of-way (width_m) — not at
    # the 25 m fallback — over a matrix of mean friction 30
    assert barrier_saving([("road", "2")], 30, 25, territory) == pytest.approx((1000 - 30) * 15)
    assert barrier_saving([("road", "1")], 30, 25, territory) == pytest.approx((10000 - 30) * 30)
    assert element_width_m(territory, "canal", None, 25) == 40
    assert element_width_m(territory, "river_obstacle", None, 25) == 25          # no configured width: fallback
    assert barrier_saving([("road", "5"), ("obstacle", None)], 30, 25, territory) == 0.0


# --- sites --------------------------------------------------------------------------------------------------------
def test_rupture_points_of_one_crossing_form_one_site():
    pts = gpd.GeoDataFrame({"id": ["P1", "P2", "P3", "P4"], "corridor_id": ["C1", "C2", "C3", "C1"],
                            "sous_trame": "forest", "infrastructure": ["road", "road", "road", "railway"],
                            "infra_class": ["2", "2", "2", "in_use"], "infra_name": ["A", "A", "A", "L"]},
                           geometry=[pt(0, 0), pt(60, 0), pt(1000, 0), pt(10, 0)], crs=CRS)
    sites = rupture_sites(pts, 100)
    assert sorted(map(sorted, sites["point_ids"])) == [["P1", "P2"], ["P3"], ["P4"]]
    assert sites.loc[sites["point_ids"].map(len) == 2, "corridor_ids"].iloc[0] == ["C1", "C2"]
    with_ids = rupture_sites(pts.assign(site_id=["X", "Y", "Y", "Y"]), 100)      # the layer's own site ids win
    assert sorted(with_ids["site_id"]) == ["X", "Y"] and with_ids["n_points"].sum() == 4
    shared = rupture_sites(pts.assign(site_id=["X", "Y", "Y", "Y"],
                                      sous_trame=["forest", "forest", "forest", "grassland"]), 100)
    assert sorted(shared["site_id"]) == ["X", "Y-forest", "Y-grassland"]          # one site per sous-trame
    assert (shared.set_index("site_id").loc["Y-grassland", "sous_trame"] == "grassland")


# --- ranking ------------------------------------------------------------------------------------------------------
def test_barrier_between_large_reservoirs_ranks_above_one_between_small(territory):
    layers = scene()
    out = compute_priorities(territory, layers)
    sites = out[out["candidate"] == "rupture_site"].set_index("corridor_ids")
    assert sites.loc["forest-CL", "gain_dpc_pct"] > sites.loc["forest-CS", "gain_dpc_pct"] > 0
    assert sites.loc["forest-CL", "rank"] < sites.loc["forest-CS", "rank"]
    cor = out[out["candidate"] == "corridor"].set_index("id")
    assert cor.loc["forest-CL", "rank"] < cor.loc["forest-CS", "rank"]
    assert out["rank"].tolist() == list(range(1, len(out) + 1))
    assert set(out["rank_sous_trame"]) == set(range(1, len(out) + 1))
    assert {"gain_dpc_pct", "gain_ec_ha", "cost_proxy", "maintenance_share", "conflict", "score"} <= set(out.columns)
    assert out.geom_type.eq("Point").all() and out.crs == CRS
    assert out["libelle"].str.startswith("Priorité ").all()


def test_same_corridor_ranks_higher_when_a_project_threatens_it(territory):
    layers = scene()
    base = compute_priorities(territory, layers)
    assert rank_of(base, "forest-CT") == rank_of(base, "forest-CS") + 1     # twins: CT just below CS
    zac = project(bx(600, 10050, 800, 10300))
    threatened = compute_priorities(territory, layers, projects=zac)
    row = threatened.set_index("id").loc["forest-CT"]
    assert row["conflict"] == pytest.approx(1.0) and row["projects"] == "ZAC test"
    assert rank_of(threatened, "forest-CT") < rank_of(threatened, "forest-CS")
    later = compute_priorities(territory, layers, projects=project(bx(600, 10050, 800, 10300), stage="planned"))
    assert later.set_index("id").loc["forest-CT", "conflict"] == pytest.approx(0.4)   # stage weight


def test_same_corridor_ranks_higher_inside_a_maintenance_sector(territory):
    layers = scene()
    sector = gpd.GeoDataFrame({"id": ["M1"], "name": ["Accotements RN"], "kind": ["verge"], "manager": ["CD62"],
                               "practice": ["fauche tardive"]}, geometry=[bx(150, 10050, 1250, 10150)], crs=CRS)
    out = compute_priorities(territory, layers, maintenance=sector)
    row = out.set_index("id").loc["forest-CT"]
    assert row["maintenance_share"] == pytest.approx(1.0)
    assert row["cost_proxy"] == pytest.approx(row["cost_base"] * (1 - 0.4))
    assert rank_of(out, "forest-CT") < rank_of(out, "forest-CS")


def test_empty_inputs_give_an_empty_ranking(territory):
    layers = scene()
    layers["corridors"] = layers["corridors"].iloc[0:0]
    layers["rupture_points"] = layers["rupture_points"].iloc[0:0]
    out = compute_priorities(territory, layers)
    assert out.empty and list(out.columns)[-1] == "geometry"


# --- screening ----------------------------------------------------------------------------------------------------
def test_project_over_a_corridor_reports_it_and_a_connectivity_loss(territory):
    layers = scene()
    result = screen_project(territory, layers, project(bx(1400, 300, 1600, 700)))
    assert result.corridors["id"].tolist() == ["forest-CL"]
    assert result.corridors["affected_m"].iloc[0] == pytest.approx(200)
    assert result.rupture_sites["corridor_ids"].tolist() == ["forest-CL"]       # P1 at (1500, 500) is inside
    forest = result.connectivity.set_index("sous_trame").loc["forest"]
    assert forest["delta_pc_pct"] < 0 and forest["delta_ec_ha"] < 0
    assert result.summary["max_loss_pc_pct"] > 0 and result.touches_anything


def test_project_over_a_reservoir_reports_the_area_lost(territory):
    layers = scene()
    result = screen_project(territory, layers, project(bx(-100, -100, 500, 1100)))
    res = result.reservoirs.set_index("id").loc["forest-L1"]
    assert res["affected_ha"] == pytest.approx(50.0) and res["affected_share"] == pytest.approx(0.5)
    assert result.connectivity.set_index("sous_trame").loc["forest", "delta_pc_pct"] < 0


def test_line_project_is_buffered(territory):
    layers = scene()
    road = gpd.GeoDataFrame({"id": ["R"], "name": ["Déviation"], "type": ["infrastructure"], "stage": ["planned"],
                             "date": ["2030"]}, geometry=[ln((1500, -200), (1500, 1200))], crs=CRS)
    result = screen_project(territory, layers, road)
    assert result.corridors["affected_m"].iloc[0] == pytest.approx(2 * 15)     # screening.line_buffer_m = 15


def test_project_far_from_everything_reports_nothing(territory):
    layers = scene()
    result = screen_project(territory, layers, project(bx(3200, 2000, 3400, 2200)))
    assert not result.touches_anything
    assert result.summary["max_loss_pc_pct"] == 0 and result.summary["loss_ec_ha"] == 0
    assert (result.connectivity["delta_pc_pct"] == 0).all()


def test_read_project_errors_name_the_file(territory, tmp_path):
    from tvb_tasks.priorities.screening import ScreeningError

    with pytest.raises(ScreeningError, match="not found"):
        read_project(tmp_path / "absent.gpkg", territory)
    bad = tmp_path / "bad.geojson"
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(ScreeningError, match=r"bad\.geojson"):
        read_project(bad, territory)
    pts = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[pt(0, 0)], crs=CRS).to_file(pts)
    with pytest.raises(ScreeningError, match="polygons or lines"):
        read_project(pts, territory)
    wgs = tmp_path / "wgs.geojson"
    project(bx(1400, 300, 1600, 700)).to_crs("EPSG:4326").to_file(wgs)
    assert read_project(wgs, territory).crs == CRS                     # reprojected to the territory CRS


def test_corridors_without_mean_friction_use_cost_per_metre(territory):
    layers = scene()
    layers["corridors"] = layers["corridors"].drop(columns="mean_friction")     # an older release
    out = compute_priorities(territory, layers).set_index("id")
    # cost / length = 60 per m: restored to 5 per m → gain as with mean friction 60
    assert out.loc["forest-CL", "gain_dpc_pct"] > out.loc["forest-CS", "gain_dpc_pct"] > 0


def test_corridor_candidates_accept_status_spellings():
    from tvb_tasks.priorities.ranking import corridor_candidates

    cor = gpd.GeoDataFrame({"id": ["a", "b", "c", "d"], "status": ["à créer", "to_restore", "existant", "A restaurer"]},
                           geometry=[ln((0, 0), (1, 0))] * 4, crs=CRS)
    out = corridor_candidates(cor, ["to_restore", "to_create"])
    assert dict(zip(out["id"], out["status"])) == {"a": "to_create", "b": "to_restore", "d": "to_restore"}


# --- barrier gains: one barrier at a time, on the corridor's own cost basis (review point 1) -------------------------
def series_scene() -> dict[str, gpd.GeoDataFrame]:
    """Scene with pair L joined by a real corridor CL crossed by 4 roads (importance 2, 15 m wide) in series, and
    pair S joined by a missing link CS (to create: cost = the potential cost without its 2 barriers, cost_saved =
    the Barrier-Mapper saving) crossed by 2 roads. Land use: 1000 m at mean friction 30."""
    layers = scene()
    e = (1000 - 30) * 15.0                              # one crossing's excess: (F − f) × configured width
    cor = layers["corridors"].iloc[:2].copy()
    cor["cost"] = [30_000 + 4 * e, 30_000.0]
    cor["status"] = ["to_restore", "to_create"]
    cor["missing_link"] = [0, 1]
    cor["cost_saved"] = [0.0, 40_000.0]
    cor["barrier_m"] = [0.0, 30.0]
    layers["corridors"] = cor.reset_index(drop=True)
    xs = [1200, 1400, 1600, 1800]
    layers["rupture_points"] = gpd.GeoDataFrame({
        "id": [f"P{i}" for i in range(6)], "site_id": [f"forest-S{i}" for i in range(6)],
        "corridor_id": ["forest-CL"] * 4 + ["forest-CS"] * 2, "sous_trame": "forest", "corridor_kind": "terrestre",
        "infrastructure": "road", "infra_class": "2", "infra_name": "RD", "severity": 3, "n_merged": 1,
        "libelle": "rupture"}, geometry=[pt(x, 500) for x in xs] + [pt(500, 5100), pt(900, 5100)], crs=CRS)
    return layers


def test_a_barrier_in_series_gains_what_removing_it_alone_gives(territory):
    from tvb_tasks.priorities.config import restored_friction
    from tvb_tasks.priorities.ranking import sous_trame_networks

    layers = series_scene()
    net = sous_trame_networks(territory, layers)["forest"]
    out = compute_priorities(territory, layers, networks={"forest": net}).set_index("id")
    e = (1000 - 30) * 15.0
    f_r = restored_friction(territory)
    # CL: one barrier removed, the 3 others and the land use in place
    one = improvement(net, [("forest-L1", "forest-L2", 30_000 + 3 * e)])[0]
    full = improvement(net, [("forest-L1", "forest-L2", max(restored_cost(30_000 + 4 * e, 1000, 30, f_r) - 4 * e,
                                                            1000))])[0]
    for s in ("forest-S0", "forest-S1", "forest-S2", "forest-S3"):
        assert out.loc[s, "gain_dpc_pct"] == pytest.approx(one)
    assert 0 < one < full == pytest.approx(out.loc["forest-CL", "gain_dpc_pct"])
    # CS (missing link, absent from the graph): a site removes half the Barrier-Mapper saving of 40 000
    half = improvement(net, [("forest-S1", "forest-S2", 30_000 + 20_000)])[0]
    assert out.loc["forest-S4", "gain_dpc_pct"] == pytest.approx(half) == out.loc["forest-S5", "gain_dpc_pct"]
    assert half < out.loc["forest-CS", "gain_dpc_pct"]


def test_a_site_never_gains_more_than_restoring_its_corridors(territory):
    """Invariant on every scene: a site's gain ≤ the gain of fully restoring all the corridors it sits on."""
    from tvb_tasks.priorities.config import restored_friction
    from tvb_tasks.priorities.ranking import corridor_restored_distance, sous_trame_networks

    for layers in (scene(), series_scene()):
        net = sous_trame_networks(territory, layers)["forest"]
        out = compute_priorities(territory, layers, networks={"forest": net})
        cor = layers["corridors"].set_index("id")
        pts = layers["rupture_points"]
        for _, site in out[out["candidate"] == "rupture_site"].iterrows():
            ids = site["corridor_ids"].split(", ")
            excess = {c: barrier_saving(list(zip(pts.loc[pts["corridor_id"] == c, "infrastructure"],
                                                 pts.loc[pts["corridor_id"] == c, "infra_class"])),
                                        float(cor.loc[c, "mean_friction"]), 25, territory) for c in ids}
            full = improvement(net, [(cor.loc[c, "from_id"], cor.loc[c, "to_id"],
                                      corridor_restored_distance(cor.loc[c], restored_friction(territory), excess[c]))
                                     for c in ids])[0]
            assert site["gain_dpc_pct"] <= full + 1e-9


# --- zero gain and threats (review point 3) ---------------------------------------------------------------------------
def test_zero_gain_items_are_flagged_and_ranked_after_every_useful_one(territory):
    layers = scene()
    cor = layers["corridors"]
    cor.loc[cor["id"] == "forest-CS", ["cost", "mean_friction"]] = [1000.0, 1.0]   # already as cheap as can be
    out = compute_priorities(territory, layers, projects=project(bx(600, 5050, 800, 5300)))
    row = out.set_index("id")
    zero = out[out["gain_dpc_pct"] <= 0]
    assert set(zero["id"]) == {"forest-CS", "forest-S002"}        # the corridor and its site gain nothing
    assert row.loc["forest-CS", "flag"] == "menacé, gain nul"      # threatened but useless: visible, not a priority
    assert row.loc["forest-S002", "conflict"] > 0 and row.loc["forest-S002", "flag"] == "menacé, gain nul"
    assert zero["rank"].min() > out.loc[out["gain_dpc_pct"] > 0, "rank"].max()
    assert (out.loc[out["gain_dpc_pct"] > 0, "flag"] == "").all()
    # a threat multiplies the urgency of a useful item by 1 + w_conflict · conflict
    threatened = compute_priorities(territory, scene(), projects=project(bx(600, 10050, 800, 10300))).set_index("id")
    w = territory_weights(territory)
    base = compute_priorities(territory, scene()).set_index("id")
    assert threatened.loc["forest-CT", "rank"] <= base.loc["forest-CT", "rank"]
    assert threatened.loc["forest-CT", "flag"] == "menacé"
    u = urgency(np.array([base.loc["forest-CT", "gain_dpc_pct"], 1e9]), np.array([1.0, 0.0]),
                np.array([base.loc["forest-CT", "cost_proxy"], 0.0]), w)
    u0 = urgency(np.array([base.loc["forest-CT", "gain_dpc_pct"], 1e9]), np.array([0.0, 0.0]),
                 np.array([base.loc["forest-CT", "cost_proxy"], 0.0]), w)
    assert u[0] == pytest.approx(u0[0] * (1 + w.conflict))


def test_a_threat_does_not_make_a_near_zero_gain_outrank_a_large_one(territory):
    """Review 15 point 4: forest-C043 (ΔPC 0.0025 %, conflict 1) ranked above mining-C018 (ΔPC 13.7 %)."""
    w = territory_weights(territory)
    u = urgency(np.array([0.0025, 13.7, 0.0]), np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0]), w)
    assert u[1] > u[0] > u[2] == 0.0


def test_the_score_order_is_the_rank_on_a_0_100_scale(territory):
    """Review 15 point 5: the published score decreases with the rank, in [0, 100], 0 exactly for zero gain."""
    layers = scene()
    cor = layers["corridors"]
    cor.loc[cor["id"] == "forest-CS", ["cost", "mean_friction"]] = [1000.0, 1.0]
    out = compute_priorities(territory, layers, projects=project(bx(600, 5050, 800, 5300))).sort_values("rank")
    assert (np.diff(out["score"].to_numpy()) <= 1e-12).all()
    assert out["score"].max() == pytest.approx(100.0) and out["score"].min() >= 0.0
    assert (out.loc[out["gain_dpc_pct"] <= 0, "score"] == 0.0).all()
    assert (out.loc[out["gain_dpc_pct"] > 0, "score"] > 0.0).all()


def territory_weights(territory):
    from tvb_tasks.priorities.config import priorities_config

    return priorities_config(territory).weights


def test_the_score_rule_is_published_with_its_weights(territory, tmp_path):
    import json

    from tvb_tasks.priorities.stage import priorities_stage, report_tables

    gpkg = tmp_path / "tvb.gpkg"
    for name, gdf in scene().items():
        gdf.to_file(gpkg, layer=name, driver="GPKG")
    priorities_stage(territory, gpkg, tmp_path / "ind", inputs={})
    doc = json.loads((tmp_path / "ind" / "priorities.json").read_text(encoding="utf-8"))
    w = territory_weights(territory)
    assert doc["score"]["weights"] == {"conflict": w.conflict, "cost": w.cost}
    assert f"(1 + {w.conflict:g} × conflit)" in doc["score"]["formula"] and "sous-trames" in doc["score"]["formula"]
    assert doc["zero_gain"] == 0
    assert report_tables(tmp_path / "ind")[0].note.startswith("Score (0 à 100, dans l'ordre du rang)")


def _pdf_text(path) -> str:
    import subprocess

    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_fiche_pdf_wraps_every_sentence_in_full_and_draws_real_tables(territory, tmp_path):
    import re

    from tvb_tasks.priorities.config import fiches_config
    from tvb_tasks.priorities.sheets import write_fiches

    layers = scene()
    prio = compute_priorities(territory, layers)
    write_fiches(territory, layers, prio, tmp_path, release_id="R1", attribution="Test", top_n=10)
    raw = _pdf_text(tmp_path / "fiche_forest.pdf")
    flat = re.sub(r"\s+", " ", raw)
    for sentence in fiches_config(territory)["forest"].general.split(". "):    # the recommendation, every word
        assert re.sub(r"\s+", " ", sentence.strip()) in flat
    assert " | " not in raw                                                   # no flattened "a | b | c" rows
    row = next(line for line in raw.splitlines() if "Corridor à restaurer, 1,0 km" in line)   # readable label
    assert len(re.split(r"\s{2,}", row.strip())) >= 3                          # cells laid out in columns


# --- screening ↔ priorities (review point 4) --------------------------------------------------------------------------
def test_screening_lists_the_priorities_touched_and_the_project_facts(territory, tmp_path):
    layers = scene()
    prio = compute_priorities(territory, layers)
    zac = project(bx(1400, 300, 1600, 700), stage="programmed")                   # over CL and its road site
    res = screen_project(territory, layers, zac, priorities=pd.DataFrame(prio.drop(columns="geometry")))
    ranks = prio.set_index("id")["rank"]
    assert res.priorities["id"].tolist() == sorted(["forest-CL", "forest-S001"], key=lambda i: ranks[i])
    assert res.priorities["rank"].tolist() == sorted(ranks[["forest-CL", "forest-S001"]].tolist())
    assert res.project["communes"] == ["Aville (62001)"] and res.project["stage"] == "programmed"
    assert res.project["type"] == "zac" and res.project["date"] == "2027-01-01"
    assert not res.summary["outside_territory"]
    from tvb_tasks.priorities.sheets import screening_sheet

    screening_sheet(territory, layers, res, tmp_path, project_name="ZAC", release_id="R1", attribution="T")
    text = re.sub(r"\s+", " ", _pdf_text(tmp_path / "fiche.pdf"))
    assert "Priorités de restauration touchées" in text and "Aville (62001)" in text and "route RN 1" in text
    assert "étape : programmé" in text and "type : ZAC" in text                   # review 15 point 8: French
    import subprocess

    info = subprocess.run(["pdfinfo", str(tmp_path / "fiche.pdf")], check=True, capture_output=True, text=True)
    assert re.search(r"^Pages:\s+1$", info.stdout, re.M)                          # one A4 page, as the issue asks
    assert "programmed" not in text and not re.search(r"\bforest\b(?!-)", text)
    from tvb_tasks.priorities.screening import result_json
    from tvb_tasks.priorities.stage import describe

    doc = {"project": "ZAC", "release_id": "R1", **result_json(res),
           "sous_trame_labels": {k: v.label for k, v in territory.sous_trames.items()}}
    printed = "\n".join(describe({"result": doc}))
    for code in ("(forest,", "to_restore", "connectivité forest", "programmed", "culvert", "(wetland"):
        assert code not in printed, code
    assert "étape : programmé" in printed and "connectivité – Sous-trame forestière" in printed


def test_crossing_names_have_no_doubled_words():
    from tvb_tasks.priorities.ranking import crossing_name, crossing_phrase

    assert crossing_phrase("road", "3", "Route départementale 937") == "Route départementale 937"
    assert crossing_phrase("canal", "canal", "Canal de la Deûle") == "Canal de la Deûle"
    assert crossing_phrase("road", "1", "A21") == "route A21"
    assert crossing_phrase("culvert", "road", "N47") == "ouvrage busé sous la route N47"
    assert crossing_name("road", "3", "Route départementale 937") == "Franchissement de la Route départementale 937"
    assert crossing_name("canal", None, "Canal de la Deûle") == "Franchissement du Canal de la Deûle"
    assert crossing_name("road", "1", "A21") == "Franchissement de la route A21"
    assert crossing_name("culvert", "railway", "") == "Ouvrage busé sous la voie ferrée"
    assert crossing_name("river_obstacle", None, "Seuil 3") == "Franchissement de l'obstacle à l'écoulement Seuil 3"


def test_project_outside_the_territory_gets_a_clear_warning(territory, tmp_path):
    from tvb_tasks.priorities.sheets import screening_sheet
    from tvb_tasks.priorities.stage import describe

    layers = scene()
    far = project(ln((20_000, 0), (21_000, 0)))                                 # a line 16 km east of the communes
    res = screen_project(territory, layers, far)
    assert res.summary["outside_territory"] and not res.touches_anything
    assert res.project["has_lines"] and res.project["line_buffer_m"] > 0
    screening_sheet(territory, layers, res, tmp_path, project_name="Loin", release_id="R1", attribution="T")
    assert "hors du territoire" in _pdf_text(tmp_path / "fiche.pdf")
    from tvb_tasks.priorities.screening import result_json

    lines = describe({"result": {"project": "Loin", "release_id": "R1", **result_json(res)}})
    assert any("hors du territoire" in line for line in lines)
    assert not any("Aucun élément" in line for line in lines)


def wet_scene() -> dict[str, gpd.GeoDataFrame]:
    """The scene plus two wetland reservoirs (W1, W2: 200 m × 200 m) joined by a 2 km watercourse (wet corridor)."""
    layers = scene()
    wres = gpd.GeoDataFrame({"id": ["wetland-W1", "wetland-W2"], "sous_trame": "wetland", "origin": "habitat",
                             "libelle": ["W1", "W2"]},
                            geometry=[bx(5000, 0, 5200, 200), bx(7200, 0, 7400, 200)], crs=CRS)
    wres["area_ha"] = wres.area / 1e4
    layers["reservoirs"] = pd.concat([layers["reservoirs"], wres], ignore_index=True)
    layers["wet_corridors"] = gpd.GeoDataFrame({"id": ["wetland-H1"], "sous_trame": ["wetland"],
                                                "length_m": [2000.0], "libelle": ["Souchez"], "name": ["Souchez"]},
                                               geometry=[ln((5200, 100), (7200, 100))], crs=CRS)
    return layers


def test_screening_across_a_watercourse_reports_the_wetland_loss(territory):
    from tvb_tasks.priorities.ranking import sous_trame_networks

    layers = wet_scene()
    nets = sous_trame_networks(territory, layers)
    net = nets["wetland"]
    assert len(net.links) == 1 and next(iter(net.links.values())) == pytest.approx(2000.0)   # along the watercourse
    a = 4.0                                                                              # ha each
    before = 2 * a * a + 2 * a * a * math.exp(-net.k * 2000.0)
    assert net.pc_sum == pytest.approx(before)
    res = screen_project(territory, layers, project(bx(6000, 0, 6100, 300)), networks=nets)   # over the river
    row = res.connectivity.set_index("sous_trame").loc["wetland"]
    # review 15 point 6: the stream is piped as a culvert would pipe it (its configured passability), not cut
    from tvb_tasks.indicators import indicators_config
    from tvb_tasks.priorities.config import screening_config

    assert screening_config(territory).watercourse_effect == "culvert"
    pi = indicators_config(territory).connectivity.wet_passability.passability(
        "culvert", territory.rupture_points.culvert_severity)
    assert 0 < pi < 1
    after = 2 * a * a + 2 * a * a * math.exp(-net.k * 2000.0) * pi
    assert row["delta_pc_pct"] == pytest.approx(100 * (after - before) / before, rel=1e-6)
    assert row["corridors_touched"] == 1 and res.wet_corridors["id"].tolist() == ["wetland-H1"]
    cut = territory.model_copy(update={"screening": screening_config(territory).model_copy(
        update={"watercourse_effect": "remove"})})
    row = screen_project(cut, layers, project(bx(6000, 0, 6100, 300)), networks=nets).connectivity \
        .set_index("sous_trame").loc["wetland"]
    assert row["delta_pc_pct"] == pytest.approx(100 * (2 * a * a - before) / before)       # remove: the link is gone
    assert res.connectivity.set_index("sous_trame").loc["forest", "delta_pc_pct"] == 0


# --- review 15 points 3 and 7: top lists without zero-gain items, per-commune priorities ----------------------------
def test_top_lists_hold_only_items_with_a_gain_and_say_how_many_have_none(territory, tmp_path):
    from tvb_tasks.priorities.stage import commune_priority_rows, priorities_stage, report_tables

    layers = scene()
    cor = layers["corridors"]
    cor.loc[cor["id"] == "forest-CS", ["cost", "mean_friction"]] = [1000.0, 1.0]   # gains nothing
    gpkg = tmp_path / "tvb.gpkg"
    for name, gdf in layers.items():
        gdf.to_file(gpkg, layer=name, driver="GPKG")
    priorities_stage(territory, gpkg, tmp_path / "ind", inputs={})
    table = report_tables(tmp_path / "ind")[0]
    assert table.columns[-1] == "Alerte"
    assert not any("forest-CS" in r[1] or "forest-S002" in r[1] for r in table.rows)
    assert "2 élément(s) sans gain" in table.note
    prio = compute_priorities(territory, layers)
    rows, n_zero = commune_priority_rows(pd.DataFrame(prio.drop(columns="geometry")), "62002")   # Bville
    useful = prio[(prio["gain_dpc_pct"] > 0) & (prio["insee"] == "62002")].sort_values("rank_commune")
    assert n_zero == 2 and len(rows) == min(10, len(useful))
    assert [r[0] for r in rows] == [str(i) for i in useful["rank_commune"].head(10)]
    assert [r[1] for r in rows] == [str(i) for i in useful["rank"].head(10)]
    assert commune_priority_rows(None, "62001") == ([], 0)


def test_link_noise_is_written_as_zero():
    from tvb_tasks.indicators.compute import drop_float_noise

    out = drop_float_noise(pd.DataFrame({"dpc": [6.05e-17, -3e-15, 0.5], "id": ["a", "b", "c"]}))
    assert out["dpc"].tolist() == [0.0, 0.0, 0.5]


def test_rupture_sites_get_a_french_status_and_wet_point_fields_a_title(territory, tmp_path):
    from tvb_tasks.priorities.stage import priorities_stage
    from tvb_tasks.publish.formats import add_french_labels
    from tvb_tasks.publish.styles import FIELD_LABELS

    gpkg = tmp_path / "tvb.gpkg"
    for name, gdf in scene().items():
        gdf.to_file(gpkg, layer=name, driver="GPKG")
    priorities_stage(territory, gpkg, tmp_path / "ind", inputs={})
    add_french_labels(gpkg, {k: v.label for k, v in territory.sous_trames.items()})
    prio = gpd.read_file(gpkg, layer="priorities")
    sites = prio[prio["candidate"] == "rupture_site"]
    assert len(sites) and (sites["libelle_statut"] == "Site de rupture (franchissement)").all()
    assert set(prio.loc[prio["candidate"] == "corridor", "libelle_statut"]) <= {"À restaurer", "À créer"}
    assert FIELD_LABELS["drop_height_m"] and FIELD_LABELS["fish_pass"]


def test_wetland_fiche_shows_its_watercourse_corridors_not_empty_statuses(territory, tmp_path):
    from tvb_tasks.priorities.sheets import sous_trame_fiche

    layers = wet_scene()
    prio = compute_priorities(territory, layers)
    sous_trame_fiche(territory, layers, prio, "wetland", tmp_path, release_id="R1", attribution="T")
    text = re.sub(r"\s+", " ", _pdf_text(tmp_path / "fiche_wetland.pdf"))
    assert "Corridors humides (réseau des cours d'eau) 1" in text
    assert "Corridors existants" not in text and "Corridors à créer" not in text
    sous_trame_fiche(territory, layers, prio, "forest", tmp_path, release_id="R1", attribution="T")
    assert "Corridors à restaurer" in re.sub(r"\s+", " ", _pdf_text(tmp_path / "fiche_forest.pdf"))


# --- cost per stretch, crossing-only corridors (review 15b point 1) --------------------------------------------------
def _stretches(rows: list[tuple[str, str, float, float, str, int]]) -> gpd.GeoDataFrame:
    """Stretches (corridor id, id, x from, x to, status, downgraded) along the scene's horizontal corridors."""
    y = {"forest-CL": 500, "forest-CS": 5100, "forest-CT": 10100}
    offset = {"forest-CL": 1000, "forest-CS": 200, "forest-CT": 200}
    return gpd.GeoDataFrame(
        {"id": [r[1] for r in rows], "corridor_id": [r[0] for r in rows], "sous_trame": "forest",
         "status": [r[4] for r in rows], "length_m": [r[3] - r[2] for r in rows], "max_gap_m": 0.0,
         "support_share": 1.0, "missing_link": 0, "downgraded": [r[5] for r in rows]},
        geometry=[ln((offset[r[0]] + r[2], y[r[0]]), (offset[r[0]] + r[3], y[r[0]])) for r in rows], crs=CRS)


def test_corridor_cost_comes_from_its_stretches_and_crossing_only_corridors_go_to_their_site(territory):
    """CL: 600 m existing + 400 m of gap to create → cost 400 × 3 (not 1000 × 1); CS: wholly supported, "to
    restore" only because its road crossing lowered the stretch the point falls on → no land candidate, its gain is
    its site's (counted once); CT without stretches keeps the whole-corridor cost (older releases)."""
    layers = scene()
    layers["corridor_stretches"] = _stretches([
        ("forest-CL", "forest-CL-S01", 0, 600, "existing", 0),
        ("forest-CL", "forest-CL-S02", 600, 1000, "to_create", 0),
        ("forest-CS", "forest-CS-S01", 0, 450, "existing", 0),
        ("forest-CS", "forest-CS-S02", 450, 550, "to_restore", 1),
        ("forest-CS", "forest-CS-S03", 550, 1000, "existing", 0)])
    out = compute_priorities(territory, layers).set_index("id")
    create, restore = territory.priorities.cost.per_m["to_create"], territory.priorities.cost.per_m["to_restore"]
    assert out.loc["forest-CL", "cost_base"] == pytest.approx(400 * create)
    assert "forest-CS" not in out.index
    assert out.attrs["crossing_only"] == ["forest-CS"]
    assert out.loc["forest-CT", "cost_base"] == pytest.approx(1000 * restore)
    site = out[(out["candidate"] == "rupture_site") & (out["corridor_ids"] == "forest-CS")]
    assert len(site) == 1 and site["gain_dpc_pct"].iloc[0] > 0
    # the same scene without stretches: CS is a land candidate again at the whole-corridor cost
    plain = compute_priorities(territory, scene()).set_index("id")
    assert plain.loc["forest-CS", "cost_base"] == pytest.approx(1000 * restore)
    assert plain.loc["forest-CL", "cost_base"] == pytest.approx(1000 * restore)


def test_history_says_an_item_entered_the_top_rather_than_stayed():
    """An item ranked 297 before and 2 now "entre dans le top" (not "maintenue"); matched ids may differ."""
    from tvb_tasks.priorities.ranking import top_changes

    cur = pd.DataFrame({"id": ["A", "B", "C"], "sous_trame": "forest", "rank": [1, 2, 3], "score": [100, 50, 10]})
    prev = pd.DataFrame({"id": ["X", "Y", "Z"], "sous_trame": "forest", "rank": [1, 2, 297], "score": [9, 8, 0]})
    out = top_changes(cur, prev, 2, {"A": "X", "B": "Z", "C": "Y"}).set_index("id")
    assert out.loc["A", "evolution"] == "maintenue"
    assert out.loc["B", "evolution"] == "entrée dans le top" and out.loc["B", "rank_previous"] == 297
    assert out.loc["C", "evolution"] == "sortie du top" and out.loc["C", "id_previous"] == "Y"
    by_id = top_changes(cur, prev.assign(id=["A", "B", "C"]), 2).set_index("id")     # no matches given: by id
    assert by_id.loc["B", "evolution"] == "maintenue"


def test_history_rows_name_the_former_id():
    from tvb_tasks.priorities.stage import history_name

    assert history_name({"id": "S0008", "id_previous": "mining-C026"}) == "S0008 (ex mining-C026)"
    assert history_name({"id": "S0008", "id_previous": "S0008"}) == "S0008"
    assert history_name({"id": None, "id_previous": "forest-CL"}) == "forest-CL"
    assert history_name({"id": "forest-CL", "id_previous": None}) == "forest-CL"


# --- maintenance overlap, local (issue #18: each candidate meets only the sectors near it) ---------------------------
def _overlap_against_all_sectors(geoms, maintenance, buffer_m):
    """The previous implementation's shares: each geometry against ONE union of all the buffered sectors."""
    import shapely

    zone = shapely.buffer(shapely.union_all(maintenance.geometry.values), buffer_m)
    out = []
    for g in geoms:
        if g.geom_type in ("Point", "MultiPoint"):
            out.append(float(shapely.intersects(zone, shapely.get_parts(g)).mean()))
        else:
            out.append(min(g.intersection(zone).length / g.length, 1.0) if g.length > 0 else 0.0)
    return np.array(out)


def test_maintenance_overlap_is_the_overlap_with_all_sectors():
    import shapely

    from tvb_tasks.priorities.costs import maintenance_overlap

    # two overlapping sectors (0..400 and 300..700 along y = 0..100) and one far away; buffer 25 m
    sectors = gpd.GeoDataFrame({"name": ["A", "B", "C"]},
                               geometry=[bx(0, 0, 400, 100), bx(300, 0, 700, 100), bx(5000, 5000, 5100, 5100)], crs=CRS)
    geoms = np.array([ln((-200, 50), (1000, 50)),             # in A ∪ B ± 25 m: from -25 to 725 → 750 of 1200 m
                      ln((350, 50), (360, 50)),               # inside the overlap: 1
                      ln((2000, 0), (3000, 0)),               # near none: 0
                      pt(5120, 5050),                         # 20 m from C: 1
                      shapely.multipoints([pt(10, 10), pt(2000, 2000)]),  # one part of two in A: 0.5
                      ln((-100, 110), (800, 110))],           # 10 m beside A and B: 700 m + 2 × √(25² − 10²) of 900 m
                     dtype=object)
    share, names = maintenance_overlap(geoms, sectors, 25.0)
    assert share == pytest.approx(_overlap_against_all_sectors(geoms, sectors, 25.0), abs=1e-9)
    assert share[:5] == pytest.approx([750 / 1200, 1.0, 0.0, 1.0, 0.5], abs=1e-9)
    assert share[5] == pytest.approx((700 + 2 * math.sqrt(25**2 - 10**2)) / 900, abs=1e-3)   # round buffer ends
    assert names == ["A, B", "A, B", "", "C", "A", "A, B"]
