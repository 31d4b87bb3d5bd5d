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
4. Status of each corridor's own stretch from the land-use friction along it (infrastructures excluded: their
   crossings are rupture points), as a field ecologist reads a corridor: the **longest unsupported gap** (metres in
   a row of cells whose land-use friction is ≥ ``gap_min_friction``: crops, built-up) and the **share of supporting
   elements** (length share of cells with friction ≤ ``support_max_friction``: habitat, favourable land) —
   :func:`corridor_status`. :func:`downgrade_status` then lowers it one step when an untreated rupture point of
   severity ≥ ``downgrade_min_severity`` cuts the corridor, never below ``downgrade_floor`` ("to restore": the
   crossing is already a rupture point; only the corridor's own gap makes it "to create").
5. Missing links (fractures): links computed on the friction *without* the barriers (motorways, railways, canals:
   ``corridors.missing_links``) that the real network lacks become corridors (``missing_link`` = 1)
   with a Barrier-Mapper improvement score (McRae et al. 2012): cost saved per metre of barrier removed. A pair the
   real network already links is not drawn twice. Their status: the land stretch's, lowered one step by the
   barrier (the crossing is what is "to create").
6. Corridor width (:func:`corridor_area`): cells whose normalised cost cwd_A + cwd_B − LCD is ≤
   ``corridors.width.cost_margin`` (Linkage Mapper's normalised least-cost corridor), computed in the window of the
   two reservoirs' allocation zones.

The status rules (4) and the status per stretch of a corridor live in :mod:`tvb_tasks.layers.corridor_status`
(names re-exported here). CRS: territory CRS (EPSG:2154); lengths in metres; costs in friction × metres.

Why one module over 500 lines: every rule above is read by both the untiled engine and the tiled stages
(:mod:`tvb_tasks.layers.tile_links`, :mod:`tvb_tasks.layers.tile_missing`), which call these same functions on
values gathered from tiles; keeping the rules together keeps one implementation of each.
"""
from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio import features
from shapely import LineString, MultiLineString
from shapely.geometry import shape

from . import costdistance as cd
from .common import Grid, empty_frame, rasterize_values
from .corridor_status import (  # the status of corridors and stretches; re-exported (names imported from here)
    STATUS_ORDER,
    STRETCH_COLUMNS,
    _lower,
    corridor_status,
    corridor_stretches,
    downgrade_status,
    downgrade_stretches,
    gap_and_support,
    stretch_bounds,
)

__all__ = [
    "CORRIDOR_AREA_COLUMNS",
    "CORRIDOR_COLUMNS",
    "LINK_COLUMNS",
    "STATUS_ORDER",
    "STRETCH_COLUMNS",
    "barrier_crossing_scores",
    "corridor_area",
    "corridor_lines",
    "corridor_status",
    "corridor_stretches",
    "cost_from_reservoirs",
    "downgrade_status",
    "downgrade_stretches",
    "gap_and_support",
    "keep_cheapest_links",
    "link_paths",
    "reservoir_sources",
    "select_links",
    "stretch_bounds",
    "zone_windows",
]

CORRIDOR_COLUMNS = ["id", "sous_trame", "from_id", "to_id", "status", "length_m", "path_length_m", "cost",
                    "mean_friction", "max_gap_m", "support_share", "missing_link", "barrier_m", "cost_saved",
                    "improvement_score", "downgraded"]
LINK_COLUMNS = ["a", "b", "cost", "cell_a", "cell_b"]
CORRIDOR_AREA_COLUMNS = ["id", "corridor_id", "sous_trame", "status", "missing_link", "cost_margin", "area_ha",
                         "mean_width_m"]


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
                         max_cost: float, knight: bool, tiling=None):
    """Accumulated cost (float64: NaN impassable, +inf beyond ``max_cost``), back-links and the allocation raster
    mapped to reservoir indices (-1 = not reached). ``tiling`` (:class:`tvb_tasks.layers.tiles.TilingConfig`,
    enabled): computed by tiles, bit-identical."""
    if tiling is not None and tiling.enabled:
        from .tiles import tiled_accumulated_cost

        res = tiled_accumulated_cost(friction, sources_rc, tile_size=tiling.tile_size, overlap=tiling.overlap,
                                     cell_size=grid.res, knight=knight, max_cost=max_cost,
                                     max_rounds=tiling.max_rounds)
        acc, back, alloc = res.acc, res.back, res.alloc
    else:
        acc, back, alloc = cd.accumulated_cost(friction, sources_rc, cell_size=grid.res, knight=knight,
                                               max_cost=max_cost, return_backlinks=True, return_allocation=True)
    alloc_res = np.where(alloc >= 0, source_res[np.clip(alloc, 0, None)], -1).astype(np.int32)
    return acc, back, alloc_res


def select_links(friction: np.ndarray, acc: np.ndarray, alloc_res: np.ndarray, grid: Grid, *, knight: bool,
                 max_cost: float, max_links: int, nodata_mask: np.ndarray | None = None) -> pd.DataFrame:
    """Links between reservoirs whose cost zones touch, cost ≤ ``max_cost``, k cheapest per reservoir.

    Columns: ``a``, ``b`` (reservoir indices, a < b), ``cost``, ``cell_a``, ``cell_b`` ((row, col) tuples).
    ``nodata_mask``: the cost-distance's (knight's moves between masked cells are not crossings).
    """
    if alloc_res.max(initial=-1) < 1:
        return pd.DataFrame(columns=LINK_COLUMNS)
    pairs, costs, cells = cd.adjacent_sources(friction, acc, alloc_res, cell_size=grid.res, knight=knight,
                                              nodata_mask=nodata_mask)
    return keep_cheapest_links(pairs, costs, cells, max_cost=max_cost, max_links=max_links)


def keep_cheapest_links(pairs: np.ndarray, costs: np.ndarray, cells: np.ndarray, *, max_cost: float,
                        max_links: int) -> pd.DataFrame:
    """The links kept among the cheapest crossings of touching zones (``adjacent_sources``' output, sorted by
    pair): cost ≤ ``max_cost``, each reservoir's ``max_links`` cheapest (a link is kept when it is among the
    cheapest of either end; equal costs: the pair first in (a, b) order). Columns of :func:`select_links`, sorted
    by cost then pair. Costs in friction × m."""
    cols = LINK_COLUMNS
    if not len(pairs):
        return pd.DataFrame(columns=cols)
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


def _edge_stats(cells: list[int], W: int, res: float, friction, lu_friction):
    """(length m, accumulated cost, geometric-mean land-use friction) along a chain of flat cell indices.

    ``friction``, ``lu_friction``: rasters, or any object whose ``take(flat indices)`` gives the values at those
    cells as ``ndarray.take`` does (:class:`tvb_tasks.layers.tile_links.CellValues`: values gathered along paths)."""
    c = np.asarray(cells)
    if len(c) < 2:
        return 0.0, 0.0, float(lu_friction.take(c[:1])[0]) if len(c) else float("nan")
    f = friction.take(c).astype(np.float64)
    lu = np.log(lu_friction.take(c).astype(np.float64))
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
                   paths: list[list[tuple[int, int]]], friction, lu_friction,
                   grid: Grid, missing: list[dict | None] | None = None) -> gpd.GeoDataFrame:
    """Corridor layer (:data:`CORRIDOR_COLUMNS`) of a sous-trame: one feature per kept link.

    Links are taken by increasing cost; a step whose two cells are on, or within ``corridors.dedup_tolerance_m``
    metres of (one cell when unset; the 8-neighbourhood at 25 m), a corridor already drawn for the same sous-trame
    (paths sharing a trunk, or running side by side, near a reservoir) is not drawn again, so the geometry,
    ``length_m``, ``mean_friction``, ``max_gap_m``, ``support_share`` and ``status`` describe the corridor's own
    stretch and lengths add up without double counting. ``cost`` is the least-cost distance of the whole link,
    ``path_length_m`` the length of its whole path. A link whose path is entirely drawn already is a duplicate: it
    is dropped.

    ``missing``: one dict per link (same order) for missing links (fractures), ``None`` for real links; a missing
    link's dict gives ``barrier_m``, ``cost_saved``, ``improvement_score``. Its status is the one its land stretch
    gets (gap and support, as any corridor) lowered one step by the untreated barrier it crosses (``downgraded`` =
    1, never below ``status.downgrade_floor``): a link running on cavaliers across a motorway is "to restore" (the
    crossing is to create: the severity-4 rupture point), one across 500 m of crops and the motorway "to create"
    (its own gap), one whose land stretch is "to restore" stays "to restore". Missing links must come after the real
    ones (they are drawn after them).

    ``friction`` and ``lu_friction`` are read at path cells only (``take`` of flat indices): whole rasters, or the
    values gathered along the paths from tiles (:class:`tvb_tasks.layers.tile_links.CellValues`).
    """
    crs = territory.crs
    status_cfg = territory.corridors.status
    W = grid.shape[1]
    if not paths:
        return empty_frame(crs, CORRIDOR_COLUMNS)
    missing = missing if missing is not None else [None] * len(paths)
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
        own = [not (u in near and v in near) for u, v in itertools.pairwise(flat)]
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
        gaps = [gap_and_support(run, W, grid.res, lu_friction, status_cfg) for run in runs]
        max_gap = max(g[0] for g in gaps)
        support = sum(g[1] for g in gaps) / length if length > 0 else 0.0
        full_length = _edge_stats(flat, W, grid.res, friction, lu_friction)[0]
        lines = [_line(run, grid) for run in runs]
        fracture = missing[k_link]
        rows.append({"sous_trame": sous_trame, "from_id": res_ids[int(links["a"].iloc[k_link])],
                     "to_id": res_ids[int(links["b"].iloc[k_link])],
                     "status": _lower(corridor_status(max_gap, support, status_cfg), status_cfg.downgrade_floor)
                     if fracture
                     else corridor_status(max_gap, support, status_cfg),
                     "length_m": length, "path_length_m": full_length, "cost": float(links["cost"].iloc[k_link]),
                     "mean_friction": gm, "max_gap_m": max_gap, "support_share": support,
                     "missing_link": 1 if fracture else 0,
                     "barrier_m": float(fracture["barrier_m"]) if fracture else 0.0,
                     "cost_saved": float(fracture["cost_saved"]) if fracture else 0.0,
                     "improvement_score": float(fracture["improvement_score"]) if fracture else 0.0,
                     "downgraded": 1 if fracture else 0, "_link": k_link, "_runs": runs})
        geoms.append(lines[0] if len(lines) == 1 else MultiLineString(lines))
    if not rows:
        return empty_frame(crs, CORRIDOR_COLUMNS + ["_link", "_runs"])
    out = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)
    out.insert(0, "id", [f"{sous_trame}-C{i:03d}" for i in range(1, len(out) + 1)])
    return out[CORRIDOR_COLUMNS + ["_link", "_runs", "geometry"]]


def zone_windows(alloc: np.ndarray) -> list:
    """Bounding (row slice, col slice) of each reservoir's allocation zone (index = reservoir; None if empty)."""
    from scipy import ndimage

    return ndimage.find_objects(np.where(alloc >= 0, alloc + 1, 0).astype(np.int32))


