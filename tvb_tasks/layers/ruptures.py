"""Rupture points (points de rupture / de conflit): where corridors cross fragmenting infrastructures.

* terrestrial corridors × railways whose status is in ``rupture_points.railway_status``, roads whose importance
  ≤ ``road_max_importance`` (1 = motorway) and, when ``include_canals``, canals;
* open wet-corridor stretches × the same roads and railways (bridges: collision risk for riparian fauna);
* culverts: each culverted watercourse section (``position = culverted``, flagged busé) passing under such a road or
  railway is one rupture point (``infrastructure = culvert``, ``infra_class`` = road / railway crossed, severity
  ``culvert_severity``), at its crossing with the most hostile one;
* river obstacles (role ``river_obstacles``, ROE points mapped from the Sandre schema) within
  ``dedup_tolerance_m`` of a wet corridor; they keep ``drop_height_m`` and ``fish_pass``, and their severity comes
  from the height of drop (``rupture_points.obstacles``), lowered when a fish pass exists.

Points of the same sous-trame and infrastructure type closer than ``dedup_tolerance_m`` are one rupture (the most
severe is kept, the others counted in ``n_merged``). Severity (1 low … 4 very high) = order of magnitude of the
crossed infrastructure's friction, ``round(log10(friction))`` clipped to 1..4 (motorway 10000 → 4, 1000 → 3, …);
river obstacles: see :func:`obstacle_severity`.

CRS: territory CRS (EPSG:2154).
"""
from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .common import empty_frame
from .friction import Infrastructure

__all__ = ["RUPTURE_COLUMNS", "OBSTACLE_COLUMNS", "infrastructure_ruptures", "obstacle_ruptures", "deduplicate",
           "rupture_points", "severity_from_friction", "culvert_ruptures", "obstacle_severity", "drop_height"]

RUPTURE_COLUMNS = ["id", "corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class",
                   "infra_name", "severity", "n_merged"]
OBSTACLE_COLUMNS = ["drop_height_m", "fish_pass"]     # river obstacles only (NaN / "" for the other points)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


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


def drop_height(obstacles: pd.DataFrame) -> pd.Series:
    """Height of drop at low water (m) of river obstacles: ``drop_height_m`` (Sandre HautChutEtObstEcoul) when > 0,
    else the middle of the ``drop_height_class`` label (LbHautChutClObstEcoul, e.g. "De 0.5m à inférieure à 1m";
    an open class "supérieure à 5m" gives its bound), else NaN."""
    exact = pd.to_numeric(obstacles["drop_height_m"], errors="coerce") if "drop_height_m" in obstacles.columns \
        else pd.Series(np.nan, index=obstacles.index)
    exact = exact.where(exact > 0)
    if "drop_height_class" in obstacles.columns:
        def mid(label) -> float:
            nums = [float(x.replace(",", ".")) for x in _NUMBER.findall(str(label or ""))]
            return (nums[0] + nums[1]) / 2 if len(nums) >= 2 else (nums[0] if nums else np.nan)
        exact = exact.fillna(obstacles["drop_height_class"].map(mid))
    return exact.astype(float)


def _has_fish_pass(obstacles: pd.DataFrame) -> np.ndarray:
    """A fish pass is named (Sandre CdTypeDispFranchPiscicole1 other than 0 = "absence de passe", or a label)."""
    code = obstacles["fish_pass_code"].astype("string").fillna("").str.strip() \
        if "fish_pass_code" in obstacles.columns else pd.Series("", index=obstacles.index, dtype="string")
    label = obstacles["fish_pass"].astype("string").fillna("").str.strip() \
        if "fish_pass" in obstacles.columns else pd.Series("", index=obstacles.index, dtype="string")
    has = (code != "") & (code != "0")
    has |= (code == "") & (label != "") & ~label.str.contains(r"absence|aucun|sans", case=False, regex=True)
    return has.to_numpy(dtype=bool)


def obstacle_severity(territory, obstacles: pd.DataFrame) -> np.ndarray:
    """1..4 per river obstacle from its height of drop: the severity of the highest threshold of
    ``rupture_points.obstacles.drop_height_severity`` reached (below them all: the lowest one minus 1), unknown
    height → ``unknown_severity``; a fish pass lowers it by ``fish_pass_lowers_by`` (minimum 1)."""
    cfg = territory.rupture_points.obstacles
    h = drop_height(obstacles).to_numpy()
    steps = sorted(cfg.drop_height_severity.items(), key=lambda kv: kv[0], reverse=True)
    below = max(1, min(v for _, v in steps) - 1) if steps else cfg.unknown_severity
    sev = np.full(len(h), below, dtype=int)
    for threshold, value in reversed(steps):
        sev = np.where(h >= threshold, value, sev)
    sev = np.where(np.isnan(h), cfg.unknown_severity, sev)
    sev = sev - np.where(_has_fish_pass(obstacles), cfg.fish_pass_lowers_by, 0)
    return np.clip(sev, 1, 4).astype(int)


