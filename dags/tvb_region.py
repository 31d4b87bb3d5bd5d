"""Regional DAGs: ``tvb_region_<region>``, one per ``config/regions/<id>.yaml`` (folder next to the territories',
``TVB_REGIONS_DIR``).

One manual trigger runs every member territory's ``tvb_observatory_<member>`` in parallel — the standard provider's
``TriggerDagRunOperator``, mapped over the members, waiting for each run to finish in the triggerer (deferrable: the
wait holds no worker slot, so it works with 2 Celery slots or a LocalExecutor alike) — then ``publish_mosaic``
assembles the members' live releases into the regional mosaic release (``tvb_tasks.publish.mosaic``: it assembles,
it does not recompute). A member run that fails fails its mapped ``run_member`` task (its message and map index
name the member's DAG) and no mosaic is published. The trigger form's Params (force, sous-trames, resolution, dry
run) are passed to every member run as its conf. A region whose YAML is invalid gets a failing placeholder DAG.

Each member run has the id ``<this region run id>__<member>`` (so a member run tells which region run started it).
Member DAGs must not be paused: a paused one fails its ``run_member`` task at once (``fail_when_dag_is_paused``).
See docs/operations.md, "Several territories and the regional mosaic".
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    FORM_RESOLUTION_MAX_M,
    START_DATE,
    check_conf_keys,
    config_error_dag,
    store_uri,
    tvb_pipeline,
)
from tvb_tasks.config import RESOLUTION_MIN_M, ConfigError, Territory
from tvb_tasks.config_regions import Region, list_regions, load_region, region_members

log = logging.getLogger(__name__)
MEMBER_POKE_S = 10           # how often the triggerer looks at a member run's state


def common_sous_trames(members: list[Territory]) -> list[str]:
    """The sous-trames every member has, in the first member's order (what the region's form offers)."""
    return [st for st in members[0].sous_trames if all(st in m.sous_trames for m in members)]


def region_params(region: Region, members: list[Territory]) -> dict[str, Param]:
    """The region's trigger form (French labels), passed on to every member run."""
    sous_trames = common_sous_trames(members)
    labels = {k: v.label for k, v in members[0].sous_trames.items() if k in sous_trames}
    return {
        "force": Param(False, type="boolean", title="Forcer le recalcul",
                       description="Recalculer et publier chaque territoire (et la mosaïque) même si ses données, sa "
                                   "configuration et le code sont ceux de la publication en ligne."),
        "sous_trames": Param(sous_trames, type="array", title="Sous-trames à calculer",
                             description="Une ou plusieurs sous-trames communes aux territoires (par défaut : "
                                         "toutes).",
                             items={"type": "string", "enum": sous_trames}, examples=sous_trames,
                             values_display=labels, minItems=1, uniqueItems=True),
        "resolution_m": Param(None, type=["null", "integer"], minimum=int(RESOLUTION_MIN_M),
                              maximum=FORM_RESOLUTION_MAX_M, title="Résolution (m)",
                              description="Taille des cellules (m) pour tous les territoires ; vide : la résolution "
                                          "de chaque territoire."),
        "dry_run": Param(False, type="boolean", title="Essai à blanc",
                         description="Calculer et valider, ne publier ni les territoires ni la mosaïque."),
    }


def member_runs(members: list[str], all_sous_trames: list[str], params: dict[str, Any],
                run_id: str) -> list[dict[str, Any]]:
    """One ``TriggerDagRunOperator`` kwargs dict per member: its observatory DAG, the run id
    ``<region run id>__<member>`` and the conf from the region's Params (a default resolution or the full
    sous-trame list is left out, so the member's defaults apply)."""
    conf: dict[str, Any] = {"force": bool(params.get("force")), "dry_run": bool(params.get("dry_run"))}
    chosen = list(params.get("sous_trames") or all_sous_trames)
    if set(chosen) != set(all_sous_trames):
        conf["sous_trames"] = chosen
    if params.get("resolution_m") is not None:
        conf["resolution_m"] = int(params["resolution_m"])
    return [{"trigger_dag_id": f"tvb_observatory_{m}", "conf": dict(conf),
             "trigger_run_id": f"{run_id}__{m}"} for m in members]


