"""Maps and charts of the release report (matplotlib, no pyplot state): PNG files, also added to a PDF.

Every map has a French title, the commune names, a legend, a scale bar, a north arrow and the credit line.
Geometries are in EPSG:2154 (metres), so the scale bar is drawn in data units. Every page (maps, charts, tables,
text) is A4 landscape, so the PDF has one page size; the pages that are not maps (tables, text, contents) and the
:class:`PdfBook` that numbers them are in :mod:`.pages`.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from tvb_tasks.errors import InvalidInputError
from tvb_tasks.publish.report.pages import (  # noqa: F401 - the page helpers are also importable from here
    A4_LANDSCAPE_IN,
    DPI,
    PdfBook,
    _table_layout,
    contents_page,
    image_page,
    table_block_height,
    table_page,
    tables_page,
    text_page,
)
from tvb_tasks.publish.styles import STATUS_STYLES, palette, sous_trame_colors

MAP_SIZE_IN = A4_LANDSCAPE_IN
MAP_AXES = (0.01, 0.07, 0.68, 0.85)   # the map; the legend sits to its right
LABEL_ZORDER = 20     # map content below this is rasterised in the PDF (thousands of polygons), labels stay text
LANDUSE_COLORS = {"artificial": "#bdbdbd", "farmland": "#f3e7a9", "meadow": "#d4e8b0", "forest": "#2e7d32",
                  "grassland": "#c0ca33", "wetland": "#4fc3f7", "water": "#1565c0", "mining": "#6d4c41"}
CHANGE_STYLES = {  # change code → (French label, colour): blue = gain, orange = loss (colour-blind safe, PuOr)
    "gained": ("gagné", "#2166ac"), "lost": ("perdu", "#e08214"), "resized": ("surface modifiée", "#b2abd2"),
    "status_changed": ("statut modifié", "#542788"), "new": ("nouveau", "#2166ac"), "removed": ("supprimé", "#e08214"),
}
INFRA_STYLES = {  # fragmenting infrastructure on the rupture map: (label, colour, width, dashes)
    "road": ("Route passante", "#444444", 1.1, None), "railway": ("Voie ferrée exploitée", "#111111", 1.3, (3, 2)),
    "canal": ("Canal (berges franches)", "#b35806", 1.6, None),   # brown-orange like its points, not purple
}


@dataclass(frozen=True)
class MapContext:
    """What every map shares: commune outlines (with ``nom``), the credit line, the PDF book being written (or
    None)."""

    communes: gpd.GeoDataFrame
    attribution: str
    out_dir: Path
    pdf: PdfBook | PdfPages | None


def nice_length(max_m: float) -> float:
    """The largest 1-2-5 × 10^n length (m) not above ``max_m``."""
    if max_m <= 0:
        raise InvalidInputError("max_m must be > 0")
    power = 10 ** math.floor(math.log10(max_m))
    return max(m * power for m in (1, 2, 5) if m * power <= max_m)


def _length_label(metres: float) -> str:
    return f"{metres / 1000:g} km".replace(".", ",") if metres >= 1000 else f"{metres:g} m"


def add_scale_and_north(ax, *, north_x: float, north_y: tuple[float, float], compact: bool = False) -> None:
    """A map's scale bar (the 1-2-5 length nearest a fifth of its width, lower left) and north arrow (tip and base
    at ``north_y``, axes fraction); ``compact``: smaller, for the priority sheets. Used by every map of the report
    and of the fiches (:mod:`tvb_tasks.priorities.sheets`)."""
    font, pad, borderpad, sep, north_size, lw = (7, 0.4, 0.6, 3, 9, 1.3) if compact else (8, 0.5, 0.8, 4, 10, 1.5)
    width = ax.get_xlim()[1] - ax.get_xlim()[0]
    length = nice_length(width / 5)
    ax.add_artist(AnchoredSizeBar(ax.transData, length, _length_label(length), loc="lower left", pad=pad,
                                  borderpad=borderpad, sep=sep, frameon=True, size_vertical=width / 250,
                                  fontproperties={"size": font}))
    ax.annotate("N", xy=(north_x, north_y[0]), xytext=(north_x, north_y[1]), xycoords="axes fraction", ha="center",
                va="center", fontsize=north_size, fontweight="bold",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": lw})


def _new_map(ctx: MapContext, title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=MAP_SIZE_IN, dpi=DPI)
    ax = fig.add_axes(MAP_AXES)
    fig.text(0.01, 0.95, title, fontsize=13)
    xmin, ymin, xmax, ymax = ctx.communes.total_bounds
    pad = 0.03 * max(xmax - xmin, ymax - ymin)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_rasterization_zorder(LABEL_ZORDER)
    return fig, ax


def _draw_communes(ax, communes: gpd.GeoDataFrame, zorder: int = 5, names: bool = True,
                   fontsize: float = 6.0) -> None:
    """Commune outlines and, when the layer has ``nom``, their names at a point inside each (white halo)."""
    communes.boundary.plot(ax=ax, color="#555555", linewidth=0.4, zorder=zorder)
    if names:
        _commune_labels(ax, communes, fontsize)


def _commune_labels(ax, communes: gpd.GeoDataFrame, fontsize: float = 6.0) -> None:
    """The names of the communes (column ``nom``) whose point inside lies in the axes' frame, at that point (white
    box)."""
    if "nom" not in communes.columns or communes.empty:
        return
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for name, point in zip(communes["nom"], communes.geometry.representative_point()):
        if x0 <= point.x <= x1 and y0 <= point.y <= y1:
            ax.text(point.x, point.y, textwrap.fill(str(name), 18), fontsize=fontsize, ha="center", va="center",
                    color="#222222", zorder=LABEL_ZORDER, clip_on=True,   # a light box, not a path halo: 10× faster
                    bbox={"facecolor": "white", "alpha": 0.65, "edgecolor": "none", "pad": 0.4})


def _finish(ctx: MapContext, fig: Figure, ax, name: str, handles: list, legend_title: str | None = None) -> Path:
    """Legend, scale bar, north arrow, attribution; save ``maps/<name>.png`` and add the page to the PDF."""
    if handles:
        ax.legend(handles=handles, title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title_fontsize=8, frameon=False)
    add_scale_and_north(ax, north_x=0.035, north_y=(0.93, 0.84))
    fig.text(0.01, 0.012, textwrap.fill(ctx.attribution, 175), fontsize=6.5, color="#333333")
    fig.text(0.99, 0.08, "Projection Lambert-93 (EPSG:2154)", fontsize=6.5, color="#333333", ha="right")
    return _save(ctx, fig, f"{name}.png")


def _save(ctx: MapContext, fig: Figure, filename: str) -> Path:
    """Save ``maps/<filename>`` and add the figure to the PDF as a page."""
    path = ctx.out_dir / "maps" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    if ctx.pdf is not None:
        ctx.pdf.savefig(fig)
    return path


def _wrap(label: str) -> str:
    return textwrap.fill(label, 40)


def _patch(color: str, label: str, alpha: float = 1.0, hatch: str | None = None, edge: str = "#333333") -> Patch:
    return Patch(facecolor=color, edgecolor=edge, alpha=alpha, hatch=hatch, label=_wrap(label), linewidth=0.6)


def _line(color: str, label: str, width: float = 2.0, style: str = "-") -> Line2D:
    return Line2D([], [], color=color, lw=width, ls=style, label=_wrap(label))


def _point(color: str, label: str, marker: str = "o") -> Line2D:
    return Line2D([], [], color=color, marker=marker, ls="", markersize=7, markeredgecolor="black",
                  label=_wrap(label))


def landuse_map(ctx: MapContext, landuse: gpd.GeoDataFrame, class_labels: dict[str, str]) -> Path:
    """Land use by class (classes of the territory configuration, in its order)."""
    fig, ax = _new_map(ctx, "Occupation du sol")
    colors = palette(list(class_labels), LANDUSE_COLORS)
    handles = []
    for cls, label in class_labels.items():
        sel = landuse[landuse["class"] == cls]
        if len(sel):
            sel.plot(ax=ax, color=colors[cls], linewidth=0, zorder=1)
            handles.append(_patch(colors[cls], label))
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, "occupation_du_sol", handles)


def network_map(ctx: MapContext, reservoirs: gpd.GeoDataFrame, relays: gpd.GeoDataFrame,
                st_labels: dict[str, str], sous_trames: list[str], name: str, title: str) -> Path:
    """Reservoirs (solid) and relays (hatched) of the given sous-trames, coloured by sous-trame."""
    fig, ax = _new_map(ctx, title)
    ctx.communes.plot(ax=ax, color="#f7f7f7", linewidth=0, zorder=0)
    colors = sous_trame_colors(list(st_labels))
    handles = []
    for st in sous_trames:
        res = reservoirs[reservoirs["sous_trame"] == st]
        rel = relays[relays["sous_trame"] == st]
        if len(res):
            res.plot(ax=ax, color=colors[st], edgecolor="#1b1b1b", linewidth=0.2, zorder=2)
            handles.append(_patch(colors[st], f"Réservoirs – {st_labels[st]}"))
        if len(rel):
            rel.plot(ax=ax, facecolor="white", edgecolor=colors[st], hatch="////", linewidth=0.6, zorder=3)
            handles.append(_patch("white", f"Zones relais – {st_labels[st]}", hatch="////", edge=colors[st]))
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, name, handles)


def corridors_map(ctx: MapContext, corridors: gpd.GeoDataFrame, reservoirs: gpd.GeoDataFrame,
                  wet_corridors: gpd.GeoDataFrame | None = None, name: str = "corridors",
                  title: str = "Corridors écologiques terrestres par statut", by_stretch: bool = False) -> Path:
    """Corridors coloured by status over the reservoirs (grey); optionally the wet corridors (blue). With
    ``by_stretch`` the lines are the corridor stretches (status per stretch, as the key figures' km by status) and
    the legend says so."""
    fig, ax = _new_map(ctx, title)
    handles: list[Artist] = []
    if len(reservoirs):
        reservoirs.plot(ax=ax, color="#c8d9c3", edgecolor="#7a9a72", linewidth=0.2, zorder=1)
        handles.append(_patch("#c8d9c3", "Réservoirs de biodiversité"))
    for status, (label, color) in STATUS_STYLES.items():
        sel = corridors[corridors["status"] == status]
        if len(sel):
            sel.plot(ax=ax, color=color, linewidth=1.8, zorder=4)
            handles.append(_line(color, f"{'Tronçon de corridor' if by_stretch else 'Corridor'} {label.lower()}"))
    if wet_corridors is not None and len(wet_corridors):
        wet_corridors.plot(ax=ax, color="#1f78b4", linewidth=1.6, zorder=3)
        handles.append(_line("#1f78b4", "Corridor humide (cours d'eau à ciel ouvert)"))
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, name, handles)


RUPTURE_COLORS = {"road": "#d7301f", "railway": "#7b3294", "canal": "#e66101", "river_obstacle": "#01665e",
                  "culvert": "#1b9e77"}   # culverts (busages) green-teal: never the railway purple


def rupture_kind_styles(kinds: list[str]) -> dict[str, tuple[str, str]]:
    """(French label, colour) of each rupture point infrastructure code on the static map: labels from
    ``styles.VALUE_LABELS["infrastructure"]``, unknown codes keep their code and take a fallback colour."""
    from tvb_tasks.publish.styles import VALUE_LABELS

    colors = palette(kinds, RUPTURE_COLORS)
    words = VALUE_LABELS["infrastructure"]
    return {k: (words.get(k, k), colors[k]) for k in kinds}


def rupture_map(ctx: MapContext, points: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame,
                wet_corridors: gpd.GeoDataFrame, infrastructure: gpd.GeoDataFrame | None = None,
                vigilance: gpd.GeoDataFrame | None = None) -> Path:
    """Rupture points by type of infrastructure and severity (marker size) over the corridors and, when given, the
    fragmenting infrastructure (``infra_type`` road / railway / canal) they cross; missing links, severity-4 points
    and points de vigilance set apart (:func:`tvb_tasks.publish.report.fractures.draw_fractures`)."""
    fig, ax = _new_map(ctx, "Points de rupture des continuités et infrastructures fragmentantes")
    handles = []
    if infrastructure is not None and len(infrastructure):
        for kind, (label, color, width, dashes) in INFRA_STYLES.items():
            sel = infrastructure[infrastructure["infra_type"] == kind]
            if len(sel):
                sel.plot(ax=ax, color=color, linewidth=width, zorder=2, **({"linestyle": (0, dashes)} if dashes else {}))
                handles.append(_line(color, label, width, "--" if dashes else "-"))
    if len(corridors):
        corridors.plot(ax=ax, color="#7fbf7b", linewidth=1.6, alpha=0.8, zorder=1)
        handles.append(_line("#7fbf7b", "Corridor terrestre", 1.6))
    if len(wet_corridors):
        wet_corridors.plot(ax=ax, color="#8ab6d6", linewidth=1.6, zorder=1)
        handles.append(_line("#8ab6d6", "Corridor humide", 1.6))
    column = next((c for c in ("infra_type", "infrastructure") if c in points.columns), None)
    kinds = sorted(points[column].fillna("autre").astype(str).unique()) if column and len(points) else []
    styles = rupture_kind_styles(kinds)
    sizes = {1: 14, 2: 24, 3: 40, 4: 60}
    severity = points["severity"].fillna(2).astype(int) if "severity" in points.columns else None
    for kind in kinds:
        sel = points[points[column].fillna("autre").astype(str) == kind]
        size = severity.loc[sel.index].map(sizes).fillna(24).to_numpy() if severity is not None else 28
        sel.plot(ax=ax, color=styles[kind][1], markersize=size, edgecolor="black", linewidth=0.5, zorder=5)
        handles.append(_point(styles[kind][1], f"Point de rupture – {styles[kind][0]}"))
    if not kinds and len(points):
        points.plot(ax=ax, color="#d7301f", markersize=28, edgecolor="black", linewidth=0.5, zorder=5)
        handles.append(_point("#d7301f", "Point de rupture"))
    from tvb_tasks.publish.report.fractures import draw_fractures

    handles += draw_fractures(ax, points, corridors, vigilance)
    if severity is not None and len(points):
        from tvb_tasks.publish.styles import VALUE_LABELS

        for level in sorted(severity.unique()):
            handles.append(Line2D([], [], color="white", marker="o", ls="", markeredgecolor="black",
                                  markersize=math.sqrt(sizes.get(int(level), 24)),
                                  label=f"gravité {VALUE_LABELS['severity'].get(str(level), level)}"))
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, "points_de_rupture", handles)


def connectivity_map(ctx: MapContext, reservoirs: gpd.GeoDataFrame, nodes: pd.DataFrame) -> Path:
    """Reservoirs coloured by their importance for connectivity (dPC, %, within their sous-trame)."""
    fig, ax = _new_map(ctx, "Importance des réservoirs pour la connectivité (dPC)")
    ctx.communes.plot(ax=ax, color="#f7f7f7", linewidth=0, zorder=0)
    joined = reservoirs.assign(id=reservoirs["id"].astype(str), sous_trame=reservoirs["sous_trame"].astype(str))
    joined = joined.merge(nodes[["id", "sous_trame", "dpc"]].astype({"id": str, "sous_trame": str}),
                          on=["id", "sous_trame"], how="left")
    bins = [0, 1, 5, 20, 50, 100.0001]
    colors = ["#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"]
    labels = ["< 1 %", "1 – 5 %", "5 – 20 %", "20 – 50 %", "≥ 50 %"]
    handles = []
    classes = np.digitize(joined["dpc"].fillna(0).to_numpy(), bins[1:-1])
    for i, (color, label) in enumerate(zip(colors, labels)):
        sel = joined[classes == i]
        if len(sel):
            sel.plot(ax=ax, color=color, edgecolor="#333333", linewidth=0.3, zorder=2)
            handles.append(_patch(color, label))
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, "connectivite_dpc", handles, legend_title="dPC (perte de PC si supprimé)")


def change_map(ctx: MapContext, change_layers: dict[str, gpd.GeoDataFrame]) -> Path:
    """Reservoirs / relays gained or lost, corridors gained, lost or whose status changed, rupture points."""
    fig, ax = _new_map(ctx, "Évolutions depuis la publication précédente")
    ctx.communes.plot(ax=ax, color="#f7f7f7", linewidth=0, zorder=0)
    handles: list[Artist] = []
    names = {"reservoirs_change": "Réservoir", "relays_change": "Zone relais", "corridors_change": "Corridor",
             "rupture_points_change": "Point de rupture"}
    for layer, noun in names.items():
        gdf = change_layers.get(layer)
        if gdf is None or gdf.empty:
            continue
        for change, (label, color) in CHANGE_STYLES.items():
            sel = gdf[gdf["change"] == change]
            if sel.empty:
                continue
            if layer == "corridors_change":
                sel.plot(ax=ax, color=color, linewidth=2.2, zorder=4)
                handles.append(_line(color, f"{noun} {label}"))
            elif layer == "rupture_points_change":
                sel.plot(ax=ax, color=color, markersize=30, marker="^", edgecolor="black", linewidth=0.5, zorder=5)
                handles.append(_point(color, f"{noun} {label}", "^"))
            else:
                hatch = "////" if layer == "relays_change" else None
                sel.plot(ax=ax, facecolor=color, edgecolor="#333333", hatch=hatch, linewidth=0.4, alpha=0.85,
                         zorder=2)
                handles.append(_patch(color, f"{noun} {label}", 0.85, hatch))
    if not handles:
        ax.text(0.5, 0.5, "Aucun changement détecté", transform=ax.transAxes, ha="center", fontsize=12)
    _draw_communes(ax, ctx.communes)
    return _finish(ctx, fig, ax, "evolutions", handles)


# --- charts over time ------------------------------------------------------------------------------------------------
HISTORY_PANELS: list[tuple[str, str, list[tuple[str, str, str, str]]]] = [
    # (title, y unit, [(family, indicator, sous_trame ('' = none, '*' = one line per sous-trame), label)])
    ("Occupation du sol", "%", [("key_figures", "artificialised_share_pct", "", "Espaces artificialisés"),
                                ("key_figures", "natural_share_pct", "", "Espaces naturels")]),
    ("Corridors", "km", [("key_figures", "terrestrial_corridors_existing_km", "", "Terrestres existants"),
                         ("key_figures", "terrestrial_corridors_to_restore_km", "", "Terrestres à restaurer"),
                         ("key_figures", "terrestrial_corridors_to_create_km", "", "Terrestres à créer"),
                         ("key_figures", "wet_corridors_km", "", "Humides")]),
    ("Réservoirs et zones relais", "ha", [("key_figures", "terrestrial_reservoirs_relays_ha", "", "Terrestres"),
                                          ("key_figures", "wet_reservoirs_relays_ha", "", "Humides")]),
    ("Points de rupture", "nombre", [("key_figures", "rupture_points", "", "Points de rupture")]),
    ("Surface connectée équivalente EC(PC)", "ha", [("connectivity", "ec_pc_ha", "*", "")]),
    ("Taille effective de maille (meff CBC)", "ha", [("fragmentation", "meff_cbc_ha", "*", "")]),
]


def release_tick_labels(releases: pd.DataFrame) -> list[str]:
    """Short x labels of releases (``release_id``, ``released_at``): the date "30/11/26", with the time when two
    releases share a day; the id's last 8 characters when the date is unknown (ids are too long for an axis)."""
    when = pd.to_datetime(releases["released_at"], errors="coerce", utc=True)
    days = when.dt.strftime("%d/%m/%y")
    dup = days.duplicated(keep=False)
    out = []
    for rid, w, d, twice in zip(releases["release_id"], when, days, dup):
        if pd.isna(w):
            out.append(f"…{str(rid)[-8:]}")
        else:
            out.append(f"{d} {w.strftime('%H:%M')}" if twice else d)
    return out


def history_figure(history: pd.DataFrame, st_labels: dict[str, str], attribution: str) -> Figure:
    """Indicators over the releases (territory scope): one panel per theme, one line per indicator. Each panel's
    legend sits inside it, above the curves (head-room added), so legends never spill over another panel; x labels
    are short dates, clear of the credit line."""
    rows = history[history["scope"] == "territory"]
    releases = (rows[["release_id", "released_at"]].drop_duplicates("release_id")
                .sort_values(["released_at", "release_id"]))
    order = {r: i for i, r in enumerate(releases["release_id"])}
    ticks = release_tick_labels(releases)
    step = max(1, math.ceil(len(ticks) / 8))                  # at most 8 labels per axis
    fig = Figure(figsize=A4_LANDSCAPE_IN, dpi=DPI)
    fig.text(0.01, 0.965, "Évolution des indicateurs par publication", fontsize=13)
    fig.text(0.01, 0.94, "Abscisse : date de chaque publication (identifiants dans l'historique des indicateurs).",
             fontsize=7.5, color="#555555")
    axes = fig.subplots(2, 3).ravel()
    colors = sous_trame_colors(list(st_labels))
    for ax, (title, unit, series) in zip(axes, HISTORY_PANELS):
        top = 0.0
        for family, indicator, st_filter, label in series:
            sel = rows[(rows["family"] == family) & (rows["indicator"] == indicator)]
            for st in (sorted(sel["sous_trame"].unique()) if st_filter == "*" else [st_filter]):
                g = sel[sel["sous_trame"] == st].assign(x=lambda f: f["release_id"].map(order)).sort_values("x")
                if len(g):
                    ax.plot(g["x"], g["value"], marker="o", markersize=3,
                            label=_wrap_short(st_labels.get(st, st) if st_filter == "*" else label),
                            color=colors.get(st) if st else None)
                    top = max(top, float(pd.to_numeric(g["value"], errors="coerce").max()))
        ax.set_title(title, fontsize=9.5, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        n_entries = len(ax.get_legend_handles_labels()[0])
        ax.set_ylim(0, (top if top > 0 else 1.0) * (1.3 + 0.12 * math.ceil(n_entries / 2)))   # room for the legend
        ax.set_xlim(-0.5, max(len(order) - 0.5, 0.5))
        ax.set_xticks(range(0, len(order), step), ticks[::step], rotation=30, ha="right", fontsize=6.5)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if n_entries:
            ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=True, framealpha=0.85, borderaxespad=0.3,
                      handlelength=1.5, columnspacing=0.8)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.89, bottom=0.15, hspace=0.45, wspace=0.25)
    fig.text(0.01, 0.012, textwrap.fill(attribution, 175), fontsize=6.5, color="#333333")
    return fig


