"""Missing links (fractures) of a sous-trame from the tiles of its real and potential cost-distances.

The untiled engine (``engine._missing_links``, :func:`tvb_tasks.layers.corridors.missing_links`) runs a second
cost-distance on the *potential* friction (the friction rebuilt without the barrier lines), selects its links,
keeps those whose path crosses a barrier cell, then computes each candidate's real least-cost distance with a
whole-grid Dijkstra from reservoir ``a``. Here:

1. the potential problem is planned window by window under its own prefix (``tiles/<sous_trame>/potential/``,
   :func:`tvb_tasks.layers.windows.plan_windows_to_store`) and run through the same tile rounds: its cores are
   ``cost_from_reservoirs(potential, …)``;
2. its links and paths come from :mod:`tvb_tasks.layers.tile_links` (``tiled_links``, ``tiled_link_paths``); the
   real and potential frictions are gathered at the path cells only (``path_values``), which is all
   :func:`~tvb_tasks.layers.corridors.fracture_candidates` reads;
3. the real least-cost distance a → b is an exact Dijkstra on a *window* (:func:`cost_box`): the bounding box of
   reservoir a's source cells widened by ``ceil(cut / (f_min × cell)) + 1`` cells, ``f_min`` the smallest finite
   friction of the grid. Why it equals the whole-grid run up to ``cut``: a move between cells u and v costs
   (f_u + f_v) / 2 × its length ≥ f_min × its length, and its length is ≥ the cell size times the rows (or columns)
   it spans, so a path of cost ≤ cut moves at most cut / (f_min × cell) rows or columns from its source: every
   path of cost ≤ cut, and every prefix of it, stays in the box. Dijkstra's distance of a cell reached within the
   cut is the minimum over the same paths with the same float sums, so it is the same number; a cell the
   whole-grid run leaves beyond the cut (+inf) is beyond it in the window too (a window path is a grid path). The
   rules (gain share, ``max_barrier_m``, a pair already linked) are :func:`~tvb_tasks.layers.corridors.keep_missing`,
   the engine's own code.
   That bound is loose (f_min is the cheapest land anywhere): the window actually used is :func:`reach_window`'s,
   grown from the source box until no cell of its outer 2-cell band is reached within the cut (then no path of
   cost ≤ cut leaves it), capped by the bound.
4. each missing-link crossing's own score (:func:`~tvb_tasks.layers.corridors.barrier_crossing_scores`) runs on
   the reach window at the link's real cost from :func:`crossing_box` (reservoir a, the link's path and the
   restored disc around the point), grown on min(friction, potential) — a lower bound of the restored friction.

Memory: the steps read a few tiles at a time; each Dijkstra holds its window: the cells reachable within its
cut-off cost (× 16 at worst, the last growth), not the grid — but a barrier of very high friction makes the
second-stage cut (the real cost of the potential path with its barriers), and so the window, large, up to the whole
grid. So each window is estimated before it is allocated (``REACH_BYTES`` / ``CROSSING_BYTES`` per cell, measured)
and refused with a :class:`~tvb_tasks.memory.MemoryBoundError` naming the link, the window and the settings when it
would take the task above its memory bound (:func:`tvb_tasks.memory.check_allocation`). CRS and
units: the grid's (territory CRS, metres); costs in friction × m.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tvb_tasks.memory import check_allocation

from . import costdistance as cd
from .common import Grid
from .corridors import barrier_crossing_scores, fracture_candidates, keep_missing, reservoir_costs
from .tile_links import CellValues, CoreReader, path_values, problem_name, tiled_link_paths, tiled_links, window_inputs

__all__ = ["CROSSING_BYTES", "REACH_BYTES", "cost_box", "crossing_box", "input_summary", "reach_window",
           "tiled_crossing_scores", "tiled_missing_links", "window_inputs"]

Box = tuple[int, int, int, int]

#: Bytes per cell of a real-cost window (friction assembled from the tiles, the Dijkstra's accumulated cost, mask
#: and queue, the band test): 14.0 measured on uniform friction, 16.0 on random friction 1–1000
#: (``bench/memory_windows.py``, 9 M cells).
REACH_BYTES = 16
#: Bytes per cell of a crossing's score window (friction, potential, their minimum, the Dijkstra, then
#: ``barrier_crossing_scores``' masks, restored friction and Dijkstra): 26.6 measured.
CROSSING_BYTES = 28
_WINDOW_HINT = ("the window holds the cells reachable within the cut-off cost (the potential link's cost, ≤ the "
                "sous-trame's max_cost, × (1 + corridors.missing_links.min_gain_share), then its real cost with the "
                "barriers): raise tiling.memory_limit_gib, or lower max_cost or "
                "corridors.missing_links.min_gain_share / max_barrier_m")


def _check_window(what: str, box: Box, bytes_per_cell: int, limit_gib: float | None) -> None:
    rows, cols = box[1] - box[0], box[3] - box[2]
    check_allocation(f"{what} (window {rows} × {cols} cells)", rows * cols, bytes_per_cell, _WINDOW_HINT, limit_gib)


def input_summary(store, prefix: str) -> tuple[dict[int, Box], float]:
    """``(bounding box (r0, r1, c0, c1), half-open grid cells, of each reservoir's source cells, smallest finite
    friction)`` of the tiled problem under ``prefix``, read one tile input at a time (sources and friction of each
    tile's core only)."""
    reader = CoreReader(store, prefix, cache=1)
    boxes: dict[int, Box] = {}
    fmin = np.inf
    for t in reader.tiles:
        w0, v0 = t.window[0], t.window[2]
        r0, r1, c0, c1 = t.core
        cost = reader.input(t.index, "cost")[r0 - w0:r1 - w0, c0 - v0:c1 - v0]
        if np.isfinite(cost).any():
            fmin = min(fmin, float(np.nanmin(cost)))
        rc = reader.input(t.index, "src") + (w0, v0)
        lab = reader.input(t.index, "labels")
        ok = (rc[:, 0] >= r0) & (rc[:, 0] < r1) & (rc[:, 1] >= c0) & (rc[:, 1] < c1)
        for i in np.unique(lab[ok]):
            sel = rc[ok][lab[ok] == i]
            b = (int(sel[:, 0].min()), int(sel[:, 0].max()) + 1, int(sel[:, 1].min()), int(sel[:, 1].max()) + 1)
            old = boxes.get(int(i))
            boxes[int(i)] = b if old is None else (min(old[0], b[0]), max(old[1], b[1]), min(old[2], b[2]),
                                                   max(old[3], b[3]))
    return boxes, fmin


def cost_box(box: Box, cut: float, fmin: float, res: float, shape: tuple[int, int]) -> Box:
    """``box`` widened by the rows/cols a path of cost ≤ ``cut`` can move (module doc, 3): ceil(cut / (fmin ×
    res)) + 1 cells, cut to the grid ``shape``; the whole grid when the bound is not finite."""
    H, W = shape
    if not (np.isfinite(cut) and fmin > 0 and np.isfinite(fmin)):
        return 0, H, 0, W
    m = float(np.ceil(cut / (fmin * res))) + 1
    if m >= max(H, W):
        return 0, H, 0, W
    k = int(m)
    return max(box[0] - k, 0), min(box[1] + k, H), max(box[2] - k, 0), min(box[3] + k, W)


#: Band (cells) of a window checked by :func:`reach_window`: the longest move (a knight's move spans 2 rows or cols).
BAND = 2


#: First margin (cells) of :func:`reach_window` around the source box.
MARGIN = 64


def reach_window(box: Box, cut: float, fmin: float, res: float, shape: tuple[int, int], run, *,
                 margin: int | None = None):
    """``(window, run(window))`` for a Dijkstra from sources in ``box`` cut off at ``cut``, on a window grown from
    ``box`` widened by ``margin`` cells (default :data:`MARGIN`; × 4 each time) until no cell of its outer ``BAND`` cells (sides that are
    not the grid's edge) is reached within the cut, or the window is :func:`cost_box`'s bound. ``run(window)``
    returns the accumulated cost on the window (+inf / NaN where not reached).

    Exact: a path from a source leaving the window must first land on a band cell (a move spans ≤ 2 rows or
    cols), after a prefix inside the window's interior; that cell's window distance is then ≤ the prefix cost, so
    if no band cell is reached within the cut, every path of cost ≤ cut stays inside and the window's distances
    are the whole grid's up to the cut (module doc, 3). Memory: the cells actually reachable, not the loose
    ``f_min`` bound (× 16 at worst after the last growth)."""
    H, W = shape
    full = cost_box(box, cut, fmin, res, shape)
    m = MARGIN if margin is None else margin
    while True:
        win = (max(box[0] - m, full[0]), min(box[1] + m, full[1]), max(box[2] - m, full[2]), min(box[3] + m, full[3]))
        acc = run(win)
        if win == full:
            return win, acc
        with np.errstate(invalid="ignore"):
            hit = np.isfinite(acc) & (acc <= cut)
        b = BAND
        if not ((win[0] > 0 and hit[:b].any()) or (win[1] < H and hit[-b:].any())
                or (win[2] > 0 and hit[:, :b].any()) or (win[3] < W and hit[:, -b:].any())):
            return win, acc
        m *= 4


def _union(*boxes: Box) -> Box:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))


