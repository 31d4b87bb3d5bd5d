"""Bytes per cell of the data-dependent windows of the tiled part task (its corridors), and the interpreter's memory sizes
(the factors of :func:`tvb_tasks.memory.check_allocation` in :mod:`tvb_tasks.layers.tile_missing` /
:mod:`tvb_tasks.layers.tile_links`, and the numbers of :mod:`tvb_tasks.memory`'s docstring).

Each window step runs in a fresh process on a square window of ``--side`` cells a side (uniform friction, every
cell reached: the worst case), after a warm-up on a small window (numba compilation); printed: (peak RSS − RSS
before) / cells. Steps: ``reach`` (a missing link's real-cost window: friction assembled from the tiles, the
Dijkstra, the band test of ``reach_window``; ``reach_rough``: the same on random friction 1–1000, whose Dijkstra
queue is longer), ``crossing`` (a crossing's score window: friction, potential, their
minimum, the Dijkstra, then ``barrier_crossing_scores``), ``area`` (a corridor polygon's zone window: accumulated
cost, allocation, friction, reservoir mask, then ``corridor_area``). ``sizes``: VmSize / VmData / RSS of an
interpreter as the libraries are imported and threads started. ``--tile-bounds 0.4,0.45``: one default tile task
(2048 + 2 × 16 cells, random friction 1–100, the first run of tile 0 of a 2 × 2 plan) under
``tvb_tasks.memory.memory_bound`` at each bound (GiB), in a fresh process each: passed or the error, peak RSS.

Usage: python bench/memory_windows.py [--side 3000] [--tile-bounds 0.4,0.45] [--work var/bench/memory]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = r"""
import resource, sys
import numpy as np
from rasterio.transform import Affine
from tvb_tasks.layers import costdistance as cd
from tvb_tasks.layers.common import Grid
from tvb_tasks.layers.corridors import barrier_crossing_scores, corridor_area
from tvb_tasks.memory import rss_mb

step, n = sys.argv[1], int(sys.argv[2])
rough = step == "reach_rough"
step = "reach" if rough else step

