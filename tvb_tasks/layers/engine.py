"""Stage entry points of the layers engine: one sous-trame (mapped in parallel), assembly, or both.

``inputs`` maps a YAML source name to the local file of its snapshot (GeoParquet, or any OGR file with the source's
``layer``). All outputs are in the territory CRS (EPSG:2154).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely import LineString

from . import labels
from .common import (M2_PER_HA, Grid, LayerInputError, empty_frame, load_boundary, make_grid, polygons_only,
                     rasterize_values, read_role, read_source, write_cog)
from .corridors import (CORRIDOR_AREA_COLUMNS, CORRIDOR_COLUMNS, STATUS_ORDER, corridor_area, corridor_lines,
                        cost_from_reservoirs, downgrade_status, link_paths, missing_links, reservoir_sources,
                        select_links, zone_windows)
from .corridors import STRETCH_COLUMNS, barrier_crossing_scores, corridor_stretches, downgrade_stretches
from .friction import Infrastructure, friction_raster, prepare_infrastructure, prepare_overlays
from .landuse import class_raster, habitat_patches, habitat_sources, load_landuse
from .reservoirs import (RELAY_COLUMNS, RESERVOIR_COLUMNS, always_reservoir_sous_trames, load_protected_areas,
                         select_reservoirs)
from .ruptures import (VIGILANCE_COLUMNS, barrier_lines, fragmenting_lines, infrastructure_ruptures,
                       missing_link_ruptures, rupture_points, vigilance_points)
from .tiles import tiling_config
from .wet import prepare_watercourses, wet_corridors

__all__ = ["compute_sous_trame", "assemble", "compute_layers", "sample_inputs"]

log = logging.getLogger(__name__)


@dataclass
class _Context:
    """Inputs shared by every sous-trame, loaded once per (configuration, inputs).

    The computation extent (``domain``) is the territory buffered by ``territory.analysis_buffer_m()`` (and cut to
    the land-use coverage): habitat, reservoirs, friction and cost-distance are computed on it, outputs are then
    clipped to the territory (``boundary``). ``inside``: cells of the territory; ``extent_mask``: cells of the
    computation extent (territory + buffer); ``landuse``: land use clipped to the territory (published); ``landuse_all``: on the extent.
    """

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
    domain: object = None
    extent_mask: np.ndarray | None = None
    landuse_all: gpd.GeoDataFrame | None = None
    all_watercourses: gpd.GeoDataFrame | None = None


_CACHE: dict[tuple, _Context] = {}


def _context_key(territory, inputs: dict[str, Path]) -> tuple:
    files = []
    for name, p in sorted(inputs.items()):
        p = Path(p)
        st = p.stat() if p.exists() else None
        files.append((name, str(p), st.st_mtime_ns if st else 0, st.st_size if st else 0))
    return territory.config_hash(), tuple(files)


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


def _context(territory, inputs: dict[str, Path]) -> _Context:
    key = _context_key(territory, inputs)
    if key in _CACHE:
        return _CACHE[key]
    boundary = load_boundary(territory, inputs)
    buffer_m = territory.analysis_buffer_m()
    domain = shapely.make_valid(boundary.buffer(buffer_m)) if buffer_m > 0 else boundary
    landuse_all = load_landuse(territory, inputs, domain)
    # the grid covers the territory and the part of the buffer that has land-use data
    extent = boundary.union(domain.intersection(shapely.box(*landuse_all.total_bounds))) if len(landuse_all) \
        else boundary
    grid = make_grid(extent, territory.resolution_m, territory.crs)
    inside = rasterize_values([boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
    extent_mask = rasterize_values([domain], [1], grid, fill=0, dtype="uint8").astype(bool) | inside
    landuse = polygons_only(landuse_all.clip(boundary)) if buffer_m > 0 else landuse_all
    overlays = prepare_overlays(territory, _overlay_frames(territory, inputs), domain)
    extra = habitat_sources(territory, inputs, domain, overlays)
    protected = load_protected_areas(territory, inputs, domain)
    roads = read_role(territory, inputs, "roads", required=False)
    railways = read_role(territory, inputs, "railways", required=False)
    raw_water = read_role(territory, inputs, "watercourses", required=False)
    water = prepare_watercourses(raw_water, boundary)
    water_all = prepare_watercourses(raw_water, domain) if buffer_m > 0 else water
    infra = prepare_infrastructure(territory, roads, railways, water_all, domain, overlays)
    classes_raster, classes = class_raster(territory, landuse_all, extra, grid, inside, extent=extent_mask)
    always = always_reservoir_sous_trames(territory, protected, landuse_all, extra)
    ctx = _Context(boundary, grid, inside, landuse, extra, protected, infra, water, classes_raster, classes, always,
                   domain, extent_mask, landuse_all, water_all)
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
    patches = habitat_patches(territory, sous_trame, ctx.landuse_all, ctx.extra)
    reservoirs, relays = select_reservoirs(territory, sous_trame, patches, ctx.protected, ctx.always)
    timings["reservoirs"] = time.perf_counter() - t

    t = time.perf_counter()
    friction, lu_friction = friction_raster(territory, sous_trame, ctx.classes_raster, ctx.classes, ctx.infra, grid)
    passable = ctx.extent_mask & np.isfinite(friction)
    timings["friction"] = time.perf_counter() - t

    t = time.perf_counter()
    knight = territory.corridors.neighbours == 16
    src_rc, src_res = reservoir_sources(reservoirs, grid, passable)
    corridors = empty_frame(territory.crs, CORRIDOR_COLUMNS)
    areas = empty_frame(territory.crs, CORRIDOR_AREA_COLUMNS)
    crossings = empty_frame(territory.crs)
    stretches = empty_frame(territory.crs, STRETCH_COLUMNS)
    n_links = n_missing = 0
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
            mlinks, mpaths, minfo, prun = _missing_links(territory, sous_trame, ctx, friction, passable, links,
                                                         src_rc, src_res, knight)
            timings["missing_links"] = time.perf_counter() - t
            n_missing = len(mlinks)
            all_links = pd.concat([links, mlinks], ignore_index=True) if n_missing else links
            corridors = corridor_lines(territory, sous_trame, reservoirs, all_links, paths + mpaths, friction,
                                       lu_friction, grid, missing=[None] * len(paths) + minfo)
            t2 = time.perf_counter()
            areas = _corridor_areas(territory, corridors, all_links, len(links), (acc, alloc, friction), prun,
                                    src_rc, src_res, grid, knight)
            timings["corridor_areas"] = time.perf_counter() - t2
            crossings = _missing_crossings(territory, ctx, corridors, paths + mpaths, grid)
            crossings = _score_crossings(territory, corridors, crossings, all_links, paths + mpaths, friction,
                                         prun, src_rc, src_res, grid, knight)
            stretches = corridor_stretches(corridors, grid, lu_friction, territory.corridors.status)
            corridors = corridors.drop(columns=["_link", "_runs"], errors="ignore")
        del back, alloc
        if len(corridors) and ctx.domain is not ctx.boundary:
            corridors = _clip_lines(corridors, ctx.boundary)
            stretches = _clip_lines(stretches, ctx.boundary) if len(stretches) else stretches
    else:
        acc = np.full(grid.shape, np.nan)
        timings["cost_distance"] = time.perf_counter() - t
        t = time.perf_counter()
    timings["corridors"] = time.perf_counter() - t

    if ctx.domain is not ctx.boundary:
        reservoirs, relays, corridors = clip_to_territory(reservoirs, relays, corridors, ctx.boundary)
        kept = set(corridors["id"]) if len(corridors) else set()
        areas = _clip_corridor_areas(areas, kept, ctx.boundary)
        stretches = stretches[stretches["corridor_id"].isin(kept)].reset_index(drop=True) if len(stretches) \
            else stretches
        if len(crossings):
            crossings = crossings[crossings["corridor_id"].isin(kept)
                                  & crossings.geometry.within(ctx.boundary)].reset_index(drop=True)
    else:
        reservoirs = reservoirs.assign(patch_area_ha=reservoirs["area_ha"]) if len(reservoirs) else reservoirs
        relays = relays.assign(patch_area_ha=relays["area_ha"]) if len(relays) else relays
    patches = patches.assign(sous_trame=sous_trame,
                             area_in_territory_ha=patches.geometry.intersection(ctx.boundary).area / M2_PER_HA
                             if len(patches) else [])
    friction_out, acc_out = _territory_raster(friction, ctx), _territory_raster(acc, ctx)
    out_grid = _territory_grid(ctx)

    t = time.perf_counter()
    files = {
        "habitat": _write_parquet(patches, dest / "habitat.parquet"),
        "reservoirs": _write_parquet(reservoirs, dest / "reservoirs.parquet"),
        "relays": _write_parquet(relays, dest / "relays.parquet"),
        "corridors": _write_parquet(corridors, dest / "corridors.parquet"),
        "corridor_areas": _write_parquet(areas, dest / "corridor_areas.parquet"),
        "missing_crossings": _write_parquet(crossings, dest / "missing_crossings.parquet"),
        "corridor_stretches": _write_parquet(stretches, dest / "corridor_stretches.parquet"),
        "friction": str(write_cog(friction_out, out_grid, dest / "friction.tif",
                                  description=f"friction {sous_trame}")),
        "cost": str(write_cog(acc_out, out_grid, dest / "cost.tif", overview_resampling="average",
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
                   "missing_links": int(n_missing), "corridor_areas": int(len(areas)),
                   "grid_cells": int(grid.shape[0] * grid.shape[1]), "territory_cells": int(ctx.inside.sum()),
                   "computation_cells": int(ctx.extent_mask.sum())},
        "areas_ha": {"habitat": float(patches["area_in_territory_ha"].sum()) if len(patches) else 0.0,
                     "habitat_full_extent": float(patches["area_ha"].sum()) if len(patches) else 0.0,
                     "reservoirs": float(reservoirs["area_ha"].sum()) if len(reservoirs) else 0.0,
                     "relays": float(relays["area_ha"].sum()) if len(relays) else 0.0},
        "lengths_km": {"corridors": float(corridors["length_m"].sum() / 1000) if len(corridors) else 0.0,
                       **{f"corridors_{k}": float(v) for k, v in by_status.items()}},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


# --- clipping to the territory ------------------------------------------------------------------------------------
def _clip_lines(gdf: gpd.GeoDataFrame, boundary) -> gpd.GeoDataFrame:
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


def _clip_corridor_areas(areas: gpd.GeoDataFrame, kept: set, boundary) -> gpd.GeoDataFrame:
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


def _territory_window(ctx: _Context) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols) of the territory's own grid inside the computation grid."""
    g = ctx.grid
    tg = make_grid(ctx.boundary, g.res, g.crs)
    r0 = int(round((g.transform.f - tg.transform.f) / g.res))
    c0 = int(round((tg.transform.c - g.transform.c) / g.res))
    return r0, c0, tg.shape[0], tg.shape[1]


