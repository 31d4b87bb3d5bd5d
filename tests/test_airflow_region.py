"""One trigger of ``tvb_region_<id>`` on the production-like stack (``.ci/stack.sh``, LocalExecutor or Celery):
both member observatory runs succeed and publish, then the mosaic release is live and lists both member releases.

Needs a region DAG on the stack: ``TVB_STACK_EXTRA_CONFIG`` with the neighbour's YAML (``sample/generate.py
--neighbour``) and ``TVB_STACK_EXTRA_REGIONS=tests/fixtures/regions/call_et_voisin.yaml`` when starting the stack
(``scripts/test.sh`` does); skipped otherwise. The members run coarse (100 m, one sous-trame) to keep it short.
"""
from __future__ import annotations

import time

import pytest

from helpers.airflow_stack import ENV_FILE, Api, read_env, s3_client, s3_json

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

if not ENV_FILE.exists():
    pytest.skip(f"the Airflow test stack is not running ({ENV_FILE} not found): start it with `.ci/stack.sh start`",
                allow_module_level=True)

boto3 = pytest.importorskip("boto3")
STACK = read_env(ENV_FILE)
CONF = {"force": True, "sous_trames": ["forest"], "resolution_m": 200, "dry_run": False}


@pytest.fixture(scope="module")
def api() -> Api:
    return Api(STACK["TVB_STACK_API_URL"], STACK["TVB_STACK_ADMIN_USER"], STACK["TVB_STACK_ADMIN_PASSWORD"])


@pytest.fixture(scope="module")
def s3():
    return s3_client(STACK)


def _s3_json(s3, key: str) -> dict | None:
    return s3_json(s3, STACK, key)


@pytest.fixture(scope="module")
def region_run(api, s3):
    regions = [d["dag_id"] for d in api.get("/dags", dag_id_pattern="tvb_region_%", limit=20)["dags"]]
    if not regions:
        pytest.skip("no tvb_region_<id> DAG on the stack (start it with TVB_STACK_EXTRA_REGIONS, see scripts/test.sh)")
    dag_id = regions[0]
    details = api.get(f"/dags/{dag_id}/details")
    members = [t.removeprefix("territory:") for t in (tag["name"] for tag in details["tags"])
               if t.startswith("territory:")]
    for d in (dag_id, *(f"tvb_observatory_{m}" for m in members)):
        api.unpause(d)
    before = {m: (_s3_json(s3, f"releases/{m}/latest.json") or {}).get("release_id") for m in members}
    started = time.monotonic()
    resp = api.trigger(dag_id, CONF)
    assert resp.status_code == 200, resp.text[:500]
    run_id = resp.json()["dag_run_id"]
    run = api.wait(dag_id, run_id)
    return {"dag_id": dag_id, "region": dag_id.removeprefix("tvb_region_"), "run_id": run_id, "run": run,
            "members": sorted(members), "before": before, "seconds": time.monotonic() - started}


def test_one_trigger_runs_every_member_then_publishes_the_mosaic(api, s3, region_run):
    dag_id, run_id = region_run["dag_id"], region_run["run_id"]
    print(f"{dag_id}: region run {region_run['run']['state']} in {region_run['seconds']:.0f} s")
    assert region_run["run"]["state"] == "success", api.failure_report(dag_id, run_id)
    members = region_run["members"]
    assert len(members) >= 2
    states = api.task_states(dag_id, run_id)
    assert states == {"plan_members[-1]": "success", "publish_mosaic[-1]": "success",
                      **{f"run_member[tvb_observatory_{m}]": "success" for m in members}}, states
    live = {}
    for m in members:
        obs, member_run = f"tvb_observatory_{m}", f"{run_id}__{m}"
        run = api.get(f"/dags/{obs}/dagRuns/{member_run}")
        assert run["state"] == "success" and run["conf"]["resolution_m"] == CONF["resolution_m"]
        outcome = api.xcom(obs, member_run, "notify")
        assert outcome["status"] == "published"
        live[m] = _s3_json(s3, f"releases/{m}/latest.json")["release_id"]
        assert live[m] == outcome["release_id"] != region_run["before"][m]      # a new live release per member

    result = api.xcom(dag_id, run_id, "publish_mosaic")
    assert result["status"] == "published"
    assert {r["territory"]: r["release_id"] for r in result["members"]} == live
    latest = _s3_json(s3, f"releases/{region_run['region']}/latest.json")
    assert latest["release_id"] == result["release_id"]
    manifest = _s3_json(s3, latest["manifest_key"])
    assert {t: s["snapshot_id"] for t, s in manifest["sources"].items()} == live
    page = s3.get_object(Bucket=STACK["TVB_STACK_BUCKET"],
                         Key=f"{STACK['TVB_STACK_PREFIX']}/{result['manifest_key'].rsplit('/', 1)[0]}/report/index.html")
    text = page["Body"].read().decode("utf-8")
    assert all(rid in text for rid in live.values())
