"""Layers engine on small hand-built scenes with known answers (EPSG:2154, 25 m cells).

Each scene is written as GeoParquet fixtures plus a territory YAML in a temporary folder, then run through the
public functions of :mod:`tvb_tasks.layers`.
"""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from shapely import Point, Polygon

from helpers.layers_scene import CRS, X0, Y0, b, base_config, line, make_scene, read, sq
from tvb_tasks.layers import LayerInputError, compute_layers, compute_sous_trame, engine, read_layer
from tvb_tasks.layers.common import make_grid, write_cog
from tvb_tasks.layers.friction import friction_raster, prepare_infrastructure
from tvb_tasks.layers.landuse import classify_landuse
from tvb_tasks.layers.ruptures import deduplicate


# --- land use ---------------------------------------------------------------------------------------------------
def test_classify_landuse_first_match_prefix_and_default(tmp_path):
    cfg = base_config()
    cfg["landuse"]["code_columns"] = ["cs", "us"]
    cfg["landuse"]["rules"] = [{"us": "US1.3", "class": "grassland"}, {"cs": "CS4", "class": "forest"},
                               {"cs": "CS6.1", "us": "US1.1", "class": "meadow"}, {"cs": "CS6", "class": "grassland"}]
    t, _ = make_scene(tmp_path, outline=b(0, 0, 500, 500), landuse=[], config=cfg)
    gdf = gpd.GeoDataFrame({"cs": ["CS4.1.2", "CS4.1.2", "CS6.1.1", "CS6.1.1", "CS9"],
                            "us": ["US1.3.2", "US7", "US1.1.1", "US7", "US7"]},
                           geometry=[b(0, 0, 1, 1)] * 5, crs=CRS)
    out = classify_landuse(gdf, t.landuse)
    assert out["class"].tolist() == ["grassland", "forest", "meadow", "grassland", "farmland"]
    no_default = t.landuse.model_copy(update={"default_class": None})
    with pytest.raises(LayerInputError, match="match no land-use rule"):
        classify_landuse(gdf, no_default)


# --- reservoirs and relays --------------------------------------------------------------------------------------
def test_patch_area_thresholds_reservoir_relay_nothing(tmp_path):
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 2500, 1000), landuse=[
        (sq(100, 100, 10.2), "FOR"),    # just over the 10 ha reservoir minimum
        (sq(800, 100, 9.8), "FOR"),     # just under: relay (≥ 1 ha)
        (sq(1500, 100, 1.05), "FOR"),   # just over the relay minimum
        (sq(2000, 100, 0.95), "FOR"),   # just under the relay minimum: nothing
    ])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    res, rel = read(part, "reservoirs"), read(part, "relays")
    assert res["area_ha"].round(3).tolist() == [10.2]
    assert sorted(rel["area_ha"].round(3).tolist()) == [1.05, 9.8]
    assert res["origin"].tolist() == ["habitat_patch"]
    assert set(res["sous_trame"]) == {"forest"} and res["id"].tolist() == ["forest-R001"]
    assert part["counts"] == {**part["counts"], "habitat_patches": 4, "reservoirs": 1, "relays": 2}
    json.dumps(part)   # travels through XCom


def test_touching_polygons_form_one_patch(tmp_path):
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1500, 1000), landuse=[
        (b(100, 100, 300, 400), "FOR"), (b(300, 100, 500, 400), "FOR"),   # 6 + 6 ha touching → one 12 ha patch
    ])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    res = read(part, "reservoirs")
    assert len(res) == 1 and res["area_ha"].iloc[0] == pytest.approx(12.0)


