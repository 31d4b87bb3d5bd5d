"""Array API of the exact cost-distance: checks of the inputs, choice of kernel, outputs
(model, conventions and algorithm: :mod:`tvb_tasks.layers.costdistance`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from tvb_tasks.errors import InvalidInputError

from .kernels import (
    _KNIGHT_MID,
    _MAX_BUCKETS,
    BACK_NONE,
    BACK_SOURCE,
    OFFSETS,
    _adjacent,
    _cost_range,
    _dial,
    _dial_seeded,
    _finish,
    _heap_dijkstra,
)


def _cell_sizes(cell_size: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(cell_size) == 0:
        dy = dx = float(cell_size)  # type: ignore[arg-type]
    else:
        dy, dx = (float(v) for v in cell_size)  # type: ignore[union-attr]
    for v in (dy, dx):
        if not (v > 0 and math.isfinite(v)):
            raise InvalidInputError(f"cell_size must be finite and > 0, got {cell_size!r}")
    return dy, dx


def _tables(knight: bool, dy: float, dx: float):
    """Move tables: (nnb, drow, dcol, weight factor, knight mid-cells)."""
    nnb = 16 if knight else 8
    dr = np.ascontiguousarray(OFFSETS[:, 0])
    dc = np.ascontiguousarray(OFFSETS[:, 1])
    wf = np.array([math.hypot(dr[j] * dy, dc[j] * dx) / (2.0 if j < 8 else 4.0)
                   for j in range(16)])
    return nnb, dr, dc, wf, _KNIGHT_MID


def _prepare_cost(cost, nodata_mask):
    cost = np.asarray(cost)
    if cost.ndim != 2:
        raise InvalidInputError(f"cost must be a 2-D array, got shape {cost.shape}")
    if cost.dtype not in (np.float32, np.float64):
        if (cost.dtype.kind in "biu" and cost.dtype.itemsize <= 2) or cost.dtype == np.float16:
            cost = cost.astype(np.float32)
        else:
            cost = cost.astype(np.float64)
    cost = np.ascontiguousarray(cost)
    if nodata_mask is None:
        mask = np.zeros(1, dtype=np.bool_)
        has_mask = False
    else:
        mask = np.ascontiguousarray(np.asarray(nodata_mask, dtype=np.bool_))
        if mask.shape != cost.shape:
            raise InvalidInputError(
                f"nodata_mask shape {mask.shape} differs from cost shape {cost.shape}")
        has_mask = True
    return cost, mask, has_mask


def _passable(cost, mask, has_mask, r: int, c: int) -> bool:
    v = cost[r, c]
    return bool(v > 0 and np.isfinite(v) and not (has_mask and mask[r, c]))


def _check_sources(cost, mask, has_mask: bool, sources, source_labels):
    """Validated ``(sources (N, 2) int64, labels (N,) int32)`` (clear ``ValueError`` otherwise)."""
    H, W = cost.shape
    src = np.asarray(sources)
    if src.ndim == 1 and src.size == 2:
        src = src.reshape(1, 2)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape[0] == 0:
        raise InvalidInputError(f"sources must be a non-empty (N, 2) array of (row, col), got shape {src.shape}")
    if src.dtype.kind not in "iu" and not np.all(np.equal(np.mod(src, 1), 0)):
        raise InvalidInputError("sources must be integer (row, col) indices")
    src = src.astype(np.int64)
    rs, cs_ = src[:, 0], src[:, 1]
    outside = (rs < 0) | (rs >= H) | (cs_ < 0) | (cs_ >= W)
    if outside.any():
        i = int(np.argmax(outside))
        raise InvalidInputError(f"source #{i} (row={rs[i]}, col={cs_[i]}) is outside the raster ({H} x {W})")
    sv = cost[rs, cs_]
    bad = ~((sv > 0) & np.isfinite(sv))
    if has_mask:
        bad |= mask[rs, cs_]
    if bad.any():
        i = int(np.argmax(bad))
        r, c = int(rs[i]), int(cs_[i])
        raise InvalidInputError(
            f"source #{i} (row={r}, col={c}) is on an impassable cell "
            f"(cost={cost[r, c]!r}{', masked' if has_mask and mask[r, c] else ''})")
    if source_labels is None:
        labels = np.arange(src.shape[0], dtype=np.int32)
    else:
        labels = np.asarray(source_labels)
        if labels.shape != (src.shape[0],) or labels.dtype.kind not in "iu":
            raise InvalidInputError("source_labels must be an integer array with one label per source")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
            raise InvalidInputError("source_labels must be in [0, 2**31 - 1]")
        labels = labels.astype(np.int32)
    return src, labels

def accumulated_cost(
    cost: np.ndarray,
    sources: np.ndarray,
    *,
    cell_size: float | Sequence[float] = 1.0,
    knight: bool = False,
    max_cost: float | None = None,
    nodata_mask: np.ndarray | None = None,
    return_backlinks: bool = False,
    return_allocation: bool = False,
    source_labels: np.ndarray | None = None,
    source_costs: np.ndarray | None = None,
):
    """Accumulated least-cost distance from the nearest source (GRASS ``r.cost``).

    Parameters
    ----------
    cost : (H, W) array
        Cost per unit of distance (resistance). NaN, +/-inf and values <= 0 are
        impassable. float32/float64 are used in place; other dtypes are converted.
    sources : (N, 2) int array
        (row, col) of the source cells (accumulated cost 0). Must be inside the
        raster and on passable cells (``ValueError`` otherwise). Duplicates allowed.
    cell_size : float or (row_size, col_size)
        Cell size in map units (e.g. metres); edge lengths are centre-to-centre
        distances in these units. ``1`` gives GRASS ``r.cost`` "cell" units.
    knight : bool
        16 neighbours (knight's moves of length sqrt(5) cells, cost = mean of the
        two end cells and the two cells passed between, as ``r.cost -k``).
    max_cost : float, optional
        Cut-off: cells whose accumulated cost is ``> max_cost`` are ``+inf`` and not
        expanded (also makes the computation faster).
    nodata_mask : (H, W) bool array, optional
        True = impassable (nodata) cell.
    return_backlinks : bool
        Also return the int8 back-link raster: ``j >= 0`` -> the cell was reached
        from ``(r, c) - OFFSETS[j]``; ``-1`` = source; ``-2`` = not reached /
        impassable. Use :func:`trace_path`.
    return_allocation : bool
        Also return the int32 allocation raster: index (into ``sources``) of the
        source each cell is cheapest to reach from; ``-1`` = not reached.
    source_labels : (N,) int array, optional
        Values written in the allocation raster instead of the source index
        (e.g. the reservoir id of each source cell when sources are whole
        patches, ``np.argwhere(patches > 0)``). Must be in ``[0, 2**31 - 1]``.
    source_costs : (N,) float array, optional
        Start cost of each source (default 0): the result is the minimum over sources
        of start cost + path cost (a source whose start cost is above ``max_cost``, or
        not below the cost already reached at its cell, is ignored). Used by
        :mod:`tvb_tasks.layers.tiles` to seed a tile with its neighbours' values.

    Ties: when several predecessors give a cell exactly the same accumulated cost
    (same float64 value), the back-link (and the allocation) comes from the one with
    the lowest move index in :data:`OFFSETS`, whatever the order in which the queue
    settles them; a duplicate source cell keeps its first occurrence (lowest start
    cost first). So back-links and allocation are a function of the accumulated
    costs alone, which makes tiled runs identical to untiled ones.

    Returns
    -------
    acc : (H, W) float64
        Accumulated cost (cost x ``cell_size`` units); ``0`` at sources, ``NaN`` on
        impassable cells, ``+inf`` on passable cells that are unreachable or beyond
        ``max_cost``.
    If ``return_backlinks`` and/or ``return_allocation``: a tuple
    ``(acc[, backlinks][, allocation])`` in that order.
    """
    cost, mask, has_mask = _prepare_cost(cost, nodata_mask)
    H, W = cost.shape
    if H * W >= 2**31 - 64:
        raise InvalidInputError(f"raster too large ({H} x {W}): at most 2**31 cells (int32 queue)")
    src, labels = _check_sources(cost, mask, has_mask, sources, source_labels)
    if source_costs is None:
        start = None
    else:
        start = np.asarray(source_costs, dtype=np.float64)
        if start.shape != (src.shape[0],) or not np.all(start >= 0) or not np.all(np.isfinite(start)):
            raise InvalidInputError("source_costs must be finite, >= 0, one per source")
        if not start.any():
            start = None
    dy, dx = _cell_sizes(cell_size)
    mc = np.inf if max_cost is None else float(max_cost)
    if not (mc >= 0):
        raise InvalidInputError(f"max_cost must be >= 0, got {max_cost!r}")
    nnb, dr, dc, wf, mid = _tables(knight, dy, dx)

    cflat = cost.reshape(-1)
    mflat = mask.reshape(-1)
    dist = np.full(H * W, np.inf, dtype=np.float64)
    # back-links are also kept (internally) for the allocation: its tie rule needs them
    want_back = return_backlinks or return_allocation
    back = (np.full(H * W, BACK_NONE, dtype=np.int8) if want_back
            else np.empty(1, dtype=np.int8))
    alloc = (np.full(H * W, -1, dtype=np.int32) if return_allocation
             else np.empty(1, dtype=np.int32))
    flat_src = src[:, 0] * W + src[:, 1]

    lo, hi, _n = _cost_range(cost, mask, has_mask)
    # Bucket width = smallest possible edge weight (two cheapest cells, shortest
    # step), shrunk by 1e-9 so that floating-point rounding of the bucket index
    # can never put an improvable node in the bucket being settled.
    width = lo * min(dy, dx) * (1.0 - 1e-9)
    max_len = max(float(wf[j]) * (2.0 if j < 8 else 4.0) for j in range(nnb))
    ratio = hi * max_len / width if width > 0 else math.inf
    cap0 = max(1 << 16, (H * W) >> 6)
    nbuckets = 1 << max(6, math.ceil(math.log2(ratio + 2))) if ratio < 1e18 else 0
    if start is None:
        zeros = np.zeros(flat_src.shape[0], dtype=np.float64)
    else:  # sources in ascending start cost (stable: first occurrence first)
        order = np.argsort(start, kind="stable")
        flat_src, labels, start = flat_src[order], labels[order], start[order]
    if 0 < nbuckets <= _MAX_BUCKETS:
        if start is None:
            _dial(cflat, mflat, has_mask, H, W, flat_src, labels, nnb, dr, dc, wf, mid, mc,
                  width, nbuckets, dist, back, want_back, alloc,
                  return_allocation, cap0)
        else:
            _dial_seeded(cflat, mflat, has_mask, H, W, flat_src, start, labels, nnb, dr, dc,
                         wf, mid, mc, width, nbuckets, dist, back, want_back, alloc,
                         return_allocation, cap0)
    else:
        _heap_dijkstra(cflat, mflat, has_mask, H, W, flat_src, zeros if start is None else start,
                       labels, nnb, dr, dc, wf, mid, mc, dist, back, want_back, alloc,
                       return_allocation, cap0)
    _finish(cflat, mflat, has_mask, dist)

    acc = dist.reshape(H, W)
    if not (return_backlinks or return_allocation):
        return acc
    out = [acc]
    if return_backlinks:
        out.append(back.reshape(H, W))
    if return_allocation:
        out.append(alloc.reshape(H, W))
    return tuple(out)


def trace_path(backlinks: np.ndarray, start_rc: tuple[int, int]) -> list[tuple[int, int]]:
    """Least-cost path from ``start_rc`` (row, col) back to its source.

    ``backlinks`` is the raster returned with ``return_backlinks=True``. Returns the
    list of (row, col) from ``start_rc`` to the source cell (both included).
    Raises ``ValueError`` if the start cell was not reached.
    """
    H, W = backlinks.shape
    r, c = int(start_rc[0]), int(start_rc[1])
    if not (0 <= r < H and 0 <= c < W):
        raise InvalidInputError(f"start cell {start_rc} is outside the raster ({H} x {W})")
    if backlinks[r, c] == BACK_NONE:
        raise InvalidInputError(f"start cell {start_rc} was not reached (impassable, isolated or beyond max_cost)")
    path = [(r, c)]
    for _ in range(H * W):
        j = int(backlinks[r, c])
        if j == BACK_SOURCE:
            return path
        if j < 0 or j >= 16:
            raise InvalidInputError(f"invalid back-link {j} at {(r, c)}")
        r -= int(OFFSETS[j, 0])
        c -= int(OFFSETS[j, 1])
        path.append((r, c))
    raise InvalidInputError("back-links contain a cycle")  # cannot happen with our output


def adjacent_sources(
    cost: np.ndarray,
    accumulated: np.ndarray,
    allocation: np.ndarray,
    *,
    cell_size: float | Sequence[float] = 1.0,
    knight: bool = False,
    nodata_mask: np.ndarray | None = None,
    scan: tuple[int, int, int, int] | None = None,
):
    """Pairs of sources whose allocation zones touch, with the cheapest crossing.

    For each pair ``(i, j)`` (``i < j``, allocation values: indices into the
    ``sources`` given to :func:`accumulated_cost`, or their ``source_labels``) of
    zones that touch through a legal move ``a -> b``
    (``a`` in zone i, ``b`` in zone j), returns the minimum of
    ``accumulated[a] + edge(a, b) + accumulated[b]`` (same units as ``accumulated``)
    and the cells ``a``, ``b`` realising it: the least-cost path between the two
    sources through their zones is ``trace_path(back, a)[::-1] + trace_path(back, b)``.
    Use the same ``cell_size`` / ``knight`` / ``nodata_mask`` as for the distances.

    ``scan``: ``(row0, row1, col0, col1)``, only the moves *from* cells in those rows and columns are looked at
    (moves go to a cell after them in row-major order; the raster must hold the two cells beyond the scanned
    block that a move reaches): a tile's core inside a window with a 2-cell halo
    (:mod:`tvb_tasks.layers.tile_links`). ``None``: the whole raster. On an exact tie of a pair's crossing cost
    the first crossing in row-major order of its scanned cell wins (then the lowest move index).

    Returns ``(pairs (M, 2) int64, link_cost (M,) float64, cells (M, 2, 2) int64)``
    sorted by pair; ``cells[k] = [[row_a, col_a], [row_b, col_b]]``.
    """
    cost, mask, has_mask = _prepare_cost(cost, nodata_mask)
    H, W = cost.shape
    if accumulated.shape != cost.shape or allocation.shape != cost.shape:
        raise InvalidInputError("cost, accumulated and allocation must have the same shape")
    dy, dx = _cell_sizes(cell_size)
    nnb, dr, dc, wf, mid = _tables(knight, dy, dx)
    alloc = np.ascontiguousarray(allocation, dtype=np.int32).reshape(-1)
    acc = np.ascontiguousarray(accumulated, dtype=np.float64).reshape(-1)
    nsrc = int(alloc.max()) + 1 if alloc.size else 0
    r0, r1, c0, c1 = (0, H, 0, W) if scan is None else (int(v) for v in scan)
    if not (0 <= r0 <= r1 <= H and 0 <= c0 <= c1 <= W):
        raise InvalidInputError(f"scan rows/cols {scan} outside the raster ({H} x {W})")
    ij, lc, ab = _adjacent(cost.reshape(-1), mask.reshape(-1), has_mask, H, W, acc,
                           alloc, nnb, dr, dc, wf, mid, max(nsrc, 1), r0, r1, c0, c1)
    order = np.lexsort((ij[:, 1], ij[:, 0]))
    ij, lc, ab = ij[order], lc[order], ab[order]
    cells = np.stack([np.stack([ab[:, 0] // W, ab[:, 0] % W], axis=1),
                      np.stack([ab[:, 1] // W, ab[:, 1] % W], axis=1)], axis=1)
    return ij, lc, cells


def warm_up() -> float:
    """Compile (or load from the numba cache) the kernels the layers engine uses, for float32 and float64 costs
    (8 and 16 neighbours share them): the bucket queue, its seeded form (tiles), the zone adjacency (links), and
    the binary-heap fallback (costs spanning more than 6 decades). Returns the seconds spent (≈ 13–20 s on a fresh
    cache, ≈ 0.6 s from it)."""
    t0 = time.perf_counter()
    for dt in (np.float32, np.float64):
        wide = np.ones((5, 5), dtype=dt)
        wide[0, 0] = 1e-6
        wide[4, 4] = 1e4                          # max edge / min edge > 2**22: the heap fallback
        for kn in (False, True):
            accumulated_cost(wide, np.array([[2, 2]]), knight=kn, return_backlinks=True, return_allocation=True)
        c = np.ones((5, 5), dtype=dt)
        for kn in (False, True):
            acc, _back, alloc = accumulated_cost(c, np.array([[2, 2], [0, 0]]), knight=kn, return_backlinks=True,
                                                 return_allocation=True)
            accumulated_cost(c, np.array([[2, 2]]), knight=kn, source_costs=np.array([0.5]),
                             return_backlinks=True, return_allocation=True)
            adjacent_sources(c, acc, alloc, knight=kn)
    return time.perf_counter() - t0
