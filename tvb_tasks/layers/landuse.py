"""Land use → harmonised classes (YAML rules), habitat patches per sous-trame, class raster.

CRS: the territory CRS (EPSG:2154), areas in hectares.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import make_valid

from .common import (
    M2_PER_HA,
    Grid,
    LayerInputError,
    clip_to,
    empty_frame,
    polygons_only,
    rasterize_values,
    read_role,
    read_source,
)

__all__ = [
    "apply_overlays",
    "class_raster",
    "classify_landuse",
    "extra_habitat_class",
    "filter_features",
    "habitat_patches",
    "habitat_sources",
    "load_landuse",
    "load_overlays",
]


def classify_landuse(gdf: gpd.GeoDataFrame, landuse_cfg, *, source: str = "landuse") -> gpd.GeoDataFrame:
    """Add a ``class`` column: first YAML rule whose every column value starts with the rule's prefix wins.

    Rows matched by no rule get ``default_class``; without a default they raise :class:`LayerInputError`.
    """
    missing = [c for c in landuse_cfg.code_columns if c not in gdf.columns]
    used = {c for rule in landuse_cfg.rules for c in rule.codes}
    missing = [c for c in missing if c in used]
    if missing:
        raise LayerInputError(f"source {source!r}: land-use code columns {missing} missing "
                              f"(columns: {list(gdf.columns)})")
    codes = {c: gdf[c].astype("string").fillna("").str.strip() for c in used}
    result = pd.Series(pd.NA, index=gdf.index, dtype="object")
    for rule in landuse_cfg.rules:
        mask = result.isna()
        for col, prefix in rule.codes.items():
            mask &= codes[col].str.startswith(str(prefix))
        result[mask] = rule.class_
    unmatched = result.isna()
    if unmatched.any():
        if landuse_cfg.default_class is None:
            sample = gdf.loc[unmatched, list(used)].drop_duplicates().head(5).to_dict("records")
            raise LayerInputError(f"source {source!r}: {int(unmatched.sum())} polygons match no land-use rule "
                                  f"and there is no default_class, e.g. {sample}")
        result[unmatched] = landuse_cfg.default_class
    out = gdf.copy()
    out["class"] = result.astype(str)
    return out


def load_landuse(territory, inputs: dict[str, Path], boundary) -> gpd.GeoDataFrame:
    """Land-use polygons of the ``landuse`` role, classified and clipped to the territory."""
    gdf = read_role(territory, inputs, "landuse")
    gdf = polygons_only(gdf)
    if gdf.empty:
        raise LayerInputError("land use: no polygon in the landuse source(s)")
    gdf = classify_landuse(gdf, territory.landuse)
    gdf = clip_to(gdf, boundary)
    gdf = polygons_only(gdf)
    for overlay in load_overlays(territory, inputs, boundary):
        gdf = apply_overlays(gdf, overlay)
    return gdf


def load_overlays(territory, inputs: dict[str, Path], boundary) -> list[gpd.GeoDataFrame]:
    """The ``landuse_overlays`` of the territory, in YAML order: polygons with a ``class`` column (values of the
    overlay's ``column`` mapped through its ``classes``; unlisted values dropped), clipped to the territory.

    A configured overlay whose source has no input raises :class:`LayerInputError` (an overlay is never skipped).
    """
    out = []
    for cfg in territory.landuse_overlays:
        if cfg.source not in inputs:
            raise LayerInputError(f"land-use overlay {cfg.source!r}: no input (inputs: {sorted(inputs)})")
        gdf = polygons_only(read_source(territory, inputs, cfg.source))
        if cfg.column not in gdf.columns:
            raise LayerInputError(f"land-use overlay {cfg.source!r}: no column {cfg.column!r} "
                                  f"(columns: {[c for c in gdf.columns if c != gdf.geometry.name]})")
        gdf = gdf[gdf[cfg.column].astype(str).isin(list(cfg.classes))]
        gdf = gdf.assign(**{"class": gdf[cfg.column].astype(str).map(cfg.classes)})
        out.append(polygons_only(clip_to(gdf[["source", "class", gdf.geometry.name]], boundary)))
    return out


def apply_overlays(landuse: gpd.GeoDataFrame, overlay: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Land use with ``overlay`` polygons replacing the class where they lie (vector "replace" rule).

    The land-use polygons are cut by the overlay's union (EPSG:2154 planimetric, exact: no rasterisation, so a
    5 m wide hedge keeps its area at any cell size) and the overlay polygons are appended with their ``class``
    (``source`` = the overlay's source, land-use code columns empty). Later overlays win over earlier ones when
    applied in turn. Areas are unchanged: Σ area before = Σ area after.
    """
    if overlay.empty:
        return landuse
    cover = make_valid(overlay.geometry.union_all())
    hit = landuse.intersects(cover)
    cut = landuse[hit].copy()
    cut[cut.geometry.name] = make_valid(cut.geometry.difference(cover).values)
    kept = pd.concat([landuse[~hit], polygons_only(cut)], ignore_index=False)
    added = overlay.rename_geometry(landuse.geometry.name) if overlay.geometry.name != landuse.geometry.name \
        else overlay
    out = pd.concat([kept, added[["source", "class", landuse.geometry.name]]], ignore_index=True)
    return polygons_only(gpd.GeoDataFrame(out, geometry=landuse.geometry.name, crs=landuse.crs))


def extra_habitat_class(territory, sous_trame: str) -> str:
    """The land-use class given to the extra habitat sources of a sous-trame (its first habitat class)."""
    return territory.sous_trames[sous_trame].habitat[0]


def filter_features(gdf: gpd.GeoDataFrame, include: dict, exclude: dict, *, what: str) -> gpd.GeoDataFrame:
    """Rows whose columns hold one of the ``include`` values (all given columns) and none of the ``exclude`` ones.

    Values are compared as stripped text; a filter on a missing column raises :class:`LayerInputError`.
    """
    keep = np.ones(len(gdf), dtype=bool)
    for col, values, inside in [(c, v, True) for c, v in include.items()] + [(c, v, False)
                                                                            for c, v in exclude.items()]:
        if col not in gdf.columns:
            raise LayerInputError(f"{what}: filter column {col!r} missing (columns: {list(gdf.columns)})")
        hit = gdf[col].astype("string").fillna("").str.strip().isin([str(x).strip() for x in values]).to_numpy()
        keep &= hit if inside else ~hit
    return gdf[keep]


def habitat_sources(territory, inputs: dict[str, Path], boundary,
                    overlays: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Polygons of every sous-trame's ``extra_habitat_sources`` (terrils, cavaliers…), filtered by their
    ``include`` / ``exclude`` attribute values (e.g. built-over terrils, ``forme = Arasé construit``, are no
    habitat), plus the overlay footprints whose class is a habitat class of the sous-trame (cavaliers buffered to
    their right-of-way). Columns ``source``, ``sous_trame``, ``class`` (burned in the class raster; overlays get
    ``class`` = their class but are burned by the friction stage), ``overlay`` (bool).

    Lines / points of the extra sources are ignored (habitat is areal); clipped to ``boundary``.
    """
    frames = []
    for name, st in territory.sous_trames.items():
        for src in st.habitat_source_names:
            if src not in inputs:
                raise LayerInputError(f"sous-trame {name!r}: extra habitat source {src!r} has no input file")
            spec = st.habitat_source(src)
            gdf = polygons_only(read_source(territory, inputs, src))
            gdf = filter_features(gdf, spec.include, spec.exclude, what=f"source {src!r}")
            if gdf.empty:
                continue
            gdf = gdf[["source", gdf.geometry.name]].copy()
            gdf["sous_trame"] = name
            gdf["class"] = extra_habitat_class(territory, name)
            gdf["overlay"] = False
            frames.append(gdf)
        if overlays is not None and len(overlays):
            ov = overlays[overlays["class"].isin(st.habitat)]
            if len(ov):
                frames.append(gpd.GeoDataFrame({"source": ov["overlay"].values, "sous_trame": name,
                                                "class": ov["class"].values, "overlay": True},
                                               geometry=ov.geometry.values, crs=territory.crs))
    if not frames:
        return empty_frame(territory.crs, ["source", "sous_trame", "class", "overlay"])
    frames = [f.rename_geometry("geometry") if f.geometry.name != "geometry" else f for f in frames]
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=territory.crs)
    return polygons_only(clip_to(gdf, boundary))


def habitat_patches(territory, sous_trame: str, landuse: gpd.GeoDataFrame,
                    extra: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Dissolved habitat patches of a sous-trame: habitat land-use classes ∪ its extra habitat sources.

    Touching polygons form one patch. Columns: ``patch_id``, ``area_ha`` (EPSG:2154 planimetric).
    """
    st = territory.sous_trames[sous_trame]
    parts = [landuse.geometry[landuse["class"].isin(st.habitat)]]
    if len(extra):
        parts.append(extra.geometry[extra["sous_trame"] == sous_trame])
    geoms = pd.concat(parts, ignore_index=True)
    if geoms.empty:
        return empty_frame(territory.crs, ["patch_id", "area_ha"])
    merged = make_valid(gpd.GeoSeries(geoms, crs=territory.crs).union_all())
    patches = polygons_only(gpd.GeoDataFrame(geometry=[merged], crs=territory.crs))
    patches["area_ha"] = patches.area / M2_PER_HA
    patches = patches.sort_values("area_ha", ascending=False, kind="stable").reset_index(drop=True)
    patches.insert(0, "patch_id", np.arange(1, len(patches) + 1))
    return patches


def class_raster(territory, landuse: gpd.GeoDataFrame, extra: gpd.GeoDataFrame, grid: Grid,
                 inside: np.ndarray, extent: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Raster of land-use class indices (int16, -1 outside the computation extent) and the class list.

    ``inside``: the territory cells (gaps in the land use there get ``default_class``); ``extent``: the cells of
    the computation extent (territory + buffer; default ``inside``) — buffer cells with no land-use data stay -1
    (unknown, impassable) rather than receive an invented class.

    Land use is burned first, then the extra habitat sources over it (a terril polygon is mining habitat whatever
    the land-use code says); overlay footprints are left to the friction stage (their own burn rule). Cells inside the territory covered by no polygon get ``default_class`` (or stay -1,
    i.e. impassable, when there is none).
    """
    classes = list(territory.landuse.classes)
    index = {c: i for i, c in enumerate(classes)}
    if len(extra) and "overlay" in extra.columns:
        extra = extra[~extra["overlay"].astype(bool)]
    shapes = list(landuse.geometry) + list(extra.geometry)
    values = [index[c] for c in landuse["class"]] + [index[c] for c in extra["class"]]
    raster = rasterize_values(shapes, values, grid, fill=-1, dtype="int16")
    default = territory.landuse.default_class
    if default is not None:
        raster[(raster < 0) & inside] = index[default]
    raster[~(inside if extent is None else (extent | inside))] = -1
    return raster, classes
