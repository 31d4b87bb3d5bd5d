"""Synthetic regions for benchmarks (sample/generate.py ``generate_region``): n translated copies of the CALL
sample, deterministic, same land-use shares, unique identifiers, a loadable territory configuration."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from tvb_tasks.config import load_territory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("sample_generate_region", ROOT / "sample" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_layout_and_copies(gen):
    assert gen.region_layout(1) == (1, 1)
    assert gen.region_layout(4) == (2, 2)
    assert gen.region_layout(16) == (4, 4)
    assert gen.region_layout(132) == (12, 11)
    assert gen.region_copies(4) == 4 and gen.region_copies("16") == 16
    assert 125 <= gen.region_copies("region") <= 140        # 31,800 km² / 240 km²
    with pytest.raises(ValueError, match="whole factor"):
        gen.region_copies(2.5)
    with pytest.raises(ValueError, match="at least one"):
        gen.region_layout(0)


@pytest.mark.integration          # four copies of the whole bundled sample
def test_region_x4_is_four_calls(gen, tmp_path):
    path = gen.generate_region(4, tmp_path / "a")
    t = load_territory(path)
    assert t.id == "call_x4"
    call = load_territory("call")
    lu_call = gpd.read_file(call.resolve_path(call.sources["landuse"].path), layer="landuse")
    lu = gpd.read_file(t.resolve_path(t.sources["landuse"].path), layer="landuse")
    assert len(lu) == 4 * len(lu_call) and lu["id"].is_unique
    assert lu.area.sum() == pytest.approx(4 * lu_call.area.sum(), rel=1e-9)
    shares = lu.groupby("code_cs").apply(lambda g: g.area.sum()) / lu.area.sum()
    shares_call = lu_call.groupby("code_cs").apply(lambda g: g.area.sum()) / lu_call.area.sum()
    np.testing.assert_allclose(shares.sort_index().values, shares_call.sort_index().values, rtol=1e-9)
    communes = gpd.read_file(t.resolve_path(t.sources["communes"].path), layer="communes")
    assert len(communes) == 4 * 36 and communes["insee"].is_unique
    outline = gpd.read_file(t.resolve_path(t.sources["territory"].path), layer="epci")
    assert len(outline) == 4 and outline.union_all().area == pytest.approx(4 * outline.area.iloc[0], rel=1e-6)
    # deterministic: a second run gives the same layers
    again = gen.generate_region(4, tmp_path / "b")
    for name, src in t.sources.items():
        if src.kind == "file":
            a = gpd.read_file(src.path, layer=src.layer)
            b = gpd.read_file(again.parent / Path(src.path).name, layer=src.layer)
            assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), name
            assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all(), name


def test_neighbour_is_the_call_translated_east_with_its_own_id(gen, tmp_path):
    path = gen.generate_neighbour(tmp_path / "v")
    assert path.name == "call_voisin.yaml" and not (ROOT / "config" / "territories" / path.name).exists()
    voisin, call = load_territory(path), load_territory("call")
    assert voisin.id == "call_voisin" and "synthétique" in voisin.name
    assert voisin.sous_trames == call.sous_trames and voisin.friction == call.friction    # same method settings
    a = gpd.read_file(ROOT / "sample" / "call" / "territory.gpkg", layer="epci")
    b = gpd.read_file(Path(voisin.sources["territory"].path), layer=voisin.sources["territory"].layer)
    dx = b.total_bounds[0] - a.total_bounds[0]
    assert dx == pytest.approx(np.ceil((a.total_bounds[2] - a.total_bounds[0]) / 100) * 100)   # one step east
    assert b.total_bounds[1] == pytest.approx(a.total_bounds[1])
    assert b.area.sum() == pytest.approx(a.area.sum())
    lu_a = gpd.read_file(ROOT / "sample" / "call" / "landuse.gpkg", columns=["id"], ignore_geometry=True)
    lu_b = gpd.read_file(Path(voisin.sources["landuse"].path), columns=["id"], ignore_geometry=True)
    assert not set(lu_a["id"]) & set(lu_b["id"])                                       # ids differ from the CALL's