def test_protected_areas_always_vs_case_by_case(tmp_path):
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 3000, 1500), landuse=[
        (b(100, 100, 400, 400), "MEA"),          # APB 1 ground: meadow (9 ha) + a 0.25 ha wood
        (b(400, 100, 450, 150), "FOR"),
        (b(1000, 100, 1200, 200), "FOR"),        # 2 ha wood inside APB 2
        (b(1500, 100, 1700, 250), "FOR"),        # 3 ha wood fully inside a ZNIEFF → reservoir (case by case)
        (b(2000, 100, 2200, 300), "FOR"),        # 4 ha wood, half inside a ZNIEFF → 2 ha reservoir + 2 ha relay
    ], protected=[
        (b(100, 100, 450, 400), "APB", "Prairies de test"),
        (b(950, 50, 1250, 250), "APB", "Bois de test"),
        (b(1450, 50, 1750, 300), "ZNIEFF1", "Znieff boisée"),
        (b(1950, 50, 2100, 350), "ZNIEFF1", "Znieff à moitié"),
        (b(2500, 500, 2900, 900), "ZNIEFF1", "Znieff agricole"),   # farmland only → nothing
        (b(2500, 1000, 2900, 1400), "ZNIEF", "Type inconnu"),      # not listed → ignored
    ])
    forest = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    grass = compute_sous_trame(t, inputs, "grassland", tmp_path / "out")
    fres, frel = read(forest, "reservoirs"), read(forest, "relays")
    gres = read(grass, "reservoirs")
    # APB 1 holds 0.25 ha of wood (< 1 ha relay minimum) and is most permeable for grassland species (meadow 5)
    assert "APB Prairies de test" in ";".join(gres["origin_name"])
    assert gres.loc[gres["origin_name"].str.contains("Prairies"), "area_ha"].iloc[0] == pytest.approx(10.5)
    assert not fres["origin_name"].str.contains("Prairies").any()
    # APB 2 holds 2 ha of wood → whole area (6 ha) is a forest reservoir although < 10 ha
    apb2 = fres[fres["origin_name"].str.contains("Bois de test")]
    assert len(apb2) == 1 and apb2["area_ha"].iloc[0] == pytest.approx(6.0)
    assert apb2["origin"].iloc[0] == "protected_area"
    # ZNIEFF: habitat inside only
    z1 = fres[fres["origin_name"].str.contains("Znieff boisée")]
    assert len(z1) == 1 and z1["area_ha"].iloc[0] == pytest.approx(3.0)
    z2 = fres[fres["origin_name"].str.contains("Znieff à moitié")]
    assert len(z2) == 1 and z2["area_ha"].iloc[0] == pytest.approx(2.0)
    assert frel["area_ha"].round(6).tolist() == [2.0]
    assert not fres["origin_name"].str.contains("agricole|inconnu").any()
    assert len(fres) == 3


# --- friction ---------------------------------------------------------------------------------------------------
def test_friction_raster_values_max_rule_nodata(tmp_path):
    outline = Polygon([(X0, Y0), (X0 + 1000, Y0), (X0 + 1000, Y0 + 1000), (X0, Y0 + 500)])   # a cut corner
    t, inputs = make_scene(tmp_path, outline=outline, landuse=[(b(0, 0, 300, 300), "FOR")],
                           roads=[(line((500, 0), (500, 1000)), 2), (line((0, 100), (1000, 100)), 5)],
                           railways=[(line((800, 0), (800, 1000)), "disused")],
                           water=[(line((0, 250), (1000, 250)), "canal", "open")])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    with rasterio.open(part["files"]["friction"]) as ds:
        fr = ds.read(1)
        assert ds.dtypes[0] == "float32" and ds.nodata == -1
        assert ds.crs.to_epsg() == 2154 and ds.res == (25.0, 25.0)

        def at(x: float, y: float) -> float:
            r, c = ds.index(X0 + x, Y0 + y)
            return float(fr[r, c])

        assert at(650, 600) == 100            # cropland
        assert at(150, 180) == 1              # forest
        assert at(500, 700) == 1000           # importance-2 road burned over cropland
        assert at(150, 100) == 30             # importance-5 road (30) over forest (1): max rule
        assert at(650, 100) == 100            # importance-5 road (30) over cropland (100): cropland kept
        assert at(800, 700) == 100            # disused railway (5) never lowers cropland
        assert at(650, 250) == 10000          # canal for a terrestrial sous-trame
        assert at(100, 900) == -1             # outside the territory (cut corner) → nodata
    wet = compute_sous_trame(t, inputs, "wetland", tmp_path / "out")
    with rasterio.open(wet["files"]["friction"]) as ds:
        r, c = ds.index(X0 + 650, Y0 + 250)
        assert ds.read(1)[r, c] == 100        # canal is no barrier for the trame bleue (here: cropland below)


def test_friction_in_memory_is_float32_nan_outside(tmp_path):
    outline = Polygon([(X0, Y0), (X0 + 500, Y0), (X0, Y0 + 500)])
    t, inputs = make_scene(tmp_path, outline=outline, landuse=[])
    ctx = engine._context(t, inputs)
    fr, _lu = friction_raster(t, "forest", ctx.classes_raster, ctx.classes, ctx.infra, ctx.grid)
    assert fr.dtype == np.float32
    assert np.isnan(fr[~ctx.inside]).all() and (fr[ctx.inside] == 100).all()


def test_unknown_road_importance_is_a_clear_error(tmp_path):
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 500, 500), landuse=[],
                           roads=[(line((0, 10), (500, 10)), 7)])
    roads = gpd.read_parquet(inputs["roads"])
    with pytest.raises(LayerInputError, match=r"roads: importance values \[7\]"):
        prepare_infrastructure(t, roads, roads.iloc[:0], roads.iloc[:0], b(0, 0, 500, 500))


