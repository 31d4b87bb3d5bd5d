"""Run the tiled observatory DAG ``tvb_observatory_<territory>`` of a territory with tiling on the running Celery
test stack and print where and how its tasks ran.

Start the stack with ``.ci/stack.sh start --celery`` (add a synthetic region with
``TVB_STACK_EXTRA_CONFIG=var/bench/region_x4/call_x4.yaml``, written by ``bench/region.py`` or
``sample/generate.py --region 4 --out var/bench/region_x4``), then::

    python bench/celery_tiles.py --territory call_x4 [--sous-trames forest,mining]

Prints the run's wall time, the tile tasks per round and per worker, and the largest peak RSS reported by a tile
task (``stage_run_tile`` returns it; a task above ``tiling.memory_limit_gib`` fails the run).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--territory", default="call_tiled")        # the stack's tiled copy of CALL
    ap.add_argument("--sous-trames", default="")
    ap.add_argument("--env", default=str(ROOT / "var" / "stack" / "stack.env"))
    ap.add_argument("--timeout", type=float, default=7200)
    args = ap.parse_args(argv)
    env = dict(line.split("=", 1) for line in Path(args.env).read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    base = env["TVB_STACK_API_URL"]
    token = requests.post(f"{base}/auth/token", json={"username": "admin",
                                                      "password": env["TVB_STACK_ADMIN_PASSWORD"]},
                          timeout=30).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    dag = f"tvb_observatory_{args.territory}"
    requests.patch(f"{base}/api/v2/dags/{dag}", json={"is_paused": False}, headers=h, timeout=30).raise_for_status()
    conf = {"sous_trames": args.sous_trames.split(",")} if args.sous_trames else {}
    resp = requests.post(f"{base}/api/v2/dags/{dag}/dagRuns", json={"logical_date": None, "conf": conf},
                         headers=h, timeout=30)
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.timeout:
        state = requests.get(f"{base}/api/v2/dags/{dag}/dagRuns/{run_id}", headers=h, timeout=30).json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(10)
    wall = time.monotonic() - t0
    tis, offset = [], 0
    while True:
        page = requests.get(f"{base}/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances", headers=h,
                            params={"limit": 100, "offset": offset}, timeout=30).json()
        tis += page["task_instances"]
        offset += 100
        if offset >= page["total_entries"]:
            break
    tiles = [t for t in tis if t["task_id"].startswith("round_") and t["state"] == "success"]
    by_round = Counter(t["task_id"] for t in tiles)
    by_worker = Counter(t["hostname"] for t in tiles)
    peaks = []
    for t in tiles:
        x = requests.get(f"{base}/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{t['task_id']}/xcomEntries/"
                         "return_value", params={"map_index": t["map_index"]}, headers=h, timeout=30).json()
        value = x.get("value")
        value = json.loads(value) if isinstance(value, str) else value
        if isinstance(value, dict):
            peaks.append(value["peak_mb"])
    others = {t["task_id"]: t["hostname"] for t in tis if not t["task_id"].startswith(("round_", "after_round"))}
    print(f"{dag} run {run_id}: {state} in {wall:.0f} s")
    print(f"  tile tasks per round: {dict(sorted(by_round.items(), key=lambda kv: int(kv[0].split('_')[1])))}")
    print(f"  tile tasks per worker: {dict(by_worker)}")
    print(f"  largest tile-task peak RSS: {max(peaks, default=float('nan')):.0f} MB over {len(peaks)} tasks")
    print(f"  other tasks ran on: {others}")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
