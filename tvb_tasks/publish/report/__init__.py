"""The release report: one HTML page (maps embedded as base64 PNG) opening on a plain-language summary, one
HTML sheet per commune, the PNG maps and a PDF export (A4 landscape, numbered pages, table of contents).

:func:`build_report` reads the release's ``tvb.gpkg`` and the indicators folder written by
:func:`tvb_tasks.indicators.compute_indicators` (local paths only) and writes ``index.html``,
``communes/<insee>.html``, ``maps/*.png``, ``maps/communes/<insee>.png`` and ``report.pdf``. Labels are in French.
Links point only inside the release: ``../validation/<sources|outputs>/data_docs/index.html`` (Data Docs, written by
the validation gates), ``../web/index.html``, ``report.pdf``, the commune sheets.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from tvb_tasks.config import Territory
from tvb_tasks.indicators import indicators_config, is_synthetic_landuse, read_layers
from tvb_tasks.indicators.history import flatten_indicators, read_history, read_indicators_json
from tvb_tasks.indicators.key_figures import KEY_FIGURES
from tvb_tasks.publish.report import maps, reading
from tvb_tasks.publish.styles import credit_line, reference_label, sources_table

TEMPLATES = Path(__file__).parent / "templates"
SYNTHETIC_NOTE = "Occupation du sol : données synthétiques (échantillon de démonstration, non représentatif du terrain)"
UNIT_DECIMALS = {"%": 1, "ha": 0, "km": 1, "nombre": 0}
CHANGE_COUNT_LABELS = {
    "reservoirs_gained": "Réservoirs gagnés", "reservoirs_lost": "Réservoirs perdus",
    "reservoirs_resized": "Réservoirs dont la surface a changé", "relays_gained": "Zones relais gagnées",
    "relays_lost": "Zones relais perdues", "relays_resized": "Zones relais dont la surface a changé",
    "corridors_gained": "Corridors nouveaux", "corridors_lost": "Corridors disparus",
    "corridors_status_changed": "Corridors dont le statut a changé",
    "rupture_points_new": "Nouveaux points de rupture", "rupture_points_removed": "Points de rupture supprimés",
}
FRAGMENTATION_COLUMNS = [
    ("habitat_ha", "Habitat (ha)", 0), ("n_patches", "Taches", 0), ("mean_patch_ha", "Taille moyenne (ha)", 1),
    ("largest_patch_ha", "Plus grande tache (ha)", 1), ("meff_cut_ha", "meff CUT (ha)", 2),
    ("meff_cbc_ha", "meff CBC (ha)", 2), ("coherence", "Cohérence", "sig"), ("splitting_index", "Indice de division", 0),
]
COMMUNE_COLUMNS = [
    ("nom", "Commune", "text"), ("insee", "INSEE", "text"), ("area_ha", "Surface (ha)", 0),
    ("artificial_pct", "Artificialisé (%)", 1), ("natural_pct", "Naturel (%)", 1),
    ("reservoirs_ha", "Réservoirs (ha)", 1), ("relays_ha", "Zones relais (ha)", 1),
    ("corridors_existing_km", "Corr. existants (km)", 2), ("corridors_to_restore_km", "Corr. à restaurer (km)", 2),
    ("corridors_to_create_km", "Corr. à créer (km)", 2), ("wet_corridors_km", "Corr. humides (km)", 2),
    ("rupture_points", "Points de rupture", 0),
]
CHANGE_INDICATORS = {("connectivity", "pc"), ("connectivity", "ec_pc_ha"), ("connectivity", "iic"),
                     ("connectivity", "n_nodes"), ("fragmentation", "meff_cbc_ha"), ("fragmentation", "meff_cut_ha")}
INDICATOR_LABELS = {
    **{k: v[0] for k, v in KEY_FIGURES.items()},
    "pc": "Probabilité de connectivité PC", "ec_pc_ha": "Surface connectée équivalente EC(PC) (ha)",
    "iic": "Indice intégral de connectivité IIC", "n_nodes": "Nombre de réservoirs",
    "meff_cbc_ha": "meff CBC (ha)", "meff_cut_ha": "meff CUT (ha)",
}


# --- formatting ------------------------------------------------------------------------------------------------------
fr_number = reading.fr     # French number formatting (one implementation for the report)
COST_UNIT = "coût (friction × m)"
# fiches de préconisations: written by tvb_tasks.priorities.stage.fiches_stage in report/fiches/ when the release has
# a priorities layer
FICHES_HREF = "fiches/index.html"


@dataclass
class Table:
    """A table of formatted cells (shared by the HTML and the PDF)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)
    note: str = ""


