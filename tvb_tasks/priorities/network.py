"""A sous-trame's habitat network as a sparse graph, with incremental ΔPC / ΔEC for link improvements.

Nodes are reservoirs (area a_i, ha), links carry a distance d_ij (corridor cost, Σ friction × m, or edge-to-edge
metres): the same graph as :mod:`tvb_tasks.indicators.connectivity` (inputs built by the indicators'
``_network_inputs``), and the same PC sum Σ_i Σ_j a_i a_j exp(-k D_ij) (``connectivity._pc_sum``).

All-pairs shortest distances D come from ``scipy.sparse.csgraph.dijkstra`` with ``limit`` = the distance at which
p_ij falls to ``min_probability`` (pairs farther apart contribute less than that and are left at +inf). This is
computed ONCE per sous-trame. Lowering one link (u, v) to d' < D_uv then gives the exact new matrix in O(n²):

    D'_ij = min(D_ij, D_iu + d' + D_vj, D_iv + d' + D_uj)

(a shortest path uses the improved link at most once); several links are lowered one after the other, on the
block of the nodes within ``limit`` of the changed links' ends only (:func:`improvement`: the cost of a candidate
does not grow with the territory). Every new
path no longer than ``limit`` is made of pieces no longer than ``limit``, so the cut-off never hides one. Removing
or lengthening links (project screening) re-runs Dijkstra on the modified sparse graph.

ΔPC (%) = 100 · (PCsum' − PCsum) / PCsum and ΔEC (ha) = sqrt(PCsum') − sqrt(PCsum), as Graphab's dPC and delta-EC
(Foltête et al. 2012; Saura & Rubio 2010) — here for a change of the network instead of an element's removal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from tvb_tasks.indicators.connectivity import _pc_sum, decay_constant

_ZERO = 1e-9   # csgraph treats explicit zeros as missing links: touching reservoirs get this tiny distance


@dataclass
class Network:
    """Graph of one sous-trame: node ids / areas (ha), link distances, decay k, cut-off and base distances."""

    ids: list[str]
    areas: np.ndarray
    links: dict[tuple[int, int], float]
    k: float
    limit: float
    dist: np.ndarray = field(repr=False)
    pc_sum: float = 0.0
    # trame bleue on the watercourses: (watercourse graph with its barriers, link cut-off m), else None
    wet: tuple | None = field(default=None, repr=False)

    @cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.ids)}

    @property
    def ec_ha(self) -> float:
        return math.sqrt(self.pc_sum)


def _pair(i: int, j: int) -> tuple[int, int]:
    """Key of the undirected link between node positions ``i`` and ``j``: (smaller, larger)."""
    return (i, j) if i <= j else (j, i)


def _matrix(n: int, links: dict[tuple[int, int], float]) -> csr_matrix:
    if not links:
        return csr_matrix((n, n))
    (rows, cols), vals = zip(*links.keys()), [max(v, _ZERO) for v in links.values()]
    return csr_matrix((vals, (rows, cols)), shape=(n, n))


def shortest_paths(n: int, links: dict[tuple[int, int], float], limit: float) -> np.ndarray:
    """All-pairs least distances (undirected), +inf beyond ``limit``; 0 on the diagonal."""
    if n == 0:
        return np.zeros((0, 0))
    dist = dijkstra(_matrix(n, links), directed=False, limit=limit)
    dist[dist > limit] = np.inf
    return dist


def build_network(nodes: pd.DataFrame, links: pd.DataFrame, *, distance_threshold: float,
                  probability_at_threshold: float, min_probability: float) -> Network:
    """A :class:`Network` from ``nodes`` (id, area_ha) and ``links`` (from_id, to_id, distance ≥ 0).

    Parallel links keep the shortest distance; self-links and links to unknown ids are dropped (the indicators'
    graph builder refuses unknown ids; here a candidate's corridor may point at a reservoir of another layer
    version, and simply does not count).
    """
    k = decay_constant(distance_threshold, probability_at_threshold)
    limit = -math.log(min_probability) / k
    ids = nodes["id"].astype(str).tolist()
    pos = {n: i for i, n in enumerate(ids)}
    table: dict[tuple[int, int], float] = {}
    for u, v, d in zip(links["from_id"].astype(str), links["to_id"].astype(str),
                       pd.to_numeric(links["distance"], errors="coerce")):
        if u == v or u not in pos or v not in pos or not np.isfinite(d):
            continue
        key = _pair(pos[u], pos[v])
        table[key] = min(float(d), table.get(key, np.inf))
    areas = nodes["area_ha"].to_numpy(dtype=float)
    dist = shortest_paths(len(ids), table, limit)
    return Network(ids=ids, areas=areas, links=table, k=k, limit=limit, dist=dist,
                   pc_sum=_pc_sum(areas, dist, k) if len(ids) else 0.0)


def lowered(dist: np.ndarray, u: int, v: int, new_distance: float, limit: float) -> np.ndarray:
    """Distances after link (u, v) drops to ``new_distance`` (exact update, O(n²)); returns a new matrix."""
    d = max(float(new_distance), 0.0)
    if d >= dist[u, v]:
        return dist
    via = np.minimum(dist[:, u, None] + d + dist[None, v, :], dist[:, v, None] + d + dist[None, u, :])
    out = np.minimum(dist, via)
    out[out > limit] = np.inf
    return out


def improvement(net: Network, changes: list[tuple[str, str, float]]) -> tuple[float, float]:
    """(ΔPC %, ΔEC ha) when each link (from_id, to_id) drops to its new distance (links absent from the graph are
    added). Unknown ids are ignored; no change gives (0, 0).

    Local: only the pairs of nodes within ``limit`` of an end of a changed link can change (a new path no longer
    than ``limit`` reaches the first changed link it uses by an unchanged path no longer than ``limit``), so the
    update and the PC difference are computed on that block of the matrix, not the whole n × n one (which made
    the ranking ∝ candidates × n² ∝ area³, issue #18). PCsum' = PCsum + Σ_block a_i a_j (p'_ij − p_ij).
    """
    if net.pc_sum <= 0 or not changes:
        return 0.0, 0.0
    pos = net.index
    ends = [(pos[a], pos[b], d) for a, b, d in changes if a in pos and b in pos and a != b]
    if not ends:
        return 0.0, 0.0
    near = np.flatnonzero(np.isfinite(net.dist[:, sorted({e for u, v, _ in ends for e in (u, v)})]).any(axis=1))
    local = {int(n): i for i, n in enumerate(near)}
    block = before = net.dist[np.ix_(near, near)]
    for u, v, d in ends:
        block = lowered(block, local[u], local[v], d, net.limit)
    if block is before:
        return 0.0, 0.0
    a = net.areas[near]
    after = net.pc_sum + float(a @ (np.exp(-net.k * block) - np.exp(-net.k * before)) @ a)
    return 100.0 * (after - net.pc_sum) / net.pc_sum, math.sqrt(after) - math.sqrt(net.pc_sum)


def degradation(net: Network, *, area_loss_ha: dict[str, float], removed_links: list[tuple[str, str]],
                lengthened_links: list[tuple[str, str, float]]) -> tuple[float, float]:
    """(ΔPC %, ΔEC ha) ≤ 0 when reservoirs lose area (a node left with no area is removed with its links), links
    are cut or get longer (new distance). Recomputes Dijkstra on the modified graph."""
    if net.pc_sum <= 0:
        return 0.0, 0.0
    pos = net.index
    areas = net.areas.copy()
    for node, loss in area_loss_ha.items():
        if node in pos:
            areas[pos[node]] = max(areas[pos[node]] - float(loss), 0.0)
    links = dict(net.links)
    for a, b in removed_links:
        if a in pos and b in pos:
            links.pop(_pair(pos[a], pos[b]), None)
    for a, b, d in lengthened_links:
        key = _pair(pos[a], pos[b]) if a in pos and b in pos else None
        if key in links:
            links[key] = max(links[key], float(d))
    gone = {i for i, a in enumerate(areas) if a <= 0}
    links = {key: d for key, d in links.items() if not gone.intersection(key)}
    if links == net.links and np.array_equal(areas, net.areas):
        return 0.0, 0.0
    dist = shortest_paths(len(areas), links, net.limit)
    after = _pc_sum(areas, dist, net.k)
    return 100.0 * (after - net.pc_sum) / net.pc_sum, math.sqrt(after) - math.sqrt(net.pc_sum)
