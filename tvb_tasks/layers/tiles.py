"""Cost-distance of a sous-trame by tiles, stitched exactly (same result as one untiled run).

Semantics
---------
The raster is cut into square *tiles* (``tile_size`` cells a side; edge tiles are smaller). A tile is computed on
its *window*: its core plus ``overlap`` cells of each neighbour (``overlap`` ≥ 1 for 8 neighbours, ≥ 2 for knight's
moves, so every move into a core cell, and the two cells a knight's move passes between, lie in the window).
A tile run is one exact Dijkstra (:func:`tvb_tasks.layers.costdistance.accumulated_cost`, the same kernel as the
untiled run) on the window, from

* the sources inside the window (start cost 0), and
* *seeds*: every halo cell (window minus core) with the accumulated cost and allocation currently known for it by
  the tile that owns it (``source_costs`` / ``source_labels`` of the kernel).

Only the core of a run is kept. Rounds: first every tile holding a source in its window runs; then every tile one of
whose halo cells changed (accumulated cost, allocation or back-link) since its last run runs again, from the values
of the previous round; it stops when no boundary value changes (or after ``max_rounds``: ``TilingError``, a deterministic ``RuntimeError``).

Why the stitched result equals the untiled one *exactly* (max abs difference 0, not "within rounding"): the
untiled kernel returns the unique solution of ``D[v] = min(0 if v is a source, min over moves u→v of
fl(D[u] + w(u, v)))`` (``fl`` = float64 addition, cut at ``max_cost``) — unique because every move adds a positive
cost, so ``fl(a + w) > a``. Every value a tile run writes is ``fl``-chain of a real path (so never below that
solution); at convergence every tile ran with its halo equal to its neighbours' final cores, so the stitched raster
satisfies ``D ≤ F(D)`` and, by induction along each optimal path, ``D`` is that solution. The per-move cost
``w(u, v)`` is computed by the same expression in both (GRASS ``r.cost`` mean of the two end cells, or of the four
cells of a knight's move, times the move length). Back-links and allocation do not depend on the order in which
cells are settled either: on an exact tie the kernel keeps the predecessor with the lowest move index (see
``accumulated_cost``), a function of the accumulated costs alone; so they are identical too. (The proof needs
``fl(a + w) > a``: a move cost below half a unit in the last place of the accumulated cost — e.g. 1e-9 after 1e8 —
would be absorbed; not a case of friction ≥ 1 on metre cells.)

Cost: each tile run is a full Dijkstra on its window; a tile typically runs 2–4 times (paths that cross tile
borders several times need more rounds). The rounds are independent per tile, so they map onto parallel workers;
the memory of a run is bounded by its window (≈ 22 bytes per cell with back-links and allocation, plus the cost).

CRS and units: those of the input raster; costs in cost × ``cell_size`` units, as ``accumulated_cost``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tvb_tasks.config_sections import TilingConfig  # the ``tiling:`` section (re-exported)
from tvb_tasks.errors import DeterministicError, InvalidInputError

from . import costdistance as cd

__all__ = [
    "Tile",
    "TiledResult",
    "TilingConfig",
    "TilingError",
    "check_memory",
    "largest_tile_size",
    "plan_record",
    "plan_to_store",
    "put_tile_input",
    "read_core_cost",
    "read_plan",
    "run_rounds",
    "run_tile",
    "run_tile_from_store",
    "stitch_from_store",
    "tile_grid",
    "tile_task_bytes",
    "tiled_accumulated_cost",
    "tiling_problems",
]


class TilingError(DeterministicError, RuntimeError):
    """The boundary exchange did not converge within the allowed rounds: a retry gives the same result (raise
    ``tiling.max_rounds`` / ``tiling.dag_rounds``)."""


@dataclass(frozen=True)
class Tile:
    """One tile: ``index`` in row-major order, its core and window as (row0, row1, col0, col1) half-open bounds."""

    index: int
    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices of the core inside the window arrays."""
        r0, r1, c0, c1 = self.core
        w0, _, v0, _ = self.window
        return slice(r0 - w0, r1 - w0), slice(c0 - v0, c1 - v0)


