"""Shared helpers of the layers engine: reading source snapshots, the analysis grid, rasterizing, writing COGs.

Everything here works in the territory CRS (EPSG:2154 for the CALL), lengths in metres, areas in hectares.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from affine import Affine
from rasterio import features
from shapely import make_valid

from tvb_tasks.errors import DeterministicError

M2_PER_HA = 10_000.0
NODATA = -1.0  # nodata of every float32 raster written by the engine (friction >= 1 and cost >= 0)

__all__ = [
    "M2_PER_HA",
    "NODATA",
    "Grid",
    "LayerInputError",
    "cog_from_file",
    "empty_frame",
    "lines_only",
    "load_boundary",
    "make_grid",
    "polygons_only",
    "rasterize_values",
    "read_layer",
    "read_role",
    "read_source",
    "sub_grid",
    "window_in",
    "write_cog",
]


class LayerInputError(DeterministicError, ValueError):
    """An input layer is missing or unusable; the message names the source / file and the problem."""


@dataclass(frozen=True)
class Grid:
    """The analysis raster: north-up, square cells of ``res`` metres, ``shape`` = (rows, cols).

    A *window* of a grid (:meth:`window`) has the same cells: its origin is moved by whole cells, ``offset`` is the
    (row, col) of its first cell in the full grid and ``full_shape`` the full grid's shape (``None`` for a full
    grid); rasters computed on it are the full grid's rasters cut to the window (``tvb_tasks.layers.windows``).
    """

    transform: Affine
    shape: tuple[int, int]
    crs: str
    res: float
    offset: tuple[int, int] = (0, 0)
    full_shape: tuple[int, int] | None = None

    def window(self, row0: int, row1: int, col0: int, col1: int) -> Grid:
        """The window of rows ``row0:row1`` and columns ``col0:col1`` (half-open) of this grid."""
        t = self.transform
        return Grid(Affine(t.a, 0.0, t.c + col0 * t.a, 0.0, t.e, t.f + row0 * t.e), (row1 - row0, col1 - col0),
                    self.crs, self.res, (self.offset[0] + row0, self.offset[1] + col0), self.full_shape or self.shape)

    def cell_centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (x, y) of the centres of cells (rows, cols)."""
        x = self.transform.c + (np.asarray(cols) + 0.5) * self.transform.a
        y = self.transform.f + (np.asarray(rows) + 0.5) * self.transform.e
        return x, y


# --- reading ---------------------------------------------------------------------------------------------------
def read_layer(path: Path | str, layer: str | None = None, *, source: str | None = None) -> gpd.GeoDataFrame:
    """Read one vector layer: GeoParquet (``.parquet``) or any OGR file (``.gpkg``, ``.geojson``, ``.fgb``, ``.shp``).

    A multi-layer file needs ``layer``. ``source`` (the YAML source name) only improves error messages.
    """
    p = Path(path)
    what = f"source {source!r} ({p})" if source else str(p)
    if not p.exists():
        raise LayerInputError(f"{what}: file not found")
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(p)
        else:
            if layer is None:
                layers = [name for name, _ in pyogrio.list_layers(p)]
                if len(layers) > 1:
                    raise LayerInputError(f"{what}: file holds several layers {layers}; the source needs 'layer'")
            gdf = pyogrio.read_dataframe(p, layer=layer)
    except LayerInputError:
        raise
    except Exception as exc:  # pyogrio / pyarrow errors -> one clear message
        raise LayerInputError(f"{what}: cannot read layer {layer!r}: {exc}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise LayerInputError(f"{what}: no geometry column")
    if gdf.crs is None:
        raise LayerInputError(f"{what}: no CRS")
    return gdf


def read_source(territory, inputs: dict[str, Path], name: str) -> gpd.GeoDataFrame:
    """The snapshot of source ``name`` from ``inputs`` (name → local path), in the territory CRS, valid geometries."""
    if name not in inputs:
        raise LayerInputError(f"source {name!r}: no input file given (inputs has {sorted(inputs)})")
    cfg = territory.sources.get(name)
    path = Path(inputs[name])
    layer = cfg.layer if cfg is not None and path.suffix.lower() not in (".parquet", ".geoparquet") else None
    gdf = read_layer(path, layer, source=name)
    if cfg is not None:   # a raw file (not a normalised snapshot): apply the source's column mapping / constants
        rename = {src: dst for dst, src in cfg.columns.items() if dst not in gdf.columns and src in gdf.columns}
        gdf = gdf.rename(columns=rename)
        for col, value in cfg.constant_columns.items():
            if col not in gdf.columns:
                gdf[col] = value
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].copy()
    if str(gdf.crs) != territory.crs and not gdf.crs.equals(territory.crs):
        gdf = gdf.to_crs(territory.crs)
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf.loc[invalid, gdf.geometry.name] = make_valid(gdf.geometry[invalid].values)
    gdf["source"] = name
    return gdf.reset_index(drop=True)


