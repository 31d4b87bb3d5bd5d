"""End to end through real Airflow: ``dag.test()`` of the generated DAGs on a migrated SQLite metadata DB, with the
real stage libraries, the bundled sample and a local store in a temporary folder.

Each run happens in its own subprocess of ``scripts/run_dag.py`` (the demo's runner), driven by
``tests/helpers/airflow_run.py``. ``dag.test()`` does not raise when a task fails, so the tests assert the returned
DagRun's state and every task's state.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from helpers.airflow_run import ROOT, Airflow, assert_clean_log, task_states, why
from helpers.yamlio import dump_yaml, load_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

def assert_conforms(value, contract, *, exact: bool = True) -> None:
    """``value`` (an XCom) has every required key of the ``tvb_tasks.contracts`` TypedDict ``contract`` and, when
    ``exact``, no key outside it."""
    keys = set(value)
    assert contract.__required_keys__ <= keys, (contract.__name__, sorted(contract.__required_keys__ - keys))
    if exact:
        known = contract.__required_keys__ | contract.__optional_keys__
        assert keys <= known, (contract.__name__, sorted(keys - known))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    pytest.importorskip("airflow", reason="apache-airflow is not installed in this environment")
    return Airflow(tmp_path_factory.mktemp("airflow-e2e"))


def test_fetch_dag_emits_one_asset_event_per_changed_source_only(airflow, territory):
    from tvb_tasks.contracts import FetchSummary

    first = airflow.run("tvb_fetch_call")
    assert first["state"] == "success", why(first)
    assert_clean_log(first)
    uris = sorted(e["uri"] for e in first["asset_events"])
    assert uris == sorted(f"x-tvb://call/sources/{name}" for name in territory.sources)
    assert all(len(e["extra"]["snapshot_id"]) == 64 for e in first["asset_events"])
    summary = first["xcoms"]["fetch_sources[-1].return_value"]
    assert_conforms(summary, FetchSummary)
    assert sorted(summary["changed_sources"]) == sorted(territory.sources)

    second = airflow.run("tvb_fetch_call")             # same content: nothing changed, no event
    assert second["state"] == "success", why(second)
    assert_clean_log(second)
    assert second["asset_events"] == []
    assert second["xcoms"]["fetch_sources[-1].return_value"]["changed_sources"] == []


@pytest.fixture(scope="module")
def published(airflow, territory):
    """The first manual run (default Params) of the observatory DAG."""
    return airflow.run("tvb_observatory_call")


def test_manual_run_publishes_a_complete_release(published, airflow, territory):
    run = published
    assert run["state"] == "success", why(run)
    states = task_states(run)
    assert set(states.values()) == {"success"}, why(run)
    assert_clean_log(run)
    mapped = sorted(v["rendered_map_index"] for k, v in run["tasks"].items() if k.startswith("compute_sous_trame["))
    assert mapped == sorted(territory.sous_trames)

    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "published" and result["territory"] == "call"
    rid = result["release_id"]
    assert run["xcoms"]["publish[-1]._link_ReleaseReportLink"] == result["report_url"]
    assert result["report_url"].endswith(f"releases/call/{rid}/report/index.html")
    assert [e["uri"] for e in run["asset_events"]] == ["x-tvb://call/release"]
    assert run["asset_events"][0]["extra"]["release_id"] == rid

    assert result["manifest_url"].endswith(f"releases/call/{rid}/manifest.json")
    assert run["xcoms"]["publish[-1].return_value"] == result          # notify passes the publish outcome on

    store = airflow.store()
    latest = json.loads(store.get_bytes("releases/call/latest.json"))
    assert latest["release_id"] == rid
    manifest = json.loads(store.get_bytes(latest["manifest_key"]))
    assert manifest["release_id"] == rid and manifest["files"]
    for entry in manifest["files"]:                  # every file there, with the manifest's checksum and size
        data = store.get_bytes(entry["key"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]
        assert len(data) == entry["size"], entry["key"]
    paths = {e["path"] for e in manifest["files"]}
    assert {"tvb.gpkg", "indicators/indicators.json", "report/index.html"} <= paths


def test_every_xcom_of_a_published_run_follows_its_contract(published):
    """What each task returned has the shape typed in tvb_tasks.contracts, and one XCom per task (no per-key
    ``multiple_outputs`` copies)."""
    from tvb_tasks import contracts as c

    assert published["state"] == "success", why(published)
    xcoms = published["xcoms"]
    assert {key.split(".", 1)[1] for key in xcoms} <= {"return_value", "_link_ReleaseReportLink"}, sorted(xcoms)
    run = xcoms["fetch_sources[-1].return_value"]
    assert_conforms(run, c.FetchedRun)
    assert run["sous_trames"] is None and run["force"] is False       # the defaults: every sous-trame, no force
    for ref in run["snapshots"].values():
        assert_conforms(ref, c.SnapshotRef, exact=False)        # a snapshot ref carries more (etag, duration …)
    assert_conforms(xcoms["validate_sources[-1].return_value"], c.GateVerdict)
    parts = [v for k, v in xcoms.items() if k.startswith("compute_sous_trame[") and k.endswith(".return_value")]
    assert len(parts) == len(run["config"]["sous_trames"])
    for part in parts:
        assert_conforms(part, c.SousTramePart)
    assert_conforms(xcoms["assemble[-1].return_value"], c.LayersSummary)
    assert_conforms(xcoms["indicators[-1].return_value"], c.IndicatorSummary)
    assert_conforms(xcoms["validate_outputs[-1].return_value"], c.GateVerdict)
    for task in ("publish", "notify"):
        assert_conforms(xcoms[f"{task}[-1].return_value"], c.Outcome)


def test_release_geopackage_layers_and_indicators_are_not_empty(published, airflow):
    import pyogrio

    assert published["state"] == "success", why(published)
    store = airflow.store()
    rid = json.loads(store.get_bytes("releases/call/latest.json"))["release_id"]
    gpkg = store.local_path(f"releases/call/{rid}/tvb.gpkg")
    layers = {name for name, _ in pyogrio.list_layers(gpkg)}
    assert {"reservoirs", "corridors", "rupture_points", "communes"} <= layers
    for name in ("reservoirs", "corridors", "communes"):
        assert pyogrio.read_info(gpkg, layer=name)["features"] > 0, name
    indicators = json.loads(store.get_bytes(f"releases/call/{rid}/indicators/indicators.json"))
    assert indicators and json.dumps(indicators) != "{}"


def test_second_run_with_unchanged_inputs_reports_unchanged(published, airflow):
    assert published["state"] == "success", why(published)
    store = airflow.store()
    before = store.list("releases/call/")
    latest_before = store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call")
    assert run["state"] == "success", why(run)
    assert_clean_log(run)
    states = task_states(run)
    assert states["fetch_sources[-1]"] == states["inputs_changed[-1]"] == states["notify[-1]"] == "success"
    for task in ("validate_sources", "compute_sous_trame", "assemble", "indicators", "publish"):
        assert {v for k, v in states.items() if k.startswith(task + "[")} == {"skipped"}, why(run)
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "unchanged"
    assert result["release_id"] == published["xcoms"]["notify[-1].return_value"]["release_id"]
    assert result["report_url"] == published["xcoms"]["notify[-1].return_value"]["report_url"]
    # one clear line, no Airflow "No tasks to run" warnings while the skip reaches the tasks downstream
    assert "No tasks to run" not in run["log"], run["log_tail"]
    assert (f"unchanged: the inputs have not changed since release {result['release_id']}, which stays live"
            in run["log"]), run["log_tail"]
    assert run["asset_events"] == []
    assert store.list("releases/call/") == before                  # no duplicate release
    assert store.get_bytes("releases/call/latest.json") == latest_before


def test_forced_dry_run_of_chosen_sous_trames_at_another_resolution_publishes_nothing(published, airflow):
    """One run with every trigger parameter that changes what runs (one run of the whole DAG less in CI): the
    chosen sous-trames are exactly the mapped tasks (YAML order), the resolution and ``force`` reach the stages,
    and a dry run publishes nothing, links nothing and emits no Asset event."""
    assert published["state"] == "success", why(published)
    store = airflow.store()
    before, latest_before = store.list("releases/call/"), store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call", {"force": True, "dry_run": True, "resolution_m": 50,
                                               "sous_trames": ["wetland", "forest"]})
    assert run["state"] == "success", why(run)
    assert set(task_states(run).values()) == {"success"}, why(run)
    assert_clean_log(run)
    mapped = {v["rendered_map_index"]: v["state"] for k, v in run["tasks"].items()
              if k.startswith("compute_sous_trame[")}
    assert mapped == {"forest": "success", "wetland": "success"}, why(run)
    fetched = run["xcoms"]["fetch_sources[-1].return_value"]
    assert fetched["resolution_m"] == 50.0 and fetched["force"] is True
    assert fetched["sous_trames"] == ["forest", "wetland"]
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "dry_run" and result["release_id"]
    assert not {"release_url", "report_url", "web_url", "manifest_url"} & set(result)    # nothing to link to
    assert run["xcoms"].get("publish[-1]._link_ReleaseReportLink", "") == ""
    assert run["asset_events"] == []
    assert store.list("releases/call/") == before and store.get_bytes("releases/call/latest.json") == latest_before


def test_corrupted_input_fails_at_the_validation_gate_and_keeps_latest(published, airflow, tmp_path):
    import geopandas as gpd

    assert published["state"] == "success", why(published)
    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    bad = tmp_path / "roads_wrong_crs.gpkg"
    gpd.read_file(ROOT / "sample/call/roads.gpkg", layer="roads").to_crs("EPSG:4326").to_file(
        bad, layer="roads", driver="GPKG")
    raw["sources"]["roads"].update(path=str(bad), layer="roads")
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")

    store = airflow.store()
    before, latest_before = store.list("releases/call/"), store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call", TVB_CONFIG_DIR=str(cfg))
    assert run["state"] == "failed", why(run)
    states = task_states(run)
    assert states["fetch_sources[-1]"] == states["inputs_changed[-1]"] == "success", why(run)
    assert states["validate_sources[-1]"] == "failed", why(run)
    assert run["tasks"]["validate_sources[-1]"]["try_number"] == 1, "a validation failure must not be retried"
    for task in ("plan_sous_trames", "assemble", "indicators", "validate_outputs", "publish", "notify"):
        assert states[f"{task}[-1]"] == "upstream_failed", why(run)
    assert "ValidationFailed" in run["log_tail"] and "roads" in run["log_tail"]
    assert "TVB run FAILED" in run["log_tail"]
    assert store.list("releases/call/") == before
    assert store.get_bytes("releases/call/latest.json") == latest_before
