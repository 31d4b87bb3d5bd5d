"""The report's tables (one :class:`Table` of formatted cells serves the HTML and the PDF), labels and French number
formatting: key figures, fragmentation, connectivity, rankings, communes, change since the previous release,
validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tvb_tasks.indicators.key_figures import KEY_FIGURES
from tvb_tasks.publish.report import reading

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
FRAGMENTATION_COLUMNS: list[tuple[str, str, int | str]] = [
    ("habitat_ha", "Habitat (ha)", 0), ("n_patches", "Taches", 0), ("mean_patch_ha", "Taille moyenne (ha)", 1),
    ("largest_patch_ha", "Plus grande tache (ha)", 1), ("meff_cut_ha", "meff CUT (ha)", 2),
    ("meff_cbc_ha", "meff CBC (ha)", 2), ("coherence", "Cohérence", "sig"), ("splitting_index", "Indice de division", 0),
]
COMMUNE_COLUMNS: list[tuple[str, str, int | str]] = [
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
    rows = [[str(rec.get(key, "")) if fmt == "text" else fr_number(rec.get(key), fmt if isinstance(fmt, int) else None)
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
    spec: list[tuple[str, str, int | str]] = [("sous_trame", "Sous-trame", "text"), *FRAGMENTATION_COLUMNS]
    note = ("meff : taille effective de maille (Jaeger) ; CUT : taches coupées à la limite ; CBC : "
            "taches comptées entières au-delà de la limite (connexions transfrontalières).")
    if len(frame) and {"meff_cut_ha", "meff_cbc_ha"} <= set(frame.columns):
        cut, cbc = frame["meff_cut_ha"].astype(float), frame["meff_cbc_ha"].astype(float)
        same = frame.loc[(cbc - cut).abs() <= 1e-4 * cut.abs().clip(lower=1e-9), "sous_trame"].astype(str).tolist()
        if same:
            note += (f" CBC = CUT pour : {', '.join(same)}. L'occupation du sol s'arrête à la limite du territoire : "
                     "aucune de leurs taches d'habitat ne se prolonge au-delà, elles sont donc entières dans les deux "
                     "calculs (seules les sources d'habitat complétées dans la zone tampon, comme les terrils, "
                     "font différer CBC).")
    return _table("Fragmentation des habitats (territoire)", frame, spec, note)


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
    spec: list[tuple[str, str, int | str]] = list(COMMUNE_COLUMNS)
    spec += [(f"meff_cbc_{st}_ha", f"meff {label.replace('Sous-trame ', '')} (ha)", 2)
             for st, label in st_labels.items() if f"meff_cbc_{st}_ha" in frame.columns]
    if frame.empty:
        frame = pd.DataFrame(columns=[s[0] for s in spec])
    if "nom" in frame.columns:    # alphabetical, accents ignored (Éleu-dit-Leauwette among the E)
        frame = frame.sort_values("nom", key=lambda names: names.astype(str).str.normalize("NFKD")
                                  .str.encode("ascii", "ignore").str.decode("ascii").str.lower())
    return _table("Indicateurs par commune", frame, spec, "meff : taille effective de maille CBC de chaque sous-trame.")


CAUSE_LABELS = {"inputs_changed": "Données sources", "configuration_changed": "Configuration (paramètres)",
                 "resolution_changed": "Résolution du raster", "parameters_changed": "Autres paramètres du territoire",
                 "code_changed": "Version du code"}


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
