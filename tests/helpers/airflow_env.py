"""A throw-away Airflow home for the test modules that import Airflow in process (``tests/test_dags.py``,
``tests/test_plugins.py``): set before Airflow is imported, removed when the process exits (every pytest-xdist worker
collects these modules, so a folder left behind per collection piled up under /tmp)."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def use_throwaway_airflow_home() -> None:
    """``AIRFLOW_HOME`` (unless set) in a temporary folder with a SQLite database, example DAGs off, the project's DAG and
    plugin folders; the plugins folder and the project on ``sys.path``. Idempotent."""
    if os.environ.get("TVB_TEST_AIRFLOW_HOME"):
        return
    home = tempfile.mkdtemp(prefix="tvb-airflow-home-")
    atexit.register(shutil.rmtree, home, True)
    os.environ["TVB_TEST_AIRFLOW_HOME"] = home
    for key, value in {"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                       "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}.items():
        os.environ.setdefault(key, value)
    for path in (str(ROOT / "plugins"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
