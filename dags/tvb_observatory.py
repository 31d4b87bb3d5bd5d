"""TVB observatory DAGs: ``tvb_observatory_<territory>``, one per ``config/territories/<id>.yaml`` (folder
``TVB_CONFIG_DIR``) whose tiling is off; the territories with ``tiling.enabled`` get theirs, under the same id, from
``dags/tvb_observatory_tiled.py``.

Scheduled on the territory's source Assets (any of them, emitted by ``tvb_fetch_<territory>``, see
``dags/tvb_fetch.py``), and triggerable by hand at any time with Params (force, sous-trames, resolution, dry run).
fetch → validate sources → compute (one mapped task per sous-trame, in parallel) → assemble → indicators →
validate outputs → publish → notify. A territory whose YAML is invalid gets a failing placeholder DAG showing the
error instead.

Tasks are a few lines each: they call ``tvb_tasks.pipeline`` functions (no Airflow import there), which the CLI runs
too, including how a run ends (``publish_outcome``, ``unchanged_outcome``, ``notify_event``); the head (fetch →
plan_sous_trames) and the tail (assemble → notify), shared with the tiled DAG, and the rest of the Airflow glue are
in ``plugins/tvb_dag_support.py``. Only small dicts of store keys, ids and counts travel through XCom, typed in
``tvb_tasks.contracts`` (the tasks' parameters carry those types; their return values are those of the pipeline
functions, deliberately not annotated: Airflow reads a ``dict`` return annotation as ``multiple_outputs=True`` and
would push every key as its own XCom). Heavy modules are imported inside the tasks so that parsing this file stays
fast. See docs/operations.md.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from tvb_dag_support import (
    config_error_dag,
    observatory_dag_args,
    observatory_doc,
    observatory_head,
    observatory_tail,
    set_map_label,
    tvb_pipeline,
)
from tvb_tasks.config import ConfigError, Territory, list_territories, load_territory
from tvb_tasks.contracts import FetchedRun

log = logging.getLogger(__name__)


def build_observatory_dag(territory: Territory):
    """The observatory DAG of one territory: its sous-trames computed whole, one mapped task each."""

    @dag(**observatory_dag_args(territory, doc_md=observatory_doc(territory)))
    def observatory_dag():
        @task(execution_timeout=timedelta(hours=3), map_index_template="{{ sous_trame_label }}")
        def compute_sous_trame(run: FetchedRun, sous_trame: str):
            set_map_label("sous_trame_label", sous_trame)
            with tvb_pipeline() as pipeline:
                return pipeline.stage_compute_sous_trame(run, sous_trame)

        run, sources_ok, sous_trames = observatory_head(territory)
        parts = compute_sous_trame.partial(run=run).expand(sous_trame=sous_trames)
        observatory_tail(territory, run, sources_ok, parts)

    return observatory_dag()


def build_config_error_dag(territory_id: str, error: str):
    """A visible, failing placeholder for a territory whose YAML is invalid (the other territories keep running)."""
    return config_error_dag("tvb_observatory", "territory", territory_id, error)


def build_all() -> dict[str, Any]:
    """The observatory DAG of every untiled territory in the config folder (a placeholder for an invalid one), by
    dag_id; a tiled territory's is built by ``tvb_observatory_tiled.py``."""
    dags: dict[str, Any] = {}
    for tid in list_territories():
        try:
            territory = load_territory(tid)
        except ConfigError as exc:
            log.error("territory %s: %s", tid, exc)
            d = build_config_error_dag(tid, str(exc))
            dags[d.dag_id] = d
            continue
        if territory.tiling.enabled:
            continue
        d = build_observatory_dag(territory)
        dags[d.dag_id] = d
    return dags


globals().update(build_all())
