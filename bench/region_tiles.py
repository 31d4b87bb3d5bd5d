"""The tiled cost-distance of a whole synthetic region at 10 m: the Hauts-de-France size (31,800 km², ≈ 318 M cells).

What is measured is the distributed part of the region-scale pipeline (the tiled ``tvb_observatory_<id>`` DAG's tile
tasks), on one sous-trame, with every tile run in a fresh worker process as a Celery task would be:

1. the CALL sample's friction and reservoir sources of the sous-trame at ``--resolution`` (the untiled engine's
   own ``tvb_tasks.tiled.cost_problem``);
2. a region raster of ``n`` copies of it in the grid of ``sample/generate.py``'s ``region_layout`` (``n`` = 132 for
   ``--copies region``), cells outside every copy's territory (and the empty end of the last row) set to the
   sous-trame's highest friction so that paths run across copies (islands would make the tile exchange trivial);
   sources copied with each copy, one reservoir label per copy and reservoir;
3. ``plan_to_store`` (per-tile inputs in a local store), then rounds of ``run_tile_from_store`` (the library's
   ``run_rounds``) over ``--workers`` processes (``forkserver``: a tile process does not inherit the planner's
   arrays), each returning its peak RSS;
4. the stitch (``stitch_from_store``) and, unless ``--no-check``, the untiled ``accumulated_cost`` of the whole
   region in this process, compared cell by cell (max abs difference of the accumulated cost, back-links and
   allocation equal);
5. with ``--publish``, the published ``cost.tif`` (float32 COG cut to a territory outline inside the grid, nodata
   outside it) written twice, each in a fresh process whose peak RSS is reported: the former DAG stitch (whole
   arrays: ``stitch_from_store``, the territory mask rasterised on the whole grid, ``engine._territory_raster``,
   ``write_cog``) and the windowed one the DAG uses (``tvb_tasks.layers.stitch.stitch_cost_cog``: one core at a
   time, GDAL cache ``stitch.CACHE_MB``); the two files are compared block by block, overviews included;
6. with ``--corridors``, the corridors of the region (real links, ``max_links_per_reservoir`` of CALL) in a fresh
   process from the tiles, as the DAG's ``corridors`` task computes them (``tvb_tasks.layers.tile_links``: links,
   paths, friction values along them, then ``corridor_lines``; the land-use friction copied like the friction;
   ``--areas``: the corridor polygons too, each on its two zones' window), and with ``--corridors both`` also from
   the stitched whole arrays (``select_links``, ``link_paths``, ``corridor_lines``, ``_corridor_areas``) in another
   fresh process; wall time, peak RSS and whether the two layers are equal.

Printed: grid cells, tiles, rounds and tile runs per round, wall and CPU time of each step, the largest tile
task peak RSS (to compare with ``tiling.memory_limit_gib``), the planner's and the check's peak RSS, store bytes.
The planning step here holds the whole region (the DAG's ``plan_tiles`` plans window by window from the vectors
instead: ``bench/plan_windows.py``); see docs/operations.md.

Usage: python bench/region_tiles.py [--copies region] [--resolution 10] [--sous-trame forest]
       [--tile-size 2048] [--overlap 16] [--workers 2] [--work var/bench/region_tiles] [--no-check] [--publish [windowed]]
       [--corridors [both]] [--areas]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _tile_job(store_root: str, prefix: str, index: int) -> tuple[list[int], float, float, float]:
    """One tile task in a worker process: (tiles to run next, peak RSS MB of the worker, seconds, CPU seconds)."""
    from tvb_tasks.layers.tiles import run_tile_from_store
    from tvb_tasks.store import LocalStore

    t0, c0 = time.perf_counter(), time.process_time()
    touched = run_tile_from_store(LocalStore(store_root), prefix, index)
    return touched, _peak_mb(), time.perf_counter() - t0, time.process_time() - c0


def _outline(shape: tuple[int, int], cell: float):
    """A territory outline inside a grid of ``shape`` cells of ``cell`` m with its origin at (0, rows × cell): the
    grid inset by ≈ 1 % (off the cell lattice) with a triangular notch cut into the south edge and a hole."""
    from shapely.geometry import Polygon

    H, W = shape
    w, h = W * cell, H * cell
    mx, my = 0.0103 * w + 0.37 * cell, 0.0097 * h + 0.41 * cell
    outer = [(mx, my), (0.45 * w, my), (0.5 * w, 0.4 * h), (0.55 * w, my), (w - mx, my), (w - mx, h - my),
             (mx, h - my)]
    hole = [(0.2 * w, 0.6 * h), (0.3 * w, 0.6 * h), (0.25 * w, 0.75 * h)]
    return Polygon(outer, [hole])


def _publish_job(kind: str, store_root: str, prefix: str, grid, boundary, out: str) -> tuple[float, float, float, int]:
    """One published ``cost.tif`` in a fresh process: (seconds, CPU seconds, peak RSS MB, reached cells)."""
    from types import SimpleNamespace

    from tvb_tasks.store import LocalStore

    store = LocalStore(store_root)
    t0, c0 = time.perf_counter(), _cpu()
    if kind == "windowed":
        from tvb_tasks.layers.stitch import stitch_cost_cog

        reached = stitch_cost_cog(store, prefix, grid, Path(out), boundary=boundary, description="cost")
    else:                                       # the former DAG stitch task, whole arrays
        from tvb_tasks.layers import engine
        from tvb_tasks.layers.common import rasterize_values, write_cog
        from tvb_tasks.layers.tiles import stitch_from_store

        acc, _back, _alloc = stitch_from_store(store, prefix)
        inside = rasterize_values([boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
        ctx = SimpleNamespace(grid=grid, boundary=boundary, inside=inside)
        acc = engine._territory_raster(acc, ctx)
        write_cog(acc, engine._territory_grid(ctx), Path(out), overview_resampling="average", description="cost")
        reached = int(np.isfinite(acc).sum())
    return time.perf_counter() - t0, _cpu() - c0, _peak_mb(), reached


def _same_cog(a_path: Path, b_path: Path, rows: int = 4096) -> bool:
    """Same profile, overviews and values (full resolution read by bands of ``rows``; each overview whole)."""
    import rasterio

    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        if a.profile != b.profile or a.overviews(1) != b.overviews(1) or a.descriptions != b.descriptions:
            return False
        for r0 in range(0, a.height, rows):
            win = ((r0, min(r0 + rows, a.height)), (0, a.width))
            if not np.array_equal(a.read(1, window=win), b.read(1, window=win)):
                return False
        levels = len(a.overviews(1))
    for level in range(levels):
        with rasterio.open(a_path, overview_level=level) as a, rasterio.open(b_path, overview_level=level) as b:
            if not np.array_equal(a.read(1), b.read(1)):
                return False
    return True


def _corridors_job(kind: str, store_root: str, prefix: str, grid, n_res: int, out: str, areas: bool = False
                   ) -> tuple[float, float, int, int, float]:
    """The region's corridors in a fresh process, from the tiles or the stitched whole arrays: (seconds, peak RSS
    MB, links, corridors, seconds of the corridor polygons); the layer written to ``out`` (``areas``: the
    polygons too, to ``out`` + ``.areas``)."""
    import geopandas as gpd

    from tvb_tasks.config import load_territory
    from tvb_tasks.layers.corridors import corridor_lines, link_paths, select_links
    from tvb_tasks.layers.tile_links import path_values, tiled_link_paths, tiled_links
    from tvb_tasks.layers.tiles import _load_npz, _plan, stitch_from_store
    from tvb_tasks.store import LocalStore

    t0 = time.perf_counter()
    territory = load_territory("call")
    store = LocalStore(store_root)
    plan, tiles = _plan(store, prefix)
    k = territory.corridors.max_links_per_reservoir
    if kind == "tiles":
        links = tiled_links(store, prefix, max_cost=plan["max_cost"], max_links=k)
        paths = tiled_link_paths(store, prefix, links)
        friction, lu = path_values(store, prefix, paths)
    else:
        acc, back, alloc = stitch_from_store(store, prefix)
        H, W = grid.shape
        friction, lu = np.empty((H, W), np.float32), np.empty((H, W), np.float32)
        for t in tiles:
            inp = _load_npz(store.get_bytes(f"{prefix}/input/{t.index}.npz"))
            r0, r1, c0, c1 = t.core
            friction[r0:r1, c0:c1], lu[r0:r1, c0:c1] = inp["cost"][t.core_in_window], inp["lu_friction"][t.core_in_window]
        links = select_links(friction, acc, alloc, grid, knight=plan["knight"], max_cost=plan["max_cost"], max_links=k)
        del acc, alloc
        paths = link_paths(links, back)
        del back
    reservoirs = gpd.GeoDataFrame({"id": [f"R{i}" for i in range(n_res)]}, geometry=[None] * n_res, crs="EPSG:2154")
    lines = corridor_lines(territory, "forest", reservoirs, links, paths, friction, lu, grid)
    t_areas = time.perf_counter()
    if areas:
        from tvb_tasks.layers.engine import _corridor_areas, corridor_area_frame
        from tvb_tasks.layers.tile_links import CoreReader, tiled_corridor_area, zone_boxes

        margin = territory.corridors.width.cost_margin
        if kind == "tiles":
            boxes = zone_boxes(store, prefix)
            reader = CoreReader(store, prefix, cache=12)
            polys = corridor_area_frame(territory, lines, links, lambda _k, a, b, cost: tiled_corridor_area(
                store, prefix, cost, a, b, boxes, grid, margin=margin, reader=reader), grid)
        else:
            src, lab = [], []
            for t in tiles:
                inp = _load_npz(store.get_bytes(f"{prefix}/input/{t.index}.npz"))
                rc = inp["src"] + (t.window[0], t.window[2])
                ok = (rc[:, 0] >= t.core[0]) & (rc[:, 0] < t.core[1]) & (rc[:, 1] >= t.core[2]) & \
                    (rc[:, 1] < t.core[3])
                src.append(rc[ok])
                lab.append(inp["labels"][ok])
            acc, _, alloc = stitch_from_store(store, prefix)
            polys = _corridor_areas(territory, lines, links, len(links), (acc, alloc, friction), None,
                                    np.concatenate(src), np.concatenate(lab), grid, plan["knight"])
        polys.to_parquet(out + ".areas")
    t_areas = time.perf_counter() - t_areas
    lines.drop(columns=["_link", "_runs"]).to_parquet(out)
    return time.perf_counter() - t0, _peak_mb(), len(links), len(lines), t_areas


def region_problem(copies: int, resolution: float, sous_trame: str, *, with_lu: bool = False):
    """``(friction (H, W) float32, sources (N, 2), labels (N,), cell size m, knight, max_cost, CALL shape)``;
    ``with_lu``: the land-use friction of the region too (last item)."""
    from sample.generate import region_layout
    from tvb_tasks.config import load_territory
    from tvb_tasks.layers import engine
    from tvb_tasks.tiled import cost_problem

    territory = load_territory("call").model_copy(update={"resolution_m": float(resolution)})
    friction, src, res_idx, grid, knight, lu = cost_problem(territory, engine.sample_inputs(territory), sous_trame,
                                                            with_lu=True)
    friction = np.asarray(friction, dtype=np.float32)
    h, w = friction.shape
    fill = np.float32(np.nanmax(np.where(np.isfinite(friction), friction, np.nan)))
    one = np.where(np.isfinite(friction) & (friction > 0), friction, fill).astype(np.float32)
    nx, ny = region_layout(copies)
    big = np.full((ny * h, nx * w), fill, dtype=np.float32)
    big_lu = np.full((ny * h, nx * w), fill, dtype=np.float32) if with_lu else None
    srcs, labels = [], []
    n_res = int(res_idx.max()) + 1 if len(res_idx) else 0
    for k in range(copies):
        r, c = divmod(k, nx)
        big[r * h:(r + 1) * h, c * w:(c + 1) * w] = one
        if big_lu is not None:
            big_lu[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.where(np.isfinite(lu), lu, fill)
        srcs.append(np.asarray(src) + (r * h, c * w))
        labels.append(np.asarray(res_idx) + k * n_res)
    out = (big, np.concatenate(srcs), np.concatenate(labels).astype(np.int32), float(grid.res), bool(knight),
           territory.sous_trames[sous_trame].max_cost, (h, w))
    return (*out, big_lu) if with_lu else out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", default="region", help="CALL copies: a number or 'region' (31,800 km²)")
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--sous-trame", default="forest")
    ap.add_argument("--tile-size", type=int, default=2048)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-rounds", type=int, default=40)
    ap.add_argument("--work", default=str(ROOT / "var" / "bench" / "region_tiles"))
    ap.add_argument("--no-check", action="store_true", help="skip the untiled run of the whole region")
    ap.add_argument("--publish", nargs="?", const="both", choices=["both", "windowed"],
                    help="also write the published cost.tif: whole-array stitch against windowed (fresh processes), "
                         "or the windowed one only")
    ap.add_argument("--corridors", nargs="?", const="tiles", choices=["tiles", "both"],
                    help="also the corridors from the tiles (fresh process), 'both': and from the whole arrays")
    ap.add_argument("--areas", action="store_true", help="with --corridors: the corridor polygons too")
    args = ap.parse_args(argv)

    from sample.generate import region_copies
    from tvb_tasks.config_sections import TilingConfig
    from tvb_tasks.layers import costdistance as cd
    from tvb_tasks.layers.tiles import plan_to_store, run_rounds, stitch_from_store
    from tvb_tasks.store import LocalStore

    ctx = mp.get_context("forkserver")          # start the server before the big arrays exist
    pool = ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx)
    pool.submit(os.getpid).result()

    n = region_copies(args.copies)
    t0, c0 = time.perf_counter(), _cpu()
    problem = region_problem(n, args.resolution, args.sous_trame, with_lu=bool(args.corridors))
    cost, src, labels, cell, knight, max_cost, call_shape = problem[:7]
    lu = problem[7] if args.corridors else None
    del problem
    H, W = cost.shape
    print(f"region: {n} CALL copies at {args.resolution:g} m, grid {H} x {W} = {H * W / 1e6:.1f} M cells "
          f"({H * W * args.resolution ** 2 / 1e6:,.0f} km² of grid), CALL grid {call_shape[0]} x {call_shape[1]}, "
          f"{len(src)} source cells, sous-trame {args.sous_trame}")
    print(f"build: {time.perf_counter() - t0:.1f} s wall, {_cpu() - c0:.1f} s CPU, peak {_peak_mb():.0f} MB")

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    store = LocalStore(work / "store")
    prefix = f"region/{args.sous_trame}"
    tiling = TilingConfig(enabled=True, tile_size=args.tile_size, overlap=args.overlap)
    t0, c0 = time.perf_counter(), _cpu()
    first = plan_to_store(store, prefix, cost, src, tiling=tiling, cell_size=cell, knight=knight,
                          max_cost=max_cost, source_labels=labels, lu_friction=lu)
    del lu
    n_tiles = len(store.list(f"{prefix}/input/"))
    print(f"plan: {n_tiles} tiles of {args.tile_size} + {args.overlap} cells, {len(first)} to start; "
          f"{time.perf_counter() - t0:.1f} s wall, {_cpu() - c0:.1f} s CPU, planner peak {_peak_mb():.0f} MB")

    peaks: list[float] = []
    per_round: list[int] = []
    task_s: list[float] = []
    task_cpu: list[float] = []

    def pool_map(_fn, items):
        items = list(items)
        per_round.append(len(items))
        futures = [pool.submit(_tile_job, str(store.root), prefix, i) for i in items]
        for f in futures:
            touched, peak, sec, cpu = f.result()
            peaks.append(peak)
            task_s.append(sec)
            task_cpu.append(cpu)
            yield touched

    t0 = time.perf_counter()
    rounds, runs = run_rounds(store, prefix, first, max_rounds=args.max_rounds, map_fn=pool_map)
    wall = time.perf_counter() - t0
    print(f"rounds: {rounds} ({', '.join(map(str, per_round))} tile runs), {runs} tile runs in {wall:.1f} s wall, "
          f"{sum(task_cpu):.1f} s CPU in the tile tasks on {args.workers} workers; "
          f"a tile task {np.median(task_s):.2f} s median, "
          f"{max(task_s):.1f} s max; largest tile task peak RSS {max(peaks):.0f} MB")
    size = sum(p.stat().st_size for p in (work / "store").rglob("*") if p.is_file())
    print(f"store: {size / 2**30:.2f} GiB of per-tile objects")
    pool.shutdown()

    t0, c0 = time.perf_counter(), _cpu()
    stitched = stitch_from_store(store, prefix)
    print(f"stitch: {time.perf_counter() - t0:.1f} s wall, {_cpu() - c0:.1f} s CPU, "
          f"{int(np.isfinite(stitched[0]).sum()) / 1e6:.1f} M cells reached, peak {_peak_mb():.0f} MB")
    if not args.no_check:          # the stitched rasters wait on disk while the untiled run holds the memory
        names = ("acc", "back", "alloc")
        for name, arr in zip(names, stitched):
            np.save(work / f"{name}.npy", arr)
        del stitched
        t0, c0 = time.perf_counter(), _cpu()
        ref = cd.accumulated_cost(cost, src, cell_size=cell, knight=knight, max_cost=max_cost,
                                  return_backlinks=True, return_allocation=True, source_labels=labels)
        print(f"untiled: {time.perf_counter() - t0:.1f} s wall, {_cpu() - c0:.1f} s CPU, peak {_peak_mb():.0f} MB")
        acc, back, alloc = (np.load(work / f"{name}.npy", mmap_mode="r") for name in names)
        diff, same_cells, rows = 0.0, True, 4096
        for r0 in range(0, H, rows):
            a, b = np.asarray(acc[r0:r0 + rows]), ref[0][r0:r0 + rows]
            same_cells &= bool(np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.isinf(a), np.isinf(b)))
            fin = np.isfinite(a) & np.isfinite(b)
            if fin.any():
                diff = max(diff, float(np.max(np.abs(a[fin] - b[fin]))))
        print(f"tiled vs untiled: max abs difference {diff:g}, same impassable and unreached cells {same_cells}, "
              f"back-links equal {bool(np.array_equal(back, ref[1]))}, "
              f"allocation equal {bool(np.array_equal(alloc, ref[2]))}")
    if args.publish:
        from affine import Affine

        from tvb_tasks.layers.common import Grid

        del cost
        grid = Grid(Affine(cell, 0.0, 0.0, 0.0, -cell, H * cell), (H, W), "EPSG:2154", cell)
        boundary = _outline((H, W), cell)
        outs = {}
        for kind in ("whole-array", "windowed") if args.publish == "both" else ("windowed",):
            outs[kind] = work / f"cost_{kind}.tif"
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as one:   # a fresh process: its own peak
                sec, cpu, peak, reached = one.submit(_publish_job, kind, str(store.root), prefix, grid, boundary,
                                                     str(outs[kind])).result()
            print(f"publish cost.tif, {kind} stitch: {sec:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:.0f} MB, "
                  f"{reached / 1e6:.1f} M cells reached in the territory, {outs[kind].stat().st_size / 2**20:.0f} MB")
        if len(outs) == 2:
            print(f"published files identical (profile, overviews, values): {_same_cog(*outs.values())}")
    if args.corridors:
        import geopandas as gpd
        from affine import Affine

        from tvb_tasks.layers.common import Grid

        grid = Grid(Affine(cell, 0.0, 0.0, 0.0, -cell, H * cell), (H, W), "EPSG:2154", cell)
        layers = {}
        for kind in ("tiles", "whole") if args.corridors == "both" else ("tiles",):
            layers[kind] = work / f"corridors_{kind}.parquet"
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as one:   # a fresh process: its own peak
                sec, peak, n_links, n_cor, t_areas = one.submit(
                    _corridors_job, kind, str(store.root), prefix, grid, int(labels.max()) + 1, str(layers[kind]),
                    args.areas).result()
            print(f"corridors from the {kind}: {sec:.1f} s wall (polygons {t_areas:.1f} s), peak RSS {peak:.0f} MB, "
                  f"{n_links} links, {n_cor} corridors", flush=True)
        if len(layers) == 2:
            for suffix in ("", ".areas") if args.areas else ("",):
                a, b = (gpd.read_parquet(str(p) + suffix) for p in layers.values())
                same = a.drop(columns="geometry").equals(b.drop(columns="geometry")) and \
                    list(a.geometry.to_wkb()) == list(b.geometry.to_wkb())
                print(f"corridor{' polygons' if suffix else 's'} from the tiles equal to the whole arrays': {same}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
