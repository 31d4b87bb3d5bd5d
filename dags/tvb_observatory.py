"""TVB observatory DAGs: ``tvb_observatory_<territory>``, one per ``config/territories/<id>.yaml`` (folder
``TVB_CONFIG_DIR``).

Scheduled on the territory's source Assets (any of them, emitted by ``tvb_fetch_<territory>``, see
``dags/tvb_fetch.py``), and triggerable by hand at any time with Params (force, sous-trames, resolution, dry run).
fetch → validate sources → compute (one mapped task per sous-trame, in parallel) → assemble → indicators →
validate outputs → publish → notify. A territory whose YAML is invalid gets a failing placeholder DAG showing the
error instead.

Tasks are a few lines each: all the work is in ``tvb_tasks.pipeline`` (no Airflow import there), which the CLI runs
too; the shared Airflow glue is ``plugins/tvb_dag_support.py``. Only small dicts of store keys, ids and counts travel
through XCom. Heavy modules are imported inside the tasks so that parsing this file stays fast. See
docs/operations.md.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from airflow.sdk import AssetAny, Metadata, TriggerRule, dag, get_current_context, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    POOL,
    START_DATE,
    check_conf_keys,
    fetch_run,
    observatory_doc,
    public_urls,
    release_alias,
    release_asset,
    run_options,
    run_stage,
    source_asset,
    trigger_params,
)
from tvb_links import ReleaseReportLink
from tvb_notifier import TvbNotifier
from tvb_tasks.config import ConfigError, Territory, list_territories, load_territory

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
            check_conf_keys(dag_run.conf, params)
            return fetch_run(tid, **run_options(load_territory(tid), params))

        @task.short_circuit(ignore_downstream_trigger_rules=False, execution_timeout=timedelta(minutes=5))
        def inputs_changed(run):
            """False (skip the computation, still notify) when the live release already has these inputs."""
            if run["unchanged_release"]:
                log.info("unchanged: release %s already has input key %s", run["unchanged_release"],
                         run["input_key"][:12])
                return False
            return True

        @task(execution_timeout=timedelta(minutes=45))
        def validate_sources(run):
            return run_stage("stage_validate_sources", run)

        @task(execution_timeout=timedelta(minutes=5))
        def plan_sous_trames(run):
            chosen = run.get("sous_trames") or all_sous_trames
            return [st for st in all_sous_trames if st in chosen]

        @task(execution_timeout=timedelta(hours=3), map_index_template="{{ sous_trame_label }}")
        def compute_sous_trame(run, sous_trame):
            get_current_context()["sous_trame_label"] = sous_trame
            return run_stage("stage_compute_sous_trame", run, sous_trame)

        @task(execution_timeout=timedelta(hours=2))
        def assemble(run, parts):
            return run_stage("stage_assemble", run, list(parts))

        @task(execution_timeout=timedelta(hours=1))
        def indicators(run, assembled):
            return run_stage("stage_indicators", run)

        @task(execution_timeout=timedelta(minutes=45))
        def validate_outputs(run, indicator_summary):
            return run_stage("stage_validate_outputs", run)

        @task(outlets=[published_alias], execution_timeout=timedelta(hours=1))
        def publish(run, indicator_summary, sources_validation, outputs_validation, params=None):
            validation = {"sources": sources_validation, "outputs": outputs_validation,
                          "success": bool(sources_validation.get("success")
                                          and outputs_validation.get("success"))}
            result = run_stage("stage_publish", run, indicator_summary, validation, dry_run=bool(params["dry_run"]))
            result = {"territory": tid, "store_uri": run["store_uri"], **result}
            if result.get("status") == "dry_run":     # nothing was written: no link to a release that does not exist
                for key in ("release_url", "report_url", "web_url", "manifest_url"):
                    result.pop(key, None)
            if result.get("status") == "published":
                for key, url in public_urls(run, result.get("release_id")).items():
                    result.setdefault(key, url)
                yield Metadata(release_asset(tid), alias=published_alias,
                               extra={"release_id": result.get("release_id"), "input_key": run["input_key"]})
            return result

        @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=timedelta(minutes=10))
        def notify(run, published):
            """Log + webhook: published / dry run / unchanged (failures are notified by on_failure_callback)."""
            if published is None:   # the computation was skipped: the live release already has these inputs
                published = {"status": "unchanged", "territory": tid, "store_uri": run["store_uri"],
                             "release_id": run["unchanged_release"],
                             **public_urls(run, run["unchanged_release"])}
            event = published.get("status") if published.get("status") in ("published", "unchanged",
                                                                              "dry_run") else "published"
            TvbNotifier(event).send(get_current_context(), published)
            return published

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
        notify(run, published)

    return observatory_dag()


def build_config_error_dag(territory_id: str, error: str):
    """A visible, failing placeholder for a territory whose YAML is invalid (the other territories keep running)."""

    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", territory_id)[:200]

    @dag(dag_id=f"tvb_observatory_{safe_id}", schedule=None, start_date=START_DATE, catchup=False,
         default_args={**DEFAULT_ARGS, "retries": 0}, tags={"tvb", "config-error"},
         doc_md=f"### Invalid territory configuration `{territory_id}`\n\n```\n{error}\n```\n\n"
                "Fix the YAML file; this DAG is replaced by the real ones at the next parse.",
         description=f"INVALID configuration for territory {territory_id}")
    def config_error_dag():
        @task(execution_timeout=timedelta(minutes=1))
        def report_config_error():
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(error)

        report_config_error()

    return config_error_dag()


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
