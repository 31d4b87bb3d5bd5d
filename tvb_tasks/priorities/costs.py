"""Cost, maintenance synergy, project conflict and commune of the priority candidates.

``cost_base`` (:func:`stretch_plan` for corridors, :func:`crossing_cost` for sites), the share inside a managed
sector (:func:`maintenance_overlap`), the stage weight of the nearest planned project (:func:`project_conflict`) and
the commune of the representative point. Split from :mod:`.ranking`, which re-exports these names. CRS: the
territory's (metres).
"""
from __future__ import annotations

import contextlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.publish.styles import status_code

from .config import PrioritiesConfig


def stretch_plan(stretches: gpd.GeoDataFrame | None, per_m: dict[str, float]) -> dict[str, tuple[float, bool]]:
    """{corridor id: (cost_base, crossing_only)} from the ``corridor_stretches`` layer.

    cost_base = Σ stretch length (m) × ``per_m[stretch status]`` ("existing" stretches free unless ``per_m`` prices
    them): only the km to restore or create are paid, at their own rate. crossing_only: the corridor has no gap of
    its own — every stretch below "existing" was lowered by a rupture point (``downgraded`` = 1) — so its whole
    deficit is its crossing(s), whose gain and cost belong to the rupture site(s). Empty when the release has no
    stretches layer (the caller then prices the whole corridor at its status rate)."""
    if stretches is None or stretches.empty or "corridor_id" not in stretches.columns:
        return {}
    status = stretches["status"].map(status_code).fillna(stretches["status"]).astype(str)
    rate = status.map(lambda st: float(per_m.get(st, 0.0 if st == "existing" else 1.0)))
    cost = pd.to_numeric(stretches["length_m"], errors="coerce").fillna(0.0) * rate
    lowered = pd.to_numeric(stretches["downgraded"], errors="coerce").fillna(0).astype(int) == 1 \
        if "downgraded" in stretches.columns else pd.Series(False, index=stretches.index)
    own_gap = (status != "existing") & ~lowered
    frame = pd.DataFrame({"cid": stretches["corridor_id"].astype(str), "cost": cost, "gap": own_gap,
                          "deficit": status != "existing"})
    out = {}
    for cid, grp in frame.groupby("cid", sort=False):
        out[str(cid)] = (float(grp["cost"].sum()), bool(grp["deficit"].any() and not grp["gap"].any()))
    return out


def crossing_cost(cfg: PrioritiesConfig, infrastructure: str, infra_class) -> float:
    table = cfg.cost.crossing
    value = table.get(str(infrastructure))
    if isinstance(value, dict):
        key = str(infra_class)
        with contextlib.suppress(TypeError, ValueError):
            key = str(int(float(infra_class)))
        value = value.get(key)
    if value is None:
        value = table.get("default", 1000.0)
    return float(value if not isinstance(value, dict) else 1000.0)


def maintenance_overlap(geoms: np.ndarray, maintenance: gpd.GeoDataFrame | None, buffer_m: float
                        ) -> tuple[np.ndarray, list[str]]:
    """(share of each line's length — or 1/0 for a point — within ``buffer_m`` (m) of a managed sector, names).

    Local: each geometry meets only the union of the buffered sectors that intersect it (an STRtree, one bulk
    query), not one union of all the territory's sectors, whose size grows with the area (cost ∝ candidates ×
    sectors ∝ area², issue #18). Same shares: g ∩ ∪B = g ∩ ∪{B : B ∩ g ≠ ∅}.
    """
    share = np.zeros(len(geoms))
    names = [""] * len(geoms)
    if maintenance is None or maintenance.empty or not len(geoms):
        return share, names
    zones = np.asarray(maintenance.geometry.values, dtype=object)
    if buffer_m:
        zones = shapely.buffer(zones, buffer_m)
    geoms = np.asarray(geoms, dtype=object)
    g_idx, z_idx = shapely.STRtree(zones).query(geoms, predicate="intersects")
    near: dict[int, list[int]] = {}
    for g, z in zip(g_idx.tolist(), z_idx.tolist(), strict=True):
        near.setdefault(g, []).append(z)
    sindex = maintenance.sindex
    col = "name" if "name" in maintenance.columns else "id"
    for i, cand in near.items():
        g = geoms[i]
        zone = zones[cand[0]] if len(cand) == 1 else shapely.union_all(zones[sorted(cand)])
        if g.geom_type in ("Point", "MultiPoint"):
            share[i] = float(shapely.intersects(zone, shapely.get_parts(g)).mean())
        else:
            length = g.length
            share[i] = min(g.intersection(zone).length / length, 1.0) if length > 0 else 0.0
        if share[i] > 0:
            hits = sindex.query(g, predicate="dwithin", distance=buffer_m)
            names[i] = ", ".join(sorted(maintenance.iloc[hits][col].astype(str).unique()))
    return share, names


def project_areas(projects: gpd.GeoDataFrame | None, line_buffer_m: float) -> gpd.GeoDataFrame | None:
    """Projects as areas: line projects buffered by ``line_buffer_m`` (half-width of the right-of-way)."""
    if projects is None or projects.empty:
        return projects
    geoms = projects.geometry.values
    lines = shapely.get_dimensions(geoms) < 2
    geoms = np.where(lines, shapely.buffer(geoms, line_buffer_m), geoms)
    return projects.set_geometry(gpd.GeoSeries(geoms, crs=projects.crs, index=projects.index))


def project_conflict(geoms: np.ndarray, projects: gpd.GeoDataFrame | None, buffer_m: float,
                     stage_weights: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """(largest stage weight of the projects within ``buffer_m`` of each geometry, their names)."""
    conflict = np.zeros(len(geoms))
    names = [""] * len(geoms)
    if projects is None or projects.empty or not len(geoms):
        return conflict, names
    left, right = projects.sindex.query(geoms, predicate="dwithin", distance=buffer_m)
    weights = projects["stage"].map(lambda s: stage_weights.get(str(s), 0.0)).to_numpy(dtype=float)
    label = projects["name"].fillna(projects["id"]).astype(str).to_numpy() if "name" in projects.columns \
        else projects["id"].astype(str).to_numpy()
    for i, j in zip(left, right):
        conflict[i] = max(conflict[i], weights[j])
    for i in np.unique(left):
        names[i] = ", ".join(sorted(set(label[right[left == i]])))
    return conflict, names


def representative_points(geoms: np.ndarray) -> np.ndarray:
    """Midpoint of a line (along its length), the point itself otherwise."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g.geom_type in ("LineString", "MultiLineString"):
            merged = shapely.line_merge(g) if g.geom_type == "MultiLineString" else g
            line = merged if merged.geom_type == "LineString" else max(merged.geoms, key=lambda x: x.length)
            out[i] = line.interpolate(0.5, normalized=True)
        elif g.geom_type == "Point":
            out[i] = g
        else:
            out[i] = g.representative_point()
    return out


def commune_of(points: np.ndarray, communes: gpd.GeoDataFrame) -> tuple[list[str], list[str]]:
    """(insee, nom) of the commune holding each point (the nearest commune for a point just outside)."""
    if communes is None or communes.empty or not len(points):
        return [""] * len(points), [""] * len(points)
    idx = communes.sindex.nearest(points, return_all=False)[1]
    return communes["insee"].astype(str).to_numpy()[idx].tolist(), communes["nom"].astype(str).to_numpy()[idx].tolist()