def _territory_grid(ctx: _Context) -> Grid:
    return make_grid(ctx.boundary, ctx.grid.res, ctx.grid.crs)


def _territory_raster(array: np.ndarray, ctx: _Context) -> np.ndarray:
    """A computation-grid raster cut to the territory grid, NaN outside the territory (published rasters)."""
    r0, c0, h, w = _territory_window(ctx)
    out = np.asarray(array, dtype=np.float32)[r0:r0 + h, c0:c0 + w].copy()
    out[~ctx.inside[r0:r0 + h, c0:c0 + w]] = np.nan
    return out
def _missing_links(territory, sous_trame: str, ctx: _Context, friction: np.ndarray, passable: np.ndarray,
                   links: pd.DataFrame, src_rc: np.ndarray, src_res: np.ndarray, knight: bool):
    """Missing links of a sous-trame (see :func:`tvb_tasks.layers.corridors.missing_links`): the potential friction
    is the friction rebuilt by :func:`friction_raster` with every infrastructure except the barriers."""
    cfg = territory.corridors.missing_links
    none = (pd.DataFrame(columns=["a", "b", "cost", "cell_a", "cell_b"]), [], [], None)
    if not cfg.enabled:
        return none
    barriers = barrier_lines(territory, ctx.infra)
    if barriers.empty:
        return none
    others = ctx.infra.lines.drop(index=barriers.index)
    potential, _ = friction_raster(territory, sous_trame, ctx.classes_raster, ctx.classes,
                                   dataclasses.replace(ctx.infra, lines=others, _burns={}), ctx.grid)
    barrier = passable & (friction > potential)
    st = territory.sous_trames[sous_trame]
    potential = np.where(passable, potential, np.nan).astype(np.float32)
    mlinks, mpaths, infos, run = missing_links(potential, friction, barrier, links, src_rc, src_res, ctx.grid,
                                               knight=knight, max_cost=st.max_cost,
                                               max_links=territory.corridors.max_links_per_reservoir,
                                               min_gain_share=cfg.min_gain_share, max_barrier_m=cfg.max_barrier_m)
    return mlinks, mpaths, infos, (run[0], run[2], potential) if run is not None else None


