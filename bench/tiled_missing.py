"""The tiled observatory DAG's part task (``tvb_tasks.tiled.stage_tile_part``: corridors with missing links,
reservoirs, habitat, friction and cost rasters from the tiles) against the untiled engine
(``engine.compute_sous_trame``), on the CALL sample at ``--resolution``.

Steps, each in a fresh process (peak RSS = ``ru_maxrss`` of that process): (1) the tiled stages ``plan_tiles`` →
rounds of ``run_tile`` (real and potential problems, in one process) → ``stitch``; (2) ``stage_tile_part`` alone
(what the DAG's ``part`` task holds); (3) the untiled ``compute_sous_trame`` with the same territory (tiling off).
Printed: wall and peak of each, counts, and whether every parquet of the part is equal (rows, values,
geometries) and both rasters (values).

Usage: python bench/tiled_missing.py [--resolution 25] [--sous-trame grassland] [--tile-size 512] [--overlap 8]
       [--work var/bench/tiled_missing]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, resource, sys, time
from pathlib import Path
from tvb_tasks.config import load_territory
from tvb_tasks.layers import sample_inputs
from tvb_tasks.layers.tiles import TilingConfig
from tvb_tasks.store import LocalStore
args = json.loads(sys.argv[1])
work = Path(args["work"])
territory = load_territory("call").model_copy(update={"resolution_m": args["resolution"], "tiling": TilingConfig(
    enabled=True, tile_size=args["tile_size"], overlap=args["overlap"], memory_limit_gib=16)})
inputs = sample_inputs(territory)
store = LocalStore(work / "store")
snaps = {}
for name, path in inputs.items():
    key = f"snapshots/{name}/{Path(path).name}"
    if not store.exists(key):
        store.put_file(key, Path(path))
    snaps[name] = {"key": key}
run = {"territory": "call", "input_key": "0123456789abcdef0123", "store_uri": str(work / "store"),
       "snapshots": snaps, "config": territory.model_dump(mode="json", by_alias=True)}
st = args["sous_trame"]
t0 = time.perf_counter()
"""

STEPS = {
    "rounds": """
from tvb_tasks import tiled
items = tiled.stage_plan_tiles(run, st)
n, rnd = [len(items)], 0
while items:
    rnd += 1
    items = tiled.stage_next_round(run, [tiled.stage_run_tile(run, it) for it in items], rnd)
    n.append(len(items))
tiled.stage_stitch_tiles(run, st)
out = {"tile_runs": sum(n), "rounds": rnd}
""",
    "part": """
from tvb_tasks import pipeline, tiled
part = tiled.stage_tile_part(run, st)
out = {"files": pipeline._absolutize(part["files"], pipeline._local_dir(run, "layers")), "counts": part["counts"]}
""",
    "untiled": """
from tvb_tasks.layers import engine
ref = engine.compute_sous_trame(territory.model_copy(update={"tiling": TilingConfig()}), inputs, st, work / "untiled")
out = {"files": ref["files"], "counts": ref["counts"]}
""",
}


def _step(name: str, args: dict) -> dict:
    code = SETUP + STEPS[name] + """
out["wall_s"] = round(time.perf_counter() - t0, 2)
out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print("RESULT" + json.dumps(out))
"""
    env_path = str(ROOT)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": env_path, "TVB_WORK_DIR": args["work"] + "/w"},
                         check=False)
    if res.returncode:
        raise SystemExit(res.stderr[-4000:])
    return json.loads(res.stdout.rsplit("RESULT", 1)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=float, default=25.0)
    p.add_argument("--sous-trame", default="grassland")
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--work", default=str(ROOT / "var" / "bench" / "tiled_missing"))
    a = p.parse_args()
    args = {"resolution": a.resolution, "sous_trame": a.sous_trame, "tile_size": a.tile_size, "overlap": a.overlap,
            "work": str(Path(a.work).resolve())}
    import geopandas as gpd
    import pandas as pd

    rounds = _step("rounds", args)
    print(f"tiled rounds (plan, {rounds['tile_runs']} tile runs in {rounds['rounds']} rounds, stitch): "
          f"{rounds['wall_s']} s, peak {rounds['peak_mb']} MB")
    cor = _step("part", args)
    print(f"part task from the tiles: {cor['wall_s']} s, peak {cor['peak_mb']} MB; counts "
          f"{ {k: cor['counts'][k] for k in ('links', 'missing_links', 'corridors', 'grid_cells')} }")
    ref = _step("untiled", args)
    print(f"untiled compute_sous_trame: {ref['wall_s']} s, peak {ref['peak_mb']} MB; counts "
          f"{ {k: ref['counts'][k] for k in ('links', 'missing_links', 'corridors', 'grid_cells')} }")
    import numpy as np
    import rasterio

    from tvb_tasks.layers.engine import PART_FRAMES

    print(f"counts equal: {cor['counts'] == ref['counts']}")
    for name in ("friction", "cost"):
        with rasterio.open(cor["files"][name]) as x, rasterio.open(ref["files"][name]) as y:
            print(f"{name}.tif equal: {np.array_equal(x.read(1), y.read(1)) and x.profile == y.profile}")
    for layer in PART_FRAMES:
        got = gpd.read_parquet(cor["files"][layer])
        want = gpd.read_parquet(ref["files"][layer])
        try:
            pd.testing.assert_frame_equal(got.drop(columns="geometry"), want.drop(columns="geometry"))
            same = list(got.geometry.to_wkb()) == list(want.geometry.to_wkb())
        except AssertionError:
            same = False
        print(f"{layer}: {len(got)} rows tiled, {len(want)} untiled, equal: {same}")


if __name__ == "__main__":
    main()
