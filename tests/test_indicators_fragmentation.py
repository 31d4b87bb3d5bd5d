"""Effective mesh size (CUT / CBC), coherence, splitting index — checked against values computed by hand."""
from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from shapely import LineString
from shapely.geometry import box

from helpers.indicators_scene import scene_territory, write_scene
from tvb_tasks.indicators import read_layers, territory_outline
from tvb_tasks.indicators.fragmentation import (
    cut_by_infrastructure,
    fragmentation_metrics,
    fragmentation_table,
    habitat_patches,
    patch_pieces,
    sous_trame_fragmentation,
)

CRS = "EPSG:2154"


def test_meff_of_two_known_patches():
    # unit of 100 ha; patch 1: 30 ha wholly inside; patch 2: 20 ha inside, 30 ha in all (10 ha outside)
    m = fragmentation_metrics([30.0, 20.0], [30.0, 30.0], 100.0)
    assert m["meff_cut_ha"] == pytest.approx((30**2 + 20**2) / 100)        # 13 ha
    assert m["meff_cbc_ha"] == pytest.approx((30 * 30 + 20 * 30) / 100)    # 15 ha
    assert m["coherence"] == pytest.approx(0.3**2 + 0.2**2)              # 0.13
    assert m["splitting_index"] == pytest.approx(100**2 / 1300)            # 7.69
    assert (m["n_patches"], m["mean_patch_ha"], m["largest_patch_ha"], m["habitat_ha"]) == (2, 25.0, 30.0, 50.0)
    assert m["habitat_pct"] == pytest.approx(50.0)


def test_unit_without_habitat():
    m = fragmentation_metrics([], [], 50.0)
    assert m["meff_cut_ha"] == 0 and m["meff_cbc_ha"] == 0 and m["coherence"] == 0
    assert m["splitting_index"] is None and m["n_patches"] == 0


@pytest.mark.parametrize("areas, complete, unit", [([10.0], [5.0], 100.0), ([1.0], [1.0], 0.0), ([1.0, 2.0], [2.0], 9.0)])
def test_bad_inputs_raise(areas, complete, unit):
    with pytest.raises(ValueError):
        fragmentation_metrics(areas, complete, unit)


def test_patches_are_cut_at_unit_boundaries_and_keep_their_whole_area():
    # two units of 50 ha (500 m × 1000 m); a 40 ha patch (400 m × 1000 m) centred on their border,
    # made of two touching polygons; a 1 ha square touching it only at a corner stays separate.
    units = gpd.GeoDataFrame({"u": ["W", "E"]}, geometry=[box(0, 0, 500, 1000), box(500, 0, 1000, 1000)], crs=CRS)
    habitat = gpd.GeoSeries([box(300, 0, 500, 1000), box(500, 0, 700, 1000), box(700, 1000, 800, 1100)], crs=CRS)
    patches = habitat_patches(habitat)
    assert sorted(patches["area_total_ha"].round(6)) == [1.0, 40.0]
    pieces = patch_pieces(patches, units, "u")
    assert sorted(pieces["area_ha"].round(6)) == [20.0, 20.0]               # the corner square is outside both units
    assert set(pieces["area_total_ha"].round(6)) == {40.0}
    table = fragmentation_table(pieces, pd.Series([50.0, 50.0], index=["W", "E"]), "u").set_index("u")
    assert table.loc["W", "meff_cut_ha"] == pytest.approx(20**2 / 50)      # 8 ha
    assert table.loc["W", "meff_cbc_ha"] == pytest.approx(20 * 40 / 50)    # 16 ha
    assert table.loc["E", "n_patches"] == 1


def test_a_patch_entering_a_unit_twice_gives_two_pieces():
    units = gpd.GeoDataFrame({"u": ["A"]}, geometry=[box(0, 0, 1000, 1000)], crs=CRS)
    # U-shaped patch leaving the unit at the top: two 10 ha arms inside, joined outside
    u_shape = box(0, 0, 100, 1200).union(box(900, 0, 1000, 1200)).union(box(0, 1100, 1000, 1200))
    pieces = patch_pieces(habitat_patches(gpd.GeoSeries([u_shape], crs=CRS)), units, "u")
    assert sorted(pieces["area_ha"].round(6)) == [10.0, 10.0]
    assert set(pieces["area_total_ha"].round(6)) == {(2 * 12 + 8) * 1.0}  # 12 + 12 + 8 ha


