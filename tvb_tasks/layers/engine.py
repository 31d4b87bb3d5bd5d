"""Stage entry points of the layers engine: one sous-trame (mapped in parallel), assembly (:mod:`.assembly`), or
both.

``inputs`` maps a YAML source name to the local file of its snapshot (GeoParquet, or any OGR file with the source's
``layer``). All outputs are in the territory CRS (EPSG:2154).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import LineString
from shapely.geometry.base import BaseGeometry

from .clip import clip_network
from .common import (
    M2_PER_HA,
    Grid,
    LayerInputError,
    empty_frame,
    make_grid,
    rasterize_values,
    window_in,
    write_cog,
)
from .corridors import (
    CORRIDOR_AREA_COLUMNS,
    CORRIDOR_COLUMNS,
    STRETCH_COLUMNS,
    barrier_crossing_scores,
    corridor_area,
    corridor_lines,
    corridor_stretches,
    cost_from_reservoirs,
    link_paths,
    missing_links,
    reservoir_sources,
    select_links,
    zone_windows,
)
from .friction import Infrastructure, friction_raster
from .landuse import class_raster, habitat_patches
from .reservoirs import (
    select_reservoirs,
)
from .ruptures import (
    barrier_lines,
    missing_link_ruptures,
)
from .vectors import vector_context

__all__ = ["assemble", "compute_layers", "compute_sous_trame", "sample_inputs"]  # noqa: F822 - assemble: see __getattr__

log = logging.getLogger(__name__)


@dataclass
class _Context:
    """Inputs shared by every sous-trame, loaded once per (configuration, inputs).

    The computation extent (``domain``) is the territory buffered by ``territory.analysis_buffer_m()`` (and cut to
    the land-use coverage): habitat, reservoirs, friction and cost-distance are computed on it, outputs are then
    clipped to the territory (``boundary``). ``inside``: cells of the territory; ``extent_mask``: cells of the
    computation extent (territory + buffer); ``landuse``: land use clipped to the territory (published); ``landuse_all``: on the extent.
    """

    boundary: BaseGeometry
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
    domain: BaseGeometry
    extent_mask: np.ndarray
    landuse_all: gpd.GeoDataFrame
    all_watercourses: gpd.GeoDataFrame


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
    v = vector_context(territory, inputs)
    grid = v.grid
    inside = rasterize_values([v.boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
    extent_mask = rasterize_values([v.domain], [1], grid, fill=0, dtype="uint8").astype(bool) | inside
    classes_raster, classes = class_raster(territory, v.landuse_all, v.extra, grid, inside, extent=extent_mask)
    ctx = _Context(v.boundary, grid, inside, v.landuse, v.extra, v.protected, v.infra, v.watercourses,
                   classes_raster, classes, v.always, v.domain, extent_mask, v.landuse_all, v.all_watercourses)
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
                                                tiling=territory.tiling)
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
            crossings = missing_crossings(territory, ctx.infra, corridors, paths + mpaths, grid)
            crossings = _score_crossings(territory, corridors, crossings, all_links, paths + mpaths, friction,
                                         prun, src_rc, src_res, grid, knight)
            stretches = corridor_stretches(corridors, grid, lu_friction, territory.corridors.status)
            corridors = corridors.drop(columns=["_link", "_runs"], errors="ignore")
        del back, alloc
    else:
        acc = np.full(grid.shape, np.nan)
        timings["cost_distance"] = time.perf_counter() - t
        t = time.perf_counter()
    timings["corridors"] = time.perf_counter() - t

    reservoirs, relays, corridors, stretches, areas, crossings = clip_network(
        reservoirs, relays, corridors, stretches, areas, crossings, ctx.boundary,
        buffered=ctx.domain is not ctx.boundary)
    patches = territory_patches(patches, sous_trame, ctx.boundary)
    friction_out, acc_out = _territory_raster(friction, ctx), _territory_raster(acc, ctx)
    out_grid = _territory_grid(ctx)

    t = time.perf_counter()
    files = {
        **write_part_frames(dest, patches, reservoirs, relays, corridors, areas, crossings, stretches),
        "friction": str(write_cog(friction_out, out_grid, dest / "friction.tif",
                                  description=f"friction {sous_trame}")),
        "cost": str(write_cog(acc_out, out_grid, dest / "cost.tif", overview_resampling="average",
                              description=f"cost distance {sous_trame} (friction x m)")),
    }
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    cells = {"grid_cells": int(grid.shape[0] * grid.shape[1]), "territory_cells": int(ctx.inside.sum()),
             "computation_cells": int(ctx.extent_mask.sum())}
    return part_result(territory, sous_trame, dest, files, patches, reservoirs, relays, corridors, areas,
                       links=n_links, missing_links=n_missing, cells=cells, timings=timings)


def territory_patches(patches: gpd.GeoDataFrame, sous_trame: str, boundary: BaseGeometry) -> gpd.GeoDataFrame:
    """The habitat patches as a part publishes them (``habitat.parquet``): whole, with their ``sous_trame`` and
    their area inside the territory ``area_in_territory_ha`` (ha)."""
    return patches.assign(sous_trame=sous_trame,
                          area_in_territory_ha=patches.geometry.intersection(boundary).area / M2_PER_HA
                          if len(patches) else [])


PART_FRAMES = ("habitat", "reservoirs", "relays", "corridors", "corridor_areas", "missing_crossings",
               "corridor_stretches")


def write_part_frames(dest: Path, patches, reservoirs, relays, corridors, areas, crossings, stretches
                      ) -> dict[str, str]:
    """Write a part's GeoParquet files under ``dest`` (names :data:`PART_FRAMES`); their paths by name."""
    frames = (patches, reservoirs, relays, corridors, areas, crossings, stretches)
    return {name: _write_parquet(frame, dest / f"{name}.parquet") for name, frame in zip(PART_FRAMES, frames)}


