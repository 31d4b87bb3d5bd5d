"""Inputs of the validation gate as frames GX can validate: a layer (GeoParquet snapshot or GeoPackage layer) as a
pandas frame with shapely geometries in ``geometry`` and its CRS in ``__crs__``; the run-time values the suites
compare it with (nomenclature codes, land-use classes and areas, the territory outline).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from tvb_tasks.config import Territory


CRS_COLUMN = "__crs__"            # same names as in expectations.py (not imported here: it imports GX)
GEOMETRY_COLUMN = "geometry"
LANDUSE_CLASS_COLUMN = "__landuse_class__"
OUTLINE_SIMPLIFY_M = 1.0      # the outline passed to GX is simplified by this; the buffers are widened by as much


# --- inputs -> frames ----------------------------------------------------------------------------------------------
def crs_string(crs: Any) -> str:
    """``EPSG:xxxx`` when the CRS has an authority code, else its WKT; ``""`` when unknown."""
    if crs is None:
        return ""
    return crs.to_string() if hasattr(crs, "to_string") else str(crs)


def to_frame(gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """Plain pandas frame for GX: attributes, shapely geometries in ``geometry``, the layer CRS in ``__crs__``.

    The index is reset to row positions, so GX's unexpected index lists are positions into ``gdf``.
    """
    geometry_name = gdf.geometry.name
    attrs = pd.DataFrame(gdf.drop(columns=[geometry_name])).reset_index(drop=True)
    attrs = attrs.drop(columns=[c for c in (GEOMETRY_COLUMN, CRS_COLUMN) if c in attrs.columns])
    attrs[GEOMETRY_COLUMN] = np.asarray(gdf.geometry.values, dtype=object)
    attrs[CRS_COLUMN] = crs_string(gdf.crs)
    return attrs


def read_snapshot(path: Path) -> gpd.GeoDataFrame:
    """A GeoParquet snapshot; raises ``ValueError`` naming the file when it is missing or not GeoParquet."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"snapshot {path} does not exist")
    try:
        return gpd.read_parquet(path)
    except Exception as exc:
        raise InvalidInputError(f"snapshot {path} is not a readable GeoParquet file: {exc}") from exc


def snapshot_row_count(path: Path) -> int:
    """Number of rows of a (Geo)Parquet file from its metadata (no data read)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


@lru_cache(maxsize=8)
def _nomenclature_codes(path: str, column: str, mtime_ns: int) -> tuple[str, ...]:
    # errors name the file and the column, never its content (it may be any file, e.g. /etc/passwd)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if column not in (reader.fieldnames or []):
                raise InvalidInputError(f"nomenclature {path}: no column {column!r} in its header line (expected a CSV "
                                        f"with a {column!r} column: check nomenclature.file and code_column)")
            codes = sorted({(row[column] or "").strip() for row in reader} - {""})
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"nomenclature {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                                "CSV") from None
    except csv.Error as exc:
        line = getattr(exc, "line_num", "?")
        raise InvalidInputError(f"nomenclature {path}: not a readable CSV (line {line})") from None
    if not codes:
        raise InvalidInputError(f"nomenclature {path}: column {column!r} holds no code")
    return tuple(codes)


def nomenclature_codes(territory: Territory) -> list[str]:
    """Valid land-use codes: the ``nomenclature.code_column`` of the territory's nomenclature CSV."""
    path = territory.resolve_path(territory.nomenclature.file)
    if not path.exists():
        raise InvalidInputError(f"nomenclature file {path} (territory {territory.id}) does not exist")
    from ..config import check_regular_file

    check_regular_file(path, f"nomenclature file {path} (territory {territory.id})")
    return list(_nomenclature_codes(str(path), territory.nomenclature.code_column, path.stat().st_mtime_ns))


def classify_landuse(frame: pd.DataFrame, landuse: Any) -> pd.Series:
    """Land-use class per row from the territory rules (first match wins; a rule matches when every given column
    starts with its code prefix); unmatched rows get ``default_class`` (``"<unclassified>"`` if none)."""
    result = pd.Series(landuse.default_class or "<unclassified>", index=frame.index, dtype=object)
    assigned = np.zeros(len(frame), dtype=bool)
    for rule in landuse.rules:
        mask = ~assigned
        for column, prefix in rule.codes.items():
            if column not in frame.columns:
                mask = np.zeros(len(frame), dtype=bool)
                break
            values = frame[column].astype(object).where(frame[column].notna(), "").astype(str)
            mask &= values.str.startswith(str(prefix)).to_numpy()
        result[mask] = rule.class_
        assigned |= mask
    return result


def area_by_class_of(frame: pd.DataFrame) -> dict[str, float]:
    from tvb_tasks.validate.expectations import area_by_class

    return area_by_class(frame, GEOMETRY_COLUMN, LANDUSE_CLASS_COLUMN)


def outline_of(boundary: Any, crs: str) -> shapely.Geometry | None:
    """Territory outline (union of the boundary layer) in ``crs`` from a path (GeoParquet / any OGR file), a
    GeoDataFrame or a shapely geometry (assumed in ``crs``); ``None`` if ``boundary`` is ``None``."""
    if boundary is None:
        return None
    if isinstance(boundary, shapely.Geometry):
        return boundary
    if not isinstance(boundary, gpd.GeoDataFrame):
        path = Path(boundary)
        boundary = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    if boundary.crs is not None and crs:
        boundary = boundary.to_crs(crs)
    geoms = boundary.geometry.dropna()
    return shapely.union_all(np.asarray(shapely.make_valid(geoms.values), dtype=object)) if len(geoms) else None


def configured_outline(territory: Territory) -> shapely.Geometry | None:
    """Outline read from the boundary source's file in the YAML (file sources only), else ``None``."""
    source = territory.sources.get(territory.boundary.source)
    if source is None or source.kind != "file" or not source.path:
        return None
    path = territory.resolve_path(source.path)
    if not path.exists():
        return None
    if path.suffix == ".parquet":
        return outline_of(path, territory.crs)
    return outline_of(gpd.read_file(path, layer=source.layer), territory.crs)


def _outline_wkt(outline: shapely.Geometry | None) -> str | None:
    if outline is None or outline.is_empty:
        return None
    return shapely.to_wkt(shapely.simplify(outline, OUTLINE_SIMPLIFY_M), rounding_precision=2)
