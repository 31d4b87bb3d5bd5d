"""Rupture points (points de rupture / de conflit): where corridors cross fragmenting infrastructures.

* terrestrial corridors × railways whose status is in ``rupture_points.railway_status``, roads whose importance
  ≤ ``road_max_importance`` (1 = motorway) and, when ``include_canals``, canals;
* open wet-corridor stretches × the same roads and railways (bridges: collision risk for riparian fauna), severity
  ``bridge_severity`` (2: the bed and banks go on under the deck);
* culverts: each culverted watercourse section (``position = culverted``, flagged busé) passing under a road
  (importance ≤ ``culvert_road_max_importance``: the pipe, not the traffic, breaks the aquatic continuity) or such
  a railway is one rupture point (``infrastructure = culvert``, ``infra_class`` = road / railway crossed, severity
  ``culvert_severity``), at its crossing with the most hostile one;
* river obstacles (role ``river_obstacles``, ROE points mapped from the Sandre schema) within
  ``dedup_tolerance_m`` of a wet corridor; they keep ``drop_height_m`` and ``fish_pass``, and their severity comes
  from the height of drop (``rupture_points.obstacles``), lowered when a fish pass exists.

Missing links (fractures, :func:`tvb_tasks.layers.corridors.missing_links`): each crossing of a barrier
(``corridors.missing_links``: motorways, in-use railways, canals) by a potential link the real network lacks is a
rupture point of severity ``corridors.missing_links.severity`` (4) carrying the link's Barrier-Mapper
``improvement_score`` (cost saved per metre of barrier removed), ``cost_saved`` and ``barrier_m``.

Points de vigilance (:func:`vigilance_points`, layer ``vigilance_points``): corridors × roads of importance above
``road_max_importance`` up to ``vigilance_road_max_importance`` (COST 341 partial barriers), severity 2, apart.

Reservoirs split by a barrier (``rupture_points.include_reservoirs``): one point per stretch of barrier inside a
reservoir, ``corridor_kind`` = ``reservoir`` (the "zones de conflit" of the IRSTEA/Cemagref guide: infrastructure ×
reservoir as well as infrastructure × corridor).

Points of the same sous-trame and infrastructure type closer than ``dedup_tolerance_m`` are one rupture (the most
severe is kept, the others counted in ``n_merged``). Rupture points are then grouped into **sites**
(:func:`group_sites`): points on the same infrastructure (type and name) within ``site_tolerance_m`` of each other,
whatever the sous-trame, are one crossing of one infrastructure (``site_id``), so an overpass serving the forest
and the grassland corridors counts once as a site. ``treated`` is false: no crossing-structure source yet. Severity (1 low … 4 very high) = order of magnitude of the
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

__all__ = [
    "OBSTACLE_COLUMNS",
    "RUPTURE_COLUMNS",
    "VIGILANCE_COLUMNS",
    "barrier_lines",
    "bridge_ruptures",
    "culvert_ruptures",
    "deduplicate",
    "drop_height",
    "fragmenting_lines",
    "group_sites",
    "infrastructure_ruptures",
    "missing_link_ruptures",
    "obstacle_ruptures",
    "obstacle_severity",
    "reservoir_ruptures",
    "rupture_points",
    "severity_from_friction",
    "vigilance_points",
]

RUPTURE_COLUMNS = ["id", "corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class",
                   "infra_name", "severity", "n_merged", "site_id", "treated", "missing_link", "barrier_m",
                   "cost_saved", "improvement_score"]
VIGILANCE_COLUMNS = ["id", "corridor_id", "sous_trame", "infrastructure", "infra_class", "infra_name", "severity",
                     "n_merged"]
OBSTACLE_COLUMNS = ["drop_height_m", "fish_pass"]     # river obstacles only (NaN / "" for the other points)
_SCORE_COLUMNS = ["missing_link", "barrier_m", "cost_saved", "improvement_score"]
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def severity_from_friction(friction) -> np.ndarray:
    """1..4 from the infrastructure friction's order of magnitude."""
    f = np.maximum(np.asarray(friction, dtype=float), 1.0)
    return np.clip(np.rint(np.log10(f)), 1, 4).astype(int)


