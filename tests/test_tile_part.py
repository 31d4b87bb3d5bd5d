"""The tiled part stage (``tiled.stage_tile_part``) on the bundled CALL: the files and contract of the untiled
``pipeline.stage_compute_sous_trame``, file for file, and an assembly of tiled parts equal to the untiled one.

CALL at 50 m, 128-cell tiles (12 per problem, several rounds), outline shrunk by 500 m so that the computation grid
is larger than the territory's own grid on every side (``call_tiled_run``, tests/conftest.py); missing links enabled
(CALL's configuration). The untiled reference runs on the same snapshot files and store with tiling off.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from geopandas.testing import assert_geodataframe_equal

from tvb_tasks.layers.engine import PART_FRAMES

pytestmark = pytest.mark.integration        # stages on the whole bundled sample (pyproject marker)


def _untiled_run(call, territory=None):
    from tvb_tasks.layers.tiles import TilingConfig
    from tvb_tasks.tiled import files_run

    t = (territory or call.territory).model_copy(update={"tiling": TilingConfig()})
    return files_run(t, call.inputs, str(call.dir / "store"), "fedcba9876543210fedc")


def _files(run, part) -> dict:
    from tvb_tasks import pipeline

    return pipeline._absolutize(part["files"], pipeline._local_dir(run, "layers"))


def assert_same_part(got_run, got, ref_run, ref) -> None:
    """Two SousTramePart dicts: same contract values (but timings) and the same files (parquets: rows, columns,
    geometries; rasters: values, nodata, transform, CRS, overviews, band description)."""
    assert set(got["files"]) == set(ref["files"]) == {*PART_FRAMES, "friction", "cost"}
    for key in ("sous_trame", "trame", "counts", "areas_ha", "lengths_km"):
        assert got[key] == ref[key], key
    a, b = _files(got_run, got), _files(ref_run, ref)
    for name in PART_FRAMES:
        g, r = gpd.read_parquet(a[name]), gpd.read_parquet(b[name])
        assert_geodataframe_equal(g, r, check_less_precise=False)
        assert list(g.geometry.to_wkb()) == list(r.geometry.to_wkb()), name
    for name in ("friction", "cost"):
        with rasterio.open(a[name]) as x, rasterio.open(b[name]) as y:
            assert x.profile == y.profile, name
            assert np.array_equal(x.read(1), y.read(1)), name
            assert x.overviews(1) == y.overviews(1) and x.descriptions == y.descriptions, name
            for level in x.overviews(1):
                shape = (x.height // level, x.width // level)
                assert np.array_equal(x.read(1, out_shape=shape), y.read(1, out_shape=shape)), (name, level)


@pytest.fixture(scope="module")
def tiled_parts(call_tiled_run, tmp_path_factory):
    """Tiled and untiled parts of forest, grassland (trame verte: missing links, crossings inside the territory)
    and wetland (trame bleue), each through its own stages in process."""
    from tvb_tasks import pipeline, tiled

    mp = pytest.MonkeyPatch()
    mp.setenv("TVB_WORK_DIR", str(tmp_path_factory.mktemp("tile_part_work")))
    names = ["forest", "grassland", "wetland"]
    run, urun = call_tiled_run.run, _untiled_run(call_tiled_run)
    got = tiled.run_tiled_parts(run, names)
    ref = [pipeline.stage_compute_sous_trame(urun, st) for st in names]
    yield run, urun, dict(zip(names, got)), dict(zip(names, ref))
    mp.undo()


@pytest.mark.parametrize("sous_trame", ["forest", "grassland", "wetland"])
def test_tiled_part_is_the_untiled_part(tiled_parts, sous_trame):
    run, urun, got, ref = tiled_parts
    assert_same_part(run, got[sous_trame], urun, ref[sous_trame])
    counts = ref[sous_trame]["counts"]
    if sous_trame == "wetland":
        assert counts["corridors"] == 0 and counts["reservoirs"] > 0
    else:                                                     # the values matter: corridors, missing links
        assert counts["corridors"] >= 5 and counts["missing_links"] > 0
    if sous_trame == "grassland":
        assert len(gpd.read_parquet(_files(urun, ref[sous_trame])["missing_crossings"])) > 0


def test_tiled_parts_assemble_to_the_untiled_layers(tiled_parts):
    """``stage_assemble`` of the tiled parts: every ``tvb.gpkg`` layer and key figure of the untiled parts'."""
    from tvb_tasks import pipeline

    run, urun, got, ref = tiled_parts
    names = list(got)
    a = pipeline.stage_assemble(run, [got[n] for n in names])
    b = pipeline.stage_assemble(urun, [ref[n] for n in names])
    for key in ("counts", "lengths_km", "areas_ha"):
        assert a[key] == b[key], key
    assert b["counts"]["corridors"] > 10 and b["counts"]["wet_corridors"] > 0 and b["counts"]["rupture_points"] > 0
    ga, gb = (pipeline._local_dir(r, "layers") / "tvb.gpkg" for r in (run, urun))
    layers = list(pyogrio.list_layers(gb)[:, 0])
    assert list(pyogrio.list_layers(ga)[:, 0]) == layers and len(layers) >= 12
    for layer in layers:
        assert_geodataframe_equal(gpd.read_file(ga, layer=layer), gpd.read_file(gb, layer=layer),
                                  check_less_precise=False)


def test_sous_trame_without_reservoir_writes_what_the_engine_writes(call_tiled_run, tmp_path, monkeypatch):
    """Grassland with thresholds no patch reaches: nothing planned, no tile; the part is the engine's (habitat
    patches, empty layers, the friction raster, an all-nodata cost raster)."""
    from tvb_tasks import pipeline, tiled
    from tvb_tasks.tiled import files_run

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path))
    t = call_tiled_run.territory
    cfg = t.sous_trames["grassland"].model_copy(update={"reservoir_min_area_ha": 1e9, "relay_min_area_ha": 1e9})
    t = t.model_copy(update={"sous_trames": {**t.sous_trames, "grassland": cfg}})
    run = files_run(t, call_tiled_run.inputs, str(tmp_path / "store"), "aaaaaaaaaaaaaaaa")
    urun = _untiled_run(call_tiled_run, t)
    (got,) = tiled.run_tiled_parts(run, ["grassland"])
    ref = pipeline.stage_compute_sous_trame(urun, "grassland")
    assert ref["counts"]["reservoirs"] == 0 and ref["counts"]["habitat_patches"] > 0
    assert not (tmp_path / "store" / "work" / "call" / "aaaaaaaaaaaaaaaa" / "tiles" / "grassland" / "plan.json").exists()
    assert_same_part(run, got, urun, ref)
    with rasterio.open(_files(urun, ref)["cost"]) as c, rasterio.open(_files(urun, ref)["friction"]) as f:
        assert (c.read(1) == c.nodata).all() and (f.read(1) != f.nodata).sum() > 1000
