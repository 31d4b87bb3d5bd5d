"""The production-like stack (``.ci/stack.sh start --celery``, what CI starts: PostgreSQL, Redis, Airflow api-server /
scheduler / dag-processor / triggerer with CeleryExecutor and two workers, moto S3, a webhook sink; the same tests
pass on ``.ci/stack.sh start``, LocalExecutor), driven through the Airflow REST API v2 as the UI does.

Skipped when the stack is not running (no ``var/stack/stack.env``, or the file named by ``TVB_STACK_ENV``).
The tests run in file order: the REST-triggered release first, then the fetch DAG whose Asset events schedule the
observatory (which then finds its inputs unchanged).
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helpers.airflow_stack import ENV_FILE, Api, read_env, s3_client, s3_json

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

if not ENV_FILE.exists():
    pytest.skip(f"the Airflow test stack is not running ({ENV_FILE} not found): start it with `.ci/stack.sh start`",
                allow_module_level=True)

requests = pytest.importorskip("requests")
boto3 = pytest.importorskip("boto3")

STACK = read_env(ENV_FILE)
TERRITORY = STACK.get("TVB_STACK_TERRITORY", "call")
OBSERVATORY = f"tvb_observatory_{TERRITORY}"
FETCH = f"tvb_fetch_{TERRITORY}"


@pytest.fixture(scope="module")
def api() -> Api:
    health = requests.get(f"{STACK['TVB_STACK_API_URL']}/api/v2/monitor/health", timeout=30).json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    return Api(STACK["TVB_STACK_API_URL"], STACK["TVB_STACK_ADMIN_USER"], STACK["TVB_STACK_ADMIN_PASSWORD"])


@pytest.fixture(scope="module")
def s3():
    return s3_client(STACK)


def _s3_json(s3, key: str) -> dict | None:
    return s3_json(s3, STACK, key)


def _webhook_events() -> list[dict]:
    path = Path(STACK["TVB_STACK_WEBHOOK_LOG"])
    return [json.loads(line)["body"] for line in path.read_text().splitlines()] if path.exists() else []


def _runs(api: Api, dag_id: str) -> list[dict]:
    return api.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="-run_after")["dag_runs"]


# --- the trigger form's validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("conf, message", [
    ({"resolution_m": 4}, "Invalid input for param resolution_m: 4 is less than the minimum of 5"),
    ({"sous_trames": ["forest", "desert"]}, "Invalid input for param sous_trames: 'desert' is not one of"),
    ({"territory": "lille"}, "Invalid input for param territory: 'lille' is not one of"),
    ({"dry_run": "maybe"}, "Invalid input for param dry_run: 'maybe' is not of type 'boolean'"),
])
def test_bad_params_are_rejected_before_any_run(api, conf, message):
    before = api.get(f"/dags/{OBSERVATORY}/dagRuns", limit=1)["total_entries"]
    resp = api.trigger(OBSERVATORY, conf)
    assert resp.status_code == 400, resp.text[:500]
    assert message in resp.json()["detail"]
    assert api.get(f"/dags/{OBSERVATORY}/dagRuns", limit=1)["total_entries"] == before


def test_a_viewer_cannot_trigger(api):
    viewer = Api(STACK["TVB_STACK_API_URL"], STACK["TVB_STACK_VIEWER_USER"], STACK["TVB_STACK_VIEWER_PASSWORD"])
    assert viewer.get(f"/dags/{OBSERVATORY}")["dag_id"] == OBSERVATORY           # may look
    assert viewer.trigger(OBSERVATORY, {}).status_code == 403                     # may not run


# --- a REST trigger with Params publishes a release to S3 -----------------------------------------------------------
@pytest.fixture(scope="module")
def rest_run(api, s3):
    """A manual run triggered through the REST API with Params, as the UI's Trigger button does."""
    api.unpause(OBSERVATORY)
    latest_before = _s3_json(s3, f"releases/{TERRITORY}/latest.json")
    details = api.get(f"/dags/{OBSERVATORY}/details")
    all_sous_trames = details["params"]["sous_trames"]["value"]
    resp = api.trigger(OBSERVATORY, {"force": True, "sous_trames": all_sous_trames, "dry_run": False})
    assert resp.status_code == 200, resp.text[:500]
    run_id = resp.json()["dag_run_id"]
    assert resp.json()["conf"]["force"] is True
    run = api.wait(OBSERVATORY, run_id)
    return {"run": run, "run_id": run_id, "latest_before": latest_before, "sous_trames": all_sous_trames}


