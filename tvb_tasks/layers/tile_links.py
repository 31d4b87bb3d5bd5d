"""Corridors of a sous-trame from the tiled cost-distance's per-tile objects, with memory bounded by a few tiles.

The untiled engine selects links, traces paths and measures corridors on whole-grid rasters (≈ 60 B per cell).
Here every step reads the per-tile objects of :mod:`tvb_tasks.layers.tiles` (``input/<i>.npz``: the window of
friction, optional nodata mask and land-use friction; ``core/<i>.npz``: accumulated cost, back-links and
reservoir allocation of the core) a few tiles at a time, and gives the same result as the whole-grid functions of
:mod:`tvb_tasks.layers.corridors` on the stitched rasters:

1. :func:`tiled_links` — for each tile, its core plus a halo of ``HALO`` cells (2 with knight's moves, the longest
   move; 1 otherwise) of accumulated cost and allocation read from the neighbours' cores, and friction from its
   own input window (overlap ≥ halo): the zone-adjacency kernel (``costdistance.adjacent_sources`` with ``scan`` =
   the core) looks at every move *from* a core cell ``u`` — the same rule and code as the whole-grid call, which
   scans every cell. The kernel scans ``u`` in row-major order and a move goes to ``v = u + positive offset``, so
   on the whole grid a pair's crossing is the cheapest, an exact tie going to the smallest flat index of ``u``
   (then the lowest move index, all of ``u``'s moves being in ``u``'s tile). The tiles' crossings are merged by
   pair with that rule (min cost, then smallest ``u`` = min(flat a, flat b)), then filtered by
   ``corridors.keep_cheapest_links`` as ``select_links`` does: the same rows, costs and cells.
2. :func:`tiled_link_paths` — the back-links are followed across cores read on demand through a small LRU cache
   (:class:`CoreReader`): memory ∝ a few cores + the path lengths; the same cells as ``link_paths``.
3. :func:`path_values` — friction and land-use friction gathered at the path cells only (each tile's input read
   once), as :class:`CellValues`, which ``corridors.corridor_lines`` reads like the rasters (``take`` of flat
   indices): the same corridors, statuses and geometries, by the same code.

Memory: one input window + the halo strips + the LRU cache of cores (``cache`` cores; 13 B per core cell with all
three arrays) + per-pair crossings (∝ reservoirs) + paths (∝ their length); a corridor polygon holds its zone
window (``AREA_BYTES`` per cell), refused before it is allocated when it would exceed the task's memory bound. CRS and units: the grid's (territory
CRS, metres); costs in friction × m.
"""
from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np
import pandas as pd

from tvb_tasks.errors import InvalidInputError
from tvb_tasks.memory import check_allocation

from . import costdistance as cd
from .corridors import LINK_COLUMNS, keep_cheapest_links
from .tiles import Tile, _load_npz, _plan

__all__ = ["AREA_BYTES", "HALO", "CellValues", "CoreReader", "path_values", "problem_name", "tiled_link_paths",
           "tiled_links", "window_inputs"]

#: Halo (cells) of a tile's core read for its crossings: the longest move (a knight's move spans 2 rows or cols).
HALO = {True: 2, False: 1}
#: Width (cells) of the edge bands of each core :class:`CoreReader` keeps for the neighbours' halos.
BAND = 2
#: Bytes per cell of a corridor polygon's zone window (:func:`tiled_corridor_area`: accumulated cost, allocation,
#: friction, reservoir mask, then ``corridor_area``'s zone, friction and two Dijkstra runs): 46.3 measured
#: (``bench/memory_windows.py``, 9 M cells).
AREA_BYTES = 48


def problem_name(prefix: str) -> str:
    """The sous-trame (``forest``, ``forest/potential``) of a tiled problem's store ``prefix`` (``…/tiles/<…>``)."""
    return prefix.split("/tiles/", 1)[-1]