def _table(title: str, frame: pd.DataFrame, spec: list[tuple[str, str, int | str]], note: str = "") -> Table:
    """Format ``frame`` columns by ``spec`` (key, label, format): format = decimals, "sig" (3 significant digits)
    or "text"."""
    rows = [[str(rec.get(key, "")) if fmt == "text" else fr_number(rec.get(key), None if fmt == "sig" else fmt)
             for key, _, fmt in spec] for rec in frame.to_dict(orient="records")]
    return Table(title, [label for _, label, _ in spec], rows, [fmt != "text" for _, _, fmt in spec], note)


def key_figures_table(doc: dict, reference: str = "étude de référence du territoire") -> Table:
    """Computed key figures beside the published CALL study values, with the difference."""
    rows = []
    for row in doc.get("comparison") or []:
        decimals = UNIT_DECIMALS.get(row["unit"], 1)
        published = row.get("published")
        rows.append([row["libelle"], row["unit"], fr_number(row["computed"], decimals),
                     ("≈\u00a0" + fr_number(published, 0 if float(published).is_integer() else decimals))
                     if published is not None else "–",
                     fr_number(row.get("difference"), decimals, sign=True),
                     fr_number(row.get("difference_pct"), 1, sign=True)])
    note = (f"Publié : {reference}. Écart = calculé − publié." if doc.get("published")
            else "Aucune valeur publiée n'est configurée pour ce territoire.")
    return Table("Chiffres clés", ["Indicateur", "Unité", "Calculé (cette publication)", "Publié", "Écart",
                                   "Écart (%)"], rows, [False, False, True, True, True, True], note)


def fragmentation_table(doc: dict) -> Table:
    rows = []
    for st, frag in (doc.get("fragmentation") or {}).items():
        t = frag.get("territory") or {}
        rows.append({"sous_trame": frag.get("libelle", st), **t})
    frame = pd.DataFrame(rows)
    spec = [("sous_trame", "Sous-trame", "text"), *FRAGMENTATION_COLUMNS]
    return _table("Fragmentation des habitats (territoire)", frame, spec, "meff : taille effective de maille (Jaeger) ; CUT : taches coupées à la limite ; CBC : "
                        "taches comptées entières au-delà de la limite (connexions transfrontalières).")


def connectivity_table(doc: dict) -> Table:
    rows = []
    for st, c in (doc.get("connectivity") or {}).items():
        unit = COST_UNIT if c.get("distance_kind") == "cost" else "m"
        rows.append([c.get("libelle", st), fr_number(c.get("n_nodes"), 0), fr_number(c.get("n_links"), 0),
                     fr_number(c.get("n_components"), 0), fr_number(c.get("pc"), None),
                     fr_number(c.get("ec_pc_ha"), 1), fr_number(c.get("iic"), None),
                     f"{fr_number(c.get('distance_threshold'), 0)} {unit} (p = "
                     f"{fr_number(c.get('probability_at_threshold'), 2)})"])
    return Table("Connectivité des réservoirs", ["Sous-trame", "Réservoirs", "Liens", "Composantes", "PC",
                                                 "EC(PC) (ha)", "IIC", "Distance seuil"], rows,
                 [False, True, True, True, True, True, True, False],
                 "PC : probabilité de connectivité (Saura & Pascual-Hortal 2007) ; EC(PC) : surface connectée "
                 "équivalente ; IIC : indice intégral de connectivité. Distances : coût des corridors (moindre coût) "
                 "ou distance euclidienne bord à bord (m) si la sous-trame n'a pas de coût.")


