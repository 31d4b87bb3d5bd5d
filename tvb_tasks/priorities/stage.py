"""Pipeline glue of the priorities (local paths only) and the store layout of project screenings.

* :func:`priorities_stage` — after the indicators: ranks the priorities of ``tvb.gpkg``, writes them as its
  ``priorities`` layer (points, so the GeoPackage / GeoParquet / PMTiles / web map / QGIS project carry them),
  ``priorities.csv``, ``priorities.json`` (summary + top) and ``priorities_top.csv`` (history of the top
  priorities against the previous release) in the indicators folder;
* :func:`fiches_stage` — at publish time: one fiche de préconisations per sous-trame under ``report/fiches/``;
* :func:`screen_release` — screens a project against a release of the store and uploads the result under
  ``screenings/<territory>/<release_id>/<screening_id>/`` (NEVER under ``releases/``: releases are immutable).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from tvb_tasks.config import Territory
from tvb_tasks.contracts import ScreeningSummary
from tvb_tasks.indicators import indicators_config, is_synthetic_landuse, json_value, read_layers, records
from tvb_tasks.publish.styles import STATUS_STYLES

from .config import priorities_config
from .ranking import (
    GAIN_EPSILON,
    compute_priorities,
    crossing_phrase,
    identity_geometries,
    match_previous,
    score_formula,
    sous_trame_networks,
    top_changes,
)

log = logging.getLogger(__name__)
LAYER = "priorities"


def read_inputs(territory: Territory, inputs: dict[str, Path]) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(projects, maintenance) from the source snapshots of those roles (empty frames when not configured)."""
    from tvb_tasks.layers.common import read_role

    return (read_role(territory, inputs, "projects", required=False),
            read_role(territory, inputs, "maintenance", required=False))


def read_priorities(gpkg: Path) -> gpd.GeoDataFrame | None:
    """The ``priorities`` layer of a GeoPackage, or None when it has none (older releases)."""
    gpkg = Path(gpkg)
    if not gpkg.exists() or LAYER not in {name for name, _ in pyogrio.list_layers(gpkg)}:
        return None
    return gpd.read_file(gpkg, layer=LAYER)


def crossing_only_carriers(priorities: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame, previous: gpd.GeoDataFrame,
                           prev_geoms, matches: dict[str, str], cfg) -> dict[str, str]:
    """{previous id: current site id} for the previous corridors left unmatched that are now crossing-only
    corridors (not candidates: their gain is their site's), matched by geometry as in the history; the carrier
    is the best-ranked site whose ``corridor_ids`` names the corridor."""
    only = set(priorities.attrs.get("crossing_only", []))
    if not only:
        return {}
    lines = corridors[corridors["id"].astype(str).isin(only)]
    cand = gpd.GeoDataFrame({"id": lines["id"].astype(str).to_numpy(), "candidate": "corridor",
                             "sous_trame": lines["sous_trame"].to_numpy(), "infrastructure": None},
                            geometry=lines.geometry.values, crs=lines.crs)
    left = previous[~previous["id"].astype(str).isin(set(matches.values()))]
    keep = ~previous["id"].astype(str).isin(set(matches.values())).to_numpy()
    found = match_previous(cand, cand.geometry.values, left, prev_geoms[keep], cfg.history)
    sites = priorities[priorities["candidate"] == "rupture_site"].sort_values("rank")
    out = {}
    for cid, pid in found.items():
        on = sites[sites["corridor_ids"].astype(str).str.split(", ").map(lambda ids, c=cid: c in ids)]
        if len(on):
            out[pid] = str(on["id"].iloc[0])
    return out


def read_corridors(gpkg: Path) -> gpd.GeoDataFrame | None:
    """The ``corridors`` layer of a GeoPackage (None when absent): the lines that identify corridor priorities."""
    gpkg = Path(gpkg)
    if not gpkg.exists() or "corridors" not in {name for name, _ in pyogrio.list_layers(gpkg)}:
        return None
    return gpd.read_file(gpkg, layer="corridors", columns=["id"])


def write_layer(priorities: gpd.GeoDataFrame, gpkg: Path) -> None:
    """(Re)write the ``priorities`` layer of ``gpkg`` (other layers untouched)."""
    pyogrio.write_dataframe(priorities, gpkg, layer=LAYER, driver="GPKG", geometry_type="Point",
                            layer_options={"OVERWRITE": "YES"})


