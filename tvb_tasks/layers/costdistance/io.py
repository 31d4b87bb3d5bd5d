"""File level of the exact cost-distance: a cost GeoTIFF and a CSV of source points in, an
accumulated-cost GeoTIFF out (:func:`cost_distance_file`, the ``tvb cost-distance`` command)."""

from __future__ import annotations

import math
import time

import numpy as np

from tvb_tasks.errors import InvalidInputError

from .api import _passable, _prepare_cost, accumulated_cost
from .kernels import _jit


def _read_sources_csv(path: str, transform, shape, cost, mask, has_mask: bool, cost_tif: str):
    """Parse ``x,y`` (map coordinates) -> (N, 2) row/col with clear errors."""
    import csv

    H, W = shape
    rows: list[tuple[int, int]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InvalidInputError(f"{path}: empty file (expected a header 'x,y')") from None
        names = [h.strip().lower() for h in header]
        if "x" not in names or "y" not in names:
            raise InvalidInputError(f"{path}:1: header must contain columns 'x' and 'y', got {header}")
        ix, iy = names.index("x"), names.index("y")
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not f.strip() for f in rec):
                continue
            try:
                x = float(rec[ix])
                y = float(rec[iy])
            except (IndexError, ValueError):
                raise InvalidInputError(f"{path}:{lineno}: cannot read x,y from {rec}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise InvalidInputError(f"{path}:{lineno}: non-finite coordinates ({x}, {y})")
            fc = (x - transform.c) / transform.a  # no rotation (checked by the caller)
            fr = (y - transform.f) / transform.e
            c, r = math.floor(fc), math.floor(fr)
            if not (0 <= r < H and 0 <= c < W):
                raise InvalidInputError(
                    f"{path}:{lineno}: source ({x}, {y}) is outside the raster {cost_tif} "
                    f"(row={r}, col={c}, raster {H} x {W})")
            if not _passable(cost, mask, has_mask, r, c):
                v = cost[r, c]
                why = "nodata" if (has_mask and mask[r, c]) else f"barrier (cost={v!r})"
                raise InvalidInputError(
                    f"{path}:{lineno}: source ({x}, {y}) falls on a {why} cell of {cost_tif} "
                    f"(row={r}, col={c})")
            rows.append((r, c))
    if not rows:
        raise InvalidInputError(f"{path}: no source point")
    return np.array(rows, dtype=np.int64)


@_jit(nogil=True)
def _to_output(acc, out, nodata):
    """float64 accumulated cost -> float32 ``out`` with ``nodata`` for NaN/+inf, in one
    pass; returns (number of finite cells, largest finite value or NaN)."""
    n = 0
    hi = -np.inf
    for i in range(acc.size):
        v = acc[i]
        if v - v == 0.0:  # finite
            out[i] = np.float32(v)
            n += 1
            if v > hi:
                hi = v
        else:
            out[i] = nodata
    return n, (hi if n > 0 else np.nan)


#: GeoTIFF creation options of :func:`cost_distance_file`: ZSTD level 1 with horizontal
#: differencing (lossless) costs about 0.1 s of CPU for 3100 x 3100 cells, against 0.6 s
#: for DEFLATE with the floating-point predictor (the former default), for a file about
#: 10 % larger (27 vs 24 MB on ``bench/cost_distance.py``'s raster; ZSTD + predictor 3:
#: 24 MB for 0.18 s); GDAL compresses the 256 x 256 blocks on every core (``NUM_THREADS``).
OUTPUT_OPTIONS = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "zstd",
                  "zstd_level": 1, "predictor": 2, "BIGTIFF": "IF_SAFER", "num_threads": "ALL_CPUS"}