def ranking_tables(doc: dict) -> list[Table]:
    """Per sous-trame: the reservoirs and links whose loss would lower PC most."""
    tables = []
    for st, c in (doc.get("connectivity") or {}).items():
        nodes = c.get("top_nodes") or []
        if not nodes:
            continue
        rows = [[str(n["rank"]), str(n["id"]), str(n.get("libelle") or ""), fr_number(n["area_ha"], 1),
                 fr_number(n["dpc"], 2), fr_number(n["dpc_intra"], 2), fr_number(n["dpc_flux"], 2),
                 fr_number(n["dpc_connector"], 2)] for n in nodes]
        tables.append(Table(f"{c.get('libelle', st)} – réservoirs les plus importants",
                            ["Rang", "Réservoir", "Libellé", "Surface (ha)", "dPC (%)", "intra", "flux", "connecteur"],
                            rows, [False, False, False, True, True, True, True, True]))
        links = [link for link in c.get("top_links") or [] if (link.get("dpc") or 0) > 0]
        if links:
            unit = COST_UNIT if c.get("distance_kind") == "cost" else "m"
            rows = [[str(link["rank"]), f"{link['from_id']} – {link['to_id']}",
                     f"{fr_number(link['distance'], 0)} {unit}",
                     fr_number(link["probability"], 3), fr_number(link["dpc"], 2)] for link in links]
            tables.append(Table(f"{c.get('libelle', st)} – liens les plus importants",
                                ["Rang", "Lien", "Distance", "Probabilité", "dPC (%)"], rows,
                                [False, False, True, True, True]))
    return tables


def communes_table(doc: dict, st_labels: dict[str, str]) -> Table:
    frame = pd.DataFrame(doc.get("communes") or [])
    spec = list(COMMUNE_COLUMNS)
    spec += [(f"meff_cbc_{st}_ha", f"meff {label.replace('Sous-trame ', '')} (ha)", 2)
             for st, label in st_labels.items() if f"meff_cbc_{st}_ha" in frame.columns]
    if frame.empty:
        frame = pd.DataFrame(columns=[s[0] for s in spec])
    if "nom" in frame.columns:    # alphabetical, accents ignored (Éleu-dit-Leauwette among the E)
        frame = frame.sort_values("nom", key=lambda names: names.astype(str).str.normalize("NFKD")
                                  .str.encode("ascii", "ignore").str.decode("ascii").str.lower())
    return _table("Indicateurs par commune", frame, spec, "meff : taille effective de maille CBC de chaque sous-trame.")


CAUSE_LABELS = {"inputs_changed": "Données sources", "configuration_changed": "Configuration (paramètres)",
                 "resolution_changed": "Résolution du raster", "code_changed": "Version du code"}


def cause_table(causes: dict) -> Table:
    """What changed since the previous release (provenance): inputs, configuration, resolution, code."""
    def word(value) -> str:
        return "inconnu" if value is None else ("modifiée(s)" if value else "inchangée(s)")

    rows = [[label, word(causes.get(key))] for key, label in CAUSE_LABELS.items()]
    if causes.get("method_only"):
        note = "Changement de méthode seul : les écarts ne traduisent pas une évolution du territoire."
    elif causes.get("inputs_changed"):
        note = "Les données sources ont changé : les écarts mêlent évolution du territoire et, le cas échéant, de méthode."
    else:
        note = ""
    return Table("Origine des changements", ["Élément", "Depuis la publication précédente"], rows, [False, False],
                 note)


def change_tables(doc: dict, st_labels: dict[str, str], small_pct: float = 1.0) -> list[Table]:
    """The change section's tables for the PDF (the HTML renders :func:`reading.change_rows` itself): indicator
    changes sorted by size (small ones folded into one line) and the layer change counts, largest first."""
    change = doc.get("change")
    if not change:
        return []
    tables = []
    rows = reading.change_rows(change.get("table") or [], INDICATOR_LABELS, st_labels, CHANGE_INDICATORS, small_pct)
    big = [r for r in rows if not r.small]
    small = [r for r in rows if r.small]
    previous = change.get("previous_release") or "publication précédente"
    causes = change.get("causes") or {}
    if rows:
        cells = [[f"{reading.MARKS[r.direction]} {r.label}", r.previous, r.current, r.change, r.change_pct] for r in big]
        if small:
            cells.append([f"= {len(small)} autre(s) indicateur(s) : évolution inférieure à {fr_number(small_pct, 0)} %",
                          "", "", "", ""])
        tables.append(Table(f"Évolution des indicateurs depuis {previous}",
                            ["Indicateur (▲ hausse, ▼ baisse)", "Précédent", "Actuel", "Écart", "Écart (%)"], cells,
                            [False, True, True, True, True],
                            "Triés par ampleur de l'écart relatif." + (
                                " Données sources identiques : ces écarts viennent de la seule méthode (configuration,"
                                " résolution ou code), pas d'une évolution du territoire."
                                if causes.get("method_only") else "")))
    if any(v is not None for v in causes.values()):
        tables.append(cause_table(causes))
    table = layer_change_table(change)
    if table is not None:
        tables.append(table)
    return tables


