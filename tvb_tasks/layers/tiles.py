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
of the previous round; it stops when no boundary value changes (or after ``max_rounds``: ``RuntimeError``).

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

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import costdistance as cd

__all__ = ["TilingConfig", "Tile", "tile_grid", "run_tile", "tiled_accumulated_cost", "TiledResult",
           "tiling_config"]


class TilingConfig(BaseModel):
    """``tiling:`` section of a territory YAML (cells, not metres: a tile is a unit of memory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False                               # layers engine: tiled cost-distance (same result)
    tile_size: int = Field(default=2048, ge=8)          # core side, cells
    overlap: int = Field(default=16, ge=1)              # halo width, cells (>= 2 with knight's moves)
    max_rounds: int = Field(default=100, ge=1)          # safety stop of the boundary exchange
    memory_limit_gib: float = Field(default=4.0, gt=0)  # per-task memory bound (workers' sizing)


def tiling_config(territory) -> TilingConfig:
    """The territory's ``tiling`` section (defaults when absent)."""
    raw = (getattr(territory, "model_extra", None) or {}).get("tiling") or {}
    return TilingConfig(**raw)


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
        raise ValueError(f"tile_size and overlap must be >= 1, got {tile_size}, {overlap}")
    if overlap > tile_size:
        raise ValueError(f"overlap ({overlap}) must not exceed tile_size ({tile_size}): "
                         "a halo must only reach the adjacent tiles")
    tiles = []
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
        raise ValueError(f"overlap must be >= {2 if knight else 1} cells with {'16' if knight else '8'} neighbours")
    H, W = costp.shape
    tiles = tile_grid((H, W), tile_size, overlap)
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
        if rounds >= max_rounds:
            raise RuntimeError(f"tiled cost-distance did not converge in {max_rounds} rounds "
                               f"({len(dirty)} tiles still changing): raise tiling.max_rounds")
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
        changed = np.zeros((H, W), dtype=bool)
        for i, (a, b, al) in results.items():
            t = tiles[i]
            r0, r1, c0, c1 = t.core
            core = t.core_in_window
            na, nb, nal = a[core], b[core], al[core]
            old = acc[r0:r1, c0:c1]
            diff = ~((na == old) | (np.isnan(na) & np.isnan(old)))
            diff |= nb != back[r0:r1, c0:c1]
            diff |= nal != alloc[r0:r1, c0:c1]
            changed[r0:r1, c0:c1] = diff
            acc[r0:r1, c0:c1], back[r0:r1, c0:c1], alloc[r0:r1, c0:c1] = na, nb, nal
        dirty = set()
        for t in tiles:
            w0, w1, v0, v1 = t.window
            ring = changed[w0:w1, v0:v1].copy()
            ring[t.core_in_window] = False
            if ring.any():
                dirty.add(t.index)
    # impassable cells of tiles no source or seed ever reached: NaN as in the untiled run
    acc[~np.isfinite(acc) & ~_passable(costp, mask, has_mask)] = np.nan
    return TiledResult(acc, back, alloc, rounds, runs, len(tiles))


def _passable(cost: np.ndarray, mask: np.ndarray, has_mask: bool) -> np.ndarray:
    ok = (cost > 0) & np.isfinite(cost)
    if has_mask:
        ok &= ~mask
    return ok
