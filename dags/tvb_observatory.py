"""TVB observatory DAGs, two per territory, generated from ``config/territories/*.yaml`` (``TVB_CONFIG_DIR``).

* ``tvb_fetch_<territory>`` — on the territory's ``schedule.fetch_cron`` (weekly by default): fetches every source
  into content-addressed snapshots and emits one Asset event per source **that changed** (``x-tvb://<territory>/
  sources/<source>``, through an AssetAlias, so unchanged sources emit nothing).
* ``tvb_observatory_<territory>`` — scheduled on those source Assets (any of them), and triggerable by hand at any
  time with Params (force, sous-trames, resolution, dry run). fetch → validate sources → compute (one mapped task
  per sous-trame, in parallel) → assemble → indicators → validate outputs → publish → notify.

Tasks are a few lines each: all the work is in ``tvb_tasks.pipeline`` (no Airflow import there), which the CLI runs
too. Only small dicts of store keys, ids and counts travel through XCom. Heavy modules are imported inside the tasks
so that parsing this file stays fast. See docs/operations.md.
"""
from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetAny,
    CronTriggerTimetable,
    Metadata,
    Param,
    TriggerRule,
    dag,
    get_current_context,
    task,
)
from tvb_links import ReleaseReportLink
from tvb_notifier import TvbNotifier
from tvb_retry import FailFastPolicy

from tvb_tasks.config import ConfigError, Territory, list_territories, load_territory

log = logging.getLogger(__name__)

OWNER = "tvb-observatory"
POOL = "tvb_remote_servers"               # fetch tasks only: bounds the load on remote WFS / download servers
START_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
RESOLUTION_MIN_M, RESOLUTION_MAX_M = 10, 200
STORE_VARIABLE = "tvb_store_uri"          # Airflow Variable overriding TVB_STORE_URI

# Deterministic errors of tvb_tasks (ValidationFailed, ConfigError, IndicatorsError… see tvb_retry) fail at once:
# retrying gives the same result. Everything else (network, store, worker loss) is retried with exponential backoff.
NOT_RETRYABLE = FailFastPolicy()

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": int(os.environ.get("TVB_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("TVB_RETRY_DELAY_S", "120"))),
    "retry_exponential_backoff": 2.0,      # 2 min, 4 min, … (Airflow 3 multiplier)
    "max_retry_delay": timedelta(minutes=30),
    "retry_policy": NOT_RETRYABLE,
    "execution_timeout": timedelta(hours=1),
    "on_failure_callback": [TvbNotifier("failure")],
}


# --- names ---------------------------------------------------------------------------------------------------------
def source_asset(territory_id: str, source: str) -> Asset:
    """The Asset of one source of a territory; an event means "a new snapshot of this source was fetched"."""
    return Asset(name=f"tvb_{territory_id}_{source}", uri=f"x-tvb://{territory_id}/sources/{source}",
                 group="tvb_sources")


def release_asset(territory_id: str) -> Asset:
    """The Asset of a territory's published release; an event means "latest.json moved"."""
    return Asset(name=f"tvb_{territory_id}_release", uri=f"x-tvb://{territory_id}/release", group="tvb_releases")


def sources_alias(territory_id: str) -> AssetAlias:
    return AssetAlias(f"tvb_{territory_id}_changed_sources")


def release_alias(territory_id: str) -> AssetAlias:
    return AssetAlias(f"tvb_{territory_id}_published_release")


# --- run-time helpers (called inside tasks only) -------------------------------------------------------------------
def store_uri() -> str | None:
    """Store URI: Airflow Variable ``tvb_store_uri``, else extra ``store_uri`` of the connection ``tvb_store``, else
    ``TVB_STORE_URI``, else None (the pipeline's default, ``<project>/var/store``)."""
    from airflow.sdk import Variable
    from tvb_hooks import ObjectStoreHook, connection_exists

    uri = Variable.get(STORE_VARIABLE, default=None)
    if not uri and connection_exists(ObjectStoreHook.default_conn_name):
        uri = ObjectStoreHook().settings().store_uri
    return uri or os.environ.get("TVB_STORE_URI") or None


def public_urls(run: dict, release_id: str | None) -> dict:
    """Release, report and manifest URLs of ``release_id``, as ``tvb_tasks.publish`` builds them: under
    ``TVB_PUBLIC_BASE_URL`` (an http(s) URL serving the store root) when set, else the store's own URLs."""
    if not release_id:
        return {}
    from tvb_tasks.publish.release import public_url, release_prefix
    from tvb_tasks.store import open_store

    store, prefix = open_store(run["store_uri"]), release_prefix(run["territory"], release_id)
    publish_cfg = (load_territory(run["territory"]).model_extra or {}).get("publish") or {}
    base = os.environ.get("TVB_PUBLIC_BASE_URL") or publish_cfg.get("public_base_url")
    return {"release_url": public_url(store, prefix, base) + "/",
            "report_url": public_url(store, prefix + "/report/index.html", base),
            "manifest_url": public_url(store, prefix + "/manifest.json", base)}


