"""The restoration-priorities scene (forest sous-trame, EPSG:2154, offset to Lambert-93): three pairs of reservoirs
far apart (no link between pairs), each pair joined by one corridor "to restore" of the same length, cost and mean
friction, crossed once by the same road (importance 2, friction 1000):

* pair L: two large woods (100 ha each), corridor CL, rupture point PL;
* pairs S and T: two small woods each (4 ha), corridors CS and CT, rupture points PS and PT — identical twins.

:func:`scene` gives its layers (same schema as a release's tvb.gpkg), :func:`write_scene` writes them as a
GeoPackage, :func:`project` builds a planning project. Shared by the priorities, priorities-release and screening
DAG tests.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import LineString, Point, box

RID = "20260101T000000Z-abcdef01"      # release id under which the scene is stored as a live release
X0, Y0 = 650_000.0, 7_020_000.0
CRS = "EPSG:2154"


def bx(x1, y1, x2, y2):
    return box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def ln(*pts):
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def pt(x, y):
    return Point(X0 + x, Y0 + y)


def scene() -> dict[str, gpd.GeoDataFrame]:
    """Layers of the scene (same schema as a release's tvb.gpkg)."""
    # pair L at y 0..1000 (woods 1000 m × 1000 m), pairs S and T at y 5000 and 10000 (200 m × 200 m)
    polys = {"L1": bx(0, 0, 1000, 1000), "L2": bx(2000, 0, 3000, 1000),
             "S1": bx(0, 5000, 200, 5200), "S2": bx(1200, 5000, 1400, 5200),
             "T1": bx(0, 10000, 200, 10200), "T2": bx(1200, 10000, 1400, 10200)}
    reservoirs = gpd.GeoDataFrame({"id": [f"forest-{k}" for k in polys], "sous_trame": "forest",
                                   "origin": "habitat", "libelle": list(polys)},
                                  geometry=list(polys.values()), crs=CRS)
    reservoirs["area_ha"] = reservoirs.area / 1e4
    lines = {"CL": ln((1000, 500), (2000, 500)), "CS": ln((200, 5100), (1200, 5100)),
             "CT": ln((200, 10100), (1200, 10100))}
    corridors = gpd.GeoDataFrame({
        "id": [f"forest-{k}" for k in lines], "sous_trame": "forest", "status": "to_restore",
        "from_id": ["forest-L1", "forest-S1", "forest-T1"], "to_id": ["forest-L2", "forest-S2", "forest-T2"],
        "cost": 60_000.0, "mean_friction": 30.0, "libelle": list(lines)}, geometry=list(lines.values()), crs=CRS)
    corridors["length_m"] = corridors.length
    corridors["path_length_m"] = corridors.length
    points = gpd.GeoDataFrame({
        "id": ["P1", "P2", "P3"], "corridor_id": ["forest-CL", "forest-CS", "forest-CT"], "sous_trame": "forest",
        "corridor_kind": "terrestre", "infrastructure": "road", "infra_class": "2", "infra_name": "RN 1",
        "severity": 3, "n_merged": 1, "libelle": "rupture"},
        geometry=[pt(1500, 500), pt(700, 5100), pt(700, 10100)], crs=CRS)
    communes = gpd.GeoDataFrame({"insee": ["62001", "62002"], "nom": ["Aville", "Bville"]},
                                geometry=[bx(-500, -500, 3500, 4000), bx(-500, 4000, 3500, 11000)], crs=CRS)
    empty_poly = gpd.GeoDataFrame({"id": [], "sous_trame": [], "area_ha": [], "libelle": []},
                                  geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)
    wet = gpd.GeoDataFrame({"id": [], "sous_trame": [], "length_m": [], "libelle": []},
                           geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)
    landuse = gpd.GeoDataFrame({"class": ["forest", "farmland"]},
                               geometry=[shapely.union_all(list(polys.values())),
                                         shapely.difference(bx(-500, -500, 3500, 11000),
                                                            shapely.union_all(list(polys.values())))], crs=CRS)
    return {"reservoirs": reservoirs, "relays": empty_poly, "corridors": corridors, "wet_corridors": wet,
            "rupture_points": points, "communes": communes, "landuse": landuse}


def project(geom, stage="authorised", name="ZAC test") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": ["PRJ-1"], "name": [name], "type": ["zac"], "stage": [stage],
                             "date": ["2027-01-01"]}, geometry=[geom], crs=CRS)


def write_scene(path: Path, layers: dict | None = None) -> Path:
    for name, gdf in (layers or scene()).items():
        gdf.to_file(path, layer=name, driver="GPKG")
    return path
