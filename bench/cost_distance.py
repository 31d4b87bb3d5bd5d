"""Benchmark of the accumulated cost-distance kernel (tvb_tasks.layers.costdistance).

Raster: seeded RNG, SIZE x SIZE float32 costs uniform in [1, 1000), 2 % barrier
cells at 10000 (expensive but passable), SOURCES random source cells, cell size 1,
8 neighbours (16 with --knight).

Compared, in one process (GRASS in a subprocess):
* ours: ``accumulated_cost`` (after a warm-up call on a small raster, so that JIT
  compilation / cache loading is not timed; both are reported separately, and the
  cold compile time is measured in a subprocess with an empty NUMBA_CACHE_DIR);
* ours + back-links + allocation rasters;
* the whole file path ``cost_distance_file`` (GeoTIFF + CSV in a temp dir, I/O included);
* scikit-image ``MCP_Geometric(cost, fully_connected=True).find_costs(starts)``
  (same mean-of-two-cells x length rule; not with --knight);
* GRASS ``r.cost`` (``-k`` with --knight) if ``grass`` is on PATH, in a temporary XY
  location (only the r.cost call is timed);
* whole commands, each in a fresh process, alternated ``--repeat`` times (best kept):
  ``tvb cost-distance cost.tif sources.csv out.tif`` (interpreter start, imports, numba
  cache load, GeoTIFF read, CSV, kernel, GeoTIFF write) against ``r.cost`` alone (GRASS
  already started, rasters imported) and against GRASS as a whole (start, ``r.in.gdal``,
  ``r.cost``, ``r.out.gdal``). Wall time and CPU time (user + sys, which a loaded
  machine inflates much less than wall time) are both printed, with the ratios.

Usage: python bench/cost_distance.py [--size 3100] [--sources 50] [--repeat 3]
       [--knight] [--no-skimage] [--no-grass] [--no-cold] [--whole-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def build_case(size: int, n_sources: int, seed: int = 0):
    """float32 costs in [1, 1000), 2 % barriers at 10000, distinct source cells."""
    rng = np.random.default_rng(seed)
    cost = rng.random((size, size), dtype=np.float32)
    cost *= np.float32(999.0)
    cost += np.float32(1.0)
    cost[rng.random((size, size), dtype=np.float32) < 0.02] = 10000.0
    flat = rng.choice(size * size, size=n_sources, replace=False)
    sources = np.stack([flat // size, flat % size], axis=1).astype(np.int64)
    return cost, sources


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| / |b| over cells finite in both (and check same finiteness)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return float("nan")
    m = fa & (b != 0)
    if not m.any():
        return 0.0
    return float(np.max(np.abs(a[m].astype(np.float64) - b[m]) / np.abs(b[m])))


def cold_compile_seconds() -> float | None:
    """First call with an empty numba cache, in a subprocess."""
    code = textwrap.dedent(
        """
        import time, numpy as np
        t = time.perf_counter()
        from tvb_tasks.layers.costdistance import accumulated_cost
        t1 = time.perf_counter()
        accumulated_cost(np.ones((8, 8), np.float32), [[1, 1]])
        print(t1 - t, time.perf_counter() - t1)
        """
    )
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d, PYTHONPATH=str(ROOT))
        try:
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True, timeout=600).stdout
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"  (cold compile measurement failed: {exc})")
            return None
    return float(out.split()[1])


def run_grass(cost: np.ndarray, sources: np.ndarray, knight: bool, workdir: Path):
    """r.cost in a temporary XY location; returns (seconds, accumulated cost) or None."""
    import rasterio
    from rasterio.transform import Affine

    grass = shutil.which("grass")
    if grass is None:
        print("GRASS: `grass` not on PATH, skipped")
        return None
    H, W = cost.shape
    tr = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(H))
    prof = dict(driver="GTiff", height=H, width=W, count=1, transform=tr, tiled=True,
                blockxsize=256, blockysize=256)
    cost_tif, start_tif, out_tif = workdir / "g_cost.tif", workdir / "g_start.tif", workdir / "g_acc.tif"
    with rasterio.open(cost_tif, "w", dtype="float32", **prof) as ds:
        ds.write(cost, 1)
    start = np.zeros((H, W), np.uint8)
    start[sources[:, 0], sources[:, 1]] = 1
    with rasterio.open(start_tif, "w", dtype="uint8", nodata=0, compress="deflate", **prof) as ds:
        ds.write(start, 1)
    del start
    timing = workdir / "g_time.txt"
    timing_cpu = workdir / "g_cpu.txt"
    script = workdir / "g_run.sh"
    script.write_text(textwrap.dedent(f"""\
        set -e
        r.in.gdal -o --quiet input={cost_tif} output=cost
        r.in.gdal -o --quiet input={start_tif} output=start
        g.region raster=cost
        t0=$(date +%s.%N)
        {_time_prefix(timing_cpu)}r.cost {'-k ' if knight else ''}--quiet input=cost output=acc start_raster=start memory=4000
        t1=$(date +%s.%N)
        echo "$t0 $t1" > {timing}
        r.out.gdal --quiet --overwrite -c -f input=acc output={out_tif} type=Float64 format=GTiff
        """))
    try:
        c0, w0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run([grass, "--tmp-location", "XY", "--exec", "bash", str(script)],
                              capture_output=True, text=True, timeout=3600)
        whole = (time.perf_counter() - w0, _children_cpu() - c0)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"GRASS: failed to run ({exc}), skipped")
        return None
    if proc.returncode != 0 or not timing.exists():
        print(f"GRASS: r.cost failed (rc={proc.returncode}), skipped:\n{proc.stderr[-2000:]}")
        return None
    t0, t1 = (float(v) for v in timing.read_text().split())
    cpu = float("nan")
    if timing_cpu.exists():
        u, s_ = timing_cpu.read_text().split()[-2:]
        cpu = float(u) + float(s_)
    with rasterio.open(out_tif) as ds:
        acc = ds.read(1, masked=True).filled(np.nan).astype(np.float64)
    return t1 - t0, acc, cpu, whole


def _time_prefix(out: Path) -> str:
    """``/usr/bin/time`` prefix writing 'user sys' CPU seconds to ``out`` (empty if absent)."""
    return f"/usr/bin/time -f '%U %S' -o {out} " if Path("/usr/bin/time").exists() else ""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cli(cost_tif: Path, src_csv: Path, out_tif: Path, knight: bool) -> tuple[float, float]:
    """``tvb cost-distance`` in a fresh process: (wall s, CPU s)."""
    cmd = [sys.executable, "-m", "tvb_tasks.cli", "cost-distance", str(cost_tif), str(src_csv), str(out_tif)]
    if knight:
        cmd.append("--knight")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0, _children_cpu() - c0


def whole_commands(cost: np.ndarray, sources: np.ndarray, knight: bool, repeat: int, grass: bool) -> None:
    """Whole-command comparison (module doc), alternating ours and GRASS ``repeat`` times."""
    import rasterio
    from rasterio.transform import Affine

    with tempfile.TemporaryDirectory(prefix="bench_cdw_") as tmp:
        tmp = Path(tmp)
        H, W = cost.shape
        tr = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(H))
        cost_tif, src_csv, out_tif = tmp / "cost.tif", tmp / "sources.csv", tmp / "acc.tif"
        with rasterio.open(cost_tif, "w", driver="GTiff", height=H, width=W, count=1, dtype="float32",
                           transform=tr, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
            ds.write(cost, 1)
        with open(src_csv, "w") as fh:
            fh.write("x,y\n")
            for r, c in sources:
                fh.write(f"{c + 0.5},{H - r - 0.5}\n")
        run_cli(cost_tif, src_csv, out_tif, knight)  # fills the numba cache if it is empty
        ours: list[tuple[float, float]] = []
        rcost: list[tuple[float, float]] = []
        gwhole: list[tuple[float, float]] = []
        for _ in range(max(1, repeat)):
            ours.append(run_cli(cost_tif, src_csv, out_tif, knight))
            if grass:
                res = run_grass(cost, sources, knight, tmp)
                if res is None:
                    grass = False
                else:
                    rcost.append((res[0], res[2]))
                    gwhole.append(res[3])
        ow, oc = min(w for w, _ in ours), min(c for _, c in ours)
        print(f"\nwhole command, best of {len(ours)} (fresh process each):")
        print(f"  tvb cost-distance             wall {ow:7.2f} s   CPU {oc:7.2f} s")
        if not rcost:
            print("  GRASS not run (absent or --no-grass): ours only")
            return
        rw, rc = min(w for w, _ in rcost), min(c for _, c in rcost)
        gw, gc = min(w for w, _ in gwhole), min(c for _, c in gwhole)
        print(f"  GRASS r.cost alone            wall {rw:7.2f} s   CPU {rc:7.2f} s")
        print(f"  GRASS start+import+r.cost+export wall {gw:7.2f} s   CPU {gc:7.2f} s")
        print(f"  ratio r.cost alone / tvb cost-distance: wall {rw / ow:.1f}x, CPU {rc / oc:.1f}x")
        print(f"  ratio GRASS whole / tvb cost-distance:  wall {gw / ow:.1f}x, CPU {gc / oc:.1f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=3100)
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of our kernel (min reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knight", action="store_true", help="16 neighbours (skips scikit-image)")
    ap.add_argument("--no-skimage", action="store_true")
    ap.add_argument("--no-grass", action="store_true")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    ap.add_argument("--whole-only", action="store_true", help="only the whole-command comparison")
    args = ap.parse_args(argv)
    if args.whole_only:
        cost, sources = build_case(args.size, args.sources, args.seed)
        print(f"raster {args.size} x {args.size} float32, {args.sources} sources, "
              f"{'16' if args.knight else '8'} neighbours, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}")
        whole_commands(cost, sources, args.knight, args.repeat, not args.no_grass)
        return 0

    t = time.perf_counter()
    from tvb_tasks.layers import costdistance as cdm
    t_import = time.perf_counter() - t

    print(f"raster {args.size} x {args.size} float32 ({args.size ** 2 / 1e6:.2f} M cells), "
          f"{args.sources} sources, {'16' if args.knight else '8'} neighbours, "
          f"{os.cpu_count()} CPUs, seed {args.seed}")
    cost, sources = build_case(args.size, args.sources, args.seed)
    raster_mb = cost.nbytes / 2**20
    out_mb = cost.size * 8 / 2**20

    # -- warm-up / compile ------------------------------------------------
    t = time.perf_counter()
    cdm.accumulated_cost(cost[:64, :64], sources[:1] % 64, knight=args.knight)
    t_first = time.perf_counter() - t
    cdm.accumulated_cost(cost[:64, :64], sources[:1] % 64, knight=args.knight,
                         return_backlinks=True, return_allocation=True)
    print(f"import costdistance: {t_import:.2f} s; first call (JIT compile or numba cache load): "
          f"{t_first:.2f} s")
    if not args.no_cold:
        cold = cold_compile_seconds()
        if cold is not None:
            print(f"cold compile (empty NUMBA_CACHE_DIR, subprocess): {cold:.2f} s")

    rows: list[tuple[str, float, float | None]] = []

    # -- ours ---------------------------------------------------------------
    rss0 = _rss_mb()
    times = []
    acc = None
    for _ in range(max(1, args.repeat)):
        acc = None
        t = time.perf_counter()
        acc = cdm.accumulated_cost(cost, sources, knight=args.knight)
        times.append(time.perf_counter() - t)
    peak_plain = _peak_mb()
    ours = min(times)
    rows.append(("ours (accumulated_cost)", ours, 0.0))
    print(f"ours: min {ours:.3f} s, median {statistics.median(times):.3f} s over {len(times)} runs")

    times_x = []
    acc_x = None
    for _ in range(max(1, args.repeat)):
        acc_x = None
        t = time.perf_counter()
        acc_x, back, alloc = cdm.accumulated_cost(cost, sources, knight=args.knight,
                                                  return_backlinks=True, return_allocation=True)
        times_x.append(time.perf_counter() - t)
        del back, alloc
    peak_extras = _peak_mb()
    rows.append(("ours + backlinks + allocation", min(times_x), max_rel_diff(acc_x, acc)))
    del acc_x

    # -- file path ----------------------------------------------------------
    import rasterio
    from rasterio.transform import Affine

    with tempfile.TemporaryDirectory(prefix="bench_cd_") as tmp:
        tmp = Path(tmp)
        H, W = cost.shape
        tr = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(H))
        cost_tif, src_csv, out_tif = tmp / "cost.tif", tmp / "sources.csv", tmp / "acc.tif"
        with rasterio.open(cost_tif, "w", driver="GTiff", height=H, width=W, count=1,
                           dtype="float32", transform=tr, tiled=True, blockxsize=256,
                           blockysize=256, compress="deflate") as ds:
            ds.write(cost, 1)
        with open(src_csv, "w") as fh:
            fh.write("x,y\n")
            for r, c in sources:
                fh.write(f"{c + 0.5},{H - r - 0.5}\n")
        stats = cdm.cost_distance_file(str(cost_tif), str(src_csv), str(out_tif), knight=args.knight)
        with rasterio.open(out_tif) as ds:
            got = ds.read(1, masked=True).filled(np.nan).astype(np.float64)
        got[got < 0] = np.nan
        ref = acc.copy()
        ref[~np.isfinite(ref)] = np.nan
        rows.append(("cost_distance_file (GeoTIFF+CSV, I/O incl.)", stats["seconds"],
                     max_rel_diff(np.nan_to_num(got, nan=np.inf), np.nan_to_num(ref, nan=np.inf))))
        del got, ref

        # -- scikit-image -----------------------------------------------------
        if args.no_skimage or args.knight:
            print("scikit-image: skipped" + (" (no knight's moves rule)" if args.knight else ""))
        else:
            try:
                from skimage.graph import MCP_Geometric
            except ImportError:
                print("scikit-image: not installed, skipped")
            else:
                t = time.perf_counter()
                mcp = MCP_Geometric(cost, fully_connected=True)
                sk, _tb = mcp.find_costs(sources.tolist())
                t_sk = time.perf_counter() - t
                del mcp, _tb
                rows.append(("scikit-image MCP_Geometric", t_sk, max_rel_diff(sk, acc)))
                del sk

        # -- GRASS --------------------------------------------------------------
        if args.no_grass:
            print("GRASS: skipped (--no-grass)")
        else:
            res = run_grass(cost, sources, args.knight, tmp)
            if res is not None:
                t_g, acc_g = res[:2]
                rows.append((f"GRASS r.cost{' -k' if args.knight else ''}", t_g, max_rel_diff(acc_g, acc)))
                del acc_g

    # -- report -------------------------------------------------------------
    print()
    print(f"{'method':46s} {'seconds':>9s} {'x ours':>8s} {'max rel diff':>13s}")
    for name, sec, diff in rows:
        d = "-" if diff is None else ("mismatch" if diff != diff else f"{diff:.2e}")
        print(f"{name:46s} {sec:9.3f} {sec / ours:8.2f} {d:>13s}")
    print()
    print(f"raster float32 {raster_mb:.0f} MB, output float64 {out_mb:.0f} MB; RSS before ours "
          f"{rss0:.0f} MB; peak RSS after ours {peak_plain:.0f} MB "
          f"(+{peak_plain - rss0:.0f} MB = output + {(peak_plain - rss0 - out_mb) / raster_mb:.2f} x raster), "
          f"after ours+extras {peak_extras:.0f} MB (+{peak_extras - peak_plain:.0f} MB; back-links + "
          f"allocation = {cost.size * 5 / 2**20:.0f} MB, + a 2nd output {out_mb:.0f} MB kept for comparison); "
          f"process peak (incl. scikit-image) {_peak_mb():.0f} MB")
    whole_commands(cost, sources, args.knight, args.repeat, not args.no_grass)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
