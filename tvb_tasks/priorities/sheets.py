"""French one-page sheets (HTML + PDF, map embedded): project screening sheet and fiches de préconisations.

Each sheet is written as ``<stem>.html`` (self-contained, map as a data URI), ``<stem>.pdf`` (one A4 portrait page,
matplotlib, no external renderer) and ``<stem>.png`` (the map). Maps are in EPSG:2154 with a scale bar, a north
arrow and the attribution line (helpers of :mod:`tvb_tasks.publish.report.maps`).
"""
from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
from jinja2 import Environment, StrictUndefined, select_autoescape
from matplotlib.artist import Artist
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from tvb_tasks.config import Territory
from tvb_tasks.publish.report import reading
from tvb_tasks.publish.report.maps import _line, _patch, _point, add_scale_and_north
from tvb_tasks.publish.styles import STATUS_STYLES, sous_trame_colors

from .config import fiches_config
from .ranking import GAIN_EPSILON, crossing_name
from .screening import ScreeningResult

DPI = 110
PROJECT_COLOR = "#6a1b9a"
PRIORITY_COLOR = "#ff6f00"


@dataclass
class Section:
    """A titled table (formatted strings) or paragraph list of a sheet."""

    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    empty: str = "Aucun élément."


def fr(value, decimals: int = 1) -> str:
    """French number format (thin space thousands, decimal comma): the report's :func:`reading.fr`."""
    return reading.fr(value, decimals)


