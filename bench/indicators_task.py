"""The indicators task (``pipeline.stage_indicators``) alone, on a run that ``bench/region_pipeline.py`` left.

``bench/region_pipeline.py`` (branch bench-scaling) runs the whole tiled observatory of a synthetic region and
leaves its work folder (``<work>/x<n>_<res>m``: ``run.json``, ``store/``, ``local/``). This script runs the last
task again on it, in this process, with the code of this checkout: wall time, peak RSS, load, and optionally a
cProfile dump — to measure a change of the indicators or priorities code without re-running the region.

Usage: python bench/indicators_task.py var/bench/region_pipeline/x4_25m [--profile out.prof]
(set ``TVB_STORE_FSYNC=0``; the run folder is modified: the indicators' outputs are written again.)
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a region_pipeline work folder holding run.json, store/ and local/")
    ap.add_argument("--profile", help="write a cProfile dump here")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    run = json.loads((run_dir / "run.json").read_text())
    if Path(run["store_uri"]).resolve() != (run_dir / "store").resolve():
        raise SystemExit(f"{run_dir}/run.json points at the store {run['store_uri']}, not {run_dir / 'store'}: "
                         "a copied run folder needs its store_uri rewritten")
    os.environ["TVB_WORK_DIR"] = str(run_dir / "local")
    os.environ.setdefault("TVB_STORE_FSYNC", "0")
    from tvb_tasks import pipeline

    load = os.getloadavg()[0]
    prof = cProfile.Profile() if args.profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    pipeline.stage_indicators(run)
    if prof:
        prof.disable()
        prof.dump_stats(args.profile)
    wall = time.perf_counter() - t
    print(json.dumps({"run": str(run_dir), "wall_s": round(wall, 1),
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
