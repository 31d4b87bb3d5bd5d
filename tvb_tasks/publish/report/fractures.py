"""The report's "Fractures, ouvrages busés et points de vigilance" section: what the method builds beyond the
corridor lines, in French tables, and the overlay that sets the fractures apart on the rupture-point map.

* fractures: severity-4 rupture points (motorways, in-use railways, canals) counted per infrastructure (type and
  name), split into missing links (potential links the barrier cuts, corridors "liaison manquante") and reservoirs
  cut by the barrier;
* missing links: one row per barrier crossing of a missing link, with the corridor's length and the link's
  combined cost saved, and the crossing's own Barrier-Mapper improvement score (cost saved when only that
  barrier is made passable, per metre of it: :func:`tvb_tasks.layers.corridors.barrier_crossing_scores`);
* culverts (ouvrages busés) under a road or railway;
* points de vigilance (local roads, COST 341 partial barriers) per sous-trame.

Layers in the territory CRS (EPSG:2154); lengths in km or m, costs in friction × m.
"""
from __future__ import annotations

import geopandas as gpd
import pandas as pd
from matplotlib.lines import Line2D

from tvb_tasks.publish.report.reading import fr
from tvb_tasks.publish.styles import VIGILANCE_COLOR  # the web map's and QGIS project's colour too

INFRA_FR = {"road": "Route", "railway": "Voie ferrée", "canal": "Canal", "culvert": "Ouvrage busé",
            "river_obstacle": "Obstacle à l'écoulement"}
FRACTURE_COLOR, MISSING_COLOR = "#000000", "#253494"


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column (0 where absent or empty)."""
    if column not in frame.columns:
        return pd.Series(0, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").fillna(0)


def _name(row) -> str:
    name = str(row.get("infra_name") or "").strip()
    return name or "(sans nom)"


def _infra_label(row) -> str:
    """"Canal de la Deûle", "Route A21": the type, unless the name already starts with it."""
    kind, name = INFRA_FR.get(row["infrastructure"], row["infrastructure"]), _name(row)
    return name if name.lower().startswith(str(kind).lower()) else f"{kind} {name}"


def fracture_tables(layers: dict[str, gpd.GeoDataFrame], st_labels: dict[str, str]) -> list:
    """The section's tables (:class:`tvb_tasks.publish.report.Table`), only those with rows."""
    from tvb_tasks.publish.report import Table

    pts = layers.get("rupture_points")
    pts = pts if pts is not None else gpd.GeoDataFrame()
    corridors = layers.get("corridors")
    tables = []
    sev = pd.to_numeric(pts["severity"], errors="coerce") if len(pts) else pd.Series(dtype=float)
    f4 = pts[sev >= 4] if len(pts) else pts
    if len(f4):
        f4 = f4.assign(_type=f4["infrastructure"].map(INFRA_FR).fillna(f4["infrastructure"]),
                       _name=[_name(r) for _, r in f4.iterrows()],
                       _ml=_num(f4, "missing_link").astype(int),
                       _res=(f4["corridor_kind"] == "reservoir") if "corridor_kind" in f4.columns else False)
        g = f4.groupby(["_type", "_name"]).agg(n=("id", "size"), ml=("_ml", "sum"), res=("_res", "sum"))
        g = g.sort_values("n", ascending=False, kind="stable")
        rows = [[t, n, fr(r.n, 0), fr(r.ml, 0), fr(r.res, 0)] for (t, n), r in g.iterrows()]
        tables.append(Table("Fractures : points de rupture de gravité 4 par infrastructure",
                            ["Infrastructure", "Nom", "Points (gravité 4)", "dont liaisons manquantes",
                             "dont réservoirs coupés"], rows, [False, False, True, True, True],
                            "Une fracture est une infrastructure très peu franchissable (autoroute, voie ferrée exploitée, "
                            "canal à berges franches) qui coupe une liaison potentielle entre réservoirs (liaison "
                            "manquante) ou traverse un réservoir."))
    ml = pts[_num(pts, "missing_link") == 1] if len(pts) else pts
    if len(ml) and corridors is not None and len(corridors):
        by_id = corridors.set_index("id")
        rows = []
        for _, p in ml.sort_values(["corridor_id", "id"]).iterrows():
            c = by_id.loc[p["corridor_id"]] if p["corridor_id"] in by_id.index else None
            rows.append([str(p["corridor_id"]), st_labels.get(p["sous_trame"], p["sous_trame"]),
                         f"{c['from_id']} – {c['to_id']}" if c is not None else "",
                         _infra_label(p),
                         fr(float(c["length_m"]) / 1000, 2) if c is not None else "",
                         fr(c["cost_saved"], 0) if c is not None else "", fr(p["barrier_m"], 0),
                         fr(p["cost_saved"], 0), fr(p["improvement_score"], 0)])
        tables.append(Table("Liaisons manquantes à rétablir (franchissements à créer)",
                            ["Corridor", "Sous-trame", "Réservoirs", "Infrastructure franchie", "Longueur (km)",
                             "Gain de la liaison", "Barrière (m)", "Gain du franchissement", "Score d'amélioration"],
                            rows, [False, False, False, False, True, True, True, True, True],
                            "Gains en coût de déplacement (friction × m). Gain de la liaison : toutes ses barrières "
                            "rendues franchissables ; gain du franchissement : cette seule barrière (rayon de "
                            "recherche de Barrier Mapper, Linkage Mapper), nul quand une autre barrière bloque "
                            "encore la liaison ; score = gain du franchissement par mètre de barrière."))
    cul = pts[pts["infrastructure"] == "culvert"] if len(pts) else pts
    if len(cul):
        rows = [[str(p["id"]), f"{INFRA_FR.get(p['infra_class'], p['infra_class'])} {_name(p)}",
                 str(p["corridor_id"]), fr(p["severity"], 0)] for _, p in cul.iterrows()]
        tables.append(Table("Ouvrages busés sous une route ou une voie ferrée (discontinuités aquatiques)",
                            ["Point", "Infrastructure franchie", "Corridor humide", "Gravité"], rows,
                            [False, False, False, True],
                            "Section de cours d'eau busée (BD TOPO « position : en souterrain ») : le lit et les "
                            "berges sont remplacés par une buse ; un pont à ciel ouvert reste de gravité moindre."))
    vig = layers.get("vigilance_points")
    if vig is not None and len(vig):
        g = vig.groupby("sous_trame").agg(n=("id", "size"), roads=("infra_name", lambda s: s.fillna("").nunique()))
        rows = [[st_labels.get(st, st), fr(r.n, 0), fr(r.roads, 0)] for st, r in g.iterrows()]
        rows.append(["Total", fr(len(vig), 0), fr(vig["infra_name"].fillna("").nunique(), 0)])
        tables.append(Table("Points de vigilance (routes locales franchies par un corridor)",
                            ["Sous-trame", "Points de vigilance", "Routes distinctes"], rows, [False, True, True],
                            "Routes d'importance 4 (BD TOPO) : barrières partielles au sens du manuel COST 341 "
                            "(Iuell et al. 2003) — collisions sans coupure du corridor. Gravité 2, comptées à part "
                            "des points de rupture, sans effet sur le statut des corridors."))
    return tables


