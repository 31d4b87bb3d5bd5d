"""Graph connectivity of a sous-trame: probability of connectivity (PC), EC(PC), IIC and each element's importance.

Nodes are the sous-trame's reservoirs (attribute ``area_ha``); links carry a distance d_ij — the least-cost corridor
``cost`` from the layers stage (cost units: Σ friction × m) or, when a sous-trame's corridors carry no cost, the
Euclidean edge-to-edge distance between reservoirs (m).

* p_ij = exp(-k · d_ij), with k = -ln(p_threshold) / d_threshold: p = p_threshold at the dispersal distance
  d_threshold (Graphab convention: p = 0.05 at the dispersal distance, Foltête et al. 2012). The dispersal distance
  is a parameter of its own, separate from the cut-off that decides which links exist (the layers' ``max_cost``);
* p*_ij = maximum product probability over all paths = exp(-k · shortest path length in d) (networkx);
* PC = Σ_i Σ_j a_i a_j p*_ij / A_L²  (Saura & Pascual-Hortal 2007), A_L = territory area (ha), p*_ii = 1;
* EC(PC) = sqrt(Σ_i Σ_j a_i a_j p*_ij)  (ha; Saura et al. 2011);
* IIC = Σ_i Σ_j a_i a_j / (1 + nl_ij) / A_L²  (Pascual-Hortal & Saura 2006), nl_ij = number of links of the
  topological shortest path in the binary graph of the links with d_ij ≤ d_threshold (0 term when unconnected);
* dPC_k = 100 · (PC − PC_without_k) / PC = dPCintra + dPCflux + dPCconnector (Saura & Rubio 2010):
  intra = 100 · a_k² / ΣΣ, flux = 100 · 2 Σ_{i≠k} a_i a_k p*_ik / ΣΣ, connector = the rest (k as a stepping stone);
* a link's dPC = 100 · (PC − PC_without_link) / PC (connector only).

Trame bleue (:func:`wet_network`, :func:`reservoir_links`): links run along the watercourses (network metres); each
wet rupture point on a stretch is a barrier of passability π ∈ [0, 1] that multiplies the probability of every link
through it (Dendritic Connectivity Index, Cote et al. 2009): an added distance −ln(π)/k. :func:`passable_changes`
gives the links a site's barriers shorten when made passable (its restoration gain in the priorities).

Shortest paths: scipy's sparse Dijkstra (``scipy.sparse.csgraph``), cut off at the distance where p* falls below
``min_probability`` (1e-12 by default: such pairs contribute nothing measurable). Removing a node or a link re-runs
only the sources whose best paths use it (a node on no best path has a connector part of exactly 0), so a few
thousand reservoirs stay tractable (``bench/connectivity.py``: the former Floyd–Warshall per removed node grew as
≈ n^3.6, 27 s at 400 nodes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra, shortest_path

from tvb_tasks.indicators.common import IndicatorsError

_REL_TOL = 1e-9
_TINY = 1e-300                    # a zero-length link, kept as an edge by scipy
DEFAULT_MIN_PROBABILITY = 1e-12   # p* below this counts as 0 (cut-off of the Dijkstra runs)


@dataclass(frozen=True)
class ConnectivityResult:
    """``summary``: JSON-safe dict; ``nodes``: one row per reservoir; ``links``: one row per link."""

    summary: dict
    nodes: pd.DataFrame
    links: pd.DataFrame


def decay_constant(distance_threshold: float, probability_at_threshold: float) -> float:
    """k such that exp(-k · distance_threshold) = probability_at_threshold (per distance unit)."""
    if distance_threshold <= 0 or not 0 < probability_at_threshold < 1:
        raise IndicatorsError("distance_threshold must be > 0 and probability_at_threshold in ]0, 1[")
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


def _csr(graph: nx.Graph) -> tuple[list[str], np.ndarray, csr_matrix]:
    """(node order, areas, symmetric CSR matrix of link distances) of a graph. Zero distances are stored as the
    smallest positive float so that scipy keeps them as edges."""
    order = list(graph.nodes)
    pos = {n: i for i, n in enumerate(order)}
    areas = np.array([graph.nodes[n]["area_ha"] for n in order], dtype=float)
    rows, cols, data = [], [], []
    for u, v, d in graph.edges(data="distance"):
        rows += [pos[u], pos[v]]
        cols += [pos[v], pos[u]]
        data += [max(float(d), _TINY)] * 2
    n = len(order)
    return order, areas, csr_matrix((data, (rows, cols)), shape=(n, n))


def _limit(k: float, min_probability: float) -> float:
    """Distance beyond which p* < ``min_probability``: the Dijkstra cut-off (pairs farther count as unconnected)."""
    return -math.log(min_probability) / k if k > 0 else np.inf


def _distances(matrix: csr_matrix, k: float, min_probability: float, span: float = 1.0) -> np.ndarray:
    """All shortest-path distances, cut off at ``span`` × the distance where p* < ``min_probability``."""
    if matrix.shape[0] == 0:
        return np.zeros((0, 0))
    return dijkstra(matrix, directed=False, limit=span * _limit(k, min_probability))


def _pc_sum(areas: np.ndarray, dist: np.ndarray, k: float) -> float:
    """Σ_i Σ_j a_i a_j exp(-k d_ij) (unreachable pairs: d = inf → 0)."""
    return float(areas @ np.exp(-k * dist) @ areas)


def pc_numerator(graph: nx.Graph, k: float, min_probability: float = DEFAULT_MIN_PROBABILITY) -> float:
    """Σ_i Σ_j a_i a_j p*_ij over the whole graph (ha²)."""
    _, areas, matrix = _csr(graph)
    return _pc_sum(areas, _distances(matrix, k, min_probability), k) if len(areas) else 0.0


def iic_numerator(graph: nx.Graph, distance_threshold: float) -> float:
    """Σ_i Σ_j a_i a_j / (1 + nl_ij) on the binary graph of links with distance ≤ threshold (ha²)."""
    order, areas, matrix = _csr(graph)
    if not len(order):
        return 0.0
    binary = matrix.copy()
    binary.data = np.where(binary.data <= distance_threshold * (1 + _REL_TOL), 1.0, 0.0)
    binary.eliminate_zeros()
    hops = shortest_path(binary, directed=False, unweighted=True)
    return float(areas @ (1.0 / (1.0 + hops)) @ areas)


def _without(matrix: csr_matrix, node: int | None = None, edge: tuple[int, int] | None = None) -> csr_matrix:
    """A copy of the distance matrix without a node's links or without one link."""
    coo = matrix.tocoo()
    keep = np.ones(coo.nnz, dtype=bool)
    if node is not None:
        keep &= (coo.row != node) & (coo.col != node)
    if edge is not None:
        keep &= ~(((coo.row == edge[0]) & (coo.col == edge[1])) | ((coo.row == edge[1]) & (coo.col == edge[0])))
    return csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