def _wrap_short(label: str, width: int = 28) -> str:
    return textwrap.fill(str(label), width)


def history_chart(ctx: MapContext, history: pd.DataFrame, st_labels: dict[str, str]) -> Path:
    """The indicators-over-releases page (:func:`history_figure`) as ``maps/evolution_indicateurs.png`` and a PDF
    page."""
    fig = history_figure(history, st_labels, ctx.attribution)
    return _save(ctx, fig, "evolution_indicateurs.png")


# --- commune sheets ----------------------------------------------------------------------------------------------------
SHEET_DPI = 80
SHEET_LAYERS = ("reservoirs", "relays", "corridors", "wet_corridors", "rupture_points")


@dataclass
class SheetBase:
    """The page every commune sheet shares, drawn once (:func:`sheet_base`): the commune fills, the network layers of
    the whole territory, the commune outlines and the credit line. :func:`commune_sheet` adds a commune's own parts
    (its frame, white fill, outline, neighbours' names, scale bar, figures, legend), renders the page and removes them
    again, so the shared parts are not re-plotted 36 times (one geopandas plot call costs ≈ 10 ms)."""

    fig: Figure
    ax: Axes
    canvas: FigureCanvasAgg         # set on the figure only to render: Agg redraws the page on every plot call
    idle: FigureCanvasBase
    layers: dict[str, gpd.GeoDataFrame | None]
    colors: dict[str, str]
    shared: frozenset[int]          # ids of the artists of the base, kept from sheet to sheet


