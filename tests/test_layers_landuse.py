"""Land use → habitat on hand-built scenes: cover-first rules, nature en ville, a class in two sous-trames, rule
codes checked against the nomenclature, terrils filtered by their `forme`, worked terrils (US1.3.2) not habitat."""
from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

from helpers.layers_scene import CRS, b, base_config, make_scene
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import ConfigError, load_territory, nomenclature_labels
from tvb_tasks.layers import engine
from tvb_tasks.layers.landuse import classify_landuse, habitat_patches

ROOT = Path(__file__).resolve().parent.parent
CALL = ROOT / "config" / "territories" / "call.yaml"


def call_classes(pairs: list[tuple[str, str]]) -> list[str]:
    """Classes the CALL rules give to (code_cs, code_us) pairs."""
    t = load_territory("call")
    gdf = gpd.GeoDataFrame({"code_cs": [p[0] for p in pairs], "code_us": [p[1] for p in pairs]},
                           geometry=[b(0, 0, 10, 10)] * len(pairs), crs=CRS)
    return classify_landuse(gdf, t.landuse)["class"].tolist()


def test_call_rules_are_cover_first_with_nature_en_ville():
    assert call_classes([
        ("CS4.1.2", "US3.2.1"),    # wooded park → a wood
        ("CS6.6.0", "US3.2.1"),    # lawn park → nature en ville
        ("CS6.6.0", "US3.1.3"),    # grassed cemetery
        ("CS6.6.0", "US5.2.3"),    # gardens of detached housing
        ("CS1.1.1", "US3.2.1"),    # a park's buildings and paths stay artificial
        ("CS5.1.1", "US6.2.1"),    # scrubby brownfield → open habitat
        ("CS4.1.3", "US7.0.0"),    # wet woodland
        ("CS6.1.1", "US1.1.1"),    # grazed meadow
        ("CS6.3.0", "US1.1.3"),    # crops
    ]) == ["forest", "nature_en_ville", "nature_en_ville", "nature_en_ville", "artificial", "grassland",
           "wet_forest", "meadow", "farmland"]


def test_worked_terrils_us132_are_not_mining_habitat():
    """OCS2D US1.3.2 is "Terrils en exploitation": worked ground, not a habitat (terrils come from the Mission
    Bassin Minier layers)."""
    labels = nomenclature_labels(load_territory("call"))
    assert labels["US1.3.2"] == "Terrils en exploitation"
    assert call_classes([("CS6.2.0", "US1.3.2"), ("CS5.1.1", "US1.3.1")]) == ["extraction", "extraction"]
    t = load_territory("call")
    assert all("extraction" not in st.habitat for st in t.sous_trames.values())


def test_wet_woods_are_habitat_of_forest_and_wetland(tmp_path):
    cfg = base_config()
    cfg["buffer_m"] = 0
    cfg["landuse"]["classes"]["wet_forest"] = {"label": "Boisements humides", "natural": True}
    cfg["landuse"]["rules"].insert(0, {"code": "WWD", "class": "wet_forest"})
    cfg["friction"]["landuse"]["wet_forest"] = {"forest": 1, "grassland": 30, "wetland": 1}
    cfg["sous_trames"]["forest"]["habitat"] = ["forest", "wet_forest"]
    cfg["sous_trames"]["wetland"]["habitat"] = ["wetland", "water", "wet_forest"]
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=cfg,
                           landuse=[(b(100, 100, 400, 400), "WWD"), (b(600, 600, 700, 700), "FOR")])
    ctx = engine._context(t, inputs)
    forest = habitat_patches(t, "forest", ctx.landuse_all, ctx.extra)
    wet = habitat_patches(t, "wetland", ctx.landuse_all, ctx.extra)
    assert sorted(forest["area_ha"].round(6)) == [1.0, 9.0]
    assert wet["area_ha"].round(6).tolist() == [9.0]


def test_a_rule_code_missing_from_the_nomenclature_is_a_clear_error(tmp_path):
    raw = load_yaml(CALL.read_text(encoding="utf-8"))
    nomenclature = load_yaml((ROOT / "config" / "nomenclatures" / f"{raw['nomenclature']}.yaml")
                                  .read_text(encoding="utf-8"))
    raw["landuse"]["rules"] = [*nomenclature["rules"], {"code_cs": "CS4.9", "class": "forest"}]
    path = tmp_path / "call.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"code_cs='CS4.9' is no code of the nomenclature"):
        load_territory(path)
    raw["landuse"]["rules"][-1] = {"code_cs": "CS4.1", "class": "forest"}     # a prefix cut at a '.' is fine
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    assert load_territory(path).landuse.rules[-1].class_ == "forest"


def test_every_call_rule_code_and_its_label_is_in_method_md():
    t = load_territory("call")
    labels = nomenclature_labels(t)
    doc = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    for rule in t.landuse.rules:
        for _col, code in rule.codes.items():
            assert labels.get(code), f"{code} has no label in {t.nomenclature.file}"
            assert re.search(rf"`{re.escape(code)}` {re.escape(labels[code])}", doc), \
                f"docs/method.md does not list `{code}` {labels[code]}"