def _local_distances(matrix: csr_matrix, dist: np.ndarray, centre: int, affected: np.ndarray, k: float,
                     min_probability: float, *, node: int | None = None, edge: tuple[int, int] | None = None
                     ) -> np.ndarray:
    """Distances from the ``affected`` nodes to the affected nodes once ``node`` or ``edge`` is removed.

    Only paths no longer than the cut-off L matter, and every node of such a path between two affected nodes
    (within L of ``centre``) lies within 2L of ``centre``, so the Dijkstra runs on that neighbourhood only."""
    limit = _limit(k, min_probability)
    around = np.flatnonzero(dist[centre] <= 2 * limit)
    if len(around) < matrix.shape[0]:
        sub = matrix[around][:, around]
        pos = np.full(matrix.shape[0], -1)
        pos[around] = np.arange(len(around))
        local = _without(sub, node=pos[node] if node is not None else None,
                         edge=(pos[edge[0]], pos[edge[1]]) if edge is not None else None)
        rows = dijkstra(local, directed=False, indices=pos[affected], limit=limit)
        return rows[:, pos[affected]]
    full = _without(matrix, node=node, edge=edge)
    return dijkstra(full, directed=False, indices=affected, limit=limit)[:, affected]


def _loss(areas: np.ndarray, dist: np.ndarray, affected: np.ndarray, new_rows: np.ndarray, k: float) -> float:
    """Σ over affected pairs (both ends affected) of a_i a_j (p*_ij − p*'_ij)."""
    a = areas[affected]
    old = np.exp(-k * dist[np.ix_(affected, affected)])
    new = np.exp(-k * new_rows)
    return float(a @ (old - new) @ a)