def sheet_base(ctx: MapContext, layers: dict[str, gpd.GeoDataFrame | None], st_labels: dict[str, str]) -> SheetBase:
    """Draw the shared part of the commune sheets (A4, :data:`SHEET_DPI`): every layer of :data:`SHEET_LAYERS` over
    the whole territory, in the order and z-order of the sheet (commune fills 0, reservoirs 2, relays 3, corridors
    and wet corridors 4, outlines 5, rupture points 6); a sheet's frame shows the part around its commune."""
    fig = Figure(figsize=A4_LANDSCAPE_IN, dpi=SHEET_DPI)
    canvas = FigureCanvasAgg(fig)       # one renderer for every sheet (its text metrics cached)
    idle = FigureCanvasBase(fig)
    ax = fig.add_axes((0.01, 0.07, 0.6, 0.83))
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_rasterization_zorder(LABEL_ZORDER)
    ctx.communes.plot(ax=ax, color="#f0f0f0", linewidth=0, zorder=0)
    colors = sous_trame_colors(list(st_labels))
    res, rel = layers.get("reservoirs"), layers.get("relays")      # one plot call per layer (colours per feature)
    if res is not None and len(res):
        res.plot(ax=ax, color=res["sous_trame"].map(colors).fillna("#999999").tolist(), edgecolor="#1b1b1b",
                 linewidth=0.2, alpha=0.85, zorder=2)
    if rel is not None and len(rel):
        rel.plot(ax=ax, facecolor="white", edgecolor=rel["sous_trame"].map(colors).fillna("#999999").tolist(),
                 hatch="////", linewidth=0.6, zorder=3)
    corr = layers.get("corridors")
    if corr is not None and len(corr):
        status_colors = {code: color for code, (_, color) in STATUS_STYLES.items()}
        corr.plot(ax=ax, color=corr["status"].map(status_colors).fillna("#999999").tolist(), linewidth=2.0,
                  zorder=4)
    wet = layers.get("wet_corridors")
    if wet is not None and len(wet):
        wet.plot(ax=ax, color="#1f78b4", linewidth=1.8, zorder=4)
    pts = layers.get("rupture_points")
    if pts is not None and len(pts):
        pts.plot(ax=ax, color="#d7301f", markersize=30, edgecolor="black", linewidth=0.5, zorder=6)
    ctx.communes.boundary.plot(ax=ax, color="#888888", linewidth=0.5, zorder=5)
    ctx.communes.boundary.plot(ax=ax, color="#555555", linewidth=0.4, zorder=5)
    fig.text(0.01, 0.012, textwrap.fill(ctx.attribution, 175), fontsize=6.5, color="#333333")
    shared = frozenset(map(id, [*ax.get_children(), *fig.get_children()]))
    return SheetBase(fig, ax, canvas, idle, dict(layers), colors, shared)


