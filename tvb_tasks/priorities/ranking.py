"""Restoration priorities: which corridor to restore / create and which rupture site to treat first.

Candidates (see :func:`corridor_candidates`, :func:`rupture_sites`): every corridor whose status is in
``priorities.corridor_statuses`` and every rupture *site* (the rupture points of one crossing: grouped by a
``site_id`` column when the layer has one, else by sous-trame + infrastructure + name within
``site_tolerance_m``). For each candidate, published side by side (so a reader sees why it ranks where it does):

* ``gain_dpc_pct`` / ``gain_ec_ha``: ΔPC (%) and ΔEC (ha) of its sous-trame's graph if it were restored
  (:mod:`.network`). A corridor's cost loses its land-use excess: d' = cost − (mean_friction − f_r) · length_m,
  f_r = ``restored_friction`` (the friction of an existing corridor) — Graphab's link-improvement dPC. A site's
  corridors lose the excess friction of its crossings: (f_infra − mean_friction) · ``barrier_crossing_m`` per
  crossing, f_infra from ``friction.infrastructure`` — Linkage Mapper Barrier Mapper's "cost saved by removing the
  barrier". d' never goes below length_m (friction 1). A site on the watercourses of a trame bleue whose graph
  runs along them (wet rupture points: culverts, ROE obstacles, bridges, each a barrier of configured passability
  on the network, :func:`tvb_tasks.indicators.wet_network_of`): the links whose network distance drops when the
  site's points become passable (:func:`~tvb_tasks.indicators.connectivity.passable_changes`), ``gain_method =
  obstacle_passable``.
* ``cost_base``: length_m × ``cost.per_m[status]`` (corridor) or Σ ``cost.crossing[infrastructure][class]``
  (site); ``maintenance_share``: share of the corridor length (or of the site's points) inside a managed sector
  (``maintenance`` role, within the buffer); ``cost_proxy`` = cost_base × (1 − maintenance_discount × share).
* ``conflict``: the largest ``conflict.stage_weights[stage]`` of the planned projects (``projects`` role) within
  the buffer, 0 when none: a threatened link is more urgent.
* ``score`` (0–100, its order is the rank) = 100 · U / max(U), U = G · (1 + w_conflict · conflict) /
  (1 + w_cost · C), G = gain/max(gain), C = cost/max(cost) over the territory (:func:`urgency`): a threat multiplies
  the urgency of a useful restoration but does not make a useless one a priority; an item without gain scores 0
  and ranks last. Ranks per territory, sous-trame and commune (commune holding the representative point: the
  corridor's midpoint, the site's first point).
* A site splitting one of its sous-trame's reservoirs (rupture points ``corridor_kind = reservoir``): the gain of
  joining the two parts again, ``gain_method = reservoir_split`` (:func:`reservoir_split_gain`). A site that gains
  nothing says why: ``in_reservoir`` (inside a reservoir, on no link), ``no_link`` (on a corridor or watercourse
  that links no two reservoirs), ``reservoir_notched`` (a barrier entering a reservoir without cutting it in two:
  the habitat goes round it).

CRS: the territory's (EPSG:2154, metres). Works on the layers of a release GeoPackage (``read_layers``) through
:func:`corridor_candidates` / :func:`rupture_sites`, the adapter to the layer schema.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tvb_tasks.config import Territory
from tvb_tasks.indicators import _network_inputs, indicators_config, wet_network_of
from tvb_tasks.indicators.connectivity import passable_changes
from tvb_tasks.publish.styles import STATUS_STYLES, status_code

from .config import PrioritiesConfig, crossing_width_m, priorities_config, restored_friction
from .network import Network, build_network, improvement

PRIORITY_COLUMNS = [
    "id", "candidate", "sous_trame", "status", "corridor_ids", "from_id", "to_id", "infrastructure", "infra_name",
    "length_m", "n_points", "gain_dpc_pct", "gain_ec_ha", "gain_method", "cost_base", "maintenance_share",
    "maintenance", "cost_proxy", "conflict", "projects", "score", "rank", "rank_sous_trame", "rank_commune",
    "insee", "commune", "libelle", "flag",
]
GAIN_EPSILON = 1e-9   # ΔPC (%) at or below this is "gain nul"
# why a site gains nothing (gain_method → French cause in the flag)
ZERO_GAIN_CAUSES = {"in_reservoir": "dans un réservoir", "no_link": "ne relie pas deux réservoirs",
                    "reservoir_notched": "entame un réservoir sans le couper en deux"}
INFRA_LABELS = {"road": "route", "railway": "voie ferrée", "canal": "canal", "river_obstacle": "obstacle",
                "obstacle": "obstacle à l'écoulement"}


# --- adapter to the layers' schema -----------------------------------------------------------------------------------
def corridor_candidates(corridors: gpd.GeoDataFrame, statuses: list[str]) -> gpd.GeoDataFrame:
    """Corridors whose (canonical) status is in ``statuses``; ``status`` normalised to the canonical code."""
    if corridors.empty:
        return corridors.assign(status=pd.Series(dtype=object))
    codes = corridors["status"].map(status_code)
    out = corridors.assign(status=codes.fillna(corridors["status"]))
    return out[out["status"].isin(statuses)].reset_index(drop=True)


def rupture_sites(points: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    """One row per rupture site: ``site_id, sous_trame, infrastructure, infra_class, infra_name, point_ids,
    corridor_ids (lists), n_points``, geometry = the site's first point (lowest point id).

    Uses the layer's ``site_id`` column when present (a site_id shared by several sous-trames gives one site per
    sous-trame, ``<site_id>-<sous_trame>``); otherwise points of one sous-trame, infrastructure type and
    infrastructure name closer than ``tolerance_m`` (single linkage) form a site, named ``<sous_trame>-S<nnn>``.
    """
    cols = ["site_id", "sous_trame", "infrastructure", "infra_class", "infra_name", "point_ids", "corridor_ids",
            "n_points", "geometry"]
    if points.empty:
        return gpd.GeoDataFrame(columns=cols, geometry="geometry", crs=points.crs)
    pts = points.sort_values("id", kind="stable").reset_index(drop=True)
    for col in ("infra_class", "infra_name"):
        if col not in pts.columns:
            pts[col] = None
    if "site_id" in pts.columns and pts["site_id"].notna().all():
        labels = pts["site_id"].astype(str).to_numpy()
        # a crossing shared by several sous-trames is one site per sous-trame (each gain is on its own graph)
        spans = pts.groupby("site_id")["sous_trame"].transform("nunique").to_numpy() > 1
        labels = np.where(spans, labels + "-" + pts["sous_trame"].astype(str).to_numpy(), labels)
    else:
        labels = np.empty(len(pts), dtype=object)
        key = pts["sous_trame"].astype(str) + "|" + pts["infrastructure"].astype(str) + "|" + \
            pts["infra_name"].fillna("").astype(str)
        left, right = pts.sindex.query(pts.geometry.values, predicate="dwithin", distance=tolerance_m)
        same = key.to_numpy()[left] == key.to_numpy()[right]
        graph = coo_matrix((np.ones(int(same.sum())), (left[same], right[same])), shape=(len(pts), len(pts)))
        _, comp = connected_components(graph, directed=False)
        counters: dict[str, int] = {}
        first: dict[int, str] = {}
        for i, c in enumerate(comp):               # points are in id order: a site is named by its first point
            if c not in first:
                st = str(pts.at[i, "sous_trame"])
                counters[st] = counters.get(st, 0) + 1
                first[c] = f"{st}-S{counters[st]:03d}"
            labels[i] = first[c]
    pts["site_id"] = labels
    rows = []
    for site, grp in pts.groupby("site_id", sort=False):
        rows.append({"site_id": site, "sous_trame": grp["sous_trame"].iloc[0],
                     "infrastructure": grp["infrastructure"].iloc[0], "infra_class": grp["infra_class"].iloc[0],
                     "infra_name": grp["infra_name"].iloc[0], "point_ids": grp["id"].astype(str).tolist(),
                     "corridor_ids": list(dict.fromkeys(grp["corridor_id"].astype(str))),
                     "n_points": int(len(grp)), "geometry": grp.geometry.iloc[0]})
    return gpd.GeoDataFrame(rows, columns=cols, geometry="geometry", crs=points.crs)


def infrastructure_friction(territory: Territory, infrastructure: str, infra_class) -> float | None:
    """Friction of a crossed infrastructure from ``friction.infrastructure`` (None when unknown: obstacles)."""
    infra = territory.friction.infrastructure
    if infrastructure == "road":
        try:
            importance = int(float(infra_class))
        except (TypeError, ValueError):
            return None
        friction = infra.roads.by_importance.get(importance)
        return float(friction) if friction is not None else None
    if infrastructure == "railway":
        value = infra.railways.by_status.get(str(infra_class))
        return float(value) if value is not None else None
    if infrastructure == "canal":
        return float(infra.canal.friction)
    return None


# --- components ------------------------------------------------------------------------------------------------------
def restored_cost(cost: float, length_m: float, mean_friction: float, f_restored: float) -> float:
    """Cost of a corridor once its land-use friction is that of an existing corridor (≥ length_m, ≤ cost)."""
    excess = max(float(mean_friction) - f_restored, 0.0) * float(length_m)
    return float(min(cost, max(cost - excess, length_m)))


def element_width_m(territory: Territory, infrastructure: str, infra_class, fallback_m: float) -> float:
    """Configured burn width (m) of a crossed element (``friction.infrastructure.<kind>.width_m`` by class): the
    width the friction stage burns it at, so a crossing costs F × width in the corridor's cost. ``fallback_m``
    (``priorities.barrier_crossing_m`` or the resolution) when no width is configured."""
    infra = territory.friction.infrastructure
    spec = {"road": infra.roads, "railway": infra.railways, "canal": infra.canal}.get(str(infrastructure))
    if spec is None:
        return float(fallback_m)
    cls = infra_class
    if infrastructure == "road":
        try:
            cls = str(int(float(infra_class)))
        except (TypeError, ValueError):
            return float(fallback_m)
    elif infrastructure == "canal":
        cls = "canal"
    width = spec.default_width(str(cls))
    return float(width) if width is not None and width > 0 else float(fallback_m)


def barrier_saving(crossings: list[tuple[str, object]], mean_friction: float, width_m: float,
                   territory: Territory) -> float:
    """Cost saved on one corridor when these crossings (infrastructure, class) stop being barriers:
    Σ (f_infra − mean_friction) × width, width = the element's configured burn width (``width_m`` when none)."""
    total = 0.0
    for infrastructure, infra_class in crossings:
        f = infrastructure_friction(territory, infrastructure, infra_class)
        if f is not None:
            total += max(f - float(mean_friction), 0.0) * element_width_m(territory, infrastructure, infra_class,
                                                                          width_m)
    return total