def _res(reader: CoreReader) -> float:
    return float(min(reader.plan["cell_size"]))


def tiled_missing_links(store, prefix: str, potential_prefix: str, real_links: pd.DataFrame, grid: Grid, *,
                        max_cost: float, max_links: int, min_gain_share: float, max_barrier_m: float | None,
                        summary: tuple[dict[int, Box], float] | None = None, memory_limit_gib: float | None = None):
    """``corridors.missing_links`` from the tiles of the real problem (``prefix``) and the potential one
    (``potential_prefix``): ``(links, paths, infos)`` — the same rows, cells and values (module doc).
    ``summary``: :func:`input_summary` of ``prefix`` if already read. ``MemoryBoundError`` before a real-cost
    window is allocated if it would exceed ``memory_limit_gib`` (default: the running task's bound,
    :func:`tvb_tasks.memory.current_bound`)."""
    plinks = tiled_links(store, potential_prefix, max_cost=max_cost, max_links=max_links)
    if plinks.empty:
        return plinks, [], []
    ppaths = tiled_link_paths(store, potential_prefix, plinks)
    (real,) = path_values(store, prefix, ppaths, ("cost",))
    (pot,) = path_values(store, potential_prefix, ppaths, ("cost",))
    with np.errstate(invalid="ignore"):
        barrier = CellValues(real.flat, np.isfinite(pot.values) & (real.values > pot.values))
    links, paths, infos = fracture_candidates(plinks, ppaths, real_links, grid, barrier, real,
                                              max_barrier_m=max_barrier_m)
    if links.empty:
        return links, [], []
    reader = CoreReader(store, prefix, cache=12)
    boxes, fmin = summary if summary is not None else input_summary(store, prefix)
    knight, res = bool(reader.plan["knight"]), _res(reader)

    def lcd(a: int, bs: list[int], cut: float) -> list[float]:      # Dijkstra from reservoir a on its reach window
        got: dict = {}

        def run(box: Box) -> np.ndarray:
            _check_window(f"real-cost window of reservoir {a}'s missing links (to {', '.join(map(str, bs))}) of "
                          f"{problem_name(prefix)}", box,
                          REACH_BYTES, memory_limit_gib)
            fr, src, lab = window_inputs(reader, box)
            got["src"], got["lab"] = src, lab
            return cd.accumulated_cost(fr, src[lab == a], cell_size=grid.res, knight=knight, max_cost=cut)

        _, acc = reach_window(boxes[a], cut, fmin, res, reader.shape, run)
        return reservoir_costs(acc, got["src"], got["lab"], bs)

    keep = keep_missing(links, infos, real_links, lcd, min_gain_share=min_gain_share)
    return links.iloc[keep].reset_index(drop=True), [paths[j] for j in keep], [infos[j] for j in keep]