def obstacle_ruptures(territory, wet: gpd.GeoDataFrame, obstacles: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """River obstacles (points) within ``dedup_tolerance_m`` of a wet corridor, attached to the nearest one, with
    their ``drop_height_m`` and ``fish_pass`` (Sandre ROE attributes) and :func:`obstacle_severity`."""
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity",
            *OBSTACLE_COLUMNS]
    if wet.empty or obstacles.empty:
        return empty_frame(territory.crs, cols)
    pts = obstacles[obstacles.geom_type == "Point"]
    states = territory.rupture_points.obstacles.ignore_states
    if states and "state" in pts.columns:
        pts = pts[~pts["state"].astype("string").fillna("").str.strip().isin(states)]
    tol = max(territory.rupture_points.dedup_tolerance_m, 1.0)
    j = gpd.sjoin_nearest(pts, wet[["id", "sous_trame", wet.geometry.name]].rename(columns={"id": "wet_corridor_id"}), how="inner",
                          max_distance=tol, distance_col="_d")
    j = j[~j.index.duplicated(keep="first")]
    if j.empty:
        return empty_frame(territory.crs, cols)
    kind = next((c for c in ("obstacle_type", "type", "kind") if c in j.columns), None)
    name = next((c for c in ("name", "nom") if c in j.columns), None)
    fish = j["fish_pass"].astype("string").fillna("") if "fish_pass" in j.columns else ""
    out = gpd.GeoDataFrame({
        "corridor_id": j["wet_corridor_id"].values, "sous_trame": j["sous_trame_right"].values
        if "sous_trame_right" in j.columns else j["sous_trame"].values, "corridor_kind": "aquatique",
        "infrastructure": "river_obstacle", "infra_class": j[kind].astype(str).values if kind else "",
        "infra_name": j[name].fillna("").astype(str).values if name else "",
        "severity": obstacle_severity(territory, j), "drop_height_m": drop_height(j).values,
        "fish_pass": np.where(_has_fish_pass(j), fish, "") if "fish_pass" in j.columns else "",
    }, geometry=j.geometry.values, crs=territory.crs)
    return out[cols + ["geometry"]]


def culvert_ruptures(territory, watercourses: gpd.GeoDataFrame, wet: gpd.GeoDataFrame,
                     infra: Infrastructure) -> gpd.GeoDataFrame:
    """One rupture point per culverted watercourse section (``position = culverted``) passing under a fragmenting
    road or railway, at its crossing with the most hostile one (ties: the first). ``corridor_id``: the wet
    corridor holding the section (within 1 m), else ''. Severity: ``rupture_points.culvert_severity``."""
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    severity = territory.rupture_points.culvert_severity
    if severity is None or watercourses.empty or "position" not in watercourses.columns:
        return empty_frame(territory.crs, cols)
    lines = _fragmenting(territory, infra)
    lines = lines[lines["infra_type"] != "canal"]
    culverts = watercourses[watercourses["position"].astype(str) == "culverted"]
    if culverts.empty or lines.empty:
        return empty_frame(territory.crs, cols)
    merged = shapely.line_merge(shapely.union_all(np.asarray(culverts.geometry.values)))
    sections = gpd.GeoDataFrame(geometry=list(shapely.get_parts(merged)), crs=territory.crs)
    pairs = gpd.sjoin(sections, lines, predicate="intersects", how="inner")
    if pairs.empty:
        return empty_frame(territory.crs, cols)
    pairs = pairs.sort_values(["friction"], ascending=False, kind="stable")
    pairs = pairs[~pairs.index.duplicated(keep="first")].sort_index()
    wet_st = territory.wet_sous_trames[0] if territory.wet_sous_trames else ""
    rows, pts = [], []
    for idx, p in pairs.iterrows():
        inter = shapely.intersection(sections.geometry.loc[idx], lines.geometry.loc[p["index_right"]])
        part = next((g for g in shapely.get_parts(inter) if not g.is_empty), None)
        if part is None:
            continue
        pt = part if part.geom_type == "Point" else part.interpolate(0.5, normalized=True)
        corridor = ""
        if len(wet):
            near = wet[wet.geometry.distance(pt) <= 1.0]
            corridor = str(near["id"].iloc[0]) if len(near) else ""
        rows.append({"corridor_id": corridor, "sous_trame": wet_st, "corridor_kind": "aquatique",
                     "infrastructure": "culvert", "infra_class": p["infra_type"], "infra_name": p["infra_name"],
                     "severity": int(severity)})
        pts.append(pt)
    return gpd.GeoDataFrame(rows, geometry=pts, crs=territory.crs, columns=cols) if rows \
        else empty_frame(territory.crs, cols)


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
                   obstacles: gpd.GeoDataFrame, watercourses: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """All rupture points (:data:`RUPTURE_COLUMNS` + :data:`OBSTACLE_COLUMNS`), deduplicated, ids ``P0001``…

    ``watercourses`` (from ``prepare_watercourses``) gives the culverts; bridges are counted on the open wet
    stretches only (a culverted stretch under a road is a culvert point, not a bridge).
    """
    open_wet = wet[wet["position"].astype(str) != "culverted"] if len(wet) and "position" in wet.columns else wet
    raw = [infrastructure_ruptures(territory, corridors, infra),
           infrastructure_ruptures(territory, open_wet, infra, kind="aquatique"),
           culvert_ruptures(territory, watercourses if watercourses is not None else empty_frame(territory.crs),
                            wet, infra),
           obstacle_ruptures(territory, wet, obstacles)]
    raw = [r for r in raw if len(r)]
    if not raw:
        return empty_frame(territory.crs, RUPTURE_COLUMNS + OBSTACLE_COLUMNS)
    pts = gpd.GeoDataFrame(pd.concat(raw, ignore_index=True), geometry="geometry", crs=territory.crs)
    for col in OBSTACLE_COLUMNS:
        if col not in pts.columns:
            pts[col] = np.nan if col == "drop_height_m" else ""
    pts["drop_height_m"] = pd.to_numeric(pts["drop_height_m"], errors="coerce")
    pts["fish_pass"] = pts["fish_pass"].fillna("").astype(str)
    pts = deduplicate(pts, territory.rupture_points.dedup_tolerance_m)
    pts.insert(0, "id", [f"P{i:04d}" for i in range(1, len(pts) + 1)])
    return pts[RUPTURE_COLUMNS + OBSTACLE_COLUMNS + ["geometry"]]
