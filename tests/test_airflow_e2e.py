"""End to end through real Airflow: ``dag.test()`` of the generated DAGs on a migrated SQLite metadata DB, with the
real stage libraries, the bundled sample and a local store in a temporary folder.

Each run happens in its own subprocess (Airflow reads its configuration at import time): ``airflow db migrate``
first, then a small runner script that parses the dags folder, calls ``dag.test()`` and dumps the run's task
states, XComs and Asset events as JSON. ``dag.test()`` does not raise when a task fails, so the tests assert the
returned DagRun's state and every task's state.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

RUNNER = textwrap.dedent('''
    """Run one DAG with dag.test() and dump what happened (argv: dag_id, conf JSON, output path)."""
    import json, os, sys
    from airflow.dag_processing.dagbag import DagBag

    dag_id, conf, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        json.dump({"import_errors": bag.import_errors}, open(out, "w"))
        sys.exit(2)
    dr = bag.dags[dag_id].test(run_conf=conf or None)

    from sqlalchemy import select
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as s:
        tis = {f"{t.task_id}[{t.map_index}]": {"state": str(getattr(t.state, "value", t.state)),
                                                "try_number": t.try_number,
                                                "rendered_map_index": t.rendered_map_index}
               for t in s.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                             TaskInstance.run_id == dr.run_id))}
        xcoms = {}
        for x in s.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id)):
            value = x.value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            xcoms[f"{x.task_id}[{x.map_index}].{x.key}"] = value
        events = [{"uri": uri, "extra": extra} for uri, extra in s.execute(
            select(AssetModel.uri, AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == dr.run_id))]
    json.dump({"state": str(getattr(dr.state, "value", dr.state)), "run_id": dr.run_id,
               "tasks": tis, "xcoms": xcoms, "asset_events": events}, open(out, "w"), default=str)
''')


class Airflow:
    """A throw-away Airflow installation (SQLite) and a store, shared by the tests of this module."""

    def __init__(self, base: Path):
        self.base = base
        self.store_dir = base / "store"
        self.runner = base / "run_dag.py"
        self.runner.write_text(RUNNER, encoding="utf-8")
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "TVB_", "AWS_"))}
        self.env = {
            **keep,
            "AIRFLOW_HOME": str(base / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{base / 'airflow' / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": str(ROOT),
            "TVB_STORE_URI": str(self.store_dir),
            "TVB_WORK_DIR": str(base / "work"),
            "TVB_CACHE_DIR": str(base / "cache"),
            "TVB_TASK_RETRIES": "2",
            "TVB_RETRY_DELAY_S": "5",
            "GX_ANALYTICS_ENABLED": "False",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        (base / "airflow").mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([str(Path(PYTHON).parent / "airflow"), "db", "migrate"], env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        self.n = 0

    def run(self, dag_id: str, conf: dict | None = None, **env) -> dict:
        """dag.test() in a subprocess; returns the dumped run (state, tasks, xcoms, asset_events)."""
        self.n += 1
        out = self.base / f"run{self.n}.json"
        log = self.base / f"run{self.n}.log"
        with open(log, "w") as fh:
            proc = subprocess.run([PYTHON, str(self.runner), dag_id, json.dumps(conf or {}), str(out)],
                                  env={**self.env, **env}, stdout=fh, stderr=subprocess.STDOUT, timeout=1500)
        text = log.read_text(errors="replace")
        tail = text[-6000:]
        assert proc.returncode == 0 and out.exists(), f"runner failed ({proc.returncode}):\n{tail}"
        result = json.loads(out.read_text())
        result["log_tail"] = tail
        result["log"] = text
        return result

    def store(self):
        from tvb_tasks.store import open_store

        return open_store(str(self.store_dir))


def _states(run: dict) -> dict[str, str]:
    return {k: v["state"] for k, v in run["tasks"].items()}


def _why(run: dict) -> str:
    return json.dumps(_states(run), indent=1) + "\n" + run["log_tail"]


_ERROR_LINE = re.compile(r"\[\s*(error|critical|exception)\s*\]|\b(ERROR|CRITICAL)\b")
_ASSET_WARNING = re.compile(r"\[\s*warning\s*\].*Asset")


def assert_clean_log(run: dict) -> None:
    """A successful run prints no error-level line (what people read as a failure, e.g. the Task SDK's "XCom not
    found" when a task iterates a mapped result), and no Asset warning (an asset Airflow does not know of)."""
    assert run["state"] == "success", _why(run)
    lines = run["log"].splitlines()
    bad = [line for line in lines if _ERROR_LINE.search(line) or _ASSET_WARNING.search(line)]
    assert not bad, "\n".join(bad)


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


@pytest.fixture(scope="module")
def territory():
    from tvb_tasks.config import load_territory

    return load_territory("call")


def test_fetch_dag_emits_one_asset_event_per_changed_source_only(airflow, territory):
    from tvb_tasks.contracts import FetchSummary

    first = airflow.run("tvb_fetch_call")
    assert first["state"] == "success", _why(first)
    assert_clean_log(first)
    uris = sorted(e["uri"] for e in first["asset_events"])
    assert uris == sorted(f"x-tvb://call/sources/{name}" for name in territory.sources)
    assert all(len(e["extra"]["snapshot_id"]) == 64 for e in first["asset_events"])
    summary = first["xcoms"]["fetch_sources[-1].return_value"]
    assert_conforms(summary, FetchSummary)
    assert sorted(summary["changed_sources"]) == sorted(territory.sources)

    second = airflow.run("tvb_fetch_call")             # same content: nothing changed, no event
    assert second["state"] == "success", _why(second)
    assert_clean_log(second)
    assert second["asset_events"] == []
    assert second["xcoms"]["fetch_sources[-1].return_value"]["changed_sources"] == []


@pytest.fixture(scope="module")
def published(airflow, territory):
    """The first manual run (default Params) of the observatory DAG."""
    return airflow.run("tvb_observatory_call")


def test_manual_run_publishes_a_complete_release(published, airflow, territory):
    run = published
    assert run["state"] == "success", _why(run)
    states = _states(run)
    assert set(states.values()) == {"success"}, _why(run)
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

    assert published["state"] == "success", _why(published)
    xcoms = published["xcoms"]
    assert {key.split(".", 1)[1] for key in xcoms} <= {"return_value", "_link_ReleaseReportLink"}, sorted(xcoms)
    run = xcoms["fetch_sources[-1].return_value"]
    assert_conforms(run, c.FetchedRun)
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

    assert published["state"] == "success", _why(published)
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
    assert published["state"] == "success", _why(published)
    store = airflow.store()
    before = store.list("releases/call/")
    latest_before = store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call")
    assert run["state"] == "success", _why(run)
    assert_clean_log(run)
    states = _states(run)
    assert states["fetch_sources[-1]"] == states["inputs_changed[-1]"] == states["notify[-1]"] == "success"
    for task in ("validate_sources", "compute_sous_trame", "assemble", "indicators", "publish"):
        assert {v for k, v in states.items() if k.startswith(task + "[")} == {"skipped"}, _why(run)
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "unchanged"
    assert result["release_id"] == published["xcoms"]["notify[-1].return_value"]["release_id"]
    assert result["report_url"] == published["xcoms"]["notify[-1].return_value"]["report_url"]
    assert run["asset_events"] == []
    assert store.list("releases/call/") == before                  # no duplicate release
    assert store.get_bytes("releases/call/latest.json") == latest_before


def test_forced_dry_run_at_another_resolution_publishes_nothing(published, airflow):
    assert published["state"] == "success", _why(published)
    store = airflow.store()
    before, latest_before = store.list("releases/call/"), store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call", {"force": True, "dry_run": True, "resolution_m": 50})
    assert run["state"] == "success", _why(run)
    assert set(_states(run).values()) == {"success"}, _why(run)
    assert_clean_log(run)
    fetched = run["xcoms"]["fetch_sources[-1].return_value"]
    assert fetched["resolution_m"] == 50.0 and fetched["force"] is True and fetched["sous_trames"] is None
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "dry_run" and result["release_id"]
    assert not {"release_url", "report_url", "web_url", "manifest_url"} & set(result)    # nothing to link to
    assert run["xcoms"].get("publish[-1]._link_ReleaseReportLink", "") == ""
    assert run["asset_events"] == []
    assert store.list("releases/call/") == before and store.get_bytes("releases/call/latest.json") == latest_before


def test_chosen_sous_trames_are_the_mapped_tasks(published, airflow):
    assert published["state"] == "success", _why(published)
    store = airflow.store()
    latest_before = store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call", {"dry_run": True, "sous_trames": ["wetland", "forest"]})
    mapped = {v["rendered_map_index"]: v["state"] for k, v in run["tasks"].items()
              if k.startswith("compute_sous_trame[")}
    assert mapped == {"forest": "success", "wetland": "success"}, _why(run)
    assert run["xcoms"]["fetch_sources[-1].return_value"]["sous_trames"] == ["forest", "wetland"]
    assert store.get_bytes("releases/call/latest.json") == latest_before
    assert run["state"] == "success", _why(run)
    assert run["xcoms"]["notify[-1].return_value"]["status"] == "dry_run"


def test_corrupted_input_fails_at_the_validation_gate_and_keeps_latest(published, airflow, tmp_path):
    import geopandas as gpd

    assert published["state"] == "success", _why(published)
    raw = yaml.safe_load((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    bad = tmp_path / "roads_wrong_crs.gpkg"
    gpd.read_file(ROOT / "sample/call/roads.gpkg", layer="roads").to_crs("EPSG:4326").to_file(
        bad, layer="roads", driver="GPKG")
    raw["sources"]["roads"].update(path=str(bad), layer="roads")
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "call.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    store = airflow.store()
    before, latest_before = store.list("releases/call/"), store.get_bytes("releases/call/latest.json")
    run = airflow.run("tvb_observatory_call", TVB_CONFIG_DIR=str(cfg))
    assert run["state"] == "failed", _why(run)
    states = _states(run)
    assert states["fetch_sources[-1]"] == states["inputs_changed[-1]"] == "success", _why(run)
    assert states["validate_sources[-1]"] == "failed", _why(run)
    assert run["tasks"]["validate_sources[-1]"]["try_number"] == 1, "a validation failure must not be retried"
    for task in ("plan_sous_trames", "assemble", "indicators", "validate_outputs", "publish", "notify"):
        assert states[f"{task}[-1]"] == "upstream_failed", _why(run)
    assert "ValidationFailed" in run["log_tail"] and "roads" in run["log_tail"]
    assert "TVB run FAILED" in run["log_tail"]
    assert store.list("releases/call/") == before
    assert store.get_bytes("releases/call/latest.json") == latest_before
