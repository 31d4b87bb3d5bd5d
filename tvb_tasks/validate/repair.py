"""Explicit, logged, counted geometry repair (``make_valid``), run before validation when enabled per source.

Repair is never silent: it only runs for sources with ``validation.sources.<name>.repair_geometries: true``, every
repaired feature is counted, the count is logged and lands in the validation summary (``repaired_geometries``).
"""
from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import shapely

log = logging.getLogger(__name__)

_FAMILY = {
    "Polygon": 2, "MultiPolygon": 2,
    "LineString": 1, "LinearRing": 1, "MultiLineString": 1,
    "Point": 0, "MultiPoint": 0,
}


def _keep_dimension(geom: shapely.Geometry, dim: int) -> shapely.Geometry:
    """The parts of ``geom`` of dimension ``dim`` (make_valid may add lower-dimension debris to a collection)."""
    if geom.geom_type != "GeometryCollection":
        return geom
    parts = [g for g in shapely.get_parts(geom) if shapely.get_dimensions(g) == dim]
    if not parts:
        return geom
    if dim == 2:
        return shapely.multipolygons(list(shapely.get_parts(parts))) if len(parts) > 1 else parts[0]
    if dim == 1:
        return shapely.multilinestrings(list(shapely.get_parts(parts))) if len(parts) > 1 else parts[0]
    return shapely.multipoints(list(shapely.get_parts(parts))) if len(parts) > 1 else parts[0]


def repair_geometries(gdf: gpd.GeoDataFrame, source_name: str) -> tuple[gpd.GeoDataFrame, int]:
    """Make invalid geometries valid (shapely ``make_valid``); returns (a repaired copy, number repaired).

    Valid, null and empty geometries are left untouched; a repaired polygon stays polygonal (a bow-tie becomes a
    two-part MultiPolygon), collections produced by ``make_valid`` keep only parts of the input's dimension. The
    count and a sample of row positions are logged at WARNING level, naming ``source_name``. CRS is unchanged.
    """
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    present = np.array([g is not None for g in geoms], dtype=bool)
    invalid = np.zeros(len(geoms), dtype=bool)
    if present.any():
        invalid[present] = ~shapely.is_valid(geoms[present]) & ~shapely.is_empty(geoms[present])
    n = int(invalid.sum())
    if n == 0:
        log.info("repair_geometries(%s): all %d geometries valid, nothing repaired", source_name, len(geoms))
        return gdf, 0
    fixed = geoms.copy()
    for i in np.flatnonzero(invalid):
        dim = _FAMILY.get(geoms[i].geom_type, shapely.get_dimensions(geoms[i]))
        fixed[i] = _keep_dimension(shapely.make_valid(geoms[i]), dim)
    out = gdf.copy()
    out[gdf.geometry.name] = gpd.GeoSeries(fixed, index=gdf.index, crs=gdf.crs)
    still = int((~shapely.is_valid(fixed[invalid])).sum())
    sample = [int(i) for i in np.flatnonzero(invalid)[:10]]
    log.warning("repair_geometries(%s): repaired %d invalid geometries of %d with make_valid (rows %s%s)%s",
                source_name, n, len(geoms), sample, "…" if n > len(sample) else "",
                f"; {still} still invalid" if still else "")
    return out, n