def node_importance(graph: nx.Graph, k: float, min_probability: float = DEFAULT_MIN_PROBABILITY) -> pd.DataFrame:
    """dPC of each node and its intra / flux / connector fractions (%), plus its component number.

    The connector part of node k is the loss of Σ a_i a_j p*_ij over the pairs whose best path runs through k: only
    the sources i of such paths are re-run (cut-off Dijkstra on the graph without k), so the cost grows with the size
    of k's neighbourhood, not with the whole graph."""
    order, areas, matrix = _csr(graph)
    dist = _distances(matrix, k, min_probability, span=2.0)
    prob = np.exp(-k * dist)
    total = float(areas @ prob @ areas)
    labels = _component_labels(order, matrix)
    rows = []
    for idx, node in enumerate(order):
        a_k = areas[idx]
        flux = 2.0 * a_k * (float(areas @ prob[idx]) - a_k)
        intra = a_k * a_k
        connector = 0.0
        near = np.flatnonzero(dist[idx] <= _limit(k, min_probability))
        near = near[near != idx]
        if len(near) > 1:
            via = dist[near, idx][:, None] + dist[idx, near][None, :]
            sub = dist[np.ix_(near, near)]
            hit = via <= sub * (1 + _REL_TOL) + _REL_TOL
            np.fill_diagonal(hit, False)
            affected = near[hit.any(axis=1)]
            if len(affected):
                new_rows = _local_distances(matrix, dist, idx, affected, k, min_probability, node=idx)
                connector = max(_loss(areas, dist, affected, new_rows, k), 0.0)
        rows.append({"id": node, "area_ha": a_k, "component": labels[idx],
                     "dpc_intra": 100 * intra / total, "dpc_flux": 100 * flux / total,
                     "dpc_connector": 100 * connector / total})
    nodes = pd.DataFrame(rows, columns=["id", "area_ha", "component", "dpc_intra", "dpc_flux", "dpc_connector"])
    nodes.insert(3, "dpc", nodes[["dpc_intra", "dpc_flux", "dpc_connector"]].sum(axis=1))
    return _ranked(nodes, "dpc")


def _component_labels(order: list[str], matrix: csr_matrix) -> list[int]:
    """Component number of each node; components numbered in the order of their smallest node id."""
    if not order:
        return []
    _, lab = connected_components(matrix, directed=False)
    first: dict[int, str] = {}
    for node, comp in zip(order, lab):
        first[comp] = min(first.get(comp, node), node)
    rank = {comp: i for i, comp in enumerate(sorted(first, key=first.__getitem__))}
    return [rank[comp] for comp in lab]