def region_doc(region: Region, members: list[Territory]) -> str:
    rows = "\n".join(f"| `{m.id}` | {m.name} | `tvb_observatory_{m.id}` |" for m in members)
    return f"""### TVB — région {region.name}

One trigger runs every member's observatory DAG in parallel, then publishes the **regional mosaic** release
(`releases/{region.id}/`): the members' layers concatenated (column `territoire`, ids prefixed by the territory),
their key figures and the region's totals (areas, lengths, counts summed; area shares recomputed; other figures not
summed), a French page listing the member releases. **The mosaic assembles, it does not recompute**: corridors
crossing a border between members are not joined (for continuity run the region as one tiled territory).

| Member | Name | DAG |
|---|---|---|
{rows}

Flow: `plan_members` → `run_member` ×{len(members)} (mapped `TriggerDagRunOperator`, wait deferred to the
triggerer) → `publish_mosaic` (only when every member run succeeded). Params: force, sous_trames, resolution_m
(empty: each member's own), dry_run — passed to every member run. Config `{region.path}`. See `docs/operations.md`."""


def build_region_dag(region: Region, members: list[Territory]):
    """The DAG of one region."""
    ids = [m.id for m in members]
    all_sous_trames = common_sous_trames(members)

    @dag(dag_id=f"tvb_region_{region.id}", dag_display_name=f"TVB région — {region.short_name or region.name}",
         description=f"Run the TVB of {', '.join(ids)} and publish the regional mosaic of {region.name}",
         schedule=None, start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=10),
         default_args=DEFAULT_ARGS, tags={"tvb", "region", f"region:{region.id}", *(f"territory:{m}" for m in ids)},
         doc_md=region_doc(region, members), params=region_params(region, members))
    def region_dag():
        @task(execution_timeout=timedelta(minutes=5))
        def plan_members(params=None, run_id=None, dag_run=None):
            """Refuse unknown trigger keys (a typo would be silently ignored), then one conf per member."""
            check_conf_keys(dag_run.conf, params)
            return member_runs(ids, all_sous_trames, params, run_id)

        # a failed member run is not re-triggered: its own tasks have retries; re-run the region once it is fixed
        run_member = TriggerDagRunOperator.partial(
            task_id="run_member", wait_for_completion=True, deferrable=True, poke_interval=MEMBER_POKE_S,
            fail_when_dag_is_paused=True, retries=0, execution_timeout=timedelta(hours=9),
            map_index_template="{{ task.trigger_dag_id }}",
        ).expand_kwargs(plan_members())

        @task(execution_timeout=timedelta(hours=1))
        def publish_mosaic(params=None):         # returns a MosaicResult (no annotation: see tvb_observatory.py)
            """Assemble the members' live releases into the mosaic release (unchanged members: nothing new)."""
            with tvb_pipeline() as pipeline:
                return pipeline.stage_publish_mosaic(region.id, store_uri=store_uri(),
                                                     dry_run=bool(params["dry_run"]), force=bool(params["force"]))

        run_member >> publish_mosaic()

    return region_dag()


def build_all() -> dict[str, Any]:
    """The DAG of every region in the regions folder (a failing placeholder for an invalid one), by dag_id."""
    dags: dict[str, Any] = {}
    for rid in list_regions():
        try:
            region = load_region(rid)
            d = build_region_dag(region, region_members(region))
        except ConfigError as exc:
            log.error("region %s: %s", rid, exc)
            d = config_error_dag("tvb_region", "region", rid, str(exc))
        dags[d.dag_id] = d
    return dags


globals().update(build_all())
