"""Cost-distance from reservoirs and terrestrial corridors (least-cost paths) of one sous-trame.

1. Every reservoir cell is a source of an exact multi-source Dijkstra on the friction raster
   (:func:`tvb_tasks.layers.costdistance.accumulated_cost`), cut off at the sous-trame's ``max_cost`` (its dispersal
   capacity, in cost units = friction × metres).
2. Candidate links = pairs of reservoirs whose allocation zones touch (Linkage-Mapper / Graphab "Voronoi in cost
   space" adjacency); the link cost is the cheapest crossing of their common border, its path the concatenation of
   the two back-link traces. Links costlier than ``max_cost`` are dropped; each reservoir keeps its
   ``max_links_per_reservoir`` cheapest links (a link is kept when it is among the cheapest of either end).
3. One corridor per kept link; a stretch shared with a cheaper corridor of the same sous-trame, or running beside
   it within one cell (trunks near a reservoir), is drawn once, by the cheaper one, so overlapping paths are merged
   and lengths never counted twice.
4. Status of each corridor's own stretch from the land-use friction along it (infrastructures excluded: their crossings are
   rupture points): length-weighted geometric mean (the BioDispersal scale is logarithmic) compared to
   ``existing_max_mean_friction`` (≤ → existing) and ``restore_max_mean_friction`` (≤ → to restore, above → to
   create).

CRS: territory CRS (EPSG:2154); lengths in metres; costs in friction × metres.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import LineString, MultiLineString

from . import costdistance as cd
from .common import Grid, empty_frame, rasterize_values

__all__ = ["reservoir_sources", "cost_from_reservoirs", "select_links", "link_paths", "corridor_lines",
           "corridor_status", "CORRIDOR_COLUMNS"]

CORRIDOR_COLUMNS = ["id", "sous_trame", "from_id", "to_id", "status", "length_m", "path_length_m", "cost",
                    "mean_friction"]


def reservoir_sources(reservoirs: gpd.GeoDataFrame, grid: Grid, passable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source cells of the reservoirs: ``(rows_cols (N, 2), reservoir_index (N,))`` (index = row in ``reservoirs``).

    Cells whose centre is in a reservoir; a reservoir too thin to hold a centre gets the cells it touches.
    Only ``passable`` cells (inside the territory, finite friction) are kept.
    """
    if reservoirs.empty:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    ids = np.arange(1, len(reservoirs) + 1)
    lab = rasterize_values(reservoirs.geometry, ids, grid, fill=0, dtype="int32")
    lab[~passable] = 0
    missing = np.setdiff1d(ids, np.unique(lab))
    if len(missing):
        touched = rasterize_values(reservoirs.geometry.iloc[missing - 1], missing, grid, fill=0, dtype="int32",
                                   all_touched=True)
        fill = (lab == 0) & (touched > 0) & passable
        lab[fill] = touched[fill]
    rows, cols = np.nonzero(lab)
    return np.stack([rows, cols], axis=1).astype(np.int64), (lab[rows, cols] - 1).astype(np.int64)


def cost_from_reservoirs(friction: np.ndarray, sources_rc: np.ndarray, source_res: np.ndarray, grid: Grid, *,
                         max_cost: float, knight: bool):
    """Accumulated cost (float64: NaN impassable, +inf beyond ``max_cost``), back-links and the allocation raster
    mapped to reservoir indices (-1 = not reached)."""
    acc, back, alloc = cd.accumulated_cost(friction, sources_rc, cell_size=grid.res, knight=knight,
                                           max_cost=max_cost, return_backlinks=True, return_allocation=True)
    alloc_res = np.where(alloc >= 0, source_res[np.clip(alloc, 0, None)], -1).astype(np.int32)
    return acc, back, alloc_res


def select_links(friction: np.ndarray, acc: np.ndarray, alloc_res: np.ndarray, grid: Grid, *, knight: bool,
                 max_cost: float, max_links: int) -> pd.DataFrame:
    """Links between reservoirs whose cost zones touch, cost ≤ ``max_cost``, k cheapest per reservoir.

    Columns: ``a``, ``b`` (reservoir indices, a < b), ``cost``, ``cell_a``, ``cell_b`` ((row, col) tuples).
    """
    cols = ["a", "b", "cost", "cell_a", "cell_b"]
    if alloc_res.max(initial=-1) < 1:
        return pd.DataFrame(columns=cols)
    pairs, costs, cells = cd.adjacent_sources(friction, acc, alloc_res, cell_size=grid.res, knight=knight)
    df = pd.DataFrame({"a": pairs[:, 0], "b": pairs[:, 1], "cost": costs,
                       "cell_a": [tuple(c) for c in cells[:, 0]], "cell_b": [tuple(c) for c in cells[:, 1]]})
    df = df[df["cost"] <= max_cost]
    if df.empty:
        return pd.DataFrame(columns=cols)
    ends = pd.concat([df[["a", "cost"]].rename(columns={"a": "r"}).assign(k=df.index),
                      df[["b", "cost"]].rename(columns={"b": "r"}).assign(k=df.index)])
    ends = ends.sort_values(["r", "cost", "k"], kind="stable")
    keep = ends.groupby("r").head(max_links)["k"].unique()
    return df.loc[np.sort(keep)].sort_values(["cost", "a", "b"], kind="stable").reset_index(drop=True)[cols]


