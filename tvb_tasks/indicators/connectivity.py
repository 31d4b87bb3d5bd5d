"""Graph connectivity of a sous-trame: probability of connectivity (PC), EC(PC), IIC and each element's importance.

Nodes are the sous-trame's reservoirs (attribute ``area_ha``); links carry a distance d_ij — the least-cost corridor
``cost`` from the layers stage (cost units: Σ friction × m) or, when a sous-trame's corridors carry no cost, the
Euclidean edge-to-edge distance between reservoirs (m).

* p_ij = exp(-k · d_ij), with k = -ln(p_threshold) / d_threshold (p = p_threshold at the threshold distance);
* p*_ij = maximum product probability over all paths = exp(-k · shortest path length in d) (networkx);
* PC = Σ_i Σ_j a_i a_j p*_ij / A_L²  (Saura & Pascual-Hortal 2007), A_L = territory area (ha), p*_ii = 1;
* EC(PC) = sqrt(Σ_i Σ_j a_i a_j p*_ij)  (ha; Saura et al. 2011);
* IIC = Σ_i Σ_j a_i a_j / (1 + nl_ij) / A_L²  (Pascual-Hortal & Saura 2006), nl_ij = number of links of the
  topological shortest path in the binary graph of the links with d_ij ≤ d_threshold (0 term when unconnected);
* dPC_k = 100 · (PC − PC_without_k) / PC = dPCintra + dPCflux + dPCconnector (Saura & Rubio 2010):
  intra = 100 · a_k² / ΣΣ, flux = 100 · 2 Σ_{i≠k} a_i a_k p*_ik / ΣΣ, connector = the rest (k as a stepping stone);
* a link's dPC = 100 · (PC − PC_without_link) / PC (connector only).

Shortest paths come from networkx (``floyd_warshall_numpy`` on each connected component). Removing a node or a link
recomputes only its component, and only when it lies on some shortest path of that component (otherwise its loss
cannot lengthen any other path, so the connector part is exactly 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.indicators import IndicatorsError

_REL_TOL = 1e-9


@dataclass(frozen=True)
class ConnectivityResult:
    """``summary``: JSON-safe dict; ``nodes``: one row per reservoir; ``links``: one row per link."""

    summary: dict
    nodes: pd.DataFrame
    links: pd.DataFrame


def decay_constant(distance_threshold: float, probability_at_threshold: float) -> float:
    """k such that exp(-k · distance_threshold) = probability_at_threshold (per distance unit)."""
    if distance_threshold <= 0 or not 0 < probability_at_threshold < 1:
        raise ValueError("distance_threshold must be > 0 and probability_at_threshold in ]0, 1[")
    return -math.log(probability_at_threshold) / distance_threshold


def build_graph(nodes: pd.DataFrame, links: pd.DataFrame) -> nx.Graph:
    """Undirected graph: ``nodes`` (id, area_ha), ``links`` (from_id, to_id, distance ≥ 0); parallel links keep
    the shortest distance, self-links are dropped. Ids are compared as strings."""
    for col in ("id", "area_ha"):
        if col not in nodes.columns:
            raise IndicatorsError(f"connectivity nodes: missing column {col!r}")
    for col in ("from_id", "to_id", "distance"):
        if col not in links.columns:
            raise IndicatorsError(f"connectivity links: missing column {col!r}")
    ids = nodes["id"].astype(str)
    if ids.duplicated().any():
        raise IndicatorsError(f"connectivity nodes: duplicated ids {sorted(ids[ids.duplicated()].unique())[:5]}")
    graph = nx.Graph()
    graph.add_nodes_from((i, {"area_ha": float(a)}) for i, a in zip(ids, nodes["area_ha"]))
    from_ids, to_ids = links["from_id"].astype(str), links["to_id"].astype(str)
    unknown = sorted((set(from_ids) | set(to_ids)) - set(ids))
    if unknown:
        raise IndicatorsError(f"connectivity links: ids not among the reservoirs: {unknown[:10]}")
    distance = pd.to_numeric(links["distance"], errors="coerce")
    if distance.isna().any() or (distance < 0).any():
        raise IndicatorsError("connectivity links: distances must be numbers ≥ 0")
    for u, v, d in zip(from_ids, to_ids, distance):
        if u == v:
            continue
        if not graph.has_edge(u, v) or graph[u][v]["distance"] > d:
            graph.add_edge(u, v, distance=float(d))
    return graph


def _component_matrices(graph: nx.Graph, component: list[str], k: float) -> tuple[np.ndarray, np.ndarray]:
    """(areas a, shortest-path distances D) of a component, nodes in ``component`` order."""
    sub = graph.subgraph(component)
    dist = nx.floyd_warshall_numpy(sub, nodelist=component, weight="distance")
    areas = np.array([graph.nodes[n]["area_ha"] for n in component])
    return areas, dist


def _pc_sum(areas: np.ndarray, dist: np.ndarray, k: float) -> float:
    """Σ_i Σ_j a_i a_j exp(-k d_ij) (unreachable pairs: d = inf → 0)."""
    return float(areas @ np.exp(-k * dist) @ areas)


def _pc_sum_of(graph: nx.Graph, k: float) -> float:
    return sum(_pc_sum(*_component_matrices(graph, list(c), k), k) for c in nx.connected_components(graph))


def pc_numerator(graph: nx.Graph, k: float) -> float:
    """Σ_i Σ_j a_i a_j p*_ij over the whole graph (ha²)."""
    return _pc_sum_of(graph, k)


def iic_numerator(graph: nx.Graph, distance_threshold: float) -> float:
    """Σ_i Σ_j a_i a_j / (1 + nl_ij) on the binary graph of links with distance ≤ threshold (ha²)."""
    binary = nx.Graph()
    binary.add_nodes_from(graph.nodes(data=True))
    binary.add_edges_from((u, v) for u, v, d in graph.edges(data="distance")
                          if d <= distance_threshold * (1 + _REL_TOL))
    total = 0.0
    for comp in nx.connected_components(binary):
        comp = list(comp)
        hops = nx.floyd_warshall_numpy(binary.subgraph(comp), nodelist=comp, weight=None)
        areas = np.array([graph.nodes[n]["area_ha"] for n in comp])
        total += float(areas @ (1.0 / (1.0 + hops)) @ areas)
    return total


def _on_shortest_path(dist: np.ndarray, idx: int) -> bool:
    """Does node ``idx`` lie on a shortest path between two other nodes (ties included)?"""
    via = dist[:, idx][:, None] + dist[idx, :][None, :]
    hit = via <= dist * (1 + _REL_TOL) + _REL_TOL
    hit[idx, :] = False
    hit[:, idx] = False
    np.fill_diagonal(hit, False)
    return bool(hit.any())


def node_importance(graph: nx.Graph, k: float) -> pd.DataFrame:
    """dPC of each node and its intra / flux / connector fractions (%), plus its component number."""
    total = pc_numerator(graph, k)
    rows = []
    for comp_no, comp in enumerate(sorted(nx.connected_components(graph), key=lambda c: sorted(c)[0])):
        comp = sorted(comp)
        areas, dist = _component_matrices(graph, comp, k)
        prob = np.exp(-k * dist)
        comp_sum = float(areas @ prob @ areas)
        for idx, node in enumerate(comp):
            a_k = areas[idx]
            flux = 2.0 * a_k * (float(areas @ prob[idx]) - a_k)      # Σ_{j≠k} a_k a_j p*_kj, both directions
            intra = a_k * a_k
            without_same_paths = comp_sum - intra - flux
            if len(comp) > 2 and _on_shortest_path(dist, idx):
                rest = [n for n in comp if n != node]
                without = _pc_sum_of(graph.subgraph(rest), k)
            else:
                without = without_same_paths
            connector = max(without_same_paths - without, 0.0)
            rows.append({"id": node, "area_ha": a_k, "component": comp_no,
                         "dpc_intra": 100 * intra / total, "dpc_flux": 100 * flux / total,
                         "dpc_connector": 100 * connector / total})
    nodes = pd.DataFrame(rows, columns=["id", "area_ha", "component", "dpc_intra", "dpc_flux", "dpc_connector"])
    nodes.insert(3, "dpc", nodes[["dpc_intra", "dpc_flux", "dpc_connector"]].sum(axis=1))
    return _ranked(nodes, "dpc")


def link_importance(graph: nx.Graph, k: float) -> pd.DataFrame:
    """dPC (%) of each link: the relative loss of PC when the link alone is removed."""
    total = pc_numerator(graph, k)
    rows = []
    for comp in nx.connected_components(graph):
        comp = sorted(comp)
        areas, dist = _component_matrices(graph, comp, k)
        comp_sum = _pc_sum(areas, dist, k)
        pos = {n: i for i, n in enumerate(comp)}
        sub = graph.subgraph(comp)
        for u, v, d in sub.edges(data="distance"):
            loss = 0.0
            if dist[pos[u], pos[v]] >= d * (1 - _REL_TOL) - _REL_TOL:      # the link is a shortest u–v path
                without = nx.restricted_view(sub, [], [(u, v)])
                loss = max(comp_sum - _pc_sum_of(without, k), 0.0)
            a, b = sorted((u, v))
            rows.append({"from_id": a, "to_id": b, "distance": d, "probability": math.exp(-k * d),
                         "dpc": 100 * loss / total})
    links = pd.DataFrame(rows, columns=["from_id", "to_id", "distance", "probability", "dpc"])
    return _ranked(links, "dpc")


def _ranked(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    frame = frame.sort_values([column, frame.columns[0]], ascending=[False, True], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def analyse_network(nodes: pd.DataFrame, links: pd.DataFrame, *, landscape_area_ha: float,
                    distance_threshold: float, probability_at_threshold: float) -> ConnectivityResult:
    """PC, EC(PC), IIC of the network and the dPC of every node and link.

    ``nodes``: id, area_ha; ``links``: from_id, to_id, distance (same unit as ``distance_threshold``);
    ``landscape_area_ha``: A_L, the area of the study region (ha).
    """
    if landscape_area_ha <= 0:
        raise ValueError("landscape_area_ha must be > 0")
    k = decay_constant(distance_threshold, probability_at_threshold)
    graph = build_graph(nodes, links)
    a_l2 = landscape_area_ha ** 2
    pc_sum = pc_numerator(graph, k)
    summary = {
        "n_nodes": graph.number_of_nodes(),
        "n_links": graph.number_of_edges(),
        "n_components": nx.number_connected_components(graph),
        "landscape_area_ha": landscape_area_ha,
        "reservoirs_ha": float(sum(a for _, a in graph.nodes(data="area_ha"))),
        "distance_threshold": distance_threshold,
        "probability_at_threshold": probability_at_threshold,
        "k": k,
        "pc": pc_sum / a_l2,
        "ec_pc_ha": math.sqrt(pc_sum),
        "iic": iic_numerator(graph, distance_threshold) / a_l2,
    }
    if pc_sum > 0:
        node_table, link_table = node_importance(graph, k), link_importance(graph, k)
    else:
        node_table = _ranked(pd.DataFrame(columns=["id", "area_ha", "component", "dpc", "dpc_intra", "dpc_flux",
                                                   "dpc_connector"]), "dpc")
        link_table = _ranked(pd.DataFrame(columns=["from_id", "to_id", "distance", "probability", "dpc"]), "dpc")
    return ConnectivityResult(summary=summary, nodes=node_table, links=link_table)


def links_from_corridors(corridors: gpd.GeoDataFrame, where: str) -> pd.DataFrame | None:
    """Links (from_id, to_id, distance = corridor cost) or None when no corridor carries a cost (then the caller
    falls back on Euclidean distances). Some costs present and others missing is an error."""
    if corridors.empty:
        return None
    cost = pd.to_numeric(corridors["cost"], errors="coerce")
    if cost.isna().all():
        return None
    if cost.isna().any():
        bad = corridors.loc[cost.isna(), "id"].astype(str).tolist()[:10]
        raise IndicatorsError(f"{where}: corridors without a numeric cost: {bad}")
    if (cost < 0).any():
        raise IndicatorsError(f"{where}: negative corridor costs")
    return pd.DataFrame({"from_id": corridors["from_id"].astype(str).to_numpy(),
                         "to_id": corridors["to_id"].astype(str).to_numpy(), "distance": cost.to_numpy()})


def euclidean_links(reservoirs: gpd.GeoDataFrame, max_distance_m: float) -> pd.DataFrame:
    """All pairs of reservoirs whose edge-to-edge distance (m, EPSG:2154) is ≤ ``max_distance_m``."""
    geoms = reservoirs.geometry.values
    if len(geoms) < 2:
        return pd.DataFrame(columns=["from_id", "to_id", "distance"])
    left, right = reservoirs.sindex.query(geoms, predicate="dwithin", distance=max_distance_m)
    keep = left < right
    left, right = left[keep], right[keep]
    ids = reservoirs["id"].astype(str).to_numpy()
    return pd.DataFrame({"from_id": ids[left], "to_id": ids[right],
                         "distance": shapely.distance(geoms[left], geoms[right])})


def euclidean_max_distance(distance_threshold_m: float, probability_at_threshold: float,
                           min_probability: float = 0.01) -> float:
    """Distance (m) beyond which p_ij < ``min_probability``: Euclidean links longer than it are not built."""
    return distance_threshold_m * math.log(min_probability) / math.log(probability_at_threshold)