def layer_change_table(change: dict) -> Table | None:
    counts = change.get("layers")
    if counts is None:
        return None
    items = sorted(((label, int(counts.get(key, 0) or 0)) for key, label in CHANGE_COUNT_LABELS.items()),
                   key=lambda kv: -kv[1])
    rows = [[label, fr_number(n, 0)] for label, n in items if n > 0]
    zero = [label for label, n in items if n == 0]
    if zero:
        rows.append([f"Sans changement : {', '.join(z.lower() for z in zero)}", "0"])
    return Table("Changements des couches", ["Changement", "Nombre"], rows, [False, True],
                 "Entités rapprochées par leur géométrie (recouvrement, distance de Hausdorff).")


VALIDATION_TITLES = {"sources": "Données sources", "outputs": "Couches produites", "": "Validation"}
VALIDATION_KEYS = {"success": "Réussite", "critical_failures": "Échecs critiques", "warnings": "Avertissements",
                   "evaluated": "Attentes évaluées", "successful": "Attentes réussies"}


def _is_aggregate(value: Any) -> bool:
    """A ``tvb_tasks.validate`` aggregate summary: {"success", "sources": {name: per-dataset summary}, ...}."""
    return isinstance(value, dict) and "success" in value and isinstance(value.get("sources"), dict)


def _aggregate_tables(title: str, agg: dict) -> tuple[list[Table], int]:
    """Per-dataset table and the list of failures of one aggregate; returns (tables, number of failures)."""
    rows, failures = [], []
    for name, s in agg["sources"].items():
        crit, warn = s.get("critical_failures") or [], s.get("warnings") or []
        rows.append([str(name), str(s.get("suite", "")), "réussie" if s.get("success") else "ÉCHEC",
                     fr_number(s.get("evaluated"), 0), fr_number(s.get("successful"), 0), str(len(crit)),
                     str(len(warn))])
        failures += [[str(name), "critique" if e in crit else "avertissement", reading.french_message(e)]
                     for e in [*crit, *warn]]
    tables = [Table(title, ["Jeu de données", "Suite", "Résultat", "Attentes évaluées", "Réussies",
                            "Échecs critiques", "Avertissements"], rows, [False, False, False, True, True, True, True])]
    if failures:
        tables.append(Table(f"{title} – anomalies", ["Jeu de données", "Gravité", "Message"], failures[:200]))
    return tables, len(failures)


def _scalar_rows(summary: dict, prefix: str = "") -> list[list[str]]:
    """(label, value) rows of the scalar items of a summary, one level of nesting, local paths left out."""
    rows = []
    for key, value in summary.items():
        if str(key).endswith("_path"):
            continue
        label = VALIDATION_TITLES.get(str(key)) or VALIDATION_KEYS.get(str(key), str(key))
        if isinstance(value, dict) and not prefix:
            rows += _scalar_rows(value, f"{label} – ")
        elif isinstance(value, bool):
            rows.append([prefix + label, "oui" if value else "non"])
        elif not isinstance(value, (dict, list)):
            rows.append([prefix + label, str(value)])
    return rows


def validation_tables(summary: dict | None) -> tuple[bool | None, str, list[Table]]:
    """(passed (None when no summary), status line, tables) of a validation summary: ``tvb_tasks.validate`` aggregates (alone or under keys such as
    ``sources`` / ``outputs``) get per-dataset tables and their anomalies; any other dict its scalar items."""
    if summary is None:
        return None, "Aucun résumé de validation n'a été fourni pour cette publication.", []
    blocks = {"": summary} if _is_aggregate(summary) else {k: v for k, v in summary.items() if _is_aggregate(v)}
    tables, failures = [], 0
    for key, agg in blocks.items():
        found, n = _aggregate_tables(VALIDATION_TITLES.get(key, str(key)), agg)
        tables += found
        failures += n
    rest = {} if _is_aggregate(summary) else {k: v for k, v in summary.items() if k not in blocks}
    rows = _scalar_rows(rest)
    if rows:
        tables.append(Table("Résumé", ["Élément", "Valeur"], rows))
    flags = [summary.get("success")] + [v.get("success") for v in summary.values() if isinstance(v, dict)]
    ok = all(bool(f) for f in flags if f is not None)
    status = ("Validation réussie : aucune anomalie critique." if ok else
              "Validation : des anomalies critiques ont été relevées (voir ci-dessous).")
    if failures and ok:
        status += f" {failures} avertissement(s)."
    return ok, status, tables


