"""The screening DAG through real Airflow: ``dag.test()`` with trigger-form params on a migrated SQLite DB (the runner
of tests/helpers/airflow_run.py), against a hand-built release in a local store. ``dag.test()`` does not raise when a
task fails, so the run state and the task state are asserted."""
from __future__ import annotations

import json

import pytest

from helpers.airflow_run import Airflow, task_states, why
from helpers.priorities_scene import RID, bx, project, write_scene

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    pytest.importorskip("airflow", reason="apache-airflow is not installed in this environment")
    af = Airflow(tmp_path_factory.mktemp("airflow-screening"))
    store = af.store()
    base = tmp_path_factory.mktemp("scene")
    store.put_file(f"releases/call/{RID}/tvb.gpkg", write_scene(base / "tvb.gpkg"))
    store.put_bytes("releases/call/latest.json", json.dumps({"release_id": RID}).encode())
    project(bx(1400, 300, 1600, 700), name="ZAC du formulaire").to_file(base / "zac.gpkg")
    store.put_file("uploads/call/zac.gpkg", base / "zac.gpkg")
    return af


def test_screening_dag_runs_from_the_trigger_form(airflow):
    run = airflow.run("tvb_screening_call", {"projet": "uploads/call/zac.gpkg", "nom": "ZAC du formulaire"})
    assert run["state"] == "success", why(run)
    assert task_states(run) == {"screen[-1]": "success"}, why(run)
    out = run["xcoms"]["screen[-1].return_value"]
    assert out["release_id"] == RID and out["touches_anything"] is True
    assert out["summary"]["corridors"] == 1 and out["summary"]["max_loss_pc_pct"] > 0
    assert out["prefix"].startswith(f"screenings/call/{RID}/")
    store = airflow.store()
    keys = set(store.list(out["prefix"] + "/"))
    assert {f"{out['prefix']}/fiche.html", f"{out['prefix']}/fiche.pdf", f"{out['prefix']}/screening.json"} <= keys
    assert "ZAC du formulaire" in store.get_bytes(f"{out['prefix']}/fiche.html").decode()
    assert store.list(f"releases/call/{RID}/") == [f"releases/call/{RID}/tvb.gpkg"]


def test_screening_dag_fails_on_a_missing_project(airflow):
    run = airflow.run("tvb_screening_call", {"projet": "uploads/call/absent.gpkg"})
    assert run["state"] == "failed", why(run)
    task = run["tasks"]["screen[-1]"]
    assert task["state"] == "failed" and task["try_number"] == 1      # ScreeningError: no retry
    assert "not a local file, an http(s) URL or a key of the store" in run["log_tail"]
