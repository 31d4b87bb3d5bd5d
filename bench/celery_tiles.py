"""Run the tiled observatory DAG ``tvb_observatory_<territory>`` of a territory with tiling on the running Celery
test stack and print where and how its tasks ran.

Start the stack with ``.ci/stack.sh start --celery`` (add a synthetic region with
``TVB_STACK_EXTRA_CONFIG=var/bench/region_x4/call_x4.yaml``, written by ``bench/region_pipeline.py`` or
``sample/generate.py --region 4 --out var/bench/region_x4``), then::

    python bench/celery_tiles.py --territory call_x4 [--sous-trames forest,mining]

Prints the run's state and wall time (trigger to end), the tile tasks per round and per worker, every task per
worker, the largest peak RSS reported by a tile task (``stage_run_tile`` returns it; a task above
``tiling.memory_limit_gib`` fails the run), the duration and worker of the other tasks with the peak RSS that the
plan, stitch and part tasks log (``… (peak N MB)`` in their task logs under the stack's ``airflow/logs``; the
assembly and indicators log none: their durations only), the parts' counts (XCom), and the release published in
the stack's store (``releases/<territory>/…`` listed through its S3 endpoint). ``--run-id`` reports on a run
already made instead of triggering one.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--territory", default="call_tiled")        # the stack's tiled copy of CALL
    ap.add_argument("--sous-trames", default="")
    ap.add_argument("--env", default=str(ROOT / "var" / "stack" / "stack.env"))
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--run-id", default="", help="report on this run of the DAG instead of triggering one")
    args = ap.parse_args(argv)
    env = dict(line.split("=", 1) for line in Path(args.env).read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    base = env["TVB_STACK_API_URL"]
    token = requests.post(f"{base}/auth/token", json={"username": "admin",
                                                      "password": env["TVB_STACK_ADMIN_PASSWORD"]},
                          timeout=30).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    dag = f"tvb_observatory_{args.territory}"
    if args.run_id:
        run_id = args.run_id
    else:
        requests.patch(f"{base}/api/v2/dags/{dag}", json={"is_paused": False}, headers=h,
                       timeout=30).raise_for_status()
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
    dag_run = requests.get(f"{base}/api/v2/dags/{dag}/dagRuns/{run_id}", headers=h, timeout=30).json()
    state = dag_run["state"]
    wall = _seconds(dag_run.get("start_date"), dag_run.get("end_date"))
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
    print(f"{dag} run {run_id}: {state} in {wall:.0f} s (start to end of the DAG run)")
    print(f"  tile tasks per round: {dict(sorted(by_round.items(), key=lambda kv: int(kv[0].split('_')[1])))}")
    print(f"  tile tasks per worker: {dict(by_worker)}; all tasks per worker: "
          f"{dict(Counter(t['hostname'] for t in tis if t['state'] == 'success'))}")
    print(f"  largest tile-task peak RSS: {max(peaks, default=float('nan')):.0f} MB over {len(peaks)} tasks; tile "
          f"task durations: median {_median([t['duration'] or 0 for t in tiles]):.1f} s, "
          f"max {max((t['duration'] or 0 for t in tiles), default=0):.1f} s")
    failed = [f"{t['task_id']}[{t['map_index']}]" for t in tis if t["state"] in ("failed", "upstream_failed")]
    if failed:
        print(f"  FAILED: {failed}")
    logs = Path(env.get("TVB_STACK_DIR", Path(args.env).parent)) / "airflow" / "logs"
    print("  other tasks (duration, worker, peak RSS logged by the task):")
    for t in sorted((t for t in tis if not t["task_id"].startswith(("round_", "after_round"))),
                    key=lambda t: (t["start_date"] or "", t["map_index"])):
        label = t["task_id"] + (f"[{t.get('rendered_map_index') or t['map_index']}]" if t["map_index"] >= 0 else "")
        peak = _logged_peak(logs, dag, run_id, t)
        print(f"    {label:<34} {t['state']:<8} {t['duration'] or 0:7.1f} s  {t['hostname'] or '-':<9}"
              + (f"  peak {peak:.0f} MB" if peak else ""))
    for t in tis:
        if t["task_id"] == "part" and t["state"] == "success":
            x = requests.get(f"{base}/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/part/xcomEntries/"
                             "return_value", params={"map_index": t["map_index"]}, headers=h, timeout=30).json()
            value = x.get("value")
            value = json.loads(value) if isinstance(value, str) else value
            if isinstance(value, dict):
                c = value.get("counts", {})
                print(f"  part {value.get('sous_trame')}: {json.dumps(c)[:240]}")
    _print_release(env, args.territory)
    return 0 if state == "success" else 1


def _seconds(start: str | None, end: str | None) -> float:
    from datetime import datetime

    if not start or not end:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def _logged_peak(logs: Path, dag: str, run_id: str, ti: dict) -> float | None:
    """The largest ``peak N MB`` a task instance logged (its attempt logs under the stack's log folder)."""
    folder = logs / f"dag_id={dag}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
    if ti["map_index"] >= 0:
        folder = folder / f"map_index={ti['map_index']}"
    found = [float(m) for f in folder.glob("attempt=*.log")
             for m in re.findall(r"peak (\d+(?:\.\d+)?) MB", f.read_text(errors="replace"))]
    return max(found) if found else None


def _print_release(env: dict, territory: str) -> None:
    """The objects of the territory's live release in the stack's S3 store (``latest.json`` → its prefix)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["TVB_STACK_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["TVB_STACK_S3_ACCESS_KEY"],
                      aws_secret_access_key=env["TVB_STACK_S3_SECRET_KEY"])
    bucket, prefix = env["TVB_STACK_BUCKET"], env["TVB_STACK_PREFIX"]
    keys: defaultdict[str, int] = defaultdict(int)
    size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/releases/{territory}/"):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) + len("/releases/") + len(territory) + 1:]
            keys[rel.split("/")[0]] += 1
            size += o["Size"]
    print(f"  store s3://{bucket}/{prefix}/releases/{territory}/: {dict(keys)} ({size / 1e6:.0f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