def corridor_area(link_cost: float, a: int, b: int, acc: np.ndarray, alloc: np.ndarray, friction: np.ndarray,
                  src_rc: np.ndarray, src_res: np.ndarray, grid: Grid, *, margin: float, knight: bool,
                  windows: list | None = None, core: np.ndarray | None = None):
    """Least-cost corridor polygon of the link between reservoirs ``a`` and ``b`` (indices), or None.

    Linkage Mapper's normalised corridor: the cells where cwd_a + cwd_b − ``link_cost`` ≤ ``margin`` (cost units,
    friction × m). cwd_a and cwd_b are exact Dijkstra runs from each reservoir's cells, in the window of the two
    reservoirs' allocation zones (cells with ``acc`` ≤ link_cost + margin): the Voronoi-in-cost-space restriction
    Linkage Mapper also makes when it keeps only adjacent cores. ``windows``: :func:`zone_windows` of ``alloc``
    (computed when absent); ``core``: bool raster of reservoir cells, left out of the polygon. Returns a
    (Multi)Polygon in the grid CRS.
    """
    limit = link_cost + margin
    windows = windows if windows is not None else zone_windows(alloc)
    boxes = [windows[i] for i in (a, b) if i < len(windows) and windows[i] is not None]
    if not boxes:
        return None
    r0, r1 = min(w[0].start for w in boxes), max(w[0].stop for w in boxes)
    c0, c1 = min(w[1].start for w in boxes), max(w[1].stop for w in boxes)
    win_alloc, win_acc = alloc[r0:r1, c0:c1], acc[r0:r1, c0:c1]
    win_zone = ((win_alloc == a) | (win_alloc == b)) & (win_acc <= limit)
    if not win_zone.any():
        return None
    win_fr = np.where(win_zone, friction[r0:r1, c0:c1], np.nan).astype(np.float32)
    dists = []
    for res in (a, b):
        rc = src_rc[src_res == res]
        rc = rc[(rc[:, 0] >= r0) & (rc[:, 0] < r1) & (rc[:, 1] >= c0) & (rc[:, 1] < c1)] - np.array([r0, c0])
        rc = rc[win_zone[rc[:, 0], rc[:, 1]]] if len(rc) else rc
        if not len(rc):
            return None
        dists.append(cd.accumulated_cost(win_fr, rc, cell_size=grid.res, knight=knight, max_cost=limit))
    with np.errstate(invalid="ignore"):
        inside = (dists[0] + dists[1] - link_cost) <= margin
    if core is not None:
        inside &= ~core[r0:r1, c0:c1]
    if not inside.any():
        return None
    t = grid.transform
    win_t = Affine(t.a, t.b, t.c + c0 * t.a, t.d, t.e, t.f + r0 * t.e)
    polys = [shape(g) for g, v in features.shapes(inside.astype(np.uint8), mask=inside, transform=win_t) if v == 1]
    return shapely.union_all(polys) if polys else None


