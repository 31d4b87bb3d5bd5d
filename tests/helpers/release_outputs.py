"""Small fake pipeline outputs (GeoPackage of the published layers in EPSG:2154, float32 GeoTIFF, indicators,
validation and report folders) for the publication, release, STAC, QGIS Server and web-map tests.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
from affine import Affine
from shapely.geometry import LineString, Point, Polygon, box

from tvb_tasks.config import load_territory
from tvb_tasks.publish import input_key, publish_release

X0, Y0 = 684000.0, 7029000.0      # Lens area, Lambert-93 (EPSG:2154), metres
T0 = datetime(2026, 11, 25, 18, 15, 0, tzinfo=UTC)
SECRET = "s3cr3t-Pa55"                # fake, test-only: must never appear in what is published


# --- fake pipeline outputs ----------------------------------------------------------------------------------------
def stretch_rows(corridors: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Corridor stretches of the fake corridors: (corridor index, start, end as fractions of its length, status).
    Corridor 2 ("to_restore") has a supported "existing" second half; corridor 3 ("to_create") a first stretch only
    "to restore", the rest "to create" (its midpoint stays "to create")."""
    from shapely.ops import substring

    cuts = [(0, 0.0, 1.0, "existing"), (1, 0.0, 0.5, "to_restore"), (1, 0.5, 1.0, "existing"),
            (2, 0.0, 0.3, "to_restore"), (2, 0.3, 1.0, "to_create")]
    rows, geoms, n = [], [], {}
    for i, a, b, status in cuts:
        c = corridors.iloc[i]
        n[i] = n.get(i, 0) + 1
        line = substring(c.geometry, a, b, normalized=True)
        rows.append({"id": f"{c['id']}-S{n[i]:02d}", "corridor_id": c["id"], "sous_trame": c["sous_trame"],
                     "status": status, "length_m": round(line.length, 1),
                     "max_gap_m": {"existing": 0.0, "to_restore": 150.0, "to_create": 420.0}[status],
                     "support_share": {"existing": 0.92, "to_restore": 0.55, "to_create": 0.1}[status],
                     "missing_link": 0, "downgraded": int(status == "to_restore" and i == 2),
                     "libelle": f"Tronçon {STATUS_FR[status]} ({c['id']})"})
        geoms.append(line)
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=corridors.crs)


STATUS_FR = {"existing": "existant", "to_restore": "à restaurer", "to_create": "à créer"}
# points de vigilance of the fake layers: on corridor 2 at 80 % of its length, on corridor 1 at x = X0 + 2500
VIGILANCE_XY = [(X0 + 400 + 0.8 * 1300, Y0 + 500 + 0.8 * 2000), (X0 + 2500, Y0 + 250 + 100 * 1700 / 2200)]


def make_layers_gpkg(path: Path) -> Path:
    """A GeoPackage with the published layers but priorities (EPSG:2154), a few features each: a copy of the one
    :func:`_layers_gpkg_template` writes once per process (~20 publications per test run use it)."""
    path.unlink(missing_ok=True)
    shutil.copyfile(_layers_gpkg_template(), path)
    return path


@cache
def _layers_gpkg_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="tvb-layers-gpkg-"))
    atexit.register(shutil.rmtree, folder, True)
    return _write_layers_gpkg(folder / "tvb.gpkg")


