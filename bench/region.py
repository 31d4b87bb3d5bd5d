"""Region-scale benchmark: time and peak memory of each layers task on synthetic regions of 1, 4, 16 × CALL.

For each scale, ``sample/generate.py``'s :func:`generate_region` writes ``n`` translated copies of the CALL sample
(same land-use shares; cached under ``var/bench/region_x<n>``). Each task is what one Airflow mapped task runs:
``compute_sous_trame`` for one sous-trame (load + rasterize the inputs, reservoirs, friction, cost-distance,
corridors, write), in a fresh process, so its wall time and peak RSS (``ru_maxrss`` of the child) are those of a
worker task. Printed per task and per scale, then the growth of time and memory with area between the smallest
and largest scale: the exponent ``b`` of time ∝ area^b (1 = linear; the goal is time growing at most 1.3× faster
than area, i.e. time ratio / area ratio ≤ 1.3).

``--tiled`` also runs the sous-trames with the territory's ``tiling`` enabled and checks that the cost rasters
and corridors are identical to the untiled ones (max abs difference printed).

Usage: python bench/region.py [--scales 1,4,16] [--resolution 25] [--sous-trames forest,grassland]
       [--tiled] [--tile-size 512] [--overlap 16]
"""
from __future__ import annotations

import argparse
import json
import math
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
from pathlib import Path
from tvb_tasks.config import load_territory
from tvb_tasks.config_sections import TilingConfig
from tvb_tasks.layers import engine
yaml_path, sous_trame, out, res, tiling = sys.argv[1:6]
t = load_territory(yaml_path)
upd = {"resolution_m": float(res)}
if tiling != "-":
    upd["tiling"] = TilingConfig(**json.loads(tiling))
t = t.model_copy(update=upd)
t0 = time.perf_counter()
r = engine.compute_sous_trame(t, engine.sample_inputs(t), sous_trame, Path(out))
print(json.dumps({"seconds": time.perf_counter() - t0, "timings": r["timings_s"], "cells": r["counts"]["grid_cells"],
                  "files": r["files"], "corridors": r["counts"]["corridors"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def region_yaml(n: int) -> Path:
    """The synthetic region of ``n`` × CALL (generated once, cached under var/bench)."""
    sys.path.insert(0, str(ROOT / "sample"))
    import generate  # sample/generate.py

    out = ROOT / "var" / "bench" / f"region_x{n}"
    path = out / f"call_x{n}.yaml"
    if not path.exists():
        t = time.perf_counter()
        generate.generate_region(n, out)
        print(f"  generated {n} × CALL in {time.perf_counter() - t:.1f} s ({out})")
    return path


def run_task(yaml_path: Path, sous_trame: str, out: Path, res: float, tiling: dict | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TASK, str(yaml_path), sous_trame, str(out), str(res),
                           json.dumps(tiling) if tiling else "-"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"task {sous_trame} failed:\n{proc.stderr[-3000:]}")
    res_ = json.loads(proc.stdout.strip().splitlines()[-1])
    res_["wall"] = time.perf_counter() - t
    return res_


def compare(a: dict, b: dict) -> tuple[float, bool]:
    """(max abs difference of the cost rasters, corridors identical)."""
    import geopandas as gpd
    import numpy as np
    import rasterio

    with rasterio.open(a["files"]["cost"]) as ra, rasterio.open(b["files"]["cost"]) as rb:
        x, y = ra.read(1).astype(np.float64), rb.read(1).astype(np.float64)
    diff = float(np.max(np.abs(x - y))) if x.shape == y.shape else float("nan")
    ca, cb = gpd.read_parquet(a["files"]["corridors"]), gpd.read_parquet(b["files"]["corridors"])
    same = len(ca) == len(cb) and ca.drop(columns="geometry").equals(cb.drop(columns="geometry")) and \
        bool(ca.geometry.geom_equals_exact(cb.geometry, tolerance=0).all())
    return diff, same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--resolution", type=float, default=25.0)
    ap.add_argument("--sous-trames", default="forest,grassland,mining,wetland")
    ap.add_argument("--tiled", action="store_true")
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=16)
    args = ap.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    sts = args.sous_trames.split(",")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; resolution {args.resolution:g} m; "
          f"sous-trames {', '.join(sts)}")
    totals: dict[int, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_region_") as tmp:
        for n in scales:
            yaml_path = region_yaml(n)
            print(f"\n× {n} CALL ({n * 240:.0f} km²):")
            print(f"  {'task':<22} {'cells':>11} {'wall s':>8} {'cost-dist s':>11} {'peak MB':>8} {'corridors':>9}")
            tot, peak, cells = 0.0, 0.0, 0
            for st in sts:
                r = run_task(yaml_path, st, Path(tmp) / f"x{n}", args.resolution, None)
                tot += r["wall"]
                peak = max(peak, r["peak_mb"])
                cells = r["cells"]
                stages = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items() if k != "total")
                print(f"  {'sous-trame ' + st:<22} {r['cells']:>11,} {r['wall']:8.1f} "
                      f"{r['timings'].get('cost_distance', 0):11.2f} {r['peak_mb']:8.0f} {r['corridors']:9d}"
                      f"   ({stages})")
                if args.tiled:
                    til = {"enabled": True, "tile_size": args.tile_size, "overlap": args.overlap}
                    rt = run_task(yaml_path, st, Path(tmp) / f"x{n}_tiled", args.resolution, til)
                    diff, same = compare(r, rt)
                    print(f"  {'  tiled ' + str(args.tile_size):<22} {rt['cells']:>11,} {rt['wall']:8.1f} "
                          f"{rt['timings'].get('cost_distance', 0):11.2f} {rt['peak_mb']:8.0f} "
                          f"{rt['corridors']:9d}   max abs diff {diff:g}, corridors "
                          f"{'identical' if same else 'DIFFER'}")
            totals[n] = (tot, peak, cells)
            print(f"  {'all sous-trames':<22} {cells:>11,} {tot:8.1f} {'':>11} {peak:8.0f}")
    if len(totals) > 1:
        lo, hi = min(totals), max(totals)
        (t0, m0, c0), (t1, m1, c1) = totals[lo], totals[hi]
        area = hi / lo
        b = math.log(t1 / t0) / math.log(area)
        print(f"\ngrowth × {lo} → × {hi} (area × {area:g}, grid cells × {c1 / c0:.1f}): time × {t1 / t0:.1f} "
              f"(time ∝ area^{b:.2f}; time ratio / area ratio = {t1 / t0 / area:.2f}, goal ≤ 1.3), "
              f"peak memory × {m1 / m0:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
