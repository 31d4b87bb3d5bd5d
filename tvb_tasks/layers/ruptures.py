"""Rupture points (points de rupture / de conflit): where corridors cross fragmenting infrastructures.

* terrestrial corridors × railways whose status is in ``rupture_points.railway_status``, roads whose importance
  ≤ ``road_max_importance`` (1 = motorway) and, when ``include_canals``, canals;
* wet corridors × the same roads and railways (bridges / culverts: collision risk for riparian fauna) and river
  obstacles (role ``river_obstacles``, e.g. ROE points) within ``dedup_tolerance_m``.

Points of the same sous-trame and infrastructure type closer than ``dedup_tolerance_m`` are one rupture (the most
severe is kept, the others counted in ``n_merged``). Severity (1 low … 4 very high) = order of magnitude of the
crossed infrastructure's friction, ``round(log10(friction))`` clipped to 1..4 (motorway 10000 → 4, 1000 → 3, …);
river obstacles: from a ``drop_height_m`` column when present (≥ 2 m → 4, ≥ 0.5 m → 3, else 2), 3 when unknown.

CRS: territory CRS (EPSG:2154).
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .common import empty_frame
from .friction import Infrastructure

__all__ = ["RUPTURE_COLUMNS", "infrastructure_ruptures", "obstacle_ruptures", "deduplicate", "rupture_points",
           "severity_from_friction"]

RUPTURE_COLUMNS = ["id", "corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class",
                   "infra_name", "severity", "n_merged"]


def severity_from_friction(friction) -> np.ndarray:
    """1..4 from the infrastructure friction's order of magnitude."""
    f = np.maximum(np.asarray(friction, dtype=float), 1.0)
    return np.clip(np.rint(np.log10(f)), 1, 4).astype(int)


def _fragmenting(territory, infra: Infrastructure) -> gpd.GeoDataFrame:
    cfg = territory.rupture_points
    lines = infra.lines
    road = (lines["infra_type"] == "road") & (pd.to_numeric(lines["infra_class"], errors="coerce")
                                              <= cfg.road_max_importance)
    rail = (lines["infra_type"] == "railway") & lines["infra_class"].isin(cfg.railway_status)
    canal = (lines["infra_type"] == "canal") & bool(cfg.include_canals)
    return lines[road | rail | canal]


def infrastructure_ruptures(territory, corridors: gpd.GeoDataFrame, infra: Infrastructure, *,
                            kind: str = "terrestre") -> gpd.GeoDataFrame:
    """Raw crossing points of corridors with fragmenting infrastructures (before deduplication).

    ``kind``: ``terrestre`` (roads, railways, canals) or ``aquatique`` (wet corridors: roads and railways only — a
    canal meeting a stream is part of the wet network, not a rupture).
    """
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    lines = _fragmenting(territory, infra)
    if kind != "terrestre":
        lines = lines[lines["infra_type"] != "canal"]
    if corridors.empty or lines.empty:
        return empty_frame(territory.crs, cols)
    left = corridors[["id", "sous_trame", corridors.geometry.name]].rename(columns={"id": "corridor_id"})
    pairs = gpd.sjoin(left, lines, predicate="intersects", how="inner")
    if pairs.empty:
        return empty_frame(territory.crs, cols)
    inter = shapely.intersection(pairs.geometry.values, lines.geometry.loc[pairs["index_right"]].values)
    rows, pts = [], []
    for (_, p), geom in zip(pairs.iterrows(), inter):
        for part in shapely.get_parts(geom):
            if part.is_empty:
                continue
            pt = part if part.geom_type == "Point" else part.interpolate(0.5, normalized=True)
            rows.append({"corridor_id": p["corridor_id"], "sous_trame": p["sous_trame"], "corridor_kind": kind,
                         "infrastructure": p["infra_type"], "infra_class": p["infra_class"],
                         "infra_name": p["infra_name"], "severity": int(severity_from_friction([p["friction"]])[0])})
            pts.append(pt)
    return gpd.GeoDataFrame(rows, geometry=pts, crs=territory.crs, columns=cols) if rows \
        else empty_frame(territory.crs, cols)