def link_importance(graph: nx.Graph, k: float, min_probability: float = DEFAULT_MIN_PROBABILITY) -> pd.DataFrame:
    """dPC (%) of each link: the relative loss of PC when the link alone is removed (only the sources whose
    shortest-path tree uses the link are re-run)."""
    order, areas, matrix = _csr(graph)
    pos = {n: i for i, n in enumerate(order)}
    dist = _distances(matrix, k, min_probability, span=2.0)
    total = float(areas @ np.exp(-k * dist) @ areas)
    rows = []
    for u, v, d in graph.edges(data="distance"):
        i, j = pos[u], pos[v]
        loss = 0.0
        if dist[i, j] >= d * (1 - _REL_TOL) - _REL_TOL:      # the link is a shortest u–v path
            w = max(float(d), _TINY)
            du, dv = dist[:, i], dist[:, j]
            uses = ((du + w <= dv * (1 + _REL_TOL) + _REL_TOL) | (dv + w <= du * (1 + _REL_TOL) + _REL_TOL))
            reach = _limit(k, min_probability)
            affected = np.flatnonzero(uses & (du <= reach) & (dv <= reach))
            if len(affected):
                new_rows = _local_distances(matrix, dist, i, affected, k, min_probability, edge=(i, j))
                loss = max(_loss(areas, dist, affected, new_rows, k), 0.0)
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
                    distance_threshold: float, probability_at_threshold: float,
                    min_probability: float = DEFAULT_MIN_PROBABILITY) -> ConnectivityResult:
    """PC, EC(PC), IIC of the network and the dPC of every node and link.

    ``nodes``: id, area_ha; ``links``: from_id, to_id, distance (same unit as ``distance_threshold``);
    ``landscape_area_ha``: A_L, the area of the study region (ha).
    """
    if landscape_area_ha <= 0:
        raise IndicatorsError("landscape_area_ha must be > 0")
    k = decay_constant(distance_threshold, probability_at_threshold)
    graph = build_graph(nodes, links)
    a_l2 = landscape_area_ha ** 2
    pc_sum = pc_numerator(graph, k, min_probability)
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
        node_table = node_importance(graph, k, min_probability)
        link_table = link_importance(graph, k, min_probability)
    else:
        node_table = _ranked(pd.DataFrame(columns=["id", "area_ha", "component", "dpc", "dpc_intra", "dpc_flux",
                                                   "dpc_connector"]), "dpc")
        link_table = _ranked(pd.DataFrame(columns=["from_id", "to_id", "distance", "probability", "dpc"]), "dpc")
    return ConnectivityResult(summary=summary, nodes=node_table, links=link_table)


def links_from_corridors(corridors: gpd.GeoDataFrame, where: str) -> pd.DataFrame | None:
    """Links (from_id, to_id, distance = corridor cost) or None when no corridor carries a cost (then the caller
    falls back on Euclidean distances). Some costs present and others missing is an error. Missing links
    (``missing_link`` = 1: corridors to create across a barrier) do not exist yet: they are left out."""
    if "missing_link" in corridors.columns:
        corridors = corridors[pd.to_numeric(corridors["missing_link"], errors="coerce").fillna(0) != 1]
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


def network_links(reservoirs: gpd.GeoDataFrame, lines: gpd.GeoDataFrame, *, snap_m: float,
                  max_distance_m: float, barriers: gpd.GeoDataFrame | None = None,
                  barrier_snap_m: float = 0.0) -> pd.DataFrame:
    """Links between reservoirs along a line network (wet corridors): from_id, to_id, distance (m, EPSG:2154).

    Every pair of reservoirs joined along the network (:func:`wet_network`) by at most ``max_distance_m`` is a link,
    its distance the shortest network distance (Dijkstra, networkx) plus the penalty of every barrier passed
    (``barriers``: id, penalty_m, geometry; see :func:`passability_penalty_m`).
    """
    net = wet_network(reservoirs, lines, snap_m=snap_m, barriers=barriers, barrier_snap_m=barrier_snap_m)
    return reservoir_links(net, max_distance_m)


