"""Peak memory of the tiled DAG's planning task (``plan_tiles``) against the grid size: whole grid vs windows.

For each synthetic region (``sample/generate.py``'s ``generate_region``: ``n`` translated copies of the CALL
sample, cached under ``var/bench/region_x<n>``, as ``bench/region_pipeline.py``) and one sous-trame, two planners run, each
in a fresh process (what one Airflow task is), writing the per-tile inputs into a local store:

* ``whole``: the former ``plan_tiles`` — the untiled engine's whole-grid friction and reservoir sources
  (``tvb_tasks.tiled.cost_problem``: class raster, territory / extent masks, friction, sources of the whole grid)
  cut by ``plan_to_store``;
* ``windows``: ``plan_tiles`` now — the vector inputs (``vector_context``), then every raster per tile window
  (``plan_windows_to_store``).

Printed per run: grid cells, tiles, vector features (land-use polygons, infrastructure lines, overlays), wall time,
the RSS once the vectors are loaded (windows only) and the task's peak RSS (``ru_maxrss``); then the growth of
the peaks between the smallest and largest region, and whether the two planners wrote identical inputs
(every ``input/<i>.npz`` array and ``plan.json``).

Usage: python bench/plan_windows.py [--scales 1,4] [--resolution 10] [--sous-trame forest]
       [--tile-size 1024] [--overlap 16] [--no-check]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TASK = r"""
import json, resource, sys, time
from tvb_tasks.config import load_territory
from tvb_tasks.config_sections import TilingConfig
from tvb_tasks.layers import engine
from tvb_tasks.store import LocalStore

def rss_mb():
    for row in open("/proc/self/status"):
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0

yaml_path, mode, sous_trame, res, tile, overlap, store_dir = sys.argv[1:8]
tiling = TilingConfig(enabled=True, tile_size=int(tile), overlap=int(overlap))
t = load_territory(yaml_path).model_copy(update={"resolution_m": float(res), "tiling": tiling})
inputs = engine.sample_inputs(t)
store = LocalStore(store_dir)
out = {"mode": mode}
t0 = time.perf_counter()
if mode == "whole":
    from tvb_tasks.layers.tiles import plan_to_store
    from tvb_tasks.tiled import cost_problem
    friction, src, res_idx, grid, knight = cost_problem(t, inputs, sous_trame)
    first = plan_to_store(store, mode, friction, src, tiling=tiling, cell_size=grid.res, knight=knight,
                          max_cost=t.sous_trames[sous_trame].max_cost, source_labels=res_idx)
else:
    from tvb_tasks.layers.vectors import vector_context
    from tvb_tasks.layers.windows import plan_windows_to_store
    v = vector_context(t, inputs)
    grid = v.grid
    out["vectors_s"] = time.perf_counter() - t0
    out["rss_vectors_mb"] = rss_mb()
    out["features"] = {"landuse": len(v.landuse_all), "extra": len(v.extra), "lines": len(v.infra.lines),
                       "overlays": 0 if v.infra.overlays is None else len(v.infra.overlays)}
    first = plan_windows_to_store(store, mode, t, v, sous_trame, tiling=tiling)
out.update(seconds=time.perf_counter() - t0, cells=grid.shape[0] * grid.shape[1], shape=list(grid.shape),
           tiles=len(store.list(f"{mode}/input/")), first=len(first),
           peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def region_yaml(n: int) -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    import region_pipeline  # bench/region_pipeline.py

    return region_pipeline.region_yaml(n)


def run(yaml_path: Path, mode: str, args, store_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", TASK, str(yaml_path), mode, args.sous_trame, str(args.resolution),
                           str(args.tile_size), str(args.overlap), str(store_dir)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} planner failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_inputs(store_dir: Path) -> bool:
    import numpy as np

    a, b = store_dir / "whole", store_dir / "windows"
    if json.loads((a / "plan.json").read_text()) != json.loads((b / "plan.json").read_text()):
        return False
    names = sorted(p.name for p in (a / "input").iterdir())
    if names != sorted(p.name for p in (b / "input").iterdir()):
        return False
    for name in names:
        with np.load(a / "input" / name) as x, np.load(b / "input" / name) as y:
            if sorted(x.files) != sorted(y.files) or not all(
                    x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k], equal_nan=True) for k in x.files):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--sous-trame", default="forest")
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--modes", default="whole,windows")
    ap.add_argument("--no-check", action="store_true", help="do not compare the two planners' inputs")
    args = ap.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    modes = args.modes.split(",")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.resolution:g} m, sous-trame "
          f"{args.sous_trame}, tiles {args.tile_size} + {args.overlap}")
    print(f"{'scale':>6} {'planner':>8} {'grid':>13} {'M cells':>8} {'tiles':>6} {'features':>9} {'wall s':>7} "
          f"{'RSS vectors MB':>15} {'peak MB':>8}")
    peaks: dict[str, dict[int, tuple[float, int]]] = {m: {} for m in modes}
    for n in scales:
        yaml_path = region_yaml(n)
        with tempfile.TemporaryDirectory(prefix="bench_plan_") as tmp:
            for mode in modes:
                t = time.perf_counter()
                r = run(yaml_path, mode, args, Path(tmp))
                r["wall"] = time.perf_counter() - t
                feats = sum(r.get("features", {}).values())
                peaks[mode][n] = (r["peak_mb"], r["cells"])
                print(f"{'× ' + str(n):>6} {mode:>8} {r['shape'][0]:>6}x{r['shape'][1]:<6} {r['cells'] / 1e6:8.1f} "
                      f"{r['tiles']:>6} {feats if feats else '':>9} {r['seconds']:7.1f} "
                      f"{r.get('rss_vectors_mb', float('nan')):15.0f} {r['peak_mb']:8.0f}", flush=True)
            if not args.no_check and set(modes) >= {"whole", "windows"}:
                print(f"{'':>6} identical inputs (every input/<i>.npz array, plan.json): {same_inputs(Path(tmp))}")
    if len(scales) > 1:
        lo, hi = min(scales), max(scales)
        for mode in modes:
            (p0, c0), (p1, c1) = peaks[mode][lo], peaks[mode][hi]
            print(f"{mode}: × {lo} → × {hi}: grid cells × {c1 / c0:.1f}, peak RSS × {p1 / p0:.2f} "
                  f"(+{p1 - p0:.0f} MB, {(p1 - p0) * 2**20 / max(c1 - c0, 1):.1f} B per added cell)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
