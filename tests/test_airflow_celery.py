"""CeleryExecutor in the production-like stack (``.ci/stack.sh start --celery``: Redis broker, two Celery workers
named worker-1 / worker-2 through ``tvb_worker.hostname``, CALL configured with tiling enabled): one run of the
tiled cost-distance DAG maps its tiles × sous-trames over both workers, through the S3 store.

Skipped unless the running stack (``var/stack/stack.env`` or ``TVB_STACK_ENV``) uses the CeleryExecutor.
"""
from __future__ import annotations

import time

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

TERRITORY = STACK.get("TVB_STACK_TERRITORY", "call")
TILED = f"tvb_tiled_cost_{TERRITORY}"


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


def test_mapped_tiles_of_one_run_execute_on_both_workers(api):
    workers = set(STACK["TVB_STACK_WORKERS"].split(","))
    assert workers == {"worker-1", "worker-2"}
    api.unpause(TILED)
    resp = api.trigger(TILED, {"sous_trames": ["forest", "mining"]})
    assert resp.status_code == 200, resp.text[:500]
    run_id = resp.json()["dag_run_id"]
    t0 = time.monotonic()
    run = api.wait(TILED, run_id)
    assert run["state"] == "success", api.failure_report(TILED, run_id)
    tis = _task_instances(api, run_id)
    tiles = [t for t in tis if t["task_id"].startswith("round_") and t["state"] == "success"]
    assert len(tiles) > 8
    hosts = {t["hostname"] for t in tiles}
    assert hosts == workers, f"tile tasks ran on {hosts}"
    for host in workers:                                      # each worker ran a real share of the tiles
        assert sum(t["hostname"] == host for t in tiles) >= 2
    stitched = [t for t in tis if t["task_id"] == "stitch"]
    assert len(stitched) == 2 and {t["state"] for t in stitched} == {"success"}
    print(f"{len(tiles)} tile tasks on {sorted(hosts)} in {time.monotonic() - t0:.0f} s")
