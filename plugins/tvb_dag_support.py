"""Airflow glue shared by the TVB DAG files of ``dags/`` (fetch, observatory untiled and tiled, screening).

Asset names, default task arguments, the trigger form, DAG documentation, the observatory DAG's arguments and its
head and tail tasks (:func:`observatory_dag_args`, :func:`observatory_head`, :func:`observatory_tail`: one
implementation for ``dags/tvb_observatory.py`` and ``dags/tvb_observatory_tiled.py``, which differ only in how the
sous-trames are computed) and the small run-time helpers that the
tasks call (store URI, run options, changed sources, :func:`tvb_pipeline` giving the tasks ``tvb_tasks.pipeline``
with the store's credentials, :func:`xcom_list` reading a mapped task's results). All the work stays in
``tvb_tasks`` (no Airflow import there); what travels between tasks is typed in ``tvb_tasks.contracts``. Heavy
modules are imported inside the helpers that run in tasks, so that parsing the DAG files stays fast. plugins/ is on
``sys.path``, so the DAG files import this module as ``tvb_dag_support`` (like ``tvb_hooks``, ``tvb_links``,
``tvb_notifier`` and ``tvb_retry``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, Literal, TypeVar, cast

from airflow.sdk import Asset, AssetAlias, AssetAny, Metadata, Param, TriggerRule, get_current_context, task

from tvb_links import ReleaseReportLink
from tvb_notifier import TvbNotifier
from tvb_retry import FailFastPolicy
from tvb_tasks.config import RESOLUTION_MIN_M, ConfigError, Territory, list_territories, load_territory
from tvb_tasks.contracts import (
    FetchedRun,
    GateVerdict,
    IndicatorSummary,
    LayersSummary,
    Outcome,
    RunOptions,
    SousTramePart,
)

log = logging.getLogger(__name__)

OWNER = "tvb-observatory"
POOL = "tvb_remote_servers"               # fetch tasks only: bounds the load on remote WFS / download servers
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)
# trigger form's resolution range: the configuration's lower bound (5 m: barriers keep their real width,
# docs/method.md §4) to 200 m, tighter than the YAML's upper bound
FORM_RESOLUTION_MAX_M = 200
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
def dags_of_valid_territories(build, kind: str, wanted=None) -> dict:
    """``{dag_id: build(territory)}`` for every territory of the config folder whose YAML loads (and, when given,
    for which ``wanted(territory)`` is true). An invalid YAML gets no ``kind`` DAG, only a warning:
    ``tvb_observatory.py`` shows its error in a failing placeholder DAG."""
    dags = {}
    for tid in list_territories():
        try:
            territory = load_territory(tid)
        except ConfigError as exc:
            log.warning("territory %s: invalid configuration, no %s DAG: %s", tid, kind, exc)
            continue
        if wanted is None or wanted(territory):
            d = build(territory)
            dags[d.dag_id] = d
    return dags


def source_asset(territory_id: str, source: str) -> Asset:
    """The Asset of one source of a territory; an event means "a new snapshot of this source was fetched"."""
    return Asset(name=f"tvb_{territory_id}_{source}", uri=f"x-tvb://{territory_id}/sources/{source}",
                 group="tvb_sources")


def release_asset(territory_id: str) -> Asset:
    """The Asset of a territory's published release; an event means "latest.json moved"."""
    return Asset(name=f"tvb_{territory_id}_release", uri=f"x-tvb://{territory_id}/release", group="tvb_releases")


def sources_alias(territory_id: str) -> AssetAlias:
    """Alias through which ``tvb_fetch_<territory>`` emits the events of the sources that changed (only those)."""
    return AssetAlias(f"tvb_{territory_id}_changed_sources")


def release_alias(territory_id: str) -> AssetAlias:
    """Alias through which ``tvb_observatory_<territory>`` emits the release event (only when it published)."""
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


def run_options(territory: Territory, params: dict) -> RunOptions:
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


def changed_sources(territory: Territory, run: FetchedRun) -> list[str]:
    """Names of the territory's sources with a new snapshot (a derived layer, e.g. ``osm_roads``, counts for its
    ``parent_source``)."""
    names = set()
    for name in run.get("changed_sources") or []:
        snapshot = run["snapshots"].get(name)
        parent = (snapshot.get("parent_source") if snapshot else None) or name
        if parent in territory.sources:
            names.add(parent)
    return sorted(names)


