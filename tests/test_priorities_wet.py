"""Issue 15: wet rupture sites (culverts, ROE obstacles, bridges) rank by their real connectivity gain.

The wetland graph runs along the watercourses (network distances, :func:`wet_network`); each wet rupture point on
a stretch is a barrier whose passability π (``indicators.connectivity.wet_passability``, ICE classes) multiplies
the probability of every link through it — an added distance −ln(π)/k (Dendritic Connectivity Index). A site's
gain is the ΔPC when its points become passable.

Scene (wetland sous-trame, EPSG:2154, Lambert-93 offsets), three separate streams 10 km apart:

* pair L: two large marshes (100 ha each) joined by a 1000 m stream with culvert CL (severity 3);
* pair S: two small ponds (4 ha each) joined by a 1000 m stream with culvert CS (severity 3);
* marsh D (4 ha) with a 800 m dead-end stream carrying obstacle OD, and a stream touching no reservoir with
  obstacle ON: neither lies on a link (``no_link``, gain 0).

Answers by hand: p_L = exp(-k·1000) × π, ΔPCsum_L = 2·a²·exp(-k·1000)·(1 − π); same for S with 4 ha.
"""
from __future__ import annotations

import math

import geopandas as gpd
import pandas as pd
import pytest

from helpers.priorities_scene import CRS, bx, ln, pt
from tvb_tasks.config_sections import IndicatorsConfig
from tvb_tasks.indicators import indicators_config, wet_network_of
from tvb_tasks.indicators.connectivity import (
    decay_constant,
    network_links,
    passability_penalty_m,
    passable_changes,
    wet_network,
)
from tvb_tasks.priorities import compute_priorities
from tvb_tasks.priorities.ranking import sous_trame_networks


def with_passability(territory, **table):
    """The territory with ``indicators.connectivity.wet_passability`` entries replaced."""
    raw = territory.indicators.model_dump()
    conn = dict(raw.get("connectivity") or {})
    conn["wet_passability"] = {**(conn.get("wet_passability") or {}), **table}
    out = territory.model_copy(update={"indicators": IndicatorsConfig.model_validate({**raw, "connectivity": conn})})
    assert indicators_config(out).connectivity.wet_passability.culvert == table.get(
        "culvert", indicators_config(territory).connectivity.wet_passability.culvert)
    return out


def scene() -> dict[str, gpd.GeoDataFrame]:
    polys = {"L1": bx(0, 0, 1000, 1000), "L2": bx(2000, 0, 3000, 1000),          # 100 ha each, 1000 m apart
             "S1": bx(0, 10000, 200, 10200), "S2": bx(1200, 10000, 1400, 10200),  # 4 ha each, 1000 m apart
             "D": bx(0, 20000, 200, 20200)}                                         # alone on a dead end
    reservoirs = gpd.GeoDataFrame({"id": [f"wetland-{k}" for k in polys], "sous_trame": "wetland",
                                   "origin": "habitat", "libelle": list(polys)},
                                  geometry=list(polys.values()), crs=CRS)
    reservoirs["area_ha"] = reservoirs.area / 1e4
    streams = {"W1": ln((500, 500), (2500, 500)), "W2": ln((100, 10100), (1300, 10100)),
               "W3": ln((100, 20100), (1000, 20100)), "W4": ln((5000, 30000), (6000, 30000))}
    wet = gpd.GeoDataFrame({"id": list(streams), "sous_trame": "wetland", "name": list(streams), "kind": "stream",
                            "position": "open", "buse": False, "libelle": list(streams)},
                           geometry=list(streams.values()), crs=CRS)
    wet["length_m"] = wet.length
    points = gpd.GeoDataFrame({
        "id": ["P1", "P2", "P3", "P4"], "corridor_id": ["W1", "W2", "W3", "W4"], "sous_trame": "wetland",
        "corridor_kind": "aquatique", "infrastructure": ["culvert", "culvert", "river_obstacle", "river_obstacle"],
        "infra_class": ["road", "road", "Seuil", "Seuil"], "infra_name": ["CL", "CS", "OD", "ON"],
        "severity": 3, "n_merged": 1, "libelle": "rupture"},
        geometry=[pt(1500, 500), pt(700, 10100), pt(600, 20100), pt(5500, 30000)], crs=CRS)
    corridors = gpd.GeoDataFrame({"id": [], "sous_trame": [], "status": [], "from_id": [], "to_id": [], "cost": [],
                                  "length_m": [], "mean_friction": [], "libelle": []},
                                 geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)
    communes = gpd.GeoDataFrame({"insee": ["62001"], "nom": ["Aville"]}, geometry=[bx(-500, -500, 7000, 31000)],
                                crs=CRS)
    empty_poly = gpd.GeoDataFrame({"id": [], "sous_trame": [], "area_ha": [], "libelle": []},
                                  geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)
    return {"reservoirs": reservoirs, "relays": empty_poly, "corridors": corridors, "wet_corridors": wet,
            "rupture_points": points, "communes": communes}


