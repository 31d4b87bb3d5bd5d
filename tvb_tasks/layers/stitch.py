"""The published cost and friction rasters of a tiled cost-distance, written tile by tile with bounded memory.

:func:`stitch_cost_cog` writes what the untiled engine publishes as ``<sous_trame>/cost.tif`` (``engine.
compute_sous_trame``: the accumulated cost as float32, nodata -1 for unreached, impassable and outside-territory
cells, cut to the territory's own grid, :func:`~tvb_tasks.layers.common.write_cog`'s COG profile and overviews)
straight from the per-tile cores in the store (:mod:`tvb_tasks.layers.tiles`), without holding the grid:

1. the territory window (its ``make_grid`` inside the computation grid) from the boundary's bounds alone;
2. each tile core's part of that window is read from the store, cast to float32, its cells outside the boundary
   set to nodata by rasterising the boundary on that window only (a sub-grid of the computation grid: same cells,
   same centre-inside rule as the whole-grid ``inside`` mask), and written into a tiled GeoTIFF (512-cell blocks,
   ZSTD) — one core at a time;
3. that file becomes the COG through rio-cogeo on disk (``in_memory=False``: block by block, overviews built by
   GDAL), the same call as ``write_cog``, so the profile, overview levels and tags are the same.

Memory: one core (float64, ``tile_size``² × 8 B: 32 MB at 2048, read from its store object) plus its float32 copy
and mask, plus the GDAL block cache (``cache_mb``), whatever the grid's size. A small cache costs little: blocks
of the intermediate file that straddle two rows of tiles are flushed before the second row completes them, then
re-read and written again (GDAL appends the new copy: the intermediate file ≈ 20 % larger with 64 MB than with
256 MB, same time; 256 MB would add ≈ 0.23 GB to the peak). Disk: the intermediate file and rio-cogeo's temporary
copy (both compressed) next to the output.

The same writer (:func:`stitch_cog`, fed one core at a time by a reader) gives the published ``friction.tif``
(:func:`stitch_friction_cog`: each tile input's friction window cut to its core, ``nearest`` overviews as the
engine's) and, in ``tvb_tasks.tiled.stage_tile_part``, the friction of a sous-trame that has no plan (no
reservoir), computed window by window from the vectors.

CRS and units: those of the grid (territory CRS, metres); costs in friction × m.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio

from tvb_tasks.errors import InvalidInputError

from .common import NODATA, Grid, cog_from_file, make_grid, rasterize_values, sub_grid, window_in
from .tiles import Tile, read_core_cost, read_plan

__all__ = ["BLOCK", "CACHE_MB", "stitch_cog", "stitch_cost_cog", "stitch_friction_cog", "territory_window"]

#: Block side (cells) of the intermediate GeoTIFF, and GDAL block cache (MB) while writing it and the COG.
BLOCK = 512
CACHE_MB = 64


def territory_window(grid: Grid, boundary) -> tuple[Grid, int, int]:
    """The territory's own grid (``make_grid`` of ``boundary`` at ``grid``'s resolution, as the engine publishes)
    and its top-left ``(row0, col0)`` in ``grid``; ``ValueError`` if it does not lie inside ``grid``."""
    tg = make_grid(boundary, grid.res, grid.crs)
    r0, c0 = window_in(grid, tg)
    if r0 < 0 or c0 < 0 or r0 + tg.shape[0] > grid.shape[0] or c0 + tg.shape[1] > grid.shape[1]:
        raise InvalidInputError(f"territory grid {tg.shape} at row {r0}, col {c0} is not inside the tiled grid "
                         f"{grid.shape}: the plan was made for another territory or resolution")
    return tg, r0, c0


def _window_values(acc: np.ndarray | None, shape: tuple[int, int], inside: np.ndarray | None
                   ) -> tuple[np.ndarray, int]:
    """float32 values of one window (nodata where not finite or not ``inside``) and its count of reached cells."""
    if acc is None:
        return np.full(shape, NODATA, dtype=np.float32), 0
    data = acc.astype(np.float32)
    ok = np.isfinite(data)
    if inside is not None:
        ok &= inside
    data[~ok] = NODATA
    return data, int(ok.sum())


def stitch_cog(tiles: list[Tile], read, grid: Grid, path: Path, *, boundary=None, description: str | None = None,
               overview_resampling: Literal["nearest", "average", "mode"] = "nearest", block: int = BLOCK,
               cache_mb: int = CACHE_MB) -> int:
    """Write a float32 COG at ``path`` from per-core values, one core at a time; the number of finite cells written
    (inside the territory when ``boundary`` is given).

    Parameters
    ----------
    tiles : the tiles covering ``grid`` (their ``core`` rectangles, row/col of ``grid``).
    read : ``read(tile)`` → the core's values (``core``-shaped array, any float dtype; NaN / inf = nodata) or
        ``None`` (nodata everywhere): the accumulated cost of the rounds, the friction of the tile inputs…
    grid : the computation grid the tiles cut (territory CRS, metres).
    boundary : territory outline (shapely, ``grid``'s CRS): the raster is cut to its ``make_grid`` and cells whose
        centre is outside it are nodata, as ``engine._territory_raster``. ``None``: the whole grid, no mask.
    description : band description; overview_resampling : as :func:`~tvb_tasks.layers.common.write_cog`'s.
    block, cache_mb : block side of the intermediate GeoTIFF (multiple of 16) and GDAL cache (MB).
    """
    out_grid, r0, c0 = (grid, 0, 0) if boundary is None else territory_window(grid, boundary)
    H, W = out_grid.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": H, "width": W, "crs": out_grid.crs,
               "transform": out_grid.transform, "nodata": NODATA, "tiled": True, "blockxsize": block,
               "blockysize": block, "compress": "zstd", "zstd_level": 1}
    reached = 0
    with tempfile.TemporaryDirectory(prefix="tvb_stitch_", dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.tif"
        with rasterio.Env(GDAL_CACHEMAX=int(cache_mb) * 2**20), rasterio.open(raw, "w", **profile) as dst:
            if description:
                dst.set_band_description(1, description)
            for t in tiles:
                tr0, tr1, tc0, tc1 = t.core
                a0, a1, b0, b1 = max(tr0, r0), min(tr1, r0 + H), max(tc0, c0), min(tc1, c0 + W)
                if a1 <= a0 or b1 <= b0:
                    continue
                values = read(t)
                inside = None
                if values is not None:
                    values = values[a0 - tr0:a1 - tr0, b0 - tc0:b1 - tc0]
                    if boundary is not None:
                        sub = sub_grid(grid, a0, b0, a1 - a0, b1 - b0)
                        inside = rasterize_values([boundary], [1], sub, fill=0, dtype="uint8").astype(bool)
                data, n = _window_values(values, (a1 - a0, b1 - b0), inside)
                reached += n
                dst.write(data, 1, window=((a0 - r0, a1 - r0), (b0 - c0, b1 - c0)))
                del values, inside, data
        cog_from_file(raw, path, overview_resampling=overview_resampling, in_memory=False, cache_mb=cache_mb)
    return reached


def _checked_plan(store, prefix: str, grid: Grid) -> list[Tile]:
    shape, tiles = read_plan(store, prefix)
    if shape != tuple(grid.shape):
        raise InvalidInputError(f"grid {grid.shape} is not the plan's {shape}")
    return tiles


def stitch_cost_cog(store, prefix: str, grid: Grid, path: Path, *, boundary=None, description: str | None = None,
                    block: int = BLOCK, cache_mb: int = CACHE_MB) -> int:
    """Write the stitched accumulated cost of the tiles under ``prefix`` as a COG at ``path`` (:func:`stitch_cog`
    of the cores the rounds left, overviews ``average`` as the engine's ``cost.tif``); the number of reached cells
    written (finite cost inside the territory). ``grid``: the computation grid the tiles were planned on (its shape
    must be the plan's)."""
    tiles = _checked_plan(store, prefix, grid)
    return stitch_cog(tiles, lambda t: read_core_cost(store, prefix, t), grid, path, boundary=boundary,
                      description=description, overview_resampling="average", block=block, cache_mb=cache_mb)


def stitch_friction_cog(store, prefix: str, grid: Grid, path: Path, *, boundary=None,
                        description: str | None = None, block: int = BLOCK, cache_mb: int = CACHE_MB) -> int:
    """Write the friction the tiles under ``prefix`` were planned with (each tile input's ``cost`` window, cut to
    its core) as a COG at ``path`` (:func:`stitch_cog`, overviews ``nearest``: the engine's ``friction.tif``); the
    number of passable cells written. Memory: one tile input, not the grid."""
    tiles = _checked_plan(store, prefix, grid)

    def read(t: Tile) -> np.ndarray:
        with np.load(io.BytesIO(store.get_bytes(f"{prefix}/input/{t.index}.npz"))) as z:
            return z["cost"][t.core_in_window]

    return stitch_cog(tiles, read, grid, path, boundary=boundary, description=description, block=block,
                      cache_mb=cache_mb)