# --- wet network with obstacle passability (trame bleue) -------------------------------------------------------------
@dataclass
class WetNetwork:
    """The watercourse graph of a trame bleue sous-trame, its reservoirs and the wet barriers on it.

    ``graph`` (networkx): nodes are network vertices (x, y rounded to 1 cm) and reservoirs ``("R", id)``; each
    edge carries ``length`` (m, 0 for a reservoir attachment) and ``barriers``, a tuple of (barrier id, penalty m)
    of the wet rupture points on it. ``barrier_edges``: barrier id → the edges (u, v) it sits on (absent when it
    lies on no stretch of the network: inside a reservoir, or too far from any line).
    """

    graph: nx.Graph
    ids: list[str]
    barrier_edges: dict[str, list[tuple]] = field(default_factory=dict)


def passability_penalty_m(passability: float, k: float) -> float:
    """Added network distance (m) of a barrier of passability π ∈ [0, 1]: −ln(π) / k, so that the link probability
    exp(-k · (d + penalty)) = π · exp(-k · d) (DCI: the passabilities multiply the dispersal probability; Cote et
    al. 2009, Baldan et al. 2022). π = 0 (total barrier): +inf, the stretch is cut; π = 1: 0."""
    if not 0 <= passability <= 1:
        raise IndicatorsError(f"passability must be in [0, 1], got {passability}")
    if k <= 0:
        raise IndicatorsError("k must be > 0")
    return math.inf if passability == 0 else -math.log(passability) / k


def wet_network(reservoirs: gpd.GeoDataFrame, lines: gpd.GeoDataFrame, *, snap_m: float,
                barriers: gpd.GeoDataFrame | None = None, barrier_snap_m: float = 0.0) -> WetNetwork:
    """The watercourse graph between reservoirs (EPSG:2154, metres) with its barriers.

    The lines are noded and cut at the reservoir outlines (a stretch inside a reservoir costs nothing); a network
    vertex within ``snap_m`` of a reservoir is attached to it. Two stretches joining the same two vertices are both
    kept (the second through its midpoint), so making a barrier passable can switch to the stretch it was on.
    ``barriers``: points with ``id`` and ``penalty_m`` (:func:`passability_penalty_m`); each is put on the nearest
    stretch within ``barrier_snap_m`` (a barrier further from every stretch, or inside a reservoir, is on none).
    """
    ids = reservoirs["id"].astype(str).tolist()
    graph = nx.Graph()
    out = WetNetwork(graph=graph, ids=ids)
    if not len(ids) or lines.empty:
        return out
    network = shapely.get_parts(shapely.union_all(np.asarray(lines.geometry.values)))
    network = np.asarray([g for g in network if g.geom_type == "LineString"], dtype=object)
    patch_union = shapely.union_all(np.asarray(reservoirs.geometry.values))
    outside = shapely.get_parts(shapely.difference(network, patch_union)) if len(network) else []
    outside = [g for g in outside if g.geom_type == "LineString" and g.length > 0]

    def node(xy) -> tuple[float, float]:
        return (round(xy[0], 2), round(xy[1], 2))

    on_piece: dict[int, list[tuple[str, float]]] = {}
    midpoints: set[tuple[float, float]] = set()
    if barriers is not None and len(barriers) and outside:
        tree = shapely.STRtree(outside)
        pts = np.asarray(barriers.geometry.values)
        b_idx, p_idx = tree.query_nearest(pts, max_distance=barrier_snap_m, all_matches=False)
        for b, p in zip(b_idx, p_idx):
            row = barriers.iloc[b]
            on_piece.setdefault(int(p), []).append((str(row["id"]), float(row["penalty_m"])))
    for i, geom in enumerate(outside):
        a, b = node(geom.coords[0]), node(geom.coords[-1])
        bars = tuple(on_piece.get(i, ()))
        if a == b:
            continue
        if graph.has_edge(a, b):          # a parallel stretch: through its midpoint, as two half edges
            mid = node(geom.interpolate(0.5, normalized=True).coords[0])
            midpoints.add(mid)
            halves = [(a, mid, bars), (mid, b, ())]
        else:
            halves = [(a, b, bars)]
        share = 1.0 / len(halves)
        for u, v, bb in halves:
            graph.add_edge(u, v, length=geom.length * share, barriers=bb)
            for bid, _ in bb:
                out.barrier_edges.setdefault(bid, []).append((u, v))
    tree = reservoirs.sindex
    for n in [n for n in graph.nodes if n not in midpoints]:
        for k in tree.query(shapely.Point(n), predicate="dwithin", distance=snap_m):
            graph.add_edge(n, ("R", ids[k]), length=0.0, barriers=())
    return out


