"""Landscape fragmentation of a sous-trame's habitat: Jaeger's effective mesh size and related measures.

Patches are the contiguous parts of the union of the sous-trame's habitat: land-use polygons of its habitat classes
plus its extra habitat sources (e.g. terrils), from the release's ``habitat_patches`` layer — land cover, not the
reservoirs and relays, which may hold protected land that is not habitat (FragScape practice). For a reporting unit of area
A_total (the territory or a commune) with patch pieces A_i inside it (ha):

* meff_CUT = Σ A_i² / A_total — patches cut at the unit boundary (Jaeger 2000);
* meff_CBC = Σ A_i · A_i_cmpl / A_total — A_i_cmpl is the whole patch area, including outside the unit
  (cross-boundary connections, Moser et al. 2007);
* coherence C = Σ (A_i / A_total)²; splitting index S = A_total² / Σ A_i² (None when the unit has no habitat);
* number of patches, mean and largest patch area (of the pieces inside the unit).

Patches are first cut by the fragmenting infrastructure (the release's ``infrastructure`` layer: roads, railways
and, for the trame verte, canals, buffered by half their width — the ``width_m`` column when present, else
``indicators.fragmentation.cut_width_m`` per type), as FragScape does before computing meff (Jaeger 2000's
"fragmentation geometry": the landscape cut by transport lines). A patch extending beyond the reporting unit keeps
its whole area in A_i_cmpl (CBC), as far as the layers hold it (an unclipped habitat extent when the layers stage
computes on a buffer around the territory; else the part inside the territory). When the land-use source stops at
the territory outline (the CALL sample: OCS2D is clipped to the CALL), no patch extends beyond it and meff CBC
equals meff CUT at territory level: CBC differs only for patches completed outside (terrils, cavaliers, or a land
use fetched on the buffer); per commune CBC still exceeds CUT where patches straddle commune boundaries.

EPSG:2154, areas in ha.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.indicators.common import IndicatorsError
from tvb_tasks.indicators.communes import M2_PER_HA, dissolved_parts, intersect_with_units

METRICS = ("habitat_ha", "habitat_pct", "n_patches", "mean_patch_ha", "largest_patch_ha",
           "meff_cut_ha", "meff_cbc_ha", "coherence", "splitting_index")


def fragmentation_metrics(areas_ha: np.ndarray, complete_areas_ha: np.ndarray, unit_area_ha: float
                          ) -> dict[str, float | int | None]:
    """Fragmentation measures of one reporting unit from its patch pieces (ha) and their whole-patch areas (ha)."""
    a = np.asarray(areas_ha, dtype=float)
    a_cmpl = np.asarray(complete_areas_ha, dtype=float)
    if a.shape != a_cmpl.shape:
        raise IndicatorsError("areas_ha and complete_areas_ha must have the same length")
    if unit_area_ha <= 0:
        raise IndicatorsError(f"reporting unit area must be > 0 ha, got {unit_area_ha}")
    if np.any(a_cmpl + 1e-9 < a):
        raise IndicatorsError("a whole patch cannot be smaller than its piece inside the unit")
    sum_sq = float(np.sum(a * a))
    return {
        "habitat_ha": float(a.sum()),
        "habitat_pct": float(100.0 * a.sum() / unit_area_ha),
        "n_patches": int(a.size),
        "mean_patch_ha": float(a.mean()) if a.size else 0.0,
        "largest_patch_ha": float(a.max()) if a.size else 0.0,
        "meff_cut_ha": sum_sq / unit_area_ha,
        "meff_cbc_ha": float(np.sum(a * a_cmpl)) / unit_area_ha,
        "coherence": sum_sq / unit_area_ha ** 2,
        "splitting_index": unit_area_ha ** 2 / sum_sq if sum_sq > 0 else None,
    }


def sous_trame_habitat(layers: dict[str, gpd.GeoDataFrame], territory: Territory, sous_trame: str
                       ) -> gpd.GeoSeries:
    """Habitat polygons of a sous-trame: land use of its habitat classes plus its polygons of the ``habitat_patches``
    layer (land-cover habitat and the extra habitat sources such as terrils, on the whole computation extent,
    unclipped: patches keep their full area for CBC). Reservoirs and relays are *not* habitat: a reservoir may be
    a protected area whose land is partly crops or built-up (FragScape computes meff on land-cover habitat). Only a
    release without a ``habitat_patches`` layer (older releases) falls back on its reservoirs and relays, which
    carry the extra habitat sources there."""
    habitat_classes = territory.sous_trames[sous_trame].habitat
    landuse = layers["landuse"]
    parts = [landuse.geometry[landuse["class"].isin(habitat_classes)]]
    hp = layers.get("habitat_patches")
    has_patches = hp is not None and "sous_trame" in hp.columns and bool((hp["sous_trame"] == sous_trame).any())
    for layer in (("habitat_patches",) if has_patches else ("reservoirs", "relays")):
        gdf = layers.get(layer)
        if gdf is not None and "sous_trame" in gdf.columns:
            parts.append(gdf.geometry[gdf["sous_trame"] == sous_trame])
    return gpd.GeoSeries(pd.concat(parts, ignore_index=True), crs=landuse.crs)


def cut_by_infrastructure(habitat: gpd.GeoSeries, lines: gpd.GeoDataFrame | None, widths_m: dict[str, float],
                          trame: str) -> gpd.GeoSeries:
    """The habitat minus the fragmenting lines buffered by half their width (m, flat ends); canals do not cut the
    trame bleue (they are its habitat). ``lines``: infra_type[, width_m], line geometries, EPSG:2154 (None or
    empty: unchanged). A line's width is its ``width_m`` when > 0, else ``widths_m[infra_type]``, else the largest
    of ``widths_m`` (1 m when empty).

    Local: each habitat polygon is differenced only against the union of the buffered lines that intersect it
    (an STRtree of the buffers, one bulk query), not against one union of the territory's whole network, so the
    cost grows with the number of polygons × the lines near each (∝ area), not polygons × network (∝ area²).
    Same geometry as the difference against the whole union (A − ∪B = A − ∪{B : B ∩ A ≠ ∅}), up to vertex order.
    Measured (cProfile of the indicators task on the synthetic regions, 25 m, four sous-trames,
    ``bench/indicators_task.py``): half of the ×4 task before; after, 0.5 s at ×4 and 2.6 s at ×16 (load 4–5
    on 2 cores).
    """
    if lines is None or lines.empty or habitat.empty:
        return habitat
    sel = lines[lines["infra_type"] != "canal"] if trame == "bleue" else lines
    if sel.empty:
        return habitat
    default = sel["infra_type"].map(widths_m).astype(float).fillna(max(widths_m.values(), default=1.0))
    width = (pd.to_numeric(sel["width_m"], errors="coerce").where(lambda w: w > 0).fillna(default)
             if "width_m" in sel.columns else default)
    buffers = shapely.buffer(sel.geometry.values, width.to_numpy() / 2.0, cap_style="flat")
    polygons = np.asarray(habitat.values, dtype=object)
    poly_idx, buf_idx = shapely.STRtree(buffers).query(polygons, predicate="intersects")
    cut = polygons.copy()
    if poly_idx.size:
        order = np.argsort(poly_idx, kind="stable")          # query returns pairs sorted by tree item, not input
        poly_idx, buf_idx = poly_idx[order], buf_idx[order]
        hit, start, count = np.unique(poly_idx, return_index=True, return_counts=True)
        cutters = buffers[buf_idx[start]]                    # one buffer: no union needed
        for k in np.flatnonzero(count > 1):
            cutters[k] = shapely.union_all(buffers[buf_idx[start[k]:start[k] + count[k]]])
        cut[hit] = shapely.difference(polygons[hit], cutters)
    return gpd.GeoSeries(cut, index=habitat.index, crs=habitat.crs)


def habitat_patches(habitat: gpd.GeoSeries) -> gpd.GeoDataFrame:
    """Contiguous patches (union split into parts; corner contacts do not join) with ``patch_id`` and
    ``area_total_ha`` (the whole patch, wherever it lies)."""
    patches = dissolved_parts(habitat).reset_index(drop=True)
    patches.insert(0, "patch_id", np.arange(len(patches)))
    patches.insert(1, "area_total_ha", shapely.area(patches.geometry.values) / M2_PER_HA)
    return patches


def patch_pieces(patches: gpd.GeoDataFrame, units: gpd.GeoDataFrame, unit_col: str) -> pd.DataFrame:
    """Patch pieces cut at the unit boundaries: unit_col, patch_id, area_ha, area_total_ha (a patch that
    enters a unit twice gives two pieces)."""
    cut = intersect_with_units(patches, units, unit_col)
    cut = cut.explode(index_parts=False, ignore_index=True)
    cut = cut[shapely.get_type_id(cut.geometry.values) == 3]
    area = shapely.area(cut.geometry.values) / M2_PER_HA
    frame = pd.DataFrame({unit_col: cut[unit_col].to_numpy(), "patch_id": cut["patch_id"].to_numpy(),
                          "area_ha": area, "area_total_ha": cut["area_total_ha"].to_numpy(dtype=float)})
    return frame[frame["area_ha"] > 0].reset_index(drop=True)


def fragmentation_table(pieces: pd.DataFrame, unit_areas_ha: pd.Series, unit_col: str) -> pd.DataFrame:
    """One row per unit of ``unit_areas_ha`` (index = unit ids) with the :data:`METRICS`."""
    groups = dict(iter(pieces.groupby(unit_col)))
    rows = []
    for unit_id, unit_area in unit_areas_ha.items():
        g = groups.get(unit_id)
        a = g["area_ha"].to_numpy() if g is not None else np.empty(0)
        cmpl = g["area_total_ha"].to_numpy() if g is not None else np.empty(0)
        rows.append({unit_col: unit_id, **fragmentation_metrics(a, cmpl, float(unit_area))})
    return pd.DataFrame(rows, columns=[unit_col, *METRICS])


def sous_trame_fragmentation(layers: dict[str, gpd.GeoDataFrame], territory: Territory, sous_trame: str,
                             outline: gpd.GeoDataFrame, cut_width_m: dict[str, float] | None = None
                             ) -> tuple[dict, pd.DataFrame]:
    """Fragmentation of one sous-trame for the territory (``outline``: one polygon, column ``insee``) and for
    each commune, on the habitat cut by ``layers["infrastructure"]`` when present. Returns (territory metrics,
    per-commune DataFrame with column ``insee``)."""
    habitat = cut_by_infrastructure(sous_trame_habitat(layers, territory, sous_trame), layers.get("infrastructure"),
                                    cut_width_m or {}, territory.sous_trames[sous_trame].trame)
    patches = habitat_patches(habitat)
    communes = layers["communes"][["insee", "geometry"]].copy()
    communes["insee"] = communes["insee"].astype(str)
    commune_areas = pd.Series(shapely.area(communes.geometry.values) / M2_PER_HA, index=communes["insee"])
    per_commune = fragmentation_table(patch_pieces(patches, communes, "insee"), commune_areas, "insee")
    outline_area = pd.Series(shapely.area(outline.geometry.values) / M2_PER_HA, index=outline["insee"])
    whole = fragmentation_table(patch_pieces(patches, outline, "insee"), outline_area, "insee")
    return whole.drop(columns="insee").to_dict(orient="records")[0], per_commune
