"""Planning a tiled cost-distance window by window: the per-tile inputs without any whole-territory raster.

The untiled engine rasterises the whole grid (class raster, territory and extent masks, friction, reservoir source
cells: ≈ 47 B per cell, ≈ 15 GB for a region at 10 m). :func:`plan_windows_to_store` keeps only what is
vector-level in memory (the :class:`~tvb_tasks.layers.vectors.VectorContext` and the sous-trame's reservoirs: memory
∝ number of features) and computes every raster on one tile *window* at a time, a window :class:`Grid` of the full
grid (same cells, origin moved by whole cells, :meth:`Grid.window`). It writes the same objects as
:func:`tvb_tasks.layers.tiles.plan_to_store` fed with the whole-grid rasters (``tvb_tasks.tiled.cost_problem``):
``input/<i>.npz`` (cost window, sources in the window with their global reservoir index, row-major) and
``plan.json``; so a planning task's memory is bounded by one window, whatever the territory's size.

Why a window holds the whole grid's values. Every step of the friction and the sources is per cell, given the
features: GDAL burns a cell from the features crossing it (cell-centre test, or ``all_touched``), in pixel
coordinates obtained by the inverse geotransform, which for a window are the full grid's minus whole numbers of
cells — exactly, when the grid origin and ``resolution_m`` are whole metres (make_grid snaps the origin to a
multiple of the resolution); later features win in both, since the subset of features a window burns keeps their
order. No step looks at neighbouring cells (no filter, no buffer on the raster: buffers are on the vectors), so no
halo beyond the tile window is needed. Three places needed care:

* the barrier band shares (``friction._band_cells``) pick candidate cells from each segment's bounding box clipped
  to the grid: on a window the box is clipped to the *full* grid first, and cell corners are computed from the full
  grid's origin (``Grid.offset``), so a segment beyond the window edge adds nothing;
* ``friction.footprint_coverage`` sums the areas of the footprints crossing a cell in footprint order (not in the
  order a spatial tree happens to return them), so a window's smaller tree sums the same terms in the same order;
* a reservoir too thin to hold a passable cell centre anywhere gets the cells it touches
  (``corridors.reservoir_sources``): a global question, answered after every window has been burned (the set of
  reservoirs holding a centre is gathered from the tile cores) by a second pass over the few tiles those reservoirs
  reach, which adds their touched cells.

The remaining difference is floating point inside GDAL's scanline for a polygon edge passing within ~1e-12 cell
of a cell centre (or a line within that distance of a cell corner), which rounding decides; the tests compare the
windowed inputs of the four CALL sous-trames with the whole-grid ones, array for array.

Features are chosen per window with spatial trees (bounding boxes within a margin of the widest barrier band plus
two cells), so a window burns only the features near it. CRS: the territory's (EPSG:2154); metres.
"""
from __future__ import annotations

import json
import logging

import geopandas as gpd
import numpy as np
import shapely

from tvb_tasks.errors import InvalidInputError

from . import costdistance as cd
from .common import Grid, rasterize_values
from .friction import Infrastructure, friction_raster
from .landuse import class_raster, habitat_patches
from .reservoirs import select_reservoirs
from .ruptures import barrier_lines
from .tiles import Tile, TilingConfig, _load_npz, check_memory, plan_record, put_tile_input, tile_grid
from .vectors import VectorContext

log = logging.getLogger(__name__)

__all__ = ["WindowScene", "plan_windows_to_store", "sous_trame_reservoirs", "window_rasters"]


def sous_trame_reservoirs(territory, v: VectorContext, sous_trame: str) -> gpd.GeoDataFrame:
    """The sous-trame's reservoirs (vector), as the engine selects them; their row = the global reservoir index."""
    patches = habitat_patches(territory, sous_trame, v.landuse_all, v.extra)
    reservoirs, _ = select_reservoirs(territory, sous_trame, patches, v.protected, v.always)
    return reservoirs