def commune_sheet(ctx: MapContext, commune: pd.Series, layers: dict[str, gpd.GeoDataFrame], st_labels: dict[str, str],
                  rows: list[tuple[str, str]], *, title: str, subtitle: str, name: str,
                  base: SheetBase | None = None) -> Path:
    """One A4 page for a commune: its map (reservoirs, relays, corridors, wet corridors, rupture points, neighbours
    named) on the left, its figures (``rows`` of (label, formatted value)) on the right. Saves
    ``maps/communes/<name>.png`` and adds the page to the PDF. ``base``: the shared page of the sheets
    (:func:`sheet_base` of ``layers``), made here when not given; a sheet drawn on it is the sheet drawn alone."""
    base = base or sheet_base(ctx, layers, st_labels)
    fig, ax = base.fig, base.ax
    fig.text(0.01, 0.955, title, fontsize=15, fontweight="bold", color="#1b5e20")
    fig.text(0.01, 0.925, subtitle, fontsize=9, color="#444444")
    geom = commune.geometry
    xmin, ymin, xmax, ymax = geom.bounds
    pad = 0.08 * max(xmax - xmin, ymax - ymin)
    # a square-ish frame around the commune
    cx, cy, half = (xmin + xmax) / 2, (ymin + ymax) / 2, max(xmax - xmin, ymax - ymin) / 2 + pad
    ax.set_xlim(cx - half * 1.1, cx + half * 1.1)
    ax.set_ylim(cy - half, cy + half)
    box = (cx - 1.2 * half, cy - 1.1 * half, cx + 1.2 * half, cy + 1.1 * half)
    near = {k: (v.cx[box[0]:box[2], box[1]:box[3]] if v is not None and len(v) else v)
            for k, v in base.layers.items()}
    others = ctx.communes[ctx.communes.index != commune.name]
    gpd.GeoSeries([geom], crs=ctx.communes.crs).plot(ax=ax, color="#ffffff", linewidth=0, zorder=0)
    colors = base.colors
    handles: list[Artist] = []      # the legend lists what the frame shows
    res, rel = near.get("reservoirs"), near.get("relays")
    for st, label in st_labels.items():
        if res is not None and len(res) and (res["sous_trame"] == st).any():
            handles.append(_patch(colors[st], f"Réservoir – {label}"))
        if rel is not None and len(rel) and (rel["sous_trame"] == st).any():
            handles.append(_patch("white", f"Zone relais – {label}", hatch="////", edge=colors[st]))
    corr = near.get("corridors")
    if corr is not None and len(corr):
        for status, (label, color) in STATUS_STYLES.items():
            if (corr["status"] == status).any():
                handles.append(_line(color, f"Corridor {label.lower()}"))
    wet = near.get("wet_corridors")
    if wet is not None and len(wet):
        handles.append(_line("#1f78b4", "Corridor humide"))
    pts = near.get("rupture_points")
    if pts is not None and len(pts):
        handles.append(_point("#d7301f", "Point de rupture"))
    gpd.GeoSeries([geom], crs=ctx.communes.crs).boundary.plot(ax=ax, color="#222222", linewidth=1.6, zorder=7)
    _commune_labels(ax, others, fontsize=7)
    add_scale_and_north(ax, north_x=0.04, north_y=(0.95, 0.87))
    y = 0.86
    fig.text(0.64, y + 0.03, "Chiffres de la commune", fontsize=12, fontweight="bold", color="#1b5e20")
    for label, value in rows:
        fig.text(0.64, y, label, fontsize=9.5)
        fig.text(0.975, y, value, fontsize=9.5, ha="right")
        y -= 0.03
    if handles:
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.635, y - 0.01), fontsize=7.5, frameon=False,
                   title="Légende", title_fontsize=9, alignment="left")
    path = ctx.out_dir / "maps" / "communes" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_canvas(base.canvas)
    base.canvas.draw()                      # rendered once: the PNG and the PDF page are the same pixels
    fig.set_canvas(base.idle)
    pixels = np.asarray(base.canvas.buffer_rgba())[..., :3].copy()       # opaque page: RGB
    from PIL import Image

    Image.fromarray(pixels).save(path, format="png")
    if ctx.pdf is not None:        # the PDF page shows the same picture: drawn once (36 sheets × hundreds of texts)
        ctx.pdf.savefig(image_page(pixels))
    for artist in [*ax.get_children(), *fig.get_children()]:
        if id(artist) not in base.shared:
            artist.remove()                 # this commune's parts: the base is ready for the next sheet
    return path