def test_built_over_terrils_are_filtered_by_forme(tmp_path):
    """zt_terrils polygons with forme = "Arasé construit" are not mining habitat; the others are."""
    cfg = base_config()
    cfg["buffer_m"] = 0
    cfg["landuse"]["classes"]["mining"] = {"label": "Terrils", "natural": True}
    cfg["friction"]["landuse"]["mining"] = {"forest": 5, "grassland": 5, "wetland": 100}
    cfg["sous_trames"]["grassland"]["extra_habitat_sources"] = [
        {"source": "zt_terrils", "exclude": {"forme": ["Arasé construit"]}}]
    zt = gpd.GeoDataFrame({"forme": ["Conique", "Arasé construit", "Plat"]},
                          geometry=[b(100, 100, 300, 300), b(500, 500, 700, 700), b(100, 600, 200, 700)], crs=CRS)
    zt.to_parquet(tmp_path / "zt.parquet")
    cfg["sources"]["zt_terrils"] = {"kind": "file", "role": "mining", "path": str(tmp_path / "zt.parquet")}
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=cfg, landuse=[])
    inputs["zt_terrils"] = tmp_path / "zt.parquet"
    ctx = engine._context(t, inputs)
    patches = habitat_patches(t, "grassland", ctx.landuse_all, ctx.extra)
    assert sorted(patches["area_ha"].round(6)) == [1.0, 4.0]       # the built-over 4 ha one is gone
    assert set(ctx.extra["sous_trame"]) == {"grassland"}


@pytest.mark.integration          # the bundled sample's inputs
def test_call_filters_the_real_built_over_terrils():
    """On the bundled Mission Bassin Minier layer, the 10 "Arasé construit" zt_terrils are left out."""
    t = load_territory("call")
    spec = t.sous_trames["mining"].habitat_source("zt_terrils")
    assert spec.exclude == {"forme": ["Arasé construit"]}
    zt = gpd.read_file(ROOT / "sample" / "call" / "bassin_minier.gpkg", layer="zt_terrils")
    assert (zt["forme"] == "Arasé construit").sum() == 10
    inputs = engine.sample_inputs(t)
    extra = engine._context(t, inputs).extra
    mining = extra[(extra["sous_trame"] == "mining") & (extra["source"] == "zt_terrils")]
    built = zt[zt["forme"] == "Arasé construit"].to_crs(CRS).union_all()
    assert mining.geometry.intersection(built).area.sum() < 1.0      # m²: nothing of them left
    assert pd.Series(mining.area).sum() > 0


def test_clip_to_equals_geopandas_clip_and_keeps_inner_features_untouched():
    """``clip_to`` returns the rows of ``GeoDataFrame.clip`` in the same order, the same geometries (up to vertex
    order), and the inner features' own geometries, which it does not intersect."""
    import shapely
    from shapely.geometry import LineString, Point, box

    from tvb_tasks.layers.common import clip_to

    mask = shapely.Polygon([(0, 0), (100, 0), (100, 60), (50, 100), (0, 60)])
    inner, crossing, outside = box(10, 10, 30, 30), box(80, 40, 130, 90), box(200, 200, 210, 210)
    line = LineString([(-20, 20), (120, 20)])
    gdf = gpd.GeoDataFrame({"k": ["inner", "crossing", "outside", "line", "point"]},
                           geometry=[inner, crossing, outside, line, Point(5, 5)], crs="EPSG:2154")
    ref, got = gdf.clip(mask), clip_to(gdf, mask)
    assert list(got["k"]) == list(ref["k"]) and "outside" not in set(got["k"])
    for g_ref, g_got in zip(ref.geometry, got.geometry):
        assert shapely.equals_exact(shapely.normalize(g_ref), shapely.normalize(g_got), tolerance=0)
    assert got.set_index("k").geometry["inner"] is inner                          # untouched, not re-noded
    assert got.set_index("k").geometry["crossing"].area == pytest.approx(crossing.intersection(mask).area)
    assert got.set_index("k").geometry["line"].length == pytest.approx(100.0)
    assert clip_to(gdf.iloc[:0], mask).empty and clip_to(gdf[gdf["k"] == "outside"], mask).empty


def test_polygons_only_and_lines_only_keep_single_parts_and_explode_multi_parts():
    """The fast path (no multi-part geometry: no explode) and the exploding one give what explode + filter gives."""
    import shapely
    from geopandas.testing import assert_geodataframe_equal

    from tvb_tasks.layers.common import lines_only, polygons_only

    single = gpd.GeoDataFrame({"k": [1, 2, 3]}, geometry=[shapely.box(0, 0, 1, 1), shapely.Polygon(),
                                                          shapely.LineString([(0, 0), (1, 1)])],
                              crs=2154, index=[5, 7, 9])
    multi = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)]),
        shapely.GeometryCollection([shapely.box(5, 5, 6, 6), shapely.LineString([(0, 0), (1, 1)])])], crs=2154)
    for gdf in (single, multi):
        for keep, want in ((polygons_only, ("Polygon",)), (lines_only, ("LineString",))):
            ref = gdf.explode(index_parts=False)
            ref = ref[ref.geom_type.isin(want) & ~ref.geometry.is_empty].reset_index(drop=True)
            assert_geodataframe_equal(keep(gdf), ref)
    assert polygons_only(multi)["k"].tolist() == [1, 1, 2] and lines_only(single)["k"].tolist() == [3]


def test_unsynced_gpkg_writes_sets_gdal_s_option_only_inside(tmp_path):
    import pyogrio
    import shapely

    from tvb_tasks.layers.common import unsynced_gpkg_writes

    # the tests' environment already turns it off (tests/conftest.py): start from GDAL's "FULL" to see the change
    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "FULL"})
    try:
        gdf = gpd.GeoDataFrame({"k": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=2154)
        with unsynced_gpkg_writes():
            assert pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS") is False      # GDAL's "OFF"
            pyogrio.write_dataframe(gdf, tmp_path / "a.gpkg", layer="one", driver="GPKG")
            pyogrio.write_dataframe(gdf, tmp_path / "a.gpkg", layer="two", driver="GPKG")
        assert pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS") == "FULL"
    finally:
        pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": None})
    assert [n for n, _ in pyogrio.list_layers(tmp_path / "a.gpkg")] == ["one", "two"]
    assert gpd.read_file(tmp_path / "a.gpkg", layer="two")["k"].tolist() == [1]