def stretch_plan(stretches: gpd.GeoDataFrame | None, per_m: dict[str, float]) -> dict[str, tuple[float, bool]]:
    """{corridor id: (cost_base, crossing_only)} from the ``corridor_stretches`` layer.

    cost_base = Σ stretch length (m) × ``per_m[stretch status]`` ("existing" stretches free unless ``per_m`` prices
    them): only the km to restore or create are paid, at their own rate. crossing_only: the corridor has no gap of
    its own — every stretch below "existing" was lowered by a rupture point (``downgraded`` = 1) — so its whole
    deficit is its crossing(s), whose gain and cost belong to the rupture site(s). Empty when the release has no
    stretches layer (the caller then prices the whole corridor at its status rate)."""
    if stretches is None or stretches.empty or "corridor_id" not in stretches.columns:
        return {}
    status = stretches["status"].map(status_code).fillna(stretches["status"]).astype(str)
    rate = status.map(lambda st: float(per_m.get(st, 0.0 if st == "existing" else 1.0)))
    cost = pd.to_numeric(stretches["length_m"], errors="coerce").fillna(0.0) * rate
    lowered = pd.to_numeric(stretches["downgraded"], errors="coerce").fillna(0).astype(int) == 1 \
        if "downgraded" in stretches.columns else pd.Series(False, index=stretches.index)
    own_gap = (status != "existing") & ~lowered
    frame = pd.DataFrame({"cid": stretches["corridor_id"].astype(str), "cost": cost, "gap": own_gap,
                          "deficit": status != "existing"})
    out = {}
    for cid, grp in frame.groupby("cid", sort=False):
        out[str(cid)] = (float(grp["cost"].sum()), bool(grp["deficit"].any() and not grp["gap"].any()))
    return out