class CoreReader:
    """The cores of a tiled cost-distance under ``prefix``, read from the store on demand; the last ``cache``
    arrays read are kept (LRU). A core never reached (no object) reads as unreached everywhere (acc +inf,
    back-link ``BACK_NONE``, allocation -1)."""

    def __init__(self, store, prefix: str, cache: int = 4):
        self.store, self.prefix, self.cache = store, prefix, cache
        self.plan, self.tiles = _plan(store, prefix)
        self.shape = (int(self.plan["shape"][0]), int(self.plan["shape"][1]))
        self.size = int(self.plan["tile_size"])
        self.per_row = int(self.plan["per_row"])
        # the cores written, listed once (``exists`` on a local store hashes the file)
        self.present = {int(k.rsplit("/", 1)[1].split(".")[0]) for k in store.list(f"{prefix}/core/")
                        if k.endswith(".npz")}
        self._lru: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._bands: dict[tuple[int, str], tuple[np.ndarray, ...]] = {}

    def tile_of(self, r: int, c: int) -> Tile:
        """The tile whose core holds cell (r, c) of the grid."""
        return self.tiles[(r // self.size) * self.per_row + c // self.size]

    def array(self, index: int, name: str) -> np.ndarray:
        """Array ``name`` (``acc``, ``back`` or ``alloc``) of tile ``index``'s core."""
        key = (index, name)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        obj = f"{self.prefix}/core/{index}.npz"
        if index in self.present:
            path = self.store.local_path(obj)          # a local store: only that member is read from the file
            with np.load(path if path is not None else io.BytesIO(self.store.get_bytes(obj))) as z:
                arr = z[name]
        else:
            r0, r1, c0, c1 = self.tiles[index].core
            fill = {"acc": (np.inf, np.float64), "back": (cd.BACK_NONE, np.int8), "alloc": (-1, np.int32)}[name]
            arr = np.full((r1 - r0, c1 - c0), fill[0], dtype=fill[1])
        self._lru[key] = arr
        while len(self._lru) > self.cache:
            self._lru.popitem(last=False)
        return arr

    def input(self, index: int, name: str) -> np.ndarray:
        """Array ``name`` (``cost``, ``src``, ``labels``…) of tile ``index``'s input, through the same LRU cache."""
        key = (index, f"input:{name}")
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        obj = f"{self.prefix}/input/{index}.npz"
        path = self.store.local_path(obj)
        with np.load(path if path is not None else io.BytesIO(self.store.get_bytes(obj))) as z:
            arr = z[name]
        self._lru[key] = arr
        while len(self._lru) > self.cache:
            self._lru.popitem(last=False)
        return arr

    def block(self, box: tuple[int, int, int, int], name: str, fill, dtype) -> np.ndarray:
        """Array ``name`` over the grid rows/cols ``box`` = (r0, r1, c0, c1), assembled from the cores it meets."""
        r0, r1, c0, c1 = box
        out = np.full((r1 - r0, c1 - c0), fill, dtype=dtype)
        for tr in range(r0 // self.size, (r1 - 1) // self.size + 1):
            for tc in range(c0 // self.size, (c1 - 1) // self.size + 1):
                t = self.tiles[tr * self.per_row + tc]
                a0, a1, b0, b1 = t.core
                i0, i1, j0, j1 = max(a0, r0), min(a1, r1), max(b0, c0), min(b1, c1)
                if i1 > i0 and j1 > j0:
                    out[i0 - r0:i1 - r0, j0 - c0:j1 - c0] = self._part(t.index, name, i0 - a0, i1 - a0,
                                                                       j0 - b0, j1 - b0)
        return out

    def _part(self, index: int, name: str, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        """Rows i0:i1, cols j0:j1 of a core's array; a part within ``BAND`` cells of an edge (a neighbour's halo)
        comes from the core's four edge bands, kept for every core once read (≈ 4 × BAND × side cells)."""
        r0, r1, c0, c1 = self.tiles[index].core
        h, w = r1 - r0, c1 - c0
        side = 0 if i1 <= BAND else 1 if i0 >= h - BAND else 2 if j1 <= BAND else 3 if j0 >= w - BAND else -1
        if side < 0:
            return self.array(index, name)[i0:i1, j0:j1]
        key = (index, name)
        if key not in self._bands:
            a = self.array(index, name)
            self._bands[key] = (a[:BAND].copy(), a[h - BAND:].copy(), a[:, :BAND].copy(), a[:, w - BAND:].copy())
        band = self._bands[key][side]
        if side == 0:
            return band[i0:i1, j0:j1]
        if side == 1:
            return band[i0 - (h - BAND):i1 - (h - BAND), j0:j1]
        if side == 2:
            return band[i0:i1, j0:j1]
        return band[i0:i1, j0 - (w - BAND):j1 - (w - BAND)]


def _tile_crossings(reader: CoreReader, t: Tile, knight: bool, cell_size) -> pd.DataFrame:
    """Cheapest crossing per zone pair among the moves from ``t``'s core cells: columns a, b, cost, fa, fb (flat
    grid indices of the crossing cells), u (the scanned cell: min(fa, fb))."""
    H, W = reader.shape
    h = HALO[knight]
    r0, r1, c0, c1 = t.core
    box = (max(r0 - h, 0), min(r1 + h, H), max(c0 - h, 0), min(c1 + h, W))
    w0, _, v0, _ = t.window
    if box[0] < w0 or box[2] < v0 or box[1] > t.window[1] or box[3] > t.window[3]:
        raise InvalidInputError(f"tile {t.index}: its window does not hold a {h}-cell halo (overlap too small)")
    alloc = reader.block(box, "alloc", -1, np.int32)
    if alloc.max(initial=-1) < 0:
        return pd.DataFrame(columns=["a", "b", "cost", "fa", "fb", "u"])
    acc = reader.block(box, "acc", np.inf, np.float64)
    inp = _load_npz(reader.store.get_bytes(f"{reader.prefix}/input/{t.index}.npz"))
    win = (slice(box[0] - w0, box[1] - w0), slice(box[2] - v0, box[3] - v0))
    cost = inp["cost"][win]
    mask = inp["mask"][win] if "mask" in inp else None
    del inp
    scan = (r0 - box[0], r1 - box[0], c0 - box[2], c1 - box[2])
    pairs, costs, cells = cd.adjacent_sources(cost, acc, alloc, cell_size=cell_size, knight=knight,
                                              nodata_mask=mask, scan=scan)
    fa = (cells[:, 0, 0] + box[0]) * W + cells[:, 0, 1] + box[2]
    fb = (cells[:, 1, 0] + box[0]) * W + cells[:, 1, 1] + box[2]
    return pd.DataFrame({"a": pairs[:, 0], "b": pairs[:, 1], "cost": costs, "fa": fa, "fb": fb,
                         "u": np.minimum(fa, fb)})


def tiled_links(store, prefix: str, *, max_cost: float, max_links: int, cache: int = 4) -> pd.DataFrame:
    """``corridors.select_links`` on the stitched rasters of the tiled cost-distance under ``prefix``, computed
    tile by tile (module doc): columns a, b (reservoir indices), cost (friction × m), cell_a, cell_b ((row, col)
    of the grid); the same rows in the same order."""
    reader = CoreReader(store, prefix, cache=cache)
    knight = bool(reader.plan["knight"])
    cell_size = tuple(reader.plan["cell_size"])
    parts = [p for t in reader.tiles if len(p := _tile_crossings(reader, t, knight, cell_size))]
    if not parts:
        return pd.DataFrame(columns=LINK_COLUMNS)
    allc = pd.concat(parts, ignore_index=True).astype({"a": np.int64, "b": np.int64, "cost": np.float64,
                                                       "fa": np.int64, "fb": np.int64, "u": np.int64})
    best = (allc.sort_values(["a", "b", "cost", "u"], kind="stable").drop_duplicates(["a", "b"], keep="first")
            .reset_index(drop=True))
    W = reader.shape[1]
    fa, fb = best["fa"].to_numpy(), best["fb"].to_numpy()
    cells = np.stack([np.stack([fa // W, fa % W], axis=1), np.stack([fb // W, fb % W], axis=1)], axis=1)
    return keep_cheapest_links(best[["a", "b"]].to_numpy(), best["cost"].to_numpy(), cells,
                               max_cost=max_cost, max_links=max_links)


def _trace(reader: CoreReader, start) -> list[tuple[int, int]]:
    """``costdistance.trace_path`` through the cores: (row, col) from ``start`` back to its source."""
    H, W = reader.shape
    r, c = int(start[0]), int(start[1])
    path = [(r, c)]
    for _ in range(H * W):
        t = reader.tile_of(r, c)
        j = int(reader.array(t.index, "back")[r - t.core[0], c - t.core[2]])
        if j == cd.BACK_SOURCE:
            return path
        if j == cd.BACK_NONE:
            raise InvalidInputError(f"start cell {start} was not reached (cell {(r, c)} has no back-link)")
        r -= int(cd.OFFSETS[j, 0])
        c -= int(cd.OFFSETS[j, 1])
        path.append((r, c))
    raise InvalidInputError("back-links contain a cycle")


def tiled_link_paths(store, prefix: str, links: pd.DataFrame, *, cache: int = 9) -> list[list[tuple[int, int]]]:
    """``corridors.link_paths`` through the cores under ``prefix`` (read on demand, ``cache`` back-link arrays
    kept): each link's cells from reservoir ``a`` to reservoir ``b``."""
    reader = CoreReader(store, prefix, cache=cache)
    return [_trace(reader, a)[::-1] + _trace(reader, b) for a, b in zip(links["cell_a"], links["cell_b"])]


class CellValues:
    """Values of a raster at some cells only: ``take(flat indices)`` as ``ndarray.take`` on the raster (every
    index asked must be one of ``flat``)."""

    def __init__(self, flat: np.ndarray, values: np.ndarray):
        order = np.argsort(flat, kind="stable")
        self.flat, self.values = np.asarray(flat)[order], np.asarray(values)[order]

    def take(self, cells) -> np.ndarray:
        c = np.asarray(cells, dtype=np.int64)
        i = np.searchsorted(self.flat, c)
        if len(c) and (i.max() >= len(self.flat) or not np.array_equal(self.flat[i], c)):
            raise InvalidInputError("a cell outside the gathered ones")
        return self.values[i]


def path_values(store, prefix: str, paths: list[list[tuple[int, int]]],
                names: tuple[str, ...] = ("cost", "lu_friction")) -> list[CellValues]:
    """The input rasters ``names`` (friction ``cost``, land-use friction ``lu_friction``) at the cells of
    ``paths``, one :class:`CellValues` per name; each tile's input is read once."""
    plan, tiles = _plan(store, prefix)
    W, size, per_row = int(plan["shape"][1]), int(plan["tile_size"]), int(plan["per_row"])
    flat = np.unique(np.asarray([r * W + c for p in paths for r, c in p], dtype=np.int64))
    rows, cols = flat // W, flat % W
    tile_idx = (rows // size) * per_row + cols // size
    out = {n: np.empty(len(flat), dtype=np.float64) for n in names}
    for i in np.unique(tile_idx):
        t = tiles[int(i)]
        sel = tile_idx == i
        inp = _load_npz(store.get_bytes(f"{prefix}/input/{t.index}.npz"))
        for n in names:
            if n not in inp:
                raise InvalidInputError(f"tile {t.index}'s input has no {n!r} (planned without it)")
            out[n][sel] = inp[n][rows[sel] - t.window[0], cols[sel] - t.window[2]]
        del inp
    return [CellValues(flat, out[n]) for n in names]


def zone_boxes(store, prefix: str) -> dict[int, tuple[int, int, int, int]]:
    """Bounding box (row0, row1, col0, col1; grid cells, half-open) of each reservoir's allocation zone, merged
    from each core's ``find_objects``: ``corridors.zone_windows`` of the stitched allocation, one core at a time."""
    from scipy import ndimage

    reader = CoreReader(store, prefix, cache=1)
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for t in reader.tiles:
        if t.index not in reader.present:
            continue
        alloc = reader.array(t.index, "alloc")
        for i, sl in enumerate(ndimage.find_objects(np.where(alloc >= 0, alloc + 1, 0).astype(np.int32))):
            if sl is None:
                continue
            r0, r1 = sl[0].start + t.core[0], sl[0].stop + t.core[0]
            c0, c1 = sl[1].start + t.core[2], sl[1].stop + t.core[2]
            old = boxes.get(i)
            boxes[i] = (r0, r1, c0, c1) if old is None else \
                (min(old[0], r0), max(old[1], r1), min(old[2], c0), max(old[3], c1))
    return boxes


def window_inputs(reader: CoreReader, box: tuple[int, int, int, int], name: str = "cost"):
    """Input raster ``name`` over ``box`` (grid cells r0, r1, c0, c1) assembled from the tiles' cores, and the
    source cells in it: ``(array (the input's dtype, NaN where no core), sources (N, 2) in window cells, reservoir index (N,))``."""
    r0, r1, c0, c1 = box
    out: np.ndarray | None = None
    src, lab = [], []
    for t in reader.tiles:
        a0, a1, b0, b1 = t.core
        i0, i1, j0, j1 = max(a0, r0), min(a1, r1), max(b0, c0), min(b1, c1)
        if i1 <= i0 or j1 <= j0:
            continue
        w0, v0 = t.window[0], t.window[2]
        arr = reader.input(t.index, name)
        if out is None:                                      # the input's dtype (the engine's friction's)
            out = np.full((r1 - r0, c1 - c0), np.nan, dtype=arr.dtype)
        out[i0 - r0:i1 - r0, j0 - c0:j1 - c0] = arr[i0 - w0:i1 - w0, j0 - v0:j1 - v0]
        rc = reader.input(t.index, "src") + (w0, v0)
        ok = (rc[:, 0] >= i0) & (rc[:, 0] < i1) & (rc[:, 1] >= j0) & (rc[:, 1] < j1)
        src.append(rc[ok] - (r0, c0))
        lab.append(reader.input(t.index, "labels")[ok])
    if out is None:
        out = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
    src_rc = np.concatenate(src).astype(np.int64) if src else np.empty((0, 2), np.int64)
    src_res = np.concatenate(lab).astype(np.int64) if lab else np.empty(0, np.int64)
    return out, src_rc, src_res


def tiled_corridor_area(store, prefix: str, link_cost: float, a: int, b: int, boxes: dict, grid, *,
                        margin: float, reader: CoreReader | None = None, memory_limit_gib: float | None = None):
    """``corridors.corridor_area`` of the link a–b (reservoir indices) on the window of the two zones, assembled
    from the cores (accumulated cost, allocation) and the inputs (friction, source cells): the same polygon, in
    memory ∝ that window (bounded by the zones' extent, i.e. by ``max_cost``, not by the grid). Reservoir cells
    are left out, as the engine's ``core``. None when the corridor is empty. ``reader``: a :class:`CoreReader`
    shared by the links (its cache then serves the next link's window). ``MemoryBoundError`` before the window is
    allocated if it would exceed ``memory_limit_gib`` (default: the running task's bound,
    :func:`tvb_tasks.memory.current_bound`)."""
    from .corridors import corridor_area

    own = [boxes[i] for i in (a, b) if i in boxes]
    if not own:
        return None
    box = (min(x[0] for x in own), max(x[1] for x in own), min(x[2] for x in own), max(x[3] for x in own))
    check_allocation(f"corridor area of link {a}–{b} of {problem_name(prefix)} (zone window {box[1] - box[0]} × "
                     f"{box[3] - box[2]} cells)", (box[1] - box[0]) * (box[3] - box[2]), AREA_BYTES,
                     "the window of the two reservoirs' allocation zones, which the sous-trame's max_cost bounds: "
                     "lower max_cost or raise tiling.memory_limit_gib", memory_limit_gib)
    reader = reader if reader is not None else CoreReader(store, prefix, cache=12)
    acc = reader.block(box, "acc", np.inf, np.float64)
    alloc = reader.block(box, "alloc", -1, np.int32)
    r0, r1, c0, c1 = box
    friction, src_rc, src_res = window_inputs(reader, box)
    core = np.zeros(friction.shape, dtype=bool)
    core[src_rc[:, 0], src_rc[:, 1]] = True
    windows: list = [None] * (max(a, b) + 1)
    for i in (a, b):
        if i in boxes:
            x = boxes[i]
            windows[i] = (slice(x[0] - r0, x[1] - r0), slice(x[2] - c0, x[3] - c0))
    return corridor_area(link_cost, a, b, acc, alloc, friction, src_rc, src_res, grid.window(r0, r1, c0, c1),
                         margin=margin, knight=bool(reader.plan["knight"]), windows=windows, core=core)
