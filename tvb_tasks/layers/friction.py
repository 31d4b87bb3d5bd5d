"""Friction (resistance) rasters per sous-trame, BioDispersal-style scale 1 / 5 / 30 / 100 / 1000 / 10000.

friction = max(land-use friction of the cell's class for the sous-trame, friction of the infrastructures burned on
the cell). Infrastructures (roads by importance, railways by status, canals for the terrestrial sous-trames) are
burned with ``all_touched=True`` so that a line is 4-connected and cannot be crossed diagonally between two cells.
Built-up areas come from the land use (class ``artificial``). Cells outside the territory are NaN (nodata).

Grid: the territory grid (EPSG:2154, ``resolution_m``); values float32, dimensionless cost per metre.
"""
from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from .common import Grid, LayerInputError, lines_only, rasterize_values

__all__ = ["Infrastructure", "prepare_infrastructure", "landuse_friction", "infrastructure_friction",
           "friction_raster"]


@dataclass(frozen=True)
class Infrastructure:
    """Transport / water lines used for friction and rupture points, territory CRS, clipped to the territory.

    ``lines`` columns: ``infra_type`` ∈ {road, railway, canal}, ``infra_class`` (road importance as text, railway
    status, canal kind), ``infra_name``, ``friction`` (the YAML infrastructure friction), ``geometry``.
    """

    lines: gpd.GeoDataFrame


def prepare_infrastructure(territory, roads: gpd.GeoDataFrame, railways: gpd.GeoDataFrame,
                           watercourses: gpd.GeoDataFrame, boundary) -> Infrastructure:
    """Harmonise roads / railways / canals with their YAML friction. Unknown road importances or railway statuses
    raise :class:`LayerInputError` (a silent default would open holes in barriers)."""
    infra = territory.friction.infrastructure
    frames = []
    if len(roads):
        col = infra.roads.importance_column
        if col not in roads.columns:
            raise LayerInputError(f"roads: column {col!r} missing (columns: {list(roads.columns)})")
        imp = pd.to_numeric(roads[col], errors="coerce")
        table = {int(k): float(v) for k, v in infra.roads.by_importance.items()}
        unknown = sorted(set(imp.dropna().astype(int)) - set(table)) + (["null"] if imp.isna().any() else [])
        if unknown:
            raise LayerInputError(f"roads: importance values {unknown} have no friction in "
                                  f"friction.infrastructure.roads.by_importance {sorted(table)}")
        frames.append(gpd.GeoDataFrame({
            "infra_type": "road", "infra_class": imp.astype(int).astype(str).values,
            "infra_name": _names(roads), "friction": imp.astype(int).map(table).values,
        }, geometry=roads.geometry.values, crs=territory.crs))
    if len(railways):
        col = infra.railways.status_column
        if col not in railways.columns:
            raise LayerInputError(f"railways: column {col!r} missing (columns: {list(railways.columns)})")
        status = railways[col].astype(str)
        unknown = sorted(set(status) - set(infra.railways.by_status))
        if unknown:
            raise LayerInputError(f"railways: status values {unknown} have no friction in "
                                  f"friction.infrastructure.railways.by_status {sorted(infra.railways.by_status)}")
        frames.append(gpd.GeoDataFrame({
            "infra_type": "railway", "infra_class": status.values, "infra_name": _names(railways),
            "friction": status.map(infra.railways.by_status).astype(float).values,
        }, geometry=railways.geometry.values, crs=territory.crs))
    if len(watercourses) and "kind" in watercourses.columns:
        canals = watercourses[watercourses["kind"].astype(str) == "canal"]
        if len(canals):
            frames.append(gpd.GeoDataFrame({
                "infra_type": "canal", "infra_class": "canal", "infra_name": _names(canals),
                "friction": float(infra.canals),
            }, geometry=canals.geometry.values, crs=territory.crs))
    if not frames:
        lines = gpd.GeoDataFrame({"infra_type": [], "infra_class": [], "infra_name": [], "friction": []},
                                 geometry=gpd.GeoSeries([], crs=territory.crs), crs=territory.crs)
        return Infrastructure(lines)
    lines = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=territory.crs)
    lines = lines_only(lines.clip(boundary))
    return Infrastructure(lines)


def _names(gdf: gpd.GeoDataFrame) -> np.ndarray:
    for col in ("name", "nom", "toponyme"):
        if col in gdf.columns:
            return gdf[col].fillna("").astype(str).values
    return np.full(len(gdf), "", dtype=object)


def landuse_friction(territory, sous_trame: str, classes_raster: np.ndarray, classes: list[str]) -> np.ndarray:
    """Float32 friction of each cell's land-use class for the sous-trame; NaN where the class index is -1."""
    lut = np.array([float(territory.friction.landuse[c][sous_trame]) for c in classes] + [np.nan],
                   dtype=np.float32)
    return lut[np.where(classes_raster >= 0, classes_raster, len(classes))]


def infrastructure_friction(territory, sous_trame: str, infra: Infrastructure, grid: Grid) -> np.ndarray:
    """Float32 raster of the highest infrastructure friction per cell (0 where none). Canals only count for the
    terrestrial sous-trames (``trame: verte``): for the trame bleue they are water habitat."""
    lines = infra.lines
    if territory.sous_trames[sous_trame].trame != "verte":
        lines = lines[lines["infra_type"] != "canal"]
    if lines.empty:
        return np.zeros(grid.shape, dtype=np.float32)
    lines = lines.sort_values("friction", kind="stable")   # "replace" burn in ascending order = max rule
    return rasterize_values(lines.geometry, lines["friction"], grid, fill=0, dtype="float32", all_touched=True)


def friction_raster(territory, sous_trame: str, classes_raster: np.ndarray, classes: list[str],
                    infra: Infrastructure, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(friction, land-use-only friction), float32, NaN outside the territory. ``friction`` = max of both rules."""
    lu = landuse_friction(territory, sous_trame, classes_raster, classes)
    fr = np.fmax(lu, infrastructure_friction(territory, sous_trame, infra, grid))
    fr[np.isnan(lu)] = np.nan
    return fr.astype(np.float32), lu
