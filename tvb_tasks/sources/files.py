"""Read local vector files (GeoPackage, GeoJSON, Shapefile, zipped Shapefile, GeoParquet, CSV with coordinates).

File sources are read as they are: no reprojection (validation checks the CRS). Column mapping follows the YAML
(``columns: {target: source}``, ``constant_columns: {name: value}``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from ..config import columns_hint
from .errors import SourceError

log = logging.getLogger("tvb_tasks.sources.files")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")


def _read_csv_points(path: Path, *, x_column: str | None, y_column: str | None, wkt_column: str | None,
                     crs: str | None, sep: str | None, what: str) -> gpd.GeoDataFrame:
    if not (wkt_column or (x_column and y_column)):
        raise SourceError(f"{what}: a CSV source needs 'x_column' and 'y_column' (or 'wkt_column')")
    try:
        df = pd.read_csv(path, sep=sep or ("\t" if path.suffix == ".tsv" else ","), dtype_backend="numpy_nullable")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"{what}: not a readable CSV ({exc})") from None
    needed = [wkt_column] if wkt_column else [x_column, y_column]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SourceError(f"{what}: CSV has no column(s) {missing}{columns_hint(df.columns)}")
    if wkt_column:
        try:
            geometry = gpd.GeoSeries.from_wkt(df.pop(wkt_column).astype(object), on_invalid="raise")
        except Exception as exc:  # noqa: BLE001 - shapely raises GEOSException subclasses
            raise SourceError(f"{what}: invalid WKT in column {wkt_column!r} ({exc})") from None
    else:
        x = pd.to_numeric(df.pop(x_column), errors="coerce")
        y = pd.to_numeric(df.pop(y_column), errors="coerce")
        bad = (x.isna() | y.isna()).to_numpy()
        if bad.any():
            rows = [int(i) + 2 for i in bad.nonzero()[0][:5]]   # 1-based, after the header line
            raise SourceError(f"{what}: {int(bad.sum())} row(s) without numeric {x_column}/{y_column} "
                              f"(e.g. lines {rows})")
        geometry = gpd.points_from_xy(x.astype(float), y.astype(float))
    return gpd.GeoDataFrame(df, geometry=geometry, crs=crs)


def read_vector(path: str | Path, *, layer: str | None = None, what: str | None = None,
                x_column: str | None = None, y_column: str | None = None, wkt_column: str | None = None,
                crs: str | None = None, sep: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file as a GeoDataFrame, in its own CRS.

    GDAL formats through pyogrio (``.zip`` holding a Shapefile is read through ``/vsizip/``), GeoParquet through
    geopandas, CSV with ``x_column``/``y_column`` or ``wkt_column``. ``crs`` is assigned only when the file has none
    (CSV, Shapefile without .prj). Raises :class:`SourceError` naming the file, layer and the problem.
    """
    path = Path(path)
    what = what or str(path)
    if not path.exists():
        raise SourceError(f"{what}: no such file {path}")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        gdf = _read_csv_points(path, x_column=x_column, y_column=y_column, wkt_column=wkt_column, crs=crs,
                               sep=sep, what=what)
    elif suffix in PARQUET_SUFFIXES:
        try:
            gdf = gpd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow and geopandas raise many types on a bad file
            raise SourceError(f"{what}: not a readable GeoParquet file ({exc})") from None
    else:
        source = f"/vsizip/{path}" if suffix == ".zip" else str(path)
        try:
            layers = [row[0] for row in pyogrio.list_layers(source)]
        except pyogrio.errors.DataSourceError as exc:
            raise SourceError(f"{what}: not a readable vector file ({exc})") from None
        if layer is not None and layer not in layers:
            raise SourceError(f"{what}: no layer {layer!r} (layers: {', '.join(layers) or 'none'})")
        if layer is None and len(layers) > 1:
            raise SourceError(f"{what}: several layers ({', '.join(layers)}): say which one with 'layer'")
        try:
            gdf = pyogrio.read_dataframe(source, layer=layer)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise SourceError(f"{what}: cannot read layer {layer!r} ({exc})") from None
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise SourceError(f"{what}: layer {layer!r} has no geometry")
    if gdf.crs is None and crs:
        gdf = gdf.set_crs(crs)
    log.info("%s: read %d features (layer %s)", what, len(gdf), layer or "default")
    return gdf


def apply_columns(gdf: gpd.GeoDataFrame, columns: Mapping[str, str] | None,
                  constant_columns: Mapping[str, Any] | None, *, what: str,
                  value_maps: Mapping[str, Mapping[Any, Any]] | None = None) -> gpd.GeoDataFrame:
    """Rename ``columns`` (target ← source), recode ``value_maps`` and add ``constant_columns``; others are kept.

    A target that already exists is replaced by the mapped source column. ``value_maps`` is ``{column: {source
    value: target value}}`` applied after the renames (values not listed are kept as they are and counted in a
    warning). Raises :class:`SourceError` naming the missing columns and the available ones.
    """
    columns = dict(columns or {})
    missing = sorted({src for src in columns.values() if src not in gdf.columns})
    if missing:
        raise SourceError(f"{what}: column(s) {missing} named in 'columns' not found "
                          f"(columns: {[c for c in gdf.columns if c != gdf.geometry.name]})")
    out = gdf.copy()
    for target, src in columns.items():
        if target != src:
            out[target] = gdf[src]
    drop = [src for src in set(columns.values()) if src not in columns]
    out = out.drop(columns=drop)
    for column, mapping in (value_maps or {}).items():
        if column not in out.columns:
            raise SourceError(f"{what}: 'value_maps' names column {column!r}, not in the layer "
                              f"(columns: {[c for c in out.columns if c != out.geometry.name]})")
        lookup = {str(k): v for k, v in mapping.items()}
        original = out[column]
        mapped = original.map(lambda v, lookup=lookup: lookup.get(str(v), v) if v is not None and v == v else v)
        unmapped = original.notna() & ~original.astype(str).isin(list(lookup))
        if unmapped.any():
            log.warning("%s: %d value(s) of %r not in value_maps, kept as they are (e.g. %s)", what,
                        int(unmapped.sum()), column, sorted(original[unmapped].astype(str).unique())[:5])
        out[column] = mapped.infer_objects()
    for name, value in (constant_columns or {}).items():
        out[name] = value
    return out