def check_conf_keys(conf: dict | None, params: dict) -> None:
    """Refuse a trigger conf with keys that are not Params (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(conf or {}) - set(params))
    if unknown:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"unknown run parameter(s) {unknown}; known: {sorted(params)}")


#: What to change when a tiled territory's vector-level task (validate, assemble, indicators, publish) is above its
#: memory bound: its memory grows with the number of features, not with the grid.
FEATURES_HINT = ("its memory grows with the vector features: split the territory into member territories and a "
                 "regional mosaic")


@contextlib.contextmanager
def tvb_pipeline(module: Literal["pipeline", "tiled", "priorities.stage"] = "pipeline", *,
                 bound: Territory | None = None) -> Iterator[ModuleType]:
    """``tvb_tasks.pipeline`` (or ``tvb_tasks.tiled``, ``tvb_tasks.priorities.stage``), imported when a task runs,
    not when the DAG file is parsed, with the ``tvb_store`` connection (if defined) given to the store for the
    block::

        with tvb_pipeline() as pipeline:
            return pipeline.stage_assemble(run, parts)

    ``bound``: the task's territory; when its ``tiling`` is enabled, the block runs under
    :func:`tvb_tasks.memory.memory_bound` at ``tiling.memory_limit_gib``, like the tiled stages (every task of a
    tiled territory's observatory is held to the bound; an untiled territory's whole-grid tasks are not).
    """
    import importlib

    from tvb_hooks import store_environment

    stages = importlib.import_module(f"tvb_tasks.{module}")
    limit = None
    if bound is not None and bound.tiling.enabled:
        from tvb_tasks.memory import memory_bound

        ti = get_current_context()["ti"]
        limit = memory_bound(f"{ti.task_id} of {bound.id}", bound.tiling.memory_limit_gib, FEATURES_HINT)
    with store_environment(), (limit if limit is not None else contextlib.nullcontext()):
        yield stages


def fetch_run(territory_id: str, **options: Any) -> FetchedRun:
    """``stage_fetch`` with the store URI and the credentials of sources that name an Airflow connection."""
    from tvb_hooks import source_credentials

    credentials = source_credentials(load_territory(territory_id))
    if credentials:
        options["credentials"] = credentials
    with tvb_pipeline() as pipeline:
        return pipeline.stage_fetch(territory_id, store_uri=store_uri(), **options)


def fetch_sources_task(territory_id: str, params: dict, conf: dict | None) -> FetchedRun:
    """The ``fetch_sources`` task of the observatory and tiled DAGs: refuse unknown trigger keys, then
    :func:`fetch_run` with the trigger Params' options. Idempotent (content-addressed snapshots): re-uses what
    ``tvb_fetch_<territory>`` fetched."""
    check_conf_keys(conf, params)
    return fetch_run(territory_id, **run_options(load_territory(territory_id), params))


def planned_sous_trames(all_sous_trames: Sequence[str], run: FetchedRun) -> list[str]:
    """The ``plan_sous_trames`` task: the run's sous-trames (all when it names none), in the territory's order."""
    chosen = run["sous_trames"] or all_sous_trames
    return [st for st in all_sous_trames if st in chosen]


T = TypeVar("T")


def xcom_list(results: Sequence[T]) -> list[T]:
    """Every result of a mapped upstream task, read in one request (a slice). Iterating Airflow's lazy XCom
    sequence instead asks for one item past the last, and the Task SDK logs that expected 404 as an ERROR
    ("XCom not found … offset=N", apache/airflow#73175): a clean run must not print one."""
    return list(results[:])


def config_error_dag(prefix: str, what: str, config_id: str, error: str):
    """``<prefix>_<id>``: a visible, failing placeholder DAG for a ``what`` (territory, region) whose YAML is
    invalid, showing the error (the other YAMLs keep their DAGs)."""
    import re

    from airflow.sdk import dag, task

    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", config_id)[:200]

    @dag(dag_id=f"{prefix}_{safe_id}", schedule=None, start_date=START_DATE, catchup=False,
         default_args={**DEFAULT_ARGS, "retries": 0}, tags={"tvb", "config-error"},
         doc_md=f"### Invalid {what} configuration `{config_id}`\n\n```\n{error}\n```\n\n"
                "Fix the YAML file; this DAG is replaced by the real ones at the next parse.",
         description=f"INVALID configuration for {what} {config_id}")
    def config_error():
        @task(execution_timeout=timedelta(minutes=1))
        def report_config_error():
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(error)

        report_config_error()

    return config_error()


def set_map_label(name: str, value: str) -> None:
    """Give the running mapped task the label its ``map_index_template`` (``"{{ <name> }}"``) renders: a key added
    to the task context (Airflow's documented way; the context's type does not declare such keys)."""
    from airflow.sdk import get_current_context

    cast("dict[str, Any]", get_current_context())[name] = value


# --- the observatory DAG: arguments, head and tail (untiled and tiled) ----------------------------------------------
def observatory_dag_args(territory: Territory, *, doc_md: str, tags: Sequence[str] = ()) -> dict[str, Any]:
    """``@dag`` arguments of ``tvb_observatory_<territory>``, tiled or not (one DAG id per territory: the one users
    trigger and the source Assets schedule)."""
    tid = territory.id
    return dict(dag_id=f"tvb_observatory_{tid}", dag_display_name=f"TVB observatory — {territory.short_name or tid}",
                description=f"Compute, validate and publish the TVB of {territory.name}",
                schedule=AssetAny(*(source_asset(tid, name) for name in territory.sources)),
                start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=8),
                default_args=DEFAULT_ARGS, tags={"tvb", "observatory", f"territory:{tid}", *tags},
                doc_md=doc_md, params=trigger_params(territory))