def _write_layers_gpkg(path: Path) -> Path:
    crs = "EPSG:2154"
    res = gpd.GeoDataFrame(
        {"id": [1, 2, 3], "sous_trame": ["forest", "wetland", "mining"], "area_ha": [40.0, 12.5, 9.0]},
        geometry=[box(X0, Y0, X0 + 800, Y0 + 500), box(X0 + 3000, Y0 + 200, X0 + 3400, Y0 + 500),
                  Polygon([(X0 + 1500, Y0 + 2500), (X0 + 1900, Y0 + 2500), (X0 + 1700, Y0 + 2900)])], crs=crs)
    relays = gpd.GeoDataFrame({"id": [1], "sous_trame": ["grassland"], "area_ha": [2.0]},
                              geometry=[box(X0 + 1800, Y0 + 900, X0 + 2000, Y0 + 1100)], crs=crs)
    corridors = gpd.GeoDataFrame(
        {"id": [1, 2, 3], "sous_trame": ["forest", "forest", "mining"],
         "status": ["existing", "to_restore", "to_create"], "length_m": [2300.0, 1900.0, 2600.0],
         "mean_friction": [3.2, 40.0, 250.0]},
        geometry=[LineString([(X0 + 800, Y0 + 250), (X0 + 3000, Y0 + 350)]),
                  LineString([(X0 + 400, Y0 + 500), (X0 + 1700, Y0 + 2500)]),
                  LineString([(X0 + 1700, Y0 + 2500), (X0 + 3200, Y0 + 500)])], crs=crs)
    wet = gpd.GeoDataFrame({"id": [1], "sous_trame": ["wetland"], "length_m": [3000.0]},
                           geometry=[LineString([(X0 + 3200, Y0 + 500), (X0 + 3200, Y0 + 3500)])], crs=crs)
    ruptures = gpd.GeoDataFrame({"id": [1, 2], "obstacle_type": ["route", "voie ferrée"]},
                                geometry=[Point(X0 + 1900, Y0 + 300), Point(X0 + 1000, Y0 + 1400)], crs=crs)
    communes = gpd.GeoDataFrame({"insee": ["62498", "62510"], "nom": ["Lens", "Liévin"]},
                                geometry=[box(X0 - 500, Y0 - 500, X0 + 2000, Y0 + 4000),
                                          box(X0 + 2000, Y0 - 500, X0 + 4500, Y0 + 4000)], crs=crs)
    areas = gpd.GeoDataFrame({"id": ["1-A", "2-A", "3-A"], "corridor_id": [1, 2, 3],
                              "sous_trame": ["forest", "forest", "mining"],
                              "status": ["existing", "to_restore", "to_create"], "area_ha": [23.0, 19.0, 26.0]},
                             geometry=list(corridors.geometry.buffer(50)), crs=crs)
    stretches = stretch_rows(corridors)
    vigilance = gpd.GeoDataFrame(
        {"id": ["V0001", "V0002"], "corridor_id": [2, 1], "sous_trame": ["forest", "forest"],
         "infrastructure": ["road", "road"], "infra_class": ["4", "4"], "infra_name": ["D58", ""], "severity": [2, 2],
         "n_merged": [1, 1], "libelle": ["Point de vigilance – route d'importance 4 (D58)",
                                         "Point de vigilance – route d'importance 4"]},
        geometry=[Point(xy) for xy in VIGILANCE_XY], crs=crs)
    path.unlink(missing_ok=True)
    for name, gdf in (("reservoirs", res), ("relays", relays), ("corridors", corridors), ("corridor_areas", areas),
                      ("corridor_stretches", stretches), ("wet_corridors", wet), ("rupture_points", ruptures),
                      ("vigilance_points", vigilance), ("communes", communes)):
        pyogrio.write_dataframe(gdf, path, layer=name, driver="GPKG")
    return path


def make_raster(path: Path, size: int = 600, seed: int = 1) -> Path:
    """A striped (not tiled, no overviews) float32 GeoTIFF, 25 m cells, EPSG:2154: not a COG."""
    rng = np.random.default_rng(seed)
    data = (rng.random((size, size), dtype=np.float32) * 100 + 1).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                       crs="EPSG:2154", transform=Affine(25, 0, X0, 0, -25, Y0 + size * 25), nodata=-1) as dst:
        dst.write(data, 1)
    return path


def make_indicators(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"key_figures": [
        {"id": "reservoir_area_ha", "libelle": "Surface des réservoirs", "value": 61.5, "unit": "ha"},
        {"id": "n_rupture_points", "libelle": "Points de rupture", "value": 2, "unit": ""},
    ]}
    (folder / "indicators.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (folder / "key_figures.csv").write_text("id,libelle,value\nreservoir_area_ha,Surface des réservoirs,61.5\n",
                                            encoding="utf-8")
    return folder


def make_outputs(tmp: Path) -> dict:
    """gpkg, rasters, indicators, validation and report folders of a fake pipeline run under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    gpkg = make_layers_gpkg(tmp / "layers.gpkg")
    rasters = [make_raster(tmp / "friction_forest.tif")]
    ind = make_indicators(tmp / "indicators")
    val = tmp / "validation"
    val.mkdir(exist_ok=True)
    (val / "summary.json").write_text('{"success": true}', encoding="utf-8")
    rep = tmp / "report"
    rep.mkdir(exist_ok=True)
    (rep / "index.html").write_text("<!DOCTYPE html><html lang='fr'><body>Rapport</body></html>", encoding="utf-8")
    return {"gpkg": gpkg, "rasters": rasters, "indicators_dir": ind, "validation_dir": val, "report_dir": rep}


def territory():
    return load_territory("call")


# --- a published release of those outputs -----------------------------------------------------------------------
def key_for(n: int) -> str:
    return input_key({"landuse": f"snap{n}", "roads": "r1"}, "cfg" + "0" * 61, "1.0.0")


def do_publish(store, staged: Path, n: int, **kw) -> dict:
    sources = {"landuse": {"snapshot_id": f"snap{n}", "key": f"snapshots/call/landuse/snap{n}.parquet",
                           "url": f"https://user:{SECRET}@example.org/wfs?typename=x&apikey={SECRET}",
                           "password": SECRET, "role": "landuse"}}
    return publish_release(territory(), store, staged, input_key=key_for(n), sources=sources,
                           validation={"success": True, "critical_failures": 0},
                           indicators={"reservoir_area_ha": 61.5}, code_version="1.0.0",
                           released_at=T0 + timedelta(minutes=n), **kw)