def _is_missing_link(corridor) -> bool:
    value = corridor.get("missing_link")
    return value is not None and not pd.isna(value) and int(value) == 1


def corridor_restored_distance(corridor, f_restored: float, barrier_excess: float) -> float:
    """Graph distance of a corridor fully restored: land-use excess AND every barrier crossing removed (≥ length).
    A missing link's ``cost`` is already the cost without its barriers (the potential path)."""
    base = restored_cost(float(corridor["cost"]), float(corridor["length_m"]), _mean_friction(corridor), f_restored)
    if _is_missing_link(corridor):
        return base
    return max(base - barrier_excess, float(corridor["length_m"]))


def site_distance(corridor, excess: float, total_excess: float, n_sites: int) -> float:
    """Graph distance of a corridor once ONE site's barrier is removed, its other barriers and land use in place.

    Real corridor: cost − excess (≥ length). Missing link (``cost`` = potential cost without barriers): the real
    cost is cost + ``cost_saved`` (Barrier Mapper); the site removes its share excess / total_excess of that
    saving (1 / n_sites when the barriers' frictions are unknown); without ``cost_saved``: cost + the other
    barriers' excess."""
    cost, length = float(corridor["cost"]), float(corridor["length_m"])
    if not _is_missing_link(corridor):
        return max(cost - excess, length)
    saved = corridor.get("cost_saved")
    if saved is not None and not pd.isna(saved) and float(saved) > 0:
        share = excess / total_excess if total_excess > 0 else 1.0 / max(n_sites, 1)
        return cost + float(saved) * (1.0 - share)
    return cost + max(total_excess - excess, 0.0)


def crossing_cost(cfg: PrioritiesConfig, infrastructure: str, infra_class) -> float:
    table = cfg.cost.crossing
    value = table.get(str(infrastructure))
    if isinstance(value, dict):
        key = str(infra_class)
        with contextlib.suppress(TypeError, ValueError):
            key = str(int(float(infra_class)))
        value = value.get(key)
    if value is None:
        value = table.get("default", 1000.0)
    return float(value if not isinstance(value, dict) else 1000.0)


def _union(gdf: gpd.GeoDataFrame | None, buffer_m: float = 0.0):
    if gdf is None or gdf.empty:
        return None
    geoms = gdf.geometry.values
    if buffer_m:
        geoms = shapely.buffer(geoms, buffer_m)
    return shapely.union_all(geoms)


def maintenance_overlap(geoms: np.ndarray, maintenance: gpd.GeoDataFrame | None, buffer_m: float
                        ) -> tuple[np.ndarray, list[str]]:
    """(share of each line's length — or 1/0 for a point — within ``buffer_m`` of a managed sector, names)."""
    share = np.zeros(len(geoms))
    names = [""] * len(geoms)
    if maintenance is None or maintenance.empty or not len(geoms):
        return share, names
    zone = shapely.buffer(_union(maintenance), buffer_m) if buffer_m else _union(maintenance)
    shapely.prepare(zone)
    sindex = maintenance.sindex
    for i, g in enumerate(geoms):
        if g.geom_type in ("Point", "MultiPoint"):
            parts = shapely.get_parts(g)
            share[i] = float(shapely.intersects(zone, parts).mean())
        else:
            length = g.length
            share[i] = min(g.intersection(zone).length / length, 1.0) if length > 0 else 0.0
        if share[i] > 0:
            hits = sindex.query(g, predicate="dwithin", distance=buffer_m)
            col = "name" if "name" in maintenance.columns else "id"
            names[i] = ", ".join(sorted(maintenance.iloc[hits][col].astype(str).unique()))
    return share, names


def project_areas(projects: gpd.GeoDataFrame | None, line_buffer_m: float) -> gpd.GeoDataFrame | None:
    """Projects as areas: line projects buffered by ``line_buffer_m`` (half-width of the right-of-way)."""
    if projects is None or projects.empty:
        return projects
    geoms = projects.geometry.values
    lines = shapely.get_dimensions(geoms) < 2
    geoms = np.where(lines, shapely.buffer(geoms, line_buffer_m), geoms)
    return projects.set_geometry(gpd.GeoSeries(geoms, crs=projects.crs, index=projects.index))