def test_scene_forest_fragmentation_by_hand(tmp_path):
    territory = scene_territory(tmp_path)
    layers = read_layers(write_scene(tmp_path / "tvb.gpkg"), territory)
    whole, per_commune = sous_trame_fragmentation(layers, territory, "forest", territory_outline(layers, territory))
    per_commune = per_commune.set_index("insee")
    # commune A (100 ha): F1 30 ha, F4 4 ha, F2 piece 2.5 ha of a 10 ha patch
    assert per_commune.loc["62001", "meff_cut_ha"] == pytest.approx((30**2 + 4**2 + 2.5**2) / 100)
    assert per_commune.loc["62001", "meff_cbc_ha"] == pytest.approx((30**2 + 4**2 + 2.5 * 10) / 100)
    # commune B (100 ha): F2 piece 7.5 of 10 ha, F3 piece 1.5 of 3 ha (half outside the territory)
    assert per_commune.loc["62002", "meff_cut_ha"] == pytest.approx((7.5**2 + 1.5**2) / 100)
    assert per_commune.loc["62002", "meff_cbc_ha"] == pytest.approx((7.5 * 10 + 1.5 * 3) / 100)
    # territory (200 ha): F1, F2 whole, F4, F3 cut at the territory edge
    assert whole["meff_cut_ha"] == pytest.approx((30**2 + 10**2 + 4**2 + 1.5**2) / 200)
    assert whole["meff_cbc_ha"] == pytest.approx((30**2 + 10**2 + 4**2 + 1.5 * 3) / 200)
    assert whole["n_patches"] == 4 and isinstance(whole["n_patches"], int)
    assert whole["largest_patch_ha"] == pytest.approx(30.0)


def test_meff_is_computed_on_land_cover_habitat_not_on_protected_reservoirs(tmp_path):
    # a 10 ha wood inside a 40 ha protected reservoir (the other 30 ha are crops), and a 2 ha extra habitat
    # source (a terril) in the habitat_patches layer: the habitat is 12 ha in two patches, not the reservoir
    from tvb_tasks.indicators.fragmentation import sous_trame_habitat

    territory = scene_territory(tmp_path)
    wood, reserve, terril = box(0, 0, 250, 400), box(0, 0, 1000, 400), box(2000, 0, 2100, 200)
    layers = {"landuse": gpd.GeoDataFrame({"class": ["forest", "farmland"]},
                                          geometry=[wood, reserve.difference(wood)], crs=CRS),
              "reservoirs": gpd.GeoDataFrame({"sous_trame": ["forest"]}, geometry=[reserve], crs=CRS),
              "relays": gpd.GeoDataFrame({"sous_trame": []}, geometry=[], crs=CRS),
              "habitat_patches": gpd.GeoDataFrame({"sous_trame": ["forest", "forest"]}, geometry=[wood, terril],
                                                  crs=CRS)}
    patches = habitat_patches(sous_trame_habitat(layers, territory, "forest"))
    assert sorted(patches["area_total_ha"].round(6)) == [2.0, 10.0]
    # an older release without habitat_patches falls back on the reservoirs (which carry the extra sources there)
    old = {k: v for k, v in layers.items() if k != "habitat_patches"}
    assert habitat_patches(sous_trame_habitat(old, territory, "forest"))["area_total_ha"].round(6).tolist() == [40.0]
    # meff of the 200 ha unit: (10² + 2²) / 200; CBC = CUT as no patch leaves the unit
    pieces = patch_pieces(patches, gpd.GeoDataFrame({"u": ["t"]}, geometry=[box(-10, -10, 2200, 1000)], crs=CRS), "u")
    row = fragmentation_table(pieces, pd.Series({"t": 200.0}), "u").iloc[0]
    assert row["meff_cut_ha"] == pytest.approx((100 + 4) / 200) and row["meff_cbc_ha"] == row["meff_cut_ha"]


# --- the local cut by the infrastructure (issue #18: the cost must grow with the area, not its square) ----------
def _cut_against_whole_network(habitat, lines, widths_m, trame):
    """The previous implementation: every polygon minus ONE union of all the buffered lines (the reference)."""
    sel = lines[lines["infra_type"] != "canal"] if trame == "bleue" else lines
    default = sel["infra_type"].map(widths_m).astype(float).fillna(max(widths_m.values(), default=1.0))
    width = (pd.to_numeric(sel["width_m"], errors="coerce").where(lambda w: w > 0).fillna(default)
             if "width_m" in sel.columns else default)
    cuts = shapely.union_all(shapely.buffer(sel.geometry.values, width.to_numpy() / 2.0, cap_style="flat"))
    return shapely.difference(habitat.values, cuts)


def _scene():
    """Four habitat polygons and five lines (m, EPSG:2154):
    P0 (0..1000)² crossed by two roads (x = 500 and y = 500) → four pieces; P1 (2000..2400 × 0..400) touched by no
    line; P2 (0..600 × 2000..2600) entered by a road ending at its centre (a notch, one piece); P3 (3000..3500 ×
    0..500) crossed by a canal at x = 3250 and by a railway without width at y = 250; a line far from all."""
    habitat = gpd.GeoSeries([box(0, 0, 1000, 1000), box(2000, 0, 2400, 400), box(0, 2000, 600, 2600),
                             box(3000, 0, 3500, 500)], crs=CRS)
    lines = gpd.GeoDataFrame(
        {"infra_type": ["road", "road", "road", "canal", "railway", "road"],
         "width_m": [10.0, 20.0, 6.0, 40.0, None, 8.0]},
        geometry=[LineString([(500, -50), (500, 1050)]), LineString([(-50, 500), (1050, 500)]),
                  LineString([(300, 1900), (300, 2300)]), LineString([(3250, -50), (3250, 550)]),
                  LineString([(2950, 250), (3550, 250)]), LineString([(9000, 9000), (9500, 9000)])], crs=CRS)
    return habitat, lines