def barrier_length(cells: list[int], W: int, res: float, barrier) -> float:
    """Metres of a cell chain on ``barrier`` cells (each step's length shared half and half by its two cells);
    ``barrier``: a bool raster, or any object whose ``take(flat indices)`` gives its values at those cells."""
    c = np.asarray(cells)
    if len(c) < 2:
        return 0.0
    r, k = np.divmod(c, W)
    step = np.hypot(np.diff(r), np.diff(k)) * res
    on = np.asarray(barrier.take(c), dtype=bool)       # a raster (flat index), or values gathered at the cells
    return float((step / 2 * on[:-1]).sum() + (step / 2 * on[1:]).sum())


def missing_links(potential: np.ndarray, friction: np.ndarray, barrier: np.ndarray, real_links: pd.DataFrame,
                  src_rc: np.ndarray, src_res: np.ndarray, grid: Grid, *, knight: bool, max_cost: float,
                  max_links: int, min_gain_share: float, max_barrier_m: float | None = None):
    """Potential links cut by a barrier (fractures), with Barrier-Mapper improvement scores.

    ``potential``: the friction without the barriers; ``barrier``: bool raster of the cells whose friction the
    barriers raise. Potential links are selected as the real ones (:func:`select_links`, same ``max_cost`` and
    ``max_links``) on ``potential``. For a potential link (a, b) whose path crosses a barrier cell:

    * ``real_cost`` = the real least-cost distance a → b (exact Dijkstra on ``friction`` from a's cells, cut off at
      the cost of the potential path with its barriers, which bounds it);
    * ``cost_saved`` = real_cost − potential link cost, ``barrier_m`` = metres of barrier cells along the potential
      path, ``improvement_score`` = cost_saved / barrier_m: cost units saved per metre of barrier made permeable
      (McRae et al. 2012, Barrier Mapper);
    * the link is *missing* when the real network has no a–b corridor and cost_saved ≥ ``min_gain_share`` × the
      potential cost (the barrier removes the link, or forces a detour through other land or reservoirs at least
      that much costlier). A pair the real network already links (its corridor detours round the barrier or
      crosses it) is not published a second time: one corridor per pair of reservoirs, as Linkage Mapper and
      Graphab draw them; Barrier Mapper scores barriers, it does not add corridors;
    * a potential path with more than ``max_barrier_m`` metres on barrier cells runs along the barrier (on the
      strip the barrier-free friction opens, e.g. a canal whose land-use polygons do not show the water) rather
      than across it: not a fracture (Barrier Mapper likewise restores barriers within a bounded search radius).

    Returns ``(links DataFrame as select_links, paths, info dicts, (acc, back, alloc) of the potential run)``.
    """
    empty: tuple[pd.DataFrame, list, list, tuple | None] = (
        pd.DataFrame(columns=["a", "b", "cost", "cell_a", "cell_b"]), [], [], None)
    if not barrier.any() or not len(src_rc):
        return empty
    acc, back, alloc = cost_from_reservoirs(potential, src_rc, src_res, grid, max_cost=max_cost, knight=knight)
    plinks = select_links(potential, acc, alloc, grid, knight=knight, max_cost=max_cost, max_links=max_links)
    if plinks.empty:
        return empty
    ppaths = link_paths(plinks, back)
    links, paths, infos = fracture_candidates(plinks, ppaths, real_links, grid, barrier, friction,
                                              max_barrier_m=max_barrier_m)
    if links.empty:
        return empty

    def lcd(a: int, bs: list[int], cut: float) -> list[float]:      # whole-grid Dijkstra from reservoir a
        real_acc = cd.accumulated_cost(friction, src_rc[src_res == a], cell_size=grid.res, knight=knight,
                                       max_cost=cut)
        return reservoir_costs(real_acc, src_rc, src_res, bs)

    keep = keep_missing(links, infos, real_links, lcd, min_gain_share=min_gain_share)
    if not keep:
        return (*empty[:3], (acc, back, alloc))
    return (links.iloc[keep].reset_index(drop=True), [paths[j] for j in keep], [infos[j] for j in keep],
            (acc, back, alloc))