def run_options(territory: Territory, params: dict) -> dict:
    """``stage_fetch`` keyword arguments from the trigger Params; defaults (all sous-trames, the territory's
    resolution) become None so that a default manual run has the same identity as a scheduled one."""
    if params.get("territory", territory.id) != territory.id:
        raise ValueError(f"this DAG computes territory {territory.id!r}, not {params.get('territory')!r}")
    chosen = list(params.get("sous_trames") or territory.sous_trames)
    subset = None if set(chosen) == set(territory.sous_trames) else sorted(chosen)
    resolution = params.get("resolution_m")
    if resolution is not None and float(resolution) == float(territory.resolution_m):
        resolution = None
    return {"force": bool(params.get("force", False)), "sous_trames": subset,
            "resolution_m": float(resolution) if resolution is not None else None}


def changed_sources(territory: Territory, run: dict) -> list[str]:
    """Names of the territory's sources with a new snapshot (a derived layer, e.g. ``osm_roads``, counts for its
    ``parent_source``)."""
    names = set()
    for name in run.get("changed_sources") or []:
        parent = (run["snapshots"].get(name) or {}).get("parent_source") or name
        if parent in territory.sources:
            names.add(parent)
    return sorted(names)


def check_conf_keys(conf: dict | None, params: dict) -> None:
    """Refuse a trigger conf with keys that are not Params (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(conf or {}) - set(params))
    if unknown:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"unknown run parameter(s) {unknown}; known: {sorted(params)}")


def fetch_run(territory_id: str, **options) -> dict:
    """``stage_fetch`` with the store URI and the credentials of sources that name an Airflow connection."""
    from tvb_hooks import source_credentials

    credentials = source_credentials(load_territory(territory_id))
    if credentials:
        options["credentials"] = credentials
    return _stage("stage_fetch", territory_id, store_uri=store_uri(), **options)


def _stage(name: str, *args, **kwargs):
    """Call ``tvb_tasks.pipeline.<name>`` with the ``tvb_store`` connection (if defined) exposed to boto3."""
    from tvb_hooks import store_environment

    from tvb_tasks import pipeline

    with store_environment():
        return getattr(pipeline, name)(*args, **kwargs)


# --- documentation -------------------------------------------------------------------------------------------------
def _territory_doc(territory: Territory) -> str:
    sources = ", ".join(f"`{n}` ({s.kind})" for n, s in territory.sources.items())
    sts = ", ".join(f"`{k}` ({v.label})" for k, v in territory.sous_trames.items())
    return (f"**Territory** `{territory.id}` — {territory.name} (profile `{territory.profile}`, "
            f"config `{os.path.relpath(territory.path) if territory.path else '?'}`)\n\n"
            f"**Sources**: {sources}\n\n**Sous-trames**: {sts}\n")


def _fetch_doc(territory: Territory) -> str:
    return f"""### TVB — fetch sources of {territory.short_name or territory.name}

Runs on `{territory.schedule.fetch_cron}` (UTC; `schedule.fetch_cron` in the territory YAML). Fetches every source
into content-addressed snapshots in the store (pool `{POOL}`), and emits one Asset event per source whose content
**changed** since its previous snapshot (`x-tvb://{territory.id}/sources/<source>`). Those events schedule
`tvb_observatory_{territory.id}`; when nothing changed, nothing is emitted and nothing is recomputed.

Param `force`: re-download every source even when a cached snapshot exists.

{_territory_doc(territory)}
See `docs/operations.md`."""


def _observatory_doc(territory: Territory) -> str:
    return f"""### TVB observatory — {territory.name}

Computes and publishes the Trame Verte et Bleue of **{territory.short_name or territory.name}**.

Runs when `tvb_fetch_{territory.id}` reports a changed source, or by hand (**Trigger** button, with the form):

| Param | Meaning |
|---|---|
| territory | fixed for this DAG (one DAG per YAML file in `config/territories/`) |
| force | recompute and publish a new release even if inputs, configuration and code are unchanged |
| sous_trames | the sous-trames to compute (default: all) |
| resolution_m | raster cell size in metres ({RESOLUTION_MIN_M}–{RESOLUTION_MAX_M}) |
| dry_run | compute and validate everything, publish nothing |

Flow: `fetch_sources` → `inputs_changed` (stops here, successfully, when the live release already has these
inputs) → `validate_sources` (quality gate: a critical failure stops the run, nothing is published) →
`plan_sous_trames` → `compute_sous_trame` ×N (mapped, in parallel) → `assemble` → `indicators` →
`validate_outputs` (gate) → `publish` (create-only objects, manifest, compare-and-swap of `latest.json`) → `notify`.

The publish task has a **Release report** link to the published report.

