"""Tiled cost-distance DAGs: ``tvb_tiled_cost_<territory>``, one per territory whose YAML enables ``tiling``.

The cost-distance of every sous-trame cut into tiles, the tiles × sous-trames run as mapped tasks on the workers
(Celery: spread over the machines), the boundary values exchanged between rounds until none changes, then
stitched: the stitched ``cost.tif`` is the untiled one exactly (``tvb_tasks.layers.tiles``). Tile rasters travel
through the store as per-tile objects; XCom only carries ``{"sous_trame", "tile"}`` items and counts.

fetch → plan sous-trames → plan tiles (mapped per sous-trame; a trame verte with missing links enabled also plans its
potential, barrier-free problem, whose items ``<sous_trame>/potential`` run in the same rounds) → round 1 … round N (mapped per tile; a round with
nothing left to run is skipped, and so are the following ones) → stitch (mapped per sous-trame; fails if tiles
were still changing after ``tiling.dag_rounds`` rounds; writes ``cost.tif`` one tile at a time,
``tvb_tasks.layers.stitch``) → corridors (mapped per sous-trame; trame verte: the corridors of the real and missing
links, their polygons, stretches, raw rupture points and scored barrier crossings from the tile objects,
``tvb_tasks.layers.tile_links`` / ``tile_missing``, equal to the untiled engine's; ``corridors.parquet``,
``corridor_areas.parquet``, ``corridor_stretches.parquet``, ``ruptures.parquet`` and ``missing_crossings.parquet``
next to ``cost.tif``; the assembly and the indicators are not computed here). Each tile, stitch and corridors task's memory is bounded by
``tiling.memory_limit_gib`` (checked after; the plan task checks the tiles before), whatever the territory's size
(the corridors and plan tasks also hold the vector inputs: memory ∝ features). See docs/operations.md, "Region
scale".
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, dag, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    POOL,
    START_DATE,
    dags_of_valid_territories,
    fetch_sources_task,
    planned_sous_trames,
    set_map_label,
    trigger_params,
    tvb_pipeline,
    xcom_list,
)
from tvb_tasks.config import Territory
from tvb_tasks.contracts import FetchedRun, TileItem, TileRound


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: the most items a round may map."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def build_tiled_dag(territory: Territory):
    """The tiled cost-distance DAG of one territory."""
    tid = territory.id
    rounds = territory.tiling.dag_rounds
    all_sous_trames = list(territory.sous_trames)

    @dag(dag_id=f"tvb_tiled_cost_{tid}", dag_display_name=f"TVB tiled cost-distance — {territory.short_name or tid}",
         description=f"Cost-distance of {territory.name} by tiles on the workers, stitched exactly",
         schedule=None, start_date=START_DATE, catchup=False, max_active_runs=1, dagrun_timeout=timedelta(hours=8),
         default_args=DEFAULT_ARGS, tags={"tvb", "tiles", f"territory:{tid}"},
         doc_md=f"### Tiled cost-distance — {territory.name}\n\n"
                "Every sous-trame's cost-distance cut into tiles (`tiling` in the territory YAML: tile size, "
                "overlap, memory bound per task), tiles × sous-trames mapped over the workers, boundary values "
                f"exchanged for up to {rounds} rounds until none changes, then stitched into `cost.tif` under the "
                "run's work prefix in the store — identical to the untiled raster; then each trame verte "
                "sous-trame's corridors (real and missing links), their polygons, stretches and rupture crossings "
                "from the tiles (`corridors.parquet`, `corridor_areas.parquet`, `corridor_stretches.parquet`, "
                "`ruptures.parquet`, `missing_crossings.parquet`), identical to the untiled engine's. "
                "See docs/operations.md.",
         params=trigger_params(territory))
    def tiled_dag():
        @task(pool=POOL, execution_timeout=timedelta(hours=2))
        def fetch_sources(params=None, dag_run=None):
            """Idempotent (content-addressed snapshots): re-uses what tvb_fetch_<territory> fetched."""
            return fetch_sources_task(tid, params, dag_run.conf)

        @task(execution_timeout=timedelta(minutes=5))
        def plan_sous_trames(run: FetchedRun):
            return planned_sous_trames(all_sous_trames, run)

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

        def round_tasks(r: int):
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

        @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(hours=1),
              map_index_template="{{ sous_trame_label }}")
        def stitch(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_stitch_tiles(run, sous_trame)

        @task(execution_timeout=timedelta(hours=1), map_index_template="{{ sous_trame_label }}")
        def corridors(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline("tiled") as tiled:
                return tiled.stage_tile_corridors(run, sous_trame)

        run = fetch_sources()
        sous_trames = plan_sous_trames(run)
        plans = plan_tiles.partial(run=run).expand(sous_trame=sous_trames)
        items: Any = first_round(run, plans)
        for r in range(1, rounds + 1):
            run_tile, next_round = round_tasks(r)
            results = run_tile.partial(run=run).expand(item=items)
            items = next_round(run, results)
        stitched = stitch.partial(run=run).expand(sous_trame=sous_trames)
        items >> stitched
        stitched >> corridors.partial(run=run).expand(sous_trame=sous_trames)

    return tiled_dag()


def build_all() -> dict[str, Any]:
    """The tiled DAG of every valid territory whose YAML enables tiling (invalid ones: see tvb_observatory)."""
    return dags_of_valid_territories(build_tiled_dag, "tiled cost-distance",
                                     wanted=lambda t: t.tiling.enabled)


globals().update(build_all())