def read_role(territory, inputs: dict[str, Path], role: str, *, required: bool = True) -> gpd.GeoDataFrame:
    """All sources of ``role`` present in ``inputs``, concatenated (e.g. several protected-area sources)."""
    names = [n for n in territory.sources_by_role(role) if n in inputs]
    if not names:
        if required:
            raise LayerInputError(f"no input for role {role!r} (sources with that role: "
                                  f"{sorted(territory.sources_by_role(role))}, inputs: {sorted(inputs)})")
        return empty_frame(territory.crs)
    frames = [read_source(territory, inputs, n) for n in names]
    frames = [f for f in frames if len(f)] or frames[:1]
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry=frames[0].geometry.name,
                            crs=territory.crs)


@contextlib.contextmanager
def unsynced_gpkg_writes() -> Iterator[None]:
    """GeoPackages written in the block skip SQLite's fsync (GDAL's ``OGR_SQLITE_SYNCHRONOUS=OFF``): ≈ 35 % less
    time per layer (14 against 22 ms for a small layer on this VM), a dozen layers per engine run.

    For build files only: the GeoPackages of a run are re-read, hashed and stored (the store syncs what it
    writes, and a release lists their sha256) before anything refers to them; a crash mid-write fails the task,
    whose retry writes them again. The option is GDAL's process-wide setting, restored on exit."""
    old = pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS")
    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": old})


_EMPTY: dict[tuple[str, tuple[str, ...]], gpd.GeoDataFrame] = {}