def part_result(territory, sous_trame: str, dest: Path, files: dict[str, str], patches, reservoirs, relays,
                corridors, areas, *, links: int, missing_links: int, cells: dict[str, int],
                timings: dict[str, float]) -> dict:
    """A sous-trame part's dict (the ``SousTramePart`` contract): paths, counts, areas (ha), lengths (km) and
    timings (s) — the untiled engine's and the tiled part stage's (``tvb_tasks.tiled.stage_tile_part``)."""
    by_status = corridors.groupby("status")["length_m"].sum() / 1000 if len(corridors) else pd.Series(dtype=float)
    log.info("sous-trame %s: %d reservoirs, %d relays, %d corridors (%.1f km) in %.1f s", sous_trame,
             len(reservoirs), len(relays), len(corridors), corridors["length_m"].sum() / 1000 if len(corridors)
             else 0.0, timings.get("total", 0.0))
    return {
        "sous_trame": sous_trame,
        "trame": territory.sous_trames[sous_trame].trame,
        "dir": str(dest),
        "files": files,
        "counts": {"habitat_patches": int(len(patches)), "reservoirs": int(len(reservoirs)),
                   "relays": int(len(relays)), "links": int(links), "corridors": int(len(corridors)),
                   "missing_links": int(missing_links), "corridor_areas": int(len(areas)), **cells},
        "areas_ha": {"habitat": float(patches["area_in_territory_ha"].sum()) if len(patches) else 0.0,
                     "habitat_full_extent": float(patches["area_ha"].sum()) if len(patches) else 0.0,
                     "reservoirs": float(reservoirs["area_ha"].sum()) if len(reservoirs) else 0.0,
                     "relays": float(relays["area_ha"].sum()) if len(relays) else 0.0},
        "lengths_km": {"corridors": float(corridors["length_m"].sum() / 1000) if len(corridors) else 0.0,
                       **{f"corridors_{k}": float(v) for k, v in by_status.items()}},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _territory_window(ctx: _Context) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols) of the territory's own grid inside the computation grid."""
    tg = _territory_grid(ctx)
    r0, c0 = window_in(ctx.grid, tg)
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
    none: tuple[pd.DataFrame, list, list, tuple | None] = (
        pd.DataFrame(columns=["a", "b", "cost", "cell_a", "cell_b"]), [], [], None)
    if not cfg.enabled:
        return none
    if barrier_lines(territory, ctx.infra).empty:
        return none
    potential = potential_friction(territory, sous_trame, ctx, passable)
    barrier = passable & (friction > potential)
    st = territory.sous_trames[sous_trame]
    mlinks, mpaths, infos, run = missing_links(potential, friction, barrier, links, src_rc, src_res, ctx.grid,
                                               knight=knight, max_cost=st.max_cost,
                                               max_links=territory.corridors.max_links_per_reservoir,
                                               min_gain_share=cfg.min_gain_share, max_barrier_m=cfg.max_barrier_m)
    return mlinks, mpaths, infos, (run[0], run[2], potential) if run is not None else None


