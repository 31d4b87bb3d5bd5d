"""Planning the tiled cost-distance window by window (tvb_tasks.layers.windows): every per-tile input equals, array
for array (values, dtypes, source rows and labels), the one the whole-grid planner writes (the untiled engine's
friction and sources cut by ``plan_to_store``), on the four CALL sous-trames and on hand-built scenes whose features
cross window borders; and the stitched cost equals the untiled engine's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.layers_scene import b, base_config, line, make_scene, sq
from tvb_tasks.layers import costdistance as cd
from tvb_tasks.layers.tiles import TilingConfig, plan_to_store, run_rounds, stitch_from_store
from tvb_tasks.layers.vectors import vector_context
from tvb_tasks.layers.windows import plan_windows_to_store
from tvb_tasks.store import LocalStore
from tvb_tasks.tiled import cost_problem


def _whole_grid_plan(store, prefix, territory, inputs, sous_trame, tiling):
    """The former planner: whole-grid friction and sources (the untiled engine's), cut by plan_to_store."""
    friction, src, res_idx, grid, knight, lu = cost_problem(territory, inputs, sous_trame, with_lu=True)
    if len(src) == 0:
        return [], None
    verte = territory.sous_trames[sous_trame].trame == "verte"     # the corridors' land-use friction
    first = plan_to_store(store, prefix, friction, src, tiling=tiling, cell_size=grid.res, knight=knight,
                          max_cost=territory.sous_trames[sous_trame].max_cost, source_labels=res_idx,
                          lu_friction=lu if verte else None)
    return first, (friction, src, res_idx, grid, knight)


def _assert_same_plans(store, ref_prefix, got_prefix):
    ref_keys = sorted(k[len(ref_prefix):] for k in store.list(f"{ref_prefix}/"))
    got_keys = sorted(k[len(got_prefix):] for k in store.list(f"{got_prefix}/"))
    assert got_keys == ref_keys
    assert json.loads(store.get_bytes(f"{got_prefix}/plan.json")) == \
        json.loads(store.get_bytes(f"{ref_prefix}/plan.json"))
    n_src = 0
    for key in ref_keys:
        if not key.endswith(".npz"):
            continue
        with np.load(store.root / f"{ref_prefix}{key}") as a, np.load(store.root / f"{got_prefix}{key}") as g:
            assert sorted(a.files) == sorted(g.files), key
            for name in a.files:
                assert a[name].dtype == g[name].dtype, (key, name)
                assert a[name].shape == g[name].shape, (key, name)
                assert np.array_equal(a[name], g[name], equal_nan=True), (key, name)
            n_src += len(a["src"])
    return n_src


def _plan_both(tmp_path, territory, inputs, sous_trame, tiling):
    store = LocalStore(tmp_path / "store")
    ref_first, problem = _whole_grid_plan(store, "ref", territory, inputs, sous_trame, tiling)
    got_first = plan_windows_to_store(store, "win", territory, vector_context(territory, inputs), sous_trame,
                                      tiling=tiling)
    assert got_first == ref_first
    return store, problem


# ---------------------------------------------------------------------------
# CALL sample
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def call(call_sample):
    return call_sample


@pytest.mark.slow
@pytest.mark.integration  # stages on the whole bundled sample (pyproject marker): 3-4 s each
@pytest.mark.parametrize("sous_trame, resolution, tile_size, overlap", [
    ("forest", 100, 40, 4), ("grassland", 100, 40, 4), ("mining", 100, 40, 4), ("wetland", 100, 40, 4),
    ("forest", 50, 96, 8),
])
def test_call_windowed_plan_equals_whole_grid_plan(call, tmp_path, sous_trame, resolution, tile_size, overlap):
    territory, inputs = call
    territory = territory.model_copy(update={"resolution_m": float(resolution)})
    tiling = TilingConfig(enabled=True, tile_size=tile_size, overlap=overlap)
    store, problem = _plan_both(tmp_path, territory, inputs, sous_trame, tiling)
    friction, src, res_idx, grid, knight = problem
    assert len(store.list("win/input/")) >= 20              # many windows: features cross their borders
    assert _assert_same_plans(store, "ref", "win") >= len(src) > 0
    # the stitched cost of the windowed plan is the untiled engine's, cell for cell
    rounds, _ = run_rounds(store, "win", sorted({int(k.split("/")[-1][:-4]) for k in store.list("win/input/")}),
                           max_rounds=200)
    acc, back, alloc = stitch_from_store(store, "win")
    ref = cd.accumulated_cost(friction, src, cell_size=grid.res, knight=knight,
                              max_cost=territory.sous_trames[sous_trame].max_cost, return_backlinks=True,
                              return_allocation=True, source_labels=res_idx)
    assert np.array_equal(acc, ref[0], equal_nan=True)
    assert np.array_equal(back, ref[1]) and np.array_equal(alloc, ref[2])
    assert rounds >= 2


# ---------------------------------------------------------------------------
# Hand-built scenes: features across window borders
# ---------------------------------------------------------------------------
def _scene_config(resolution: float, buffer_m: float) -> dict:
    cfg = base_config()
    cfg["resolution_m"] = resolution
    cfg["buffer_m"] = buffer_m
    cfg["landuse"]["classes"]["cavalier"] = {"label": "Cavaliers", "natural": True}
    cfg["friction"]["landuse"]["cavalier"] = {"forest": 5, "grassland": 5, "wetland": 100}
    fr = cfg["friction"]
    fr["infrastructure"]["roads"].update(width_m={1: 30, 2: 15, 3: 10, 4: 8}, priority=20)   # 5: legacy burn
    fr["infrastructure"]["railways"].update(by_status={"in_use": 1000, "disused": None}, width_m={"in_use": 15})
    fr["overlays"] = {"cavaliers": {"role": "railways", "where": {"status": ["disused"]}, "class": "cavalier",
                                    "rule": "replace", "priority": 10, "width_m": 15},
                      "hedges": {"role": "railways", "where": {"status": ["hedge"]}, "class": "forest",
                                 "rule": "max", "priority": 5, "width_m": 12}}
    fr["infrastructure"]["railways"]["by_status"]["hedge"] = None
    return cfg


def _scene(tmp_path, resolution: float = 25, buffer_m: float = 0):
    """A 2 km × 1.5 km territory (with ``buffer_m``, land use and a motorway beyond it, the motorway beyond the
    grid too): forests and grassland across window borders (one thin strip too narrow to hold
    a cell centre: a reservoir by protection only), roads and railways crossing many windows obliquely, a legacy
    one-cell road, a cavalier and an overlapping hedge footprint."""
    protected = [(b(1005, 1450, 1600, 1456), "APB", "Bande"), (sq(300, 300, 20), "ZNIEFF1", "Bois")]
    return make_scene(
        tmp_path, outline=b(0, 0, 2000, 1500), config=_scene_config(resolution, buffer_m),
        landuse=[(b(180, 160, 1130, 640), "FOR"), (sq(1400, 100, 18), "FOR"), (b(1005, 1450, 1600, 1456), "GRA"),
                 (b(600, 900, 1450, 1400), "GRA"), (b(1500, 600, 1990, 1100), "WET"), (sq(50, 1000, 3), "FOR"),
                 (b(-250, 600, 150, 900), "FOR")],          # across the outline: land use in the buffer
        protected=protected,
        roads=[(line((-200, -150), (2020, 1463)), 1), (line((812.5, -10), (812.5, 1510)), 2),
               (line((0, 1012.37), (2000, 988.91)), 5), (line((1760, 0), (1240, 1500)), 4)],
        railways=[(line((0, 740), (1100, 760), (2000, 300)), "in_use"),
                  (line((90, 1490), (1910, 10)), "disused"), (line((100, 90), (1900, 1410)), "hedge"),
                  (line((100, 70), (1900, 1400)), "hedge")],
    )


@pytest.mark.parametrize("resolution, buffer_m, tile_size, overlap, sous_trame", [
    (25, 0, 12, 2, "forest"), (25, 0, 12, 2, "grassland"), (25, 300, 16, 3, "forest"), (10, 0, 40, 2, "wetland"),
])
def test_scene_windowed_plan_equals_whole_grid_plan(tmp_path, resolution, buffer_m, tile_size, overlap,
                                                   sous_trame):
    territory, inputs = _scene(tmp_path, resolution, buffer_m)
    tiling = TilingConfig(enabled=True, tile_size=tile_size, overlap=overlap)
    store, problem = _plan_both(tmp_path, territory, inputs, sous_trame, tiling)
    friction, src, res_idx, _, _ = problem
    assert len(store.list("win/input/")) >= 20
    assert _assert_same_plans(store, "ref", "win") >= len(src) > 0
    # the scene does exercise the burns: barriers (shares of a cell: many values), favourable overlays, the
    # legacy one-cell road
    assert np.nanmax(friction) >= 1000 and len(np.unique(friction[np.isfinite(friction)])) > 20
    if sous_trame != "wetland":
        assert np.any(friction == 5) and np.any(friction == 30)
    if sous_trame == "grassland":
        # the 6 m strip holds no cell centre at 25 m: its reservoir's sources are the cells it touches
        from tvb_tasks.layers.vectors import vector_context as vc
        from tvb_tasks.layers.windows import sous_trame_reservoirs

        res = sous_trame_reservoirs(territory, vc(territory, inputs), sous_trame)
        thin = [i for i, g in enumerate(res.geometry) if g.bounds[3] - g.bounds[1] < 10]
        assert thin and set(thin) <= set(res_idx.tolist())


def test_scene_windowed_potential_plan_equals_the_engines_potential_friction(tmp_path):
    """The missing links' potential problem planned with the real one (``potential_prefix``): its inputs are the
    engine's potential friction (motorway and in-use railway left out) and the real problem's sources, cut by
    plan_to_store; the real problem's inputs are unchanged."""
    from tvb_tasks.layers import engine

    territory, inputs = _scene(tmp_path)
    assert territory.corridors.missing_links.enabled
    tiling = TilingConfig(enabled=True, tile_size=40, overlap=2)        # 2 × 2 windows: the motorway crosses them
    store = LocalStore(tmp_path / "store")
    ref_first, (friction, src, res_idx, grid, knight) = _whole_grid_plan(store, "ref", territory, inputs, "forest",
                                                                         tiling)
    got_first = plan_windows_to_store(store, "win", territory, vector_context(territory, inputs), "forest",
                                      tiling=tiling, potential_prefix="pot")
    assert got_first == ref_first
    _assert_same_plans(store, "ref", "win")
    ctx = engine._context(territory, inputs)
    potential = engine.potential_friction(territory, "forest", ctx, ctx.extent_mask & np.isfinite(friction))
    barrier = np.isfinite(potential) & (friction > potential)
    assert barrier.sum() > 50 and np.nanmax(potential) < np.nanmax(friction)      # the barriers are left out
    plan_to_store(store, "refpot", potential, src, tiling=tiling, cell_size=grid.res, knight=knight,
                  max_cost=territory.sous_trames["forest"].max_cost, source_labels=res_idx)
    assert _assert_same_plans(store, "refpot", "pot") >= len(src) > 0


def test_grid_window_has_the_full_grids_cells():
    from tvb_tasks.layers.common import make_grid

    grid = make_grid(b(0, 0, 1000, 500), 25, "EPSG:2154")
    w = grid.window(3, 10, 5, 20)
    assert w.shape == (7, 15) and w.offset == (3, 5) and w.full_shape == grid.shape
    assert w.cell_centres(np.array([0]), np.array([0])) == grid.cell_centres(np.array([3]), np.array([5]))
    ww = w.window(1, 2, 1, 3)
    assert ww.offset == (4, 6) and ww.full_shape == grid.shape
    assert ww.transform.c == grid.transform.c + 6 * 25 and ww.transform.f == grid.transform.f - 4 * 25


def test_no_reservoir_writes_nothing_and_tiles_above_the_memory_bound_are_refused(tmp_path):
    territory, inputs = make_scene(tmp_path, outline=b(0, 0, 500, 500), landuse=[(sq(10, 10, 1), "FOR")])
    store = LocalStore(tmp_path / "store")
    v = vector_context(territory, inputs)
    store.put_bytes("win/plan.json", b"{}")                    # a former plan under the prefix goes
    assert plan_windows_to_store(store, "win", territory, v, "forest", tiling=TilingConfig(tile_size=8)) == []
    assert store.list("win/") == []
    with pytest.raises(ValueError, match="memory_limit_gib"):
        plan_windows_to_store(store, "win", territory, v, "forest",
                              tiling=TilingConfig(tile_size=20000, memory_limit_gib=4))
    with pytest.raises(ValueError, match="overlap must be >= 2"):
        knight = territory.model_copy(update={"corridors": territory.corridors.model_copy(update={"neighbours": 16})})
        plan_windows_to_store(store, "win", knight, v, "forest", tiling=TilingConfig(tile_size=8, overlap=1))


def _dense(flat_cover, shape):
    out = np.zeros(shape[0] * shape[1], np.float32)
    out[flat_cover[0]] = flat_cover[1]
    return out.reshape(shape)


@pytest.mark.parametrize("seed", range(3))
def test_barrier_bands_and_footprints_on_windows_equal_the_full_grid(seed):
    """Wide oblique barriers (band shares, candidates clipped to the full grid) and overlapping footprints (summed
    shares, from the footprints near the window only) computed on windows of a grid: the full grid's values, bit for bit, including cells next to
    segments that lie just beyond a window's edge."""
    import shapely

    from tvb_tasks.layers.common import make_grid
    from tvb_tasks.layers.friction import footprint_coverage, line_coverage

    rng = np.random.default_rng(seed)
    grid = make_grid(b(0, 0, 1500, 1250), 25, "EPSG:2154")
    ends = rng.uniform(-200, 1700, (40, 2, 2))
    lines = [line(*map(tuple, e)) for e in ends]
    widths = rng.uniform(20, 90, len(lines))
    blobs = [shapely.buffer(shapely.Point(x, y), r) for x, y, r in
             zip(*(rng.uniform(0, 1500, 200), rng.uniform(0, 1250, 200), rng.uniform(10, 40, 200)))]
    blobs = [shapely.affinity.translate(g, 700_000, 7_000_000) for g in blobs]
    full_lines = _dense(line_coverage(lines, widths, grid), grid.shape)
    full_blobs = _dense(footprint_coverage(blobs, grid), grid.shape)
    H, W = grid.shape
    n = 0
    for r0 in range(0, H, 7):
        for c0 in range(0, W, 5):
            r1, c1 = min(r0 + 9, H), min(c0 + 11, W)
            win = grid.window(r0, r1, c0, c1)
            assert np.array_equal(_dense(line_coverage(lines, widths, win), win.shape), full_lines[r0:r1, c0:c1])
            x0, y1 = win.transform.c, win.transform.f
            near = [g for g in blobs if g.intersects(shapely.box(x0 - 30, y1 - 25 * (r1 - r0) - 30,
                                                                 x0 + 25 * (c1 - c0) + 30, y1 + 30))]
            got = _dense(footprint_coverage(near, win), win.shape)     # the footprints near it, as the planner
            assert np.array_equal(got, full_blobs[r0:r1, c0:c1])
            n += 1
    assert n > 50 and (full_lines > 0).mean() > 0.2 and (full_blobs > 0).mean() > 0.2
