"""A small hand-drawn release (tvb.gpkg) whose indicators are computed by hand in the other indicator tests.

Two communes of 100 ha (A: x 0–1000 m, B: x 1000–2000 m, y 0–1000 m, offset to Lambert-93 coordinates).
Land use (ha inside the territory): artificial 60 (A strip x 0–200, B top y 600–1000), forest 30 (F1) + 10 (F2,
2.5 in A / 7.5 in B) + 4 (F4) + 1.5 (F3, which has 1.5 more outside B), wetland 10, grassland 2, mining 2,
farmland the rest. Reservoirs: forest R1 = F1, R2 = F2, R4 = F4; mining M1; wetland W1. Relays: forest F3,
grassland G1. Corridors (forest): C1 R1–R2 existing 100 m cost 100, C2 R1–R4 to_restore 60 m cost 300,
C3 R2–R4 to_create 1050 m (550 m in A, 500 m in B) cost 2000. Wet corridor: 1 km inside (1.4 km long).
Rupture points: one in B, one on the A/B boundary, one outside.

Shared by the indicator and report tests.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import LineString, Point, box

from helpers.yamlio import dump_yaml
from tvb_tasks.config import PROJECT_ROOT, load_territory, load_yaml

X0, Y0 = 680_000.0, 7_030_000.0
CRS = "EPSG:2154"


def bx(x1: float, y1: float, x2: float, y2: float):
    return box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def line(*pts: tuple[float, float]) -> LineString:
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def pt(x: float, y: float) -> Point:
    return Point(X0 + x, Y0 + y)


POLYS = {
    "F1": bx(200, 200, 800, 700), "F2": bx(900, 0, 1300, 250), "F3": bx(1850, 400, 2150, 500),
    "F4": bx(250, 760, 450, 960), "W1": bx(1400, 100, 1800, 350), "G1": bx(1400, 400, 1600, 500),
    "M1": bx(500, 800, 700, 900),
}


def scene_layers(drop_reservoir: str | None = None) -> dict[str, gpd.GeoDataFrame]:
    """The scene's layers; ``drop_reservoir`` removes a reservoir, the corridors that end on it and their rupture
    points (as the layers stage would)."""
    communes = gpd.GeoDataFrame({"insee": ["62001", "62002"], "nom": ["Aville", "Bville"]},
                                geometry=[bx(0, 0, 1000, 1000), bx(1000, 0, 2000, 1000)], crs=CRS)
    special = [
        ("artificial", bx(0, 0, 200, 1000)), ("artificial", bx(1000, 600, 2000, 1000)),
        ("forest", POLYS["F1"]), ("forest", POLYS["F2"]), ("forest", POLYS["F3"]), ("forest", POLYS["F4"]),
        ("wetland", POLYS["W1"]), ("grassland", POLYS["G1"]), ("mining", POLYS["M1"]),
    ]
    territory = bx(0, 0, 2000, 1000)
    farmland = shapely.difference(territory, shapely.union_all([g for _, g in special]))
    landuse = gpd.GeoDataFrame({"class": [c for c, _ in special] + ["farmland"]},
                               geometry=[g for _, g in special] + [farmland], crs=CRS)
    reservoirs = gpd.GeoDataFrame(
        {"id": ["R1", "R2", "R4", "M1", "W1"], "sous_trame": ["forest", "forest", "forest", "mining", "wetland"],
         "origin": "habitat", "libelle": ["Bois 1", "Bois 2", "Bois 4", "Terril 1", "Marais 1"]},
        geometry=[POLYS["F1"], POLYS["F2"], POLYS["F4"], POLYS["M1"], POLYS["W1"]], crs=CRS)
    reservoirs["area_ha"] = reservoirs.area / 1e4
    relays = gpd.GeoDataFrame({"id": ["Z1", "Z2"], "sous_trame": ["forest", "grassland"], "origin": "habitat",
                               "libelle": ["Relais bois", "Relais pelouse"]},
                              geometry=[POLYS["F3"], POLYS["G1"]], crs=CRS)
    relays["area_ha"] = relays.area / 1e4
    corridors = gpd.GeoDataFrame(
        {"id": ["C1", "C2", "C3"], "sous_trame": "forest", "status": ["existing", "to_restore", "to_create"],
         "cost": [100.0, 300.0, 2000.0], "from_id": ["R1", "R1", "R2"], "to_id": ["R2", "R4", "R4"],
         "libelle": ["Corridor existant", "Corridor à restaurer", "Corridor à créer"]},
        geometry=[line((800, 220), (900, 220)), line((350, 700), (350, 760)),
                  line((1200, 250), (1200, 550), (450, 550))], crs=CRS)
    corridors["length_m"] = corridors.length
    wet = gpd.GeoDataFrame({"id": ["E1"], "libelle": ["Ruisseau"]}, geometry=[line((1700, -200), (1700, 1200))],
                           crs=CRS)
    wet["length_m"] = wet.length
    ruptures = gpd.GeoDataFrame(
        {"id": ["P1", "P2", "P3"], "corridor_id": ["C3", "C3", "C1"], "sous_trame": "forest",
         "infrastructure": ["road", "railway", "road"], "infra_class": ["1", "in_use", "2"],
         "severity": [3, 2, 1], "libelle": "Point de rupture"},
        geometry=[pt(1200, 400), pt(1000, 550), pt(2500, 500)], crs=CRS)
    if drop_reservoir:
        reservoirs = reservoirs[reservoirs["id"] != drop_reservoir]
        corridors = corridors[(corridors["from_id"] != drop_reservoir) & (corridors["to_id"] != drop_reservoir)]
        ruptures = ruptures[ruptures["corridor_id"].isin(corridors["id"])]
    return {"reservoirs": reservoirs, "relays": relays, "corridors": corridors, "wet_corridors": wet,
            "rupture_points": ruptures, "communes": communes, "landuse": landuse}


def write_gpkg(layers: dict[str, gpd.GeoDataFrame], path: Path) -> Path:
    for name, gdf in layers.items():
        gdf.to_file(path, layer=name, driver="GPKG")
    return path


def write_scene(path: Path, drop_reservoir: str | None = None) -> Path:
    return write_gpkg(scene_layers(drop_reservoir), path)


def scene_territory(tmp_path: Path, **connectivity):
    """The CALL configuration with the forest link probability 0.5 at cost 100 (and ``connectivity`` overrides)."""
    raw = load_yaml((PROJECT_ROOT / "config" / "territories" / "call.yaml").read_text(encoding="utf-8"))
    raw["indicators"]["connectivity"].update(
        {"distance_threshold_cost": {"forest": 100, "grassland": 100, "mining": 100, "wetland": 100},
         "distance_threshold_m": 100, "probability_at_threshold": 0.5, **connectivity})
    path = tmp_path / "scene.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return load_territory(path, profile="default")
