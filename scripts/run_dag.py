"""Run one DAG once through real Airflow (``dag.test()`` on the project-local metadata DB).

The one runner of both ``scripts/demo.sh`` and the end-to-end tests (``tests/helpers/airflow_run.py``, which call it
with ``--conf`` and ``--dump`` and check that its output has no error line: what the demo prints). Exits non-zero
when the DAG run does not succeed (dag.test() itself does not raise when a task fails), and prints where the
published release and its report are.

    python scripts/run_dag.py --territory call [--force] [--dry-run] [--resolution M] [--dag-id tvb_observatory_call]
    python scripts/run_dag.py --dag-id tvb_fetch_call --conf '{}' --dump run.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def airflow_env(home: Path) -> None:
    """Point Airflow at the project's DAGs, plugins and a SQLite DB in ``home`` (before airflow is imported)."""
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    home = Path(os.environ["AIRFLOW_HOME"])
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # dag.test() runs the task API through FastAPI's test client, whose import warns that Starlette will drop httpx
    # (a third-party deprecation, nothing the run can act on): not printed as the demo's first line
    import warnings

    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")


class WaitingTasks(logging.Filter):
    """Keeps ``dag.test()``'s "No tasks to run. unrunnable tasks: {…}" warnings off the output, remembering the last
    set of task ids.

    ``dag.test()`` is a minimal scheduler loop: when a short-circuit (unchanged inputs) skips the rest of the run, the
    skip reaches the tasks downstream one loop at a time, and each loop where nothing is runnable yet logs this
    warning and waits 1 s. The run is correct; a run that really stays stuck ends failed (Airflow's deadlock check),
    and :func:`main` then prints the tasks that never became runnable (:attr:`unrunnable`)."""

    PREFIX = "No tasks to run"

    def __init__(self) -> None:
        super().__init__()
        self.unrunnable: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.PREFIX):
            return True
        tis = record.args[0] if isinstance(record.args, tuple) and record.args else ()
        self.unrunnable = sorted(str(getattr(ti, "task_id", ti)) for ti in tis)
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--territory", default="call")
    p.add_argument("--dag-id", help="default: tvb_observatory_<territory>")
    p.add_argument("--force", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--resolution", type=int, help="resolution_m Param of the run (m); default: the territory's")
    p.add_argument("--airflow-home", default=str(ROOT / ".airflow"))
    p.add_argument("--conf", help="the run's conf as JSON, instead of the one built from --territory/--force/--dry-run")
    p.add_argument("--dump", help="write the run's state, task states, XComs and Asset events to this JSON file")
    args = p.parse_args(argv)
    airflow_env(Path(args.airflow_home))
    sys.path.insert(0, str(ROOT))

    from airflow.dag_processing.dagbag import DagBag

    args.dag_id = args.dag_id or f"tvb_observatory_{args.territory}"
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}:\n{err}", file=sys.stderr)
        return 1
    dag = bag.get_dag(args.dag_id)
    if dag is None:
        print(f"no DAG {args.dag_id!r} (found: {', '.join(sorted(bag.dag_ids))})", file=sys.stderr)
        return 1
    conf = (json.loads(args.conf) if args.conf is not None
            else {"territory": args.territory, "force": args.force, "dry_run": args.dry_run})
    if args.resolution is not None:
        conf["resolution_m"] = args.resolution
    waiting = WaitingTasks()
    logging.getLogger("airflow.sdk.definitions.dag").addFilter(waiting)     # dag.test()'s own logger
    run = dag.test(run_conf=conf or None)
    if args.dump:
        Path(args.dump).write_text(json.dumps(run_record(args.dag_id, run), default=str), encoding="utf-8")
    state = str(getattr(run, "state", "unknown"))
    tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances()} if hasattr(run, "get_task_instances") else {}
    print(f"DAG run {args.dag_id} ({json.dumps(conf)}): {state}")
    for task_id, ti_state in sorted(tis.items()):
        print(f"  {task_id:<28} {ti_state}")
    if not state.endswith("success"):
        if waiting.unrunnable:
            print(f"tasks that never became runnable: {', '.join(waiting.unrunnable)}")
        return 1

    from tvb_tasks.cli import release_paths
    from tvb_tasks.publish.release import read_latest
    from tvb_tasks.store import open_store

    store = open_store()
    latest, _ = read_latest(store, args.territory)
    if latest is None:
        print("no release published yet (dry run?)")
        return 0
    published = any(t.startswith("publish") and s.endswith("success") for t, s in tis.items())
    print(f"published release {latest['release_id']}" if published else
          f"unchanged: the inputs have not changed since release {latest['release_id']}, which stays live "
          "(nothing recomputed, nothing published)")
    print("\n".join(release_paths(store.uri, args.territory, latest["release_id"])))
    return 0


def run_record(dag_id: str, run) -> dict:
    """What happened in a DAG run, read from the metadata DB: state, run_id, task instances (state, try number,
    rendered map index) keyed ``task_id[map_index]``, XComs keyed ``task_id[map_index].key`` and Asset events."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        tis = {f"{t.task_id}[{t.map_index}]": {"state": str(getattr(t.state, "value", t.state)),
                                                "try_number": t.try_number,
                                                "rendered_map_index": t.rendered_map_index}
               for t in s.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                             TaskInstance.run_id == run.run_id))}
        xcoms = {}
        for x in s.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id)):
            value = x.value
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            xcoms[f"{x.task_id}[{x.map_index}].{x.key}"] = value
        events = [{"uri": uri, "extra": extra} for uri, extra in s.execute(
            select(AssetModel.uri, AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run.run_id))]
    return {"state": str(getattr(run.state, "value", run.state)), "run_id": run.run_id, "tasks": tis,
            "xcoms": xcoms, "asset_events": events}


if __name__ == "__main__":
    sys.exit(main())
