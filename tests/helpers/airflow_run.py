"""End-to-end runs of the DAGs through real Airflow: ``dag.test()`` on a throw-away migrated SQLite metadata DB, with
the real stage libraries and a local store in a temporary folder (used by ``test_airflow_e2e.py``,
``test_tiled_dag.py`` and ``test_screening_dag.py``).

Each run happens in its own subprocess (Airflow reads its configuration at import time) of ``scripts/run_dag.py``,
the runner ``scripts/demo.sh`` uses: so :func:`assert_clean_log` checks what the demo prints. The runner dumps the
run's task states, XComs and Asset events as JSON (``--dump``). ``dag.test()`` does not raise when a task fails, so
tests assert the returned run's state and every task's state (:func:`task_states`, :func:`why` for the message).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RUNNER = ROOT / "scripts" / "run_dag.py"          # also scripts/demo.sh's


class Airflow:
    """A throw-away Airflow installation (SQLite) and a store in ``base``."""

    def __init__(self, base: Path):
        self.base = base
        self.store_dir = base / "store"
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
        """One ``dag.test()`` through ``scripts/run_dag.py``; returns the dumped run (state, run_id, tasks, xcoms,
        asset_events) with the runner's whole output (``log``) and its end (``log_tail``)."""
        self.n += 1
        out = self.base / f"run{self.n}.json"
        log = self.base / f"run{self.n}.log"
        territory = (conf or {}).get("territory", "call")
        with open(log, "w") as fh:
            proc = subprocess.run([PYTHON, str(RUNNER), "--dag-id", dag_id, "--territory", territory,
                                   "--conf", json.dumps(conf or {}), "--dump", str(out)],
                                  env={**self.env, **env}, stdout=fh, stderr=subprocess.STDOUT, timeout=1500)
        text = log.read_text(errors="replace")
        tail = text[-6000:]
        assert out.exists(), f"runner failed ({proc.returncode}):\n{tail}"
        result = json.loads(out.read_text())
        # the runner exits 0 exactly when the run succeeded (and it could then read the store), as the demo relies on
        assert proc.returncode == (0 if result["state"] == "success" else 1), f"runner exit {proc.returncode}:\n{tail}"
        result["log_tail"] = tail
        result["log"] = text
        return result

    def store(self):
        from tvb_tasks.store import open_store

        return open_store(str(self.store_dir))


def task_states(run: dict) -> dict[str, str]:
    """``{"task_id[map_index]": state}`` of a dumped run."""
    return {k: v["state"] for k, v in run["tasks"].items()}


def why(run: dict) -> str:
    """Task states and the end of the runner's output: the assertion message of a run that went wrong."""
    return json.dumps(task_states(run), indent=1) + "\n" + run["log_tail"]


_ERROR_LINE = re.compile(r"\[\s*(error|critical|exception)\s*\]|\b(ERROR|CRITICAL)\b")
_ASSET_WARNING = re.compile(r"\[\s*warning\s*\].*Asset")


def assert_clean_log(run: dict) -> None:
    """A successful run prints no error-level line (what people read as a failure, e.g. the Task SDK's "XCom not
    found" when a task iterates a mapped result), and no Asset warning (an asset Airflow does not know of)."""
    assert run["state"] == "success", why(run)
    lines = run["log"].splitlines()
    bad = [line for line in lines if _ERROR_LINE.search(line) or _ASSET_WARNING.search(line)]
    assert not bad, "\n".join(bad)