def priorities_stage(territory: Territory, gpkg: Path, out_dir: Path, *, inputs: dict[str, Path],
                     previous_gpkg: Path | None = None) -> dict:
    """Rank the priorities of ``gpkg`` (layer written into it) and write the tables to ``out_dir``."""
    gpkg, out_dir = Path(gpkg), Path(out_dir)
    cfg = priorities_config(territory)
    layers = read_layers(gpkg, territory)
    projects, maintenance = read_inputs(territory, inputs)
    priorities = compute_priorities(territory, layers, projects=projects, maintenance=maintenance)
    write_layer(priorities, gpkg)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(priorities.drop(columns="geometry"))
    table.to_csv(out_dir / "priorities.csv", index=False, float_format="%.10g")
    previous = read_priorities(previous_gpkg) if previous_gpkg else None
    matches = merged = None
    if previous is not None and previous_gpkg is not None:
        prev_geoms = identity_geometries(previous, read_corridors(previous_gpkg))
        matches = match_previous(priorities, identity_geometries(priorities, layers["corridors"]), previous,
                                 prev_geoms, cfg.history)
        merged = crossing_only_carriers(priorities, layers["corridors"], previous, prev_geoms, matches, cfg)
    history = top_changes(table, None if previous is None else pd.DataFrame(previous.drop(columns="geometry")),
                          cfg.top_n, matches, merged)
    history.to_csv(out_dir / "priorities_top.csv", index=False, float_format="%.10g")
    doc = {"n": int(len(table)), "by_candidate": table["candidate"].value_counts().to_dict(),
           "threatened": int((table["conflict"] > 0).sum()), "in_maintenance": int((table["maintenance_share"] > 0)
                                                                                  .sum()),
           "zero_gain": int((table["gain_dpc_pct"] <= GAIN_EPSILON).sum()), "score": score_formula(cfg),
           "crossing_only_corridors": list(priorities.attrs.get("crossing_only", [])),
           "top": records(table.head(cfg.top_n)), "history": records(history),
           "synthetic_inputs": sorted(n for n, s in territory.sources.items()
                                      if s.role in ("projects", "maintenance") and s.synthetic)}
    (out_dir / "priorities.json").write_text(json.dumps(json_value(doc), ensure_ascii=False, indent=1),
                                             encoding="utf-8")
    log.info("priorities: %d candidates ranked (%d threatened by a project, %d in a managed sector)", doc["n"],
             doc["threatened"], doc["in_maintenance"])
    return {"priorities": doc["n"], "threatened": doc["threatened"], "in_maintenance": doc["in_maintenance"]}


def attribution(territory: Territory, release_id: str) -> str:
    from tvb_tasks.publish.report import SYNTHETIC_NOTE

    base = indicators_config(territory).report.attribution
    note = f" — {SYNTHETIC_NOTE}" if is_synthetic_landuse(territory) else ""
    return f"{base}{note} — Observatoire TVB {territory.short_name or territory.name}, publication {release_id}"


def fiches_stage(territory: Territory, gpkg: Path, out_dir: Path, *, release_id: str) -> list[str]:
    """One fiche per sous-trame in ``out_dir`` (nothing when the GeoPackage has no priorities layer)."""
    from .sheets import write_fiches

    priorities = read_priorities(gpkg)
    if priorities is None:
        log.warning("%s has no priorities layer: no fiches de préconisations", gpkg)
        return []
    layers = read_layers(gpkg, territory)
    return write_fiches(territory, layers, priorities, out_dir, release_id=release_id,
                        attribution=attribution(territory, release_id), top_n=priorities_config(territory).top_n)


def commune_priority_rows(priorities: pd.DataFrame | None, insee: str, top_n: int = 10
                          ) -> tuple[list[list[str]], int]:
    """A commune page's priorities: the ``top_n`` items of the commune WITH a gain, by commune rank — [rank in the
    commune, rank in the territory, name, ΔPC %, score, flag] (French strings) — and how many have no gain."""
    from tvb_tasks.publish.report import fr_number

    from .sheets import priority_name

    if priorities is None or not len(priorities) or "rank_commune" not in priorities.columns:
        return [], 0
    own = priorities[priorities["insee"].astype(str) == str(insee)]
    useful = own[own["gain_dpc_pct"] > GAIN_EPSILON].sort_values("rank_commune").head(top_n)
    rows = [[str(int(r.rank_commune)), str(int(r.rank)), priority_name(r), fr_number(r.gain_dpc_pct, 2),
             fr_number(r.score, 1), str(r.flag or "–")] for r in useful.itertuples()]
    return rows, int((own["gain_dpc_pct"] <= GAIN_EPSILON).sum())


