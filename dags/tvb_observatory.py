"""TVB observatory DAGs: ``tvb_observatory_<territory>``, one per ``config/territories/<id>.yaml`` (folder
``TVB_CONFIG_DIR``).

Scheduled on the territory's source Assets (any of them, emitted by ``tvb_fetch_<territory>``, see
``dags/tvb_fetch.py``), and triggerable by hand at any time with Params (force, sous-trames, resolution, dry run).
fetch → validate sources → compute (one mapped task per sous-trame, in parallel) → assemble → indicators →
validate outputs → publish → notify. A territory whose YAML is invalid gets a failing placeholder DAG showing the
error instead.

Tasks are a few lines each: they call ``tvb_tasks.pipeline`` functions (no Airflow import there), which the CLI runs
too, including how a run ends (``publish_outcome``, ``unchanged_outcome``, ``notify_event``); the shared Airflow glue
is ``plugins/tvb_dag_support.py``. Only small dicts of store keys, ids and counts travel through XCom, typed in
``tvb_tasks.contracts`` (the tasks' parameters carry those types; their return values are those of the pipeline
functions, deliberately not annotated: Airflow reads a ``dict`` return annotation as ``multiple_outputs=True`` and
would push every key as its own XCom). Heavy modules are imported inside the tasks so that parsing this file stays
fast. See docs/operations.md.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import AssetAny, Metadata, TriggerRule, dag, get_current_context, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    POOL,
    START_DATE,
    config_error_dag,
    fetch_sources_task,
    observatory_doc,
    planned_sous_trames,
    release_alias,
    release_asset,
    set_map_label,
    source_asset,
    trigger_params,
    tvb_pipeline,
    xcom_list,
)
from tvb_links import ReleaseReportLink
from tvb_notifier import TvbNotifier
from tvb_tasks.config import ConfigError, Territory, list_territories, load_territory
from tvb_tasks.contracts import FetchedRun, GateVerdict, IndicatorSummary, LayersSummary, Outcome, SousTramePart

log = logging.getLogger(__name__)


def build_observatory_dag(territory: Territory):
    """The observatory DAG of one territory."""
    tid = territory.id
    published_alias = release_alias(tid)
    all_sous_trames = list(territory.sous_trames)

    @dag(dag_id=f"tvb_observatory_{tid}", dag_display_name=f"TVB observatory — {territory.short_name or tid}",
         description=f"Compute, validate and publish the TVB of {territory.name}",
         schedule=AssetAny(*(source_asset(tid, name) for name in territory.sources)),
         start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=8),
         default_args=DEFAULT_ARGS, tags={"tvb", "observatory", f"territory:{tid}"},
         doc_md=observatory_doc(territory), params=trigger_params(territory))
    def observatory_dag():
        @task(pool=POOL, execution_timeout=timedelta(hours=2))
        def fetch_sources(params=None, dag_run=None):
            """Idempotent (content-addressed snapshots): re-uses what tvb_fetch_<territory> fetched."""
            return fetch_sources_task(tid, params, dag_run.conf)

        @task.short_circuit(ignore_downstream_trigger_rules=False, execution_timeout=timedelta(minutes=5))
        def inputs_changed(run: FetchedRun):
            """False (skip the computation, still notify) when the live release already has these inputs."""
            if run["unchanged_release"]:
                log.info("unchanged: release %s already has input key %s", run["unchanged_release"],
                         run["input_key"][:12])
                return False
            return True

        @task(execution_timeout=timedelta(minutes=45))
        def validate_sources(run: FetchedRun):
            with tvb_pipeline() as pipeline:
                return pipeline.stage_validate_sources(run)

        @task(execution_timeout=timedelta(minutes=5))
        def plan_sous_trames(run: FetchedRun):
            return planned_sous_trames(all_sous_trames, run)

        @task(execution_timeout=timedelta(hours=3), map_index_template="{{ sous_trame_label }}")
        def compute_sous_trame(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline() as pipeline:
                return pipeline.stage_compute_sous_trame(run, sous_trame)

        @task(execution_timeout=timedelta(hours=2))
        def assemble(run: FetchedRun, parts: Sequence[SousTramePart]):
            with tvb_pipeline() as pipeline:
                return pipeline.stage_assemble(run, xcom_list(parts))

        @task(execution_timeout=timedelta(hours=1))
        def indicators(run: FetchedRun, assembled: LayersSummary):
            with tvb_pipeline() as pipeline:
                return pipeline.stage_indicators(run)

        @task(execution_timeout=timedelta(minutes=45))
        def validate_outputs(run: FetchedRun, indicator_summary: IndicatorSummary):
            with tvb_pipeline() as pipeline:
                return pipeline.stage_validate_outputs(run)

        # inlet: publish reads the live release (compare-and-swap of its pointer); declaring it also registers the
        # release Asset with Airflow, so the event emitted through the alias finds it (no "AssetModel … not found")
        @task(inlets=[release_asset(tid)], outlets=[published_alias], execution_timeout=timedelta(hours=1))
        def publish(run: FetchedRun, indicator_summary: IndicatorSummary, sources_validation: GateVerdict,
                    outputs_validation: GateVerdict, params=None):
            with tvb_pipeline() as pipeline:
                outcome = pipeline.publish_outcome(run, indicator_summary, sources_validation, outputs_validation,
                                                   dry_run=bool(params["dry_run"]))
            if outcome["status"] == "published":
                yield Metadata(release_asset(tid), alias=published_alias,
                               extra={"release_id": outcome["release_id"], "input_key": run["input_key"]})
            return outcome

        @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=timedelta(minutes=10))
        def notify(run: FetchedRun, ti=None):
            """Log + webhook: published / dry run / unchanged (failures are notified by on_failure_callback).
            Unchanged inputs skipped ``publish``, which pushed nothing: that outcome comes from the run (pulling the
            skipped task's XCom would log an "XCom not found" error); otherwise it is publish's."""
            with tvb_pipeline() as pipeline:
                outcome: Outcome = (pipeline.unchanged_outcome(run) if run["unchanged_release"]
                                    else ti.xcom_pull(task_ids="publish"))
                event = pipeline.notify_event(outcome)
            TvbNotifier(event).send(get_current_context(), outcome)
            return outcome

        run = fetch_sources()
        gate = inputs_changed(run)
        sources_ok = validate_sources(run)
        gate >> sources_ok
        sous_trames = plan_sous_trames(run)
        sources_ok >> sous_trames
        parts = compute_sous_trame.partial(run=run).expand(sous_trame=sous_trames)
        assembled = assemble(run, parts)
        summary = indicators(run, assembled)
        outputs_ok = validate_outputs(run, summary)
        published = publish(run, summary, sources_ok, outputs_ok)
        published.operator.operator_extra_links = [ReleaseReportLink()]
        published >> notify(run)

    return observatory_dag()


def build_config_error_dag(territory_id: str, error: str):
    """A visible, failing placeholder for a territory whose YAML is invalid (the other territories keep running)."""
    return config_error_dag("tvb_observatory", "territory", territory_id, error)


def build_all() -> dict[str, Any]:
    """The observatory DAG of every territory in the config folder (a placeholder for an invalid one), by dag_id."""
    dags: dict[str, Any] = {}
    for tid in list_territories():
        try:
            territory = load_territory(tid)
        except ConfigError as exc:
            log.error("territory %s: %s", tid, exc)
            d = build_config_error_dag(tid, str(exc))
            dags[d.dag_id] = d
            continue
        d = build_observatory_dag(territory)
        dags[d.dag_id] = d
    return dags


globals().update(build_all())