def data_docs_links(summary: dict | None) -> list[tuple[str, str]]:
    """(label, href relative to ``report/``) of the Data Docs the validation gates wrote: each aggregate with a
    ``docs_path`` lives under ``validation/<key>/data_docs/index.html`` in the release."""
    if not summary:
        return []
    if _is_aggregate(summary) or summary.get("docs_path"):
        kinds = {"sources": summary} if summary.get("docs_path") else {}
    else:
        kinds = {k: v for k, v in summary.items() if isinstance(v, dict) and v.get("docs_path")}
    return [(f"Rapport détaillé de validation – {VALIDATION_TITLES.get(k, k).lower()} (Data Docs)",
             f"../validation/{k}/data_docs/index.html") for k in kinds]


# --- build -----------------------------------------------------------------------------------------------------------
def _history_rows(doc: dict, history_path: Path | None, release_id: str) -> pd.DataFrame:
    """The indicator history plus this release when the history does not have it yet."""
    history = read_history(Path(history_path)) if history_path is not None else None
    if history is not None and release_id in set(history["release_id"]):
        return history
    current = flatten_indicators(doc)
    current.insert(0, "released_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    current.insert(0, "release_id", release_id)
    return current if history is None else pd.concat([history, current], ignore_index=True)


def _read_change_layers(path: Path) -> dict[str, gpd.GeoDataFrame]:
    if not path.exists():
        return {}
    return {name: gpd.read_file(path, layer=name) for name, _ in pyogrio.list_layers(path)}


METHOD_LINES = [
    "# Méthode (détail : docs/method.md)",
    "• Réservoirs de biodiversité : taches d'habitat de chaque sous-trame (occupation du sol) d'une surface minimale, "
    "et aires protégées ; zones relais : taches plus petites (guides TVB Cemagref / IRSTEA).",
    "• Corridors : chemins de moindre coût entre réservoirs sur un raster de friction (1 = habitat … 10 000 = "
    "infranchissable), coût en unités de friction × m (Graphab, Linkage Mapper) ; statut existant / à restaurer / "
    "à créer selon la part d'éléments support et les discontinuités.",
    "• Points de rupture : un point par corridor et par sous-trame là où une route passante, une voie ferrée "
    "exploitée ou un canal le coupe ; les points d'un même franchissement forment un site.",
    "• Indicateurs : taille effective de maille meff (Jaeger 2000), probabilité de connectivité PC et surface "
    "connectée équivalente EC(PC) (Saura & Pascual-Hortal 2007), indice IIC.",
    "• Priorités : corridors et sites classés par gain de connectivité (ΔPC), coût estimé et conflits avec les "
    "projets ; un gain nul signale un site hors du réseau modélisé.",
    "# Sources",
    "• Le tableau suivant liste chaque source utilisée, son producteur, sa licence et l'attribution à reproduire.",
]


def sources_licence_table(territory: Territory) -> Table:
    """Every source of the territory with producer, licence and attribution (PDF "Méthodes et sources")."""
    rows = [[c["source"], c["title"], c["publisher"], c["licence"], c["attribution"]]
            for c in sources_table(territory)]
    return Table("Sources et licences", ["Source", "Donnée", "Producteur", "Licence", "Attribution"], rows,
                 [False] * 5, "Données synthétiques : échantillon de démonstration, non représentatif du terrain.")


def _embed(path: Path, out_dir: Path, title: str) -> dict[str, str]:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"title": title, "src": f"data:image/png;base64,{data}", "file": path.relative_to(out_dir).as_posix()}