{_territory_doc(territory)}
See `docs/operations.md` for re-running, backfilling and reading logs."""


# --- DAG factories -------------------------------------------------------------------------------------------------
def trigger_params(territory: Territory) -> dict[str, Param]:
    """The manual-trigger form: typed, with enums and ranges, validated (JSON schema) before a run is created."""
    sous_trames = list(territory.sous_trames)
    default_res = int(min(max(round(territory.resolution_m), RESOLUTION_MIN_M), RESOLUTION_MAX_M))
    return {
        "territory": Param(territory.id, type="string", enum=[territory.id], title="Territory",
                           description=f"{territory.name}. Each territory has its own DAG "
                                       f"(tvb_observatory_<id>, one per config/territories/<id>.yaml).",
                           values_display={territory.id: f"{territory.id} — {territory.name}"}),
        "force": Param(False, type="boolean", title="Force recompute",
                       description="Recompute and publish a new release even when sources, configuration and code "
                                   "are those of the live release."),
        "sous_trames": Param(sous_trames, type="array", title="Sous-trames to compute",
                             description="Select one or more sous-trames (default: all).",
                             items={"type": "string", "enum": sous_trames}, examples=sous_trames,
                             values_display={k: v.label for k, v in territory.sous_trames.items()},
                             minItems=1, uniqueItems=True),
        "resolution_m": Param(default_res, type="integer", minimum=RESOLUTION_MIN_M, maximum=RESOLUTION_MAX_M,
                              title="Resolution (m)",
                              description=f"Raster cell size for friction and cost-distance, in metres "
                                          f"({RESOLUTION_MIN_M}–{RESOLUTION_MAX_M}; territory default "
                                          f"{territory.resolution_m:g})."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Compute and validate, but do not publish a release."),
    }


def build_fetch_dag(territory: Territory):
    tid = territory.id
    alias = sources_alias(tid)

    @dag(dag_id=f"tvb_fetch_{tid}", dag_display_name=f"TVB fetch sources — {territory.short_name or tid}",
         description=f"Fetch the sources of {territory.name}; emit an Asset event per changed source",
         schedule=CronTriggerTimetable(territory.schedule.fetch_cron, timezone="UTC"),
         start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=3),
         default_args=DEFAULT_ARGS, tags={"tvb", "fetch", f"territory:{tid}"}, doc_md=_fetch_doc(territory),
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
            return {"territory": tid, "store_uri": run["store_uri"], "input_key": run["input_key"],
                    "changed_sources": changed, "unchanged_release": run["unchanged_release"]}

        fetch_sources()

    return fetch_dag()


def build_observatory_dag(territory: Territory):
    tid = territory.id
    published_alias = release_alias(tid)
    all_sous_trames = list(territory.sous_trames)

    @dag(dag_id=f"tvb_observatory_{tid}", dag_display_name=f"TVB observatory — {territory.short_name or tid}",
         description=f"Compute, validate and publish the TVB of {territory.name}",
         schedule=AssetAny(*(source_asset(tid, name) for name in territory.sources)),
         start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=8),
         default_args=DEFAULT_ARGS, tags={"tvb", "observatory", f"territory:{tid}"},
         doc_md=_observatory_doc(territory), params=trigger_params(territory))
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
            return _stage("stage_validate_sources", run)

        @task(execution_timeout=timedelta(minutes=5))
        def plan_sous_trames(run):
            chosen = run.get("sous_trames") or all_sous_trames
            return [st for st in all_sous_trames if st in chosen]

        @task(execution_timeout=timedelta(hours=3), map_index_template="{{ sous_trame_label }}")
        def compute_sous_trame(run, sous_trame):
            get_current_context()["sous_trame_label"] = sous_trame
            return _stage("stage_compute_sous_trame", run, sous_trame)

        @task(execution_timeout=timedelta(hours=2))
        def assemble(run, parts):
            return _stage("stage_assemble", run, list(parts))

        @task(execution_timeout=timedelta(hours=1))
        def indicators(run, assembled):
            return _stage("stage_indicators", run)

        @task(execution_timeout=timedelta(minutes=45))
        def validate_outputs(run, indicator_summary):
            return _stage("stage_validate_outputs", run)

        @task(outlets=[published_alias], execution_timeout=timedelta(hours=1))
        def publish(run, indicator_summary, sources_validation, outputs_validation, params=None):
            validation = {"sources": sources_validation, "outputs": outputs_validation,
                          "success": bool(sources_validation.get("success")
                                          and outputs_validation.get("success"))}
            result = _stage("stage_publish", run, indicator_summary, validation, dry_run=bool(params["dry_run"]))
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
    """Every DAG of every territory in the config folder, by dag_id."""
    dags: dict[str, Any] = {}
    for tid in list_territories():
        try:
            territory = load_territory(tid)
        except ConfigError as exc:
            log.error("territory %s: %s", tid, exc)
            d = build_config_error_dag(tid, str(exc))
            dags[d.dag_id] = d
            continue
        for d in (build_fetch_dag(territory), build_observatory_dag(territory)):
            dags[d.dag_id] = d
    return dags


globals().update(build_all())
