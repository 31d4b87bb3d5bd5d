"""Stage entry points of the layers engine: one sous-trame (mapped in parallel), assembly, or both.

``inputs`` maps a YAML source name to the local file of its snapshot (GeoParquet, or any OGR file with the source's
``layer``). All outputs are in the territory CRS (EPSG:2154).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from . import labels
from .common import (M2_PER_HA, Grid, LayerInputError, empty_frame, load_boundary, make_grid, rasterize_values,
                     read_role, read_source, write_cog)
from .corridors import (CORRIDOR_COLUMNS, corridor_lines, cost_from_reservoirs, link_paths, reservoir_sources,
                        select_links)
from .friction import Infrastructure, friction_raster, prepare_infrastructure
from .landuse import class_raster, habitat_patches, habitat_sources, load_landuse
from .reservoirs import (RELAY_COLUMNS, RESERVOIR_COLUMNS, always_reservoir_sous_trames, load_protected_areas,
                         select_reservoirs)
from .ruptures import rupture_points
from .tiles import tiling_config
from .wet import prepare_watercourses, wet_corridors

__all__ = ["compute_sous_trame", "assemble", "compute_layers", "sample_inputs"]

log = logging.getLogger(__name__)


@dataclass
class _Context:
    """Inputs shared by every sous-trame, loaded once per (configuration, inputs)."""

    boundary: object
    grid: Grid
    inside: np.ndarray
    landuse: gpd.GeoDataFrame
    extra: gpd.GeoDataFrame
    protected: gpd.GeoDataFrame
    infra: Infrastructure
    watercourses: gpd.GeoDataFrame
    classes_raster: np.ndarray
    classes: list[str]
    always: dict[int, list[str]]


_CACHE: dict[tuple, _Context] = {}


def _context_key(territory, inputs: dict[str, Path]) -> tuple:
    files = []
    for name, p in sorted(inputs.items()):
        p = Path(p)
        st = p.stat() if p.exists() else None
        files.append((name, str(p), st.st_mtime_ns if st else 0, st.st_size if st else 0))
    return territory.config_hash(), tuple(files)


def _context(territory, inputs: dict[str, Path]) -> _Context:
    key = _context_key(territory, inputs)
    if key in _CACHE:
        return _CACHE[key]
    boundary = load_boundary(territory, inputs)
    grid = make_grid(boundary, territory.resolution_m, territory.crs)
    inside = rasterize_values([boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
    landuse = load_landuse(territory, inputs, boundary)
    extra = habitat_sources(territory, inputs, boundary)
    protected = load_protected_areas(territory, inputs, boundary)
    roads = read_role(territory, inputs, "roads", required=False)
    railways = read_role(territory, inputs, "railways", required=False)
    water = prepare_watercourses(read_role(territory, inputs, "watercourses", required=False), boundary)
    infra = prepare_infrastructure(territory, roads, railways, water, boundary)
    classes_raster, classes = class_raster(territory, landuse, extra, grid, inside)
    always = always_reservoir_sous_trames(territory, protected, landuse, extra)
    ctx = _Context(boundary, grid, inside, landuse, extra, protected, infra, water, classes_raster, classes, always)
    _CACHE.clear()
    _CACHE[key] = ctx
    return ctx


def sample_inputs(territory) -> dict[str, Path]:
    """``inputs`` for the territory's ``file`` sources read in place (the bundled sample), for local runs/tests."""
    return {name: territory.resolve_path(s.path) for name, s in territory.sources.items()
            if s.kind == "file" and s.path}


