"""The vector inputs shared by every sous-trame (territory, computation extent, land use, habitat sources,
protected areas, infrastructure), loaded without any raster.

:func:`vector_context` is what the layers engine loads before rasterising (``engine._context`` adds the whole-grid
rasters to it); the tiled planner (:mod:`tvb_tasks.layers.windows`) rasterises it tile window by tile window
instead. Its memory grows with the number of features (land-use polygons, lines…), not with the number of cells:
the grid is only described (transform and shape, :func:`tvb_tasks.layers.common.make_grid` of the extent).

CRS: the territory CRS (EPSG:2154); lengths in metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

from .common import Grid, clip_to, empty_frame, load_boundary, make_grid, polygons_only, read_role, read_source
from .friction import Infrastructure, prepare_infrastructure, prepare_overlays
from .landuse import habitat_sources, load_landuse
from .reservoirs import always_reservoir_sous_trames, load_protected_areas
from .wet import prepare_watercourses

__all__ = ["VectorContext", "vector_context"]


@dataclass
class VectorContext:
    """Vector inputs of a territory (see ``engine._Context`` for each field; no raster here).

    ``extent``: what the grid covers (the territory and the part of the buffer that has land-use data);
    ``grid``: its description (nothing allocated).
    """

    boundary: BaseGeometry
    domain: BaseGeometry
    extent: BaseGeometry
    grid: Grid
    landuse: gpd.GeoDataFrame
    landuse_all: gpd.GeoDataFrame
    extra: gpd.GeoDataFrame
    protected: gpd.GeoDataFrame
    infra: Infrastructure
    watercourses: gpd.GeoDataFrame
    all_watercourses: gpd.GeoDataFrame
    always: dict[int, list[str]]


def _overlay_frames(territory, inputs: dict[str, Path]) -> dict[str, gpd.GeoDataFrame]:
    """Source features of each ``friction.overlays`` entry (its source, or every source of its role)."""
    frames = {}
    for name, cfg in territory.friction.overlays.items():
        if cfg.source:
            frames[name] = read_source(territory, inputs, cfg.source) if cfg.source in inputs \
                else empty_frame(territory.crs)
        else:
            frames[name] = read_role(territory, inputs, cfg.role, required=False)
    return frames


def vector_context(territory, inputs: dict[str, Path]) -> VectorContext:
    """Load and prepare the territory's vector inputs (``inputs``: source name → local snapshot file)."""
    boundary = load_boundary(territory, inputs)
    buffer_m = territory.analysis_buffer_m()
    domain = shapely.make_valid(boundary.buffer(buffer_m)) if buffer_m > 0 else boundary
    landuse_all = load_landuse(territory, inputs, domain)
    # the grid covers the territory and the part of the buffer that has land-use data
    extent = boundary.union(domain.intersection(shapely.box(*landuse_all.total_bounds))) if len(landuse_all) \
        else boundary
    grid = make_grid(extent, territory.resolution_m, territory.crs)
    landuse = polygons_only(clip_to(landuse_all, boundary)) if buffer_m > 0 else landuse_all
    overlays = prepare_overlays(territory, _overlay_frames(territory, inputs), domain)
    extra = habitat_sources(territory, inputs, domain, overlays)
    protected = load_protected_areas(territory, inputs, domain)
    roads = read_role(territory, inputs, "roads", required=False)
    railways = read_role(territory, inputs, "railways", required=False)
    raw_water = read_role(territory, inputs, "watercourses", required=False)
    water = prepare_watercourses(raw_water, boundary)
    water_all = prepare_watercourses(raw_water, domain) if buffer_m > 0 else water
    infra = prepare_infrastructure(territory, roads, railways, water_all, domain, overlays)
    always = always_reservoir_sous_trames(territory, protected, landuse_all, extra)
    return VectorContext(boundary, domain, extent, grid, landuse, landuse_all, extra, protected, infra, water,
                         water_all, always)