def _k(territory) -> float:
    cfg = indicators_config(territory).connectivity
    return decay_constant(territory.sous_trames["wetland"].max_cost, cfg.probability_at_threshold)


def _pc_sum(k: float, pi: float) -> float:
    """Σ a_i a_j p*_ij of the scene's wetland graph by hand (pairs L and S, D alone)."""
    p = math.exp(-k * 1000) * pi
    return (2 * 100 ** 2 + 2 * 100 * 100 * p) + (2 * 4 ** 2 + 2 * 4 * 4 * p) + 4 ** 2


# --- the penalty and the network -------------------------------------------------------------------------------------
def test_passability_penalty_multiplies_the_link_probability():
    k = decay_constant(30000, 0.05)
    assert passability_penalty_m(1.0, k) == 0.0
    assert passability_penalty_m(0.05, k) == pytest.approx(30000)        # π = p at the dispersal distance
    assert math.exp(-k * (1000 + passability_penalty_m(0.33, k))) == pytest.approx(0.33 * math.exp(-k * 1000))
    assert math.isinf(passability_penalty_m(0.0, k))
    with pytest.raises(ValueError):
        passability_penalty_m(1.5, k)


def test_a_barrier_lengthens_or_cuts_the_links_through_it():
    layers = scene()
    res = layers["reservoirs"].iloc[:2]
    wet = layers["wet_corridors"].iloc[:1]

    def link(penalty, snap=50.0, at=None):
        at = pt(1500, 500) if at is None else at
        bar = gpd.GeoDataFrame({"id": ["B"], "penalty_m": [penalty]}, geometry=[at], crs=CRS)
        return network_links(res, wet, snap_m=1, max_distance_m=30000, barriers=bar, barrier_snap_m=snap)

    assert link(0.0)["distance"].tolist() == [pytest.approx(1000)]
    assert link(2500.0)["distance"].tolist() == [pytest.approx(3500)]
    assert link(math.inf).empty                                           # π = 0: total barrier
    assert link(40000.0).empty                                            # beyond the cut-off
    assert link(2500.0, at=pt(1500, 700))["distance"].tolist() == [pytest.approx(1000)]   # 200 m away: not on it
    assert link(2500.0, at=pt(500, 500))["distance"].tolist() == [pytest.approx(1000)]    # inside a reservoir