def fragmenting_infrastructure(territory: Territory, inputs: dict[str, Path] | None) -> gpd.GeoDataFrame | None:
    """The roads, railways and canals that make rupture points (``rupture_points`` rules of the YAML), from the
    run's source snapshots; None when they are not given or cannot be read (the rupture map then shows none)."""
    if not inputs:
        return None
    import logging

    from tvb_tasks.layers.common import load_boundary, read_role
    from tvb_tasks.layers.friction import prepare_infrastructure
    from tvb_tasks.layers.ruptures import _fragmenting
    from tvb_tasks.layers.wet import prepare_watercourses

    try:
        boundary = load_boundary(territory, inputs)
        water = prepare_watercourses(read_role(territory, inputs, "watercourses", required=False), boundary)
        infra = prepare_infrastructure(territory, read_role(territory, inputs, "roads", required=False),
                                       read_role(territory, inputs, "railways", required=False), water, boundary)
        lines = _fragmenting(territory, infra)
        return lines.clip(boundary) if len(lines) else lines
    except Exception as exc:  # noqa: BLE001 - a report without infrastructure lines beats no report
        logging.getLogger(__name__).warning("rupture map without infrastructure lines: %s", exc)
        return None


def _source_labels(territory: Territory) -> dict[str, str]:
    words = {"boundary": "contour du territoire", "communes": "communes", "landuse": "occupation du sol",
             "protected_areas": "aires protégées", "roads": "routes", "railways": "voies ferrées",
             "watercourses": "cours d'eau", "mining": "sites miniers", "river_obstacles": "obstacles à l'écoulement"}
    return {name: f"{words.get(src.role, src.role)} ({name})" for name, src in territory.sources.items()}


