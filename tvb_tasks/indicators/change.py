"""What changed since the previous release: an indicator change table and a change layer.

Features are matched on geometry, not on ids (ids need not be stable across releases), within one sous-trame:

* reservoirs / relays: same when their shared area is at least ``min_overlap_share`` of the smaller polygon;
  unmatched new ones are ``gained``, unmatched old ones ``lost``, matched ones whose area moved by more than 1 %
  ``resized``;
* corridors: same when their Hausdorff distance is ≤ ``line_tolerance_m``; ``gained``, ``lost`` or
  ``status_changed`` (the old status is kept in ``previous_status``);
* rupture points: same when ≤ ``point_tolerance_m`` apart; ``new`` or ``removed``.

Matching is one-to-one, best candidates first. EPSG:2154, areas in ha, lengths in km.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.indicators.history import KEY_COLUMNS, ROW_COLUMNS

CHANGE_LABELS = {
    "gained": "gagné", "lost": "perdu", "resized": "surface modifiée", "status_changed": "statut modifié",
    "new": "nouveau", "removed": "supprimé",
}
STATUS_LABELS = {"existing": "existant", "to_restore": "à restaurer", "to_create": "à créer"}
RESIZE_TOLERANCE = 0.01
FLOAT_NOISE = 1e-9          # relative differences below this are rounding noise, not change


def change_table(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Indicator rows of two releases side by side: previous, current, change_abs, change_pct (None when the
    previous value is 0 or missing). Indicators present in only one release are kept with a missing side."""
    cur = current[ROW_COLUMNS].rename(columns={"value": "current"})
    prev = previous[ROW_COLUMNS].rename(columns={"value": "previous", "unit": "unit_prev"})
    table = cur.merge(prev, on=KEY_COLUMNS, how="outer")
    table["unit"] = table["unit"].fillna(table["unit_prev"])
    table = table.drop(columns="unit_prev")
    diff = table["current"] - table["previous"]
    scale = np.maximum(table["current"].abs(), table["previous"].abs())
    table["change_abs"] = diff.where(~(diff.abs() <= FLOAT_NOISE * scale), 0.0)    # float noise → exactly 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * table["change_abs"] / table["previous"].abs()
    table["change_pct"] = pct.where(table["previous"].fillna(0) != 0)
    order = {"key_figures": 0, "connectivity": 1, "fragmentation": 2, "communes": 3}
    table["_o"] = table["family"].map(order).fillna(9)
    table = table.sort_values(["_o", "scope", "unit_id", "sous_trame", "indicator"], kind="stable")
    return table.drop(columns="_o").reset_index(drop=True)[
        [*KEY_COLUMNS, "unit", "previous", "current", "change_abs", "change_pct"]]


def _greedy_pairs(left: np.ndarray, right: np.ndarray, score: np.ndarray, higher_is_better: bool
                  ) -> list[tuple[int, int]]:
    """One-to-one pairs among candidate (left, right) pairs, best score first."""
    order = np.argsort(-score if higher_is_better else score, kind="stable")
    used_l, used_r, pairs = set(), set(), []
    for i in order:
        lft, r = int(left[i]), int(right[i])
        if lft not in used_l and r not in used_r:
            used_l.add(lft)
            used_r.add(r)
            pairs.append((lft, r))
    return pairs