def test_a_barrier_on_one_of_two_parallel_stretches_is_bypassed():
    # A and B joined by a stream; between the junctions J1 (x 300) and J2 (x 700) it splits in two: a straight
    # 400 m arm and a 600 m loop (two stretches with the same two ends)
    res = gpd.GeoDataFrame({"id": ["A", "B"]}, geometry=[bx(0, 0, 100, 100), bx(1100, 0, 1200, 100)], crs=CRS)
    lines = gpd.GeoDataFrame(geometry=[ln((50, 50), (1150, 50)), ln((300, 50), (300, 150), (700, 150), (700, 50))],
                             crs=CRS)

    def links(at):
        bar = gpd.GeoDataFrame({"id": ["B1"], "penalty_m": [1000.0]}, geometry=[at], crs=CRS)
        net = wet_network(res, lines, snap_m=1, barriers=bar, barrier_snap_m=10)
        return network_links(res, lines, snap_m=1, max_distance_m=30000, barriers=bar, barrier_snap_m=10), net

    straight, net = links(pt(500, 50))
    assert straight["distance"].tolist() == [pytest.approx(200 + 600 + 400)]    # around the barrier, by the loop
    assert passable_changes(net, ["B1"], 30000) == [("A", "B", pytest.approx(1000))]
    loop, net = links(pt(500, 150))
    assert loop["distance"].tolist() == [pytest.approx(1000)]                   # the straight arm is free
    assert passable_changes(net, ["B1"], 30000) == []                          # on a link, nothing to gain


def test_wetland_graph_carries_the_configured_passabilities(territory):
    layers = scene()
    net, max_m, threshold_m = wet_network_of(layers, territory, "wetland")
    k = decay_constant(threshold_m, indicators_config(territory).connectivity.probability_at_threshold)
    assert max_m == threshold_m == territory.sous_trames["wetland"].max_cost
    assert sorted(net.barrier_edges) == ["P1", "P2", "P3", "P4"]          # every point lies on a stretch
    nets = sous_trame_networks(territory, layers)
    pi = indicators_config(territory).connectivity.wet_passability.passability("culvert", 3)
    assert pi == pytest.approx(0.33)
    assert nets["wetland"].pc_sum == pytest.approx(_pc_sum(k, pi))
    assert passable_changes(net, ["P1"], max_m) == [("wetland-L1", "wetland-L2", pytest.approx(1000))]
    assert passable_changes(net, ["P3"], max_m) is None                  # dead end: D reaches it alone
    assert passable_changes(net, ["P4"], max_m) is None                  # a stream touching no reservoir


# --- the ranking ---------------------------------------------------------------------------------------------------
def test_culvert_gains_by_hand_and_large_pair_ranks_first(territory):
    out = compute_priorities(territory, scene()).set_index("infra_name")
    k = _k(territory)
    pi = 0.33
    base = _pc_sum(k, pi)
    gain_l = 2 * 100 * 100 * math.exp(-k * 1000) * (1 - pi)
    gain_s = 2 * 4 * 4 * math.exp(-k * 1000) * (1 - pi)
    assert out.loc["CL", "gain_dpc_pct"] == pytest.approx(100 * gain_l / base)
    assert out.loc["CS", "gain_dpc_pct"] == pytest.approx(100 * gain_s / base)
    assert out.loc["CL", "gain_ec_ha"] == pytest.approx(math.sqrt(base + gain_l) - math.sqrt(base))
    assert out.loc["CS", "gain_dpc_pct"] > 0
    assert out.loc["CL", "rank"] < out.loc["CS", "rank"]
    assert (out.loc[["CL", "CS"], "gain_method"] == "obstacle_passable").all()
    for name in ("OD", "ON"):                        # on no link: gain 0, outside the graph, ranked last
        assert out.loc[name, "gain_dpc_pct"] == 0.0
        assert out.loc[name, "gain_method"] == "no_link"
        assert out.loc[name, "flag"] == "gain nul (ne relie pas deux réservoirs)"
        assert out.loc[name, "rank"] > out.loc["CS", "rank"]


def test_a_passable_culvert_gains_nothing(territory):
    passable = with_passability(territory, culvert={3: 1.0})
    out = compute_priorities(passable, scene()).set_index("infra_name")
    assert out.loc["CL", "gain_dpc_pct"] == 0.0 and out.loc["CS", "gain_dpc_pct"] == 0.0
    assert out.loc["CL", "gain_method"] == "obstacle_passable"           # on the graph, nothing to gain
    assert out.loc["CL", "flag"] == "gain nul"