def history_name(row: dict) -> str:
    """The item of a history row: its id, "(ex <previous id>)" when its id changed, the previous id when gone."""
    ident, before = row.get("id"), row.get("id_previous")
    if not ident:
        return str(before)
    return f"{ident} (ex {before})" if before and before != ident else str(ident)


def report_tables(indicators_dir: Path) -> list:
    """Report section: the territory's top priorities and their history (report ``Table`` objects)."""
    from tvb_tasks.publish.report import Table, fr_number

    path = Path(indicators_dir) / "priorities.json"
    if not path.exists():
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    top = [r for r in doc.get("top") or [] if float(r.get("gain_dpc_pct") or 0) > GAIN_EPSILON]
    rows = [[str(r["rank"]), str(r["libelle"]), fr_number(r["gain_dpc_pct"], 2), fr_number(r["cost_proxy"], 0),
             fr_number(r["conflict"], 2), fr_number(r["maintenance_share"], 2), fr_number(r["score"], 1),
             str(r.get("commune") or ""), str(r.get("flag") or "–")] for r in top]
    note = (doc.get("score") or {}).get("formula") or \
        "Score : formule et poids dans la configuration du territoire (section priorities)."
    if doc.get("zero_gain"):
        note += (f" {doc['zero_gain']} élément(s) sans gain de connectivité (« gain nul ») ne sont pas listés ici "
                 "(couche priorities, colonne Alerte).")
    if doc.get("synthetic_inputs"):
        note += " Projets et secteurs gérés : données synthétiques de démonstration."
    tables = [Table("Priorités de restauration (territoire)", ["Rang", "Priorité", "Gain ΔPC (%)", "Coût (indice)",
                                                               "Conflit projet", "Part en gestion",
                                                               "Score (0–100)", "Commune", "Alerte"], rows,
                    [False, False, True, True, True, True, True, False, False], note)]
    hist = [[history_name(r), "–" if r.get("rank_previous") is None else str(int(r["rank_previous"])),
             "–" if r.get("rank") is None else str(int(r["rank"])), str(r.get("evolution"))]
            for r in doc.get("history") or []]
    if hist:
        tables.append(Table("Priorités : évolution depuis la publication précédente",
                            ["Priorité", "Rang précédent", "Rang actuel", "Évolution"], hist,
                            [False, True, True, False]))
    return tables


# --- screening in the store -----------------------------------------------------------------------------------------
def screening_id(data: bytes, name: str) -> str:
    """``<slug of the file name>-<sha256[:12] of its bytes>``: the same file screened twice has the same id."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-")[:40] or "projet"
    return f"{slug}-{hashlib.sha256(data).hexdigest()[:12]}"


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder for one screening (the release cache, the sheet before upload), removed afterwards:
    under ``TVB_WORK_DIR`` when set, else the system temporary folder — never the code checkout (the store holds
    the result)."""
    parent = os.environ.get("TVB_WORK_DIR")
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tvb-screen-", dir=parent or None) as tmp:
        yield Path(tmp)


def screenings_prefix(territory_id: str, release_id: str) -> str:
    return f"screenings/{territory_id}/{release_id}"


