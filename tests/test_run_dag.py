"""scripts/run_dag.py (the demo's runner), without Airflow: the filter that keeps ``dag.test()``'s transient "No tasks
to run" warnings (a short-circuited run, unchanged inputs) off the output while letting every other warning through
and remembering the waiting tasks (printed when a run fails)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import NamedTuple

RUNNER = Path(__file__).resolve().parent.parent / "scripts" / "run_dag.py"


def _runner():
    spec = importlib.util.spec_from_file_location("run_dag_under_test", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _TI(NamedTuple):          # hashable, like Airflow's TaskInstance (dag.test() logs a set of them)
    task_id: str


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_short_circuit_wait_is_not_printed_and_other_warnings_are():
    waiting = _runner().WaitingTasks()
    log = logging.getLogger("tests.run_dag.dag_test")      # stands for airflow.sdk.definitions.dag
    collect = _Collect()
    log.addHandler(collect)
    log.addFilter(waiting)
    try:
        tis = {_TI(task_id="validate_outputs"), _TI(task_id="indicators")}
        log.warning("No tasks to run. unrunnable tasks: %s", tis)           # what dag.test() logs each loop
        log.warning("No tasks to run. unrunnable tasks: %s", {_TI(task_id="validate_outputs")})
        log.warning("Task %s failed", "publish")
    finally:
        log.removeHandler(collect)
        log.removeFilter(waiting)
    assert collect.lines == ["Task publish failed"]
    assert waiting.unrunnable == ["validate_outputs"]                 # the last set: printed if the run fails
