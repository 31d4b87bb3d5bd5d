"""TVB observatory DAGs of the territories whose YAML enables ``tiling``: ``tvb_observatory_<territory>``, the same
DAG id, schedule, Params, head and tail as ``dags/tvb_observatory.py``; only the computation of the sous-trames is
tiled, so that no task holds a whole-grid raster (a region at 10 m).

fetch → validate sources → plan_sous_trames → ``plan_tiles`` (per sous-trame: the per-tile inputs, window by window,
from the vectors) → ``first_round`` → ``round_1`` (tiles × sous-trames mapped over the workers) / ``after_round_1``
→ … up to ``tiling.dag_rounds`` rounds, boundary values exchanged until no tile changes (the rounds left are
skipped) → ``stitch`` (per sous-trame: ``cost.tif``, one core at a time) → ``part`` (per sous-trame: habitat,
reservoirs, relays, corridors, their polygons, stretches, missing-link crossings, ``friction.tif`` and
``cost.tif``: the files of the untiled ``compute_sous_trame``, equal to them) → assemble → indicators → validate
outputs → publish → notify. Rasters travel through the store as per-tile objects (``tvb_tasks.tiled``), never
through XCom. Each task's memory is bounded by ``tiling.memory_limit_gib`` (enforced while it runs,
``tvb_tasks.memory``; the plan and part tasks also hold the vector inputs: memory ∝ features); the validation,
assembly, indicators and publish tasks read vectors and copy the rasters, held to the same bound. The CLI runs the
same stages, each task in its own process as here (``tvb_tasks.tiled.run_tiled_parts``). See docs/operations.md,
"Region scale".
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, dag, task

from tvb_dag_support import (
    dags_of_valid_territories,
    observatory_dag_args,
    observatory_doc,
    observatory_head,
    observatory_tail,
    set_map_label,
    tvb_pipeline,
    xcom_list,
)
from tvb_tasks.config import Territory
from tvb_tasks.contracts import FetchedRun, TileItem, TileRound


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: the most items a round may map."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def round_tasks(r: int):
    """Round ``r``: the tile task (mapped over the round's items) and the task collecting the next round's."""

    @task(task_id=f"round_{r}", execution_timeout=timedelta(hours=1), map_index_template="{{ tile_label }}")
    def run_tile(run: FetchedRun, item: TileItem):
        set_map_label("tile_label", f"{item['sous_trame']} #{item['tile']}")
        with tvb_pipeline("tiled") as tiled:
            return tiled.stage_run_tile(run, item, r)      # the round: a retry re-announces its neighbours

    @task(task_id=f"after_round_{r}", execution_timeout=timedelta(minutes=10))
    def next_round(run: FetchedRun, results: Sequence[TileRound | None]):
        with tvb_pipeline("tiled") as tiled:
            return tiled.stage_next_round(run, xcom_list(results), r, max_map_length())

    return run_tile, next_round


def build_tiled_observatory_dag(territory: Territory):
    """The observatory DAG of one territory with tiling: its sous-trames computed by tiles."""

    @dag(**observatory_dag_args(territory, doc_md=observatory_doc(territory), tags=("tiles",)))
    def tiled_observatory_dag():
        @task(execution_timeout=timedelta(hours=2), map_index_template="{{ sous_trame_label }}")
        def plan_tiles(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_plan_tiles(run, sous_trame)

        @task(execution_timeout=timedelta(minutes=10))
        def first_round(run: FetchedRun, plans: Sequence[list[TileItem]]):
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_next_round(run, [{"next": p, "peak_mb": 0.0} for p in xcom_list(plans)], 0,
                                              max_map_length())

        # after the rounds, the last ones skipped once converged
        @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(hours=1),
              map_index_template="{{ sous_trame_label }}")
        def stitch(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_stitch_tiles(run, sous_trame)

        @task(execution_timeout=timedelta(hours=2), map_index_template="{{ sous_trame_label }}")
        def part(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_tile_part(run, sous_trame)

        run, sources_ok, sous_trames = observatory_head(territory)
        plans = plan_tiles.partial(run=run).expand(sous_trame=sous_trames)
        items: Any = first_round(run, plans)
        for r in range(1, territory.tiling.dag_rounds + 1):
            run_tile, next_round = round_tasks(r)
            items = next_round(run, run_tile.partial(run=run).expand(item=items))
        stitched = stitch.partial(run=run).expand(sous_trame=sous_trames)
        items >> stitched
        parts = part.partial(run=run).expand(sous_trame=sous_trames)
        stitched >> parts
        observatory_tail(territory, run, sources_ok, parts)

    return tiled_observatory_dag()


def build_all() -> dict[str, Any]:
    """The observatory DAG of every valid territory whose YAML enables tiling (invalid ones: see tvb_observatory)."""
    return dags_of_valid_territories(build_tiled_observatory_dag, "tiled observatory",
                                     wanted=lambda t: t.tiling.enabled)


globals().update(build_all())