def test_rest_trigger_publishes_a_new_release_in_s3(api, s3, rest_run):
    run_id = rest_run["run_id"]
    assert rest_run["run"]["state"] == "success", api.failure_report(OBSERVATORY, run_id)
    states = api.task_states(OBSERVATORY, run_id)
    assert set(states.values()) == {"success"}, states
    assert sorted(k for k in states if k.startswith("compute_sous_trame[")) == sorted(
        f"compute_sous_trame[{st}]" for st in rest_run["sous_trames"])

    result = api.xcom(OBSERVATORY, run_id, "notify")
    assert result["status"] == "published"
    latest = _s3_json(s3, f"releases/{TERRITORY}/latest.json")
    assert latest["release_id"] == result["release_id"]
    if rest_run["latest_before"]:
        assert latest["release_id"] != rest_run["latest_before"]["release_id"]
    manifest = _s3_json(s3, latest["manifest_key"])
    assert manifest["release_id"] == latest["release_id"]
    bucket, prefix = STACK["TVB_STACK_BUCKET"], STACK["TVB_STACK_PREFIX"]
    for entry in manifest["files"]:
        head = s3.head_object(Bucket=bucket, Key=f"{prefix}/{entry['key']}")
        assert head["ContentLength"] == entry["size"], entry["key"]
    assert {"tvb.gpkg", "report/index.html", "indicators/indicators.json"} <= {e["path"] for e in manifest["files"]}
    # the published run's scratch is gone (pipeline.remove_work, in the publish task on a Celery worker)
    scratch = f"{prefix}/work/{TERRITORY}/{manifest['input_key'][:16]}/"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=scratch).get("KeyCount", 0) == 0, scratch


def test_release_report_link_and_notification(api, rest_run):
    run_id = rest_run["run_id"]
    assert rest_run["run"]["state"] == "success", api.failure_report(OBSERVATORY, run_id)
    result = api.xcom(OBSERVATORY, run_id, "notify")
    links = api.get(f"/dags/{OBSERVATORY}/dagRuns/{run_id}/taskInstances/publish/links")["extra_links"]
    url = links["Release report"]
    assert url == result["report_url"] and url.startswith("http://")
    page = requests.get(url, timeout=30)                     # served over HTTP from the store
    assert page.status_code == 200 and "<html" in page.text.lower()

    sent = [e for e in _webhook_events() if e.get("run_id") == run_id]
    assert [e["event"] for e in sent] == ["published"]
    assert sent[0]["release"]["release_id"] == result["release_id"] and sent[0]["territory"] == TERRITORY
    # the task logs say what happened, and the S3 secret never appears in them
    for task, expected in (("fetch_sources", "input key"), ("publish", f"published release {result['release_id']}"),
                           ("notify", "webhook tvb_webhook")):
        log = api.task_log(OBSERVATORY, run_id, task)
        assert expected in log, f"{task}: {expected!r} not in its log"
        assert STACK["TVB_STACK_S3_SECRET_KEY"] not in log


# --- scheduled path: fetch → Asset events → observatory -------------------------------------------------------------
def test_forced_fetch_emits_asset_events_that_schedule_the_observatory(api, s3, rest_run):
    assert rest_run["run"]["state"] == "success", api.failure_report(OBSERVATORY, rest_run["run_id"])
    latest_before = _s3_json(s3, f"releases/{TERRITORY}/latest.json")
    known = {r["dag_run_id"] for r in _runs(api, OBSERVATORY)}
    api.unpause(FETCH)
    started = datetime.now(UTC)
    resp = api.trigger(FETCH, {"force": True})               # force: every source reported as changed
    assert resp.status_code == 200, resp.text[:500]
    fetch_id = resp.json()["dag_run_id"]
    assert api.wait(FETCH, fetch_id)["state"] == "success", api.failure_report(FETCH, fetch_id)

    events = api.get("/assets/events", source_dag_id=FETCH, source_run_id=fetch_id, limit=100)["asset_events"]
    uris = {e["uri"] for e in events}
    assert uris and all(u.startswith(f"x-tvb://{TERRITORY}/sources/") for u in uris)
    changed = api.xcom(FETCH, fetch_id, "fetch_sources")["changed_sources"]
    assert uris == {f"x-tvb://{TERRITORY}/sources/{name}" for name in changed}

    deadline = time.monotonic() + 180
    triggered = []
    while time.monotonic() < deadline and not triggered:
        triggered = [r for r in _runs(api, OBSERVATORY) if r["dag_run_id"] not in known
                     and r["run_type"] == "asset_triggered"]
        time.sleep(1)
    assert triggered, f"no asset-triggered {OBSERVATORY} run within 180 s after {started.isoformat()}"
    run = api.wait(OBSERVATORY, triggered[0]["dag_run_id"])
    assert run["state"] == "success", api.failure_report(OBSERVATORY, run["dag_run_id"])
    # same content as the live release: the computation is skipped, nothing new is published
    assert api.xcom(OBSERVATORY, run["dag_run_id"], "notify")["status"] == "unchanged"
    states = api.task_states(OBSERVATORY, run["dag_run_id"])
    assert states["publish[-1]"] == "skipped", states
    assert _s3_json(s3, f"releases/{TERRITORY}/latest.json")["release_id"] == latest_before["release_id"]