def _corridor_areas(territory, corridors: gpd.GeoDataFrame, links: pd.DataFrame, n_real: int, real_run: tuple,
                    potential_run, src_rc: np.ndarray, src_res: np.ndarray, grid: Grid, knight: bool
                    ) -> gpd.GeoDataFrame:
    """Least-cost corridor polygons (:data:`CORRIDOR_AREA_COLUMNS`), one per drawn corridor, outside the
    sous-trame's reservoir cells; missing links use the potential (barrier-free) run. ``mean_width_m`` = area /
    length of the corridor's whole path."""
    margin = territory.corridors.width.cost_margin
    core = np.zeros(grid.shape, dtype=bool)              # reservoir cells: not part of the corridor polygon
    core[src_rc[:, 0], src_rc[:, 1]] = True
    windows = {"real": zone_windows(real_run[1]),
               "potential": zone_windows(potential_run[1]) if potential_run is not None else None}
    rows, geoms = [], []
    for _, c in corridors.iterrows():
        k = int(c["_link"])
        run_acc, run_alloc, run_fr = real_run if k < n_real else potential_run
        a, b = int(links["a"].iloc[k]), int(links["b"].iloc[k])
        geom = corridor_area(float(links["cost"].iloc[k]), a, b, run_acc, run_alloc, run_fr, src_rc, src_res, grid,
                             margin=margin, knight=knight, core=core,
                             windows=windows["real" if k < n_real else "potential"])
        if geom is None or geom.is_empty:
            continue
        rows.append({"corridor_id": c["id"], "sous_trame": c["sous_trame"], "status": c["status"],
                     "missing_link": int(c["missing_link"]), "cost_margin": float(margin)})
        geoms.append(geom)
    if not rows:
        return empty_frame(territory.crs, CORRIDOR_AREA_COLUMNS)
    out = gpd.GeoDataFrame(rows, geometry=geoms, crs=territory.crs)
    out["area_ha"] = out.geometry.area / M2_PER_HA
    length = corridors.set_index("id")["path_length_m"]
    out["mean_width_m"] = (out.geometry.area / out["corridor_id"].map(length).clip(lower=grid.res)).values
    out.insert(0, "id", [f"{cid}-A" for cid in out["corridor_id"]])
    return out[CORRIDOR_AREA_COLUMNS + ["geometry"]]