# --- corridors and rupture points -------------------------------------------------------------------------------
def _two_woods(tmp_path, between: list[tuple[Polygon, str]] = (), roads=(), railways=()):
    """Two 12.25 ha woods 750 m apart on a cropland plain."""
    return make_scene(tmp_path, outline=b(0, 0, 2000, 1000), landuse=[
        (b(200, 325, 550, 675), "FOR"), (b(1300, 325, 1650, 675), "FOR"), *between], roads=roads,
        railways=railways)


@pytest.fixture(scope="module")
def road_between_woods(tmp_path_factory):
    """``(folder, compute_layers output)`` of the two woods with an importance-3 road between them, every
    sous-trame (only the forest one has habitat here); read only, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("road-between-woods")
    t, inputs = _two_woods(tmp, roads=[(line((930, 0), (930, 1000)), 3)])
    return tmp, compute_layers(t, inputs, tmp / "out")


def test_corridor_through_farmland_crossing_one_road(road_between_woods):
    _, out = road_between_woods
    gpkg = out["gpkg"]
    cor = gpd.read_file(gpkg, layer="corridors")
    assert len(cor) == 1
    c = cor.iloc[0]
    assert (c["from_id"], c["to_id"]) == ("forest-R001", "forest-R002")
    assert c["status"] == "to_create"                 # cropland (friction 100) all the way
    assert 750 <= c["length_m"] <= 800                # 750 m gap + half a cell in each wood
    # cost = cropland + one importance-3 road cell (1000), both in friction × m
    assert 750 * 100 < c["cost"] < 800 * 100 + 1000 * 25 + 1
    pts = gpd.read_file(gpkg, layer="rupture_points")
    assert len(pts) == 1
    p = pts.iloc[0]
    assert (p["corridor_id"], p["sous_trame"], p["infrastructure"], p["infra_class"]) == (c["id"], "forest", "road", "3")
    assert p["severity"] == 3 and p["corridor_kind"] == "terrestre"
    assert abs(p.geometry.x - (X0 + 930)) < 1e-6
    assert "route d'importance 3" in p["libelle"]
    # km by status per stretch: the 750 m of crops "to create", the half cells in the woods existing
    assert out["lengths_km"]["corridors_to_create"] == pytest.approx(0.75, abs=1e-3)
    assert out["lengths_km"]["corridors_to_create"] + out["lengths_km"]["corridors_existing"] == \
        pytest.approx(c["length_m"] / 1000, abs=1e-3)
    json.dumps(out)


def test_minor_road_is_no_rupture_and_max_cost_cuts_links(tmp_path):
    t, inputs = _two_woods(tmp_path, roads=[(line((930, 0), (930, 1000)), 5)])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    assert out["counts"]["corridors"] == 1 and out["counts"]["rupture_points"] == 0
    cfg = base_config()
    cfg["sous_trames"]["forest"]["max_cost"] = 30000       # 750 m of cropland cost ≈ 75000
    (tmp_path / "cut").mkdir()
    t2, inputs2 = make_scene(tmp_path / "cut", outline=b(0, 0, 2000, 1000),
                             landuse=[(b(200, 325, 550, 675), "FOR"), (b(1300, 325, 1650, 675), "FOR")], config=cfg)
    part = compute_sous_trame(t2, inputs2, "forest", tmp_path / "out2")
    assert part["counts"]["corridors"] == 0
    with rasterio.open(part["files"]["cost"]) as ds:
        cost = ds.read(1)
        r, c = ds.index(X0 + 925, Y0 + 500)
        assert cost[r, c] == -1                          # 375 m of cropland (≈ 37500) > max_cost: nodata
        r, c = ds.index(X0 + 600, Y0 + 500)
        # from the wood's edge cell (centre x=537.5) to the cell centred on x=612.5: one wood→crop step
        # (1 + 100) / 2 × 25 m, then two crop steps 100 × 25 m
        assert cost[r, c] == pytest.approx((1 + 100) / 2 * 25 + 2 * 100 * 25)


@pytest.mark.parametrize("code, status", [("GRA", "existing"), ("MEA", "to_restore")])
def test_corridor_status_from_land_use_along_it(tmp_path, code, status):
    # a 100 m wide strip of favourable (scrub, 5) or little favourable (meadow, 30) land joins the two woods
    t, inputs = _two_woods(tmp_path, between=[(b(550, 450, 1300, 550), code)])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    cor = read(part, "corridors")
    assert len(cor) == 1 and cor["status"].iloc[0] == status


def test_shared_stretches_are_drawn_once(tmp_path):
    # wood A, a 600 m scrub strip (friction 5) leaving it eastwards, then woods B (north-east) and C (south-east):
    # the paths A–B and A–C share the strip, which must be drawn (and counted) once
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 2000, 2000), landuse=[
        (b(100, 850, 450, 1150), "FOR"), (b(450, 975, 1050, 1025), "GRA"),
        (b(1300, 1400, 1650, 1750), "FOR"), (b(1300, 250, 1650, 600), "FOR")])
    part = compute_sous_trame(t, inputs, "forest", tmp_path / "out")
    cor = read(part, "corridors")
    pairs = set(zip(cor["from_id"], cor["to_id"]))
    assert len(cor) == 3 and len(pairs) == 3
    assert cor["length_m"].sum() == pytest.approx(cor.geometry.union_all().length, rel=1e-9)   # no overlap
    assert cor["length_m"].sum() < cor["path_length_m"].sum() - 500   # the strip (600 m) is drawn once
    assert (cor["length_m"] <= cor["path_length_m"] + 1e-6).all()
    shared = cor[cor["length_m"] < cor["path_length_m"] - 500]
    wood_a = read(part, "reservoirs").set_index("area_ha").sort_index()["id"].iloc[0]   # A is the smallest wood
    assert len(shared) == 1 and wood_a in (shared["from_id"].iloc[0], shared["to_id"].iloc[0])


def test_rupture_dedup_within_tolerance():
    def pt(x, y, st="forest", kind="road", sev=2):
        return {"corridor_id": "c", "sous_trame": st, "corridor_kind": "terrestre", "infrastructure": kind,
                "infra_class": "3", "infra_name": "", "severity": sev, "geometry": Point(X0 + x, Y0 + y)}

    pts = gpd.GeoDataFrame([pt(0, 0), pt(30, 0, sev=3), pt(200, 0), pt(0, 10, kind="railway"),
                            pt(5, 5, st="grassland")], crs=CRS)
    out = deduplicate(pts, 50)
    assert len(out) == 4
    merged = out[(out["infrastructure"] == "road") & (out["sous_trame"] == "forest") & (out["n_merged"] == 2)]
    assert len(merged) == 1 and merged["severity"].iloc[0] == 3    # the most severe is kept
    assert deduplicate(pts, 0)["n_merged"].tolist() == [1] * 5


# --- wet corridors ----------------------------------------------------------------------------------------------
def _wet_scene(tmp_path, position_mid: str, open_only: bool = True, obstacles=()):
    cfg = base_config()
    cfg["corridors"]["wet"]["open_only"] = open_only
    stream = [(line((300, 500), (800, 500)), "stream", "open"),
              (line((800, 500), (1000, 500)), "stream", position_mid),
              (line((1000, 500), (1500, 500)), "stream", "open")]
    return make_scene(tmp_path, outline=b(0, 0, 2000, 1000), config=cfg, water=stream, obstacles=obstacles,
                      landuse=[(b(200, 400, 400, 600), "WET"), (b(1400, 400, 1600, 600), "WET")])


def test_wet_corridor_links_wetlands_along_open_stream(tmp_path):
    t, inputs = _wet_scene(tmp_path, "open", obstacles=[Point(X0 + 900, Y0 + 500.5)])
    out = compute_layers(t, inputs, tmp_path / "out")
    wet = gpd.read_file(out["gpkg"], layer="wet_corridors")
    # 1000 m between the wetlands + 100 m of stream inside each of them
    assert wet["length_m"].sum() == pytest.approx(1200, abs=0.01)
    assert set(wet["position"]) == {"open"}
    pts = gpd.read_file(out["gpkg"], layer="rupture_points")
    assert pts["infrastructure"].tolist() == ["river_obstacle"] and pts["corridor_kind"].tolist() == ["aquatique"]
    assert pts["corridor_id"].iloc[0] in set(wet["id"])


def test_wet_corridor_excludes_culverted_sections(tmp_path):
    t, inputs = _wet_scene(tmp_path, "culverted")
    out = compute_layers(t, inputs, tmp_path / "out")
    assert out["counts"]["wet_corridors"] == 0
    assert out["lengths_km"]["culverted_watercourses"] == pytest.approx(0.2)
    (tmp_path / "flagged").mkdir()
    t2, inputs2 = _wet_scene(tmp_path / "flagged", "culverted", open_only=False)
    out2 = compute_layers(t2, inputs2, tmp_path / "out2")
    wet = gpd.read_file(out2["gpkg"], layer="wet_corridors")
    assert wet.loc[wet["position"] == "culverted", "length_m"].sum() == pytest.approx(200, abs=0.01)
    assert wet["libelle"].str.contains("busée").any()


# --- publication outputs ----------------------------------------------------------------------------------------
def test_geopackage_layers_with_libelle_and_cog_rasters(road_between_woods):
    from rio_cogeo.cogeo import cog_validate

    tmp_path, out = road_between_woods
    layers = dict(pyogrio.list_layers(out["gpkg"]))
    for name in ("reservoirs", "relays", "corridors", "wet_corridors", "rupture_points", "communes", "landuse"):
        assert name in layers
        cols = pyogrio.read_info(out["gpkg"], layer=name)["fields"]
        assert "libelle" in cols, name
    for name in ("reservoirs", "corridors", "rupture_points", "communes", "landuse"):
        gdf = gpd.read_file(out["gpkg"], layer=name)
        assert len(gdf) and gdf["libelle"].notna().all() and (gdf["libelle"].str.len() > 0).all(), name
        assert gdf.crs.to_epsg() == 2154
    assert gpd.read_file(out["gpkg"], layer="communes")[["insee", "nom"]].values.tolist() == [["99001", "Testville"]]
    assert len(out["rasters"]) == 6
    for path in out["rasters"]:
        assert Path(path).parent == tmp_path / "out" / "rasters"
        valid, errors, _ = cog_validate(path)
        assert valid, errors
        with rasterio.open(path) as ds:
            assert ds.dtypes[0] == "float32" and ds.nodata == -1 and ds.profile["tiled"]


def test_assemble_builds_no_whole_grid_raster(tmp_path, monkeypatch):
    """The assembly reads only vectors (``vectors.vector_context``): the engine's whole-grid context (territory and
    extent masks, class raster) is never built, so a tiled territory's assembly is not bounded by the grid."""
    from tvb_tasks.layers import assembly, engine

    t, inputs = _two_woods(tmp_path, roads=[(line((930, 0), (930, 1000)), 3)])
    parts = [engine.compute_sous_trame(t, inputs, st, tmp_path / "parts") for st in t.sous_trames]

    def whole_grid(*_a, **_k):
        raise AssertionError("assemble built the whole-grid context")

    monkeypatch.setattr(engine, "_context", whole_grid)
    monkeypatch.setattr(assembly, "_context", whole_grid, raising=False)
    out = assembly.assemble(t, inputs, parts, tmp_path / "out")
    assert out["counts"]["corridors"] >= 1 and out["counts"]["rupture_points"] >= 1