def screen_release(territory: Territory, store, project_path: Path, work_dir: Path, *,
                   release_id: str | None = None, layer: str | None = None, project_name: str | None = None) -> dict:
    """Screen ``project_path`` against ``release_id`` (default: the live release) of ``store``; write the sheet,
    ``screening.json`` and the project footprint, upload them under :func:`screenings_prefix` and return
    ``{"release_id", "screening_id", "prefix", "keys", "summary", "touches_anything", "result"}``."""
    from tvb_tasks.publish.release import read_latest, release_prefix

    from .screening import ScreeningError, read_project, result_json, screen_project
    from .sheets import screening_sheet

    if release_id is None:
        latest, _ = read_latest(store, territory.id)
        if not latest:
            raise ScreeningError(f"territory {territory.id}: no published release to screen against")
        release_id = latest["release_id"]
    gpkg_key = f"{release_prefix(territory.id, release_id)}/tvb.gpkg"
    if store.head(gpkg_key) is None:
        raise ScreeningError(f"release {release_id} of {territory.id}: no {gpkg_key} in {store.uri}")
    gpkg = store.materialize(gpkg_key, Path(work_dir) / "_cache")
    project = read_project(project_path, territory, layer)
    data = Path(project_path).read_bytes()
    sid = screening_id(data, Path(project_path).name)
    name = project_name or _project_name(project, Path(project_path))
    layers = read_layers(gpkg, territory)
    prio = read_priorities(gpkg)
    result = screen_project(territory, layers, project, networks=sous_trame_networks(territory, layers, gpkg),
                            priorities=None if prio is None else pd.DataFrame(prio.drop(columns="geometry")))
    out = Path(work_dir) / "screenings" / sid
    out.mkdir(parents=True, exist_ok=True)
    doc = {"territory": territory.id, "release_id": release_id, "screening_id": sid, "project": name,
           "project_file": Path(project_path).name,
           "sous_trame_labels": {k: v.label for k, v in territory.sous_trames.items()},
           "screened_at": datetime.now(UTC).replace(microsecond=0).isoformat(), **result_json(result)}
    (out / "screening.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    gpd.GeoDataFrame({"name": [name]}, geometry=[result.footprint], crs=territory.crs).to_file(
        out / "emprise.gpkg", layer="emprise", driver="GPKG")
    screening_sheet(territory, layers, result, out, project_name=name, release_id=release_id,
                    attribution=attribution(territory, release_id))
    prefix = f"{screenings_prefix(territory.id, release_id)}/{sid}"
    keys = []
    for p in sorted(out.iterdir()):
        store.put_file(f"{prefix}/{p.name}", p)
        keys.append(f"{prefix}/{p.name}")
    return {"release_id": release_id, "screening_id": sid, "prefix": prefix, "keys": keys, "local_dir": str(out),
            "summary": result.summary, "touches_anything": result.touches_anything, "result": doc}


def _project_name(project: gpd.GeoDataFrame, path: Path) -> str:
    for col in ("name", "nom", "libelle", "libelong"):
        if col in project.columns and project[col].notna().any():
            return " / ".join(dict.fromkeys(project[col].dropna().astype(str)))
    return path.stem


# French words of the projects' type and stage codes (priorities.project_types, conflict.stage_weights)
PROJECT_WORDS = {
    "type": {"plu_au": "zone à urbaniser (PLU, AU)", "zac": "ZAC", "infrastructure": "infrastructure",
             "other": "autre"},
    "stage": {"planned": "envisagé", "programmed": "programmé", "authorised": "autorisé",
              "under_construction": "en travaux"},
}


def project_word(key: str, value) -> str:
    """French word of a project's type / stage code (composite "a, b" split); unknown codes unchanged."""
    words = PROJECT_WORDS.get(key, {})
    return ", ".join(words.get(v.strip(), v.strip()) for v in str(value).split(","))


def project_facts_line(facts: dict) -> str:
    """One French line: communes, type / stage / date, the line buffer (when the project has lines)."""
    parts = [f"communes : {', '.join(facts.get('communes') or []) or 'aucune'}"]
    for key, label in (("type", "type"), ("stage", "étape"), ("date", "date")):
        if facts.get(key):
            parts.append(f"{label} : {project_word(key, facts[key])}")
    if facts.get("has_lines"):
        parts.append(f"tracés linéaires élargis de {facts['line_buffer_m']:g} m de part et d'autre")
    return " ; ".join(parts)


def fr_num(value, decimals: int) -> str:
    """French number for the CLI (decimal comma)."""
    return f"{float(value):.{decimals}f}".replace(".", ",")