def empty_frame(crs: str, columns: Iterable[str] = ()) -> gpd.GeoDataFrame:
    """An empty GeoDataFrame with the given columns and a geometry column (a copy of one built once per CRS and
    columns: building it parses the CRS, ≈ 1 ms, and the engine asks for ≈ 20 per sous-trame)."""
    key = (str(crs), tuple(columns))
    if key not in _EMPTY:
        _EMPTY[key] = gpd.GeoDataFrame({c: [] for c in key[1]}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return _EMPTY[key].copy()


def load_boundary(territory, inputs: dict[str, Path]):
    """The territory outline (one valid (Multi)Polygon, territory CRS) from the ``boundary`` source."""
    gdf = read_source(territory, inputs, territory.boundary.source)
    gdf = polygons_only(gdf)
    if gdf.empty:
        raise LayerInputError(f"source {territory.boundary.source!r}: boundary has no polygon")
    return make_valid(gdf.union_all())


# --- geometry filters -------------------------------------------------------------------------------------------
def clip_to(gdf: gpd.GeoDataFrame, mask) -> gpd.GeoDataFrame:
    """``gdf.clip(mask)`` (same rows, same order), intersecting only the features that cross the mask's outline.

    ``GeoDataFrame.clip`` intersects every feature it finds with the whole mask polygon, at a cost in the mask's
    vertices per feature: for a region's land use (hundreds of thousands of polygons) against a buffered,
    detailed outline, most of the loading time (79 of 86 s at 16 × CALL). A feature the mask contains properly
    (prepared predicate, fast) is its own intersection and is kept as it is.

    Parameters
    ----------
    gdf : GeoDataFrame
        Features in the mask's CRS (EPSG:2154 for territories).
    mask : shapely Polygon or MultiPolygon
        Clipping polygon, same CRS.
    """
    import shapely

    if gdf.empty:
        return gdf.clip(mask)
    sub = gdf.iloc[gdf.sindex.query(mask, predicate="intersects")]
    geoms = sub.geometry.values
    shapely.prepare(mask)
    crossing = np.asarray(~shapely.contains_properly(mask, np.asarray(geoms)) & (sub.geom_type != "Point").to_numpy())
    if not crossing.any():
        return sub
    out = sub.copy()
    out.loc[crossing, out.geometry.name] = geoms[crossing].intersection(mask)
    return out


def polygons_only(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep the polygonal parts (GeometryCollections left by clipping are reduced to their polygons)."""
    return _keep_dim(gdf, 2)


def lines_only(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep the linear parts."""
    return _keep_dim(gdf, 1)


_MULTI_TYPES = ("MultiPoint", "MultiLineString", "MultiPolygon", "GeometryCollection")


def _keep_dim(gdf: gpd.GeoDataFrame, dim: int) -> gpd.GeoDataFrame:
    if gdf.empty:
        return gdf
    if gdf.geom_type.isin(_MULTI_TYPES).any():     # explode only when there are parts (≈ 3 ms even when none)
        gdf = gdf.explode(index_parts=False)
    types = gdf.geom_type
    want = ("Polygon",) if dim == 2 else ("LineString", "LinearRing")
    gdf = gdf[types.isin(want) & ~gdf.geometry.is_empty]
    return gdf.reset_index(drop=True)


# --- raster ----------------------------------------------------------------------------------------------------
def make_grid(boundary, res: float, crs: str) -> Grid:
    """A grid of ``res``-metre cells covering the boundary, origin snapped to multiples of ``res``."""
    xmin, ymin, xmax, ymax = boundary.bounds
    x0 = math.floor(xmin / res) * res
    y1 = math.ceil(ymax / res) * res
    cols = int(math.ceil((xmax - x0) / res))
    rows = int(math.ceil((y1 - ymin) / res))
    return Grid(Affine(res, 0.0, x0, 0.0, -res, y1), (rows, cols), crs, float(res))


def rasterize_values(geoms, values, grid: Grid, *, fill: float = 0, dtype: str = "float32",
                     all_touched: bool = False, merge_alg: str = "replace") -> np.ndarray:
    """Burn ``values`` of ``geoms`` on the grid (later shapes win with ``replace``; ``add`` sums)."""
    shapes = [(g, v) for g, v in zip(geoms, values) if g is not None and not g.is_empty]
    if not shapes:
        return np.full(grid.shape, fill, dtype=dtype)
    alg = features.MergeAlg.add if merge_alg == "add" else features.MergeAlg.replace
    return features.rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=fill,
                              dtype=dtype, all_touched=all_touched, merge_alg=alg)


def window_in(outer: Grid, inner: Grid) -> tuple[int, int]:
    """(row0, col0) of ``inner``'s top-left cell in ``outer`` (same resolution, origins on the same cell lattice:
    grids of :func:`make_grid`), from the transforms alone."""
    return (int(round((outer.transform.f - inner.transform.f) / outer.res)),
            int(round((inner.transform.c - outer.transform.c) / outer.res)))


def sub_grid(grid: Grid, row0: int, col0: int, rows: int, cols: int) -> Grid:
    """The window (``row0``, ``col0``, ``rows``, ``cols``) of ``grid`` as a grid of its own (same cells)."""
    return Grid(grid.transform @ Affine.translation(col0, row0), (rows, cols), grid.crs, grid.res)


def write_cog(array: np.ndarray, grid: Grid, path: Path, *, nodata: float = NODATA,
              overview_resampling: Literal["nearest", "average", "mode"] = "nearest",
              description: str | None = None) -> Path:
    """Write a float32 Cloud-Optimized GeoTIFF (DEFLATE + predictor 3, 256-px tiles, internal overviews).

    Cells that are NaN / inf in ``array`` are written as ``nodata``.
    """
    data = np.asarray(array, dtype=np.float32).copy()
    data[~np.isfinite(data)] = nodata
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": grid.shape[0],
               "width": grid.shape[1], "crs": grid.crs, "transform": grid.transform, "nodata": nodata}
    with tempfile.TemporaryDirectory(prefix="tvb_cog_") as tmp:
        raw = Path(tmp) / "raw.tif"
        with rasterio.open(raw, "w", **profile) as dst:
            dst.write(data, 1)
            if description:
                dst.set_band_description(1, description)
        cog_from_file(raw, path, nodata=nodata, overview_resampling=overview_resampling, in_memory=True)
    return path


def cog_from_file(raw: Path, path: Path, *, nodata: float = NODATA,
                  overview_resampling: Literal["nearest", "average", "mode"] = "nearest", in_memory: bool = False,
                  cache_mb: int | None = None) -> Path:
    """The COG of :func:`write_cog` (same profile, overviews, tags) from a one-band float32 GeoTIFF ``raw``.

    ``in_memory=False`` streams it block by block through a temporary file next to ``path`` (memory: the GDAL
    block cache, ``cache_mb`` MB if given, whatever the raster's size)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    dst_profile = cog_profiles.get("deflate")
    dst_profile.update({"blockxsize": 256, "blockysize": 256, "predictor": 3})
    path = Path(path)
    config = {"GDAL_CACHEMAX": int(cache_mb) * 2**20} if cache_mb else None  # rasterio: bytes
    with tempfile.TemporaryDirectory(prefix="tvb_cog_", dir=None if in_memory else path.parent) as tmp:
        out = Path(tmp) / "cog.tif"
        cog_translate(str(raw), str(out), dst_profile, nodata=nodata, overview_resampling=overview_resampling,
                      in_memory=in_memory, quiet=True, forward_band_tags=True, config=config)
        shutil.move(str(out), path)
    return path