def observatory_head(territory: Territory) -> tuple[Any, Any, Any]:
    """The head tasks of an observatory DAG (call inside its ``@dag`` function): ``fetch_sources`` →
    ``inputs_changed`` (short-circuit when the live release has these inputs) → ``validate_sources`` →
    ``plan_sous_trames``; returns their outputs ``(run, sources verdict, sous-trames)``."""
    tid = territory.id
    all_sous_trames = list(territory.sous_trames)

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
        with tvb_pipeline(bound=territory) as pipeline:
            return pipeline.stage_validate_sources(run)

    @task(execution_timeout=timedelta(minutes=5))
    def plan_sous_trames(run: FetchedRun):
        return planned_sous_trames(all_sous_trames, run)

    run: Any = fetch_sources()            # XComArgs where the tasks take their contracts (see the DAG files)
    gate = inputs_changed(run)
    sources_ok = validate_sources(run)
    gate >> sources_ok
    sous_trames = plan_sous_trames(run)
    sources_ok >> sous_trames
    return run, sources_ok, sous_trames


def observatory_tail(territory: Territory, run: Any, sources_ok: Any, parts: Any) -> None:
    """The tail tasks of an observatory DAG (call inside its ``@dag`` function), from the sous-trame parts
    (``SousTramePart`` of the mapped compute or part task): ``assemble`` → ``indicators`` → ``validate_outputs`` →
    ``publish`` (release Asset event through the alias when published) → ``notify``."""
    tid = territory.id
    published_alias = release_alias(tid)

    @task(execution_timeout=timedelta(hours=2))
    def assemble(run: FetchedRun, parts: Sequence[SousTramePart]):
        with tvb_pipeline(bound=territory) as pipeline:
            return pipeline.stage_assemble(run, xcom_list(parts))

    @task(execution_timeout=timedelta(hours=1))
    def indicators(run: FetchedRun, assembled: LayersSummary):
        with tvb_pipeline(bound=territory) as pipeline:
            return pipeline.stage_indicators(run)

    @task(execution_timeout=timedelta(minutes=45))
    def validate_outputs(run: FetchedRun, indicator_summary: IndicatorSummary):
        with tvb_pipeline(bound=territory) as pipeline:
            return pipeline.stage_validate_outputs(run)

    # inlet: publish reads the live release (compare-and-swap of its pointer); declaring it also registers the
    # release Asset with Airflow, so the event emitted through the alias finds it (no "AssetModel … not found")
    @task(inlets=[release_asset(tid)], outlets=[published_alias], execution_timeout=timedelta(hours=1))
    def publish(run: FetchedRun, indicator_summary: IndicatorSummary, sources_validation: GateVerdict,
                outputs_validation: GateVerdict, params=None):
        with tvb_pipeline(bound=territory) as pipeline:
            outcome = pipeline.publish_outcome(run, indicator_summary, sources_validation, outputs_validation,
                                               dry_run=bool(params["dry_run"]))
        if outcome["status"] == "published":
            yield Metadata(release_asset(tid), alias=published_alias,
                           extra={"release_id": outcome["release_id"], "input_key": run["input_key"]})
        return outcome

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=timedelta(minutes=10))
    def notify(run: FetchedRun, ti=None, params=None):
        """Log + webhook: published / dry run / unchanged (failures are notified by on_failure_callback).
        Unchanged inputs skipped ``publish``, which pushed nothing: that outcome comes from the run (pulling the
        skipped task's XCom would log an "XCom not found" error); otherwise it is publish's."""
        with tvb_pipeline() as pipeline:
            outcome: Outcome = (pipeline.unchanged_outcome(run) if run["unchanged_release"]
                                else ti.xcom_pull(task_ids="publish"))
            event = pipeline.notify_event(outcome)
            # the scratch of a published run (the release holds it); after publish, so that its retry finds it
            pipeline.finish_run(run, outcome, dry_run=bool(params["dry_run"]))
        TvbNotifier(event).send(get_current_context(), outcome)
        return outcome

    assembled: Any = assemble(run, parts)  # XComArgs where the tasks take their contracts (see the DAG files)
    summary: Any = indicators(run, assembled)
    outputs_ok: Any = validate_outputs(run, summary)
    published: Any = publish(run, summary, sources_ok, outputs_ok)
    published.operator.operator_extra_links = [ReleaseReportLink()]
    published >> notify(run)


