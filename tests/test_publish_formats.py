"""Publication formats and release staging: GeoPackage labels, GeoParquet, COG, PMTiles, web map files, QGIS.

The small fake pipeline outputs (GeoPackage in EPSG:2154, float32 GeoTIFF, indicators) are built by
``tests/helpers/release_outputs.py``, shared with the other ``test_publish_*`` modules.
"""
from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio

from helpers.release_outputs import X0, Y0, make_outputs, make_raster, territory


# --- tests ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    from tvb_tasks.publish import stage_release

    tmp = tmp_path_factory.mktemp("stage")
    out = make_outputs(tmp / "in")
    return stage_release(territory(), tmp / "release", **out, release_id="20261125T181500Z-abcdef12")


def test_stage_layout(staged: Path):
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    for expected in ("tvb.gpkg", "parquet/corridors.parquet", "parquet/communes.parquet", "rasters/friction_forest.tif",
                     "indicators/indicators.json", "indicators/key_figures.csv", "validation/summary.json",
                     "report/index.html", "web/index.html", "web/app.js", "web/tvb.pmtiles", "web/indicators.json",
                     "web/vendor/maplibre-gl.js", "web/vendor/pmtiles.js", "web/vendor/LICENSE-maplibre-gl.txt",
                     "web/vendor/LICENSE-pmtiles.txt", "qgis/tvb.qgs", "qgis/tvb.qgs.cfg"):
        assert expected in files, expected


def test_gpkg_french_labels(staged: Path):
    corr = gpd.read_file(staged / "tvb.gpkg", layer="corridors")
    assert dict(zip(corr["status"], corr["libelle_statut"])) == {
        "existing": "Existant", "to_restore": "À restaurer", "to_create": "À créer"}
    res = gpd.read_file(staged / "tvb.gpkg", layer="reservoirs")
    assert set(res["libelle_sous_trame"]) == {"Sous-trame forestière", "Sous-trame des zones humides",
                                              "Sous-trame minière (terrils)"}
    # the spatial index survived the attribute update (its triggers were re-created)
    near = pyogrio.read_dataframe(staged / "tvb.gpkg", layer="rupture_points", bbox=(X0 + 1800, Y0 + 200, X0 + 2000, Y0 + 400))
    assert list(near["id"]) == [1]
    con = sqlite3.connect(staged / "tvb.gpkg")
    n_triggers = con.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger' AND tbl_name='corridors' "
                             "AND name LIKE 'rtree%'").fetchone()[0]
    assert n_triggers >= 4
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    titles = dict(con.execute("SELECT column_name, title FROM gpkg_data_columns WHERE table_name='corridors'"))
    ident = con.execute("SELECT identifier FROM gpkg_contents WHERE table_name='corridors'").fetchone()[0]
    con.close()
    assert titles["status"] == "Statut" and titles["length_m"] == "Longueur (m)"
    assert ident == "Corridors écologiques"


def test_geoparquet(staged: Path):
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(staged / "parquet" / "corridors.parquet").metadata[b"geo"])
    assert meta["primary_column"] == "geometry"
    gdf = gpd.read_parquet(staged / "parquet" / "corridors.parquet")
    assert gdf.crs.to_epsg() == 2154 and len(gdf) == 3 and "libelle_statut" in gdf