def build_report(territory: Territory, gpkg: Path, indicators_dir: Path, out_dir: Path, *,
                 validation_summary: dict | None, history_path: Path | None, release_id: str,
                 inputs: dict[str, Path] | None = None) -> dict:
    """Write ``out_dir/index.html`` (maps embedded), ``out_dir/communes/<insee>.html``, ``out_dir/maps/*.png``
    and ``out_dir/report.pdf`` for a release. ``inputs`` (source snapshot paths by name, optional) let the
    rupture map show the fragmenting roads and railways. Returns ``{"html": str, "files": [str, ...]}``."""
    gpkg, indicators_dir, out_dir = Path(gpkg), Path(indicators_dir), Path(out_dir)
    cfg = indicators_config(territory)
    small_pct = territory.publish.report.small_change_pct
    doc = read_indicators_json(indicators_dir / "indicators.json")
    layers = read_layers(gpkg, territory)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*(out_dir / "maps").rglob("*.png"), *(out_dir / "communes").glob("*.html")]:
        stale.unlink()                                  # a rebuilt report lists only its own maps and sheets
    synthetic = is_synthetic_landuse(territory)
    credits = credit_line(territory, cfg.report.attribution)
    attribution = credits + (f" — {SYNTHETIC_NOTE}" if synthetic else "") + \
        f" — Observatoire TVB {territory.short_name or territory.name}, publication {release_id}"
    st_labels = {st: s.label for st, s in territory.sous_trames.items()}
    nodes_csv = indicators_dir / "connectivity_nodes.csv"
    nodes = pd.read_csv(nodes_csv, dtype={"id": str, "sous_trame": str}) if nodes_csv.exists() else \
        pd.DataFrame(columns=["id", "sous_trame", "dpc"])
    change_layers = _read_change_layers(indicators_dir / "change.gpkg")
    history = _history_rows(doc, history_path, release_id)

    pdf_path = out_dir / "report.pdf"
    generated = datetime.now(timezone.utc).strftime("%d/%m/%Y à %H:%M UTC")
    tables = {
        "key_figures": key_figures_table(doc, reference_label(territory)), "fragmentation": fragmentation_table(doc),
        "connectivity": connectivity_table(doc), "communes": communes_table(doc, st_labels),
    }
    rankings = ranking_tables(doc)
    from tvb_tasks.priorities.stage import report_tables   # "Priorités" section (when the stage produced them)

    rankings += report_tables(indicators_dir)
    change = doc.get("change") or {}
    change_rows = reading.change_rows(change.get("table") or [], INDICATOR_LABELS, st_labels, CHANGE_INDICATORS,
                                      small_pct) if change else []
    previous_release = (change.get("previous_release") or reading.previous_release_in(history, release_id)
                        if change else None)
    if change and previous_release and not change.get("previous_release"):
        change = {**change, "previous_release": previous_release}
        doc = {**doc, "change": change}
    prov = reading.provenance(history, release_id, previous_release)
    explanation = reading.provenance_explanation(prov) if change else ""
    prov_rows = reading.provenance_rows(prov, _source_labels(territory)) if change else []
    changes = change_tables(doc, st_labels, small_pct)
    layer_changes = layer_change_table(change) if change else None
    validation_ok, validation_status, validation = validation_tables(validation_summary)
    communes_doc = sorted(doc.get("communes") or [], key=lambda c: _sort_key(str(c.get("nom", ""))))
    summary = reading.plain_summary(territory.name, doc, synthetic=synthetic, validation_ok=validation_ok,
                                    change=change_rows, explanation=explanation, n_communes=len(communes_doc),
                                    ruptures=reading.rupture_counts(layers.get("rupture_points")))
    images = []
    book = maps.PdfBook()
    book.section = "En bref"
    maps.text_page(book, f"Observatoire de la Trame verte et bleue\n{territory.name}", [
        "# En bref", *[f"• {line}" for line in summary], "",
        "Ce rapport présente la trame verte et bleue calculée pour cette publication : chiffres clés, cartes, "
        "évolutions, fiches par commune et contrôles de qualité. La carte interactive est dans le dossier web/ de "
        "la publication."], subtitle=f"Publication {release_id} · rapport généré le {generated}")
    book.section = "Chiffres clés"
    _pdf_table(book, tables["key_figures"])
    infra = fragmenting_infrastructure(territory, inputs)
    ctx = maps.MapContext(layers["communes"], attribution, out_dir, book)
    res, rel = layers["reservoirs"], layers["relays"]
    terrestrial, wet = territory.terrestrial_sous_trames, territory.wet_sous_trames
    corridors = layers["corridors"]
    book.section = "Cartes"
    images += [
        _embed(maps.landuse_map(ctx, layers["landuse"], {c: v.label for c, v in territory.landuse.classes.items()}),
               out_dir, "Occupation du sol"),
        _embed(maps.network_map(ctx, res, rel, st_labels, terrestrial, "trame_verte",
                                "Trame verte : réservoirs de biodiversité et zones relais"), out_dir, "Trame verte"),
        _embed(maps.corridors_map(ctx, corridors[corridors["sous_trame"].isin(terrestrial)],
                                  res[res["sous_trame"].isin(terrestrial)]), out_dir, "Corridors terrestres"),
        _embed(maps.network_map(ctx, res, rel, st_labels, wet, "trame_bleue",
                                "Trame bleue : réservoirs et zones relais humides"), out_dir, "Trame bleue"),
        _embed(maps.corridors_map(ctx, corridors[corridors["sous_trame"].isin(wet)],
                                  res[res["sous_trame"].isin(wet)], layers["wet_corridors"],
                                  "corridors_humides", "Trame bleue : corridors humides"), out_dir,
               "Corridors humides"),
        _embed(maps.rupture_map(ctx, layers["rupture_points"], corridors, layers["wet_corridors"], infra), out_dir,
               "Points de rupture et infrastructures fragmentantes"),
        _embed(maps.connectivity_map(ctx, res, nodes), out_dir, "Connectivité (dPC)"),
    ]
    book.section = "Évolution dans le temps"
    history_image = _embed(maps.history_chart(ctx, history, st_labels), out_dir, "Évolution des indicateurs")
    book.section = "Changements depuis la publication précédente"
    if change:
        maps.text_page(book, "Changements depuis la publication précédente", [
            "# Pourquoi les chiffres ont changé", *[f"• {kind} : {what}" for kind, what in prov_rows], "",
            explanation])
        _pdf_tables(book, changes)
    change_image = (_embed(maps.change_map(ctx, change_layers), out_dir, "Évolutions")
                    if change_layers else None)
    book.section = "Fragmentation et connectivité"
    _pdf_tables(book, [tables["fragmentation"], tables["connectivity"], *rankings])
    book.section = "Indicateurs par commune"
    _pdf_table(book, tables["communes"])
    book.section = "Validation des données"
    if validation:
        _pdf_tables(book, validation)
    else:
        maps.text_page(book, "Validation des données", [validation_status])
    book.section = "Méthodes et sources"
    maps.text_page(book, "Méthodes et sources", METHOD_LINES)
    _pdf_table(book, sources_licence_table(territory))
    book.section = "Fiches communales"
    sheets = commune_sheets(ctx, territory, layers, communes_doc, st_labels, release_id)
    n_pages = book.save(pdf_path, metadata={"Title": f"Observatoire TVB – {territory.name} – {release_id}",
                                            "Subject": "Trame verte et bleue : rapport de publication"})

    env = _env()
    common = dict(territory=territory, release_id=release_id, generated=generated, synthetic=synthetic,
                  synthetic_note=SYNTHETIC_NOTE, attribution=attribution, fr_number=fr_number)
    html = env.get_template("report.html.j2").render(
        **common, summary=summary, tables=tables, rankings=rankings, images=images,
        change_image=change_image, change_rows=change_rows, small_pct=small_pct, prov_rows=prov_rows,
        explanation=explanation, layer_changes=layer_changes, has_change=bool(change),
        previous_release=change.get("previous_release"), marks=reading.MARKS, mark_colors=reading.MARK_COLORS,
        history_image=history_image, n_releases=int(history["release_id"].nunique()),
        validation_ok=validation_ok, validation_status=validation_status, validation=validation,
        docs_links=data_docs_links(validation_summary), sheets=sheets, n_pages=n_pages,
        details=doc.get("details") or {}, st_labels=st_labels,
        landuse_warning=territory.nomenclature.warning,
        nomenclature_label=territory.nomenclature.label, credits=sources_table(territory),
        fiches_href=FICHES_HREF if "priorities" in {n for n, _ in pyogrio.list_layers(gpkg)} else None,
    )
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    sheet_tpl = env.get_template("commune.html.j2")
    (out_dir / "communes").mkdir(exist_ok=True)
    for i, sheet in enumerate(sheets):
        prev_sheet, next_sheet = (sheets[i - 1] if i else None), (sheets[i + 1] if i + 1 < len(sheets) else None)
        (out_dir / sheet["href"]).write_text(sheet_tpl.render(**common, sheet=sheet, prev_sheet=prev_sheet,
                                                              next_sheet=next_sheet), encoding="utf-8")
    files = [str(index), str(pdf_path)] + sorted(str(p) for p in (out_dir / "maps").rglob("*.png")) + \
        sorted(str(out_dir / s["href"]) for s in sheets)
    return {"html": str(index), "files": files, "pages": n_pages}


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _sort_key(name: str) -> str:
    """Alphabetical order with accents ignored (Éleu-dit-Leauwette among the E)."""
    import unicodedata

    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()