def _score_crossings(territory, corridors: gpd.GeoDataFrame, crossings: gpd.GeoDataFrame, links: pd.DataFrame,
                     paths: list, friction: np.ndarray, potential_run, src_rc: np.ndarray, src_res: np.ndarray,
                     grid: Grid, knight: bool) -> gpd.GeoDataFrame:
    """Each missing-link crossing's own ``cost_saved``, ``barrier_m`` and ``improvement_score``
    (:func:`tvb_tasks.layers.corridors.barrier_crossing_scores`: only the barrier within
    ``missing_links.barrier_radius_m`` of the point made passable); the corridor keeps the link's combined one."""
    if crossings.empty or potential_run is None:
        return crossings
    out = crossings.copy()
    by_id = corridors.set_index("id")
    for cid, idx in out.groupby("corridor_id").groups.items():
        c = by_id.loc[cid]
        k = int(c["_link"])
        pts = out.loc[idx]
        scores = barrier_crossing_scores(
            np.column_stack([pts.geometry.x, pts.geometry.y]), int(links["a"].iloc[k]), int(links["b"].iloc[k]),
            float(c["cost"]) + float(c["cost_saved"]), paths[k], friction, potential_run[2], src_rc, src_res, grid,
            knight=knight, radius_m=territory.corridors.missing_links.barrier_radius_m,
            potential_cost=float(c["cost"]))
        for col in ("cost_saved", "barrier_m", "improvement_score"):
            out.loc[idx, col] = [sc[col] for sc in scores]
    return out


