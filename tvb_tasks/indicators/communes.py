"""Per reporting unit (commune) measures: area, land-use shares, reservoirs / relays, corridors, rupture points.

Every measure is computed by cutting the layers at the commune boundaries with one vectorised spatial-index pass
(STRtree + ``shapely.intersection`` on arrays); the territory's key figures are the sums of these commune values, so
commune and territory figures always agree. EPSG:2154; areas in ha, lengths in km.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.indicators.common import CORRIDOR_STATUSES

M2_PER_HA = 10_000.0
UNIT = "insee"


def intersect_with_units(features: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str = UNIT
                         ) -> gpd.GeoDataFrame:
    """The parts of ``features`` inside each unit: one row per (feature, unit) pair that intersect, with the
    feature's columns, ``unit_col`` and the intersection geometry (which may hold lower-dimension slivers)."""
    columns = [c for c in features.columns if c != features.geometry.name]
    if features.empty or units.empty:
        return gpd.GeoDataFrame(columns=[*columns, unit_col], geometry=gpd.GeoSeries([], crs=features.crs),
                                crs=features.crs)
    feat_idx, unit_idx = units.sindex.query(features.geometry.values, predicate="intersects")
    geoms = _clip_to_units(np.asarray(features.geometry.values)[feat_idx], np.asarray(units.geometry.values)[unit_idx])
    out = pd.DataFrame(features[columns].to_numpy()[feat_idx], columns=columns)
    out = out.astype(features[columns].dtypes.to_dict())
    out[unit_col] = units[unit_col].to_numpy()[unit_idx]
    return gpd.GeoDataFrame(out, geometry=np.asarray(geoms), crs=features.crs)


def _clip_to_units(features: np.ndarray, units: np.ndarray) -> np.ndarray:
    """``shapely.intersection(features, units)`` pairwise, where a feature strictly inside its unit (prepared
    ``contains_properly``) and valid (polygons) or simple (lines, points) is kept as it is: the same area or length,
    without an overlay against the whole unit — against a territory outline, or a large commune, that overlay cost
    ∝ the unit's vertices for every feature (∝ area² for the territory, issue #18); only the features crossing a
    unit boundary are cut."""
    shapely.prepare(units)
    dims = shapely.get_dimensions(features)
    sound = np.where(dims == 2, shapely.is_valid(features), shapely.is_simple(features))
    keep = shapely.contains_properly(units, features) & sound
    out = features.copy()
    out[~keep] = shapely.intersection(features[~keep], units[~keep])
    return out


def _sum_by_unit(pieces: gpd.GeoDataFrame, values: np.ndarray, units: gpd.GeoDataFrame, unit_col: str,
                 by: str | None = None) -> pd.DataFrame | pd.Series:
    frame = pd.DataFrame({unit_col: pieces[unit_col].to_numpy(), "value": values})
    index = pd.Index(units[unit_col], name=unit_col)
    if by is None:
        return frame.groupby(unit_col)["value"].sum().reindex(index, fill_value=0.0)
    frame[by] = pieces[by].to_numpy()
    return frame.pivot_table(index=unit_col, columns=by, values="value", aggfunc="sum").reindex(index).fillna(0.0)


def area_by_unit(polygons: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str = UNIT,
                 by: str | None = None) -> pd.DataFrame | pd.Series:
    """Polygon area (ha) inside each unit, optionally split by the values of column ``by``."""
    pieces = intersect_with_units(polygons, units, unit_col)
    return _sum_by_unit(pieces, shapely.area(pieces.geometry.values) / M2_PER_HA, units, unit_col, by)


def length_by_unit(lines: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str = UNIT,
                   by: str | None = None) -> pd.DataFrame | pd.Series:
    """Line length (km) inside each unit, optionally split by column ``by``."""
    pieces = intersect_with_units(lines, units, unit_col)
    return _sum_by_unit(pieces, shapely.length(pieces.geometry.values) / 1000.0, units, unit_col, by)


def count_by_unit(points: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str = UNIT) -> pd.Series:
    """Number of points in each unit; a point on a shared boundary counts once (in the first unit found)."""
    index = pd.Index(units[unit_col], name=unit_col)
    if points.empty:
        return pd.Series(0, index=index, dtype="int64")
    point_idx, unit_idx = units.sindex.query(points.geometry.values, predicate="intersects")
    first = pd.DataFrame({"p": point_idx, unit_col: units[unit_col].to_numpy()[unit_idx]}).drop_duplicates("p")
    return first.groupby(unit_col).size().reindex(index, fill_value=0).astype("int64")


