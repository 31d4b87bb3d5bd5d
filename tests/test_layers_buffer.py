"""Computation on the territory plus a buffer: whole patches keep their size class, outputs are clipped to the
territory, the patches' full extent is published, sources are fetched for the buffered extent."""
from __future__ import annotations

import geopandas as gpd
import pytest
import rasterio

from helpers.layers_scene import b, base_config, make_scene
from tvb_tasks.config import load_territory
from tvb_tasks.layers import compute_layers
from tvb_tasks.sources.fetch import source_buffer_m


def _scene(tmp_path, buffer_m: float):
    """A 1 km square territory; a 12 ha wood straddles its east side (6 ha inside), a 4 ha wood lies wholly
    outside, and a 12.25 ha wood inside."""
    cfg = base_config()
    cfg["buffer_m"] = buffer_m
    return make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=cfg, landuse=[
        (b(800, 300, 1200, 600), "FOR"), (b(1300, 300, 1500, 500), "FOR"), (b(100, 300, 450, 650), "FOR")])


def test_size_threshold_applies_to_the_whole_patch_then_outputs_are_clipped(tmp_path):
    t, inputs = _scene(tmp_path, 600)
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    res = gpd.read_file(out["gpkg"], layer="reservoirs").sort_values("area_ha")
    assert res["area_ha"].round(4).tolist() == [6.0, 12.25]          # clipped to the territory
    assert res["patch_area_ha"].round(4).tolist() == [12.0, 12.25]   # the whole patch made it a reservoir
    outline = b(0, 0, 1000, 1000)
    assert all(g.difference(outline).area < 1e-6 for g in res.geometry)
    rel = gpd.read_file(out["gpkg"], layer="relays")
    assert rel.empty                                                 # the 4 ha wood outside is not published
    part = out["parts"][0]
    full = gpd.read_parquet(part["files"]["habitat"])               # the patches' full extent (meff CBC)
    assert sorted(full["area_ha"].round(4)) == [4.0, 12.0, 12.25]
    assert sorted(full["area_in_territory_ha"].round(4)) == [0.0, 6.0, 12.25]
    layer = gpd.read_file(out["gpkg"], layer="habitat_patches")   # the same, published for the indicators
    assert sorted(layer["area_ha"].round(4)) == [4.0, 12.0, 12.25] and layer["libelle"].str.len().min() > 0
    with rasterio.open(part["files"]["friction"]) as ds:            # rasters: the territory's own grid
        assert (ds.width, ds.height) == (40, 40)
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert all(g.difference(outline.buffer(0.01)).length < 1e-6 for g in cor.geometry)


def test_without_buffer_the_cut_patch_is_only_a_relay(tmp_path):
    t, inputs = _scene(tmp_path, 0)
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    res = gpd.read_file(out["gpkg"], layer="reservoirs")
    rel = gpd.read_file(out["gpkg"], layer="relays")
    assert res["area_ha"].round(4).tolist() == [12.25]
    assert rel["area_ha"].round(4).tolist() == [6.0]


def test_default_buffer_is_the_largest_dispersal_distance_over_the_most_favourable_matrix(tmp_path):
    t, _ = _scene(tmp_path, 0)
    raw = t.model_copy(update={"buffer_m": None})
    # forest: 300,000 / 5 (grassland, its most favourable non-habitat class) = 60 km; grassland 200,000 / 5
    # (meadow) = 40 km; wetland 30,000 / 30 = 1 km
    assert raw.analysis_buffer_m() == pytest.approx(60_000)
    assert t.analysis_buffer_m() == 0


def test_sources_are_fetched_for_the_buffered_extent():
    call = load_territory("call")
    assert call.analysis_buffer_m() == 3000
    assert source_buffer_m(call, {}, "bbox_buffer_m") == 3000
    assert source_buffer_m(call, {"bbox_buffer_m": 500}, "bbox_buffer_m") == 500
    small = call.model_copy(update={"buffer_m": 200})
    assert source_buffer_m(small, {}, "clip_buffer_m") == 1000          # never below the former 1 km
