"""Building the release report (:func:`build_report`): the HTML page and its maps, the commune sheets, the PDF."""
from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tvb_tasks.config import Territory
from tvb_tasks.indicators import is_synthetic_landuse, read_layers
from tvb_tasks.indicators.communes import status_lines
from tvb_tasks.indicators.history import flatten_indicators, read_history, read_indicators_json
from tvb_tasks.publish.report import maps, reading
from tvb_tasks.publish.report.tables import (
    CHANGE_INDICATORS,
    FICHES_HREF,
    INDICATOR_LABELS,
    SYNTHETIC_NOTE,
    Table,
    change_tables,
    communes_table,
    connectivity_table,
    data_docs_links,
    fr_number,
    fragmentation_table,
    key_figures_table,
    layer_change_table,
    ranking_tables,
    validation_tables,
)
from tvb_tasks.publish.styles import credit_line, reference_label, sources_table

TEMPLATES = Path(__file__).parent / "templates"


# --- build -----------------------------------------------------------------------------------------------------------
def _history_rows(doc: dict, history_path: Path | None, release_id: str) -> pd.DataFrame:
    """The indicator history plus this release when the history does not have it yet."""
    history = read_history(Path(history_path)) if history_path is not None else None
    if history is not None and release_id in set(history["release_id"]):
        return history
    current = flatten_indicators(doc)
    current.insert(0, "released_at", datetime.now(UTC).isoformat(timespec="seconds"))
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
    cfg = territory.indicators
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
    st_labels = {st: s.label for st, s in territory.computed_sous_trames.items()}
    nodes_csv = indicators_dir / "connectivity_nodes.csv"
    nodes = pd.read_csv(nodes_csv, dtype={"id": str, "sous_trame": str}) if nodes_csv.exists() else \
        pd.DataFrame(columns=["id", "sous_trame", "dpc"])
    change_layers = _read_change_layers(indicators_dir / "change.gpkg")
    history = _history_rows(doc, history_path, release_id)

    pdf_path = out_dir / "report.pdf"
    generated = datetime.now(UTC).strftime("%d/%m/%Y à %H:%M UTC")
    tables = {
        "key_figures": key_figures_table(doc, reference_label(territory)), "fragmentation": fragmentation_table(doc),
        "connectivity": connectivity_table(doc), "communes": communes_table(doc, st_labels),
    }
    rankings = ranking_tables(doc)
    from tvb_tasks.priorities.stage import report_tables  # "Priorités" section (when the stage produced them)

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
    status = status_lines(layers)           # stretches by status when the release has them (as the key figures)
    by_stretch = status is not corridors
    book.section = "Cartes"
    images += [
        _embed(maps.landuse_map(ctx, layers["landuse"], {c: v.label for c, v in territory.landuse.classes.items()}),
               out_dir, "Occupation du sol"),
        _embed(maps.network_map(ctx, res, rel, st_labels, terrestrial, "trame_verte",
                                "Trame verte : réservoirs de biodiversité et zones relais"), out_dir, "Trame verte"),
        _embed(maps.corridors_map(ctx, status[status["sous_trame"].isin(terrestrial)],
                                  res[res["sous_trame"].isin(terrestrial)], by_stretch=by_stretch), out_dir,
               "Corridors terrestres"),
        _embed(maps.network_map(ctx, res, rel, st_labels, wet, "trame_bleue",
                                "Trame bleue : réservoirs et zones relais humides"), out_dir, "Trame bleue"),
        _embed(maps.corridors_map(ctx, status[status["sous_trame"].isin(wet)],
                                  res[res["sous_trame"].isin(wet)], layers["wet_corridors"],
                                  "corridors_humides", "Trame bleue : corridors humides", by_stretch=by_stretch),
               out_dir,
               "Corridors humides"),
        _embed(maps.rupture_map(ctx, layers["rupture_points"], corridors, layers["wet_corridors"], infra,
                                layers.get("vigilance_points")), out_dir,
               "Points de rupture et infrastructures fragmentantes"),
        _embed(maps.connectivity_map(ctx, res, nodes), out_dir, "Connectivité (dPC)"),
    ]
    from tvb_tasks.publish.report.fractures import fracture_tables

    fractures = fracture_tables(layers, st_labels)
    book.section = "Fractures, ouvrages busés et points de vigilance"
    _pdf_tables(book, fractures)
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
    from tvb_tasks.priorities.stage import commune_priority_rows, read_priorities  # per-commune ranks (issue 15)

    prio = read_priorities(gpkg)
    for sheet in sheets:
        sheet["priorities"], sheet["priorities_zero"] = commune_priority_rows(prio, sheet["insee"])
    n_pages = book.save(pdf_path, metadata={"Title": f"Observatoire TVB – {territory.name} – {release_id}",
                                            "Subject": "Trame verte et bleue : rapport de publication"})

    env = _env()
    common = dict(territory=territory, release_id=release_id, generated=generated, synthetic=synthetic,
                  synthetic_note=SYNTHETIC_NOTE, attribution=attribution, fr_number=fr_number)
    html = env.get_template("report.html.j2").render(
        **common, summary=summary, tables=tables, rankings=rankings, images=images, fractures=fractures,
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
    sheet_layers = {k: layers.get(k) for k in maps.SHEET_LAYERS}
    sheet_layers["corridors"] = status_lines(layers)    # stretches by status when the release has them
    base = maps.sheet_base(ctx, sheet_layers, st_labels)    # the parts every sheet shares, drawn once
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
                                 name=insee, base=base)
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