def dissolved_parts(polygons: gpd.GeoDataFrame | gpd.GeoSeries) -> gpd.GeoDataFrame:
    """The union of the polygons split into its parts (no double counting of overlaps)."""
    geoms = polygons.geometry.values if isinstance(polygons, gpd.GeoDataFrame) else polygons.values
    crs = polygons.crs
    if len(geoms) == 0:
        return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    union = shapely.union_all(geoms)
    parts = shapely.get_parts(union)
    parts = parts[shapely.get_type_id(parts) == 3]     # polygons only
    return gpd.GeoDataFrame(geometry=parts, crs=crs)


def dissolved_status_lines(corridors: gpd.GeoDataFrame, statuses=CORRIDOR_STATUSES) -> gpd.GeoDataFrame:
    """Corridor lines dissolved across sous-trames, one row per status (columns ``status``, geometry): a stretch
    drawn by several sous-trames counts once, in the best of its statuses (order of ``statuses``: existing first).
    The lengths of the rows add up to the length of the union of all corridors."""
    rows, geoms = [], []
    done = None
    for status in statuses:
        sel = corridors[corridors["status"] == status]
        if sel.empty:
            continue
        union = shapely.union_all(sel.geometry.values)
        own = union if done is None else shapely.difference(union, done)
        done = union if done is None else shapely.union(done, union)
        if not own.is_empty:
            rows.append(status)
            geoms.append(own)
    return gpd.GeoDataFrame({"status": rows}, geometry=geoms, crs=corridors.crs)


def network_polygons(layers: dict[str, gpd.GeoDataFrame], sous_trames: list[str]) -> gpd.GeoDataFrame:
    """Reservoirs and relays of the given sous-trames (columns kind ∈ {reservoir, relay}, sous_trame)."""
    frames = []
    for layer, kind in (("reservoirs", "reservoir"), ("relays", "relay")):
        gdf = layers[layer]
        sel = gdf[gdf["sous_trame"].isin(sous_trames)]
        frames.append(gpd.GeoDataFrame({"kind": kind, "sous_trame": sel["sous_trame"].astype(str).to_numpy()},
                                       geometry=sel.geometry.values, crs=gdf.crs))
    return pd.concat(frames, ignore_index=True)


def commune_measures(layers: dict[str, gpd.GeoDataFrame], territory: Territory) -> pd.DataFrame:
    """One row per commune: area, land use, reservoirs / relays, corridors by status, rupture points.

    Columns: insee, nom, area_ha, artificial_ha, natural_ha, urban_nature_ha, landuse_ha, artificial_pct, natural_pct,
    reservoirs_ha, relays_ha, terrestrial_reservoirs_relays_ha, wet_reservoirs_relays_ha,
    corridors_existing_km, corridors_to_restore_km, corridors_to_create_km, terrestrial_corridors_km,
    wet_corridors_km, rupture_points, rupture_sites. Overlapping reservoirs / relays are counted once (union);
    corridor lengths are dissolved across sous-trames (:func:`dissolved_status_lines`).
    """
    units = layers["communes"][["insee", "nom", "geometry"]].copy()
    units["insee"] = units["insee"].astype(str)
    out = pd.DataFrame({"insee": units["insee"].to_numpy(), "nom": units["nom"].astype(str).to_numpy()})
    out["area_ha"] = shapely.area(units.geometry.values) / M2_PER_HA

    classes = territory.landuse.classes
    landuse = layers["landuse"][["class", "geometry"]]
    by_class = area_by_unit(landuse, units, by="class")
    artificial = [c for c, v in classes.items() if v.artificial and c in by_class.columns]
    natural = [c for c, v in classes.items() if v.natural and c in by_class.columns]
    out["artificial_ha"] = by_class[artificial].sum(axis=1).to_numpy()
    out["natural_ha"] = by_class[natural].sum(axis=1).to_numpy()
    urban_nature = [c for c, v in classes.items() if v.urban_nature and c in by_class.columns]
    out["urban_nature_ha"] = by_class[urban_nature].sum(axis=1).to_numpy()
    out["landuse_ha"] = by_class.sum(axis=1).to_numpy()
    out["artificial_pct"] = 100.0 * out["artificial_ha"] / out["area_ha"]
    out["natural_pct"] = 100.0 * out["natural_ha"] / out["area_ha"]

    for column, layer in (("reservoirs_ha", "reservoirs"), ("relays_ha", "relays")):
        out[column] = area_by_unit(dissolved_parts(layers[layer]), units).to_numpy()
    for column, sts in (("terrestrial_reservoirs_relays_ha", territory.terrestrial_sous_trames),
                        ("wet_reservoirs_relays_ha", territory.wet_sous_trames)):
        out[column] = area_by_unit(dissolved_parts(network_polygons(layers, sts)), units).to_numpy()

    corridors = status_lines(layers)
    terrestrial = dissolved_status_lines(corridors[corridors["sous_trame"].isin(territory.terrestrial_sous_trames)])
    # the dissolved lines in their parts (which do not overlap: same lengths): one multi-line per status, cut by
    # every commune, cost communes × network ∝ area² (issue #18); its parts are cut only by the communes they cross
    parts = terrestrial[["status", "geometry"]].explode(index_parts=False, ignore_index=True)
    by_status = length_by_unit(parts, units, by="status")
    for status in CORRIDOR_STATUSES:
        out[f"corridors_{status}_km"] = (by_status[status].to_numpy() if status in by_status.columns
                                         else np.zeros(len(out)))
    out["terrestrial_corridors_km"] = out[[f"corridors_{s}_km" for s in CORRIDOR_STATUSES]].sum(axis=1)
    out["wet_corridors_km"] = length_by_unit(layers["wet_corridors"][["geometry"]], units).to_numpy()
    out["rupture_points"] = count_by_unit(layers["rupture_points"], units).to_numpy()
    out["rupture_sites"] = count_sites_by_unit(layers["rupture_points"], units).to_numpy()
    pts = layers["rupture_points"]
    out["rupture_points_severity_4"] = (count_by_unit(pts[pd.to_numeric(pts["severity"]) >= 4], units).to_numpy()
                                        if "severity" in pts.columns else 0)
    vigilance = layers.get("vigilance_points")
    out["vigilance_points"] = count_by_unit(vigilance, units).to_numpy() if vigilance is not None else 0
    return out