def test_a_total_barrier_gains_the_whole_link(territory):
    closed = with_passability(territory, culvert={3: 0.0})
    out = compute_priorities(closed, scene()).set_index("infra_name")
    k = _k(territory)
    base = _pc_sum(k, 0.0)
    assert out.loc["CL", "gain_dpc_pct"] == pytest.approx(100 * 2 * 100 * 100 * math.exp(-k * 1000) / base)


def test_passabilities_outside_zero_one_are_refused(territory):
    from tvb_tasks.config import ConfigError

    bad = territory.model_copy(update={"indicators": {"connectivity": {"wet_passability": {"culvert": {3: 1.5}}}}})
    with pytest.raises(ConfigError, match="wet_passability"):
        indicators_config(bad)


# --- review 15: zero-gain causes, reservoirs cut by an infrastructure, passabilities of every wet point ------------
def split_scene() -> dict[str, gpd.GeoDataFrame]:
    """The scene plus marsh M (400 m × 200 m, 8 ha) cut in two by a 30 m wide motorway (A21, x = 200 m): rupture
    point P5 (``corridor_kind = reservoir``); marsh N (8 ha) that motorway A1 enters without crossing (P7); and a
    bridge P6 on W1 inside marsh L1 (on no link)."""
    layers = scene()
    m = gpd.GeoDataFrame({"id": ["wetland-M", "wetland-N"], "sous_trame": "wetland", "origin": "habitat",
                          "libelle": ["M", "N"]},
                         geometry=[bx(0, 40000, 400, 40200), bx(0, 50000, 400, 50200)], crs=CRS)
    m["area_ha"] = m.area / 1e4
    layers["reservoirs"] = gpd.GeoDataFrame(pd.concat([layers["reservoirs"], m], ignore_index=True), crs=CRS)
    extra = gpd.GeoDataFrame({
        "id": ["P5", "P6", "P7"], "corridor_id": ["wetland-M", "W1", "wetland-N"], "sous_trame": "wetland",
        "corridor_kind": ["reservoir", "aquatique", "reservoir"], "infrastructure": ["road", "road", "road"],
        "infra_class": ["1", "3", "1"], "infra_name": ["A21", "RD 1", "A1"], "severity": [4, 2, 4], "n_merged": 1,
        "libelle": "rupture"},
        geometry=[pt(200, 40100), pt(800, 500), pt(200, 50050)], crs=CRS)
    layers["rupture_points"] = gpd.GeoDataFrame(pd.concat([layers["rupture_points"], extra], ignore_index=True),
                                                crs=CRS)
    layers["infrastructure"] = gpd.GeoDataFrame(       # A1 enters marsh N and stops halfway: N is not cut in two
        {"infra_type": ["road", "road"], "infra_class": ["1", "1"], "infra_name": ["A21", "A1"],
         "width_m": [30.0, 30.0]},
        geometry=[ln((200, 39900), (200, 40300)), ln((200, 49900), (200, 50100))], crs=CRS)
    return layers


def test_a_site_cutting_a_reservoir_gains_its_two_parts_joined(territory):
    """Split, each part keeps the others' distances but the parts no longer reach each other: PCsum loses
    2·a1·a2 (a1 = a2 = 4 ha once scaled to the 8 ha node); restoring the crossing gains it back."""
    out = compute_priorities(territory, split_scene()).set_index("infra_name")
    k = _k(territory)
    pc = _pc_sum(k, 0.33) + 8.0 ** 2 + 8.0 ** 2
    lost = 2 * 4.0 * 4.0
    assert out.loc["A21", "gain_method"] == "reservoir_split"
    assert out.loc["A21", "gain_dpc_pct"] == pytest.approx(100 * lost / (pc - lost))
    assert out.loc["A21", "gain_ec_ha"] == pytest.approx(math.sqrt(pc) - math.sqrt(pc - lost))
    assert out.loc["A21", "flag"] == "" and out.loc["A21", "rank"] < out.loc["OD", "rank"]