def _select_lines(lines: gpd.GeoDataFrame, cfg, road_max_importance: int | None = None) -> gpd.GeoDataFrame:
    """Roads with importance ≤ ``cfg.road_max_importance`` (or ``road_max_importance`` when given), railways whose
    status is in ``cfg.railway_status``, canals when ``cfg.include_canals`` (``cfg``: the ``rupture_points`` or
    ``corridors.missing_links`` section)."""
    top = cfg.road_max_importance if road_max_importance is None else road_max_importance
    road = (lines["infra_type"] == "road") & (pd.to_numeric(lines["infra_class"], errors="coerce") <= top)
    rail = (lines["infra_type"] == "railway") & lines["infra_class"].isin(cfg.railway_status)
    canal = (lines["infra_type"] == "canal") & bool(cfg.include_canals)
    return lines[road | rail | canal]


def _fragmenting(territory, infra: Infrastructure, road_max_importance: int | None = None) -> gpd.GeoDataFrame:
    return _select_lines(infra.lines, territory.rupture_points, road_max_importance)


def fragmenting_lines(territory, infra: Infrastructure) -> gpd.GeoDataFrame:
    """The fragmenting infrastructure lines (those whose crossings are rupture points), for the ``infrastructure``
    layer of the release: FragScape cuts the habitat patches by them before computing the effective mesh size."""
    return _fragmenting(territory, infra).reset_index(drop=True)


def barrier_lines(territory, infra: Infrastructure) -> gpd.GeoDataFrame:
    """The barriers of the missing-link analysis (``corridors.missing_links``): roads with importance ≤
    ``road_max_importance``, railways whose status is in ``railway_status``, canals when ``include_canals``."""
    return _select_lines(infra.lines, territory.corridors.missing_links)


