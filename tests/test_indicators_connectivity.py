"""PC, EC(PC), IIC and dPC fractions on small graphs computed by hand from the published formulas
(Saura & Pascual-Hortal 2007; Saura & Rubio 2010)."""
from __future__ import annotations

import math

import geopandas as gpd
import networkx as nx
import pandas as pd
import pytest
from shapely.geometry import box

from tvb_tasks.indicators import IndicatorsError
from tvb_tasks.indicators.connectivity import (
    analyse_network,
    build_graph,
    decay_constant,
    euclidean_links,
    euclidean_max_distance,
    links_from_corridors,
    pc_numerator,
)

# Chain A(1 ha) –1– B(2 ha) –2– C(3 ha), p = 0.5 at distance 1 → p_AB = 0.5, p_BC = 0.25, p*_AC = 0.125; A_L = 10 ha
CHAIN_NODES = pd.DataFrame({"id": ["A", "B", "C"], "area_ha": [1.0, 2.0, 3.0]})
CHAIN_LINKS = pd.DataFrame({"from_id": ["A", "B"], "to_id": ["B", "C"], "distance": [1.0, 2.0]})
# Σ_i Σ_j a_i a_j p*_ij = (1 + 4 + 9) + 2 (1·2·0.5 + 2·3·0.25 + 1·3·0.125) = 14 + 5.75
CHAIN_SUM = 19.75


@pytest.fixture(scope="module")
def chain():
    return analyse_network(CHAIN_NODES, CHAIN_LINKS, landscape_area_ha=10.0, distance_threshold=1.0,
                           probability_at_threshold=0.5)


