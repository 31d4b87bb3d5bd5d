"""The tiled DAG's own stages on a synthetic region, each task in a fresh process: wall time and peak RSS per task.

``bench/region_tiles.py`` measures the tile protocol on a region raster built from one CALL copy; this script runs
what a tiled territory's ``tvb_observatory_<id>`` DAG runs before its assembly, from the region's vector files, with the territory's configuration:

1. the region of ``n`` CALL copies (``sample/generate.py``'s ``generate_region``, cached under
   ``var/bench/region_x<n>``: the same as ``bench/region.py`` and ``bench/plan_windows.py``), its configuration at
   ``--resolution`` with tiling on (``--tile-size`` + ``--overlap``, bound ``tiling.memory_limit_gib``) and one
   sous-trame, its source files put in a local store as the run's snapshots (what ``fetch_sources`` leaves);
2. ``tvb_tasks.tiled.stage_plan_tiles`` (the windowed planner, from the vectors);
3. rounds of ``stage_run_tile`` over ``--workers`` worker processes (as Celery workers with one slot each: a
   worker process runs many tasks, its peak RSS is the largest of them), ``stage_next_round`` between rounds;
4. ``stage_stitch_tiles`` (the published ``cost.tif``, one core at a time);
5. ``stage_tile_part`` (the sous-trame's part: reservoirs, corridors with their polygons and stretches, friction and
   cost rasters, from the tiles and the vectors).

Each of 2, 4, 5 runs in a fresh process (an Airflow task), and each stage checks its own peak RSS against
``tiling.memory_limit_gib`` (it fails above it). Printed: grid cells, tiles, vector features, per task wall time
and peak RSS, the tile rounds (runs per round, largest tile-task peak), the corridors written.

Usage: python bench/region_pipeline.py [--copies 4|region] [--resolution 10] [--sous-trame forest]
       [--tile-size 2048] [--overlap 16] [--workers 2] [--memory-limit-gib 4] [--work var/bench/region_pipeline]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

TASK = r"""
import json, resource, sys, time
from tvb_tasks import tiled
run = json.load(open(sys.argv[1]))
what, sous_trame = sys.argv[2], sys.argv[3]
t = time.perf_counter()
out = getattr(tiled, what)(run, sous_trame)
print(json.dumps({"wall": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "out": out}, default=str))
"""


def _task(run_path: Path, what: str, sous_trame: str) -> dict:
    """One stage in a fresh interpreter (an Airflow task); its result, wall time (imports included) and peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TASK, str(run_path), what, sous_trame], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall"] = time.perf_counter() - t
    return res


def _tile(args):
    """A tile task in a long-lived worker process (a Celery worker slot)."""
    import resource as _r

    from tvb_tasks import tiled

    run, item = args
    t = time.perf_counter()
    out = tiled.stage_run_tile(run, item)
    return out, time.perf_counter() - t, _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024


def make_run(n: str, args, work: Path) -> tuple[dict, dict]:
    """The run dict of the region (snapshots in a local store under ``work``) and facts about it."""
    import region  # bench/region.py

    from tvb_tasks.config_sections import TilingConfig
    from tvb_tasks.layers import sample_inputs
    from tvb_tasks.pipeline import effective_territory
    from tvb_tasks.tiled import files_run

    copies = n if n == "region" else int(n)
    yaml_path = region.region_yaml(copies)
    base = effective_territory(str(yaml_path), sous_trames=[args.sous_trame], resolution_m=args.resolution)
    territory = base.model_copy(update={"tiling": TilingConfig(enabled=True, tile_size=args.tile_size,
                                                                 overlap=args.overlap,
                                                                 memory_limit_gib=args.memory_limit_gib)})
    run = files_run(territory, sample_inputs(territory), str(work / "store"), "b" * 64)
    return run, {"yaml": str(yaml_path), "territory": territory.id}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", default="4", help="number of CALL copies, or 'region' (≈ 132: 31,800 km²)")
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--sous-trame", default="forest")
    ap.add_argument("--tile-size", type=int, default=2048)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit-gib", type=float, default=4.0)
    ap.add_argument("--work", default=str(ROOT / "var" / "bench" / "region_pipeline"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TVB_STORE_FSYNC", "0")          # a benchmark's store: no fsync per object
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "var" / "numba-cache"))
    work = Path(args.work) / f"x{args.copies}_{args.resolution:g}m"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.resolution:g} m, "
          f"sous-trame {args.sous_trame}, tiles {args.tile_size} + {args.overlap}, {args.workers} workers, "
          f"bound {args.memory_limit_gib:g} GiB", flush=True)
    t0 = time.perf_counter()
    run, facts = make_run(args.copies, args, work)
    run_path = work / "run.json"
    run_path.write_text(json.dumps(run))
    print(f"  region {facts['territory']}: snapshots stored in {time.perf_counter() - t0:.1f} s", flush=True)

    plan = _task(run_path, "stage_plan_tiles", args.sous_trame)
    items = plan["out"]
    grid = json.loads((work / "store" / f"work/{run['territory']}/{run['input_key'][:16]}/tiles/"
                       f"{args.sous_trame}/plan.json").read_text()) if items else {}
    cells = grid["shape"][0] * grid["shape"][1] if grid else 0
    print(f"  plan_tiles: {plan['wall']:.1f} s ({plan['process_wall']:.1f} s with start-up), peak "
          f"{plan['peak_mb']:.0f} MB; grid {grid.get('shape')} = {cells / 1e6:.1f} M cells, "
          f"{len(grid.get('tiles', []))} tiles, {len(items)} to run first", flush=True)

    from tvb_tasks import tiled

    t = time.perf_counter()
    rounds, worst, runs, busy = 0, 0.0, [], 0.0
    ctx = mp.get_context("forkserver")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        while items:
            rounds += 1
            results = list(pool.map(_tile, [(run, it) for it in items]))
            worst = max([worst, *(r[2] for r in results)])
            busy += sum(r[1] for r in results)
            runs.append(len(items))
            items = tiled.stage_next_round(run, [r[0] for r in results], rounds)
    rounds_wall = time.perf_counter() - t
    print(f"  tile rounds: {rounds} rounds {runs} = {sum(runs)} tile tasks in {rounds_wall:.1f} s "
          f"({busy:.1f} s of task time), largest worker peak {worst:.0f} MB", flush=True)

    stitch = _task(run_path, "stage_stitch_tiles", args.sous_trame)
    print(f"  stitch: {stitch['wall']:.1f} s, peak {stitch['peak_mb']:.0f} MB, {stitch['out'].get('reached')} "
          "reached cells", flush=True)
    corr = _task(run_path, "stage_tile_part", args.sous_trame)
    print(f"  part: {corr['wall']:.1f} s, peak {corr['peak_mb']:.0f} MB, {json.dumps(corr['out']['counts'])[:300]}",
          flush=True)
    total = time.perf_counter() - t0
    peaks = {"plan": plan["peak_mb"], "tiles": worst, "stitch": stitch["peak_mb"], "part": corr["peak_mb"]}
    print(f"  total {total:.0f} s; largest task peak {max(peaks.values()):.0f} MB "
          f"(bound {args.memory_limit_gib * 1024:.0f} MB): {peaks}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
