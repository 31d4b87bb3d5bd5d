"""Assembly of the layers engine: the sous-trame parts merged, wet corridors and rupture points computed, and
``tvb.gpkg`` plus the COG rasters written (:func:`assemble`). All outputs are in the territory CRS (EPSG:2154).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from . import labels
from .common import M2_PER_HA, LayerInputError, empty_frame, read_role, read_source, unsynced_gpkg_writes
from .corridors import (
    CORRIDOR_AREA_COLUMNS,
    CORRIDOR_COLUMNS,
    STATUS_ORDER,
    STRETCH_COLUMNS,
    downgrade_status,
    downgrade_stretches,
)
from .reservoirs import RELAY_COLUMNS, RESERVOIR_COLUMNS
from .ruptures import (
    VIGILANCE_COLUMNS,
    fragmenting_lines,
    infrastructure_ruptures,
    rupture_points,
    vigilance_points,
)
from .vectors import vector_context
from .wet import wet_corridors

__all__ = ["assemble", "dissolved_by_status"]

log = logging.getLogger("tvb_tasks.layers.engine")   # the engine's logger, as before the split


def _concat(frames: list[gpd.GeoDataFrame], crs: str, columns: list[str]) -> gpd.GeoDataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame(crs, columns)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=crs)


def _read_part(part: dict, key: str, crs: str, columns: list[str]) -> gpd.GeoDataFrame:
    path = part.get("files", {}).get(key)
    if not path:
        raise LayerInputError(f"sous-trame part {part.get('sous_trame')!r} has no {key!r} file")
    if not Path(path).exists():
        raise LayerInputError(f"sous-trame part {part.get('sous_trame')!r}: {key} file {path} not found")
    gdf = gpd.read_parquet(path)
    if gdf.empty:
        return empty_frame(crs, columns)
    return gdf.rename_geometry("geometry") if gdf.geometry.name != "geometry" else gdf


def _communes(territory, inputs: dict[str, Path]) -> gpd.GeoDataFrame:
    cfg = territory.communes
    gdf = read_source(territory, inputs, cfg.source)
    for col in (cfg.id_column, cfg.name_column):
        if col not in gdf.columns:
            raise LayerInputError(f"source {cfg.source!r}: column {col!r} missing (columns: {list(gdf.columns)})")
    out = gpd.GeoDataFrame({"insee": gdf[cfg.id_column].astype(str).values,
                            "nom": gdf[cfg.name_column].astype(str).values}, geometry=gdf.geometry.values,
                           crs=territory.crs)
    out["libelle"] = out["nom"]
    return out


def _write_layer(gdf: gpd.GeoDataFrame, path: Path, layer: str, geometry_type: str) -> None:
    promote = geometry_type.startswith("Multi")
    pyogrio.write_dataframe(gdf, path, layer=layer, driver="GPKG", geometry_type=geometry_type,
                            promote_to_multi=promote or None)


def _sum_km(gdf: gpd.GeoDataFrame) -> float:
    return float(gdf["length_m"].sum() / 1000) if len(gdf) else 0.0


def _labels(frame: gpd.GeoDataFrame, label) -> Any:
    """``label(frame)``, or an empty text column for an empty layer (an empty list would make it float64, which
    the output suites refuse for ``libelle``)."""
    return label(frame) if len(frame) else pd.Series([], dtype=object, index=frame.index)


HABITAT_PATCH_COLUMNS = ["patch_id", "sous_trame", "area_ha", "area_in_territory_ha"]


def _habitat_patches_layer(territory, parts: list[dict]) -> gpd.GeoDataFrame:
    """Every sous-trame's habitat patches over their full extent (not clipped to the territory: the computation
    buffer completes the patches the outline cuts), ``area_ha`` whole, ``area_in_territory_ha`` inside, with a
    French ``libelle``. For indicators that need whole patches (meff CBC, FragScape practice)."""
    frames = []
    for p in parts:
        path = p.get("files", {}).get("habitat")
        if path and Path(path).exists():
            gdf = gpd.read_parquet(path)
            if len(gdf):
                gdf = gdf.rename_geometry("geometry") if gdf.geometry.name != "geometry" else gdf
                if "area_in_territory_ha" not in gdf.columns:
                    gdf["area_in_territory_ha"] = gdf["area_ha"]
                frames.append(gdf[HABITAT_PATCH_COLUMNS + ["geometry"]])
    out = _concat(frames, territory.crs, HABITAT_PATCH_COLUMNS)
    labels = {k: v.label for k, v in territory.sous_trames.items()}
    out["libelle"] = [f"Tache d'habitat – {labels.get(s, s)} – {a:.1f} ha (dont {i:.1f} ha dans le territoire)"
                      for s, a, i in zip(out["sous_trame"], out["area_ha"], out["area_in_territory_ha"])] \
        if len(out) else []
    return out


def dissolved_by_status(corridors: gpd.GeoDataFrame) -> dict[str, float]:
    """Corridor km dissolved across sous-trames (:func:`tvb_tasks.indicators.communes.dissolved_status_lines`):
    ``corridors`` (total) and ``corridors_<status>``."""
    from tvb_tasks.indicators.communes import dissolved_status_lines

    out = {"corridors": 0.0, **{f"corridors_{s}": 0.0 for s in STATUS_ORDER}}
    if corridors.empty:
        return out
    tiers = dissolved_status_lines(corridors, STATUS_ORDER)
    for status, geom in zip(tiers["status"], tiers.geometry):
        out[f"corridors_{status}"] = float(geom.length / 1000)
    out["corridors"] = sum(out[f"corridors_{s}"] for s in STATUS_ORDER)
    return out


def assemble(territory, inputs: dict[str, Path], parts: list[dict], out_dir: Path) -> dict:
    """Merge the sous-trame parts, compute wet corridors and rupture points, write ``out_dir/tvb.gpkg``
    (layers reservoirs, relays, corridors, corridor_areas, wet_corridors, rupture_points, infrastructure, communes,
    landuse, and habitat_patches — the only layer not clipped to the territory; every one with a French
    ``libelle``) and the COG rasters ``out_dir/rasters/{friction,cost}_<sous_trame>.tif``.

    Returns ``{"gpkg", "rasters", "counts", "lengths_km", "areas_ha", "timings_s"}``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crs = territory.crs
    ctx = vector_context(territory, inputs)       # vectors only: the assembly rasterises nothing
    reservoirs = _concat([_read_part(p, "reservoirs", crs, RESERVOIR_COLUMNS) for p in parts], crs,
                         RESERVOIR_COLUMNS)
    relays = _concat([_read_part(p, "relays", crs, RELAY_COLUMNS) for p in parts], crs, RELAY_COLUMNS)
    corridors = _concat([_read_part(p, "corridors", crs, CORRIDOR_COLUMNS) for p in parts], crs, CORRIDOR_COLUMNS)
    areas = _concat([_read_part(p, "corridor_areas", crs, CORRIDOR_AREA_COLUMNS) for p in parts
                     if p.get("files", {}).get("corridor_areas")], crs, CORRIDOR_AREA_COLUMNS)
    stretches = _concat([_read_part(p, "corridor_stretches", crs, STRETCH_COLUMNS) for p in parts
                         if p.get("files", {}).get("corridor_stretches")], crs, STRETCH_COLUMNS)
    missing = _concat([_read_part(p, "missing_crossings", crs, []) for p in parts
                       if p.get("files", {}).get("missing_crossings")], crs, [])
    t_parts = time.perf_counter() - t0

    t = time.perf_counter()
    wet_st = [p["sous_trame"] for p in parts if territory.sous_trames[p["sous_trame"]].trame == "bleue"]
    wet_patches = _concat([
        reservoirs[reservoirs["sous_trame"].isin(wet_st)].rename(columns={"id": "patch"})
        [["patch", "geometry"]] if len(reservoirs) else empty_frame(crs, ["patch"]),
        relays[relays["sous_trame"].isin(wet_st)].rename(columns={"id": "patch"})[["patch", "geometry"]]
        if len(relays) else empty_frame(crs, ["patch"]),
    ], crs, ["patch"])
    if not wet_st:
        log.warning("no trame bleue sous-trame among the parts: the wet_corridors layer is empty")
    wet, wet_summary = wet_corridors(territory, ctx.watercourses, wet_patches, wet_st, ctx.boundary)
    obstacles = read_role(territory, inputs, "river_obstacles", required=False)
    # culverts are points of the trame bleue: none when no wet sous-trame was computed (a run of chosen sous-trames)
    ruptures = rupture_points(territory, corridors, ctx.infra, wet, obstacles, ctx.watercourses if wet_st else None,
                              missing=missing, reservoirs=reservoirs)
    if len(corridors):      # status downgraded by an untreated rupture point (raw crossings: before deduplication)
        raw = pd.concat([missing, infrastructure_ruptures(territory, corridors, ctx.infra)], ignore_index=True)
        corridors = downgrade_status(corridors, raw, territory.corridors.status.downgrade_min_severity,
                                     territory.corridors.status.downgrade_floor)
        if len(areas):
            areas["status"] = areas["corridor_id"].map(corridors.set_index("id")["status"]).values
        stretches = downgrade_stretches(stretches, raw, territory.corridors.status.downgrade_min_severity,
                                        territory.corridors.status.downgrade_floor,
                                        territory.corridors.status.downgrade_length_m)
    vigilance = vigilance_points(territory, corridors, ctx.infra) if len(corridors) \
        else empty_frame(crs, VIGILANCE_COLUMNS)
    t_wet = time.perf_counter() - t

    t = time.perf_counter()
    reservoirs["libelle"] = _labels(reservoirs, lambda f: labels.label_reservoirs(territory, f))
    relays["libelle"] = _labels(relays, lambda f: labels.label_relays(territory, f))
    corridors["libelle"] = _labels(corridors, lambda f: labels.label_corridors(territory, f))
    stretches["libelle"] = _labels(stretches, lambda f: labels.label_stretches(territory, f))
    areas["libelle"] = _labels(areas, lambda f: labels.label_corridor_areas(territory, f))
    wet["libelle"] = _labels(wet, labels.label_wet)
    ruptures["libelle"] = _labels(ruptures, lambda f: labels.label_ruptures(territory, f))
    vigilance["libelle"] = _labels(vigilance, lambda f: labels.label_vigilance(territory, f))
    patches = _habitat_patches_layer(territory, parts)
    fragmenting = fragmenting_lines(territory, ctx.infra)
    fragmenting = fragmenting.assign(libelle=labels.label_infrastructure(fragmenting))
    landuse = ctx.landuse.drop(columns=[c for c in ("source",) if c in ctx.landuse.columns])
    landuse = landuse.assign(libelle=labels.label_landuse(territory, landuse))
    communes = _communes(territory, inputs)

    gpkg = out_dir / "tvb.gpkg"
    gpkg.unlink(missing_ok=True)
    layers = [("reservoirs", reservoirs, "Polygon"), ("relays", relays, "Polygon"),
              ("corridors", corridors, "MultiLineString"), ("corridor_areas", areas, "MultiPolygon"),
              ("corridor_stretches", stretches, "MultiLineString"),
              ("wet_corridors", wet, "LineString"), ("rupture_points", ruptures, "Point"),
              ("vigilance_points", vigilance, "Point"),
              ("infrastructure", fragmenting, "LineString"),
              ("communes", communes, "MultiPolygon"), ("landuse", landuse, "Polygon"),
              ("habitat_patches", patches, "Polygon")]
    with unsynced_gpkg_writes():       # a build file: hashed and stored before it is published
        for name, gdf, gtype in layers:
            _write_layer(gdf, gpkg, name, gtype)

    rasters = []
    raster_dir = out_dir / "rasters"
    raster_dir.mkdir(exist_ok=True)
    for p in parts:
        for kind in ("friction", "cost"):
            src = Path(p["files"][kind])
            dst = raster_dir / f"{kind}_{p['sous_trame']}.tif"
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            rasters.append(str(dst))
    t_write = time.perf_counter() - t

    verte = list(territory.terrestrial_sous_trames)
    terr_res = reservoirs[reservoirs["sous_trame"].isin(verte)] if len(reservoirs) else reservoirs
    terr_rel = relays[relays["sous_trame"].isin(verte)] if len(relays) else relays
    wet_res = reservoirs[reservoirs["sous_trame"].isin(wet_st)] if len(reservoirs) else reservoirs
    wet_rel = relays[relays["sous_trame"].isin(wet_st)] if len(relays) else relays

    def dissolved_ha(*frames) -> float:
        geoms = [g for f in frames for g in f.geometry] if frames else []
        return float(gpd.GeoSeries(geoms, crs=crs).union_all().area / M2_PER_HA) if geoms else 0.0

    lengths = {"corridors": _sum_km(corridors), "wet_corridors": _sum_km(wet),
               "culverted_watercourses": wet_summary["culverted_km"]}
    by_stretch = stretches if len(stretches) else corridors        # km by status: per stretch (method §6)
    for status in STATUS_ORDER:
        lengths[f"corridors_{status}"] = _sum_km(by_stretch[by_stretch["status"] == status]) \
            if len(by_stretch) else 0.0
    lengths.update({f"{k}_dissolved": v for k, v in dissolved_by_status(by_stretch).items()})
    lengths["corridors_missing_links"] = (_sum_km(corridors[corridors["missing_link"] == 1])
                                          if len(corridors) else 0.0)
    for s in verte:
        lengths[f"corridors_{s}"] = _sum_km(corridors[corridors["sous_trame"] == s]) if len(corridors) else 0.0
    areas = {
        "reservoirs": float(reservoirs["area_ha"].sum()) if len(reservoirs) else 0.0,
        "relays": float(relays["area_ha"].sum()) if len(relays) else 0.0,
        "terrestrial_reservoirs_relays": dissolved_ha(terr_res, terr_rel),
        "wet_reservoirs_relays": dissolved_ha(wet_res, wet_rel),
        "territory": float(ctx.boundary.area / M2_PER_HA),
    }
    for s in territory.computed_sous_trames:
        if len(reservoirs):
            areas[f"reservoirs_{s}"] = float(reservoirs.loc[reservoirs["sous_trame"] == s, "area_ha"].sum())
        if len(relays):
            areas[f"relays_{s}"] = float(relays.loc[relays["sous_trame"] == s, "area_ha"].sum())
    counts = {name: int(len(gdf)) for name, gdf, _ in layers}
    counts["wet_links"] = wet_summary["links"]
    counts["rupture_sites"] = int(ruptures["site_id"].nunique()) if len(ruptures) else 0
    counts["rupture_points_missing_links"] = int((ruptures["missing_link"] == 1).sum()) if len(ruptures) else 0
    counts["missing_links"] = int((corridors["missing_link"] == 1).sum()) if len(corridors) else 0
    return {
        "gpkg": str(gpkg),
        "rasters": rasters,
        "counts": counts,
        "lengths_km": {k: round(v, 3) for k, v in lengths.items()},
        "areas_ha": {k: round(v, 2) for k, v in areas.items()},
        "timings_s": {"read_parts": round(t_parts, 3), "wet_ruptures": round(t_wet, 3),
                      "write": round(t_write, 3), "total": round(time.perf_counter() - t0, 3)},
    }