def test_decay_constant():
    k = decay_constant(500.0, 0.5)
    assert math.exp(-k * 500.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        decay_constant(0, 0.5)
    with pytest.raises(ValueError):
        decay_constant(100, 1.0)


def test_pc_ec_iic_of_a_three_node_chain(chain):
    s = chain.summary
    assert s["pc"] == pytest.approx(CHAIN_SUM / 100)                 # 0.1975
    assert s["ec_pc_ha"] == pytest.approx(math.sqrt(CHAIN_SUM))      # 4.444 ha
    # binary graph: only A–B (distance 1 ≤ threshold 1): IIC = (14 + 2·(1·2)/(1+1)) / 100
    assert s["iic"] == pytest.approx(0.16)
    assert (s["n_nodes"], s["n_links"], s["n_components"]) == (3, 2, 1)


def test_iic_counts_topological_steps():
    r = analyse_network(CHAIN_NODES, CHAIN_LINKS, landscape_area_ha=10.0, distance_threshold=2.0,
                        probability_at_threshold=0.5)
    # both links in the binary graph: nl_AB = nl_BC = 1, nl_AC = 2
    assert r.summary["iic"] == pytest.approx((14 + 2 * (2 / 2 + 6 / 2 + 3 / 3)) / 100)   # 0.24


def test_dpc_fractions_of_the_chain(chain):
    nodes = chain.nodes.set_index("id")
    b = nodes.loc["B"]
    assert b["dpc"] == pytest.approx(100 * (CHAIN_SUM - 10) / CHAIN_SUM)      # without B: 1 + 9 left
    assert b["dpc_intra"] == pytest.approx(100 * 4 / CHAIN_SUM)
    assert b["dpc_flux"] == pytest.approx(100 * 2 * (2 * 0.5 + 6 * 0.25) / CHAIN_SUM)
    assert b["dpc_connector"] == pytest.approx(100 * 2 * 3 * 0.125 / CHAIN_SUM)   # A–C only through B
    a, c = nodes.loc["A"], nodes.loc["C"]
    assert (a["dpc_connector"], c["dpc_connector"]) == (0.0, 0.0)
    assert a["dpc"] == pytest.approx(100 * (1 + 2 * (2 * 0.5 + 3 * 0.125)) / CHAIN_SUM)
    assert c["dpc"] == pytest.approx(100 * (9 + 2 * (6 * 0.25 + 3 * 0.125)) / CHAIN_SUM)
    assert list(chain.nodes["id"]) == ["C", "B", "A"] and list(chain.nodes["rank"]) == [1, 2, 3]


def test_dpc_equals_relative_loss_of_pc_when_node_removed(chain):
    graph = build_graph(CHAIN_NODES, CHAIN_LINKS)
    k = decay_constant(1.0, 0.5)
    total = pc_numerator(graph, k)
    for node in "ABC":
        without = pc_numerator(graph.subgraph(set(graph) - {node}), k)
        dpc = chain.nodes.set_index("id").loc[node, "dpc"]
        assert dpc == pytest.approx(100 * (total - without) / total)


def test_link_dpc(chain):
    links = chain.links.set_index(["from_id", "to_id"])
    assert links.loc[("A", "B"), "dpc"] == pytest.approx(100 * (CHAIN_SUM - (14 + 2 * 6 * 0.25)) / CHAIN_SUM)
    assert links.loc[("B", "C"), "dpc"] == pytest.approx(100 * (CHAIN_SUM - (14 + 2 * 2 * 0.5)) / CHAIN_SUM)
    assert links.loc[("A", "B"), "probability"] == pytest.approx(0.5)


def test_best_path_beats_a_weak_direct_link():
    # triangle: R1–R2 cost 100, R1–R4 300, R2–R4 2000; p = 0.5 at 100: p*(R2,R4) = 0.5 · 0.125 via R1
    nodes = pd.DataFrame({"id": ["R1", "R2", "R4"], "area_ha": [30.0, 10.0, 4.0]})
    links = pd.DataFrame({"from_id": ["R1", "R1", "R2"], "to_id": ["R2", "R4", "R4"],
                          "distance": [100.0, 300.0, 2000.0]})
    r = analyse_network(nodes, links, landscape_area_ha=200.0, distance_threshold=100.0, probability_at_threshold=0.5)
    total = 900 + 100 + 16 + 2 * (300 * 0.5 + 120 * 0.125 + 40 * 0.0625)     # 1351
    assert r.summary["pc"] == pytest.approx(total / 200**2)
    r1 = r.nodes.set_index("id").loc["R1"]
    # without R1 the R2–R4 pair falls back on its direct link (p = 2^-20)
    assert r1["dpc_connector"] == pytest.approx(100 * 2 * 40 * (0.0625 - 2**-20) / total)
    weak = r.links.set_index(["from_id", "to_id"]).loc[("R2", "R4")]
    assert weak["dpc"] == 0.0                                             # not on any best path


def test_disconnected_components_and_isolated_nodes():
    nodes = pd.DataFrame({"id": [1, 2, 3], "area_ha": [4.0, 4.0, 2.0]})
    links = pd.DataFrame({"from_id": [1], "to_id": [2], "distance": [0.0]})
    r = analyse_network(nodes, links, landscape_area_ha=100.0, distance_threshold=10.0, probability_at_threshold=0.5)
    assert r.summary["n_components"] == 2
    assert r.summary["pc"] == pytest.approx((16 + 16 + 4 + 2 * 16) / 100**2)   # 1–2 fully connected (d = 0)
    assert set(r.nodes["id"]) == {"1", "2", "3"}                             # ids as strings


def test_graph_keeps_the_shortest_parallel_link_and_drops_self_links():
    links = pd.DataFrame({"from_id": ["A", "B", "A"], "to_id": ["B", "A", "A"], "distance": [5.0, 3.0, 1.0]})
    graph = build_graph(CHAIN_NODES, links)
    assert graph.number_of_edges() == 1 and graph["A"]["B"]["distance"] == 3.0
    assert isinstance(graph, nx.Graph)


def test_links_to_unknown_reservoirs_are_an_error():
    links = pd.DataFrame({"from_id": ["A"], "to_id": ["Z"], "distance": [1.0]})
    with pytest.raises(IndicatorsError, match=r"not among the reservoirs.*Z"):
        build_graph(CHAIN_NODES, links)
    with pytest.raises(IndicatorsError, match="distances"):
        build_graph(CHAIN_NODES, pd.DataFrame({"from_id": ["A"], "to_id": ["B"], "distance": [-1.0]}))


def test_empty_network():
    r = analyse_network(pd.DataFrame({"id": [], "area_ha": []}), pd.DataFrame(columns=["from_id", "to_id", "distance"]),
                        landscape_area_ha=10.0, distance_threshold=1.0, probability_at_threshold=0.5)
    assert r.summary["pc"] == 0 and r.nodes.empty and r.links.empty


def test_euclidean_edge_to_edge_links():
    gdf = gpd.GeoDataFrame({"id": ["a", "b", "c"]},
                           geometry=[box(0, 0, 100, 100), box(150, 0, 250, 100), box(550, 0, 650, 100)],
                           crs="EPSG:2154")
    links = euclidean_links(gdf, max_distance_m=300)
    got = {(f, t): d for f, t, d in links.itertuples(index=False)}
    assert got == {("a", "b"): pytest.approx(50.0), ("b", "c"): pytest.approx(300.0)}
    # p = 0.5 at 1000 m: links are built up to the distance where p falls to 1 %
    assert euclidean_max_distance(1000, 0.5) == pytest.approx(1000 * math.log(100) / math.log(2))


def test_links_from_corridors():
    corridors = pd.DataFrame({"id": ["c1", "c2"], "from_id": ["A", "B"], "to_id": ["B", "C"], "cost": [1.0, None]})
    with pytest.raises(IndicatorsError, match=r"without a numeric cost.*c2"):
        links_from_corridors(corridors, "tvb.gpkg")
    assert links_from_corridors(corridors.assign(cost=None), "tvb.gpkg") is None
    links = links_from_corridors(corridors.assign(cost=[4.0, 5.0]), "tvb.gpkg")
    assert list(links["distance"]) == [4.0, 5.0]


def test_dpc_matches_brute_force_removal_on_a_random_graph():
    import numpy as np

    rng = np.random.default_rng(7)
    n = 25
    nodes = pd.DataFrame({"id": [f"n{i}" for i in range(n)], "area_ha": rng.uniform(1, 50, n)})
    pairs = {tuple(sorted(rng.choice(n, 2, replace=False))) for _ in range(45)}
    links = pd.DataFrame([{"from_id": f"n{a}", "to_id": f"n{b}", "distance": float(rng.uniform(10, 500))}
                          for a, b in pairs])
    r = analyse_network(nodes, links, landscape_area_ha=5000.0, distance_threshold=200.0,
                        probability_at_threshold=0.5)
    graph = build_graph(nodes, links)
    k = decay_constant(200.0, 0.5)
    total = pc_numerator(graph, k)
    got = r.nodes.set_index("id")["dpc"]
    for node in graph:
        assert got[node] == pytest.approx(100 * (total - pc_numerator(graph.subgraph(set(graph) - {node}), k)) / total)
    got_links = r.links.set_index(["from_id", "to_id"])["dpc"]
    for u, v in graph.edges:
        without = nx.restricted_view(graph, [], [(u, v)])
        a, b = sorted((u, v))
        assert got_links[(a, b)] == pytest.approx(100 * (total - pc_numerator(without, k)) / total, abs=1e-9)