def commune_sheets(ctx: maps.MapContext, territory: Territory, layers: dict[str, gpd.GeoDataFrame],
                   communes_doc: list[dict], st_labels: dict[str, str], release_id: str) -> list[dict]:
    """One sheet per commune of the indicators (map PNG + PDF page): [{"insee", "nom", "href", "image", "rows"}]."""
    communes = layers["communes"]
    if "insee" not in communes.columns:
        return []
    by_insee = {str(i): idx for idx, i in zip(communes.index, communes["insee"])}
    sheet_layers = {k: layers.get(k) for k in ("reservoirs", "relays", "corridors", "wet_corridors", "rupture_points")}
    out = []
    for row in communes_doc:
        insee = str(row.get("insee"))
        if insee not in by_insee:
            continue
        commune = communes.loc[by_insee[insee]]
        rows = reading.commune_rows(row)
        name = str(row.get("nom") or commune.get("nom") or insee)
        png = maps.commune_sheet(ctx, commune, sheet_layers, st_labels, rows, title=name,
                                 subtitle=f"Commune {insee} · {territory.name} · publication {release_id}",
                                 name=insee)
        out.append({"insee": insee, "nom": name, "href": f"communes/{insee}.html",
                    "image": "../" + png.relative_to(ctx.out_dir).as_posix(), "rows": rows})
    return out


def _pdf_table(pdf, table: Table) -> None:
    maps.table_page(pdf, table.title, table.columns, table.rows, note=table.note)


def _pdf_tables(pdf, tables: list[Table]) -> None:
    """Tables in order, short ones sharing a page (no page holding a five-line table alone)."""
    page: list[Table] = []
    used = 0.0
    for table in tables:
        height = maps.table_block_height(table.columns, table.rows, table.note)
        if height > 0.9:                         # long: its own page(s)
            if page:
                maps.tables_page(pdf, [(t.title, t.columns, t.rows, t.note) for t in page])
                page, used = [], 0.0
            _pdf_table(pdf, table)
            continue
        if used + height > 0.9 and page:
            maps.tables_page(pdf, [(t.title, t.columns, t.rows, t.note) for t in page])
            page, used = [], 0.0
        page.append(table)
        used += height
    if page:
        maps.tables_page(pdf, [(t.title, t.columns, t.rows, t.note) for t in page])