def link_paths(links: pd.DataFrame, back: np.ndarray) -> list[list[tuple[int, int]]]:
    """Cell paths (row, col) of each link, from reservoir ``a`` to reservoir ``b`` (both source cells included)."""
    return [cd.trace_path(back, a)[::-1] + cd.trace_path(back, b) for a, b in zip(links["cell_a"], links["cell_b"])]


def corridor_status(mean_friction: float, status_cfg) -> str:
    """existing / to_restore / to_create from a mean land-use friction and the YAML thresholds."""
    if mean_friction <= status_cfg.existing_max_mean_friction:
        return "existing"
    if mean_friction <= status_cfg.restore_max_mean_friction:
        return "to_restore"
    return "to_create"


def _edge_stats(cells: list[int], W: int, res: float, friction: np.ndarray, lu_friction: np.ndarray):
    """(length m, accumulated cost, geometric-mean land-use friction) along a chain of flat cell indices."""
    c = np.asarray(cells)
    if len(c) < 2:
        return 0.0, 0.0, float(lu_friction.reshape(-1)[c[0]]) if len(c) else float("nan")
    f = friction.reshape(-1)[c].astype(np.float64)
    lu = np.log(lu_friction.reshape(-1)[c].astype(np.float64))
    r, k = np.divmod(c, W)
    step = np.hypot(np.diff(r), np.diff(k)) * res
    cost = float(np.sum((f[:-1] + f[1:]) / 2.0 * step))
    gm = float(np.exp(np.sum((lu[:-1] + lu[1:]) / 2.0 * step) / np.sum(step)))
    return float(step.sum()), cost, gm


def _line(cells: list[int], grid: Grid) -> LineString:
    r, k = np.divmod(np.asarray(cells), grid.shape[1])
    x, y = grid.cell_centres(r, k)
    return LineString(np.column_stack([x, y])).simplify(0)


def _runs(path: list[int], own: list[bool]) -> list[list[int]]:
    """Maximal runs of consecutive edges flagged ``own`` along a cell path, as cell lists."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for i, flag in enumerate(own):
        if flag:
            if not cur:
                cur = [path[i]]
            cur.append(path[i + 1])
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def corridor_lines(territory, sous_trame: str, reservoirs: gpd.GeoDataFrame, links: pd.DataFrame,
                   paths: list[list[tuple[int, int]]], friction: np.ndarray, lu_friction: np.ndarray,
                   grid: Grid) -> gpd.GeoDataFrame:
    """Corridor layer (:data:`CORRIDOR_COLUMNS`) of a sous-trame: one feature per kept link.

    Links are taken by increasing cost; a step whose two cells are on, or within ``corridors.dedup_tolerance_m``
    metres of (one cell when unset; the 8-neighbourhood at 25 m), a corridor already drawn for the same sous-trame (paths sharing a trunk, or running side by side, near a
    reservoir) is not drawn again, so the geometry, ``length_m``, ``mean_friction`` and ``status`` describe the
    corridor's own stretch and lengths add up without double counting. ``cost`` is the
    least-cost distance of the whole link, ``path_length_m`` the length of its whole path. A link whose path is
    entirely drawn already is a duplicate: it is dropped.
    """
    crs = territory.crs
    status_cfg = territory.corridors.status
    W = grid.shape[1]
    if not paths:
        return empty_frame(crs, CORRIDOR_COLUMNS)
    res_ids = reservoirs["id"].tolist()
    H = grid.shape[0]
    tol = territory.corridors.dedup_tolerance_m
    k = max(1, int(round((grid.res if tol is None else tol) / grid.res)))   # radius in cells, ≥ 1
    dr, dc = np.mgrid[-k:k + 1, -k:k + 1]
    disk = (dr ** 2 + dc ** 2) <= k * k + (1 if k == 1 else 0)             # k = 1: the 8-neighbourhood
    dr, dc = dr[disk], dc[disk]
    near: set[int] = set()          # cells of the corridors drawn so far and their neighbours within tolerance
    rows, geoms = [], []
    for k_link, path in enumerate(paths):
        flat = [r * W + c for r, c in path]
        own = [not (u in near and v in near) for u, v in zip(flat[:-1], flat[1:])]
        pr = np.asarray([p[0] for p in path])[:, None] + dr[None, :]
        pc = np.asarray([p[1] for p in path])[:, None] + dc[None, :]
        ok = (pr >= 0) & (pr < H) & (pc >= 0) & (pc < W)
        near.update((pr[ok] * W + pc[ok]).tolist())
        runs = _runs(flat, own)
        if not runs:
            continue
        stats = [_edge_stats(run, W, grid.res, friction, lu_friction) for run in runs]
        length = sum(s[0] for s in stats)
        gm = float(np.exp(sum(s[0] * np.log(s[2]) for s in stats) / length)) if length > 0 else stats[0][2]
        full_length = _edge_stats(flat, W, grid.res, friction, lu_friction)[0]
        lines = [_line(run, grid) for run in runs]
        rows.append({"sous_trame": sous_trame, "from_id": res_ids[int(links["a"].iloc[k_link])],
                     "to_id": res_ids[int(links["b"].iloc[k_link])], "status": corridor_status(gm, status_cfg),
                     "length_m": length, "path_length_m": full_length,
                     "cost": float(links["cost"].iloc[k_link]),
                     "mean_friction": gm})
        geoms.append(lines[0] if len(lines) == 1 else MultiLineString(lines))
    out = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)
    out.insert(0, "id", [f"{sous_trame}-C{i:03d}" for i in range(1, len(out) + 1)])
    return out[CORRIDOR_COLUMNS + ["geometry"]]
