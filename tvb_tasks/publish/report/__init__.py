"""The release report: one self-contained HTML page (maps embedded as base64 PNG), the PNG maps and a PDF export.

:func:`build_report` reads the release's ``tvb.gpkg`` and the indicators folder written by
:func:`tvb_tasks.indicators.compute_indicators` (local paths only) and writes ``index.html``, ``maps/*.png`` and
``report.pdf``. Labels are in French.
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
from matplotlib.backends.backend_pdf import PdfPages

from tvb_tasks.config import Territory
from tvb_tasks.indicators import indicators_config, is_synthetic_landuse, read_layers
from tvb_tasks.indicators.history import flatten_indicators, read_history, read_indicators_json
from tvb_tasks.indicators.key_figures import KEY_FIGURES
from tvb_tasks.publish.report import maps

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
def fr_number(value: Any, decimals: int | None = 1, sign: bool = False) -> str:
    """French number: narrow no-break space for thousands, decimal comma; ``decimals=None`` → 3 significant
    digits (for small ratios such as PC); None / NaN → '–'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    value = float(value)
    if decimals is None:
        text = f"{value:+.3g}" if sign else f"{value:.3g}"
    else:
        text = f"{value:+,.{decimals}f}" if sign else f"{value:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",")


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


def key_figures_table(doc: dict) -> Table:
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
    source = (doc.get("published") or {}).get("source") or "aucune valeur publiée configurée"
    return Table("Chiffres clés", ["Indicateur", "Unité", "Calculé (cette publication)",
                                   "Publié (étude TVB CALL)", "Écart", "Écart (%)"], rows,
                 [False, False, True, True, True, True],
                 f"Valeurs publiées : {source} (AULA / CALL, « chiffres clés »). Écart = calculé − publié.")


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
        unit = "coût" if c.get("distance_kind") == "cost" else "m"
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
            rows = [[str(link["rank"]), f"{link['from_id']} – {link['to_id']}", fr_number(link["distance"], 0),
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


def change_tables(doc: dict, st_labels: dict[str, str]) -> list[Table]:
    change = doc.get("change")
    if not change:
        return []
    tables = []
    rows = []
    for r in change.get("table") or []:
        if r["family"] != "key_figures" and (r["family"], r["indicator"]) not in CHANGE_INDICATORS:
            continue
        label = INDICATOR_LABELS.get(r["indicator"], r["indicator"])
        if r.get("sous_trame"):
            label = f"{label} – {st_labels.get(r['sous_trame'], r['sous_trame'])}"
        decimals = None if r["indicator"] in ("pc", "iic") else 2
        rows.append([label, fr_number(r.get("previous"), decimals), fr_number(r.get("current"), decimals),
                     fr_number(r.get("change_abs"), decimals, sign=True),
                     fr_number(r.get("change_pct"), 1, sign=True)])
    previous = change.get("previous_release") or "publication précédente"
    if rows:
        tables.append(Table(f"Évolution des indicateurs depuis {previous}",
                            ["Indicateur", "Précédent", "Actuel", "Écart", "Écart (%)"], rows,
                            [False, True, True, True, True]))
    counts = change.get("layers")
    if counts is not None:
        rows = [[label, fr_number(counts.get(key, 0), 0)] for key, label in CHANGE_COUNT_LABELS.items()]
        tables.append(Table("Changements des couches", ["Changement", "Nombre"], rows, [False, True],
                            "Entités rapprochées par leur géométrie (recouvrement, distance de Hausdorff)."))
    return tables


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
        failures += [[str(name), "critique" if e in crit else "avertissement",
                      str(e.get("message") or e.get("expectation") or "")] for e in [*crit, *warn]]
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


def _has_data_docs(summary: dict | None) -> bool:
    """Did the validation write Data Docs (``docs_path`` in the summary or in one of its aggregates)?"""
    if not summary:
        return False
    return any(isinstance(v, dict) and v.get("docs_path") for v in [summary, *summary.values()])


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


def _embed(path: Path, out_dir: Path, title: str) -> dict[str, str]:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"title": title, "src": f"data:image/png;base64,{data}", "file": path.relative_to(out_dir).as_posix()}


def build_report(territory: Territory, gpkg: Path, indicators_dir: Path, out_dir: Path, *,
                 validation_summary: dict | None, history_path: Path | None, release_id: str) -> dict:
    """Write ``out_dir/index.html`` (self-contained, maps embedded), ``out_dir/maps/*.png`` and
    ``out_dir/report.pdf`` for a release. Returns ``{"html": str, "files": [str, ...]}``."""
    gpkg, indicators_dir, out_dir = Path(gpkg), Path(indicators_dir), Path(out_dir)
    cfg = indicators_config(territory)
    doc = read_indicators_json(indicators_dir / "indicators.json")
    layers = read_layers(gpkg, territory)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "maps").glob("*.png"):      # a rebuilt report lists only its own maps
        stale.unlink()
    synthetic = is_synthetic_landuse(territory)
    from tvb_tasks.sources.schemas import credit_line, source_credits

    attribution = credit_line(territory, cfg.report.attribution) + (f" — {SYNTHETIC_NOTE}" if synthetic else "") + \
        f" — Observatoire TVB {territory.short_name or territory.name}, publication {release_id}"
    st_labels = {st: s.label for st, s in territory.sous_trames.items()}
    nodes_csv = indicators_dir / "connectivity_nodes.csv"
    nodes = pd.read_csv(nodes_csv, dtype={"id": str, "sous_trame": str}) if nodes_csv.exists() else \
        pd.DataFrame(columns=["id", "sous_trame", "dpc"])
    change_layers = _read_change_layers(indicators_dir / "change.gpkg")
    history = _history_rows(doc, history_path, release_id)

    pdf_path = out_dir / "report.pdf"
    generated = datetime.now(timezone.utc).strftime("%d/%m/%Y %H:%M UTC")
    tables = {
        "key_figures": key_figures_table(doc), "fragmentation": fragmentation_table(doc),
        "connectivity": connectivity_table(doc), "communes": communes_table(doc, st_labels),
    }
    rankings = ranking_tables(doc)
    changes = change_tables(doc, st_labels)
    validation_ok, validation_status, validation = validation_tables(validation_summary)
    images = []
    with PdfPages(pdf_path, metadata={"Title": f"Observatoire TVB – {territory.name} – {release_id}",
                                      "Subject": "Trame verte et bleue : rapport de publication"}) as pdf:
        maps.text_page(pdf, f"Observatoire de la Trame verte et bleue\n{territory.name}", [
            f"Publication : {release_id}", f"Rapport généré le {generated}",
            *( [SYNTHETIC_NOTE] if synthetic else []), "", validation_status])
        _pdf_table(pdf, tables["key_figures"])
        ctx = maps.MapContext(layers["communes"], attribution, out_dir, pdf)
        res, rel = layers["reservoirs"], layers["relays"]
        terrestrial, wet = territory.terrestrial_sous_trames, territory.wet_sous_trames
        corridors = layers["corridors"]
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
            _embed(maps.rupture_map(ctx, layers["rupture_points"], corridors, layers["wet_corridors"]), out_dir,
                   "Points de rupture"),
            _embed(maps.connectivity_map(ctx, res, nodes), out_dir, "Connectivité (dPC)"),
        ]
        change_image = (_embed(maps.change_map(ctx, change_layers), out_dir, "Évolutions")
                        if change_layers else None)
        history_image = _embed(maps.history_chart(ctx, history, st_labels), out_dir,
                               "Évolution des indicateurs")
        for table in [tables["fragmentation"], tables["connectivity"], *rankings, tables["communes"], *changes,
                      *validation]:
            _pdf_table(pdf, table)

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        territory=territory, release_id=release_id, generated=generated, synthetic=synthetic,
        synthetic_note=SYNTHETIC_NOTE, attribution=attribution, tables=tables, rankings=rankings, images=images,
        change_image=change_image, change_tables=changes, has_change=doc.get("change") is not None,
        history_image=history_image, n_releases=int(history["release_id"].nunique()),
        validation_ok=validation_ok, validation_status=validation_status, validation=validation,
        docs_link=_has_data_docs(validation_summary),
        details=doc.get("details") or {}, st_labels=st_labels, fr_number=fr_number,
        landuse_warning=territory.nomenclature.warning, nomenclature_label=territory.nomenclature.label,
        credits=source_credits(territory),
    )
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    files = [str(index), str(pdf_path)] + sorted(str(p) for p in (out_dir / "maps").glob("*.png"))
    return {"html": str(index), "files": files}


def _pdf_table(pdf: PdfPages, table: Table) -> None:
    maps.table_page(pdf, table.title, table.columns, table.rows, note=table.note)
