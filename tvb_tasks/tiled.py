"""Stages of a tiled territory's sous-trames (``dags/tvb_observatory_tiled.py``): tiles × sous-trames as mapped
tasks, then each sous-trame's part, so that no task of a tiled observatory run holds a whole-grid raster.

Every function takes the ``run`` dict of :func:`tvb_tasks.pipeline.stage_fetch` (store URI, territory, snapshot
keys) and returns small JSON values (contracts :class:`~tvb_tasks.contracts.TileItem`, ``TileRound``, ``StitchedCost``) (tile ids, store keys, counts); the rasters travel through the store as per-tile
objects under ``work/<territory>/<input key>/tiles/<sous_trame>/`` (:mod:`tvb_tasks.layers.tiles`), never through
XCom. A tile task holds one window and at most two cores in memory, so its memory depends on
``tiling.tile_size`` / ``overlap``, not on the territory. Every stage runs under :func:`tvb_tasks.memory.memory_bound`
at ``tiling.memory_limit_gib``: its writable memory is capped while it runs (the allocation that would cross the
bound fails), a watchdog stops it when its resident memory does, and its peak RSS is checked after (and returned by
the tile tasks); each fails with a :class:`~tvb_tasks.memory.MemoryBoundError` naming the task, the memory reached
and the setting — not with the worker's OOM kill, which leaves no message.

The planning task of a sous-trame holds no whole-territory raster either: it loads the vector inputs (memory ∝
number of features) and rasterises class, extent, friction and reservoir sources tile window by tile window
(:mod:`tvb_tasks.layers.windows`), writing the same per-tile inputs as the whole-grid rasters cut by
``plan_to_store`` would (:func:`cost_problem`, the untiled engine's friction and sources, is kept as that
reference and for the benchmarks).

The stitching task writes the published ``cost.tif`` tile by tile (:func:`tvb_tasks.layers.stitch.stitch_cost_cog`):
it reads one core at a time from the store, cuts it to the territory window (computed from the outline's bounds)
and masks the cells outside the outline by rasterising it on that window only, then builds the COG from that file
on disk with a bounded GDAL cache; the result is the whole-array stitch + ``write_cog`` file exactly (values,
overviews, profile; ``tests/test_tile_stitch.py``). Its memory is the interpreter (≈ 0.37 GB) + one core + the
GDAL cache (``stitch.CACHE_MB``, 64 MB), not the grid: peak RSS 0.51 / 0.62 / 0.53 GB for grids of
15 / 60 / 183 M cells, against 0.88 / 2.26 / 4.94 GB for the former whole-array stitch + ``write_cog``
(``bench/region_tiles.py --publish``; docs/operations.md, "Region scale").

The part task of a sous-trame (:func:`stage_tile_part`) writes the files and returns the contract of the untiled
``pipeline.stage_compute_sous_trame`` (``SousTramePart``), equal to them: habitat, reservoirs and relays from the
vectors, ``friction.tif`` stitched from the tile inputs (:func:`tvb_tasks.layers.stitch.stitch_friction_cog`),
``cost.tif`` from the stitch task, and for a trame verte the corridors read from the tiles
(:mod:`tvb_tasks.layers.tile_links`): links per tile core with a 2-cell halo merged by pair, paths through the
back-links of cores read on demand, friction and land-use friction gathered along the paths, corridor polygons on
the window of each link's two zones; then the same ``corridor_lines`` / ``corridor_area`` /
``corridor_stretches`` code and clipping as the untiled engine. Missing links (:mod:`tvb_tasks.layers.tile_missing`):
the planning task also plans the potential problem (friction without the barrier lines) under
``tiles/<sous_trame>/potential``, run in the same rounds (items keyed ``<sous_trame>/potential``); its links and
paths, the engine's rules (``corridors.fracture_candidates`` / ``keep_missing``), the real least-cost distances on
windows bounded by the cut-off cost, and each barrier crossing's score on its window. The corridors, polygons,
stretches and missing-link crossings equal the untiled engine's (missing links enabled). Everything after the parts
(assembly: rupture points, their deduplication and the status downgrades; indicators; validation; publish) is the
untiled territory's: it reads vectors (the assembly's :func:`~tvb_tasks.layers.vectors.vector_context`) and copies
the rasters. :func:`run_tiled_parts` runs the stages for ``tvb run`` (``pipeline.run_pipeline``), each task in its
own process as in the DAG, so that the bound is each task's.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing as mp
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple, TypedDict, cast

from .contracts import FetchedRun, SousTramePart, StitchedCost, TileItem, TileRound
from .errors import DeterministicError, TVBError
from .memory import check_peak, memory_bound, peak_mb
from .pipeline import _local_dir, _snapshot_paths, _territory, _work_prefix
from .store import open_store

log = logging.getLogger(__name__)

__all__ = ["MAX_WORKERS", "TaskRun", "files_run", "run_tiled_parts", "stage_next_round", "stage_plan_tiles",
           "stage_run_tile", "stage_stitch_tiles", "stage_tile_part"]


#: The potential (barrier-free) problem of a sous-trame's missing links: items and prefix ``<sous_trame>/potential``.
POTENTIAL = "potential"


def _prefix(run: FetchedRun, sous_trame: str) -> str:
    """Store prefix of a tiled problem: ``tiles/<sous_trame>``, or ``tiles/<sous_trame>/potential`` for the key
    ``<sous_trame>/potential`` (the items of the potential run carry that key)."""
    return f"{_work_prefix(run)}/tiles/{sous_trame}"


def _with_missing_links(territory, sous_trame: str) -> bool:
    return territory.sous_trames[sous_trame].trame == "verte" and territory.corridors.missing_links.enabled


def _bounded(task, hint: str = ""):
    """Run a stage under :func:`tvb_tasks.memory.memory_bound` at its territory's ``tiling.memory_limit_gib``
    (enforced while it runs, peak checked after); ``task(run, *args)`` names the task in the error."""
    def deco(fn):
        @functools.wraps(fn)
        def stage(run, *args, **kwargs):
            with memory_bound(task(run, *args, **kwargs), _territory(run).tiling.memory_limit_gib, hint):
                return fn(run, *args, **kwargs)
        return stage
    return deco


_TILE_HINT = "use smaller tiles (tiling.tile_size)"
_PLAN_HINT = "the vector inputs (features) or the tiles (tiling.tile_size) are too large"


def cost_problem(territory, inputs, sous_trame: str, *, with_lu: bool = False):
    """``(friction, sources (N, 2), reservoir index per source, grid, knight)`` of one sous-trame on the whole grid,
    computed as :func:`tvb_tasks.layers.engine.compute_sous_trame` does before its cost-distance (the reference of
    the windowed planner, and the benchmarks' problem); ``with_lu``: the land-use friction as a sixth item."""
    import numpy as np

    from .layers import engine
    from .layers.corridors import reservoir_sources
    from .layers.friction import friction_raster
    from .layers.landuse import habitat_patches
    from .layers.reservoirs import select_reservoirs

    ctx = engine._context(territory, inputs)
    patches = habitat_patches(territory, sous_trame, ctx.landuse_all, ctx.extra)
    reservoirs, _ = select_reservoirs(territory, sous_trame, patches, ctx.protected, ctx.always)
    friction, lu = friction_raster(territory, sous_trame, ctx.classes_raster, ctx.classes, ctx.infra, ctx.grid)
    src, res_idx = reservoir_sources(reservoirs, ctx.grid, ctx.extent_mask & np.isfinite(friction))
    out = (friction, src, res_idx, ctx.grid, territory.corridors.neighbours == 16)
    return (*out, lu) if with_lu else out


def files_run(territory, inputs: dict, store_uri: str, input_key: str) -> dict:
    """A run dict for the tiled stages whose snapshots are local files (``inputs``: source name → path), put into
    the local store at ``store_uri`` under ``snapshots/<name>/<file name>``: what ``fetch_sources`` leaves, for tests
    and benchmarks that run the stages without fetching (``config``: the territory as given)."""
    from pathlib import Path

    from .store import LocalStore

    store = LocalStore(store_uri)
    snaps = {}
    for name, path in inputs.items():
        key = f"snapshots/{name}/{Path(path).name}"
        store.put_file(key, Path(path))
        snaps[name] = {"key": key}
    return {"territory": territory.id, "input_key": input_key, "store_uri": str(store_uri), "snapshots": snaps,
            "config": territory.model_dump(mode="json", by_alias=True)}


@_bounded(lambda run, sous_trame: f"planning {sous_trame}", _PLAN_HINT)
def stage_plan_tiles(run: FetchedRun, sous_trame: str) -> list[TileItem]:
    """Write the per-tile inputs of one sous-trame, window by window (:mod:`tvb_tasks.layers.windows`: no
    whole-territory raster); the items ``{"sous_trame", "tile"}`` to run in round 1. ``ValueError`` if a tile task
    would exceed ``tiling.memory_limit_gib``; ``MemoryBoundError`` (a ``MemoryError``) if this task's memory did
    (its memory is one window plus the vector inputs, which grow with the number of features). A trame verte whose
    missing links are enabled also gets its potential problem (friction without the barrier lines) under
    ``tiles/<sous_trame>/potential``, whose items carry the key ``<sous_trame>/potential`` and run in the same
    rounds (none when no cell is a barrier cell)."""
    from .layers.tiles import check_memory, tile_grid
    from .layers.vectors import vector_context
    from .layers.windows import plan_windows_to_store

    territory = _territory(run)
    tiling = territory.tiling
    check_memory(tiling)
    store = open_store(run["store_uri"])
    vectors = vector_context(territory, _snapshot_paths(store, run))
    pkey = f"{sous_trame}/{POTENTIAL}"
    first = plan_windows_to_store(store, _prefix(run, sous_trame), territory, vectors, sous_trame, tiling=tiling,
                                  potential_prefix=_prefix(run, pkey) if _with_missing_links(territory, sous_trame)
                                  else None)
    if not first:
        log.info("sous-trame %s: no reservoir, nothing to tile", sous_trame)
        return []
    grid = vectors.grid
    store.put_bytes(f"{_prefix(run, sous_trame)}/grid.json",
                    json.dumps({"transform": list(grid.transform)[:6], "crs": grid.crs, "res": grid.res}).encode())
    peak = check_peak(f"planning {sous_trame}", tiling.memory_limit_gib, _PLAN_HINT)
    n_tiles = len(tile_grid(grid.shape, tiling.tile_size, tiling.overlap))
    cells = grid.shape[0] * grid.shape[1]
    log.info("sous-trame %s: grid %d × %d = %.1f M cells in %d tiles of %d + %d cells, %d to start with; ≈ %.1f GB "
             "of tile objects in the store per tiled problem (≈ 18 B per cell; twice with missing links) (peak %.0f "
             "MB)", sous_trame, grid.shape[0], grid.shape[1], cells / 1e6, n_tiles, tiling.tile_size, tiling.overlap,
             len(first), cells * 18 / 1e9, peak)
    keys = [sous_trame] + ([pkey] if store.exists(f"{_prefix(run, pkey)}/plan.json") else [])
    return [{"sous_trame": k, "tile": int(i)} for k in keys for i in first]


@_bounded(lambda run, item, *a, **k: f"tile {item['tile']} of {item['sous_trame']}", _TILE_HINT)
def stage_run_tile(run: FetchedRun, item: TileItem, round_no: int | None = None) -> TileRound:
    """One tile of one sous-trame in round ``round_no``; ``{"next": items to run next round, "peak_mb"}``. Fails
    (``MemoryBoundError``, a ``MemoryError``) if the task's memory exceeded ``tiling.memory_limit_gib``. Idempotent
    under retries within its round (:func:`tvb_tasks.layers.tiles.run_tile_from_store`): a retry returns the same
    next items."""
    from .layers.tiles import run_tile_from_store

    limit_gib = _territory(run).tiling.memory_limit_gib
    store = open_store(run["store_uri"])
    nxt = run_tile_from_store(store, _prefix(run, item["sous_trame"]), int(item["tile"]), round_no)
    peak = check_peak(f"tile {item['tile']} of {item['sous_trame']}", limit_gib, _TILE_HINT)
    return {"next": [{"sous_trame": item["sous_trame"], "tile": int(n)} for n in nxt], "peak_mb": round(peak, 1)}


def stage_next_round(run: FetchedRun, results: list[TileRound | None], round_no: int,
                     max_items: int | None = None) -> list[TileItem]:
    """The items of the next round (deduplicated, sorted); also written to the store (``tiles/pending.json``) so
    that the stitching task knows whether the exchange converged. ``max_items``: the most items the next round
    may map (Airflow's ``[core] max_map_length``, whose own refusal does not say which setting to raise):
    :class:`~tvb_tasks.errors.InvalidInputError` above it."""
    from .errors import InvalidInputError

    items = sorted({(r["sous_trame"], r["tile"]) for res in results if res for r in res["next"]})
    out: list[TileItem] = [{"sous_trame": s, "tile": t} for s, t in items]
    if max_items is not None and len(out) > max_items:
        raise InvalidInputError(f"round {round_no + 1} would map {len(out)} tile tasks, more than Airflow's "
                                f"[core] max_map_length ({max_items}): raise AIRFLOW__CORE__MAX_MAP_LENGTH or use "
                                "larger tiles (tiling.tile_size)")
    peaks = [res["peak_mb"] for res in results if res]
    store = open_store(run["store_uri"])
    store.put_bytes(f"{_work_prefix(run)}/tiles/pending.json",
                    json.dumps({"after_round": round_no, "pending": out}).encode())
    if round_no == 0:
        log.info("planned: %d tile runs in round 1", len(out))
    else:
        log.info("round %d: %d tile runs (largest peak %.0f MB), %d to run next", round_no, len(peaks),
                 max(peaks, default=0.0), len(out))
    return out


@_bounded(lambda run, sous_trame: f"stitch of {sous_trame}")
def stage_stitch_tiles(run: FetchedRun, sous_trame: str) -> StitchedCost:
    """Stitch one sous-trame's cores into ``tiles/<sous_trame>/cost.tif`` (float32 COG, nodata -1, friction × m,
    cut to the territory and nodata outside it: the untiled ``cost.tif`` exactly), tile by tile
    (:func:`tvb_tasks.layers.stitch.stitch_cost_cog`: memory of one core and the GDAL cache, not of the grid);
    ``RuntimeError`` if tiles were still changing after the last round, ``MemoryBoundError`` if the task's memory
    exceeded ``tiling.memory_limit_gib``."""
    from rasterio.transform import Affine

    from .layers.common import Grid, load_boundary
    from .layers.stitch import stitch_cost_cog
    from .layers.tiles import TilingError, read_plan
    from .pipeline import _materialize

    store = open_store(run["store_uri"])
    pending_key = f"{_work_prefix(run)}/tiles/pending.json"
    if store.exists(pending_key):
        state = json.loads(store.get_bytes(pending_key))
        mine = [p for p in state["pending"] if p["sous_trame"].split("/")[0] == sous_trame]   # and its potential
        if mine:
            raise TilingError(f"sous-trame {sous_trame}: {len(mine)} tiles still changing after round "
                              f"{state['after_round']}: raise tiling.dag_rounds")
    prefix = _prefix(run, sous_trame)
    if not store.exists(f"{prefix}/plan.json"):
        return {"sous_trame": sous_trame, "cost": None, "reached": 0}
    territory = _territory(run)
    g = json.loads(store.get_bytes(f"{prefix}/grid.json"))
    shape, _ = read_plan(store, prefix)
    grid = Grid(Affine(*g["transform"]), shape, g["crs"], float(g["res"]))
    # published like the untiled stage's cost.tif: cut to the territory grid, nodata outside the territory
    name = territory.boundary.source
    boundary = load_boundary(territory, {name: _materialize(store, run["snapshots"][name]["key"])})
    local = _local_dir(run, "tiles", sous_trame) / "cost.tif"
    reached = stitch_cost_cog(store, prefix, grid, local, boundary=boundary,
                              description=f"cost distance {sous_trame} (friction x m)")
    peak = check_peak(f"stitch of {sous_trame}", territory.tiling.memory_limit_gib)
    log.info("sous-trame %s: stitched %d reached cells (peak %.0f MB)", sous_trame, reached, peak)
    key = f"{prefix}/cost.tif"
    store.put_file(key, local)
    return {"sous_trame": sous_trame, "cost": key, "reached": reached}


def _tile_corridors(run: FetchedRun, territory, store, v, sous_trame: str, reservoirs):
    """``(corridors, areas, stretches, crossings, links, missing links)`` of one trame verte sous-trame from its
    tiles, before the clipping to the territory (the engine's frames at that point, columns ``_link`` / ``_runs``
    dropped): :mod:`tvb_tasks.layers.tile_links` (links, paths and the friction values along them read a few tiles at
    a time; real links, then the missing links found from the potential tiles when they are enabled and planned),
    corridor polygons each on the window of its two zones (of the potential run for a missing link), the missing
    links' barrier crossings with their own scores (:mod:`tvb_tasks.layers.tile_missing`). Memory: a few cores, the
    paths, one corridor's zone window (bounded by ``max_cost``) and one real-cost window (bounded by the cut-off
    cost), not the grid."""
    import pandas as pd

    from .layers.corridors import corridor_lines, corridor_stretches
    from .layers.engine import corridor_area_frame, crossing_score_frame, missing_crossings
    from .layers.tile_links import (
        CoreReader,
        path_values,
        tiled_corridor_area,
        tiled_link_paths,
        tiled_links,
        zone_boxes,
    )
    from .layers.tile_missing import input_summary, tiled_crossing_scores, tiled_missing_links

    st = territory.sous_trames[sous_trame]
    prefix = _prefix(run, sous_trame)
    max_links = territory.corridors.max_links_per_reservoir
    links = tiled_links(store, prefix, max_cost=st.max_cost, max_links=max_links)
    paths = tiled_link_paths(store, prefix, links)
    grid = _plan_grid(store, prefix)
    pprefix = _prefix(run, f"{sous_trame}/{POTENTIAL}")
    cfg = territory.corridors.missing_links
    mlinks, mpaths, minfo = links.iloc[:0], [], []
    summary = None                                       # source boxes and lowest friction, read once from the tiles
    if _with_missing_links(territory, sous_trame) and store.exists(f"{pprefix}/plan.json"):
        summary = input_summary(store, prefix)
        mlinks, mpaths, minfo = tiled_missing_links(store, prefix, pprefix, links, grid, max_cost=st.max_cost,
                                                    max_links=max_links, min_gain_share=cfg.min_gain_share,
                                                    max_barrier_m=cfg.max_barrier_m, summary=summary)
    n_real = len(links)
    all_links = pd.concat([links, mlinks], ignore_index=True) if len(mlinks) else links
    all_paths = paths + mpaths
    friction, lu_friction = path_values(store, prefix, all_paths)
    missing: list[dict | None] = [None] * n_real
    corridors = corridor_lines(territory, sous_trame, reservoirs, all_links, all_paths, friction, lu_friction, grid,
                               missing=missing + minfo)
    stretches = corridor_stretches(corridors, grid, lu_friction, territory.corridors.status)
    del friction, lu_friction
    margin = territory.corridors.width.cost_margin
    runs = {False: (prefix, zone_boxes(store, prefix), CoreReader(store, prefix, cache=12))}   # ≈ 4 tiles' arrays
    if len(mlinks):                                      # missing links: the potential run's zones, as the engine
        runs[True] = (pprefix, zone_boxes(store, pprefix), CoreReader(store, pprefix, cache=12))

    def area(k: int, a: int, b: int, cost: float):
        pfx, boxes, reader = runs[k >= n_real]
        return tiled_corridor_area(store, pfx, cost, a, b, boxes, grid, margin=margin, reader=reader)

    areas = corridor_area_frame(territory, corridors, all_links, area, grid)
    crossings = missing_crossings(territory, v.infra, corridors, all_paths, grid)
    if len(crossings):
        crossings = crossing_score_frame(corridors, crossings, all_links, all_paths, tiled_crossing_scores(
            store, prefix, pprefix, grid, radius_m=cfg.barrier_radius_m, summary=summary))
    corridors = corridors.drop(columns=["_link", "_runs"], errors="ignore")
    return corridors, areas, stretches, crossings, n_real, len(mlinks)


def _plan_grid(store, prefix: str):
    """The computation grid a sous-trame's tiles were planned on (``grid.json`` and ``plan.json``)."""
    from rasterio.transform import Affine

    from .layers.common import Grid
    from .layers.tiles import read_plan

    g = json.loads(store.get_bytes(f"{prefix}/grid.json"))
    shape, _ = read_plan(store, prefix)
    return Grid(Affine(*g["transform"]), shape, g["crs"], float(g["res"]))


def _cell_counts(v, tiles) -> dict[str, int]:
    """The part's ``grid_cells``, ``territory_cells`` (centre inside the outline) and ``computation_cells`` (the
    computation extent), as the engine counts its whole-grid masks, counted one tile core at a time."""
    from .layers.common import rasterize_values

    grid = v.grid
    inside_n = extent_n = 0
    for t in tiles:
        w = grid.window(*t.core)
        inside = rasterize_values([v.boundary], [1], w, fill=0, dtype="uint8").astype(bool)
        extent = rasterize_values([v.domain], [1], w, fill=0, dtype="uint8").astype(bool) | inside
        inside_n += int(inside.sum())
        extent_n += int(extent.sum())
    return {"grid_cells": int(grid.shape[0] * grid.shape[1]), "territory_cells": inside_n,
            "computation_cells": extent_n}


@_bounded(lambda run, sous_trame: f"part of {sous_trame}")
def stage_tile_part(run: FetchedRun, sous_trame: str) -> SousTramePart:
    """One sous-trame's part from its tiles, the same files and contract as
    :func:`tvb_tasks.pipeline.stage_compute_sous_trame` (untiled), without any whole-grid raster.

    Writes under the run's ``layers/<sous_trame>/`` (local work folder and store): ``habitat.parquet`` (with
    ``area_in_territory_ha``), ``reservoirs.parquet`` and ``relays.parquet`` (clipped with ``patch_area_ha``),
    ``corridors.parquet``, ``corridor_areas.parquet``, ``missing_crossings.parquet``, ``corridor_stretches.parquet``
    (EPSG:2154; trame verte from the tiles, :func:`_tile_corridors`, then the engine's ``clip_network``; trame
    bleue: empty, as the engine) and, on the territory grid as float32 COGs with nodata -1, ``friction.tif`` (the
    tile inputs' friction stitched core by core, :func:`tvb_tasks.layers.stitch.stitch_friction_cog`) and
    ``cost.tif`` (the stitch stage's ``tiles/<sous_trame>/cost.tif``). A sous-trame with no plan (no reservoir, or
    none with a passable cell) gets what the engine writes then: its friction computed window by window from the
    vectors and an all-nodata ``cost.tif``. Returns the :class:`~tvb_tasks.contracts.SousTramePart` (timings differ).

    Memory: the vector inputs (∝ features), the sous-trame's vectors, a few tile objects, not the grid;
    ``MemoryBoundError`` if its memory exceeded ``tiling.memory_limit_gib`` (enforced while it runs, checked before
    anything is stored; a data-sized window is checked before it is allocated);
    ``TilingError`` if the stitch stage has not written ``cost.tif``."""
    import time

    from .layers.clip import clip_network
    from .layers.common import empty_frame
    from .layers.corridors import CORRIDOR_AREA_COLUMNS, CORRIDOR_COLUMNS, STRETCH_COLUMNS
    from .layers.engine import part_result, territory_patches, write_part_frames
    from .layers.landuse import habitat_patches
    from .layers.reservoirs import select_reservoirs
    from .layers.stitch import stitch_cog, stitch_friction_cog
    from .layers.tiles import TilingError, read_plan, tile_grid
    from .layers.vectors import vector_context
    from .layers.windows import WindowScene, window_rasters
    from .pipeline import PipelineError, _relativize, _upload_dir

    t0 = time.perf_counter()
    territory = _territory(run)
    if sous_trame not in territory.sous_trames:
        raise PipelineError(f"sous-trame {sous_trame!r} is not configured for {territory.id}")
    st = territory.sous_trames[sous_trame]
    store = open_store(run["store_uri"])
    prefix = _prefix(run, sous_trame)
    v = vector_context(territory, _snapshot_paths(store, run))
    timings = {"load": time.perf_counter() - t0}
    t = time.perf_counter()
    patches = habitat_patches(territory, sous_trame, v.landuse_all, v.extra)
    reservoirs, relays = select_reservoirs(territory, sous_trame, patches, v.protected, v.always)
    timings["reservoirs"] = time.perf_counter() - t
    crs = territory.crs
    corridors, areas = empty_frame(crs, CORRIDOR_COLUMNS), empty_frame(crs, CORRIDOR_AREA_COLUMNS)
    stretches, crossings = empty_frame(crs, STRETCH_COLUMNS), empty_frame(crs)
    n_links = n_missing = 0
    planned = store.exists(f"{prefix}/plan.json")
    t = time.perf_counter()
    if planned and st.trame == "verte":
        corridors, areas, stretches, crossings, n_links, n_missing = _tile_corridors(run, territory, store, v,
                                                                                     sous_trame, reservoirs)
    timings["corridors"] = time.perf_counter() - t
    reservoirs, relays, corridors, stretches, areas, crossings = clip_network(
        reservoirs, relays, corridors, stretches, areas, crossings, v.boundary, buffered=v.domain is not v.boundary)
    patches = territory_patches(patches, sous_trame, v.boundary)

    t = time.perf_counter()
    out = _local_dir(run, "layers")
    dest = out / sous_trame
    dest.mkdir(parents=True, exist_ok=True)
    friction_tif, cost_tif = dest / "friction.tif", dest / "cost.tif"
    if planned:
        grid = _plan_grid(store, prefix)
        _, tiles = read_plan(store, prefix)
        stitch_friction_cog(store, prefix, grid, friction_tif, boundary=v.boundary,
                            description=f"friction {sous_trame}")
        if not store.exists(f"{prefix}/cost.tif"):
            raise TilingError(f"sous-trame {sous_trame}: no stitched cost.tif under {prefix}: run the stitch stage "
                              "(stage_stitch_tiles) before the part")
        store.download(f"{prefix}/cost.tif", cost_tif)
    else:                          # no source cell: the engine's friction, and a cost-distance that reached nothing
        grid = v.grid
        tiles = tile_grid(grid.shape, territory.tiling.tile_size, territory.tiling.overlap)
        scene = WindowScene(territory, v, sous_trame, reservoirs)
        stitch_cog(tiles, lambda tile: window_rasters(scene, grid.window(*tile.core))[0], grid, friction_tif,
                   boundary=v.boundary, description=f"friction {sous_trame}")
        stitch_cog(tiles, lambda tile: None, grid, cost_tif, boundary=v.boundary, overview_resampling="average",
                   description=f"cost distance {sous_trame} (friction x m)")
    cells = _cell_counts(v, tiles)
    timings["rasters"] = time.perf_counter() - t
    # checked before anything is stored: a task over the bound leaves no output
    peak = check_peak(f"part of {sous_trame}", territory.tiling.memory_limit_gib)
    t = time.perf_counter()
    files = {**write_part_frames(dest, patches, reservoirs, relays, corridors, areas, crossings, stretches),
             "friction": str(friction_tif), "cost": str(cost_tif)}
    _upload_dir(store, dest, f"{_work_prefix(run)}/layers/{sous_trame}")
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    part = part_result(territory, sous_trame, dest, files, patches, reservoirs, relays, corridors, areas,
                       links=n_links, missing_links=n_missing, cells=cells, timings=timings)
    log.info("sous-trame %s: part from the tiles (peak %.0f MB)", sous_trame, peak)
    return cast(SousTramePart, _relativize(part, out))


#: Most worker processes :func:`run_tiled_parts` runs at once by default (each may hold up to
#: ``tiling.memory_limit_gib``: the machine needs that many times the bound).
MAX_WORKERS = 4


class TaskRun(TypedDict):
    """One task of :func:`run_tiled_parts` (``tasks``): its ``stage`` (``plan``, ``tile``, ``stitch``, ``part``),
    ``task`` name (as in the memory errors), tile ``round`` (None but for tiles), ``wall_s`` (the stage call in its
    process, s), ``process_wall_s`` (from its submission to its result in the parent, s: with a fresh process's
    start-up and imports, or a tile's queueing behind the round's other tiles), ``peak_mb`` (peak RSS of the
    process that ran it, MiB: a fresh process's is the task's own, a tile worker's is the largest of the tiles it
    ran so far) and its ``result``."""

    stage: str
    task: str
    round: int | None
    wall_s: float
    process_wall_s: float
    peak_mb: float
    result: Any


def _start_child(env: dict[str, str], s3: dict[str, str], level: int) -> None:
    """Initializer of :func:`run_tiled_parts`' processes: the parent's environment (``TVB_WORK_DIR``,
    ``TVB_CONFIG_DIR``…), its S3 store settings (:func:`tvb_tasks.store.s3_settings`, a module dict that a spawned
    process does not inherit) and its log level."""
    from . import store

    os.environ.update(env)
    store._S3_SETTINGS.clear()
    store._S3_SETTINGS.update(s3)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s")


def _portable(exc: Exception) -> Exception:
    """``exc`` if it crosses a process boundary unchanged (pickled and back: same class and message), else an
    error of its family (``DeterministicError``, ``TVBError``, ``RuntimeError``) with its message: an exception
    whose ``__init__`` takes other arguments than its message (``config_checks.ReferenceProblems``) fails to
    unpickle in the parent, which then reports the pool broken and loses the message."""
    with contextlib.suppress(Exception):
        back = pickle.loads(pickle.dumps(exc))
        if type(back) is type(exc) and str(back) == str(exc):
            return exc
    base = (DeterministicError if isinstance(exc, DeterministicError) else TVBError if isinstance(exc, TVBError)
            else RuntimeError)
    return base(str(exc) or type(exc).__name__)


def _stage_task(stage: str, run: FetchedRun, *args: Any) -> tuple[Any, float, float]:
    """Run this module's stage named ``stage`` (looked up when called); ``(its result, wall time s, peak RSS of
    the process MiB)``. An error is re-raised as :func:`_portable` makes it."""
    t = time.perf_counter()
    try:
        out = globals()[stage](run, *args)
    except Exception as exc:
        portable = _portable(exc)
        if portable is exc:
            raise
        raise portable from exc
    return out, time.perf_counter() - t, peak_mb()


class _InProcess:
    """The executor of ``run_tiled_parts(processes=False)``: each call runs when submitted, in this process."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:                       # noqa: BLE001 - delivered by the future, as a process's
            fut.set_exception(exc)
        return fut


@contextlib.contextmanager
def _pool(workers: int, *, processes: bool = True) -> Iterator[ProcessPoolExecutor | _InProcess]:
    """``workers`` long-lived spawned processes (no fork: the parent has threads and GDAL/numba state) with the
    parent's environment and S3 settings (:func:`_start_child`); ``processes=False``: :class:`_InProcess`. On an
    error, the tasks not started are cancelled and the running ones awaited. A pool of one used for one task is a
    fresh process (an Airflow task): unlike ``max_tasks_per_child=1``, which starts a replacement process (imports
    included, ≈ 3 s on a loaded 2-core machine) after each task, even the last."""
    if not processes:
        yield _InProcess()
        return
    from . import store

    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start_child,
                             initargs=(dict(os.environ), dict(store._S3_SETTINGS),
                                       logging.getLogger().getEffectiveLevel()))
    try:
        yield ex
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


class _Submitted(NamedTuple):
    stage: str
    task: str
    round: int | None
    start: float                                    # perf_counter at the submission
    end: list[float]                                # perf_counter when the result arrived (set by the future)
    future: Future


def _submit(ex: ProcessPoolExecutor | _InProcess, stage: str, task: str, rnd: int | None, fn: str,
            *args: Any) -> _Submitted:
    """Submit :func:`_stage_task` ``(fn, *args)`` to ``ex``; the time its result arrives is stamped then."""
    start, end = time.perf_counter(), []
    fut = ex.submit(_stage_task, fn, *args)
    fut.add_done_callback(lambda _: end.append(time.perf_counter()))
    return _Submitted(stage, task, rnd, start, end, fut)


def _results(futures: Sequence[_Submitted], tasks: list[TaskRun] | None) -> list[Any]:
    """The results of the submitted tasks in order, recorded in ``tasks``; the first error raised as the child
    raised it, or, for a process that died (killed by the system's OOM killer, or LLVM aborting at the data limit),
    a :class:`~tvb_tasks.errors.TVBError` naming the task."""
    out = []
    for stage, task, rnd, t0, end, fut in futures:
        try:
            res, wall, peak = fut.result()
        except BrokenProcessPool:
            raise TVBError(f"{task}: its process ended without a result: killed (e.g. by the system's OOM killer), "
                           "aborted (numba's LLVM can abort at the memory bound tiling.memory_limit_gib) or failed "
                           "to start (a script must call the pipeline under `if __name__ == \"__main__\":`); see "
                           "the log above") from None
        if tasks is not None:
            tasks.append({"stage": stage, "task": task, "round": rnd, "wall_s": round(wall, 3),
                          "process_wall_s": round(end[0] - t0, 3), "peak_mb": round(peak, 1),
                          "result": res})
        out.append(res)
    return out


def run_tiled_parts(run: FetchedRun, sous_trames: list[str], *, workers: int | None = None, processes: bool = True,
                    tasks: list[TaskRun] | None = None) -> list[SousTramePart]:
    """The tiled stages in the DAG's order, each task in its own process as the DAG's tasks are, so that
    ``tiling.memory_limit_gib`` bounds each task, not the caller (the CLI's ``tvb run`` of a territory with
    ``tiling.enabled``, ``pipeline.run_pipeline``; ``bench/region_pipeline.py``).

    Plan every sous-trame, then the tile rounds until no tile is left to run (at most ``tiling.max_rounds``:
    ``TilingError`` beyond; ``stage_next_round`` between rounds, in this process), stitch, then each part
    (:func:`stage_tile_part`). Each planning, stitch and part task runs in a fresh spawned process (its memory
    bound and peak are its own); the tiles run on ``workers`` long-lived spawned processes (default
    ``os.cpu_count()`` capped at :data:`MAX_WORKERS`), as on Celery workers: a worker's peak, and so a tile's
    checked and reported ``peak_mb``, is the largest of the tiles it ran. At most ``workers`` processes run at once.
    Errors raised in a task (``MemoryBoundError``, ``TilingError``, any ``TVBError``) are raised here as they were
    (same class and message). The processes get this process's environment and S3 store settings
    (:func:`_start_child`). ``processes=False``: everything in this process (tests that monkeypatch the stages; the
    bound then applies to this process's memory). ``tasks``: a list that receives a :class:`TaskRun` per task."""
    from .layers.tiles import TilingError

    max_rounds = _territory(run).tiling.max_rounds
    workers = max(1, workers or min(os.cpu_count() or 1, MAX_WORKERS))

    def fresh(stage: str, fn: str, name: str) -> list[Any]:   # a fresh process per sous-trame, `workers` at once
        out: list[Any] = []
        for i in range(0, len(sous_trames), workers):
            with contextlib.ExitStack() as stack:
                futures = [_submit(stack.enter_context(_pool(1, processes=processes)), stage, f"{name} {st}", None,
                                   fn, run, st) for st in sous_trames[i:i + workers]]
                out += _results(futures, tasks)
        return out

    plans = fresh("plan", "stage_plan_tiles", "planning")
    items = stage_next_round(run, [{"next": p, "peak_mb": 0.0} for p in plans], 0)
    rnd = 0
    if items:
        with _pool(workers, processes=processes) as ex:
            while items:
                rnd += 1
                if rnd > max_rounds:
                    which = sorted({it["sous_trame"] for it in items})
                    raise TilingError(f"{len(items)} tiles of {', '.join(which)} still changing after "
                                      f"tiling.max_rounds ({max_rounds}) rounds: raise tiling.max_rounds")
                results = _results([_submit(ex, "tile", f"tile {it['tile']} of {it['sous_trame']}", rnd,
                                            "stage_run_tile", run, it, rnd) for it in items], tasks)
                items = stage_next_round(run, results, rnd)
    fresh("stitch", "stage_stitch_tiles", "stitch of")
    return fresh("part", "stage_tile_part", "part of")
