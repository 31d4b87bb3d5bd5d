"""Candidates of the restoration priorities and what restoring one changes in its sous-trame's graph.

* the adapter to the layers' schema: :func:`corridor_candidates` (corridors by status), :func:`rupture_sites`
  (rupture points grouped into sites);
* the graph distance of a corridor once restored (:func:`corridor_restored_distance`: land-use excess and barrier
  crossings removed) or once ONE site's barriers stop being barriers (:func:`site_distance`, :func:`barrier_saving`,
  Linkage Mapper Barrier Mapper's cost saved);
* the gain of a site that splits a reservoir in two (:func:`reservoir_split_gain`).

Split from :mod:`.ranking` (which combines them in ``compute_priorities`` and re-exports these names). CRS: the
territory's (metres); costs in the cost units of the corridors layer.
"""
from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tvb_tasks.config import Territory
from tvb_tasks.publish.styles import status_code

from .network import Network


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

def _mean_friction(corridor) -> float:
    """The corridor's land-use mean friction; cost / length (infrastructures included) when the layer has none."""
    value = corridor.get("mean_friction")
    if value is None or pd.isna(value):
        return float(corridor["cost"]) / max(float(corridor["length_m"]), 1e-9)
    return float(value)


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
    # only the lines crossing this reservoir (spatial index): not a test of the whole layer per site, which grew
    # ∝ sites × lines ∝ area² (issue #18); the same lines, in the layer's order
    near = infra.iloc[np.sort(infra.sindex.query(reservoir, predicate="intersects"))]
    kind = near["infra_type"].astype(str) if "infra_type" in near.columns else pd.Series("", index=near.index)
    same = kind == str(on["infrastructure"].iloc[0])
    name = on["infra_name"].iloc[0] if "infra_name" in on.columns else None
    if isinstance(name, str) and name and "infra_name" in near.columns:
        same &= near["infra_name"].astype(str) == name
    lines = near.loc[same]
    if lines.empty:
        return None
    width = pd.to_numeric(lines.get("width_m"), errors="coerce").fillna(1.0).max() \
        if "width_m" in lines.columns else 1.0
    parts = split_parts_ha(reservoir, lines.geometry.values, float(width))
    return None if parts is None else split_gain(net, node, *parts)