def project_conflict(geoms: np.ndarray, projects: gpd.GeoDataFrame | None, buffer_m: float,
                     stage_weights: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """(largest stage weight of the projects within ``buffer_m`` of each geometry, their names)."""
    conflict = np.zeros(len(geoms))
    names = [""] * len(geoms)
    if projects is None or projects.empty or not len(geoms):
        return conflict, names
    left, right = projects.sindex.query(geoms, predicate="dwithin", distance=buffer_m)
    weights = projects["stage"].map(lambda s: stage_weights.get(str(s), 0.0)).to_numpy(dtype=float)
    label = projects["name"].fillna(projects["id"]).astype(str).to_numpy() if "name" in projects.columns \
        else projects["id"].astype(str).to_numpy()
    for i, j in zip(left, right):
        conflict[i] = max(conflict[i], weights[j])
    for i in np.unique(left):
        names[i] = ", ".join(sorted(set(label[right[left == i]])))
    return conflict, names


def representative_points(geoms: np.ndarray) -> np.ndarray:
    """Midpoint of a line (along its length), the point itself otherwise."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g.geom_type in ("LineString", "MultiLineString"):
            merged = shapely.line_merge(g) if g.geom_type == "MultiLineString" else g
            line = merged if merged.geom_type == "LineString" else max(merged.geoms, key=lambda x: x.length)
            out[i] = line.interpolate(0.5, normalized=True)
        elif g.geom_type == "Point":
            out[i] = g
        else:
            out[i] = g.representative_point()
    return out


def commune_of(points: np.ndarray, communes: gpd.GeoDataFrame) -> tuple[list[str], list[str]]:
    """(insee, nom) of the commune holding each point (the nearest commune for a point just outside)."""
    if communes is None or communes.empty or not len(points):
        return [""] * len(points), [""] * len(points)
    idx = communes.sindex.nearest(points, return_all=False)[1]
    return communes["insee"].astype(str).to_numpy()[idx].tolist(), communes["nom"].astype(str).to_numpy()[idx].tolist()


def urgency(gain: pd.Series | np.ndarray, conflict: pd.Series | np.ndarray, cost: pd.Series | np.ndarray,
            weights) -> np.ndarray:
    """Unscaled score U = G · (1 + w_conflict · conflict) / (1 + w_cost · C), G = gain / max gain, C = cost / max
    cost (both in [0, 1]): a benefit / cost ratio (Linkage Mapper Barrier Mapper's improvement per metre restored)
    whose benefit a threatening project multiplies — the threat raises the urgency of a USEFUL restoration, it
    cannot make a useless one a priority (U = 0 when G = 0); a cost (lowered by a maintenance sector) divides it by
    at most 1 + w_cost. Always ≥ 0."""
    g = np.asarray(gain, dtype=float)
    c = np.asarray(cost, dtype=float)
    g_max, c_max = (float(g.max()) if g.size else 0.0), (float(c.max()) if c.size else 0.0)
    g_n = np.clip(g, 0.0, None) / g_max if g_max > 0 else np.zeros_like(g)
    c_n = np.clip(c, 0.0, None) / c_max if c_max > 0 else np.zeros_like(c)
    return g_n * (1.0 + weights.conflict * np.asarray(conflict, dtype=float)) / (1.0 + weights.cost * c_n)


def score_and_rank(frame: pd.DataFrame, cfg: PrioritiesConfig) -> pd.DataFrame:
    """Add ``score`` (0–100, its order IS the rank), ``flag``, ``rank`` (territory), ``rank_sous_trame``,
    ``rank_commune``; sorted by rank.

    score = 100 · U / max(U) (:func:`urgency`); an item without gain scores 0 and ranks after every item with one
    (ties: threatened first, then larger gain, then id)."""
    frame = frame.copy()
    if frame.empty:
        for col in ("score", "rank", "rank_sous_trame", "rank_commune"):
            frame[col] = pd.Series(dtype=float if col == "score" else int)
        frame["flag"] = pd.Series(dtype=object)
        return frame
    useful = (frame["gain_dpc_pct"] > GAIN_EPSILON).to_numpy()
    u = np.where(useful, urgency(frame["gain_dpc_pct"], frame["conflict"], frame["cost_proxy"], cfg.weights), 0.0)
    u_max = float(u.max())
    frame["score"] = 100.0 * u / u_max if u_max > 0 else 0.0
    threatened = frame["conflict"] > 0
    causes = frame["gain_method"].map(ZERO_GAIN_CAUSES).fillna("") if "gain_method" in frame.columns else ""
    zero = np.where(threatened, "menacé, gain nul", "gain nul")
    zero = np.where(pd.Series(causes, index=frame.index).astype(str) != "",
                    pd.Series(zero, index=frame.index) + " (" + pd.Series(causes, index=frame.index).astype(str)
                    + ")", zero)
    frame["flag"] = np.where(useful, np.where(threatened, "menacé", ""), zero)
    frame = frame.sort_values(["score", "conflict", "gain_dpc_pct", "id"], ascending=[False, False, False, True],
                              kind="stable")
    frame = frame.reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["rank_sous_trame"] = frame.groupby("sous_trame").cumcount() + 1
    frame["rank_commune"] = frame.groupby("insee").cumcount() + 1
    return frame


def score_formula(cfg: PrioritiesConfig) -> dict:
    """The published score rule (priorities.json, report): weights, formula in French and the normalisation."""
    w = cfg.weights
    text = (f"Score (0 à 100, dans l'ordre du rang) = 100 × U / U maximal, U = gain normalisé × (1 + "
            f"{w.conflict:g} × conflit) / (1 + {w.cost:g} × coût normalisé) ; gain normalisé = ΔPC / ΔPC maximal "
            "du territoire (toutes sous-trames confondues : les gains sont comparés entre sous-trames, le rang par "
            "sous-trame garde cet ordre), coût normalisé = coût / coût maximal, conflit = poids de l'étape du projet "
            "le plus avancé (0 sans projet) : un projet rend plus urgente une restauration utile, il ne fait pas "
            "une priorité d'un élément sans gain. Les éléments sans gain (« gain nul », score 0) sont classés après "
            "tous ceux qui en ont un ; « menacé » signale un projet à proximité.")
    return {"weights": {"conflict": w.conflict, "cost": w.cost}, "formula": text,
            "gain_normalisation": "territory"}


def _mean_friction(corridor) -> float:
    """The corridor's land-use mean friction; cost / length (infrastructures included) when the layer has none."""
    value = corridor.get("mean_friction")
    if value is None or pd.isna(value):
        return float(corridor["cost"]) / max(float(corridor["length_m"]), 1e-9)
    return float(value)


# the crossed element with its article: "de la route" + name; a name already starting with the noun ("Route
# départementale 937", "Canal de la Deûle") keeps only the article ("de la Route départementale 937")
_INFRA_ARTICLE = {"road": ("de la", "route"), "railway": ("de la", "voie ferrée"), "canal": ("du", "canal"),
                  "river_obstacle": ("de l'", "obstacle à l'écoulement"), "obstacle": ("de l'", "obstacle")}
_UNDER = {"road": "sous la route", "railway": "sous la voie ferrée", "canal": "sous le canal"}


def _starts_with_noun(name: str, noun: str) -> bool:
    first = noun.split()[0].lower()
    return name.lower().startswith(first) or (noun == "route" and name.lower().split()[:1] in (["autoroute"],))


def crossing_phrase(infrastructure, infra_class, infra_name) -> str:
    """French words for what a rupture site crosses, without doubled nouns: "route A21", "Route départementale
    937", "Canal de la Deûle", "ouvrage busé sous la route N47" (culvert: ``infra_class`` = what passes over)."""
    name = infra_name.strip() if isinstance(infra_name, str) else ""
    infra = str(infrastructure)
    if infra == "culvert":
        under = _UNDER.get(str(infra_class), "sous" if name else "sous une infrastructure")
        return f"ouvrage busé {under}{' ' + name if name else ''}"
    noun = INFRA_LABELS.get(infra, infra)
    if name and _starts_with_noun(name, noun):
        return name
    return f"{noun}{' ' + name if name else ''}"


def crossing_name(infrastructure, infra_class, infra_name) -> str:
    """"Franchissement de la route A21", "Franchissement du Canal de la Deûle", "Ouvrage busé sous la route N47"."""
    name = infra_name.strip() if isinstance(infra_name, str) else ""
    infra = str(infrastructure)
    if infra == "culvert":
        phrase = crossing_phrase(infra, infra_class, name)
        return phrase[0].upper() + phrase[1:]
    article, noun = _INFRA_ARTICLE.get(infra, ("d'une", "infrastructure"))
    if name and _starts_with_noun(name, noun):
        words = f"{article} {name}"
    else:
        words = f"{article} {noun}{' ' + name if name else ''}"
    return "Franchissement " + words.replace("de l' ", "de l'")


def _label(row) -> str:
    st = row["sous_trame_label"]
    if row["candidate"] == "corridor":
        status = STATUS_STYLES.get(row["status"], (str(row["status"]),))[0].lower()
        return f"Priorité {row['rank']} – corridor {status} – {st} ({row['id']})"
    what = crossing_phrase(row["infrastructure"], row.get("infra_class"), row["infra_name"])
    return f"Priorité {row['rank']} – site de rupture ({what}) – {st} ({row['id']})"


# --- entry point -----------------------------------------------------------------------------------------------------
def sous_trame_networks(territory: Territory, layers: dict[str, gpd.GeoDataFrame], gpkg: Path | str = "layers"
                        ) -> dict[str, Network]:
    """The graph of each sous-trame, built from the same inputs as the indicators' connectivity."""
    cfg = priorities_config(territory)
    p_at = indicators_config(territory).connectivity.probability_at_threshold
    out = {}
    for st in territory.sous_trames:
        nodes, links, kind, threshold = _network_inputs(layers, territory, st, Path(gpkg))
        out[st] = build_network(nodes, links, distance_threshold=threshold, probability_at_threshold=p_at,
                                min_probability=cfg.min_probability)
        if kind == "network_m":       # the same watercourse graph, kept to make a wet site's barriers passable
            wet, max_m, _ = wet_network_of(layers, territory, st)
            out[st].wet = (wet, max_m)
    return out


def compute_priorities(territory: Territory, layers: dict[str, gpd.GeoDataFrame], *,
                       projects: gpd.GeoDataFrame | None = None, maintenance: gpd.GeoDataFrame | None = None,
                       networks: dict[str, Network] | None = None) -> gpd.GeoDataFrame:
    """The ranked priorities (one Point per candidate, columns :data:`PRIORITY_COLUMNS`) of a release's layers.

    ``layers``: reservoirs, corridors, rupture_points, communes (as :func:`tvb_tasks.indicators.read_layers`);
    ``projects`` / ``maintenance``: the sources of those roles (may be None or empty).
    """
    cfg = priorities_config(territory)
    crs = territory.crs
    networks = networks if networks is not None else sous_trame_networks(territory, layers)
    f_r = restored_friction(territory)
    width = crossing_width_m(territory)
    corridors = layers["corridors"]
    by_id = corridors.set_index(corridors["id"].astype(str)) if len(corridors) else corridors
    rows: list[dict] = []

    # each site's barrier excess on each corridor it crosses (cost units), known before any gain is computed so a
    # corridor's full restoration removes all its barriers and a site only its own
    points = layers["rupture_points"]
    sites = rupture_sites(points, cfg.site_tolerance_m)
    site_pts, site_excess = [], []
    corridor_excess: dict[str, float] = {}
    corridor_sites: dict[str, int] = {}
    for _, s in sites.iterrows():
        pts = points[points["id"].astype(str).isin(s["point_ids"])]
        excess = {}
        for cid in s["corridor_ids"]:
            if cid not in by_id.index:
                continue
            on = pts["corridor_id"].astype(str) == cid
            excess[cid] = barrier_saving(list(zip(pts.loc[on, "infrastructure"], pts.loc[on, "infra_class"])),
                                         _mean_friction(by_id.loc[cid]), width, territory)
            corridor_excess[cid] = corridor_excess.get(cid, 0.0) + excess[cid]
            corridor_sites[cid] = corridor_sites.get(cid, 0) + 1
        site_pts.append(pts)
        site_excess.append(excess)

    plan = stretch_plan(layers.get("corridor_stretches"), cfg.cost.per_m)
    crossing_only: list[str] = []
    for _, c in corridor_candidates(corridors, [str(s) for s in cfg.corridor_statuses]).iterrows():
        cost_base, only_crossings = plan.get(str(c["id"]),
                                             (float(c["length_m"]) * float(cfg.cost.per_m.get(c["status"], 1.0)),
                                              False))
        if only_crossings and corridor_sites.get(str(c["id"])):
            crossing_only.append(str(c["id"]))   # its gain is its site(s)': counted once, as a crossing
            continue
        net = networks.get(c["sous_trame"])
        new = corridor_restored_distance(c, f_r, corridor_excess.get(str(c["id"]), 0.0))
        dpc, dec = improvement(net, [(str(c["from_id"]), str(c["to_id"]), new)]) if net else (0.0, 0.0)
        rows.append({"id": str(c["id"]), "candidate": "corridor", "sous_trame": c["sous_trame"],
                     "status": c["status"], "corridor_ids": str(c["id"]), "from_id": str(c["from_id"]),
                     "to_id": str(c["to_id"]), "infrastructure": None, "infra_name": None,
                     "length_m": float(c["length_m"]), "n_points": 0, "gain_dpc_pct": max(dpc, 0.0),
                     "gain_ec_ha": max(dec, 0.0), "gain_method": "corridor_restored",
                     "cost_base": cost_base,
                     "geometry": c.geometry})

    for (_, s), pts, excess in zip(sites.iterrows(), site_pts, site_excess):
        net = networks.get(s["sous_trame"])
        changes = []
        for cid, e in excess.items():
            c = by_id.loc[cid]
            d_site = site_distance(c, e, corridor_excess[cid], corridor_sites[cid])
            # never better than restoring the whole corridor (invariant: site gain ≤ corridor gain)
            d_site = max(d_site, corridor_restored_distance(c, f_r, corridor_excess[cid]))
            changes.append((str(c["from_id"]), str(c["to_id"]), d_site))
        dpc, dec = improvement(net, changes) if (net and changes) else (0.0, 0.0)
        method = "barrier_removed" if changes else "no_link"
        if not changes and net is not None and net.wet is not None:
            wet_changes = passable_changes(net.wet[0], pts["id"].astype(str).tolist(), net.wet[1])
            if wet_changes is not None:
                method = "obstacle_passable"
                dpc, dec = improvement(net, wet_changes)
        if not changes and method == "no_link" and net is not None:
            split = reservoir_split_gain(net, pts, layers)
            if split is not None:
                method, (dpc, dec) = "reservoir_split", split
            elif "corridor_kind" in pts.columns and (pts["corridor_kind"].astype(str) == "reservoir").any():
                method = "reservoir_notched"        # the barrier enters the reservoir without cutting it in two
            elif in_reservoir(pts, layers.get("reservoirs"), str(s["sous_trame"])):
                method = "in_reservoir"
        cost = sum(crossing_cost(cfg, i, k) for i, k in zip(pts["infrastructure"], pts["infra_class"]))
        rows.append({"id": str(s["site_id"]), "candidate": "rupture_site", "sous_trame": s["sous_trame"],
                     "status": None, "corridor_ids": ", ".join(s["corridor_ids"]), "from_id": None, "to_id": None,
                     "infrastructure": s["infrastructure"], "infra_name": s["infra_name"], "length_m": 0.0,
                     "infra_class": s["infra_class"],
                     "n_points": int(s["n_points"]), "gain_dpc_pct": max(dpc, 0.0), "gain_ec_ha": max(dec, 0.0),
                     "gain_method": method, "cost_base": cost,
                     "geometry": shapely.multipoints(pts.geometry.values) if len(pts) > 1 else s.geometry})

    frame = gpd.GeoDataFrame(rows, columns=[c for c in PRIORITY_COLUMNS if c not in ("libelle",)] + ["infra_class",
                                                                                                "geometry"],
                             geometry="geometry", crs=crs) if rows else \
        gpd.GeoDataFrame(columns=PRIORITY_COLUMNS + ["geometry"], geometry="geometry", crs=crs)
    geoms = frame.geometry.values
    is_line = np.array([g.geom_type.endswith("LineString") for g in geoms], dtype=bool)
    share = np.zeros(len(frame))
    m_names = [""] * len(frame)
    conflict = np.zeros(len(frame))
    p_names = [""] * len(frame)
    p_areas = project_areas(projects, _line_buffer(territory))
    for kind_mask, buf in ((is_line, cfg.corridor_buffer_m), (~is_line, cfg.site_buffer_m)):
        idx = np.flatnonzero(kind_mask)
        if not len(idx):
            continue
        s, mn = maintenance_overlap(geoms[idx], maintenance, buf)
        c, pn = project_conflict(geoms[idx], p_areas, buf, cfg.conflict.stage_weights)
        share[idx], conflict[idx] = s, c
        for j, i in enumerate(idx):
            m_names[i], p_names[i] = mn[j], pn[j]
    frame["maintenance_share"] = share
    frame["maintenance"] = m_names
    frame["conflict"] = conflict
    frame["projects"] = p_names
    frame["cost_proxy"] = frame["cost_base"].astype(float) * (1.0 - cfg.cost.maintenance_discount * share)
    points_geom = representative_points(geoms)
    frame["insee"], frame["commune"] = commune_of(points_geom, layers.get("communes"))
    frame = frame.set_geometry(gpd.GeoSeries(points_geom, crs=crs, index=frame.index))
    ranked = score_and_rank(pd.DataFrame(frame), cfg)
    labels = {k: v.label for k, v in territory.sous_trames.items()}
    ranked["sous_trame_label"] = ranked["sous_trame"].map(labels)
    ranked["libelle"] = [_label(r) for _, r in ranked.iterrows()] if len(ranked) else []
    ranked = ranked.drop(columns=["sous_trame_label"] + (["infra_class"] if "infra_class" in ranked.columns else []))
    out = gpd.GeoDataFrame(ranked[PRIORITY_COLUMNS + ["geometry"]], geometry="geometry", crs=crs)
    for col in ("rank", "rank_sous_trame", "rank_commune", "n_points"):
        out[col] = out[col].astype("int64")
    for col in ("gain_dpc_pct", "gain_ec_ha", "cost_base", "cost_proxy", "maintenance_share", "conflict", "score",
                "length_m"):
        out[col] = out[col].astype(float)
    out.attrs["crossing_only"] = sorted(crossing_only)
    return out


def in_reservoir(points: gpd.GeoDataFrame, reservoirs: gpd.GeoDataFrame | None, sous_trame: str) -> bool:
    """Whether any of these points lies in (or within 1 m of) a reservoir of ``sous_trame``."""
    if reservoirs is None or reservoirs.empty or points.empty:
        return False
    own = reservoirs[reservoirs["sous_trame"].astype(str) == sous_trame]
    if own.empty:
        return False
    hits = own.sindex.query(points.geometry.values, predicate="dwithin", distance=1.0)
    return bool(len(hits[0]))


def split_parts_ha(reservoir, lines: np.ndarray, width_m: float) -> tuple[float, float] | None:
    """(a1, a2) ha: the reservoir polygon cut by the infrastructure ``lines`` (buffered by ``width_m`` / 2): the
    largest part and the rest; None when the lines do not cut it in two."""
    cut = shapely.union_all(shapely.buffer(lines, max(width_m, 0.1) / 2.0, cap_style="flat"))
    parts = [g for g in shapely.get_parts(shapely.difference(reservoir, cut)) if g.area > 0]
    if len(parts) < 2:
        return None
    areas = sorted((g.area for g in parts), reverse=True)
    return areas[0] / 1e4, sum(areas[1:]) / 1e4


def split_gain(net: Network, node: str, a1_ha: float, a2_ha: float) -> tuple[float, float]:
    """(ΔPC %, ΔEC ha) of joining again the two parts (a1, a2 ha) of reservoir ``node`` that a barrier splits.

    Split, the two parts keep the node's distances to the others (p of every other pair unchanged) but no longer
    reach each other (p = 0): PCsum_split = PCsum − 2·a1'·a2', a1', a2' the parts scaled to the node's area in the
    graph. The gain is PCsum relative to PCsum_split (FragScape / Jaeger's splitting: the cut halves the habitat
    an animal can use without crossing; Graphab's dPC of the link joining them)."""
    pos = net.index.get(node)
    if pos is None or net.pc_sum <= 0 or a1_ha + a2_ha <= 0:
        return 0.0, 0.0
    scale = float(net.areas[pos]) / (a1_ha + a2_ha)
    lost = 2.0 * (a1_ha * scale) * (a2_ha * scale)
    split = max(net.pc_sum - lost, 1e-12)
    return 100.0 * lost / split, math.sqrt(net.pc_sum) - math.sqrt(split)


def reservoir_split_gain(net: Network, pts: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame]
                         ) -> tuple[float, float] | None:
    """Gain of a site whose points cut a reservoir (``corridor_kind = reservoir``, ``corridor_id`` = the
    reservoir): the parts are the reservoir minus the crossed infrastructure (layer ``infrastructure``, same type
    and name, at its ``width_m``) near the site; None when the site cuts no reservoir or the cut leaves one part."""
    if "corridor_kind" not in pts.columns:
        return None
    on = pts[pts["corridor_kind"].astype(str) == "reservoir"]
    res, infra = layers.get("reservoirs"), layers.get("infrastructure")
    if on.empty or res is None or infra is None or infra.empty:
        return None
    node = str(on["corridor_id"].iloc[0])
    poly = res.loc[res["id"].astype(str) == node]
    if poly.empty:
        return None
    reservoir = poly.geometry.iloc[0]
    kind = infra["infra_type"].astype(str) if "infra_type" in infra.columns else pd.Series("", index=infra.index)
    same = kind == str(on["infrastructure"].iloc[0])
    name = on["infra_name"].iloc[0] if "infra_name" in on.columns else None
    if isinstance(name, str) and name and "infra_name" in infra.columns:
        same &= infra["infra_name"].astype(str) == name
    lines = infra.loc[same & infra.intersects(reservoir)]
    if lines.empty:
        return None
    width = pd.to_numeric(lines.get("width_m"), errors="coerce").fillna(1.0).max() \
        if "width_m" in lines.columns else 1.0
    parts = split_parts_ha(reservoir, lines.geometry.values, float(width))
    return None if parts is None else split_gain(net, node, *parts)


def _line_buffer(territory: Territory) -> float:
    from .config import screening_config

    return screening_config(territory).line_buffer_m


def identity_geometries(priorities: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame | None) -> np.ndarray:
    """What identifies each priority between releases: a corridor's line (from ``corridors`` by id; its point when
    absent), a site's point. Territory CRS (m)."""
    geoms = np.asarray(priorities.geometry.values, dtype=object).copy()
    if corridors is None or corridors.empty:
        return geoms
    lines = dict(zip(corridors["id"].astype(str), corridors.geometry.values))
    for i, (cand, ident) in enumerate(zip(priorities["candidate"], priorities["id"].astype(str))):
        if cand == "corridor" and ident in lines:
            geoms[i] = lines[ident]
    return geoms


def _line_overlap(a, b, buffer_m: float) -> float:
    """Share of each line within ``buffer_m`` of the other, the smaller of the two (0..1)."""
    if a.length <= 0 or b.length <= 0:
        return 0.0
    return float(min(a.intersection(b.buffer(buffer_m)).length / a.length,
                     b.intersection(a.buffer(buffer_m)).length / b.length))


def match_previous(current: pd.DataFrame, cur_geoms: np.ndarray, previous: pd.DataFrame, prev_geoms: np.ndarray,
                   match) -> dict[str, str]:
    """{current id: previous id} of the priorities that are the same object in two releases, whatever their ids.

    A corridor: same sous-trame, each line within ``match.corridor_buffer_m`` of the other over at least
    ``match.corridor_min_overlap`` of its length. A site: same sous-trame and infrastructure, points within
    ``match.site_tolerance_m``. One to one, best pairs first (largest overlap, then nearest). ``match``: a
    :class:`~tvb_tasks.config_sections.HistoryMatch`; geometries from :func:`identity_geometries` (CRS in m)."""
    pairs: list[tuple[float, str, str]] = []
    if not len(current) or not len(previous):
        return {}
    near = shapely.STRtree(prev_geoms).query(cur_geoms, predicate="dwithin",
                                              distance=max(match.corridor_buffer_m, match.site_tolerance_m))
    cur_rows, prev_rows = list(current.itertuples(index=False)), list(previous.itertuples(index=False))
    for i, j in zip(*near):
        c, p = cur_rows[i], prev_rows[j]
        if c.candidate != p.candidate or c.sous_trame != p.sous_trame:
            continue
        a, b = cur_geoms[i], prev_geoms[j]
        if c.candidate == "corridor" and a.geom_type.endswith("LineString") and b.geom_type.endswith("LineString"):
            share = _line_overlap(a, b, match.corridor_buffer_m)
            if share >= match.corridor_min_overlap:
                pairs.append((-share, str(c.id), str(p.id)))
        elif c.candidate != "corridor" and str(c.infrastructure) == str(p.infrastructure):
            d = float(a.distance(b))
            if d <= match.site_tolerance_m:
                pairs.append((d, str(c.id), str(p.id)))
    out: dict[str, str] = {}
    used: set[str] = set()
    for _, cid, pid in sorted(pairs):
        if cid not in out and pid not in used:
            out[cid] = pid
            used.add(pid)
    return out


def top_changes(current: pd.DataFrame, previous: pd.DataFrame | None, top_n: int,
                matches: dict[str, str] | None = None, merged: dict[str, str] | None = None) -> pd.DataFrame:
    """History of the top priorities: every item in the current or previous top ``top_n`` with its id and rank
    then and now and a French ``evolution``: maintenue (in both tops), entrée dans le top, sortie du top, nouvelle
    (no match in the previous release), disparue (no match in this one).

    ``matches`` ({current id: previous id}, :func:`match_previous`) says which items are the same object; ids are
    not stable between releases, so without it items match by id only. ``merged`` ({previous id: current site
    id}): previous corridors that are now crossing-only corridors, carried by that site (evolution "franchissement
    seul", the site's rank)."""
    cols = ["id", "sous_trame", "rank", "score", "id_previous", "rank_previous", "score_previous", "evolution"]
    if previous is None or not len(previous):
        out = current.loc[current["rank"] <= top_n, ["id", "sous_trame", "rank", "score"]].copy()
        out["id_previous"], out["rank_previous"], out["score_previous"] = None, np.nan, np.nan
        out["evolution"] = "première publication"
        return out[cols].sort_values("rank").reset_index(drop=True)
    if matches is None:
        known = set(previous["id"].astype(str))
        matches = {i: i for i in current["id"].astype(str) if i in known}
    prev = previous.assign(id=previous["id"].astype(str)).set_index("id")
    back = {p: c for c, p in matches.items()}
    rows = []
    for r in current.itertuples(index=False):
        pid = matches.get(str(r.id))
        was = prev.loc[pid] if pid is not None else None
        if r.rank > top_n and (was is None or was["rank"] > top_n):
            continue
        rows.append({"id": str(r.id), "sous_trame": r.sous_trame, "rank": r.rank, "score": r.score,
                     "id_previous": pid, "rank_previous": np.nan if was is None else was["rank"],
                     "score_previous": np.nan if was is None else was["score"]})
    site = current.assign(id=current["id"].astype(str)).set_index("id")
    for pid, p in prev[prev["rank"] <= top_n].iterrows():
        if pid not in back:
            carrier = (merged or {}).get(str(pid))
            now = site.loc[carrier] if carrier is not None and carrier in site.index else None
            rows.append({"id": carrier if now is not None else None, "sous_trame": p["sous_trame"],
                         "rank": np.nan if now is None else now["rank"],
                         "score": np.nan if now is None else now["score"], "id_previous": pid,
                         "rank_previous": p["rank"], "score_previous": p["score"], "_merged": now is not None})
    out = pd.DataFrame(rows, columns=[*cols[:-1], "_merged"])
    out["_merged"] = out["_merged"].eq(True)
    now_in = out["rank"] <= top_n
    was_in = out["rank_previous"] <= top_n
    out["evolution"] = np.select(
        [out["_merged"], out["id"].isna(), out["id_previous"].isna(), now_in & was_in, now_in],
        ["franchissement seul", "disparue", "nouvelle", "maintenue", "entrée dans le top"], "sortie du top")
    out = out.drop(columns="_merged")
    return out.sort_values(["rank", "rank_previous"], na_position="last").reset_index(drop=True)