def draw_fractures(ax, points: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame,
                   vigilance: gpd.GeoDataFrame | None) -> list[Line2D]:
    """Overlay of the rupture-point map: missing-link corridors (thick dashed navy), severity-4 points (black
    star ring) and points de vigilance (small orange triangles). Returns the legend handles."""
    handles = []
    if len(corridors) and "missing_link" in corridors.columns:
        ml = corridors[_num(corridors, "missing_link") == 1]
        if len(ml):
            ml.plot(ax=ax, color=MISSING_COLOR, linewidth=2.6, linestyle=(0, (4, 2)), zorder=3)
            handles.append(Line2D([], [], color=MISSING_COLOR, lw=2.6, ls="--",
                                  label="Liaison manquante (fracture) à rétablir"))
    if len(points) and "severity" in points.columns:
        f4 = points[pd.to_numeric(points["severity"], errors="coerce") >= 4]
        if len(f4):
            f4.plot(ax=ax, marker="*", color="none", edgecolor=FRACTURE_COLOR, markersize=260, linewidth=1.2,
                    zorder=6)
            handles.append(Line2D([], [], marker="*", ls="", markersize=13, markerfacecolor="none",
                                  markeredgecolor=FRACTURE_COLOR, label="Fracture : point de gravité 4"))
    if vigilance is not None and len(vigilance):
        vigilance.plot(ax=ax, marker="^", color=VIGILANCE_COLOR, edgecolor="#555555", markersize=16, linewidth=0.3,
                       zorder=4)
        handles.append(Line2D([], [], marker="^", ls="", markersize=6, color=VIGILANCE_COLOR,
                              markeredgecolor="#555555", label="Point de vigilance (route locale, gravité 2)"))
    return handles
