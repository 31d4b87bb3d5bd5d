"""Clipping the layers computed on the buffered extent to the territory (reservoirs, relays, corridors, corridor
polygons): what is published. Split from :mod:`.engine`, which imports these names. CRS: the territory's (m).
"""
from __future__ import annotations

import geopandas as gpd
import pandas as pd
import shapely

from .common import M2_PER_HA, polygons_only


def clip_lines(gdf: gpd.GeoDataFrame, boundary) -> gpd.GeoDataFrame:
    """Lines clipped to the territory (features left empty are dropped), ``length_m`` re-measured."""
    out = gdf.assign(geometry=gdf.geometry.intersection(boundary))
    out = out[~out.geometry.is_empty & out.geometry.notna()].copy()
    out["geometry"] = [shapely.line_merge(g) if g.geom_type == "MultiLineString" else g for g in out.geometry]
    out = out[out.geom_type.isin(["LineString", "MultiLineString"])
              | out.geometry.apply(lambda g: g.geom_type == "GeometryCollection")]
    out["geometry"] = [g if g.geom_type != "GeometryCollection" else
                       shapely.MultiLineString([p for p in shapely.get_parts(g) if p.geom_type == "LineString"])
                       for g in out.geometry]
    out = out[~out.geometry.is_empty]
    if "length_m" in out.columns:
        out["length_m"] = out.length
    return out.reset_index(drop=True)


def clip_to_territory(reservoirs: gpd.GeoDataFrame, relays: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame,
                      boundary) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Publishable reservoirs, relays and corridors: features computed on the buffered extent, clipped to the
    territory.

    Reservoirs and relays keep the size class of their whole patch (thresholds applied before clipping);
    ``patch_area_ha`` is the whole area, ``area_ha`` the area inside the territory. Features wholly outside are
    dropped and ids renumbered (``<st>-Rnnn`` by decreasing area inside); corridors keep their ids when both ends
    are published reservoirs; a corridor towards a reservoir wholly in the buffer is dropped (its crossing of the
    outline is a continuity with the neighbouring territory, counted by the caller).
    """
    def clip_polys(gdf: gpd.GeoDataFrame, tag: str) -> tuple[gpd.GeoDataFrame, dict]:
        if gdf.empty:
            return gdf.assign(patch_area_ha=pd.Series(dtype=float)), {}
        full = gdf["area_ha"].to_numpy()
        out = gdf.assign(patch_area_ha=full, geometry=gdf.geometry.intersection(boundary))
        out = polygons_only(out) if len(out) else out
        if out.empty:
            return out, {}
        # a reservoir cut in two by the outline keeps its largest part inside (layers are single polygons)
        out = out.assign(_a=out.area).sort_values("_a", ascending=False, kind="stable")
        out = out.drop_duplicates("id", keep="first").drop(columns="_a")
        out["area_ha"] = out.area / M2_PER_HA
        out = out[out["area_ha"] > 0].sort_values(["area_ha", "id"], ascending=[False, True], kind="stable")
        st = out["sous_trame"].iloc[0] if len(out) else ""
        new = [f"{st}-{tag}{i:03d}" for i in range(1, len(out) + 1)]
        mapping = dict(zip(out["id"], new))
        out["id"] = new
        cols = [c for c in gdf.columns if c != "geometry"] + ["patch_area_ha"]
        return out[list(dict.fromkeys(cols)) + ["geometry"]].reset_index(drop=True), mapping

    res, res_map = clip_polys(reservoirs, "R")
    rel, _ = clip_polys(relays, "Z")
    cor = corridors
    if len(cor):
        keep = cor["from_id"].isin(res_map) & cor["to_id"].isin(res_map)
        cor = cor[keep].copy()
        cor["from_id"] = cor["from_id"].map(res_map)
        cor["to_id"] = cor["to_id"].map(res_map)
        cor = cor.reset_index(drop=True)
    return res, rel, cor


def clip_corridor_areas(areas: gpd.GeoDataFrame, kept: set, boundary) -> gpd.GeoDataFrame:
    """Corridor polygons of the published corridors (``kept`` ids), clipped to the territory, ``area_ha``
    re-measured (``mean_width_m`` stays that of the whole corridor)."""
    if areas.empty:
        return areas
    out = areas[areas["corridor_id"].isin(kept)]
    geoms = []
    for g in out.geometry.intersection(boundary):      # one (Multi)Polygon per corridor, as before clipping
        polys = [p for p in shapely.get_parts(shapely.get_parts(g)) if p.geom_type == "Polygon" and p.area > 0]
        geoms.append(shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0] if polys else None)
    out = out.assign(geometry=geoms)
    out = out[out.geometry.notna()]
    if len(out):
        out = out.assign(area_ha=out.geometry.area / M2_PER_HA)
    return out.reset_index(drop=True)


def clip_network(reservoirs: gpd.GeoDataFrame, relays: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame,
                 stretches: gpd.GeoDataFrame, areas: gpd.GeoDataFrame, crossings: gpd.GeoDataFrame, boundary, *,
                 buffered: bool = True) -> tuple[gpd.GeoDataFrame, ...]:
    """A sous-trame's layers computed on the buffered extent, as published (the untiled engine's and the tiled
    part task's one clipping): corridor and stretch lines cut to the territory (:func:`clip_lines`),
    reservoirs, relays and corridors by :func:`clip_to_territory`, then the stretches, corridor polygons and
    missing-link crossings of the corridors kept (polygons cut, crossings inside the outline). Returns
    ``(reservoirs, relays, corridors, stretches, areas, crossings)``. ``buffered=False`` (no computation buffer:
    everything is already inside): nothing clipped, ``patch_area_ha`` = ``area_ha``."""
    if not buffered:
        reservoirs = reservoirs.assign(patch_area_ha=reservoirs["area_ha"]) if len(reservoirs) else reservoirs
        relays = relays.assign(patch_area_ha=relays["area_ha"]) if len(relays) else relays
        return reservoirs, relays, corridors, stretches, areas, crossings
    if len(corridors):
        corridors = clip_lines(corridors, boundary)
        stretches = clip_lines(stretches, boundary) if len(stretches) else stretches
    reservoirs, relays, corridors = clip_to_territory(reservoirs, relays, corridors, boundary)
    kept = set(corridors["id"]) if len(corridors) else set()
    areas = clip_corridor_areas(areas, kept, boundary)
    if len(stretches):
        stretches = stretches[stretches["corridor_id"].isin(kept)].reset_index(drop=True)
    if len(crossings):
        crossings = crossings[crossings["corridor_id"].isin(kept)
                              & crossings.geometry.within(boundary)].reset_index(drop=True)
    return reservoirs, relays, corridors, stretches, areas, crossings