# --- trigger form --------------------------------------------------------------------------------------------------
def trigger_params(territory: Territory) -> dict[str, Param]:
    """The manual-trigger form: typed, with enums and ranges, validated (JSON schema) before a run is created."""
    sous_trames = list(territory.sous_trames)
    low, high = int(RESOLUTION_MIN_M), FORM_RESOLUTION_MAX_M
    default_res = int(min(max(round(territory.resolution_m), low), high))
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
        "resolution_m": Param(default_res, type="integer", minimum=low, maximum=high,
                              title="Resolution (m)",
                              description=f"Raster cell size for friction and cost-distance, in metres "
                                          f"({low}–{high}; territory default "
                                          f"{territory.resolution_m:g})."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Compute and validate, but do not publish a release."),
    }


# --- documentation (doc_md) ----------------------------------------------------------------------------------------
def territory_doc(territory: Territory) -> str:
    """Markdown paragraph naming the territory, its config file, sources and sous-trames."""
    sources = ", ".join(f"`{n}` ({s.kind})" for n, s in territory.sources.items())
    sts = ", ".join(f"`{k}` ({v.label})" for k, v in territory.sous_trames.items())
    return (f"**Territory** `{territory.id}` — {territory.name} (profile `{territory.profile}`, "
            f"config `{os.path.relpath(territory.path) if territory.path else '?'}`)\n\n"
            f"**Sources**: {sources}\n\n**Sous-trames**: {sts}\n")


def fetch_doc(territory: Territory) -> str:
    """doc_md of ``tvb_fetch_<territory>``."""
    return f"""### TVB — fetch sources of {territory.short_name or territory.name}

Runs on `{territory.schedule.fetch_cron}` (UTC; `schedule.fetch_cron` in the territory YAML). Fetches every source
into content-addressed snapshots in the store (pool `{POOL}`), and emits one Asset event per source whose content
**changed** since its previous snapshot (`x-tvb://{territory.id}/sources/<source>`). Those events schedule
`tvb_observatory_{territory.id}`; when nothing changed, nothing is emitted and nothing is recomputed.

Param `force`: re-download every source even when a cached snapshot exists.

{territory_doc(territory)}
See `docs/operations.md`."""


def observatory_doc(territory: Territory) -> str:
    """doc_md of ``tvb_observatory_<territory>`` (its compute step: tiled when the YAML enables ``tiling``)."""
    t = territory.tiling
    compute = ("`compute_sous_trame` ×N (mapped, in parallel)" if not t.enabled else
               "**tiled** (`tiling` in the territory YAML: cores of "
               f"{t.tile_size} cells, at most {t.memory_limit_gib:g} GiB per task): `plan_tiles` ×N → `first_round` → "
               f"`round_r` (tiles × sous-trames, mapped over the workers) / `after_round_r`, up to {t.dag_rounds} "
               "rounds until no boundary value changes → `stitch` ×N → `part` ×N (the untiled parts' files exactly, "
               "no whole-grid raster)")
    return f"""### TVB observatory — {territory.name}

Computes and publishes the Trame Verte et Bleue of **{territory.short_name or territory.name}**.

Runs when `tvb_fetch_{territory.id}` reports a changed source, or by hand (**Trigger** button, with the form):

| Param | Meaning |
|---|---|
| territory | fixed for this DAG (one DAG per YAML file in `config/territories/`) |
| force | recompute and publish a new release even if inputs, configuration and code are unchanged |
| sous_trames | the sous-trames to compute (default: all) |
| resolution_m | raster cell size in metres ({RESOLUTION_MIN_M:g}–{FORM_RESOLUTION_MAX_M}) |
| dry_run | compute and validate everything, publish nothing |

Flow: `fetch_sources` → `inputs_changed` (stops here, successfully, when the live release already has these
inputs) → `validate_sources` (quality gate: a critical failure stops the run, nothing is published) →
`plan_sous_trames` → {compute} → `assemble` → `indicators` →
`validate_outputs` (gate) → `publish` (create-only objects, manifest, compare-and-swap of `latest.json`) → `notify`.

The publish task has a **Release report** link to the published report.

{territory_doc(territory)}
See `docs/operations.md` for re-running, backfilling and reading logs."""