def run(n):
    grid = Grid(Affine(10, 0, 0, 0, -10, n * 10), (n, n), "EPSG:2154", 10.0)
    src = np.array([[n // 2, 2]]); lab = np.array([0])
    if step == "reach":
        fr = np.full((n, n), 1.0, np.float32)
        if rough:                  # random friction 1–1000: a longer queue than the uniform friction's front
            fr = np.random.default_rng(0).integers(1, 1000, (n, n)).astype(np.float32)
        acc = cd.accumulated_cost(fr, src, cell_size=10.0, knight=True, max_cost=1e12)
        with np.errstate(invalid="ignore"):
            hit = np.isfinite(acc) & (acc <= 1e12)
        return hit.any()
    if step == "crossing":
        fr = np.full((n, n), 1.0, np.float32); fr[:, n // 2] = 50
        pot = np.full((n, n), 1.0, np.float32)
        low = np.fmin(fr, pot).astype(fr.dtype)
        cd.accumulated_cost(low, src, cell_size=10.0, knight=True, max_cost=1e12)
        src2 = np.array([[n // 2, 2], [n // 2, n - 3]]); lab2 = np.array([0, 1])
        path = [(n // 2, c) for c in range(2, n - 2)]
        return barrier_crossing_scores(np.array([[n // 2 * 10 + 5, n // 2 * 10 + 5]]), 0, 1, 1e12, path, fr, pot,
                                       src2, lab2, grid, knight=True, radius_m=100)
    if step == "area":
        acc = np.full((n, n), 1.0, np.float64)
        alloc = np.zeros((n, n), np.int32); alloc[:, n // 2:] = 1
        fr = np.full((n, n), 1.0, np.float32)
        src2 = np.array([[n // 2, 2], [n // 2, n - 3]]); lab2 = np.array([0, 1])
        core = np.zeros(fr.shape, dtype=bool); core[src2[:, 0], src2[:, 1]] = True
        return corridor_area(1e6, 0, 1, acc, alloc, fr, src2, lab2, grid, margin=1e6, knight=True, core=core)

run(64)
before = rss_mb()
run(n)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{step + (' (rough)' if rough else ''):15s} {n * n / 1e6:5.1f} M cells: {(peak - before) * 2**20 / (n * n):5.1f} B per cell "
      f"(peak {peak:.0f} MB, before {before:.0f} MB)")
"""

SIZES = r"""
import threading, time
def st(tag):
    d = {}
    for line in open("/proc/self/status"):
        k, v = line.split(":", 1)
        d[k] = (v.split() or ["0"])[0]
    print(f"{tag:34s} VmSize {int(d['VmSize']) / 1024:6.0f} MB  VmData {int(d['VmData']) / 1024:6.0f} MB  "
          f"RSS {int(d['VmRSS']) / 1024:5.0f} MB  threads {d['Threads']}", flush=True)
st("python")
import numpy as np; st("+ numpy")
import pandas; st("+ pandas")
import numba; st("+ numba")
import rasterio, pyogrio, geopandas; st("+ rasterio, pyogrio, geopandas")
from tvb_tasks import tiled
from tvb_tasks.layers import tiles, tile_links, tile_missing, windows, vectors, stitch, engine; st("+ tiled stages")
from tvb_tasks.layers.costdistance import accumulated_cost
accumulated_cost(np.ones((300, 300), np.float32), np.array([[5, 5]]), return_backlinks=True, return_allocation=True)
st("+ a kernel run")
ev = threading.Event()
ts = [threading.Thread(target=lambda: (np.ones(10000).sum(), ev.wait())) for _ in range(4)]
[t.start() for t in ts]; time.sleep(0.2); st("+ 4 threads that allocate")
ev.set(); [t.join() for t in ts]
"""


TILE = r"""
import json, sys, time
import numpy as np
from tvb_tasks.layers.tiles import TilingConfig, plan_to_store, run_tile_from_store
from tvb_tasks.memory import MemoryBoundError, memory_bound, peak_mb
from tvb_tasks.store import LocalStore

root, bound = sys.argv[1], float(sys.argv[2])
store, prefix = LocalStore(root), "work/x/tiles/forest"
if bound == 0:
    cost = np.random.default_rng(0).uniform(1, 100, (4096, 4096)).astype(np.float32)
    plan_to_store(store, prefix, cost, np.array([[100, 100], [1500, 1800], [2000, 30]]),
                  tiling=TilingConfig(tile_size=2048, overlap=16), cell_size=10.0, knight=True)
    sys.exit()
for key in store.list(f"{prefix}/core/"):
    store.delete(key)
t0 = time.time()
try:
    with memory_bound("tile 0 of forest", bound, "use smaller tiles (tiling.tile_size)"):
        run_tile_from_store(store, prefix, 0, 1)
    res = "passed"
except MemoryBoundError as e:
    res = str(e)
print(f"bound {bound} GiB: {time.time() - t0:.1f} s, peak RSS {peak_mb():.0f} MB: {res}")
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=int, default=3000)
    p.add_argument("--tile-bounds", default="", help="GiB, comma-separated: a default tile task under each bound")
    p.add_argument("--work", default=str(ROOT / "var" / "bench" / "memory"))
    a = p.parse_args()
    env = {"PYTHONPATH": str(ROOT)}
    import os

    env = {**os.environ, **env}
    subprocess.run([sys.executable, "-c", SIZES], check=True, env=env)
    if a.tile_bounds:
        for bound in ["0", *a.tile_bounds.split(",")]:          # 0: plan the tiles once
            subprocess.run([sys.executable, "-c", TILE, a.work, bound], check=True, env=env)
        return
    for step in ("reach", "reach_rough", "crossing", "area"):
        subprocess.run([sys.executable, "-c", STEP, step, str(a.side)], check=True, env=env)


if __name__ == "__main__":
    main()
