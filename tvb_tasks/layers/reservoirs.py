"""Reservoirs (réservoirs de biodiversité) and relay zones (zones relais) of one sous-trame.

Method (SRCE Nord-Pas-de-Calais / BioDispersal practice), every threshold from the territory YAML:

* protected areas of the ``always_reservoir`` types (APB, RNN, RNR, biological reserves) are reservoirs as a whole,
  for each sous-trame whose habitat covers at least the sous-trame's relay minimum area inside them, and in any case
  for the sous-trame the area is most permeable to (lowest mean land-use friction) — so none is lost;
* protected / inventory areas of the ``case_by_case`` types (Natura 2000, ZNIEFF 1, ENS) contribute only the habitat
  of the sous-trame they contain, in pieces of at least the relay minimum area;
* habitat patches of at least ``reservoir_min_area_ha`` are reservoirs;
* reservoir pieces that touch are merged; each reservoir lists its origins;
* relays: the remaining habitat patches between ``relay_min_area_ha`` (included) and ``reservoir_min_area_ha``
  (excluded), minus the reservoirs.

CRS: territory CRS (EPSG:2154); areas in hectares.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
from shapely import make_valid

from .common import M2_PER_HA, LayerInputError, clip_to, empty_frame, polygons_only, read_role

__all__ = [
    "RELAY_COLUMNS",
    "RESERVOIR_COLUMNS",
    "always_reservoir_sous_trames",
    "load_protected_areas",
    "select_reservoirs",
]

RESERVOIR_COLUMNS = ["id", "sous_trame", "origin", "origin_name", "protection_types", "area_ha"]
RELAY_COLUMNS = ["id", "sous_trame", "origin", "origin_name", "area_ha"]


def load_protected_areas(territory, inputs: dict[str, Path], boundary) -> gpd.GeoDataFrame:
    """Protected / inventory areas (role ``protected_areas``) clipped to the territory, with ``pa_id``,
    ``protection_type``, ``pa_name`` and ``pa_rule`` ∈ {always, case_by_case}; other types are dropped."""
    cfg = territory.protected_areas
    gdf = read_role(territory, inputs, "protected_areas", required=False)
    if gdf.empty:
        return empty_frame(territory.crs, ["pa_id", "protection_type", "pa_name", "pa_rule"])
    if cfg.type_column not in gdf.columns:
        raise LayerInputError(f"protected areas: column {cfg.type_column!r} missing (columns: {list(gdf.columns)})")
    names = gdf[cfg.name_column].astype(str) if cfg.name_column in gdf.columns else gdf["source"].astype(str)
    out = gpd.GeoDataFrame({"protection_type": gdf[cfg.type_column].astype(str), "pa_name": names},
                           geometry=gdf.geometry.values, crs=territory.crs)
    rule = np.where(out["protection_type"].isin(cfg.always_reservoir), "always",
                    np.where(out["protection_type"].isin(cfg.case_by_case), "case_by_case", ""))
    out["pa_rule"] = rule
    out = out[out["pa_rule"] != ""]
    out = polygons_only(clip_to(out, boundary))
    out.insert(0, "pa_id", np.arange(1, len(out) + 1))
    return out


def _habitat_polys(territory, sous_trame: str, landuse: gpd.GeoDataFrame, extra: gpd.GeoDataFrame):
    st = territory.sous_trames[sous_trame]
    geoms = list(landuse.geometry[landuse["class"].isin(st.habitat)])
    if len(extra):
        geoms += list(extra.geometry[extra["sous_trame"] == sous_trame])
    return gpd.GeoSeries(geoms, crs=territory.crs)


def _area_inside(zones: gpd.GeoDataFrame, polys: gpd.GeoSeries) -> np.ndarray:
    """For each zone, the area (m²) of the union of ``polys`` inside it."""
    out = np.zeros(len(zones))
    if polys.empty or zones.empty:
        return out
    tree_idx = polys.sindex
    for i, zone in enumerate(zones.geometry):
        hits = tree_idx.query(zone, predicate="intersects")
        if len(hits):
            out[i] = make_valid(polys.iloc[hits].union_all()).intersection(zone).area
    return out


def always_reservoir_sous_trames(territory, protected: gpd.GeoDataFrame, landuse: gpd.GeoDataFrame,
                                 extra: gpd.GeoDataFrame) -> dict[int, list[str]]:
    """``pa_id`` → sous-trames of which an always-reservoir protected area is a reservoir.

    A sous-trame gets the area when its habitat inside covers ≥ its ``relay_min_area_ha``; the sous-trame with the
    lowest area-weighted land-use friction inside the area always gets it (ties: YAML order).
    """
    always = protected[protected["pa_rule"] == "always"]
    result: dict[int, list[str]] = {int(p): [] for p in always["pa_id"]}
    if always.empty:
        return result
    names = list(territory.sous_trames)
    habitat_ha = {st: _area_inside(always, _habitat_polys(territory, st, landuse, extra)) / M2_PER_HA
                  for st in names}
    # area-weighted mean land-use friction per sous-trame inside each area
    inter = gpd.overlay(always[["pa_id", always.geometry.name]], landuse[["class", landuse.geometry.name]],
                        how="intersection", keep_geom_type=True)
    inter["a"] = inter.area
    mean_friction = {}
    for st in names:
        f = inter["class"].map({c: v[st] for c, v in territory.friction.landuse.items()})
        num = (f * inter["a"]).groupby(inter["pa_id"]).sum()
        den = inter["a"].groupby(inter["pa_id"]).sum()
        mean_friction[st] = (num / den).to_dict()
    for i, pa_id in enumerate(always["pa_id"]):
        pa_id = int(pa_id)
        chosen = [st for st in names if habitat_ha[st][i] >= territory.sous_trames[st].relay_min_area_ha]
        fr = [(mean_friction[st].get(pa_id, np.inf), k) for k, st in enumerate(names)]
        best = names[min(fr)[1]]
        if best not in chosen:
            chosen.append(best)
        result[pa_id] = [st for st in names if st in chosen]
    return result


def _merge_pieces(pieces: gpd.GeoDataFrame, crs) -> gpd.GeoDataFrame:
    """Union touching reservoir pieces; aggregate their origins."""
    merged = polygons_only(gpd.GeoDataFrame(geometry=[make_valid(pieces.union_all())], crs=crs))
    pts = gpd.GeoDataFrame(pieces.drop(columns=pieces.geometry.name),
                           geometry=pieces.geometry.representative_point(), crs=crs)
    joined = gpd.sjoin(pts, merged, predicate="within", how="left")
    rows = []
    for k in range(len(merged)):
        part = joined[joined["index_right"] == k]
        origins = sorted(set(part["origin"]))
        names = sorted({n for n in part["origin_name"] if n})
        types = sorted({t for t in part["protection_type"] if t})
        rows.append({"origin": "+".join(origins) if origins else "habitat_patch",
                     "origin_name": "; ".join(names), "protection_types": ",".join(types)})
    out = gpd.GeoDataFrame(rows, geometry=merged.geometry.values, crs=crs)
    return out


def select_reservoirs(territory, sous_trame: str, patches: gpd.GeoDataFrame, protected: gpd.GeoDataFrame,
                      always_assignment: dict[int, list[str]]) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Reservoirs and relays of one sous-trame (columns :data:`RESERVOIR_COLUMNS`, :data:`RELAY_COLUMNS`).

    ``patches``: habitat patches (``patch_id``, ``area_ha``) from :func:`landuse.habitat_patches`;
    ``protected``: from :func:`load_protected_areas`; ``always_assignment``: from
    :func:`always_reservoir_sous_trames`.
    """
    st = territory.sous_trames[sous_trame]
    crs = territory.crs
    pieces = []
    # 1. always-reservoir protected areas, whole
    always = protected[(protected["pa_rule"] == "always")
                       & protected["pa_id"].map(lambda p: sous_trame in always_assignment.get(int(p), []))]
    for _, pa in always.iterrows():
        pieces.append({"origin": "protected_area", "origin_name": f"{pa['protection_type']} {pa['pa_name']}",
                       "protection_type": pa["protection_type"], "geometry": pa.geometry})
    # 2. case-by-case areas: the sous-trame's habitat inside them, pieces >= relay minimum
    case = protected[protected["pa_rule"] == "case_by_case"]
    if len(case) and len(patches):
        inter = gpd.overlay(case[["pa_name", "protection_type", case.geometry.name]],
                            patches[["patch_id", patches.geometry.name]], how="intersection", keep_geom_type=True)
        inter = polygons_only(inter)
        inter = inter[inter.area >= st.relay_min_area_ha * M2_PER_HA]
        for _, row in inter.iterrows():
            pieces.append({"origin": "protected_area",
                           "origin_name": f"{row['protection_type']} {row['pa_name']}",
                           "protection_type": row["protection_type"], "geometry": row.geometry})
    # 3. large habitat patches
    big = patches[patches["area_ha"] >= st.reservoir_min_area_ha]
    for _, row in big.iterrows():
        pieces.append({"origin": "habitat_patch", "origin_name": f"patch {int(row['patch_id'])}",
                       "protection_type": "", "geometry": row.geometry})
    if pieces:
        res = _merge_pieces(gpd.GeoDataFrame(pieces, geometry="geometry", crs=crs), crs)
        res["area_ha"] = res.area / M2_PER_HA
        res = res.sort_values("area_ha", ascending=False, kind="stable").reset_index(drop=True)
        res["sous_trame"] = sous_trame
        res["id"] = [f"{sous_trame}-R{i:03d}" for i in range(1, len(res) + 1)]
        reservoirs = res[RESERVOIR_COLUMNS + ["geometry"]]
    else:
        reservoirs = empty_frame(crs, RESERVOIR_COLUMNS)

    # relays: mid-sized patches not already in a reservoir
    mid = patches[(patches["area_ha"] >= st.relay_min_area_ha) & (patches["area_ha"] < st.reservoir_min_area_ha)]
    if len(mid) and len(reservoirs):
        taken = reservoirs.union_all()
        mid = mid.assign(geometry=mid.geometry.difference(taken))
        mid = polygons_only(mid)
    if len(mid):
        mid = mid.assign(area_ha=mid.area / M2_PER_HA)
        mid = mid[mid["area_ha"] >= st.relay_min_area_ha]
    if len(mid):
        relays = gpd.GeoDataFrame({
            "sous_trame": sous_trame, "origin": "habitat_patch",
            "origin_name": [f"patch {int(p)}" for p in mid["patch_id"]], "area_ha": mid["area_ha"].values,
        }, geometry=mid.geometry.values, crs=crs)
        relays = relays.sort_values("area_ha", ascending=False, kind="stable").reset_index(drop=True)
        relays.insert(0, "id", [f"{sous_trame}-Z{i:03d}" for i in range(1, len(relays) + 1)])
    else:
        relays = empty_frame(crs, RELAY_COLUMNS)
    return reservoirs, relays