def test_cog_checked_and_converted(tmp_path: Path, staged: Path):
    from tvb_tasks.publish.formats import check_cog, ensure_cog

    src = make_raster(tmp_path / "striped.tif")
    assert check_cog(src)["valid"] is False             # a striped GeoTIFF is not a COG
    info = ensure_cog(src, tmp_path / "cog.tif")
    assert info["converted"] and info["valid"] and info["tiled"] and info["overviews"]
    staged_info = check_cog(staged / "rasters" / "friction_forest.tif")
    assert staged_info["valid"] and staged_info["overviews"] and staged_info["blocksize"] == [256, 256]
    again = ensure_cog(tmp_path / "cog.tif", tmp_path / "cog2.tif")   # already a COG: copied as is
    assert again["converted"] is False
    assert (tmp_path / "cog.tif").read_bytes() == (tmp_path / "cog2.tif").read_bytes()
    with rasterio.open(src) as a, rasterio.open(tmp_path / "cog.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))     # lossless


def test_pmtiles_single_archive_with_all_layers(staged: Path):
    from pmtiles.reader import MmapSource, Reader

    with open(staged / "web" / "tvb.pmtiles", "rb") as f:
        meta = Reader(MmapSource(f)).metadata()
    ids = {vl["id"] for vl in meta["vector_layers"]}
    assert ids == {"reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors", "rupture_points",
                   "communes"}
    # GDAL reads the merged archive back: every layer with its features and French labels
    layers = {name for name, _ in pyogrio.list_layers(staged / "web" / "tvb.pmtiles")}
    assert ids <= layers
    corr = pyogrio.read_dataframe(staged / "web" / "tvb.pmtiles", layer="corridors")
    assert set(corr["libelle_statut"]) == {"Existant", "À restaurer", "À créer"}
    pts = pyogrio.read_dataframe(staged / "web" / "tvb.pmtiles", layer="rupture_points")
    assert len(pts) >= 2


def test_webmap_page_config(staged: Path):
    html = (staged / "web" / "index.html").read_text(encoding="utf-8")
    assert 'lang="fr"' in html and "vendor/maplibre-gl.js" in html and "vendor/pmtiles.js" in html
    cfg_text = html.split('<script id="tvb-config" type="application/json">')[1].split("</script>")[0]
    cfg = json.loads(cfg_text)
    assert cfg["release_id"] == "20261125T181500Z-abcdef12"
    corridors = next(lyr for lyr in cfg["layers"] if lyr["name"] == "corridors")
    assert [c["label"] for c in corridors["categories"]] == ["Existant", "À restaurer", "À créer"]
    w, s = cfg["bounds"][0]
    assert 2.7 < w < 3.0 and 50.3 < s < 50.5          # Lens, EPSG:4326
    assert 'href="../report/index.html"' in html
    # the key figures computed by the indicators stage get their French labels and units in the panel
    assert cfg["figure_labels"]["artificialised_share_pct"] == "Part des espaces artificialisés"
    assert cfg["figure_units"]["terrestrial_corridors_to_create_km"] == "km"
    assert cfg["figure_units"]["rupture_points"] == ""


def test_qgis_project(staged: Path):
    qgs = staged / "qgis" / "tvb.qgs"
    root = ET.parse(qgs).getroot()
    assert root.tag == "qgis"
    assert root.find("properties/Paths/Absolute").text == "false"
    layers = {ml.find("shortname").text: ml for ml in root.iter("maplayer")}
    assert set(layers) == {"reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors", "rupture_points",
                           "communes"}
    for name, ml in layers.items():
        path, _, layer = ml.find("datasource").text.partition("|layername=")
        assert not Path(path).is_absolute()
        assert (qgs.parent / path).resolve() == (staged / "tvb.gpkg").resolve()
        assert layer == name
    r = layers["corridors"].find("renderer-v2")
    assert r.get("type") == "categorizedSymbol" and r.get("attr") == "status"
    cats = {c.get("value"): c.get("label") for c in r.iter("category")}
    assert cats == {"existing": "Existant", "to_restore": "À restaurer", "to_create": "À créer"}
    colors = [o.get("value") for o in r.find("symbols").iter("Option") if o.get("name") == "line_color"]
    assert len(set(colors)) == 3
    aliases = {a.get("field"): a.get("name") for a in layers["corridors"].iter("alias")}
    assert aliases["length_m"] == "Longueur (m)"
    # aliases are unique in a layer (GetFeatureInfo JSON is keyed by alias): the French label keeps "Statut"
    assert aliases["libelle_statut"] == "Statut" and aliases["status"] == "Statut (code)"
    named = [a for a in aliases.values() if a]
    assert len(named) == len(set(named))
    assert layers["corridors"].findtext("previewExpression") == '"libelle_statut"'
    # QGIS drops a layer id of 10 characters or fewer (mints a random one): the tree would lose the layer
    assert all(len(ml.find("id").text) > 10 for ml in layers.values())
    tree_ids = {n.get("id") for n in root.iter("layer-tree-layer")}
    assert tree_ids == {ml.find("id").text for ml in layers.values()}
    assert root.findtext("properties/WMSRootName") == "tvb_call"
    # declared version not newer than the oldest QGIS Server it was checked with (3.22), or QGIS warns
    major, minor = (int(v) for v in root.get("version").split(".")[:2])
    assert (major, minor) <= (3, 22)
    cfg = json.loads((staged / "qgis" / "tvb.qgs.cfg").read_text(encoding="utf-8"))
    assert cfg["options"]["projection"]["ref"] == "EPSG:2154"
    assert {v["id"] for v in cfg["layers"].values()} == {ml.find("id").text for ml in layers.values()}


def test_stage_refuses_non_empty_folder(tmp_path: Path):
    from tvb_tasks.publish import stage_release

    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        stage_release(territory(), tmp_path / "rel", gpkg=tmp_path / "none.gpkg", rasters=[],
                      indicators_dir=tmp_path)


def test_priority_labels_get_french_infrastructure_words(tmp_path: Path):
    """A priority label built with a raw code ("(culvert N47 …)") reads "(busage N47 …)" in the release."""
    import sqlite3

    import geopandas as gpd
    from shapely.geometry import Point

    from tvb_tasks.publish.formats import add_french_labels

    gpkg = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"id": ["S1", "S2"], "infrastructure": ["culvert", "road"], "sous_trame": ["wetland", "forest"],
                      "libelle": ["Priorité 1 – site de rupture (culvert N47 Lens) – x (S1)",
                                  "Priorité 2 – site de rupture (route D58) – y (S2)"]},
                     geometry=[Point(0, 0), Point(1, 1)], crs=2154).to_file(gpkg, layer="priorities")
    add_french_labels(gpkg, {"wetland": "Sous-trame des zones humides", "forest": "Sous-trame forestière"})
    with sqlite3.connect(gpkg) as con:
        labels = [r[0] for r in con.execute("SELECT libelle FROM priorities ORDER BY id")]
    assert labels[0] == "Priorité 1 – site de rupture (busage N47 Lens) – x (S1)" and "(route D58)" in labels[1]
