"""TVB fetch DAGs: ``tvb_fetch_<territory>``, one per ``config/territories/<id>.yaml`` (folder ``TVB_CONFIG_DIR``).

On the territory's ``schedule.fetch_cron`` (weekly by default), fetches every source into content-addressed
snapshots and emits one Asset event per source **that changed** (``x-tvb://<territory>/sources/<source>``, through
an AssetAlias, so unchanged sources emit nothing). Those events schedule ``tvb_observatory_<territory>``
(``dags/tvb_observatory.py``).

The task is a few lines: the work is in ``tvb_tasks.pipeline.stage_fetch`` (no Airflow import there), called through
the shared glue of ``plugins/tvb_dag_support.py``; it returns a ``tvb_tasks.contracts.FetchSummary``. A territory whose YAML is invalid gets no fetch DAG (its failing
placeholder is ``tvb_observatory_<territory>``). See docs/operations.md.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Metadata, Param, dag, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    POOL,
    START_DATE,
    changed_sources,
    dags_of_valid_territories,
    fetch_doc,
    fetch_run,
    source_asset,
    sources_alias,
)
from tvb_tasks.config import Territory, load_territory
from tvb_tasks.contracts import FetchSummary

log = logging.getLogger(__name__)


def build_fetch_dag(territory: Territory):
    """The fetch DAG of one territory."""
    tid = territory.id
    alias = sources_alias(tid)

    @dag(dag_id=f"tvb_fetch_{tid}", dag_display_name=f"TVB fetch sources — {territory.short_name or tid}",
         description=f"Fetch the sources of {territory.name}; emit an Asset event per changed source",
         schedule=CronTriggerTimetable(territory.schedule.fetch_cron, timezone="UTC"),
         start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=3),
         default_args=DEFAULT_ARGS, tags={"tvb", "fetch", f"territory:{tid}"}, doc_md=fetch_doc(territory),
         params={"force": Param(False, type="boolean", title="Force re-download",
                                description="Download every source again even when a snapshot is cached.")})
    def fetch_dag():
        @task(pool=POOL, outlets=[alias], execution_timeout=timedelta(hours=2))
        def fetch_sources(params=None):
            run = fetch_run(tid, force=bool(params["force"]))
            changed = changed_sources(load_territory(tid), run)
            for name in changed:    # one Asset event per changed source, none for unchanged ones
                ref = run["snapshots"][name]
                yield Metadata(source_asset(tid, name), alias=alias,
                               extra={"snapshot_id": ref.get("snapshot_id"), "key": ref.get("key")})
            log.info("changed sources: %s", ", ".join(changed) or "none (no Asset event)")
            summary: FetchSummary = {"territory": tid, "store_uri": run["store_uri"], "input_key": run["input_key"],
                                     "changed_sources": changed, "unchanged_release": run["unchanged_release"]}
            return summary

        fetch_sources()

    return fetch_dag()


def build_all() -> dict[str, Any]:
    """The fetch DAG of every valid territory in the config folder, by dag_id."""
    return dags_of_valid_territories(build_fetch_dag, "fetch")


globals().update(build_all())