def obstacle_ruptures(territory, wet: gpd.GeoDataFrame, obstacles: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """River obstacles (points) within ``dedup_tolerance_m`` of a wet corridor, attached to the nearest one."""
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    if wet.empty or obstacles.empty:
        return empty_frame(territory.crs, cols)
    pts = obstacles[obstacles.geom_type == "Point"]
    tol = max(territory.rupture_points.dedup_tolerance_m, 1.0)
    j = gpd.sjoin_nearest(pts, wet[["id", "sous_trame", wet.geometry.name]].rename(columns={"id": "wet_corridor_id"}), how="inner",
                          max_distance=tol, distance_col="_d")
    j = j[~j.index.duplicated(keep="first")]
    if j.empty:
        return empty_frame(territory.crs, cols)
    kind = next((c for c in ("obstacle_type", "type", "kind") if c in j.columns), None)
    name = next((c for c in ("name", "nom") if c in j.columns), None)
    if "drop_height_m" in j.columns:
        h = pd.to_numeric(j["drop_height_m"], errors="coerce")
        sev = np.where(h >= 2, 4, np.where(h >= 0.5, 3, np.where(h.notna(), 2, 3)))
    else:
        sev = np.full(len(j), 3)
    out = gpd.GeoDataFrame({
        "corridor_id": j["wet_corridor_id"].values, "sous_trame": j["sous_trame_right"].values
        if "sous_trame_right" in j.columns else j["sous_trame"].values, "corridor_kind": "aquatique",
        "infrastructure": "river_obstacle", "infra_class": j[kind].astype(str).values if kind else "",
        "infra_name": j[name].fillna("").astype(str).values if name else "", "severity": sev.astype(int),
    }, geometry=j.geometry.values, crs=territory.crs)
    return out[cols + ["geometry"]]


def deduplicate(points: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    """Merge points of the same sous-trame and infrastructure type closer than ``tolerance_m`` (single linkage);
    keep the most severe (then the first), ``n_merged`` = number of raw points it stands for."""
    if points.empty:
        out = points.copy()
        out["n_merged"] = pd.Series(dtype=int)
        return out
    pts = points.reset_index(drop=True)
    parent = np.arange(len(pts))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if tolerance_m > 0:
        left, right = pts.sindex.query(pts.geometry, predicate="dwithin", distance=tolerance_m)
        same = ((pts["sous_trame"].values[left] == pts["sous_trame"].values[right])
                & (pts["infrastructure"].values[left] == pts["infrastructure"].values[right]) & (left < right))
        for a, b in zip(left[same], right[same]):
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups = np.array([find(i) for i in range(len(pts))])
    pts = pts.assign(_g=groups, _order=np.arange(len(pts)))
    counts = pts.groupby("_g").size()
    kept = pts.sort_values(["_g", "severity", "_order"], ascending=[True, False, True], kind="stable")
    kept = kept.drop_duplicates("_g", keep="first").sort_values("_order")
    kept["n_merged"] = kept["_g"].map(counts).astype(int).values
    return kept.drop(columns=["_g", "_order"]).reset_index(drop=True)


def rupture_points(territory, corridors: gpd.GeoDataFrame, infra: Infrastructure, wet: gpd.GeoDataFrame,
                   obstacles: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """All rupture points (:data:`RUPTURE_COLUMNS`), deduplicated, ids ``P0001``…"""
    raw = [infrastructure_ruptures(territory, corridors, infra),
           infrastructure_ruptures(territory, wet, infra, kind="aquatique"),
           obstacle_ruptures(territory, wet, obstacles)]
    raw = [r for r in raw if len(r)]
    if not raw:
        return empty_frame(territory.crs, RUPTURE_COLUMNS)
    pts = gpd.GeoDataFrame(pd.concat(raw, ignore_index=True), geometry="geometry", crs=territory.crs)
    pts = deduplicate(pts, territory.rupture_points.dedup_tolerance_m)
    pts.insert(0, "id", [f"P{i:04d}" for i in range(1, len(pts) + 1)])
    return pts[RUPTURE_COLUMNS + ["geometry"]]