def tile_grid(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """Tiles covering a raster of ``shape`` (rows, cols), row-major."""
    H, W = shape
    if tile_size < 1 or overlap < 1:
        raise InvalidInputError(f"tile_size and overlap must be >= 1, got {tile_size}, {overlap}")
    if overlap > tile_size:
        raise InvalidInputError(f"overlap ({overlap}) must not exceed tile_size ({tile_size}): "
                         "a halo must only reach the adjacent tiles")
    tiles: list[Tile] = []
    for r0 in range(0, H, tile_size):
        for c0 in range(0, W, tile_size):
            r1, c1 = min(r0 + tile_size, H), min(c0 + tile_size, W)
            win = (max(r0 - overlap, 0), min(r1 + overlap, H), max(c0 - overlap, 0), min(c1 + overlap, W))
            tiles.append(Tile(len(tiles), (r0, r1, c0, c1), win))
    return tiles


def run_tile(cost_w: np.ndarray, sources_w: np.ndarray, labels_w: np.ndarray, seeds_w: np.ndarray,
             seed_costs: np.ndarray, seed_labels: np.ndarray, *, cell_size: float | Sequence[float] = 1.0,
             knight: bool = False, max_cost: float | None = None, nodata_mask_w: np.ndarray | None = None):
    """One tile run on its window: ``(acc, back, alloc)`` window rasters (see ``accumulated_cost``).

    ``sources_w`` / ``seeds_w``: (N, 2) row/col in the window; sources start at 0 with ``labels_w``, seeds at
    ``seed_costs`` with ``seed_labels``. ``None`` when there is neither (nothing reaches the window).
    """
    pts = np.concatenate([sources_w.reshape(-1, 2), seeds_w.reshape(-1, 2)]).astype(np.int64)
    if len(pts) == 0:
        return None
    start = np.concatenate([np.zeros(len(sources_w)), seed_costs]).astype(np.float64)
    labels = np.concatenate([labels_w, seed_labels]).astype(np.int64)
    return cd.accumulated_cost(cost_w, pts, cell_size=cell_size, knight=knight, max_cost=max_cost,
                               nodata_mask=nodata_mask_w, return_backlinks=True, return_allocation=True,
                               source_labels=labels, source_costs=start)


@dataclass
class TiledResult:
    """Stitched rasters and the exchange's figures (``rounds``: rounds run; ``tile_runs``: Dijkstra runs)."""

    acc: np.ndarray
    back: np.ndarray
    alloc: np.ndarray
    rounds: int
    tile_runs: int
    tiles: int


def _seeds(tile: Tile, acc: np.ndarray, alloc: np.ndarray):
    """Halo cells of ``tile`` with a finite accumulated cost: (rc in window, cost, label)."""
    w0, w1, v0, v1 = tile.window
    a = acc[w0:w1, v0:v1]
    halo = np.isfinite(a)
    halo[tile.core_in_window] = False
    rc = np.argwhere(halo)
    return rc, a[halo], alloc[w0:w1, v0:v1][halo]


def _check_rounds(rounds: int, max_rounds: int, n_dirty: int) -> None:
    """``TilingError`` when ``max_rounds`` rounds are done and ``n_dirty`` tiles still change."""
    if rounds >= max_rounds:
        raise TilingError(f"tiled cost-distance did not converge in {max_rounds} rounds "
                           f"({n_dirty} tiles still changing): raise tiling.max_rounds")


def tiled_accumulated_cost(
    cost: np.ndarray,
    sources: np.ndarray,
    *,
    tile_size: int,
    overlap: int,
    cell_size: float | Sequence[float] = 1.0,
    knight: bool = False,
    max_cost: float | None = None,
    nodata_mask: np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
    max_rounds: int = 100,
) -> TiledResult:
    """``accumulated_cost(..., return_backlinks=True, return_allocation=True)`` computed tile by tile (module doc).

    Same arguments and outputs (float64 accumulated cost with NaN = impassable and +inf = unreached, int8
    back-links, int32 allocation), bit-identical to the untiled run. Rounds are Jacobi rounds (every tile of a
    round reads the values of the previous one), as when the tiles of a round run on separate workers.
    """
    costp, mask, has_mask = cd._prepare_cost(cost, nodata_mask)
    src, labels = cd._check_sources(costp, mask, has_mask, sources, source_labels)
    if overlap < (2 if knight else 1):
        raise InvalidInputError(f"overlap must be >= {2 if knight else 1} cells with {'16' if knight else '8'} neighbours")
    H, W = costp.shape
    tiles = tile_grid((H, W), tile_size, overlap)
    ntc = -(-W // tile_size)  # tiles per row
    acc = np.full((H, W), np.inf)
    back = np.full((H, W), cd.BACK_NONE, dtype=np.int8)
    alloc = np.full((H, W), -1, dtype=np.int32)
    # sources: first occurrence of a cell wins (as the kernel), then each tile gets those of its window
    _, first = np.unique(src[:, 0] * W + src[:, 1], return_index=True)
    first.sort()
    src, labels = src[first], labels[first]
    dirty = {t.index for t in tiles
             if np.any((src[:, 0] >= t.window[0]) & (src[:, 0] < t.window[1])
                       & (src[:, 1] >= t.window[2]) & (src[:, 1] < t.window[3]))}
    rounds = runs = 0
    while dirty:
        _check_rounds(rounds, max_rounds, len(dirty))
        rounds += 1
        results = {}
        for i in sorted(dirty):  # Jacobi: every run of the round reads the previous round's values
            t = tiles[i]
            w0, w1, v0, v1 = t.window
            inside = (src[:, 0] >= w0) & (src[:, 0] < w1) & (src[:, 1] >= v0) & (src[:, 1] < v1)
            s_rc, s_cost, s_lab = _seeds(t, acc, alloc)
            res = run_tile(costp[w0:w1, v0:v1], src[inside] - (w0, v0), labels[inside], s_rc, s_cost, s_lab,
                           cell_size=cell_size, knight=knight, max_cost=max_cost,
                           nodata_mask_w=mask[w0:w1, v0:v1] if has_mask else None)
            runs += 1
            if res is not None:
                results[i] = res
        dirty = set()
        for i, res in results.items():
            t = tiles[i]
            r0, r1, c0, c1 = t.core
            new = tuple(x[t.core_in_window] for x in res)
            changed = _core_changed(new, (acc[r0:r1, c0:c1], back[r0:r1, c0:c1], alloc[r0:r1, c0:c1]))
            acc[r0:r1, c0:c1], back[r0:r1, c0:c1], alloc[r0:r1, c0:c1] = new
            dirty |= _touched_tiles(tiles, t, changed, ntc)
    # impassable cells of tiles no source or seed ever reached: NaN as in the untiled run
    acc[~np.isfinite(acc) & ~_passable(costp, mask, has_mask)] = np.nan
    return TiledResult(acc, back, alloc, rounds, runs, len(tiles))


def _core_changed(new, old) -> np.ndarray:
    """Cells of a core whose accumulated cost, back-link or allocation differ (NaN = NaN)."""
    na, nb, nal = new
    oa, ob, oal = old
    diff = ~((na == oa) | (np.isnan(na) & np.isnan(oa)))
    diff |= nb != ob
    diff |= nal != oal
    return diff


def _touched_tiles(tiles: list[Tile], tile: Tile, changed: np.ndarray, per_row: int) -> set[int]:
    """Indices of the neighbours of ``tile`` whose halo holds a changed cell of its core (``changed``: core mask)."""
    out: set[int] = set()
    if not changed.any():
        return out
    r0, _, c0, _ = tile.core
    tr, tc = divmod(tile.index, per_row)
    n_rows = -(-len(tiles) // per_row)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = tr + dr, tc + dc
            if (dr == 0 and dc == 0) or not (0 <= rr < n_rows and 0 <= cc < per_row):
                continue
            n = tiles[rr * per_row + cc]
            w0, w1, v0, v1 = n.window
            a0, a1 = max(w0, r0) - r0, min(w1, r0 + changed.shape[0]) - r0
            b0, b1 = max(v0, c0) - c0, min(v1, c0 + changed.shape[1]) - c0
            if a1 > a0 and b1 > b0 and changed[a0:a1, b0:b1].any():
                out.add(n.index)
    return out


def _passable(cost: np.ndarray, mask: np.ndarray, has_mask: bool) -> np.ndarray:
    ok = (cost > 0) & np.isfinite(cost)
    if has_mask:
        ok &= ~mask
    return ok


# ---------------------------------------------------------------------------
# Through a store: one object per tile, for tasks mapped over workers
# ---------------------------------------------------------------------------
# Layout under ``prefix``: ``plan.json`` (grid, tiles, kernel options), ``input/<i>.npz`` (the tile's window of
# cost and nodata mask, its sources in window coordinates and their labels) and ``core/<i>.npz`` (the current
# accumulated cost, back-links and allocation of the tile's core; absent = nothing reached yet). A task reads its
# input, the cores of its (at most 8) neighbours one at a time, and writes only its own core: tasks of a round
# never write the same object, and the values a task reads only ever decrease, so any interleaving converges to
# the same rasters (module doc).

#: Bytes per window cell of a tile run (cost float32 + mask + accumulated float64 + back-links + allocation + the
#: kernel's queue and seed lists) and per core cell held besides (its previous core and one neighbour's core).
_WINDOW_BYTES = 4 + 1 + 8 + 1 + 4 + 4
_CORE_BYTES = 2 * (8 + 1 + 4)


def tile_task_bytes(tile_size: int, overlap: int) -> int:
    """Upper estimate of one tile task's arrays (bytes), excluding the interpreter (~300 MB with numba)."""
    side = tile_size + 2 * overlap
    return side * side * _WINDOW_BYTES + tile_size * tile_size * _CORE_BYTES


#: GiB an interpreter with the stages' libraries holds before any tile (measured 0.43–0.49 GB resident).
INTERPRETER_GIB = 0.5


def largest_tile_size(overlap: int, memory_limit_gib: float) -> int | None:
    """The largest ``tile_size`` (cells a side, a multiple of 8) whose :func:`tile_task_bytes` fits under
    ``memory_limit_gib`` less :data:`INTERPRETER_GIB`; ``None`` when not even 8 cells do."""
    limit = (memory_limit_gib - INTERPRETER_GIB) * 2**30
    lo, hi = 0, 1 << 13                          # in units of 8 cells: up to 65,536 cells a side
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tile_task_bytes(8 * mid, overlap) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return 8 * lo if lo else None


def tiling_problems(tiling: TilingConfig, neighbours: int = 8) -> list[tuple[str, str]]:
    """``(setting, problem)`` pairs of a ``tiling`` section that cannot run, found before anything is computed
    (``tvb check-config`` and the fetch stage): a memory bound that leaves nothing for a tile after the interpreter,
    tiles too large for the bound (with the largest that fits), an overlap too narrow for the moves
    (``neighbours``: 8, or 16 with knight's moves, which reach 2 cells). Empty when tiling is disabled."""
    if not tiling.enabled:
        return []
    problems = []
    fits = largest_tile_size(tiling.overlap, tiling.memory_limit_gib)
    need = tile_task_bytes(tiling.tile_size, tiling.overlap)
    if fits is None:
        problems.append(("tiling.memory_limit_gib",
                         f"{tiling.memory_limit_gib} GiB leaves no room for a tile: an interpreter with the "
                         f"pipeline's libraries holds ≈ {INTERPRETER_GIB} GiB before any tile, and the part task of "
                         "a CALL-sized territory peaks at ≈ 0.6 GiB; give at least 1 GiB"))
    elif need > (tiling.memory_limit_gib - INTERPRETER_GIB) * 2**30:
        problems.append(("tiling.tile_size",
                         f"{tiling.tile_size} cells need about {need / 2**30:.2f} GiB per tile task, above "
                         f"tiling.memory_limit_gib {tiling.memory_limit_gib} less {INTERPRETER_GIB} GiB of "
                         f"interpreter: use tiles of at most {fits} cells, or raise the bound"))
    low = 2 if neighbours == 16 else 1
    if tiling.overlap < low:
        problems.append(("tiling.overlap",
                         f"{tiling.overlap} cell(s) is too narrow with corridors.neighbours: {neighbours} "
                         f"(moves reach {low} cells): use at least {low}"))
    return problems


def check_memory(tiling: TilingConfig) -> int:
    """``tile_task_bytes`` of ``tiling``, or :class:`~tvb_tasks.errors.InvalidInputError` naming the setting when
    the tiles do not fit under its ``memory_limit_gib`` (:func:`tiling_problems`)."""
    memory = [f"{key}: {msg}" for key, msg in tiling_problems(tiling.model_copy(update={"enabled": True}))
              if key != "tiling.overlap"]
    if memory:
        raise InvalidInputError("; ".join(memory))
    return tile_task_bytes(tiling.tile_size, tiling.overlap)


def _npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(data: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def plan_to_store(store, prefix: str, cost: np.ndarray, sources: np.ndarray, *, tiling: TilingConfig,
                  cell_size: float | Sequence[float] = 1.0, knight: bool = False, max_cost: float | None = None,
                  nodata_mask: np.ndarray | None = None, source_labels: np.ndarray | None = None,
                  lu_friction: np.ndarray | None = None) -> list[int]:
    """Cut the problem into per-tile input objects under ``prefix``; return the tiles to run first (those with a
    source in their window). Same arguments as :func:`tiled_accumulated_cost`; ``lu_friction`` (land-use friction,
    for the corridors' status) is cut into the inputs too. ``ValueError`` if a tile task would exceed
    ``tiling.memory_limit_gib``."""
    import json

    check_memory(tiling)
    costp, mask, has_mask = cd._prepare_cost(cost, nodata_mask)
    src, labels = cd._check_sources(costp, mask, has_mask, sources, source_labels)
    if tiling.overlap < (2 if knight else 1):
        raise InvalidInputError(f"overlap must be >= {2 if knight else 1} cells with {'16' if knight else '8'} neighbours")
    H, W = costp.shape
    tiles = tile_grid((H, W), tiling.tile_size, tiling.overlap)
    _, first = np.unique(src[:, 0] * W + src[:, 1], return_index=True)
    first.sort()
    src, labels = src[first], labels[first]
    dy, dx = cd._cell_sizes(cell_size)
    for old in store.list(f"{prefix}/"):
        store.delete(old)
    start = []
    for t in tiles:
        w0, w1, v0, v1 = t.window
        inside = (src[:, 0] >= w0) & (src[:, 0] < w1) & (src[:, 1] >= v0) & (src[:, 1] < v1)
        if inside.any():
            start.append(t.index)
        put_tile_input(store, prefix, t.index, costp[w0:w1, v0:v1], src[inside] - (w0, v0), labels[inside],
                       mask[w0:w1, v0:v1] if has_mask else None,
                       None if lu_friction is None else lu_friction[w0:w1, v0:v1])
    plan = plan_record((H, W), tiles, tiling=tiling, cell_size=(dy, dx), knight=knight, max_cost=max_cost)
    store.put_bytes(f"{prefix}/plan.json", json.dumps(plan).encode())
    return start


def put_tile_input(store, prefix: str, index: int, cost_w: np.ndarray, src_w: np.ndarray, labels_w: np.ndarray,
                   mask_w: np.ndarray | None = None, lu_w: np.ndarray | None = None) -> None:
    """Write tile ``index``'s input object: its window of cost (and nodata mask), its sources (row, col in the
    window) and their labels; ``lu_w``: the window of land-use friction (friction without infrastructures, read
    along corridors by :mod:`tvb_tasks.layers.tile_links`), stored as ``lu_friction``."""
    arrays = {"cost": cost_w, "src": src_w, "labels": labels_w}
    if mask_w is not None:
        arrays["mask"] = mask_w
    if lu_w is not None:
        arrays["lu_friction"] = lu_w
    store.put_bytes(f"{prefix}/input/{index}.npz", _npz(**arrays))


def plan_record(shape: tuple[int, int], tiles: list[Tile], *, tiling: TilingConfig, cell_size: tuple[float, float],
                knight: bool, max_cost: float | None) -> dict:
    """The ``plan.json`` of a tiled problem: grid ``shape``, tiles and the kernel's options (cell size dy, dx)."""
    return {"shape": [int(shape[0]), int(shape[1])], "tile_size": tiling.tile_size, "overlap": tiling.overlap,
            "per_row": -(-int(shape[1]) // tiling.tile_size), "cell_size": [float(v) for v in cell_size],
            "knight": bool(knight), "max_cost": None if max_cost is None else float(max_cost),
            "tiles": [{"core": list(t.core), "window": list(t.window)} for t in tiles]}


def _plan(store, prefix: str) -> tuple[dict, list[Tile]]:
    import json

    plan = json.loads(store.get_bytes(f"{prefix}/plan.json"))
    tiles = [Tile(i, tuple(t["core"]), tuple(t["window"])) for i, t in enumerate(plan["tiles"])]
    return plan, tiles


def _read_core(store, prefix: str, tile: Tile):
    """``(acc, back, alloc)`` of ``tile``'s core as the rounds left it (unreached everywhere if never written)."""
    return _read_core_object(store, prefix, tile)[:3]


def _read_core_object(store, prefix: str, tile: Tile):
    """``(acc, back, alloc, round, notified)``: the core and, when its writer recorded them, the round it was written
    in and the neighbours it notified (``None, []`` otherwise)."""
    key = f"{prefix}/core/{tile.index}.npz"
    if not store.exists(key):
        r0, r1, c0, c1 = tile.core
        shape = (r1 - r0, c1 - c0)
        return (np.full(shape, np.inf), np.full(shape, cd.BACK_NONE, np.int8), np.full(shape, -1, np.int32), None, [])
    z = _load_npz(store.get_bytes(key))
    written = (int(z["round"]), [int(v) for v in z["touched"]]) if "round" in z else (None, [])
    return z["acc"], z["back"], z["alloc"], *written


def run_tile_from_store(store, prefix: str, index: int, round_no: int | None = None) -> list[int]:
    """One tile task: run tile ``index`` from its input and its neighbours' current cores, write its core if it
    changed; return the neighbours to run again (their halo changed), sorted.

    ``round_no`` (the DAG's round, ``run_rounds``' count) makes the task idempotent under retries: the core is
    written with the round and the neighbours it notified, so a retry of the same round — after a worker was lost,
    or a task failed after writing (its memory check) — finds its own core unchanged and still returns those
    neighbours (with any new ones), instead of ``[]`` which would leave them stale and the stitched result wrong.
    A later round that finds no change returns ``[]``."""
    plan, tiles = _plan(store, prefix)
    t = tiles[index]
    inp = _load_npz(store.get_bytes(f"{prefix}/input/{index}.npz"))
    w0, w1, v0, v1 = t.window
    win_acc = np.full((w1 - w0, v1 - v0), np.inf)
    win_alloc = np.full((w1 - w0, v1 - v0), -1, np.int32)
    per_row = plan["per_row"]
    tr, tc = divmod(index, per_row)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = tr + dr, tc + dc
            if (dr, dc) == (0, 0) or not (rr >= 0 and 0 <= cc < per_row and rr * per_row + cc < len(tiles)):
                continue
            n = tiles[rr * per_row + cc]
            a, _, al = _read_core(store, prefix, n)
            r0, r1, c0, c1 = n.core
            a0, a1, b0, b1 = max(r0, w0), min(r1, w1), max(c0, v0), min(c1, v1)
            if a1 > a0 and b1 > b0:
                win_acc[a0 - w0:a1 - w0, b0 - v0:b1 - v0] = a[a0 - r0:a1 - r0, b0 - c0:b1 - c0]
                win_alloc[a0 - w0:a1 - w0, b0 - v0:b1 - v0] = al[a0 - r0:a1 - r0, b0 - c0:b1 - c0]
            del a, al
    halo = np.isfinite(win_acc)
    rc = np.argwhere(halo)
    res = run_tile(inp["cost"], inp["src"], inp["labels"], rc, win_acc[halo], win_alloc[halo],
                   cell_size=tuple(plan["cell_size"]), knight=plan["knight"], max_cost=plan["max_cost"],
                   nodata_mask_w=inp.get("mask"))
    del win_acc, win_alloc, halo
    if res is None:
        return []
    new = tuple(x[t.core_in_window] for x in res)
    *old, written_round, notified = _read_core_object(store, prefix, t)
    changed = _core_changed(new, old)
    again = notified if round_no is not None and written_round == round_no else []   # a retry of this round's writer
    if not changed.any():
        return sorted(again)
    touched = sorted(_touched_tiles(tiles, t, changed, per_row) | set(again))
    record = {} if round_no is None else {"round": np.int64(round_no), "touched": np.asarray(touched, np.int64)}
    store.put_bytes(f"{prefix}/core/{index}.npz", _npz(acc=new[0], back=new[1], alloc=new[2], **record))
    return touched


def read_core_cost(store, prefix: str, tile: Tile) -> np.ndarray | None:
    """The accumulated cost (float64) of ``tile``'s core as the rounds left it; ``None`` if no run ever reached
    the tile (every core cell unreached or impassable)."""
    key = f"{prefix}/core/{tile.index}.npz"
    if not store.exists(key):
        return None
    import io

    with np.load(io.BytesIO(store.get_bytes(key))) as z:
        return z["acc"]


def read_plan(store, prefix: str) -> tuple[tuple[int, int], list[Tile]]:
    """``((rows, cols) of the grid, tiles)`` of the plan under ``prefix``."""
    plan, tiles = _plan(store, prefix)
    return (int(plan["shape"][0]), int(plan["shape"][1])), tiles


def stitch_from_store(store, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stitched ``(acc, back, alloc)`` rasters from the cores (impassable cells NaN, as untiled).

    Whole-grid arrays (≈ 13 B per cell): tests and benches compare them with the untiled kernel. The DAG's stitch
    task does not use it: it writes the published ``cost.tif`` tile by tile (:mod:`tvb_tasks.layers.stitch`)."""
    plan, tiles = _plan(store, prefix)
    H, W = plan["shape"]
    acc = np.full((H, W), np.inf)
    back = np.full((H, W), cd.BACK_NONE, np.int8)
    alloc = np.full((H, W), -1, np.int32)
    for t in tiles:
        r0, r1, c0, c1 = t.core
        a, b, al = _read_core(store, prefix, t)
        if not store.exists(f"{prefix}/core/{t.index}.npz"):  # never reached: impassable cells NaN
            inp = _load_npz(store.get_bytes(f"{prefix}/input/{t.index}.npz"))
            core = t.core_in_window
            c = inp["cost"][core]
            bad = ~((c > 0) & np.isfinite(c))
            if "mask" in inp:
                bad |= inp["mask"][core]
            a = np.where(bad, np.nan, a)
        acc[r0:r1, c0:c1], back[r0:r1, c0:c1], alloc[r0:r1, c0:c1] = a, b, al
    return acc, back, alloc


def run_rounds(store, prefix: str, first: list[int], *, max_rounds: int, map_fn=map) -> tuple[int, int]:
    """Rounds of :func:`run_tile_from_store` until no tile changes: ``(rounds, tile runs)``. ``map_fn`` runs one
    round's tiles (``map``, an executor's ``map``…); an Airflow DAG maps each round over workers instead."""
    dirty, rounds, runs = sorted(set(first)), 0, 0
    while dirty:
        _check_rounds(rounds, max_rounds, len(dirty))
        rounds += 1
        runs += len(dirty)
        nxt: set[int] = set()
        for touched in map_fn(lambda i, r=rounds: run_tile_from_store(store, prefix, i, r), dirty):
            nxt.update(touched)
        dirty = sorted(nxt)
    return rounds, runs