def _read_cost(cost_tif: str):
    """(cost band 1, nodata mask or None, transform, crs) with one decoding of the file
    (multi-threaded): the mask comes from the nodata value when that is the only mask."""
    import rasterio
    from rasterio.enums import MaskFlags

    with rasterio.open(cost_tif, num_threads="ALL_CPUS") as ds:
        tr = ds.transform
        if tr.b != 0 or tr.d != 0:
            raise InvalidInputError(f"{cost_tif}: rotated/sheared geotransform is not supported")
        cost = ds.read(1)
        flags = ds.mask_flag_enums[0]
        if MaskFlags.all_valid in flags:
            mask = None
        elif flags == [MaskFlags.nodata]:
            nd = ds.nodata
            mask = np.isnan(cost) if (cost.dtype.kind == "f" and np.isnan(nd)) else cost == nd
        else:
            mask = ds.read_masks(1) == 0
        crs = ds.crs
    if mask is not None and cost.dtype.kind == "f":
        mask |= ~np.isfinite(cost)
    if mask is not None and not mask.any():
        mask = None
    return cost, mask, tr, crs


def cost_distance_file(
    cost_tif: str,
    sources_csv: str,
    out_tif: str,
    *,
    knight: bool = False,
    max_cost: float | None = None,
    cell_size: float | None = None,
) -> dict:
    """Accumulated cost GeoTIFF from a cost GeoTIFF and a CSV of source points.

    * ``cost_tif``: band 1 is the cost per map unit; its nodata / mask cells, NaN
      and values <= 0 are barriers. Rotated/sheared transforms are refused.
    * ``sources_csv``: header with columns ``x,y`` (other columns ignored), map
      coordinates in the raster's CRS; a point falls in the cell containing it.
      A point outside the raster or on a nodata/barrier cell raises ``ValueError``
      naming the file and line.
    * ``cell_size``: ``None`` (default) = the pixel size of the raster (output in
      cost x map units, e.g. cost x metres); ``1`` = per-cell units like GRASS
      ``r.cost``. ``max_cost`` is in the same units as the output.
    * ``out_tif``: float32 GeoTIFF, same CRS/transform, tiled 256 x 256, ZSTD
      (:data:`OUTPUT_OPTIONS`), ``nodata = -1`` for barriers, unreachable cells and
      cells beyond ``max_cost``.

    The kernels are loaded from the numba cache in a second thread while GDAL
    decodes the input (the first numba call of a process costs about a second).

    Returns ``{"cells", "reached", "sources", "seconds", "max_finite_cost",
    "cell_size", "out"}`` (``seconds`` = whole call, I/O included).
    """
    import threading

    import rasterio

    t0 = time.perf_counter()
    loader = threading.Thread(target=_load_kernels, args=(knight,), daemon=True)
    loader.start()
    try:
        cost, mask, tr, crs = _read_cost(cost_tif)
    finally:
        loader.join()
    shape = cost.shape
    cs: float | tuple[float, float] = (abs(tr.e), abs(tr.a)) if cell_size is None else float(cell_size)
    cost, mask_p, has_mask = _prepare_cost(cost, mask)
    src = _read_sources_csv(sources_csv, tr, shape, cost, mask_p, has_mask, cost_tif)
    acc = accumulated_cost(cost, src, cell_size=cs, knight=knight, max_cost=max_cost,
                           nodata_mask=mask)
    del cost, mask, mask_p
    out = np.empty(shape, dtype=np.float32)
    n_reached, max_finite = _to_output(acc.reshape(-1), out.reshape(-1), np.float32(-1.0))
    del acc
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": shape[0],
               "width": shape[1], "crs": crs, "transform": tr, "nodata": -1.0, **OUTPUT_OPTIONS}
    with rasterio.open(out_tif, "w", **profile) as dst:
        dst.write(out, 1)
    return {
        "cells": int(shape[0] * shape[1]),
        "reached": int(n_reached),
        "sources": int(src.shape[0]),
        "seconds": round(time.perf_counter() - t0, 3),
        "max_finite_cost": float(max_finite),
        "cell_size": cs,
        "out": str(out_tif),
    }


def _load_kernels(knight: bool) -> None:
    """Load (or compile) the kernels a file run uses, on a tiny raster."""
    c = np.ones((5, 5), dtype=np.float32)
    accumulated_cost(c, np.array([[2, 2]]), knight=knight)
    _to_output(np.zeros(1), np.zeros(1, np.float32), np.float32(-1.0))