def infrastructure_ruptures(territory, corridors: gpd.GeoDataFrame, infra: Infrastructure, *,
                            kind: str = "terrestre", lines: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Raw crossing points of corridors with fragmenting infrastructures (before deduplication).

    ``kind``: ``terrestre`` (roads, railways, canals) or ``aquatique`` (wet corridors: roads and railways only — a
    canal meeting a stream is part of the wet network, not a rupture). ``lines``: the infrastructure lines to cross
    (default: the fragmenting ones of ``rupture_points``).
    """
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    lines = _fragmenting(territory, infra) if lines is None else lines
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


def bridge_ruptures(territory, open_wet: gpd.GeoDataFrame, infra: Infrastructure) -> gpd.GeoDataFrame:
    """Open wet stretches × roads and railways (bridges): :func:`infrastructure_ruptures` of kind ``aquatique``
    with severity ``rupture_points.bridge_severity`` (2: the bed and banks go on under the deck, unlike a culvert,
    ``culvert_severity``; None keeps the crossed infrastructure's friction order)."""
    pts = infrastructure_ruptures(territory, open_wet, infra, kind="aquatique")
    severity = territory.rupture_points.bridge_severity
    if len(pts) and severity is not None:
        pts["severity"] = int(severity)
    return pts


def vigilance_points(territory, corridors: gpd.GeoDataFrame, infra: Infrastructure) -> gpd.GeoDataFrame:
    """Points de vigilance (:data:`VIGILANCE_COLUMNS`, ids ``V0001``…): terrestrial corridors × roads whose
    importance is above ``rupture_points.road_max_importance`` and at most ``vigilance_road_max_importance`` (BD
    TOPO 4: local links), severity ``vigilance_severity`` (2). COST 341 (Iuell et al. 2003) calls such roads
    partial barriers: they kill animals without closing the corridor, so they are published apart from the
    rupture points (not counted with them, no status downgrade). Deduplicated as rupture points."""
    cfg = territory.rupture_points
    top = cfg.vigilance_road_max_importance
    if top is None or corridors.empty or top <= cfg.road_max_importance:
        return empty_frame(territory.crs, VIGILANCE_COLUMNS)
    lines = infra.lines
    imp = pd.to_numeric(lines["infra_class"], errors="coerce")
    sel = lines[(lines["infra_type"] == "road") & (imp > cfg.road_max_importance) & (imp <= top)]
    pts = infrastructure_ruptures(territory, corridors, infra, lines=sel)
    if pts.empty:
        return empty_frame(territory.crs, VIGILANCE_COLUMNS)
    pts["severity"] = int(cfg.vigilance_severity)
    pts = deduplicate(pts, cfg.dedup_tolerance_m)
    pts.insert(0, "id", [f"V{i:04d}" for i in range(1, len(pts) + 1)])
    return pts[VIGILANCE_COLUMNS + ["geometry"]]


def culvert_ruptures(territory, watercourses: gpd.GeoDataFrame, wet: gpd.GeoDataFrame,
                     infra: Infrastructure) -> gpd.GeoDataFrame:
    """One rupture point per culverted watercourse section (``position = culverted``) passing under a road (importance
    ≤ ``culvert_road_max_importance``, default ``road_max_importance``) or a railway of ``railway_status``, at its
    crossing with the most hostile one (ties: the first). ``corridor_id``: the wet
    corridor holding the section (within 1 m), else ``rupture_points.no_corridor_label`` ("hors corridor": a ditch
    culverted under a railway whose watercourse links no wet patch). Severity: ``rupture_points.culvert_severity``."""
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    severity = territory.rupture_points.culvert_severity
    if severity is None or watercourses.empty or "position" not in watercourses.columns:
        return empty_frame(territory.crs, cols)
    lines = _fragmenting(territory, infra, territory.rupture_points.culvert_road_max_importance)
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
        corridor = territory.rupture_points.no_corridor_label
        if len(wet):
            near = wet[wet.geometry.distance(pt) <= 1.0]
            corridor = str(near["id"].iloc[0]) if len(near) else corridor
        rows.append({"corridor_id": corridor, "sous_trame": wet_st, "corridor_kind": "aquatique",
                     "infrastructure": "culvert", "infra_class": p["infra_type"], "infra_name": p["infra_name"],
                     "severity": int(severity)})
        pts.append(pt)
    return gpd.GeoDataFrame(rows, geometry=pts, crs=territory.crs, columns=cols) if rows \
        else empty_frame(territory.crs, cols)


def reservoir_ruptures(territory, reservoirs: gpd.GeoDataFrame, infra: Infrastructure) -> gpd.GeoDataFrame:
    """Points where a barrier (``corridors.missing_links`` selection: motorways, in-use railways, canals — canals
    not for the trame bleue, whose habitat they are) runs through a reservoir: the reservoir is split, a
    "zone de conflit" of the IRSTEA/Cemagref guide. One point per stretch of barrier inside a reservoir (its
    middle), ``corridor_kind`` = ``reservoir``, ``corridor_id`` = the reservoir id, severity from the barrier's
    friction."""
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name", "severity"]
    barriers = barrier_lines(territory, infra)
    if reservoirs.empty or barriers.empty or not territory.rupture_points.include_reservoirs:
        return empty_frame(territory.crs, cols)
    rows, pts = [], []
    bleue = {k for k, v in territory.sous_trames.items() if v.trame == "bleue"}
    left, right = barriers.sindex.query(reservoirs.geometry.values, predicate="intersects")
    for i, j in zip(left, right):
        res, line = reservoirs.iloc[i], barriers.iloc[j]
        if line["infra_type"] == "canal" and res["sous_trame"] in bleue:
            continue
        inter = shapely.intersection(line.geometry, res.geometry)
        for part in shapely.get_parts(shapely.line_merge(inter) if inter.geom_type == "MultiLineString" else inter):
            if part.geom_type != "LineString" or part.length <= 0:
                continue
            rows.append({"corridor_id": res["id"], "sous_trame": res["sous_trame"], "corridor_kind": "reservoir",
                         "infrastructure": line["infra_type"], "infra_class": line["infra_class"],
                         "infra_name": line["infra_name"],
                         "severity": int(severity_from_friction([line["friction"]])[0])})
            pts.append(part.interpolate(0.5, normalized=True))
    return gpd.GeoDataFrame(rows, geometry=pts, crs=territory.crs, columns=cols) if rows \
        else empty_frame(territory.crs, cols)


def missing_link_ruptures(territory, paths: gpd.GeoDataFrame, infra: Infrastructure) -> gpd.GeoDataFrame:
    """Severity-``missing_links.severity`` points where missing links cross a barrier.

    ``paths``: one line per missing-link corridor (its whole potential path) with ``id``, ``sous_trame`` and the
    score columns ``barrier_m``, ``cost_saved``, ``improvement_score``. A path that runs on barrier cells without
    its centre line meeting the barrier line (raster touch) gets one point on the barrier nearest to its midpoint.
    One point per missing link and barrier (``infrastructure`` + ``infra_name``), the first along the path: a
    potential path running along a canal crosses its centre line again and again, yet the link needs one crossing
    structure (Barrier Mapper: one barrier per link).
    """
    cols = ["corridor_id", "sous_trame", "corridor_kind", "infrastructure", "infra_class", "infra_name",
            "severity", *_SCORE_COLUMNS]
    barriers = barrier_lines(territory, infra)
    if paths.empty or barriers.empty:
        return empty_frame(territory.crs, cols)
    pts = infrastructure_ruptures(territory, paths, infra, lines=barriers)
    found = set(pts["corridor_id"]) if len(pts) else set()
    extra = []
    for _, p in paths[~paths["id"].isin(found)].iterrows():
        mid = p.geometry.interpolate(0.5, normalized=True)
        j = int(np.argmin(barriers.distance(mid).to_numpy()))
        line = barriers.iloc[j]
        extra.append({"corridor_id": p["id"], "sous_trame": p["sous_trame"], "corridor_kind": "terrestre",
                      "infrastructure": line["infra_type"], "infra_class": line["infra_class"],
                      "infra_name": line["infra_name"], "severity": 0,
                      "geometry": line.geometry.interpolate(line.geometry.project(mid))})
    if extra:
        pts = gpd.GeoDataFrame(pd.concat([pts, gpd.GeoDataFrame(extra, crs=territory.crs)], ignore_index=True),
                               geometry="geometry", crs=territory.crs)
    if pts.empty:
        return empty_frame(territory.crs, cols)
    along = [paths.set_index("id").geometry.loc[c].project(g) for c, g in zip(pts["corridor_id"], pts.geometry)]
    pts = pts.assign(_along=along).sort_values(["corridor_id", "_along"], kind="stable")
    pts = pts.drop_duplicates(["corridor_id", "infrastructure", "infra_name"]).drop(columns="_along")
    pts = pts.sort_index().reset_index(drop=True)
    scores = paths.set_index("id")
    pts["severity"] = int(territory.corridors.missing_links.severity)
    pts["missing_link"] = 1
    for c in _SCORE_COLUMNS[1:]:
        pts[c] = pts["corridor_id"].map(scores[c]).astype(float).values
    return pts[cols + ["geometry"]]


def _clusters(points: gpd.GeoDataFrame, tolerance_m: float, keys: list[str]) -> np.ndarray:
    """Single-linkage clusters (chains of points within ``tolerance_m``) among points equal on ``keys``: the
    cluster number of each point (its smallest member's position)."""
    parent = np.arange(len(points))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if tolerance_m > 0 and len(points):
        left, right = points.sindex.query(points.geometry, predicate="dwithin", distance=tolerance_m)
        same = left < right
        for k in keys:
            vals = points[k].astype(str).values
            same &= vals[left] == vals[right]
        for a, b in zip(left[same], right[same]):
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(len(points))], dtype=int)


