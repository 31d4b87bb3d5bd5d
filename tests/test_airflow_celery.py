"""CeleryExecutor in the production-like stack (``.ci/stack.sh start --celery``, what ``scripts/test.sh`` starts:
Redis broker, two Celery workers named worker-1 / worker-2 through ``tvb_worker.hostname``, and ``call_tiled``, a
copy of CALL with tiling enabled and 256-cell tiles, CALL itself staying untiled): one run of the tiled territory's
observatory DAG maps its tiles over both workers, through the S3 store, to the end (a dry run: a published run
removes its work prefix, where the stitched raster and the part's layers are read here); they are the untiled
engine's. Publishing through the Celery workers to S3 is tests/test_airflow_stack.py's.

Kept cheap for CI: one sous-trame (forest: reservoirs all over the territory, so every tile starts in round 1) at
50 m, i.e. a 2 × 2 grid of 256-cell tiles whose boundary exchange takes a few rounds — a handful of tile tasks.

Skipped unless the running stack (``var/stack/stack.env`` or ``TVB_STACK_ENV``) uses the CeleryExecutor.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from helpers.airflow_stack import ENV_FILE, Api, read_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

if not ENV_FILE.exists():
    pytest.skip(f"the Airflow test stack is not running ({ENV_FILE} not found): start it with "
                "`.ci/stack.sh start --celery`", allow_module_level=True)
STACK = read_env(ENV_FILE)
if STACK.get("TVB_STACK_EXECUTOR") != "CeleryExecutor":
    pytest.skip("the running stack is not the Celery one: start it with `.ci/stack.sh start --celery`",
                allow_module_level=True)

TERRITORY = STACK.get("TVB_STACK_TILED_TERRITORY") or f"{STACK.get('TVB_STACK_TERRITORY', 'call')}_tiled"
TILED = f"tvb_observatory_{TERRITORY}"
SOUS_TRAME = "forest"
RESOLUTION_M = 50          # CALL ≈ 460 × 325 cells: 2 × 2 tiles of 256 cells (the stack's tiling.tile_size)


@pytest.fixture(scope="module")
def api() -> Api:
    return Api(STACK["TVB_STACK_API_URL"], STACK["TVB_STACK_ADMIN_USER"], STACK["TVB_STACK_ADMIN_PASSWORD"])


def _task_instances(api: Api, run_id: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = api.get(f"/dags/{TILED}/dagRuns/{run_id}/taskInstances", limit=100, offset=offset)
        out += page["task_instances"]
        offset += 100
        if offset >= page["total_entries"]:
            return out


@pytest.fixture(scope="module")
def tiled_run(api) -> dict:
    api.unpause(TILED)
    resp = api.trigger(TILED, {"sous_trames": [SOUS_TRAME], "resolution_m": RESOLUTION_M, "dry_run": True})
    assert resp.status_code == 200, resp.text[:500]
    run_id = resp.json()["dag_run_id"]
    t0 = time.monotonic()
    run = api.wait(TILED, run_id)
    assert run["state"] == "success", api.failure_report(TILED, run_id)
    outcome = api.xcom(TILED, run_id, "notify")
    assert outcome["status"] == "dry_run" and outcome["territory"] == TERRITORY, outcome
    print(f"{TILED} run {run_id}: {time.monotonic() - t0:.0f} s")
    return {"run_id": run_id, "tis": _task_instances(api, run_id)}


def test_mapped_tiles_of_one_run_execute_on_both_workers(tiled_run):
    workers = set(STACK["TVB_STACK_WORKERS"].split(","))
    assert workers == {"worker-1", "worker-2"}
    tiles = [t for t in tiled_run["tis"] if t["task_id"].startswith("round_") and t["state"] == "success"]
    by_worker = {w: sum(t["hostname"] == w for t in tiles) for w in workers}
    print(f"{len(tiles)} tile tasks: {by_worker}")
    assert {t["hostname"] for t in tiles} == workers, f"tile tasks ran on {by_worker}"
    assert min(by_worker.values()) >= 2, f"each worker should run a real share of the tiles: {by_worker}"
    assert {t["task_id"] for t in tiles} >= {"round_1", "round_2"}       # boundary values were exchanged


def test_stitched_cost_and_part_are_the_untiled_engines(api, tiled_run, tmp_path, monkeypatch):
    """The stitched ``cost.tif`` in the S3 store, and the part task's corridors, equal the untiled engine's on the
    run's own snapshots and configuration (tiling disabled)."""
    import boto3
    import geopandas as gpd
    import rasterio

    from tvb_tasks.layers import compute_sous_trame
    from tvb_tasks.pipeline import _snapshot_paths, territory_from_run
    from tvb_tasks.store import open_store

    run_id = tiled_run["run_id"]
    stitched = api.get(f"/dags/{TILED}/dagRuns/{run_id}/taskInstances/stitch/xcomEntries/return_value",
                       map_index=0)["value"]
    stitched = json.loads(stitched) if isinstance(stitched, str) else stitched
    assert stitched["sous_trame"] == SOUS_TRAME and stitched["cost"] and stitched["reached"] > 10_000
    fetched = api.xcom(TILED, run_id, "fetch_sources")
    assert fetched["resolution_m"] == RESOLUTION_M

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    s3 = boto3.client("s3", endpoint_url=STACK["TVB_STACK_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=STACK["TVB_STACK_S3_ACCESS_KEY"],
                      aws_secret_access_key=STACK["TVB_STACK_S3_SECRET_KEY"])
    store = open_store(fetched["store_uri"], client=s3)
    territory = territory_from_run(fetched)
    assert territory.tiling.enabled and territory.resolution_m == RESOLUTION_M
    untiled = territory.model_copy(update={"tiling": territory.tiling.model_copy(update={"enabled": False})})
    part = compute_sous_trame(untiled, _snapshot_paths(store, fetched), SOUS_TRAME, tmp_path / "layers")
    tiled_tif = store.materialize(stitched["cost"], tmp_path / "stitched")
    with rasterio.open(part["files"]["cost"]) as a, rasterio.open(tiled_tif) as b:
        assert a.shape == b.shape and a.transform == b.transform and a.crs == b.crs
        assert np.array_equal(a.read(1), b.read(1))
    tiled_part = api.get(f"/dags/{TILED}/dagRuns/{run_id}/taskInstances/part/xcomEntries/return_value",
                         map_index=0)["value"]
    tiled_part = json.loads(tiled_part) if isinstance(tiled_part, str) else tiled_part
    assert tiled_part["counts"] == part["counts"] and tiled_part["lengths_km"] == part["lengths_km"]
    key = f"work/{TERRITORY}/{fetched['input_key'][:16]}/layers/{SOUS_TRAME}/corridors.parquet"
    got = gpd.read_parquet(store.materialize(key, tmp_path / "part"))
    ref = gpd.read_parquet(part["files"]["corridors"])
    assert len(got) == len(ref) > 0 and list(got.geometry.to_wkb()) == list(ref.geometry.to_wkb())