def fracture_candidates(plinks: pd.DataFrame, ppaths: list, real_links: pd.DataFrame, grid: Grid, barrier, friction,
                        *, max_barrier_m: float | None):
    """The potential links that may be missing (:func:`missing_links`' rules): their path crosses a barrier cell,
    on at most ``max_barrier_m`` metres, and the real network has no link of the pair. ``barrier`` (bool) and
    ``friction`` are read at path cells only (``take`` of flat indices: rasters, or values gathered along the paths
    from tiles). Returns ``(links, paths, infos)``, each info with ``barrier_m`` and ``with_barrier`` (the real cost
    of the potential path, friction × m)."""
    real = set(zip(real_links["a"].astype(int), real_links["b"].astype(int))) if len(real_links) else set()
    W = grid.shape[1]
    cand, paths, infos = [], [], []
    for i, path in enumerate(ppaths):
        flat = [r * W + c for r, c in path]
        b_m = barrier_length(flat, W, grid.res, barrier)
        if b_m <= 0 or (int(plinks["a"].iloc[i]), int(plinks["b"].iloc[i])) in real:
            continue
        if max_barrier_m is not None and b_m > max_barrier_m:      # runs along the barrier, does not cross it
            continue
        cand.append(i)
        paths.append(path)
        infos.append({"barrier_m": b_m, "with_barrier": _edge_stats(flat, W, grid.res, friction, friction)[1]})
    return plinks.iloc[cand].reset_index(drop=True), paths, infos