def group_sites(points: gpd.GeoDataFrame, tolerance_m: float) -> pd.Series:
    """Site id (``S0001``…, in order of first point) of each rupture point: one crossing of one infrastructure =
    points of the same ``infrastructure`` and ``infra_name`` within ``tolerance_m`` (chained), any sous-trame."""
    if points.empty:
        return pd.Series([], dtype=str, index=points.index)
    pts = points.reset_index(drop=True)
    groups = _clusters(pts, tolerance_m, ["infrastructure", "infra_name"])
    order = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    return pd.Series([f"S{order[g] + 1:04d}" for g in groups], index=points.index)


def deduplicate(points: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    """Merge points of the same sous-trame and infrastructure type closer than ``tolerance_m`` (single linkage);
    keep the most severe (then the first), ``n_merged`` = number of raw points it stands for."""
    if points.empty:
        out = points.copy()
        out["n_merged"] = pd.Series(dtype=int)
        return out
    pts = points.reset_index(drop=True)
    groups = _clusters(pts, tolerance_m, ["sous_trame", "infrastructure"])
    pts = pts.assign(_g=groups, _order=np.arange(len(pts)))
    counts = pts.groupby("_g").size()
    kept = pts.sort_values(["_g", "severity", "_order"], ascending=[True, False, True], kind="stable")
    kept = kept.drop_duplicates("_g", keep="first").sort_values("_order")
    kept["n_merged"] = kept["_g"].map(counts).astype(int).values
    return kept.drop(columns=["_g", "_order"]).reset_index(drop=True)


def rupture_points(territory, corridors: gpd.GeoDataFrame, infra: Infrastructure, wet: gpd.GeoDataFrame,
                   obstacles: gpd.GeoDataFrame, watercourses: gpd.GeoDataFrame | None = None,
                   missing: gpd.GeoDataFrame | None = None,
                   reservoirs: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """All rupture points (:data:`RUPTURE_COLUMNS` + :data:`OBSTACLE_COLUMNS`), deduplicated, grouped into sites,
    ids ``P0001``…

    ``watercourses`` (from ``prepare_watercourses``) gives the culverts; bridges are counted on the open wet
    stretches only (a culverted stretch under a road is a culvert point, not a bridge). ``missing``: the crossings
    of missing links (:func:`missing_link_ruptures`), listed first so that a tie in deduplication keeps them (they
    carry the improvement score); ``reservoirs``: the reservoirs split by a barrier (:func:`reservoir_ruptures`).
    """
    open_wet = wet[wet["position"].astype(str) != "culverted"] if len(wet) and "position" in wet.columns else wet
    raw = [missing if missing is not None else empty_frame(territory.crs),
           infrastructure_ruptures(territory, corridors, infra),
           reservoir_ruptures(territory, reservoirs, infra) if reservoirs is not None else empty_frame(territory.crs),
           bridge_ruptures(territory, open_wet, infra),
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
    for c in _SCORE_COLUMNS:
        pts[c] = pd.to_numeric(pts[c], errors="coerce").fillna(0.0) if c in pts.columns else 0.0
    pts["missing_link"] = pts["missing_link"].astype(int)
    pts = deduplicate(pts, territory.rupture_points.dedup_tolerance_m)
    pts["site_id"] = group_sites(pts, territory.rupture_points.site_tolerance_m).values
    pts["treated"] = False
    pts.insert(0, "id", [f"P{i:04d}" for i in range(1, len(pts) + 1)])
    return pts[RUPTURE_COLUMNS + OBSTACLE_COLUMNS + ["geometry"]]
