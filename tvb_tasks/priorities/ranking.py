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

This module holds the entry point (:func:`compute_priorities`, :func:`sous_trame_networks`); its parts are in
:mod:`.candidates` (candidates, restored distances, reservoir splits), :mod:`.costs` (cost, maintenance, conflict,
commune), :mod:`.scoring` (score, rank, French wording) and :mod:`.history` (matching two releases' priorities),
whose names are re-exported here.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.indicators import _network_inputs, indicators_config, wet_network_of
from tvb_tasks.indicators.connectivity import passable_changes

from .candidates import (
    _mean_friction,
    barrier_saving,
    corridor_candidates,
    corridor_restored_distance,
    element_width_m,
    in_reservoir,
    infrastructure_friction,
    reservoir_split_gain,
    restored_cost,
    rupture_sites,
    site_distance,
    split_gain,
    split_parts_ha,
)
from .config import crossing_width_m, priorities_config, restored_friction
from .costs import (
    commune_of,
    crossing_cost,
    maintenance_overlap,
    project_areas,
    project_conflict,
    representative_points,
    stretch_plan,
)
from .history import (
    identity_geometries,
    match_previous,
    top_changes,
)
from .network import Network, build_network, improvement
from .scoring import (
    GAIN_EPSILON,
    INFRA_LABELS,
    ZERO_GAIN_CAUSES,
    _label,
    crossing_name,
    crossing_phrase,
    score_and_rank,
    score_formula,
    urgency,
)

# the names of the split modules stay importable from here (tests, stage, screening, sheets import them from .ranking)
__all__ = [
    "GAIN_EPSILON",
    "INFRA_LABELS",
    "PRIORITY_COLUMNS",
    "ZERO_GAIN_CAUSES",
    "barrier_saving",
    "commune_of",
    "compute_priorities",
    "corridor_candidates",
    "corridor_restored_distance",
    "crossing_cost",
    "crossing_name",
    "crossing_phrase",
    "element_width_m",
    "identity_geometries",
    "in_reservoir",
    "infrastructure_friction",
    "maintenance_overlap",
    "match_previous",
    "project_areas",
    "project_conflict",
    "representative_points",
    "reservoir_split_gain",
    "restored_cost",
    "rupture_sites",
    "score_and_rank",
    "score_formula",
    "site_distance",
    "sous_trame_networks",
    "split_gain",
    "split_parts_ha",
    "stretch_plan",
    "top_changes",
    "urgency",
]

PRIORITY_COLUMNS = [
    "id", "candidate", "sous_trame", "status", "corridor_ids", "from_id", "to_id", "infrastructure", "infra_name",
    "length_m", "n_points", "gain_dpc_pct", "gain_ec_ha", "gain_method", "cost_base", "maintenance_share",
    "maintenance", "cost_proxy", "conflict", "projects", "score", "rank", "rank_sous_trame", "rank_commune",
    "insee", "commune", "libelle", "flag",
]


# --- entry point -----------------------------------------------------------------------------------------------------
def sous_trame_networks(territory: Territory, layers: dict[str, gpd.GeoDataFrame], gpkg: Path | str = "layers"
                        ) -> dict[str, Network]:
    """The graph of each sous-trame, built from the same inputs as the indicators' connectivity."""
    cfg = priorities_config(territory)
    p_at = indicators_config(territory).connectivity.probability_at_threshold
    out = {}
    for st in territory.computed_sous_trames:
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

    Every step is local (issue #18: sites' points by id, maintenance sectors and reservoir lines by spatial index,
    ΔPC on the block of the changed links' neighbourhood). Measured (cProfile of the indicators task, synthetic
    regions, 25 m, four sous-trames): 38.5 s at ×4 before the overlap and site fixes, 15.4 s after them (load ≈ 5
    on 2 cores); the whole task 7.3 / 31.1 / 319 s at ×1 / ×4 / ×16 before, 3.2 / 8.5 / 32.7 s after (load 2–3).
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
    # each site's points by position (a dict of id → positions: one pass, not a scan of all points per site,
    # which grew ∝ sites × points ∝ area², issue #18)
    positions: dict[str, list[int]] = {}
    for pos, pid in enumerate(points["id"].astype(str)):
        positions.setdefault(pid, []).append(pos)
    for _, s in sites.iterrows():
        pts = points.iloc[sorted(p for pid in set(s["point_ids"]) for p in positions.get(pid, ()))]
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

def _line_buffer(territory: Territory) -> float:
    from .config import screening_config

    return screening_config(territory).line_buffer_m