def keep_missing(links: pd.DataFrame, infos: list[dict], real_links: pd.DataFrame, lcd, *, min_gain_share: float
                 ) -> list[int]:
    """Real costs, savings and scores of the candidate ``links`` (``infos`` updated in place), and the rows kept as
    missing links (:func:`missing_links`' rules). ``lcd(a, [b…], cut)``: the real least-cost distances from
    reservoir a to each b, exact up to ``cut`` (+inf beyond): whole-grid Dijkstra, or a window bounded by the cut
    (:mod:`tvb_tasks.layers.tile_missing`)."""
    real = set(zip(real_links["a"].astype(int), real_links["b"].astype(int))) if len(real_links) else set()
    pot = links["cost"].astype(float).to_numpy()
    for a in sorted(set(links["a"].astype(int))):     # real least-cost distance a → b, Dijkstra from reservoir a
        todo = [j for j in range(len(links)) if int(links["a"].iloc[j]) == a]
        # stage 1 cut off where the link stops being missing ((1 + gain) × potential cost): most detours end here;
        # stage 2, for the links still unreached, up to the cost of the potential path with its barriers
        for cut_of in (lambda j: (1 + min_gain_share) * pot[j], lambda j: infos[j]["with_barrier"]):
            if not todo:
                break
            dists = lcd(a, [int(links["b"].iloc[j]) for j in todo], max(cut_of(j) for j in todo))
            left = []
            for j, d in zip(todo, dists):
                if np.isfinite(d) or cut_of(j) >= infos[j]["with_barrier"]:
                    infos[j]["real_cost"] = min(d, infos[j]["with_barrier"])
                else:
                    left.append(j)
            todo = left
    for j in range(len(links)):
        a, b = int(links["a"].iloc[j]), int(links["b"].iloc[j])
        saved = max(infos[j]["real_cost"] - pot[j], 0.0)
        infos[j].update({"cost_saved": saved, "real_link": int((a, b) in real),
                         "improvement_score": saved / infos[j]["barrier_m"]})
    return [j for j in range(len(links)) if infos[j]["cost_saved"] >= min_gain_share * float(links["cost"].iloc[j])
            and infos[j]["cost_saved"] > 0 and not infos[j]["real_link"]]