def _missing_crossings(territory, ctx: _Context, corridors: gpd.GeoDataFrame, paths: list, grid: Grid
                       ) -> gpd.GeoDataFrame:
    """Rupture points where the missing-link corridors' whole paths cross a barrier (severity 4)."""
    miss = corridors[corridors["missing_link"] == 1]
    if miss.empty:
        return empty_frame(territory.crs)
    geoms = []
    for k in miss["_link"]:
        r, c = np.array(paths[int(k)]).T
        x, y = grid.cell_centres(r, c)
        geoms.append(LineString(np.column_stack([x, y])))
    whole = gpd.GeoDataFrame(miss[["id", "sous_trame", "barrier_m", "cost_saved", "improvement_score"]]
                             .reset_index(drop=True), geometry=geoms, crs=territory.crs)
    return missing_link_ruptures(territory, whole, ctx.infra)


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
    ctx = _context(territory, inputs)
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
    ruptures = rupture_points(territory, corridors, ctx.infra, wet, obstacles, ctx.watercourses, missing=missing,
                              reservoirs=reservoirs)
    if len(corridors):      # status downgraded by an untreated rupture point (raw crossings: before deduplication)
        raw = pd.concat([missing, infrastructure_ruptures(territory, corridors, ctx.infra)], ignore_index=True)
        corridors = downgrade_status(corridors, raw, territory.corridors.status.downgrade_min_severity,
                                     territory.corridors.status.downgrade_floor)
        if len(areas):
            areas["status"] = areas["corridor_id"].map(corridors.set_index("id")["status"]).values
        stretches = downgrade_stretches(stretches, raw, territory.corridors.status.downgrade_min_severity,
                                        territory.corridors.status.downgrade_floor)
    vigilance = vigilance_points(territory, corridors, ctx.infra) if len(corridors) \
        else empty_frame(crs, VIGILANCE_COLUMNS)
    t_wet = time.perf_counter() - t

    t = time.perf_counter()
    reservoirs["libelle"] = labels.label_reservoirs(territory, reservoirs) if len(reservoirs) else []
    relays["libelle"] = labels.label_relays(territory, relays) if len(relays) else []
    corridors["libelle"] = labels.label_corridors(territory, corridors) if len(corridors) else []
    stretches["libelle"] = labels.label_stretches(territory, stretches) if len(stretches) else []
    areas["libelle"] = labels.label_corridor_areas(territory, areas) if len(areas) else []
    wet["libelle"] = labels.label_wet(wet) if len(wet) else []
    ruptures["libelle"] = labels.label_ruptures(territory, ruptures) if len(ruptures) else []
    vigilance["libelle"] = labels.label_vigilance(territory, vigilance) if len(vigilance) else []
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
    for s in territory.sous_trames:
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