def describe(result: dict) -> list[str]:
    """Lines printed by ``tvb screen``: the affected elements and the loss, in French."""
    doc = result["result"]
    s = doc["summary"]
    lines = [f"Projet : {doc['project']} — publication {doc['release_id']} — emprise {s['footprint_ha']:.2f} ha"]
    facts = doc.get("project_facts") or {}
    if facts:
        lines.append(f"  {project_facts_line(facts)}")
    if s.get("outside_territory"):
        lines.append("ATTENTION : le projet est hors du territoire (son emprise ne touche aucune commune) : "
                     "rien n'a pu être évalué.")
    elif not doc["touches_anything"]:
        lines.append("Aucun élément de la trame verte et bleue touché.")
    st = doc.get("sous_trame_labels") or {}

    def label(code) -> str:
        return str(st.get(code, code)).lower()

    for r in doc["reservoirs"]:
        lines.append(f"  réservoir {r['id']} ({label(r['sous_trame'])}) : {fr_num(r['affected_ha'], 2)} ha "
                     f"touchés sur {fr_num(r['area_ha'], 2)} ha")
    for r in doc["relays"]:
        lines.append(f"  zone relais {r['id']} ({label(r['sous_trame'])}) : {fr_num(r['affected_ha'], 2)} ha "
                     "touchés")
    for r in doc["corridors"]:
        status = STATUS_STYLES.get(str(r["status"]), (str(r["status"]),))[0].lower()
        lines.append(f"  corridor {r['id']} ({label(r['sous_trame'])}, {status}) : {fr_num(r['affected_m'], 0)} m "
                     "touchés")
    for r in doc["wet_corridors"]:
        lines.append(f"  corridor humide {r['id']} : {fr_num(r['affected_m'], 0)} m touchés")
    for r in doc["rupture_sites"]:
        lines.append(f"  site de rupture {r['site_id']} ({label(r['sous_trame'])}, "
                     f"{crossing_phrase(r['infrastructure'], r.get('infra_class'), r.get('infra_name'))})")
    for r in doc.get("priorities") or []:
        flag = f" [{r['flag']}]" if r.get("flag") else ""
        lines.append(f"  priorité de restauration n° {r['rank']} : {r['libelle']}{flag}")
    for r in doc["connectivity"]:
        if r["reservoirs_touched"] or r["corridors_touched"]:
            lines.append(f"  connectivité – {r.get('libelle') or label(r['sous_trame'])} : ΔPC "
                         f"{fr_num(r['delta_pc_pct'], 3)} %, ΔEC {fr_num(r['delta_ec_ha'], 2)} ha")
    return lines


def resolve_project(ref: str, store, work_dir: Path) -> Path:
    """A local path for a project reference: an existing local file, an ``http(s)://`` URL (downloaded with the
    sources' HTTP client: retries, timeouts) or a key of ``store`` (e.g. ``uploads/projets/zac.gpkg``)."""
    from urllib.parse import urlparse

    from .screening import ScreeningError

    ref = str(ref).strip()
    if not ref:
        raise ScreeningError("no project file given")
    parsed = urlparse(ref)
    if parsed.scheme in ("http", "https"):
        from tvb_tasks.sources.http import HttpOptions, download

        name = Path(parsed.path).name or "projet.gpkg"
        dest = Path(work_dir) / "_downloads" / hashlib.sha256(ref.encode()).hexdigest()[:12] / name
        download(ref, dest, opts=HttpOptions(timeout_s=120, max_retries=2))
        return dest
    local = Path(ref[7:] if parsed.scheme == "file" else ref)
    if (local.is_absolute() and local.exists()) or (not parsed.scheme and local.exists()):
        return local
    if store.head(ref) is not None:
        return store.materialize(ref, Path(work_dir) / "_cache")
    raise ScreeningError(f"project {ref!r}: not a local file, an http(s) URL or a key of the store {store.uri}")


def stage_screen(territory_id: str, project: str, *, store_uri: str | None = None, profile: str | None = None,
                 release_id: str | None = None, layer: str | None = None,
                 project_name: str | None = None) -> ScreeningSummary:
    """Screen the planned ``project`` (a local file, an http(s) URL or a key of the store ``store_uri``) against
    ``release_id`` (default: the live release) of ``territory_id``: resolve the project, :func:`screen_release` in
    a scratch folder (removed after: the sheet lives in the store), describe the result. What the ``screen`` task
    of ``tvb_screening_<territory>`` and ``tvb screen`` run; raises ``ScreeningError`` (deterministic) on a bad
    project or release."""
    from tvb_tasks.pipeline import effective_territory
    from tvb_tasks.store import open_store

    territory = effective_territory(territory_id, profile=profile)
    store = open_store(store_uri)
    with scratch_dir() as work:
        path = resolve_project(project, store, work)
        result = screen_release(territory, store, path, work, release_id=release_id, layer=layer,
                                project_name=project_name)
    prefix = result["prefix"]
    return {"territory": territory_id, "release_id": result["release_id"], "screening_id": result["screening_id"],
            "prefix": prefix, "keys": result["keys"], "touches_anything": bool(result["touches_anything"]),
            "summary": result["summary"], "sheet_url": store.url(f"{prefix}/fiche.html"),
            "pdf_url": store.url(f"{prefix}/fiche.pdf"), "lines": describe(result)}