def test_write_cog_has_overviews_and_nodata(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    grid = make_grid(b(0, 0, 25 * 700, 25 * 600), 25, CRS)
    arr = np.arange(grid.shape[0] * grid.shape[1], dtype=np.float64).reshape(grid.shape)
    arr[:10, :10] = np.nan
    arr[-1, -1] = np.inf
    path = write_cog(arr, grid, tmp_path / "a.tif")
    valid, errors, _ = cog_validate(path)
    assert valid, errors
    with rasterio.open(path) as ds:
        assert ds.overviews(1) and ds.block_shapes[0] == (256, 256) and ds.nodata == -1
        data = ds.read(1)
        assert data[0, 0] == -1 and data[-1, -1] == -1 and data[20, 20] == arr[20, 20]


# --- inputs -----------------------------------------------------------------------------------------------------
def test_read_layer_errors_name_the_file(tmp_path):
    gpkg = tmp_path / "two.gpkg"
    g = gpd.GeoDataFrame({"a": [1]}, geometry=[Point(X0, Y0)], crs=CRS)
    g.to_file(gpkg, layer="one")
    g.to_file(gpkg, layer="two")
    with pytest.raises(LayerInputError, match="several layers"):
        read_layer(gpkg)
    assert len(read_layer(gpkg, "two")) == 1
    with pytest.raises(LayerInputError, match="not found"):
        read_layer(tmp_path / "missing.parquet", source="roads")
    nocrs = tmp_path / "nocrs.parquet"
    gpd.GeoDataFrame({"a": [1]}, geometry=[Point(0, 0)]).to_parquet(nocrs)
    with pytest.raises(LayerInputError, match="no CRS"):
        read_layer(nocrs)


def test_missing_landuse_input_is_a_clear_error(tmp_path):
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 500, 500), landuse=[])
    inputs = {k: v for k, v in inputs.items() if k != "landuse"}
    with pytest.raises(LayerInputError, match="role 'landuse'"):
        compute_sous_trame(t, inputs, "forest", tmp_path / "out")