def _weight(passable: frozenset):
    """Edge weight for networkx: length + the penalties of the barriers not made passable (None: cut)."""
    def weight(u, v, data):
        total = data["length"]
        for bid, penalty in data["barriers"]:
            if bid not in passable:
                total += penalty
        return None if math.isinf(total) else total
    return weight


def reservoir_links(net: WetNetwork, max_distance_m: float, *, passable: frozenset = frozenset(),
                    sources: list[str] | None = None) -> pd.DataFrame:
    """Links between reservoirs along the network: from_id, to_id, distance = shortest network distance (m) plus
    the penalties of the barriers passed (those in ``passable`` count 0), when ≤ ``max_distance_m``.

    ``sources``: only the links from these reservoirs (every reservoir by default; then each pair once, from_id <
    to_id); with ``sources``, each link found once per source, from_id = the source."""
    cols = ["from_id", "to_id", "distance"]
    rows = []
    weight = _weight(frozenset(passable))
    for rid in (net.ids if sources is None else sources):
        if not net.graph.has_node(("R", rid)):
            continue
        reach = nx.single_source_dijkstra_path_length(net.graph, ("R", rid), cutoff=max_distance_m, weight=weight)
        rows += [(rid, other[1], d) for other, d in reach.items()
                 if isinstance(other[0], str) and other[1] != rid and (sources is not None or other[1] > rid)]
    return pd.DataFrame(rows, columns=cols)


def passable_changes(net: WetNetwork, barrier_ids: list[str], max_distance_m: float
                     ) -> list[tuple[str, str, float]] | None:
    """The reservoir links that get shorter when these barriers become passable: [(from_id, to_id, new distance)],
    or None when none of them lies on a potential link (on no stretch, or on a stretch that no path between two
    reservoirs crosses within ``max_distance_m``, the barriers passable): the site is outside the graph.

    Only the reservoirs within ``max_distance_m`` of the barriers' stretches (barriers passable) are re-run."""
    passable = frozenset(barrier_ids)
    edges = [e for b in barrier_ids for e in net.barrier_edges.get(b, [])]
    if not edges:
        return None
    weight = _weight(passable)
    on_link = False
    near: set[str] = set()
    for u, v in edges:
        def besides(a, b, data, edge=frozenset((u, v))):   # reservoirs reach u and v without crossing (u, v)
            return None if frozenset((a, b)) == edge else weight(a, b, data)

        du = nx.single_source_dijkstra_path_length(net.graph, u, cutoff=max_distance_m, weight=besides)
        dv = nx.single_source_dijkstra_path_length(net.graph, v, cutoff=max_distance_m, weight=besides)
        ru = {n[1]: d for n, d in du.items() if isinstance(n[0], str)}
        rv = {n[1]: d for n, d in dv.items() if isinstance(n[0], str)}
        w = net.graph[u][v]["length"]
        near |= set(ru) | set(rv)
        on_link = on_link or any(a != b and ru[a] + w + rv[b] <= max_distance_m * (1 + _REL_TOL)
                                 for a in ru for b in rv)
    if not on_link:
        return None
    sources = sorted(near)
    before = reservoir_links(net, max_distance_m, sources=sources)
    after = reservoir_links(net, max_distance_m, passable=passable, sources=sources)
    old = {(a, b): d for a, b, d in before.itertuples(index=False)}
    return [(a, b, float(d)) for a, b, d in after.itertuples(index=False)
            if a < b and d < old.get((a, b), math.inf) * (1 - _REL_TOL)]