def test_zero_gain_sites_say_why(territory):
    out = compute_priorities(territory, split_scene()).set_index("infra_name")
    assert out.loc["RD 1", "gain_method"] == "in_reservoir"               # bridge inside marsh L1
    assert out.loc["RD 1", "flag"] == "gain nul (dans un réservoir)"
    assert out.loc["ON", "gain_method"] == "no_link"                      # stream touching no reservoir
    assert out.loc["A1", "gain_method"] == "reservoir_notched"            # enters marsh N without cutting it
    assert out.loc["A1", "flag"] == "gain nul (entame un réservoir sans le couper en deux)"
    from tvb_tasks.publish.styles import VALUE_LABELS

    labels = VALUE_LABELS["gain_method"]
    assert "dans un réservoir" in labels["in_reservoir"] and "ne relie pas deux réservoirs" in labels["no_link"]
    assert not any("hors du réseau" in v for v in labels.values())


def producible_wet_points(territory) -> list[tuple[str, int, str | None]]:
    """(infrastructure, severity, infra_class) of every wet rupture point the layers stage can produce with this
    YAML: culverts (culvert_severity), road / railway bridges (bridge_severity, any road importance up to
    culvert_road_max_importance), ROE obstacles (every drop-height severity, unknown height, lowered by a fish
    pass, 1 below the lowest threshold)."""
    rp = territory.rupture_points
    out: list[tuple[str, int, str | None]] = [("culvert", int(rp.culvert_severity), None)]
    for imp in range(1, int(rp.culvert_road_max_importance or 5) + 1):
        out.append(("road", int(rp.bridge_severity), str(imp)))
    out.append(("railway", int(rp.bridge_severity), None))
    obs = rp.obstacles
    sev = {int(v) for v in obs.drop_height_severity.values()} | {int(obs.unknown_severity), 1}
    sev |= {max(v - int(obs.fish_pass_lowers_by), 1) for v in sev}
    out += [("river_obstacle", v, None) for v in sorted(sev)]
    return out


def test_every_wet_rupture_point_the_layers_stage_produces_is_a_barrier(territory):
    """Review 15 point 1: bridges became severity 2 while wet_passability.road said {2: 1.0}: 13 bridges could not
    gain. Every point of severity ≥ 2 must have π < 1 (severity 1 is the ICE "passable" class)."""
    table = indicators_config(territory).connectivity.wet_passability
    for infra, sev, cls in producible_wet_points(territory):
        pi = table.passability(infra, sev, cls)
        assert 0.0 <= pi <= 1.0
        if sev >= 2:
            assert pi < 1.0, (infra, sev, cls)
    assert table.passability("road", territory.rupture_points.bridge_severity, "3") == pytest.approx(0.66)
    assert table.passability("road", territory.rupture_points.bridge_severity, "1") == pytest.approx(0.33)


def test_a_bridge_gains_when_its_stream_links_two_reservoirs(territory):
    layers = scene()
    pts = layers["rupture_points"]
    pts.loc[pts["id"] == "P1", ["infrastructure", "infra_class", "severity"]] = ["road", "3",
                                                                               territory.rupture_points.bridge_severity]
    out = compute_priorities(territory, layers).set_index("infra_name")
    k = _k(territory)
    pi_b = indicators_config(territory).connectivity.wet_passability.passability("road", 2, "3")
    base = (2 * 100 ** 2 + 2 * 100 * 100 * math.exp(-k * 1000) * pi_b) + (2 * 4 ** 2 + 2 * 4 * 4 *
                                                                         math.exp(-k * 1000) * 0.33) + 4 ** 2
    gain = 2 * 100 * 100 * math.exp(-k * 1000) * (1 - pi_b)
    assert out.loc["CL", "gain_dpc_pct"] == pytest.approx(100 * gain / base)