def count_sites_by_unit(points: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str = UNIT) -> pd.Series:
    """Number of rupture sites (distinct ``site_id``; each point is its own site when the column is absent) per
    unit; a site whose points fall in several units counts in the unit of its first point."""
    index = pd.Index(units[unit_col], name=unit_col)
    if points.empty:
        return pd.Series(0, index=index, dtype="int64")
    sites = points["site_id"].astype(str) if "site_id" in points.columns else pd.Series(
        [f"_{i}" for i in range(len(points))], index=points.index)
    point_idx, unit_idx = units.sindex.query(points.geometry.values, predicate="intersects")
    first = pd.DataFrame({"p": point_idx, unit_col: units[unit_col].to_numpy()[unit_idx]}).drop_duplicates("p")
    first["site"] = sites.to_numpy()[first["p"].to_numpy()]
    first = first.sort_values("p").drop_duplicates("site")
    return first.groupby(unit_col).size().reindex(index, fill_value=0).astype("int64")


def status_lines(layers: dict[str, gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """The lines that carry the corridor status: the stretches (``corridor_stretches``, status per stretch) when the
    release has them, else the whole corridors. Both have ``sous_trame``, ``status`` and line geometries."""
    stretches = layers.get("corridor_stretches")
    return stretches if stretches is not None and len(stretches) else layers["corridors"]


def sous_trame_totals(layers: dict[str, gpd.GeoDataFrame], territory: Territory, outline: gpd.GeoDataFrame
                      ) -> pd.DataFrame:
    """Per sous-trame inside the territory outline: reservoir and relay counts and areas (ha), corridor km by
    status (from the stretches when the release has them, :func:`status_lines`, as the key figures). ``outline``
    is a one-row GeoDataFrame with column ``insee`` (any id)."""
    rows = []
    corridors = status_lines(layers)
    for st in territory.computed_sous_trames:
        row: dict[str, object] = {"sous_trame": st, "libelle": territory.sous_trames[st].label,
                                  "trame": territory.sous_trames[st].trame}
        for layer, kind in (("reservoirs", "reservoir"), ("relays", "relay")):
            sel = layers[layer][layers[layer]["sous_trame"] == st]
            row[f"{kind}_count"] = int(len(sel))
            row[f"{kind}_ha"] = float(area_by_unit(dissolved_parts(sel), outline).sum())
        sel = corridors[corridors["sous_trame"] == st]
        lengths = length_by_unit(sel[["status", "geometry"]], outline, by="status")
        for status in CORRIDOR_STATUSES:
            row[f"corridors_{status}_km"] = float(lengths[status].sum()) if status in lengths.columns else 0.0
        rows.append(row)
    return pd.DataFrame(rows)