@pytest.mark.parametrize("trame", ["verte", "bleue"])
@pytest.mark.parametrize("with_width", [True, False])
def test_local_cut_equals_the_cut_by_the_whole_network(trame, with_width):
    habitat, lines = _scene()
    if not with_width:
        lines = lines.drop(columns="width_m")
    widths = {"road": 10.0, "railway": 14.0, "canal": 20.0}
    got = cut_by_infrastructure(habitat, lines, widths, trame)
    want = _cut_against_whole_network(habitat, lines, widths, trame)
    assert len(got) == len(want) == len(habitat)
    for g, w in zip(got.values, want, strict=True):
        assert shapely.normalize(g).equals(shapely.normalize(w))
        assert abs(g.area - w.area) < 1e-6


def test_local_cut_known_areas():
    habitat, lines = _scene()
    got = cut_by_infrastructure(habitat, lines, {"road": 10.0, "railway": 14.0, "canal": 20.0}, "verte")
    # P0: 100 ha minus a 10 m × 1000 m and a 20 m × 1000 m band, their 10 × 20 m crossing counted once; 4 pieces
    assert got[0].area == pytest.approx(1000 * 1000 - 10 * 1000 - 20 * 1000 + 10 * 20)
    assert len(shapely.get_parts(got[0])) == 4
    assert got[1].equals(habitat[1])                                        # touched by no line
    assert got[2].area == pytest.approx(600 * 600 - 6 * 300)                # a 6 m notch, 300 m long, one piece
    assert len(shapely.get_parts(got[2])) == 1
    # P3, trame verte: the 40 m canal (its width_m) and the railway without width (14 m default) cut it in four
    assert got[3].area == pytest.approx(500 * 500 - 40 * 500 - 14 * 500 + 40 * 14)
    assert len(shapely.get_parts(got[3])) == 4
    bleue = cut_by_infrastructure(habitat, lines, {"road": 10.0, "railway": 14.0, "canal": 20.0}, "bleue")
    assert bleue[3].area == pytest.approx(500 * 500 - 14 * 500)              # the canal does not cut the trame bleue
    assert len(shapely.get_parts(bleue[3])) == 2


def test_local_cut_keeps_empty_and_missing_geometries_and_the_index():
    habitat, lines = _scene()
    habitat = gpd.GeoSeries([habitat[0], None, shapely.Polygon(), habitat[1]], index=[10, 11, 12, 13], crs=CRS)
    got = cut_by_infrastructure(habitat, lines, {"road": 10.0}, "verte")
    assert list(got.index) == [10, 11, 12, 13]
    assert got[11] is None and got[12].is_empty and got[13].equals(habitat[13])
    assert got[10].area == pytest.approx(1000 * 1000 - 10 * 1000 - 20 * 1000 + 10 * 20)


# --- cutting features at the unit boundaries (issue #18: features inside a unit are not overlaid with it) ----------
def test_intersect_with_units_equals_the_pairwise_intersection():
    from tvb_tasks.indicators.communes import area_by_unit, intersect_with_units, length_by_unit

    # units W (0..500) and E (500..1000) × 0..1000; a polygon inside W, one across the border, a line inside E,
    # a line across, a line running back over itself inside W (not simple: the overlay dissolves it to 100 m),
    # a square inside E, a polygon on W's outer edge (touches only: a line, no area)
    units = gpd.GeoDataFrame({"u": ["W", "E"]}, geometry=[box(0, 0, 500, 1000), box(500, 0, 1000, 1000)], crs=CRS)
    polys = gpd.GeoDataFrame({"k": ["in", "across", "in_e", "edge"]},
                             geometry=[box(100, 100, 200, 300), box(400, 100, 700, 200),
                                       box(600, 600, 700, 700),
                                       box(-100, 0, 0, 100)], crs=CRS)
    lines = gpd.GeoDataFrame({"k": ["in", "across", "back"]},
                             geometry=[LineString([(600, 10), (900, 10)]), LineString([(100, 500), (900, 500)]),
                                       LineString([(100, 800), (200, 800), (150, 800)])], crs=CRS)
    for features in (polys, lines):
        got = intersect_with_units(features, units, "u")
        idx_f, idx_u = units.sindex.query(features.geometry.values, predicate="intersects")
        want = shapely.intersection(features.geometry.values[idx_f], units.geometry.values[idx_u])
        assert list(got["u"]) == list(units["u"].to_numpy()[idx_u])
        for g, w in zip(got.geometry.values, want, strict=True):
            assert abs(g.area - w.area) < 1e-6 and abs(g.length - w.length) < 1e-6
    assert area_by_unit(polys, units, "u").round(6).to_dict() == {"W": 2.0 + 1.0, "E": 2.0 + 1.0}
    assert length_by_unit(lines, units, "u").round(6).to_dict() == {"W": 0.4 + 0.1, "E": 0.3 + 0.4}
