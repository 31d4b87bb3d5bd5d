"""TVB project screening DAGs ("porter à connaissance"): ``tvb_screening_<territory>``, one per territory YAML.

Triggered by hand only, from the trigger form: a planner gives a planned project (a vector file — GeoPackage,
GeoJSON, zipped Shapefile… — as a key of the store, e.g. ``uploads/call/zac.gpkg``, or an http(s) URL) and, if
wanted, the release to screen against (default: the live one). The run reports which reservoirs, relays,
corridors and rupture sites the project touches, the area and length affected and the connectivity loss
(ΔPC / ΔEC per sous-trame), and writes a French one-page sheet (HTML + PDF with a map).

Everything lands under ``screenings/<territory>/<release_id>/<screening_id>/`` in the store — never inside the
release, which stays immutable. The task is a few lines: the work is ``tvb_tasks.priorities.stage.stage_screen``
(returning a ``ScreeningSummary``), which the ``tvb screen`` command calls too. See docs/operations.md.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from tvb_dag_support import (
    DEFAULT_ARGS,
    START_DATE,
    check_conf_keys,
    dags_of_valid_territories,
    store_uri,
    tvb_pipeline,
)
from tvb_tasks.config import Territory

log = logging.getLogger(__name__)


def screening_params(territory: Territory) -> dict[str, Param]:
    """The trigger form (French labels: it is filled in by planners)."""
    return {
        "projet": Param("", type="string", minLength=1, title="Projet à analyser",
                        description="Fichier du projet (GeoPackage, GeoJSON, Shapefile zippé…) : clé dans le "
                                    "stockage (ex. uploads/call/zac.gpkg) ou URL http(s). Polygones ou lignes, "
                                    "avec un système de coordonnées déclaré."),
        "nom": Param("", type="string", title="Nom du projet",
                     description="Titre de la fiche (vide : colonne « name » du fichier ou nom du fichier)."),
        "publication": Param("", type="string", title="Publication de référence",
                             description=f"Identifiant d'une publication de {territory.short_name or territory.id}"
                                         " (vide : la publication en ligne)."),
        "couche": Param("", type="string", title="Couche",
                        description="Couche à lire dans un fichier qui en contient plusieurs (vide : la première)."),
    }


def screening_doc(territory: Territory) -> str:
    return f"""### TVB project screening — {territory.name}

**Porter à connaissance** : analyse d'un projet d'aménagement (zone AU, ZAC, infrastructure) au regard de la trame
verte et bleue publiée de **{territory.short_name or territory.name}**. Déclenchement manuel (bouton **Trigger**) :

| Param | Sens |
|---|---|
| projet | fichier du projet : clé du stockage ou URL http(s) |
| nom | titre de la fiche (facultatif) |
| publication | publication de référence (vide : la publication en ligne) |
| couche | couche du fichier (facultatif) |

Résultat : `screenings/{territory.id}/<publication>/<id>/` — `fiche.html`, `fiche.pdf` (une page, carte),
`screening.json` (éléments touchés, surfaces, longueurs, ΔPC / ΔEC), `emprise.gpkg`. Les publications ne sont
jamais modifiées. Méthode : docs/method.md, « Criblage des projets »."""


def build_screening_dag(territory: Territory):
    """The screening DAG of one territory."""
    tid = territory.id
    params = screening_params(territory)

    @dag(dag_id=f"tvb_screening_{tid}",
         dag_display_name=f"TVB porter à connaissance — {territory.short_name or tid}",
         description=f"Screen a planned project against the published TVB of {territory.name}",
         schedule=None, start_date=START_DATE, catchup=False, max_active_runs=1,
         dagrun_timeout=timedelta(hours=1), default_args=DEFAULT_ARGS,
         tags={"tvb", "screening", f"territory:{tid}"}, doc_md=screening_doc(territory), params=params)
    def screening_dag():
        @task(execution_timeout=timedelta(minutes=30))
        def screen(params=None, dag_run=None):     # no ``-> dict``: Airflow would push every key as its own XCom
            check_conf_keys(dag_run.conf if dag_run else None, params)
            with tvb_pipeline("priorities.stage") as stage:
                summary = stage.stage_screen(tid, params["projet"], store_uri=store_uri(),
                                             release_id=params.get("publication") or None,
                                             layer=params.get("couche") or None,
                                             project_name=params.get("nom") or None)
            for line in summary["lines"]:
                log.info("%s", line)
            return summary

        screen()

    return screening_dag()


def build_all() -> dict[str, Any]:
    """The screening DAG of every valid territory (an invalid YAML is reported by tvb_observatory.py)."""
    return dags_of_valid_territories(build_screening_dag, "screening")


globals().update(build_all())