def crossing_box(a_box: Box, path, xy, radius_m: float, grid: Grid) -> Box:
    """The box a crossing's score window starts from: reservoir a's source box, the link's ``path`` and the cells
    within ``radius_m`` (+ 1 cell) of the point ``xy`` (the restored disc), cut to the grid."""
    r, c = np.asarray(path).T
    col, row = ~grid.transform @ (float(xy[0]), float(xy[1]))
    k = int(np.ceil(radius_m / grid.res)) + 1
    H, W = grid.shape
    disc = (max(int(row) - k, 0), min(int(row) + k + 1, H), max(int(col) - k, 0), min(int(col) + k + 1, W))
    return _union(a_box, (int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1), disc)


def tiled_crossing_scores(store, prefix: str, potential_prefix: str, grid: Grid, *, radius_m: float,
                          summary: tuple[dict[int, Box], float] | None = None, memory_limit_gib: float | None = None):
    """A ``score(xy, a, b, real_cost, path, potential_cost)`` function giving the engine's
    ``barrier_crossing_scores`` of each crossing point from the tiles, on a window: :func:`reach_window` from the
    point's :func:`crossing_box` at the link's real cost, on min(friction, potential) — below the restored friction
    everywhere, so every path of the restored friction within the cut stays in that window too. ``summary``:
    :func:`input_summary` of ``prefix`` if already read. ``MemoryBoundError`` before a window is allocated if it
    would exceed ``memory_limit_gib`` (default: the running task's bound)."""
    reader = CoreReader(store, prefix, cache=12)
    preader = CoreReader(store, potential_prefix, cache=12)
    boxes, fmin = summary if summary is not None else input_summary(store, prefix)
    fmin = min(fmin, input_summary(store, potential_prefix)[1])
    knight, res = bool(reader.plan["knight"]), _res(reader)

    def score(xy, a: int, b: int, real_cost: float, path, potential_cost: float) -> list[dict]:
        out = []
        for pt in np.asarray(xy, dtype=float).reshape(-1, 2):
            got: dict = {}

            def run(box: Box, got: dict = got) -> np.ndarray:
                _check_window(f"score window of a barrier crossing of the missing link {a}–{b} of "
                              f"{problem_name(prefix)}", box, CROSSING_BYTES, memory_limit_gib)
                fr, src, lab = window_inputs(reader, box)
                pot, _, _ = window_inputs(preader, box)
                got.update(box=box, fr=fr, pot=pot, src=src, lab=lab)
                low = np.fmin(fr, pot).astype(fr.dtype)        # NaN only where both are (pot is NaN off passable)
                return cd.accumulated_cost(low, src[lab == a], cell_size=grid.res, knight=knight,
                                           max_cost=real_cost)

            start = crossing_box(boxes[a], path, pt, radius_m, grid)
            reach_window(start, real_cost, fmin, res, reader.shape, run)
            box = got["box"]
            out += barrier_crossing_scores(pt, a, b, real_cost, path, got["fr"], got["pot"], got["src"] + box[::2],
                                           got["lab"], grid, knight=knight, radius_m=radius_m,
                                           potential_cost=potential_cost, offset=(box[0], box[2]))
        return out

    return score
