"""Region-scale benchmark: the observatory's tasks on synthetic regions of n × CALL, each task in a fresh process,
wall time and peak RSS per task, and the growth of time and memory with the area over several scales.

For each scale (``--copies 1,4,16``):

1. the region of ``n`` CALL copies (``sample/generate.py``'s ``generate_region``: translated copies of the CALL
   sample, same land-use shares, deterministic; generated once under ``var/bench/region_x<n>``, shared with
   ``bench/plan_windows.py``), its configuration at ``--resolution`` with the sous-trames of ``--sous-trames``
   (default: all four, trame verte ones with missing links as the region's YAML configures them) and tiling on
   (``--tile-size`` + ``--overlap``, bound ``--memory-limit-gib``); its source files put in a local store as the
   run's snapshots (what ``fetch_sources`` leaves: ``tiled.files_run``);
2. what the tiled territory's ``tvb_observatory_<id>`` DAG (``dags/tvb_observatory_tiled.py``) runs after its
   fetch, through ``tiled.run_tiled_parts`` (what ``tvb run`` runs; its per-task records give the figures):
   ``tiled.stage_plan_tiles`` per sous-trame; the rounds of ``tiled.stage_run_tile`` over all sous-trames' tiles
   (and the verte sous-trames' potential problems) together, on ``--workers`` long-lived worker processes (Celery
   workers with one slot each: a worker's peak RSS is the largest of its tasks'), ``tiled.stage_next_round``
   between rounds; ``tiled.stage_stitch_tiles`` and ``tiled.stage_tile_part`` per sous-trame (up to ``--workers``
   sous-trames at once); then ``pipeline.stage_assemble`` (on the parts' returned contracts, reading the parts'
   files from the store / work folder) and ``pipeline.stage_indicators``.
   With ``--untiled``, the untiled observatory's tasks instead: ``pipeline.stage_compute_sous_trame`` per
   sous-trame (whole-grid rasters, ≈ 60 B per cell), then the same assembly and indicators.

Every task except the tile runs is a fresh interpreter (an Airflow task; the tiled ones spawned by
``run_tiled_parts``): its wall time includes the start-up and imports, its peak RSS is the child's own (``memory.peak_mb``).
Tile runs are timed inside their worker (no interpreter start-up: an Airflow task adds a few seconds to each; a
worker's first tile includes the imports of the tile code); the tile rounds' wall time is, per round, the time to
its last result. The elapsed time of the tiled tasks is ``run_tiled_parts``' own wall time. The tiled stages check
their own peak against ``tiling.memory_limit_gib`` and fail above it; the assembly, indicators and untiled stages
do not: the summary line of a scale says when its largest peak is over the bound.

Printed per scale: a table of the tasks (wall, peak RSS, what they return), the *work* (sum of the task times:
the slot time the workers spend; the tile runs' own times) and the *elapsed* time (tasks one after the other, the
tile rounds on ``--workers`` processes), the largest task peak; then, from the smallest to the largest scale, the
growth of work, elapsed time and largest peak against the area: ratio (time growth / area growth, goal ≤ 1.3,
issue #18) and exponent ``b`` of time ∝ area^b. The machine's load (``uptime``) is printed at the start and end of
the run and with each scale (a 2-core VM shared with other jobs makes times loose). Results also go to
``<work>/results_<resolution>m[_untiled].json``. The first run on a checkout compiles the numba kernels into
``NUMBA_CACHE_DIR`` (tens of seconds in the first tile runs): run once (``--copies 1``) before measuring; the number
of cached files is printed.

Usage: python bench/region_pipeline.py [--copies 1,4,16|region] [--resolution 25] [--sous-trames forest,...]
       [--tile-size 512] [--overlap 8] [--workers 2] [--memory-limit-gib 4] [--untiled]
       [--work var/bench/region_pipeline]
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CALL_KM2 = 240.0                                     # area of one CALL copy

TASK = r"""
import json, sys, time
import importlib
args = json.load(open(sys.argv[1]))
run = json.load(open(args["run"]))
fn = getattr(importlib.import_module(args["module"]), args["function"])
t = time.perf_counter()
out = fn(run, *args["args"])
from tvb_tasks.memory import peak_mb   # the child's own peak (ru_maxrss would include the parent's)
print(json.dumps({"wall": time.perf_counter() - t, "peak_mb": peak_mb(), "out": out}, default=str))
"""


def region_yaml(n: int | str) -> Path:
    """The YAML of the synthetic region of ``n`` × CALL (``'region'``: the Hauts-de-France-sized one), generated
    once under ``var/bench/region_x<n>``."""
    sys.path.insert(0, str(ROOT / "sample"))
    import generate  # sample/generate.py

    out = ROOT / "var" / "bench" / f"region_x{n}"
    path = out / f"call_x{n}.yaml"
    if not path.exists():
        t = time.perf_counter()
        generate.generate_region(n if n == "region" else int(n), out)
        print(f"  generated {n} × CALL in {time.perf_counter() - t:.1f} s ({out})", flush=True)
    return path


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _task(work: Path, run_path: Path, module: str, function: str, *args) -> dict:
    """One stage in a fresh interpreter (an Airflow task): its result, wall time and peak RSS (``ru_maxrss``)."""
    spec = work / f"task_{function}_{'_'.join(str(a) for a in args if isinstance(a, str))}.json"
    spec.write_text(json.dumps({"run": str(run_path), "module": module, "function": function, "args": list(args)}))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TASK, str(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{function}{args[:1]} failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall"] = time.perf_counter() - t
    return res


def make_run(n: str, args, work: Path) -> dict:
    """The run dict of the region (snapshots in a local store under ``work``)."""
    from tvb_tasks.config_sections import TilingConfig
    from tvb_tasks.layers import sample_inputs
    from tvb_tasks.pipeline import effective_territory
    from tvb_tasks.tiled import files_run

    base = effective_territory(str(region_yaml(n)), sous_trames=args.sous_trames, resolution_m=args.resolution)
    territory = base.model_copy(update={"tiling": TilingConfig(enabled=not args.untiled, tile_size=args.tile_size,
                                                                 overlap=args.overlap,
                                                                 memory_limit_gib=args.memory_limit_gib)})
    run = files_run(territory, sample_inputs(territory), str(work / "store"), "b" * 64)
    for name, ref in run["snapshots"].items():          # what fetch records; the indicators' provenance reads it
        ref["snapshot_id"] = f"bench-{name}"
    return run


def _row(rows: list, task: str, wall: float, peak: float | None, note: str = "") -> None:
    rows.append({"task": task, "wall": wall, "peak_mb": peak, "note": note})
    print(f"    {task:<28} {wall:8.1f} s {peak if peak is not None else float('nan'):8.0f} MB  {note}", flush=True)


def _counts(part: dict) -> str:
    c = part.get("counts", {})
    keys = ("grid_cells", "reservoirs", "corridors", "missing_links")
    return ", ".join(f"{k} {c[k]:,}" for k in keys if k in c)


def run_scale(n: str, args, root: Path) -> dict:
    """Every task of one scale; the rows and totals."""
    work = root / f"x{n}_{args.resolution:g}m{'_untiled' if args.untiled else ''}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["TVB_WORK_DIR"] = str(work / "local")      # the tasks' local work folder (shared, as one worker's)
    load0 = os.getloadavg()
    print(f"\n× {n} CALL ({float(n) * CALL_KM2 if n != 'region' else 31800:,.0f} km²), {args.resolution:g} m — "
          f"{_uptime()}", flush=True)
    t0 = time.perf_counter()
    run = make_run(n, args, work)
    run_path = work / "run.json"
    run_path.write_text(json.dumps(run))
    sts = list(run["config"]["sous_trames"])
    print(f"  snapshots stored in {time.perf_counter() - t0:.1f} s; sous-trames {', '.join(sts)}", flush=True)
    print(f"    {'task':<28} {'wall':>10} {'peak RSS':>11}", flush=True)
    rows: list[dict] = []
    elapsed = work_s = 0.0
    parts = []
    if args.untiled:
        for st in sts:
            r = _task(work, run_path, "tvb_tasks.pipeline", "stage_compute_sous_trame", st)
            _row(rows, f"compute_sous_trame {st}", r["process_wall"], r["peak_mb"], _counts(r["out"]))
            parts.append(r["out"])
            elapsed += r["process_wall"]
            work_s += r["process_wall"]
        cells = parts[0]["counts"].get("grid_cells", 0) if parts else 0
    else:                   # the library's own runner: each task in its own process, as tvb run does
        from tvb_tasks import tiled

        tasks: list[tiled.TaskRun] = []
        t = time.perf_counter()
        parts = tiled.run_tiled_parts(run, sts, workers=args.workers, tasks=tasks)
        elapsed += time.perf_counter() - t
        plan0 = json.loads((work / "store" / f"work/{run['territory']}/{run['input_key'][:16]}/tiles/{sts[0]}/"
                            "plan.json").read_text())
        cells = plan0["shape"][0] * plan0["shape"][1]
        tiles = [x for x in tasks if x["stage"] == "tile"]
        for x in (x for x in tasks if x["stage"] == "plan"):
            _row(rows, f"plan_tiles {x['task'].split()[-1]}", x["process_wall_s"], x["peak_mb"],
                 f"{len(x['result'])} items in round 1")
        rounds = sorted({x["round"] or 0 for x in tiles})
        runs = [sum(1 for x in tiles if x["round"] == r) for r in rounds]
        rounds_wall = sum(max(x["process_wall_s"] for x in tiles if x["round"] == r) for r in rounds)
        busy = sum(x["wall_s"] for x in tiles)
        by_key: dict[str, list[float]] = {}
        for x in tiles:
            by_key.setdefault(x["task"].split(" of ")[-1], []).append(x["wall_s"])
        detail = "; ".join(f"{k} {len(v)} runs {sum(v):.0f} s" for k, v in by_key.items())
        _row(rows, f"tile rounds ({args.workers} workers)", rounds_wall, max((x["peak_mb"] for x in tiles), default=0.0),
             f"{len(rounds)} rounds {runs} = {sum(runs)} tile runs, {busy:.0f} s of task time ({detail}); "
             f"{len(plan0['tiles'])} tiles a problem")
        for x in (x for x in tasks if x["stage"] == "stitch"):
            _row(rows, f"stitch {x['task'].split()[-1]}", x["process_wall_s"], x["peak_mb"],
                 f"{x['result'].get('reached', 0):,} reached")
        for x in (x for x in tasks if x["stage"] == "part"):
            _row(rows, f"part {x['task'].split()[-1]}", x["process_wall_s"], x["peak_mb"], _counts(x["result"]))
        work_s += busy + sum(x["process_wall_s"] for x in tasks if x["stage"] != "tile")
    r = _task(work, run_path, "tvb_tasks.pipeline", "stage_assemble", parts)
    _row(rows, "assemble", r["process_wall"], r["peak_mb"],
         ", ".join(f"{k} {v}" for k, v in (r["out"].get("counts") or {}).items())[:160])
    elapsed += r["process_wall"]
    work_s += r["process_wall"]
    r = _task(work, run_path, "tvb_tasks.pipeline", "stage_indicators")
    _row(rows, "indicators", r["process_wall"], r["peak_mb"], f"release {r['out'].get('release_id')}")
    elapsed += r["process_wall"]
    work_s += r["process_wall"]
    peak = max(x["peak_mb"] for x in rows)
    worst_task = max(rows, key=lambda x: x["wall"])
    print(f"  × {n}: {cells / 1e6:.2f} M grid cells; work {work_s:.0f} s (sum of task times), elapsed {elapsed:.0f} s "
          f"({'one task after the other' if args.untiled else f'tile rounds on {args.workers} workers'}); largest task peak {peak:.0f} MB (bound "
          f"{args.memory_limit_gib * 1024:.0f} MB{': OVER THE BOUND' if peak > args.memory_limit_gib * 1024 else ''}); "
          f"longest task {worst_task['task']} {worst_task['wall']:.0f} s; "
          f"load average {load0[0]:.2f} → {os.getloadavg()[0]:.2f}", flush=True)
    shutil.rmtree(work / "store" / "work", ignore_errors=True)     # per-tile scratch objects (≈ 18 B per cell)
    return {"copies": n, "area_km2": float(n) * CALL_KM2 if n != "region" else 31800.0, "grid_cells": cells,
            "work_s": work_s, "elapsed_s": elapsed, "peak_mb": peak, "rows": rows,
            "load": [load0, os.getloadavg()]}


def growth(results: list[dict]) -> list[str]:
    """Lines stating the growth of work, elapsed time and largest peak from the smallest to the largest scale."""
    lo, hi = min(results, key=lambda r: r["area_km2"]), max(results, key=lambda r: r["area_km2"])
    area = hi["area_km2"] / lo["area_km2"]
    lines = [f"growth × {lo['copies']} → × {hi['copies']}: area × {area:g}, grid cells × "
             f"{hi['grid_cells'] / max(lo['grid_cells'], 1):.1f}"]
    for key, label in (("work_s", "work (sum of task times)"), ("elapsed_s", "elapsed (tiles on the workers)")):
        g = hi[key] / lo[key]
        lines.append(f"  {label}: {lo[key]:.0f} s → {hi[key]:.0f} s, × {g:.2f}; time ∝ area^{math.log(g) / math.log(area):.2f}"
                     f"; time growth / area growth = {g / area:.2f} (goal ≤ 1.3: {'met' if g / area <= 1.3 else 'NOT met'})")
    lines.append(f"  largest task peak: {lo['peak_mb']:.0f} MB → {hi['peak_mb']:.0f} MB, × {hi['peak_mb'] / lo['peak_mb']:.2f}")
    steps = sorted(results, key=lambda r: r["area_km2"])
    for a, b in itertools.pairwise(steps):
        lines.append(f"  step × {a['copies']} → × {b['copies']}: work × {b['work_s'] / a['work_s']:.2f} for area × "
                     f"{b['area_km2'] / a['area_km2']:g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", default="1,4,16", help="comma-separated numbers of CALL copies, or 'region' (≈ 132)")
    ap.add_argument("--resolution", type=float, default=25.0)
    ap.add_argument("--sous-trames", default="forest,grassland,mining,wetland")
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit-gib", type=float, default=4.0)
    ap.add_argument("--untiled", action="store_true", help="the untiled observatory's compute_sous_trame tasks")
    ap.add_argument("--work", default=str(ROOT / "var" / "bench" / "region_pipeline"))
    args = ap.parse_args(argv)
    args.sous_trames = args.sous_trames.split(",")
    os.environ.setdefault("TVB_STORE_FSYNC", "0")          # a benchmark's store: no fsync per object
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "var" / "numba-cache"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    root = Path(args.work)
    root.mkdir(parents=True, exist_ok=True)
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    print(f"numba cache {cache}: {sum(1 for _ in cache.rglob('*.nbc')) if cache.exists() else 0} compiled files")
    print(f"{os.cpu_count()} CPUs; start {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {_uptime()}")
    print(f"{'untiled' if args.untiled else 'tiled'} observatory tasks at {args.resolution:g} m, sous-trames "
          f"{', '.join(args.sous_trames)}"
          + ("" if args.untiled else f", tiles {args.tile_size} + {args.overlap}, {args.workers} workers")
          + f", bound {args.memory_limit_gib:g} GiB", flush=True)
    results = [run_scale(n, args, root) for n in args.copies.split(",")]
    print(f"\nend {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {_uptime()}")
    print(f"\n{'scale':>6} {'area km²':>9} {'cells':>8} {'work s':>8} {'elapsed s':>9} {'peak MB':>8}")
    for r in results:
        print(f"{'× ' + str(r['copies']):>6} {r['area_km2']:9,.0f} {r['grid_cells'] / 1e6:7.2f}M {r['work_s']:8.0f} "
              f"{r['elapsed_s']:9.0f} {r['peak_mb']:8.0f}")
    if len(results) > 1:
        print("\n".join(growth(results)))
    (root / f"results_{args.resolution:g}m{'_untiled' if args.untiled else ''}.json").write_text(json.dumps({"args": vars(args),
                                                   "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