class _Layer:
    """Features with a spatial tree: :meth:`near` gives those whose bounding box meets a box, in their order."""

    def __init__(self, frame: gpd.GeoDataFrame, margin: float):
        self.frame = frame
        self.margin = margin
        self.tree = shapely.STRtree(np.asarray(frame.geometry.values, dtype=object)) if len(frame) else None

    def near(self, bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
        if self.tree is None:
            return self.frame
        x0, y0, x1, y1 = bounds
        m = self.margin
        idx = np.sort(self.tree.query(shapely.box(x0 - m, y0 - m, x1 + m, y1 + m)))
        return self.frame.iloc[idx]


class WindowScene:
    """What the windows of one sous-trame are rasterised from: the vector context and the sous-trame's reservoirs,
    with a spatial tree per layer (built once)."""

    def __init__(self, territory, v: VectorContext, sous_trame: str, reservoirs: gpd.GeoDataFrame | None = None, *,
                 potential: bool = False):
        self.territory, self.v, self.sous_trame = territory, v, sous_trame
        self.reservoirs = sous_trame_reservoirs(territory, v, sous_trame) if reservoirs is None else reservoirs
        cell = 2 * v.grid.res
        lines = v.infra.lines
        widest = float(np.nanmax(lines["width_m"].to_numpy(dtype=float), initial=0.0)) if len(lines) else 0.0
        extra = v.extra
        if len(extra) and "overlay" in extra.columns:       # overlays are burned by the friction, not as classes
            extra = extra[~extra["overlay"].astype(bool)]
        self.landuse = _Layer(v.landuse_all, cell)
        self.extra = _Layer(extra, cell)
        self.lines = _Layer(lines, widest + cell)
        # the potential (barrier-free) friction of the missing links (engine._missing_links): lines minus barriers
        self.free_lines = _Layer(lines.drop(index=barrier_lines(territory, v.infra).index), widest + cell) \
            if potential else None
        self.overlays = _Layer(v.infra.overlays if v.infra.overlays is not None else extra.iloc[:0], cell)
        self.res = _Layer(self.reservoirs.assign(_id=np.arange(1, len(self.reservoirs) + 1, dtype=np.int32)), cell)
        self.classes = list(territory.landuse.classes)


def _bounds(grid: Grid) -> tuple[float, float, float, float]:
    t, (h, w) = grid.transform, grid.shape
    return t.c, t.f + h * t.e, t.c + w * t.a, t.f


def window_rasters(scene: WindowScene, grid: Grid, *, with_lu: bool = False, potential: bool = False):
    """``(friction float32, extent mask, reservoir label int32)`` on ``grid`` (a window of the territory grid): the
    engine's friction (NaN outside the computation extent), its extent mask and the reservoir index + 1 of each
    passable cell whose centre is in a reservoir (0 elsewhere; thin reservoirs are added by the planner).
    ``with_lu``: the land-use friction (``friction_raster``'s second output, friction without infrastructures)
    as a fourth item. ``potential`` (a scene built with ``potential=True``): the potential friction of the missing
    links as the last item (friction rebuilt without the barrier lines, NaN where the friction is not passable:
    ``engine._missing_links``' ``potential``)."""
    v, territory = scene.v, scene.territory
    box = _bounds(grid)
    inside = rasterize_values([v.boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
    extent = rasterize_values([v.domain], [1], grid, fill=0, dtype="uint8").astype(bool) | inside
    classes, _ = class_raster(territory, scene.landuse.near(box), scene.extra.near(box), grid, inside, extent=extent)
    del inside
    infra = Infrastructure(scene.lines.near(box), scene.overlays.near(box))
    friction, lu = friction_raster(territory, scene.sous_trame, classes, scene.classes, infra, grid)
    extra: tuple = (lu,) if with_lu else ()
    if potential:
        if scene.free_lines is None:
            raise InvalidInputError("the scene was built without potential=True")
        free = Infrastructure(scene.free_lines.near(box), infra.overlays)
        pot, _ = friction_raster(territory, scene.sous_trame, classes, scene.classes, free, grid)
        extra += (np.where(extent & np.isfinite(friction), pot, np.nan).astype(np.float32),)
    del classes
    res = scene.res.near(box)
    lab = rasterize_values(res.geometry, res["_id"], grid, fill=0, dtype="int32")
    lab[~(extent & np.isfinite(friction))] = 0
    return (friction, extent, lab, *extra)


def _sources(lab: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) int64 of the labelled cells (row-major) and their reservoir index, checked as the kernel does."""
    rows, cols = np.nonzero(lab)
    if len(rows) == 0:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int32)
    src = np.stack([rows, cols], axis=1).astype(np.int64)
    return cd._check_sources(cost, np.zeros(1, dtype=np.bool_), False, src, (lab[rows, cols] - 1).astype(np.int64))


def _add_thin_reservoirs(store, prefix: str, scene: WindowScene, tiles: list[Tile], missing: np.ndarray) -> set[int]:
    """Second pass: reservoirs holding no passable cell centre anywhere get the passable cells they touch (as
    ``reservoir_sources``); rewrite the inputs of the tiles whose window they reach. Returns those tiles."""
    thin = scene.res.frame.iloc[missing - 1]
    layer = _Layer(thin, scene.res.margin)
    changed = set()
    for t in tiles:
        w0, w1, v0, v1 = t.window
        grid = scene.v.grid.window(w0, w1, v0, v1)
        near = layer.near(_bounds(grid))
        if near.empty:
            continue
        touched = rasterize_values(near.geometry, near["_id"], grid, fill=0, dtype="int32", all_touched=True)
        if not touched.any():
            continue
        inp = _load_npz(store.get_bytes(f"{prefix}/input/{t.index}.npz"))
        inside = rasterize_values([scene.v.boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
        extent = rasterize_values([scene.v.domain], [1], grid, fill=0, dtype="uint8").astype(bool) | inside
        lab = np.zeros(grid.shape, dtype=np.int32)
        lab[inp["src"][:, 0], inp["src"][:, 1]] = inp["labels"] + 1
        fill = (lab == 0) & (touched > 0) & extent & np.isfinite(inp["cost"])
        if not fill.any():
            continue
        lab[fill] = touched[fill]
        src, labels = _sources(lab, inp["cost"])
        put_tile_input(store, prefix, t.index, inp["cost"], src, labels, inp.get("mask"), inp.get("lu_friction"))
        changed.add(t.index)
    return changed


def plan_windows_to_store(store, prefix: str, territory, v: VectorContext, sous_trame: str, *,
                          tiling: TilingConfig, potential_prefix: str | None = None) -> list[int]:
    """Write the per-tile inputs and ``plan.json`` of one sous-trame under ``prefix``, computing the rasters window by
    window; return the tiles to run first (a source in their window), ``[]`` with nothing written when the
    sous-trame has no source cell. Same objects as ``plan_to_store`` on the whole-grid friction and sources (module
    doc); ``InvalidInputError`` (a ``ValueError``) if a tile task would exceed ``tiling.memory_limit_gib``.

    ``potential_prefix`` (a trame verte whose ``corridors.missing_links`` are enabled): also the inputs of the
    potential problem under that prefix (the potential friction of :func:`window_rasters`, the same sources) and
    its ``plan.json``, so that the same tile rounds give ``cost_from_reservoirs(potential, …)``; nothing is
    written there when no cell is a barrier cell (passable, friction > potential: the engine then has no missing
    link). Its first tiles are the same as the real problem's."""
    check_memory(tiling)
    knight = territory.corridors.neighbours == 16
    if tiling.overlap < (2 if knight else 1):
        raise InvalidInputError(f"overlap must be >= {2 if knight else 1} cells with {'16' if knight else '8'} neighbours")
    for old in store.list(f"{prefix}/"):
        store.delete(old)
    scene = WindowScene(territory, v, sous_trame, potential=potential_prefix is not None)
    if scene.reservoirs.empty:
        return []
    grid = v.grid
    tiles = tile_grid(grid.shape, tiling.tile_size, tiling.overlap)
    present: set[int] = set()
    start: set[int] = set()
    n_src = n_barrier = 0
    for t in tiles:
        w0, w1, v0, v1 = t.window
        friction, _, lab, lu, *pot = window_rasters(scene, grid.window(w0, w1, v0, v1), with_lu=True,
                                                    potential=potential_prefix is not None)
        core = lab[t.core_in_window]
        present.update(int(i) for i in np.unique(core[core > 0]))
        n_src += int(np.count_nonzero(core))
        src, labels = _sources(lab, friction)
        verte = territory.sous_trames[sous_trame].trame == "verte"       # corridors read the land-use friction
        put_tile_input(store, prefix, t.index, friction, src, labels, lu_w=lu if verte else None)
        if pot:
            n_barrier += int(np.count_nonzero(np.isfinite(pot[0]) & (friction > pot[0])))
            put_tile_input(store, str(potential_prefix), t.index, pot[0], src, labels)
        if len(src):
            start.add(t.index)
        del friction, lab, core, lu
    missing = np.setdiff1d(np.arange(1, len(scene.reservoirs) + 1), np.fromiter(present, dtype=np.int64))
    if len(missing):
        added = _add_thin_reservoirs(store, prefix, scene, tiles, missing)
        for i in added if potential_prefix is not None else ():      # the same sources for the potential problem
            real = _load_npz(store.get_bytes(f"{prefix}/input/{i}.npz"))
            pot_in = _load_npz(store.get_bytes(f"{potential_prefix}/input/{i}.npz"))
            put_tile_input(store, str(potential_prefix), i, pot_in["cost"], real["src"], real["labels"])
        start |= added
        n_src += len(added)       # only its sign matters below
    if n_src == 0:
        for old in store.list(f"{prefix}/"):
            store.delete(old)
        return []
    plan = plan_record(grid.shape, tiles, tiling=tiling, cell_size=cd._cell_sizes(grid.res), knight=knight,
                       max_cost=territory.sous_trames[sous_trame].max_cost)
    store.put_bytes(f"{prefix}/plan.json", json.dumps(plan).encode())
    if potential_prefix is not None:
        if n_barrier:
            store.put_bytes(f"{potential_prefix}/plan.json", json.dumps(plan).encode())
        else:
            for old in store.list(f"{potential_prefix}/"):
                store.delete(old)
    return sorted(start)