def reservoir_costs(acc: np.ndarray, src_rc: np.ndarray, src_res: np.ndarray, targets: list[int]) -> list[float]:
    """The least accumulated cost (friction × m) at each target reservoir's source cells (``inf`` for a reservoir
    with no source cell): the least-cost distance to it of the run ``acc`` (NaN impassable)."""
    out = []
    for b in targets:
        rc = src_rc[src_res == b]
        out.append(float(np.nanmin(acc[rc[:, 0], rc[:, 1]])) if len(rc) else np.inf)
    return out


def barrier_crossing_scores(xy: np.ndarray, a: int, b: int, real_cost: float, path: list[tuple[int, int]],
                            friction: np.ndarray, potential: np.ndarray, src_rc: np.ndarray, src_res: np.ndarray,
                            grid: Grid, *, knight: bool, radius_m: float, potential_cost: float = 0.0,
                            offset: tuple[int, int] = (0, 0)) -> list[dict]:
    """Own Barrier-Mapper score of each barrier crossing of one missing link (a → b, reservoir indices).

    Linkage Mapper's Barrier Mapper (McRae et al. 2012) scores each barrier *location*: the cost saved when the
    barrier cells within a search radius of it are restored, everything else unchanged. For each crossing point
    ``xy[i]`` (map coordinates, the territory CRS): the barrier cells (``friction > potential``) within ``radius_m``
    metres of it take their barrier-free friction, the real least-cost distance a → b is recomputed (exact
    Dijkstra from a's cells, cut off at ``real_cost``, the link's real distance), and

    * ``cost_saved`` = real_cost − that distance (0 when another barrier on the way still blocks the link: removing
      a railway saves nothing while the motorway beside it remains);
    * ``barrier_m`` = metres of the link's potential ``path`` on the restored cells;
    * ``improvement_score`` = cost_saved / barrier_m (cost units per metre of barrier made passable; 0 when the
      path has no restored cell).

    ``potential_cost`` (the link's barrier-free cost) bounds the recomputed distance from below, so a crossing
    never saves more than the whole link. The link's combined score (all its barriers removed at once) stays on
    the corridor. Costs in friction × m.

    ``friction`` and ``potential`` may be a window of the grid whose first cell is ``offset`` (row, col) of
    ``grid`` (``src_rc``, ``path`` in grid cells; ``path``, the crossing's restored cells and the cells reachable
    within ``real_cost`` inside it): the same scores (:func:`tvb_tasks.layers.tile_missing.crossing_box`).
    """
    H, W = friction.shape
    o_r, o_c = offset
    t = grid.transform
    barrier = np.isfinite(potential) & (friction > potential)
    flat = [(r - o_r) * W + c - o_c for r, c in path]
    src_a = src_rc[src_res == a] - (o_r, o_c)
    rc_b = src_rc[src_res == b] - (o_r, o_c)
    rc_b = rc_b[(rc_b[:, 0] >= 0) & (rc_b[:, 0] < H) & (rc_b[:, 1] >= 0) & (rc_b[:, 1] < W)]
    k = int(np.ceil(radius_m / grid.res)) + 1
    out = []
    for x, y in np.asarray(xy, dtype=float).reshape(-1, 2):
        col, row = ~t @ (x, y)
        r0, r1 = max(int(row) - k, o_r), min(int(row) + k + 1, o_r + H)
        c0, c1 = max(int(col) - k, o_c), min(int(col) + k + 1, o_c + W)
        cx, cy = grid.cell_centres(*np.mgrid[r0:r1, c0:c1])
        win = np.zeros((H, W), dtype=bool)
        win[r0 - o_r:r1 - o_r, c0 - o_c:c1 - o_c] = np.hypot(cx - x, cy - y) <= radius_m
        restore = win & barrier
        b_m = barrier_length(flat, W, grid.res, restore)
        if not restore.any() or not len(src_a) or not len(rc_b):
            out.append({"cost_saved": 0.0, "barrier_m": b_m, "improvement_score": 0.0})
            continue
        fr = np.where(restore, potential, friction).astype(friction.dtype)
        acc = cd.accumulated_cost(fr, src_a, cell_size=grid.res, knight=knight, max_cost=real_cost)
        lcd = float(np.nanmin(acc[rc_b[:, 0], rc_b[:, 1]]))
        saved = max(real_cost - min(max(lcd, potential_cost), real_cost), 0.0) if np.isfinite(lcd) else 0.0
        out.append({"cost_saved": saved, "barrier_m": b_m, "improvement_score": saved / b_m if b_m > 0 else 0.0})
    return out