def _same_sous_trame(prev: gpd.GeoDataFrame, new: gpd.GeoDataFrame, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    if "sous_trame" in prev.columns and "sous_trame" in new.columns:
        return prev["sous_trame"].astype(str).to_numpy()[p] == new["sous_trame"].astype(str).to_numpy()[n]
    return np.ones(len(p), dtype=bool)


def _row(kind: str, change: str, feature: pd.Series, geometry, **extra) -> dict:
    return {"layer": kind, "change": change, "libelle": CHANGE_LABELS[change],
            "id": str(feature.get("id", "")), "sous_trame": str(feature.get("sous_trame", "") or ""),
            **extra, "geometry": geometry}


def polygon_changes(prev: gpd.GeoDataFrame, new: gpd.GeoDataFrame, kind: str, min_overlap_share: float
                    ) -> list[dict]:
    """Gained, lost and resized polygons (reservoirs or relays) of a release against the previous one."""
    rows: list[dict] = []
    pairs: list[tuple[int, int]] = []
    if len(prev) and len(new):
        p, n = new.sindex.query(prev.geometry.values, predicate="intersects")
        keep = _same_sous_trame(prev, new, p, n)
        p, n = p[keep], n[keep]
        shared = shapely.area(shapely.intersection(prev.geometry.values[p], new.geometry.values[n]))
        smaller = np.minimum(shapely.area(prev.geometry.values[p]), shapely.area(new.geometry.values[n]))
        share = np.divide(shared, smaller, out=np.zeros_like(shared), where=smaller > 0)
        ok = share >= min_overlap_share
        pairs = _greedy_pairs(p[ok], n[ok], share[ok], higher_is_better=True)
    matched_prev = {a for a, _ in pairs}
    matched_new = {b for _, b in pairs}
    prev_area = shapely.area(prev.geometry.values) / 10_000
    new_area = shapely.area(new.geometry.values) / 10_000
    for j in range(len(new)):
        if j not in matched_new:
            rows.append(_row(kind, "gained", new.iloc[j], new.geometry.values[j], previous_id="",
                             area_ha=new_area[j], previous_area_ha=0.0))
    for i in range(len(prev)):
        if i not in matched_prev:
            rows.append(_row(kind, "lost", prev.iloc[i], prev.geometry.values[i], previous_id=str(prev.iloc[i]["id"]),
                             area_ha=0.0, previous_area_ha=prev_area[i]))
    for i, j in pairs:
        if abs(new_area[j] - prev_area[i]) > RESIZE_TOLERANCE * prev_area[i]:
            rows.append(_row(kind, "resized", new.iloc[j], new.geometry.values[j],
                             previous_id=str(prev.iloc[i]["id"]), area_ha=new_area[j], previous_area_ha=prev_area[i]))
    return rows


def corridor_changes(prev: gpd.GeoDataFrame, new: gpd.GeoDataFrame, line_tolerance_m: float) -> list[dict]:
    """Gained, lost and status-changed corridors."""
    pairs: list[tuple[int, int]] = []
    if len(prev) and len(new):
        p, n = new.sindex.query(prev.geometry.values, predicate="dwithin", distance=max(line_tolerance_m, 1e-6))
        keep = _same_sous_trame(prev, new, p, n)
        p, n = p[keep], n[keep]
        dist = shapely.hausdorff_distance(prev.geometry.values[p], new.geometry.values[n])
        ok = dist <= line_tolerance_m
        pairs = _greedy_pairs(p[ok], n[ok], dist[ok], higher_is_better=False)
    matched_prev = {a for a, _ in pairs}
    matched_new = {b for _, b in pairs}
    rows = []
    for j in range(len(new)):
        if j not in matched_new:
            f = new.iloc[j]
            rows.append(_row("corridors", "gained", f, new.geometry.values[j], previous_id="",
                             status=str(f["status"]), previous_status="",
                             length_km=shapely.length(new.geometry.values[j]) / 1000))
    for i in range(len(prev)):
        if i not in matched_prev:
            f = prev.iloc[i]
            rows.append(_row("corridors", "lost", f, prev.geometry.values[i], previous_id=str(f["id"]),
                             status="", previous_status=str(f["status"]),
                             length_km=shapely.length(prev.geometry.values[i]) / 1000))
    for i, j in pairs:
        old, cur = str(prev.iloc[i]["status"]), str(new.iloc[j]["status"])
        if old != cur:
            rows.append(_row("corridors", "status_changed", new.iloc[j], new.geometry.values[j],
                             previous_id=str(prev.iloc[i]["id"]), status=cur, previous_status=old,
                             length_km=shapely.length(new.geometry.values[j]) / 1000))
    return rows


def point_changes(prev: gpd.GeoDataFrame, new: gpd.GeoDataFrame, point_tolerance_m: float) -> list[dict]:
    """New and removed rupture points."""
    pairs: list[tuple[int, int]] = []
    if len(prev) and len(new):
        p, n = new.sindex.query(prev.geometry.values, predicate="dwithin", distance=max(point_tolerance_m, 1e-6))
        dist = shapely.distance(prev.geometry.values[p], new.geometry.values[n])
        ok = dist <= point_tolerance_m
        pairs = _greedy_pairs(p[ok], n[ok], dist[ok], higher_is_better=False)
    matched_prev = {a for a, _ in pairs}
    matched_new = {b for _, b in pairs}
    rows = [_row("rupture_points", "new", new.iloc[j], new.geometry.values[j], previous_id="",
                 infrastructure=_infrastructure(new.iloc[j])) for j in range(len(new)) if j not in matched_new]
    rows += [_row("rupture_points", "removed", prev.iloc[i], prev.geometry.values[i],
                  previous_id=str(prev.iloc[i]["id"]), infrastructure=_infrastructure(prev.iloc[i]))
             for i in range(len(prev)) if i not in matched_prev]
    return rows


def _infrastructure(point: pd.Series) -> str:
    """The crossed infrastructure of a rupture point (``infrastructure`` or ``infra_type`` column)."""
    for column in ("infrastructure", "infra_type"):
        value = point.get(column)
        if value is not None and not pd.isna(value):
            return str(value)
    return ""


CHANGE_LAYERS = {"reservoirs": "reservoirs_change", "relays": "relays_change",
                 "corridors": "corridors_change", "rupture_points": "rupture_points_change"}


def change_layers(prev: dict[str, gpd.GeoDataFrame], new: dict[str, gpd.GeoDataFrame], *, min_overlap_share: float,
                  line_tolerance_m: float, point_tolerance_m: float) -> dict[str, gpd.GeoDataFrame]:
    """Change layers (name → GeoDataFrame, EPSG of the inputs), see :data:`CHANGE_LAYERS`."""
    crs = new["reservoirs"].crs
    found = {
        "reservoirs": polygon_changes(prev["reservoirs"], new["reservoirs"], "reservoirs", min_overlap_share),
        "relays": polygon_changes(prev["relays"], new["relays"], "relays", min_overlap_share),
        "corridors": corridor_changes(prev["corridors"], new["corridors"], line_tolerance_m),
        "rupture_points": point_changes(prev["rupture_points"], new["rupture_points"], point_tolerance_m),
    }
    extra = {"reservoirs": ["area_ha", "previous_area_ha"], "relays": ["area_ha", "previous_area_ha"],
             "corridors": ["status", "previous_status", "length_km"], "rupture_points": ["infrastructure"]}
    out = {}
    for layer, rows in found.items():
        columns = ["layer", "change", "libelle", "id", "previous_id", "sous_trame", *extra[layer]]
        frame = pd.DataFrame(rows, columns=[*columns, "geometry"])
        out[CHANGE_LAYERS[layer]] = gpd.GeoDataFrame(frame[columns], geometry=frame["geometry"].tolist()
                                                     if len(frame) else gpd.GeoSeries([], crs=crs), crs=crs)
    return out


def change_counts(layers: dict[str, gpd.GeoDataFrame]) -> dict[str, int]:
    """``{"<layer>_<change>": count}`` for every change found (e.g. ``reservoirs_lost``)."""
    counts: dict[str, int] = {}
    for gdf in layers.values():
        for (layer, change), n in gdf.groupby(["layer", "change"]).size().items():
            counts[f"{layer}_{change}"] = int(n)
    return counts


CHANGE_GEOMETRY = {"reservoirs_change": "MultiPolygon", "relays_change": "MultiPolygon",
                   "corridors_change": "MultiLineString", "rupture_points_change": "Point"}


def write_change_gpkg(layers: dict[str, gpd.GeoDataFrame], path: Path) -> None:
    """Write every change layer (even empty) to one new GeoPackage (replaced if it exists)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for name, gdf in layers.items():
        gdf.to_file(path, layer=name, driver="GPKG", promote_to_multi=name != "rupture_points_change",
                    geometry_type=CHANGE_GEOMETRY.get(name, "Unknown"))
