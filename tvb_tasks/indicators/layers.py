"""Reading a release's layers for the indicators (``tvb.gpkg``, EPSG:2154): required columns, geometry kinds and
value domains checked, with errors naming the file, layer and problem."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.indicators.common import CORRIDOR_STATUSES, IndicatorsError

# layer -> columns the indicators need (the layers stage may write more)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "reservoirs": ("id", "sous_trame"),
    "relays": ("id", "sous_trame"),
    "corridors": ("id", "sous_trame", "status", "from_id", "to_id", "cost"),
    "wet_corridors": ("id",),
    "rupture_points": ("id",),
    "communes": ("insee", "nom"),
    "landuse": ("class",),
}
GEOMETRY_KIND = {
    "reservoirs": "polygon", "relays": "polygon", "landuse": "polygon", "communes": "polygon",
    "corridors": "line", "wet_corridors": "line", "rupture_points": "point", "infrastructure": "line",
    "corridor_areas": "polygon", "habitat_patches": "polygon", "vigilance_points": "point",
    "corridor_stretches": "line",
}
# read when the release has them (corridor_stretches: km by status per stretch)
OPTIONAL_LAYERS = ("infrastructure", "habitat_patches", "vigilance_points", "corridor_stretches")


# --- reading a release's layers --------------------------------------------------------------------------------------
def _check_geometry_kind(gdf: gpd.GeoDataFrame, kind: str, where: str) -> None:
    types = set(gdf.geometry.geom_type.dropna().unique())
    allowed = {"polygon": {"Polygon", "MultiPolygon"}, "line": {"LineString", "MultiLineString"},
               "point": {"Point", "MultiPoint"}}[kind]
    if types - allowed:
        raise IndicatorsError(f"{where}: expected {kind} geometries, found {sorted(types - allowed)}")


def read_layer(gpkg: Path, layer: str, crs: str = "EPSG:2154") -> gpd.GeoDataFrame:
    """One layer of a release GeoPackage, checked (columns, geometry kind), valid, in ``crs``; no empty geometries."""
    where = f"{gpkg} layer {layer!r}"
    try:
        gdf = gpd.read_file(gpkg, layer=layer)
    except (pyogrio.errors.DataLayerError, pyogrio.errors.DataSourceError) as exc:
        raise IndicatorsError(f"{where}: cannot read ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS.get(layer, ()) if c not in gdf.columns]
    if missing:
        raise IndicatorsError(f"{where}: missing columns {missing}")
    if gdf.crs is None:
        raise IndicatorsError(f"{where}: no CRS")
    if gdf.crs != crs:
        gdf = gdf.to_crs(crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].reset_index(drop=True)
    _check_geometry_kind(gdf, GEOMETRY_KIND.get(layer, "polygon"), where)
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values, method="structure",
                                                          keep_collapsed=False)
    return gdf


def read_layers(gpkg: Path, territory: Territory, *, only_configured: bool = False) -> dict[str, gpd.GeoDataFrame]:
    """All layers the indicators use, checked against the release schema (see ``REQUIRED_COLUMNS``).

    ``only_configured`` keeps only the features of the territory's sous-trames: used for a previous release when
    this run computes a subset of them, so that the other sous-trames do not show up as "lost".
    """
    gpkg = Path(gpkg)
    if not gpkg.exists():
        raise IndicatorsError(f"no GeoPackage {gpkg}")
    present = {name for name, _ in pyogrio.list_layers(gpkg)}
    absent = [layer for layer in REQUIRED_COLUMNS if layer not in present]
    if absent:
        raise IndicatorsError(f"{gpkg}: missing layers {absent}")
    layers = {layer: read_layer(gpkg, layer, territory.crs) for layer in REQUIRED_COLUMNS}
    layers.update({layer: read_layer(gpkg, layer, territory.crs) for layer in OPTIONAL_LAYERS if layer in present})
    if only_configured:
        for name, gdf in layers.items():
            if "sous_trame" in gdf.columns:
                layers[name] = gdf[gdf["sous_trame"].isin(list(territory.computed_sous_trames))].reset_index(drop=True)
    _check_values(gpkg, layers, territory)
    return layers


def _check_domain(gdf: gpd.GeoDataFrame, column: str, allowed: set[str], where: str) -> None:
    """Every value of ``column`` is one of ``allowed`` (and none is empty)."""
    bad = set(gdf[column].dropna().astype(str).unique()) - allowed
    if bad or gdf[column].isna().any():
        raise IndicatorsError(f"{where}: unknown or empty {column} {sorted(bad)} (known: {sorted(allowed)})")


def _check_values(gpkg: Path, layers: dict[str, gpd.GeoDataFrame], territory: Territory) -> None:
    for layer in ("reservoirs", "relays", "corridors"):
        _check_domain(layers[layer], "sous_trame", set(territory.computed_sous_trames), f"{gpkg} layer {layer!r}")
    _check_domain(layers["corridors"], "status", set(CORRIDOR_STATUSES), f"{gpkg} layer 'corridors'")
    _check_domain(layers["landuse"], "class", set(territory.landuse.classes), f"{gpkg} layer 'landuse'")
    if layers["communes"].empty:
        raise IndicatorsError(f"{gpkg} layer 'communes': no commune")
    if layers["communes"]["insee"].duplicated().any():
        raise IndicatorsError(f"{gpkg} layer 'communes': duplicated insee codes")


def territory_outline(layers: dict[str, gpd.GeoDataFrame], territory: Territory) -> gpd.GeoDataFrame:
    """The territory as one polygon (union of its communes), column ``insee`` = the territory id."""
    union = shapely.union_all(layers["communes"].geometry.values)
    return gpd.GeoDataFrame({"insee": [territory.id]}, geometry=[union], crs=layers["communes"].crs)