_HTML = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;color:#222;line-height:1.4}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.1rem;border-bottom:1px solid #ccc;margin-top:1.2rem}
.meta{color:#555;font-size:.9rem} table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border:1px solid #ddd;padding:.2rem .4rem;text-align:left} th{background:#eef3ec}
img{max-width:100%;border:1px solid #ccc} .note{color:#666;font-size:.8rem} .alert{color:#b71c1c;font-weight:bold}
</style></head><body>
{% if links %}<nav class="meta">{% for label, href in links %}<a href="{{ href }}">{{ label }}</a>{{ " · " if not loop.last }}{% endfor %}</nav>{% endif %}
<h1>{{ title }}</h1>
{% for line in meta %}<div class="meta">{{ line }}</div>{% endfor %}
{% if headline %}<p class="{{ 'alert' if alert else '' }}">{{ headline }}</p>{% endif %}
<img src="{{ image }}" alt="Carte : {{ title }}">
{% for s in sections %}<h2>{{ s.title }}</h2>
{% for p in s.paragraphs %}<p>{{ p }}</p>{% endfor %}
{% if s.columns %}{% if s.rows %}<table><tr>{% for c in s.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in s.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>{{ s.empty }}</p>{% endif %}{% endif %}
{% endfor %}
<p class="note">{{ attribution }} — généré le {{ generated }}. Fichier PDF : <a href="{{ pdf }}">{{ pdf }}</a>.</p>
</body></html>
"""


def _map_figure(extent: tuple[float, float, float, float], draw, attribution: str, title: str) -> Figure:
    """A map-only figure (for the PNG / HTML); ``draw(ax)`` returns the legend handles."""
    fig = Figure(figsize=(8.0, 5.6), dpi=DPI)
    ax = fig.add_axes((0.01, 0.06, 0.7, 0.86))
    fig.text(0.01, 0.95, title, fontsize=11)
    handles = _setup(ax, extent, draw)
    add_scale_and_north(ax, north_x=0.04, north_y=(0.95, 0.86), compact=True)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.text(0.01, 0.01, textwrap.fill(attribution, 160), fontsize=5.5, color="#333333")
    return fig


def _setup(ax, extent, draw) -> list:
    xmin, ymin, xmax, ymax = extent
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return draw(ax)


PDF_TEXT_CHARS = 130     # characters per full-width line at 6.5 pt on the A4 text width (0.87 of 8.27 in)
PDF_LINE = 0.0112        # height of one 6.5 pt line (figure fraction)


class _PdfFlow:
    """Top-to-bottom text flow over as many A4 portrait pages as needed (nothing is cut: a line that does not fit
    goes on the next page)."""

    def __init__(self, pdf: PdfPages, attribution: str):
        self.pdf, self.attribution, self.y = pdf, attribution, 0.0
        self.fig: Figure | None = None

    def new_page(self) -> Figure:
        self.close_page()
        fig = Figure(figsize=(8.27, 11.69), dpi=DPI)
        self.fig, self.y = fig, 0.965
        return fig

    def close_page(self) -> None:
        if self.fig is not None:
            self.fig.text(0.06, 0.015, textwrap.fill(self.attribution, 170), fontsize=5.5, color="#333333")
            self.pdf.savefig(self.fig)
            self.fig = None

    def need(self, height: float) -> Figure:
        """The page to draw ``height`` (figure fraction) on: the current one, or a new one when it does not fit."""
        if self.fig is None or self.y - height < 0.045:
            return self.new_page()
        return self.fig

    def text(self, text: str, *, x: float = 0.07, chars: int = PDF_TEXT_CHARS, size: float = 6.5,
             bold: bool = False, gap: float = 0.0) -> None:
        """A paragraph wrapped at ``chars`` (words never broken), split across pages line by line."""
        for line in textwrap.wrap(text, chars, break_long_words=False, break_on_hyphens=False) or [""]:
            fig = self.need(PDF_LINE * size / 6.5)
            fig.text(x, self.y, line, fontsize=size, va="top", fontweight="bold" if bold else "normal")
            self.y -= PDF_LINE * size / 6.5
        self.y -= gap

    def table(self, columns: list[str], rows: list[list[str]]) -> None:
        """A real table: one column per field (widths from their content), cells wrapped inside their column, a
        shaded header repeated on each page, a rule under each row."""
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        x0, width = 0.07, 0.87
        longest = [max([len(str(c))] + [len(str(r[j])) for r in rows if j < len(r)]) for j, c in enumerate(columns)]
        weights = [min(max(n, 8), 60) + 3 for n in longest]          # + 3: the gap between columns
        chars = [max(int(PDF_TEXT_CHARS * w / sum(weights)) - 2, 4) for w in weights]
        xs = [x0 + width * sum(weights[:j]) / sum(weights) for j in range(len(columns))]

        def cells(row: list[str]) -> list[list[str]]:
            return [textwrap.wrap(str(row[j]) if j < len(row) else "", chars[j], break_long_words=True) or [""]
                    for j in range(len(columns))]

        def draw(row: list[str], header: bool) -> None:
            wrapped = cells(row)
            height = PDF_LINE * max(len(c) for c in wrapped) + 0.004
            fig = self.need(height if header else height + header_h)
            if fig is not page[0]:                  # new page: repeat the header first
                page[0] = fig
                if not header:
                    draw(columns, True)
            if header:
                fig.add_artist(Rectangle((x0 - 0.003, self.y - height + 0.001), width + 0.006, height,
                                         transform=fig.transFigure, facecolor="#e8eef0", edgecolor="none"))
            for j, lines in enumerate(wrapped):
                for k, line in enumerate(lines):
                    fig.text(xs[j], self.y - 0.002 - k * PDF_LINE, line, fontsize=6.5, va="top",
                                  fontweight="bold" if header else "normal")
            self.y -= height
            fig.add_artist(Line2D([x0 - 0.003, x0 + width + 0.003], [self.y + 0.001] * 2, linewidth=0.3,
                                  color="#999999", transform=fig.transFigure))

        header_h = PDF_LINE * max(len(c) for c in cells(columns)) + 0.004
        page: list = [None]
        page[0] = self.need(header_h + PDF_LINE * 2)
        draw(columns, True)
        for row in rows:
            draw(row, False)


def _pdf_page(path: Path, title: str, meta: list[str], headline: str, extent, draw, sections: list[Section],
              attribution: str, map_height: float = 0.39) -> None:
    """A4 portrait pages: title, meta lines, map, then the sections (paragraphs wrapped in full, real tables);
    the text flows onto further pages rather than being cut."""
    with PdfPages(path, metadata={"Title": title, "Subject": "Trame verte et bleue"}) as pdf:
        flow = _PdfFlow(pdf, attribution)
        fig = flow.new_page()
        flow.text(title, x=0.06, chars=80, size=13, bold=True, gap=0.004)
        for line in meta + ([headline] if headline else []):
            flow.text(line, x=0.06, chars=120, size=7.5)
        ax = fig.add_axes((0.06, flow.y - map_height - 0.01, 0.62 * map_height / 0.39, map_height))
        handles = _setup(ax, extent, draw)
        add_scale_and_north(ax, north_x=0.04, north_y=(0.95, 0.86), compact=True)
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6.5, frameon=False)
        flow.y -= map_height + 0.03
        for s in sections:
            flow.need(0.05)
            flow.text(s.title, x=0.06, chars=100, size=9, bold=True, gap=0.003)
            for p in s.paragraphs:
                flow.text(p, gap=0.002)
            if s.columns:
                if s.rows:
                    flow.table(s.columns, s.rows)
                else:
                    flow.text(s.empty)
            flow.y -= 0.008
        flow.close_page()


def write_sheet(out_dir: Path, stem: str, *, title: str, meta: list[str], headline: str, alert: bool,
                extent: tuple[float, float, float, float], draw, sections: list[Section], attribution: str,
                links: list[tuple[str, str]] | None = None, map_height: float = 0.39) -> dict[str, str]:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.html``; returns their paths. ``links``: (label, href)
    shown above the title (back to the report, to the list of sheets); ``map_height``: share of the A4 page the
    PDF's map takes (smaller for the one-page screening sheet)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf, html = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf", out_dir / f"{stem}.html"
    _map_figure(extent, draw, attribution, title).savefig(png, dpi=DPI)
    _pdf_page(pdf, title, meta, headline, extent, draw, sections, attribution, map_height=map_height)
    env = Environment(autoescape=select_autoescape(default=True), undefined=StrictUndefined)
    image = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    html.write_text(env.from_string(_HTML).render(
        title=title, meta=meta, headline=headline, alert=alert, image=image, sections=sections,
        attribution=attribution, generated=datetime.now(UTC).strftime("%d/%m/%Y %H:%M UTC"),
        pdf=pdf.name, links=links or []), encoding="utf-8")
    return {"html": str(html), "pdf": str(pdf), "png": str(png)}


def _extent(geoms, pad_m: float) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = geoms.total_bounds
    pad = max(pad_m, 0.05 * max(xmax - xmin, ymax - ymin))
    return xmin - pad, ymin - pad, xmax + pad, ymax + pad


def _measure(count: int, value: float, decimals: int, unit: str) -> str:
    """"565 m", "6,89 ha"; "–" when nothing of that kind is touched (no "0m" beside a count of 0)."""
    return f"{fr(value, decimals)} {unit}" if count else "–"


SCREENING_MAP_HEIGHT = 0.30   # the screening sheet fits one A4 page (issue 15: "a one-page sheet")


# --- screening sheet -------------------------------------------------------------------------------------------------
def screening_sheet(territory: Territory, layers: dict[str, gpd.GeoDataFrame], result: ScreeningResult,
                    out_dir: Path, *, project_name: str, release_id: str, attribution: str,
                    stem: str = "fiche") -> dict[str, str]:
    """The "porter à connaissance" sheet of one screened project."""
    st_labels = {k: v.label for k, v in territory.sous_trames.items()}
    colors = sous_trame_colors(list(st_labels))
    foot = gpd.GeoSeries([result.footprint], crs=territory.crs)
    extent = _extent(foot, 1200.0)

    def draw(ax) -> list:
        box = gpd.GeoSeries.from_xy([extent[0], extent[2]], [extent[1], extent[3]], crs=territory.crs).total_bounds
        clip = {k: v.cx[box[0]:box[2], box[1]:box[3]] for k, v in layers.items() if k != "landuse"}
        if len(clip["communes"]):
            clip["communes"].boundary.plot(ax=ax, color="#888888", linewidth=0.4)
        handles: list[Artist] = []
        for st in territory.sous_trames:
            res = clip["reservoirs"][clip["reservoirs"]["sous_trame"] == st]
            if len(res):
                res.plot(ax=ax, color=colors[st], alpha=0.55, linewidth=0)
                handles.append(_patch(colors[st], f"Réservoirs – {st_labels[st]}", alpha=0.55))
        if len(clip["relays"]):
            clip["relays"].plot(ax=ax, facecolor="none", edgecolor="#33691e", hatch="///", linewidth=0.3)
            handles.append(_patch("white", "Zones relais", hatch="///", edge="#33691e"))
        for code, (label, color) in STATUS_STYLES.items():
            sel = clip["corridors"][clip["corridors"]["status"] == code]
            if len(sel):
                sel.plot(ax=ax, color=color, linewidth=1.6)
                handles.append(_line(color, f"Corridor {label.lower()}"))
        if len(clip["wet_corridors"]):
            clip["wet_corridors"].plot(ax=ax, color="#1f78b4", linewidth=1.4)
            handles.append(_line("#1f78b4", "Corridor humide"))
        if len(clip["rupture_points"]):
            clip["rupture_points"].plot(ax=ax, color="#e31a1c", markersize=14, edgecolor="black", linewidth=0.3)
            handles.append(_point("#e31a1c", "Point de rupture"))
        foot.plot(ax=ax, facecolor=PROJECT_COLOR, alpha=0.35, edgecolor=PROJECT_COLOR, linewidth=1.5)
        handles.append(_patch(PROJECT_COLOR, "Emprise du projet", alpha=0.35, edge=PROJECT_COLOR))
        return handles

    s = result.summary
    loss = result.connectivity
    from .ranking import crossing_phrase
    from .stage import project_facts_line

    if s.get("outside_territory"):
        headline = ("ATTENTION : le projet est hors du territoire (son emprise ne touche aucune commune de "
                    f"{territory.name}) : rien n'a pu être évalué ; vérifier le fichier et sa projection.")
    elif result.touches_anything:
        headline = "Le projet touche des éléments de la trame verte et bleue : voir le détail ci-dessous."
    else:
        headline = "Le projet ne touche aucun réservoir, zone relais, corridor ni site de rupture de cette publication."
    sections = [
        Section("Synthèse", ["Élément", "Nombre", "Surface / longueur touchée"], [
            ["Réservoirs de biodiversité", str(s["reservoirs"]),
             _measure(s["reservoirs"], s["reservoirs_affected_ha"], 2, "ha")],
            ["Zones relais", str(s["relays"]), _measure(s["relays"], s["relays_affected_ha"], 2, "ha")],
            ["Corridors écologiques", str(s["corridors"]), _measure(s["corridors"], s["corridors_affected_m"], 0, "m")],
            ["Corridors humides", str(s["wet_corridors"]),
             _measure(s["wet_corridors"], s["wet_corridors_affected_m"], 0, "m")],
            ["Sites de rupture", str(s["rupture_sites"]), "–"]]),
        Section("Perte de connectivité par sous-trame (ΔPC, ΔEC)",
                ["Sous-trame", "EC avant (ha)", "ΔPC (%)", "ΔEC (ha)"],
                [[r.libelle, fr(r.ec_ha), fr(r.delta_pc_pct, 2), fr(r.delta_ec_ha, 2)]
                 for r in loss.itertuples() if r.reservoirs_touched or r.corridors_touched],
                paragraphs=[f"Hypothèse : surfaces de réservoir couvertes perdues ; corridors traversés "
                            f"{'coupés' if s['corridor_effect'] == 'remove' else 'dégradés'} "
                            "(méthode dPC de Graphab appliquée à l'emprise)."],
                empty="Aucune perte de connectivité."),
        Section("Réservoirs et zones relais touchés", ["Élément", "Sous-trame", "Surface (ha)", "Touchée (ha)"],
                [[r.id, st_labels.get(r.sous_trame, r.sous_trame), fr(r.area_ha, 2), fr(r.affected_ha, 2)]
                 for r in pd.concat([result.reservoirs, result.relays]).itertuples()]),
        Section("Corridors touchés", ["Corridor", "Sous-trame", "Statut", "Longueur touchée (m)"],
                [[r.id, st_labels.get(r.sous_trame, r.sous_trame), STATUS_STYLES.get(r.status, (r.status,))[0],
                  fr(r.affected_m, 0)] for r in result.corridors.itertuples()]
                + [[r.id, st_labels.get(r.sous_trame, r.sous_trame), "corridor humide", fr(r.affected_m, 0)]
                   for r in result.wet_corridors.itertuples()]),
        Section("Sites de rupture touchés", ["Site", "Sous-trame", "Infrastructure", "Corridors"],
                [[r.site_id, st_labels.get(r.sous_trame, r.sous_trame),
                  crossing_phrase(r.infrastructure, getattr(r, "infra_class", None), r.infra_name),
                  r.corridor_ids] for r in result.rupture_sites.itertuples()]),
        Section("Priorités de restauration touchées", ["Rang", "Priorité", "Gain ΔPC (%)", "Alerte"],
                [[str(r.rank), str(r.libelle), fr(r.gain_dpc_pct, 2), str(r.flag or "")]
                 for r in result.priorities.itertuples()],
                empty="Le projet ne touche aucune priorité de restauration de cette publication."),
    ]
    meta = [f"Territoire : {territory.name}", f"Publication analysée : {release_id}",
            f"Emprise du projet : {fr(s['footprint_ha'], 2)} ha"]
    if result.project:
        meta.append(f"Projet : {project_facts_line(result.project)}")
    return write_sheet(out_dir, stem, title=f"Porter à connaissance TVB – {project_name}", meta=meta,
                       headline=headline, alert=result.touches_anything, extent=extent, draw=draw,
                       sections=sections, attribution=attribution, map_height=SCREENING_MAP_HEIGHT)


# --- fiches de préconisations par sous-trame -------------------------------------------------------------------------
def dominant_landuse(geoms: gpd.GeoSeries, landuse: gpd.GeoDataFrame, buffer_m: float = 25.0) -> list[str | None]:
    """Land-use class covering most of each geometry's ``buffer_m`` neighbourhood (None when none)."""
    out: list[str | None] = []
    if landuse is None or landuse.empty:
        return [None] * len(geoms)
    sindex = landuse.sindex
    for g in geoms:
        zone = g.buffer(buffer_m)
        idx = sindex.query(zone, predicate="intersects")
        if not len(idx):
            out.append(None)
            continue
        sel = landuse.iloc[idx]
        areas = sel.geometry.intersection(zone).area.groupby(sel["class"].to_numpy()).sum()
        out.append(str(areas.idxmax()) if len(areas) else None)
    return out


def sous_trame_fiche(territory: Territory, layers: dict[str, gpd.GeoDataFrame], priorities: gpd.GeoDataFrame,
                     sous_trame: str, out_dir: Path, *, release_id: str, attribution: str, top_n: int = 10
                     ) -> dict[str, str]:
    """Fiche de préconisations of one sous-trame: state, top priorities on a map, recommendations from YAML."""
    st_cfg = territory.sous_trames[sous_trame]
    text = fiches_config(territory)[sous_trame]
    class_labels = {c: v.label for c, v in territory.landuse.classes.items()}
    color = sous_trame_colors(list(territory.sous_trames))[sous_trame]
    res = layers["reservoirs"][layers["reservoirs"]["sous_trame"] == sous_trame]
    rel = layers["relays"][layers["relays"]["sous_trame"] == sous_trame]
    cor = layers["corridors"][layers["corridors"]["sous_trame"] == sous_trame]
    wet = layers["wet_corridors"][layers["wet_corridors"]["sous_trame"] == sous_trame] \
        if "sous_trame" in layers["wet_corridors"].columns else layers["wet_corridors"].iloc[0:0]
    pts = layers["rupture_points"][layers["rupture_points"]["sous_trame"] == sous_trame]
    own = priorities[priorities["sous_trame"] == sous_trame]
    n_zero = int((own["gain_dpc_pct"] <= GAIN_EPSILON).sum())
    top = own[own["gain_dpc_pct"] > GAIN_EPSILON].sort_values("rank_sous_trame").head(top_n)
    top_classes = dominant_landuse(_candidate_geoms(top, layers), layers.get("landuse"))
    extent = _extent(layers["communes"], 300.0)

    def draw(ax) -> list:
        layers["communes"].boundary.plot(ax=ax, color="#999999", linewidth=0.3)
        handles: list[Artist] = []
        if len(res):
            res.plot(ax=ax, color=color, linewidth=0)
            handles.append(_patch(color, "Réservoirs de biodiversité"))
        if len(rel):
            rel.plot(ax=ax, color=color, alpha=0.35, linewidth=0)
            handles.append(_patch(color, "Zones relais", alpha=0.35))
        for code, (label, c) in STATUS_STYLES.items():
            sel = cor[cor["status"] == code]
            if len(sel):
                sel.plot(ax=ax, color=c, linewidth=1.0)
                handles.append(_line(c, f"Corridor {label.lower()}"))
        if len(wet):
            wet.plot(ax=ax, color="#1f78b4", linewidth=1.0)
            handles.append(_line("#1f78b4", "Corridor humide"))
        if len(pts):
            pts.plot(ax=ax, color="#e31a1c", markersize=5)
            handles.append(_point("#e31a1c", "Point de rupture"))
        if len(top):
            top.plot(ax=ax, color=PRIORITY_COLOR, markersize=60, edgecolor="black", linewidth=0.6, zorder=5)
            for r in top.itertuples():
                ax.annotate(str(r.rank_sous_trame), (r.geometry.x, r.geometry.y), fontsize=6, ha="center",
                            va="center", zorder=6, fontweight="bold")
            handles.append(_point(PRIORITY_COLOR, f"Priorités (n° dans la sous-trame, {len(top)} premières)"))
        return handles

    status_km = {code: cor.loc[cor["status"] == code].length.sum() / 1000 for code in STATUS_STYLES}
    # a trame bleue carried by its watercourses has no terrestrial corridor by status: its corridors are the
    # watercourse network (no "Corridors existants : 0" above "Corridors humides : 40")
    status_rows = [] if (cor.empty and len(wet)) else [
        [f"Corridors {STATUS_PLURAL.get(code, label.lower())}", str(int((cor['status'] == code).sum())),
         f"{fr(status_km[code], 2)} km"] for code, (label, _) in STATUS_STYLES.items()]
    state = Section("État de la sous-trame", ["Élément", "Nombre", "Surface / longueur"], [
        ["Réservoirs de biodiversité", str(len(res)), f"{fr(res.area.sum() / 1e4)} ha"],
        ["Zones relais", str(len(rel)), f"{fr(rel.area.sum() / 1e4)} ha"],
        *status_rows,
        *([["Corridors humides (réseau des cours d'eau)", str(len(wet)), f"{fr(wet.length.sum() / 1000, 2)} km"]]
          if len(wet) else []),
        ["Points de rupture", str(len(pts)), "–"]])
    zero_note = (f"{n_zero} élément(s) de la sous-trame sans gain de connectivité (« gain nul ») ne sont pas "
                 "listés." if n_zero else "")
    prio = Section(f"Priorités de restauration ({len(top)} premières avec un gain)",
                   ["N°", "Élément", "Gain ΔPC (%)", "Coût (indice)", "Conflit projet", "Gestion", "Commune",
                    "Milieu dominant", "Alerte"],
                   [[str(r.rank_sous_trame), priority_name(r), fr(r.gain_dpc_pct, 2), fr(r.cost_proxy, 0),
                     r.projects or "–", r.maintenance or "–", r.commune, class_labels.get(cls, "–") if cls else "–",
                     str(r.flag or "–")]
                    for r, cls in zip(top.itertuples(), top_classes)],
                   paragraphs=[zero_note] if zero_note else [],
                   empty="Aucun élément de cette sous-trame n'a de gain de connectivité.")
    recos = [text.general] if text.general else []
    for cls in dict.fromkeys(c for c in top_classes if c):
        if cls in text.landuse:
            recos.append(f"{class_labels.get(cls, cls)} : {text.landuse[cls]}")
    reco = Section("Préconisations de gestion", paragraphs=recos or ["Aucune préconisation configurée."])
    meta = [f"Territoire : {territory.name}", f"Publication : {release_id}",
            f"Trame {st_cfg.trame} — réservoirs ≥ {fr(st_cfg.reservoir_min_area_ha, 1)} ha"]
    return write_sheet(out_dir, f"fiche_{sous_trame}", title=f"Fiche de préconisations – {st_cfg.label}", meta=meta,
                       headline="", alert=False, extent=extent, draw=draw, sections=[state, prio, reco],
                       attribution=attribution, links=FICHE_LINKS)


STATUS_PLURAL = {"existing": "existants", "to_restore": "à restaurer", "to_create": "à créer"}
# the fiches live in report/fiches/: back to the report, to their list
FICHE_LINKS = [("← Rapport de la publication", "../index.html"), ("Toutes les fiches de préconisations", "index.html")]


def priority_name(r) -> str:
    """Readable name of a priority row (``candidate``, ``infrastructure``, ``infra_name``, ``status``,
    ``length_m``, ``commune``, ``id``): "Franchissement de la route A21 (S0021)", "Corridor à créer,
    1,2 km (mining-C026)"; the code stays in parentheses to find it on the map."""
    name = getattr(r, "infra_name", None)
    name = name if isinstance(name, str) and name else ""
    if getattr(r, "candidate", "") == "corridor":
        status = STATUS_STYLES.get(str(getattr(r, "status", "")), ("",))[0].lower()
        length = getattr(r, "length_m", None)
        km = f", {fr(length / 1000, 1)} km" if isinstance(length, (int, float)) and length == length else ""
        return f"Corridor {status}{km} ({r.id})".replace("Corridor ,", "Corridor,")
    return f"{crossing_name(getattr(r, 'infrastructure', ''), getattr(r, 'infra_class', None), name)} ({r.id})"


def _candidate_geoms(top: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame]) -> gpd.GeoSeries:
    """The corridor line of corridor priorities, the point of site priorities."""
    cor = layers["corridors"].set_index(layers["corridors"]["id"].astype(str)).geometry
    geoms = [cor.get(r.id, r.geometry) if r.candidate == "corridor" else r.geometry for r in top.itertuples()]
    return gpd.GeoSeries(geoms, crs=top.crs)


def write_fiches(territory: Territory, layers: dict[str, gpd.GeoDataFrame], priorities: gpd.GeoDataFrame,
                 out_dir: Path, *, release_id: str, attribution: str, top_n: int = 10) -> list[str]:
    """One fiche (HTML + PDF + PNG) per sous-trame in ``out_dir``, plus an ``index.html`` listing them."""
    out_dir = Path(out_dir)
    files = []
    links = []
    for st, cfg in territory.computed_sous_trames.items():
        paths = sous_trame_fiche(territory, layers, priorities, st, out_dir, release_id=release_id,
                                 attribution=attribution, top_n=top_n)
        files += list(paths.values())
        links.append((cfg.label, Path(paths["html"]).name, Path(paths["pdf"]).name))
    env = Environment(autoescape=select_autoescape(default=True))
    index = out_dir / "index.html"
    style = _HTML[_HTML.index("<style>"):_HTML.index("</style>") + len("</style>")]   # same look as the sheets
    index.write_text(env.from_string(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>Fiches de préconisations – {{ name }}</title>{{ style|safe }}</head><body>"
        "<nav class=\"meta\"><a href=\"../index.html\">← Rapport de la publication</a></nav>"
        "<h1>Fiches de préconisations par milieu – {{ name }}</h1>"
        "<p>Une fiche par sous-trame : état du réseau, priorités de restauration et préconisations de gestion."
        "</p><table><tr><th>Sous-trame</th><th>Fiche</th></tr>{% for l, h, p in links %}"
        "<tr><td><a href=\"{{ h }}\">{{ l }}</a></td><td><a href=\"{{ p }}\">PDF</a></td></tr>{% endfor %}"
        "</table><p class=\"note\">Publication {{ release_id }}.</p></body></html>"
    ).render(name=territory.name, links=links, style=style, release_id=release_id), encoding="utf-8")
    return [str(index), *files]
