"""Small hand-built scenes for the layers engine tests (EPSG:2154, 25 m cells, coordinates in metres from the
scene origin ``X0, Y0``): :func:`make_scene` writes the inputs as GeoParquet plus a territory YAML built on
:func:`base_config` in a temporary folder and returns ``(territory, inputs)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
from shapely import LineString, Polygon, box

from helpers.yamlio import dump_yaml
from tvb_tasks.config import load_territory

X0, Y0 = 700_000.0, 7_000_000.0
CRS = "EPSG:2154"


def b(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """A box in scene coordinates (metres from the scene origin)."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def sq(x0: float, y0: float, area_ha: float) -> Polygon:
    side = math.sqrt(area_ha * 10_000)
    return b(x0, y0, x0 + side, y0 + side)


def line(*pts: tuple[float, float]) -> LineString:
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def base_config() -> dict:
    return {
        "id": "scene", "name": "Scène de test", "crs": CRS, "resolution_m": 25,
        "boundary": {"source": "territory"},
        "communes": {"source": "communes", "id_column": "insee", "name_column": "nom"},
        "nomenclature": {"file": "config/nomenclatures/ocs2d.csv", "code_column": "code_n3"},
        "sources": {},
        "landuse": {
            "code_columns": ["code"],
            "classes": {
                "artificial": {"label": "Espaces artificialisés", "artificial": True},
                "farmland": {"label": "Cultures"},
                "meadow": {"label": "Prairies"},
                "forest": {"label": "Boisements", "natural": True},
                "grassland": {"label": "Pelouses", "natural": True},
                "wetland": {"label": "Zones humides", "natural": True},
                "water": {"label": "Eau", "natural": True},
            },
            "rules": [{"code": "ART", "class": "artificial"}, {"code": "FOR", "class": "forest"},
                      {"code": "GRA", "class": "grassland"}, {"code": "MEA", "class": "meadow"},
                      {"code": "WET", "class": "wetland"}, {"code": "WAT", "class": "water"},
                      {"code": "CRO", "class": "farmland"}],
            "default_class": "farmland",
        },
        "sous_trames": {
            "forest": {"label": "Sous-trame forestière", "trame": "verte", "habitat": ["forest"],
                       "reservoir_min_area_ha": 10, "relay_min_area_ha": 1, "max_cost": 300000},
            "grassland": {"label": "Sous-trame des milieux ouverts", "trame": "verte", "habitat": ["grassland"],
                          "reservoir_min_area_ha": 5, "relay_min_area_ha": 0.5, "max_cost": 200000},
            "wetland": {"label": "Sous-trame des zones humides", "trame": "bleue", "habitat": ["wetland", "water"],
                        "reservoir_min_area_ha": 2, "relay_min_area_ha": 0.2, "max_cost": 30000},
        },
        "protected_areas": {"type_column": "protection_type", "name_column": "name",
                            "always_reservoir": ["APB", "RNN"], "case_by_case": ["ZNIEFF1", "N2000_SIC"]},
        "friction": {
            "landuse": {
                "forest": {"forest": 1, "grassland": 30, "wetland": 30},
                "grassland": {"forest": 5, "grassland": 1, "wetland": 30},
                "meadow": {"forest": 30, "grassland": 5, "wetland": 30},
                "wetland": {"forest": 30, "grassland": 30, "wetland": 1},
                "water": {"forest": 1000, "grassland": 1000, "wetland": 1},
                "farmland": {"forest": 100, "grassland": 100, "wetland": 100},
                "artificial": {"forest": 1000, "grassland": 1000, "wetland": 1000},
            },
            "infrastructure": {
                "roads": {"importance_column": "importance", "by_importance": {1: 10000, 2: 1000, 3: 1000, 4: 100,
                                                                                5: 30}},
                "railways": {"status_column": "status", "by_status": {"in_use": 10000, "disused": 5}},
                "canals": 10000,
            },
        },
        "corridors": {"neighbours": 8, "max_links_per_reservoir": 3,
                      "status": {},
                      "wet": {"open_only": True}},
        "rupture_points": {"road_max_importance": 4, "railway_status": ["in_use"], "include_canals": True,
                           "dedup_tolerance_m": 50},
    }


def make_scene(tmp_path: Path, *, outline: Polygon, landuse: list[tuple[Polygon, str]], protected=(), roads=(),
               railways=(), water=(), obstacles=(), config: dict | None = None):
    """Write the fixtures (GeoParquet) and the YAML; return (territory, inputs). Land use = the given polygons over
    a cropland background (the outline minus them)."""
    cfg = config or base_config()
    frames: dict[str, gpd.GeoDataFrame] = {}
    frames["territory"] = gpd.GeoDataFrame({"nom": ["Scène"]}, geometry=[outline], crs=CRS)
    frames["communes"] = gpd.GeoDataFrame({"insee": ["99001"], "nom": ["Testville"]}, geometry=[outline], crs=CRS)
    polys = [g for g, _ in landuse]
    background = outline.difference(gpd.GeoSeries(polys).union_all()) if polys else outline
    frames["landuse"] = gpd.GeoDataFrame({"code": [c for _, c in landuse] + ["CRO"]},
                                         geometry=polys + [background], crs=CRS)
    if protected:
        frames["protected_areas"] = gpd.GeoDataFrame(
            {"name": [p[2] for p in protected], "protection_type": [p[1] for p in protected]},
            geometry=[p[0] for p in protected], crs=CRS)
    if roads:
        frames["roads"] = gpd.GeoDataFrame({"name": [f"R{i}" for i in range(len(roads))],
                                            "importance": [r[1] for r in roads]},
                                           geometry=[r[0] for r in roads], crs=CRS)
    if railways:
        frames["railways"] = gpd.GeoDataFrame({"name": [f"V{i}" for i in range(len(railways))],
                                               "status": [r[1] for r in railways]},
                                              geometry=[r[0] for r in railways], crs=CRS)
    if water:
        frames["watercourses"] = gpd.GeoDataFrame({"name": [w[3] if len(w) > 3 else "Ruisseau" for w in water],
                                                   "kind": [w[1] for w in water], "position": [w[2] for w in water]},
                                                  geometry=[w[0] for w in water], crs=CRS)
    if obstacles:
        frames["river_obstacles"] = gpd.GeoDataFrame({"name": [f"ROE{i}" for i in range(len(obstacles))],
                                                      "obstacle_type": ["seuil"] * len(obstacles)},
                                                     geometry=list(obstacles), crs=CRS)
    roles = {"territory": "boundary", "communes": "communes", "landuse": "landuse",
             "protected_areas": "protected_areas", "roads": "roads", "railways": "railways",
             "watercourses": "watercourses", "river_obstacles": "river_obstacles"}
    inputs = {}
    for name, gdf in frames.items():
        path = tmp_path / f"{name}.parquet"
        gdf.to_parquet(path)
        inputs[name] = path
        cfg["sources"][name] = {"kind": "file", "role": roles[name], "path": str(path)}
    ypath = tmp_path / "scene.yaml"
    ypath.write_text(dump_yaml(cfg, allow_unicode=True), encoding="utf-8")
    return load_territory(ypath), inputs


def read(part: dict, key: str) -> gpd.GeoDataFrame:
    return gpd.read_parquet(part["files"][key])