def _write_parquet(gdf: gpd.GeoDataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(path, index=False)
    return str(path)


def compute_sous_trame(territory, inputs: dict[str, Path], sous_trame: str, out_dir: Path) -> dict:
    """Habitat, reservoirs, relays, friction, cost-distance and (trame verte) corridors of one sous-trame.

    Writes under ``out_dir/<sous_trame>/``: ``habitat.parquet`` (dissolved habitat patches), ``reservoirs.parquet``, ``relays.parquet``, ``corridors.parquet``
    (GeoParquet, EPSG:2154), ``friction.tif``, ``cost.tif`` (float32 COG, nodata -1; cost in
    friction × metres, nodata beyond ``max_cost``). Returns paths (absolute), counts, areas (ha), lengths (km) and
    timings (s).
    """
    if sous_trame not in territory.sous_trames:
        raise LayerInputError(f"unknown sous-trame {sous_trame!r} (known: {sorted(territory.sous_trames)})")
    st = territory.sous_trames[sous_trame]
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ctx = _context(territory, inputs)
    timings["load"] = time.perf_counter() - t0
    grid = ctx.grid
    dest = Path(out_dir) / sous_trame
    dest.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    patches = habitat_patches(territory, sous_trame, ctx.landuse, ctx.extra)
    reservoirs, relays = select_reservoirs(territory, sous_trame, patches, ctx.protected, ctx.always)
    timings["reservoirs"] = time.perf_counter() - t

    t = time.perf_counter()
    friction, lu_friction = friction_raster(territory, sous_trame, ctx.classes_raster, ctx.classes, ctx.infra, grid)
    passable = ctx.inside & np.isfinite(friction)
    timings["friction"] = time.perf_counter() - t

    t = time.perf_counter()
    knight = territory.corridors.neighbours == 16
    src_rc, src_res = reservoir_sources(reservoirs, grid, passable)
    corridors = empty_frame(territory.crs, CORRIDOR_COLUMNS)
    n_links = 0
    if len(src_rc):
        acc, back, alloc = cost_from_reservoirs(friction, src_rc, src_res, grid, max_cost=st.max_cost, knight=knight,
                                                tiling=tiling_config(territory))
        timings["cost_distance"] = time.perf_counter() - t
        t = time.perf_counter()
        if st.trame == "verte":
            links = select_links(friction, acc, alloc, grid, knight=knight, max_cost=st.max_cost,
                                 max_links=territory.corridors.max_links_per_reservoir)
            n_links = len(links)
            paths = link_paths(links, back)
            corridors = corridor_lines(territory, sous_trame, reservoirs, links, paths, friction, lu_friction,
                                       grid)
        del back, alloc
    else:
        acc = np.full(grid.shape, np.nan)
        timings["cost_distance"] = time.perf_counter() - t
        t = time.perf_counter()
    timings["corridors"] = time.perf_counter() - t

    t = time.perf_counter()
    files = {
        "habitat": _write_parquet(patches.assign(sous_trame=sous_trame), dest / "habitat.parquet"),
        "reservoirs": _write_parquet(reservoirs, dest / "reservoirs.parquet"),
        "relays": _write_parquet(relays, dest / "relays.parquet"),
        "corridors": _write_parquet(corridors, dest / "corridors.parquet"),
        "friction": str(write_cog(friction, grid, dest / "friction.tif",
                                  description=f"friction {sous_trame}")),
        "cost": str(write_cog(acc, grid, dest / "cost.tif", overview_resampling="average",
                              description=f"cost distance {sous_trame} (friction x m)")),
    }
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    by_status = corridors.groupby("status")["length_m"].sum() / 1000 if len(corridors) else pd.Series(dtype=float)
    log.info("sous-trame %s: %d reservoirs, %d relays, %d corridors (%.1f km) in %.1f s", sous_trame,
             len(reservoirs), len(relays), len(corridors), corridors["length_m"].sum() / 1000 if len(corridors)
             else 0.0, timings["total"])
    return {
        "sous_trame": sous_trame,
        "trame": st.trame,
        "dir": str(dest),
        "files": files,
        "counts": {"habitat_patches": int(len(patches)), "reservoirs": int(len(reservoirs)),
                   "relays": int(len(relays)), "links": int(n_links), "corridors": int(len(corridors)),
                   "grid_cells": int(grid.shape[0] * grid.shape[1]), "territory_cells": int(ctx.inside.sum())},
        "areas_ha": {"habitat": float(patches["area_ha"].sum()) if len(patches) else 0.0,
                     "reservoirs": float(reservoirs["area_ha"].sum()) if len(reservoirs) else 0.0,
                     "relays": float(relays["area_ha"].sum()) if len(relays) else 0.0},
        "lengths_km": {"corridors": float(corridors["length_m"].sum() / 1000) if len(corridors) else 0.0,
                       **{f"corridors_{k}": float(v) for k, v in by_status.items()}},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


# --- assembly --------------------------------------------------------------------------------------------------
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


def assemble(territory, inputs: dict[str, Path], parts: list[dict], out_dir: Path) -> dict:
    """Merge the sous-trame parts, compute wet corridors and rupture points, write ``out_dir/tvb.gpkg``
    (layers reservoirs, relays, corridors, wet_corridors, rupture_points, communes, landuse; every
    one with a French ``libelle``) and the COG rasters ``out_dir/rasters/{friction,cost}_<sous_trame>.tif``.

    Returns ``{"gpkg", "rasters", "counts", "lengths_km", "areas_ha", "timings_s"}``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crs = territory.crs
    ctx = _context(territory, inputs)
    reservoirs = _concat([_read_part(p, "reservoirs", crs, RESERVOIR_COLUMNS) for p in parts], crs,
                         RESERVOIR_COLUMNS)
    relays = _concat([_read_part(p, "relays", crs, RELAY_COLUMNS) for p in parts], crs, RELAY_COLUMNS)
    corridors = _concat([_read_part(p, "corridors", crs, CORRIDOR_COLUMNS) for p in parts], crs, CORRIDOR_COLUMNS)
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
    ruptures = rupture_points(territory, corridors, ctx.infra, wet, obstacles)
    t_wet = time.perf_counter() - t

    t = time.perf_counter()
    reservoirs["libelle"] = labels.label_reservoirs(territory, reservoirs) if len(reservoirs) else []
    relays["libelle"] = labels.label_relays(territory, relays) if len(relays) else []
    corridors["libelle"] = labels.label_corridors(territory, corridors) if len(corridors) else []
    wet["libelle"] = labels.label_wet(wet) if len(wet) else []
    ruptures["libelle"] = labels.label_ruptures(territory, ruptures) if len(ruptures) else []
    landuse = ctx.landuse.drop(columns=[c for c in ("source",) if c in ctx.landuse.columns])
    landuse = landuse.assign(libelle=labels.label_landuse(territory, landuse))
    communes = _communes(territory, inputs)

    gpkg = out_dir / "tvb.gpkg"
    gpkg.unlink(missing_ok=True)
    layers = [("reservoirs", reservoirs, "Polygon"), ("relays", relays, "Polygon"),
              ("corridors", corridors, "MultiLineString"),
              ("wet_corridors", wet, "LineString"), ("rupture_points", ruptures, "Point"),
              ("communes", communes, "MultiPolygon"), ("landuse", landuse, "Polygon")]
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

    verte = [s for s in territory.terrestrial_sous_trames]
    terr_res = reservoirs[reservoirs["sous_trame"].isin(verte)] if len(reservoirs) else reservoirs
    terr_rel = relays[relays["sous_trame"].isin(verte)] if len(relays) else relays
    wet_res = reservoirs[reservoirs["sous_trame"].isin(wet_st)] if len(reservoirs) else reservoirs
    wet_rel = relays[relays["sous_trame"].isin(wet_st)] if len(relays) else relays

    def dissolved_ha(*frames) -> float:
        geoms = [g for f in frames for g in f.geometry] if frames else []
        return float(gpd.GeoSeries(geoms, crs=crs).union_all().area / M2_PER_HA) if geoms else 0.0

    lengths = {"corridors": _sum_km(corridors), "wet_corridors": _sum_km(wet),
               "culverted_watercourses": wet_summary["culverted_km"]}
    for status in ("existing", "to_restore", "to_create"):
        lengths[f"corridors_{status}"] = _sum_km(corridors[corridors["status"] == status]) if len(corridors) else 0.0
    for s in verte:
        lengths[f"corridors_{s}"] = _sum_km(corridors[corridors["sous_trame"] == s]) if len(corridors) else 0.0
    areas = {
        "reservoirs": float(reservoirs["area_ha"].sum()) if len(reservoirs) else 0.0,
        "relays": float(relays["area_ha"].sum()) if len(relays) else 0.0,
        "terrestrial_reservoirs_relays": dissolved_ha(terr_res, terr_rel),
        "wet_reservoirs_relays": dissolved_ha(wet_res, wet_rel),
        "territory": float(ctx.boundary.area / M2_PER_HA),
    }
    for s in territory.sous_trames:
        if len(reservoirs):
            areas[f"reservoirs_{s}"] = float(reservoirs.loc[reservoirs["sous_trame"] == s, "area_ha"].sum())
        if len(relays):
            areas[f"relays_{s}"] = float(relays.loc[relays["sous_trame"] == s, "area_ha"].sum())
    counts = {name: int(len(gdf)) for name, gdf, _ in layers}
    counts["wet_links"] = wet_summary["links"]
    return {
        "gpkg": str(gpkg),
        "rasters": rasters,
        "counts": counts,
        "lengths_km": {k: round(v, 3) for k, v in lengths.items()},
        "areas_ha": {k: round(v, 2) for k, v in areas.items()},
        "timings_s": {"read_parts": round(t_parts, 3), "wet_ruptures": round(t_wet, 3),
                      "write": round(t_write, 3), "total": round(time.perf_counter() - t0, 3)},
    }


def compute_layers(territory, inputs: dict[str, Path], out_dir: Path, sous_trames: list[str] | None = None) -> dict:
    """:func:`compute_sous_trame` for each sous-trame (all by default, YAML order), then :func:`assemble`.

    Returns the assemble dict plus ``parts`` (each sous-trame's dict).
    """
    names = list(territory.sous_trames) if sous_trames is None else list(sous_trames)
    unknown = [s for s in names if s not in territory.sous_trames]
    if unknown:
        raise LayerInputError(f"unknown sous-trames {unknown} (known: {sorted(territory.sous_trames)})")
    out_dir = Path(out_dir)
    parts = [compute_sous_trame(territory, inputs, s, out_dir / "parts") for s in names]
    result = assemble(territory, inputs, parts, out_dir)
    result["parts"] = parts
    return result