def potential_friction(territory, sous_trame: str, ctx: _Context, passable: np.ndarray) -> np.ndarray:
    """The missing links' potential friction (float32): the friction rebuilt by :func:`friction_raster` with every
    infrastructure line except the barriers (``ruptures.barrier_lines``), NaN where ``passable`` is False (the
    tiled planner's is :func:`tvb_tasks.layers.windows.window_rasters`' ``potential``)."""
    others = ctx.infra.lines.drop(index=barrier_lines(territory, ctx.infra).index)
    potential, _ = friction_raster(territory, sous_trame, ctx.classes_raster, ctx.classes,
                                   dataclasses.replace(ctx.infra, lines=others, _burns={}), ctx.grid)
    return np.where(passable, potential, np.nan).astype(np.float32)


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

    def area(k: int, a: int, b: int, cost: float):
        run_acc, run_alloc, run_fr = real_run if k < n_real else potential_run
        return corridor_area(cost, a, b, run_acc, run_alloc, run_fr, src_rc, src_res, grid, margin=margin,
                             knight=knight, core=core, windows=windows["real" if k < n_real else "potential"])

    return corridor_area_frame(territory, corridors, links, area, grid)


def corridor_area_frame(territory, corridors: gpd.GeoDataFrame, links: pd.DataFrame, area, grid: Grid
                        ) -> gpd.GeoDataFrame:
    """The corridor polygons layer (:data:`CORRIDOR_AREA_COLUMNS`) of ``corridors`` (with their ``_link``), each
    polygon given by ``area(link row, a, b, link cost)`` (None or empty: no polygon); the untiled engine's and the
    tiled stage's (:func:`tvb_tasks.layers.tile_links.tiled_corridor_area`)."""
    margin = territory.corridors.width.cost_margin
    rows, geoms = [], []
    for _, c in corridors.iterrows():
        k = int(c["_link"])
        geom = area(k, int(links["a"].iloc[k]), int(links["b"].iloc[k]), float(links["cost"].iloc[k]))
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
    radius = territory.corridors.missing_links.barrier_radius_m
    return crossing_score_frame(corridors, crossings, links, paths, lambda xy, a, b, cost, path, pot: (
        barrier_crossing_scores(xy, a, b, cost, path, friction, potential_run[2], src_rc, src_res, grid,
                                knight=knight, radius_m=radius, potential_cost=pot)))


def crossing_score_frame(corridors: gpd.GeoDataFrame, crossings: gpd.GeoDataFrame, links: pd.DataFrame,
                         paths: list, score) -> gpd.GeoDataFrame:
    """``crossings`` with each point's ``cost_saved``, ``barrier_m`` and ``improvement_score`` given by
    ``score(xy (N, 2), a, b, real cost, path, potential cost)`` (the untiled engine's whole-grid
    ``barrier_crossing_scores``, or the tiled stage's, :func:`tvb_tasks.layers.tile_missing.tiled_crossing_scores`)."""
    out = crossings.copy()
    by_id = corridors.set_index("id")
    for cid, idx in out.groupby("corridor_id").groups.items():
        c = by_id.loc[cid]
        k = int(c["_link"])
        pts = out.loc[idx]
        scores = score(np.column_stack([pts.geometry.x, pts.geometry.y]), int(links["a"].iloc[k]),
                       int(links["b"].iloc[k]), float(c["cost"]) + float(c["cost_saved"]), paths[k],
                       float(c["cost"]))
        for col in ("cost_saved", "barrier_m", "improvement_score"):
            out.loc[idx, col] = [sc[col] for sc in scores]
    return out


def missing_crossings(territory, infra, corridors: gpd.GeoDataFrame, paths: list, grid: Grid
                      ) -> gpd.GeoDataFrame:
    """Rupture points where the missing-link corridors' whole paths cross a barrier (severity 4); ``infra``: the
    :class:`~tvb_tasks.layers.friction.Infrastructure` (its lines)."""
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
    return missing_link_ruptures(territory, whole, infra)


def compute_layers(territory, inputs: dict[str, Path], out_dir: Path, sous_trames: list[str] | None = None) -> dict:
    """:func:`compute_sous_trame` for each sous-trame (by default those the territory computes,
    ``Territory.computed_sous_trames``, YAML order), then :func:`assemble`.

    Returns the assemble dict plus ``parts`` (each sous-trame's dict).
    """
    names = list(territory.computed_sous_trames) if sous_trames is None else list(sous_trames)
    unknown = [s for s in names if s not in territory.sous_trames]
    if unknown:
        raise LayerInputError(f"unknown sous-trames {unknown} (known: {sorted(territory.sous_trames)})")
    out_dir = Path(out_dir)
    parts = [compute_sous_trame(territory, inputs, s, out_dir / "parts") for s in names]
    from .assembly import assemble

    result = assemble(territory, inputs, parts, out_dir)
    result["parts"] = parts
    return result


def __getattr__(name: str):
    """The assembly names (:mod:`.assembly`) under their old address; imported lazily, as assembly imports this
    module."""
    if name in ("assemble", "dissolved_by_status", "HABITAT_PATCH_COLUMNS"):
        from . import assembly

        return getattr(assembly, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
