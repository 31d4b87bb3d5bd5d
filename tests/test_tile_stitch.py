"""The tiled cost-distance's published ``cost.tif`` written tile by tile (tvb_tasks.layers.stitch): the same COG,
cell for cell and overview for overview, as the whole-array stitch cut to the territory and written by
``write_cog`` (what the untiled engine publishes) — on a hand-built scene with known costs, unreached and
impassable cells and a territory smaller than the grid, and on CALL sous-trames through the DAG's stages."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Polygon

from tvb_tasks.layers import engine
from tvb_tasks.layers.common import Grid, rasterize_values, write_cog
from tvb_tasks.layers.stitch import stitch_cost_cog, territory_window
from tvb_tasks.layers.tiles import TilingConfig, plan_to_store, run_rounds, stitch_from_store
from tvb_tasks.store import LocalStore

DESC = "cost distance forest (friction x m), tiled"


def _assert_same_cog(got: Path, ref: Path) -> None:
    """Same georeferencing, profile, tags and values at full resolution and at every overview level."""
    with rasterio.open(got) as a, rasterio.open(ref) as b:
        assert (a.shape, a.dtypes, a.nodata, a.crs, a.transform) == (b.shape, b.dtypes, b.nodata, b.crs, b.transform)
        assert a.block_shapes == b.block_shapes and a.compression == b.compression
        assert a.overviews(1) == b.overviews(1)
        assert a.descriptions == b.descriptions and a.tags() == b.tags() and a.tags(1) == b.tags(1)
        assert a.profile == b.profile
        assert np.array_equal(a.read(1), b.read(1))
        levels = len(b.overviews(1))
    for level in range(levels):
        with rasterio.open(got, overview_level=level) as a, rasterio.open(ref, overview_level=level) as b:
            assert np.array_equal(a.read(1), b.read(1)), level


def _whole_array_cog(store, prefix: str, grid: Grid, boundary, path: Path, desc: str = DESC) -> Path:
    """The stitch as it was: whole arrays, ``engine._territory_raster`` (inside mask of the whole grid), write_cog."""
    acc, _, _ = stitch_from_store(store, prefix)
    if boundary is None:
        return write_cog(acc, grid, path, overview_resampling="average", description=desc)
    inside = rasterize_values([boundary], [1], grid, fill=0, dtype="uint8").astype(bool)
    ctx = SimpleNamespace(grid=grid, boundary=boundary, inside=inside)
    return write_cog(engine._territory_raster(acc, ctx), engine._territory_grid(ctx), path,
                     overview_resampling="average", description=desc)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """600 × 700 cells of 10 m, friction 1, 30 tiles of 128 cells: a closed ring of impassable cells around a
    block holding one whole tile (never reached: no core object) with impassable cells inside, zero-friction
    cells, ``max_cost`` leaving the middle unreached; a concave territory with a hole, smaller than the grid, its
    window not aligned on tiles or blocks."""
    H, W, res = 600, 700, 10.0
    grid = Grid(Affine(res, 0.0, 1000.0, 0.0, -res, 9000.0), (H, W), "EPSG:2154", res)
    cost = np.ones((H, W), np.float32)
    cost[250, 250:421] = cost[420, 250:421] = np.nan
    cost[250:421, 250] = cost[250:421, 420] = np.nan
    cost[300:310, 300:310] = 0.0                      # impassable inside the never-reached tile (256-384)²
    cost[40:45, 100:120] = np.nan
    cost[560, 10:30] = 0.0
    src = np.array([[50, 50], [550, 600], [560, 40], [115, 455]])
    store = LocalStore(tmp_path_factory.mktemp("stitch") / "store")
    prefix = "work/x/tiles/forest"
    first = plan_to_store(store, prefix, cost, src, tiling=TilingConfig(tile_size=128, overlap=2), cell_size=res,
                          max_cost=2500.0, source_labels=np.arange(4))
    run_rounds(store, prefix, first, max_rounds=50)
    x0, y1 = 1000.0, 9000.0
    outer = [(x0 + 23.7, y1 - 31.2), (x0 + 6950.4, y1 - 12.6), (x0 + 6978.1, y1 - 5488.3), (x0 + 3500.2, y1 - 3000.9),
             (x0 + 1200.5, y1 - 5970.0), (x0 + 41.3, y1 - 5902.4)]
    hole = [(x0 + 4000.3, y1 - 900.1), (x0 + 5000.7, y1 - 900.4), (x0 + 4500.2, y1 - 1800.6)]
    boundary = Polygon(outer, [hole])
    return SimpleNamespace(store=store, prefix=prefix, grid=grid, boundary=boundary, cost=cost)


def test_windowed_stitch_equals_the_whole_array_cog_on_a_hand_built_scene(scene, tmp_path):
    s = scene
    assert not s.store.exists(f"{s.prefix}/core/{2 * 6 + 2}.npz")           # the tile inside the ring: never run
    got = tmp_path / "got" / "cost.tif"
    reached = stitch_cost_cog(s.store, s.prefix, s.grid, got, boundary=s.boundary, description=DESC, block=128,
                              cache_mb=16)
    ref = _whole_array_cog(s.store, s.prefix, s.grid, s.boundary, tmp_path / "ref.tif")
    _assert_same_cog(got, ref)
    tg, r0, c0 = territory_window(s.grid, s.boundary)
    assert (r0, c0) == (1, 2) and tg.shape == (596, 696) and tg.transform.c == 1020.0 and tg.transform.f == 8990.0
    with rasterio.open(got) as src:
        data = src.read(1)
        assert len(src.overviews(1)) == 2                                    # 596 x 696 cells: 2 levels
    assert reached == int((data != -1).sum()) > 100_000

    def at(r, c):                                                            # grid cell -> published value
        return float(data[r - r0, c - c0])

    assert at(50, 50) == 0.0 and at(50, 60) == 100.0 and at(60, 50) == 100.0  # 10 m cells of friction 1
    assert at(300, 300) == -1 and at(270, 270) == -1                         # impassable / unreached in the ring
    assert at(330, 180) == -1                                                # beyond max_cost
    assert at(560, 20) == -1 and at(560, 40) == 0.0                          # impassable; a source
    # reached but outside the outline: the notch (with a source), the hole (with a source); just north of it
    assert at(550, 600) == -1 and at(500, 400) == -1 and at(590, 690) == -1
    assert at(110, 450) == -1 and at(80, 450) == pytest.approx(300 + 5 * 10 * 2 ** 0.5)

def test_without_boundary_the_whole_grid_is_written(scene, tmp_path):
    s = scene
    got = tmp_path / "got.tif"
    stitch_cost_cog(s.store, s.prefix, s.grid, got, description=DESC)
    _assert_same_cog(got, _whole_array_cog(s.store, s.prefix, s.grid, None, tmp_path / "ref.tif"))


def test_a_territory_outside_the_plan_is_refused(scene, tmp_path):
    s = scene
    with pytest.raises(ValueError, match="not inside the tiled grid"):
        stitch_cost_cog(s.store, s.prefix, s.grid, tmp_path / "x.tif", boundary=s.boundary.buffer(50))
    small = Grid(s.grid.transform, (600, 600), s.grid.crs, s.grid.res)
    with pytest.raises(ValueError, match="plan"):
        stitch_cost_cog(s.store, s.prefix, small, tmp_path / "x.tif")


# ---------------------------------------------------------------------------
# CALL through the DAG's stages (plan_tiles, run_tile rounds, stitch), territory smaller than the grid
# ---------------------------------------------------------------------------
@pytest.mark.integration  # stages on the whole bundled sample (pyproject marker): the DAG's plan, rounds and stitch
@pytest.mark.parametrize("sous_trame", ["forest", "wetland"])
def test_call_stitch_stage_equals_the_whole_array_cog_and_the_untiled_engine(call_tiled_run, sous_trame,
                                                                            monkeypatch):
    from tvb_tasks import tiled

    monkeypatch.setenv("TVB_WORK_DIR", str(call_tiled_run.dir / "work"))
    run, territory, store = call_tiled_run.run, call_tiled_run.territory, call_tiled_run.store
    items = tiled.stage_plan_tiles(run, sous_trame)
    assert items
    rnd = 0
    while items:                                       # the DAG's rounds, one task after the other
        rnd += 1
        items = tiled.stage_next_round(run, [tiled.stage_run_tile(run, it) for it in items], rnd)
    assert rnd >= 2                                     # boundary values exchanged
    out = tiled.stage_stitch_tiles(run, sous_trame)
    prefix = f"work/call/{run['input_key'][:16]}/tiles/{sous_trame}"
    assert out["cost"] == f"{prefix}/cost.tif" and out["reached"] > 10_000
    got = store.local_path(out["cost"])

    ctx = engine._context(territory, call_tiled_run.inputs)
    r0, c0, h, w = engine._territory_window(ctx)
    assert r0 > 0 and c0 > 0 and h < ctx.grid.shape[0] - r0 and w < ctx.grid.shape[1] - c0
    assert len(store.list(f"{prefix}/input/")) == 12
    ref = _whole_array_cog(store, prefix, ctx.grid, ctx.boundary, call_tiled_run.dir / f"{sous_trame}.tif",
                           f"cost distance {sous_trame} (friction x m)")
    _assert_same_cog(got, ref)
    with rasterio.open(got) as a:
        data = a.read(1)
        assert a.overviews(1) == [2] and int((data != -1).sum()) == out["reached"]
    # the untiled engine's published cost.tif: same cells, same band description
    untiled = engine.compute_sous_trame(territory.model_copy(update={"tiling": TilingConfig()}),
                                        call_tiled_run.inputs, sous_trame, call_tiled_run.dir / "untiled")
    with rasterio.open(untiled["files"]["cost"]) as b:
        assert np.array_equal(data, b.read(1)) and b.transform == rasterio.open(got).transform


def test_stitch_stage_without_plan_or_with_pending_tiles(call_tiled_run, monkeypatch, tmp_path):
    import json

    from tvb_tasks import tiled

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path))
    run = {**call_tiled_run.run, "input_key": "fedcba9876543210"}
    assert tiled.stage_stitch_tiles(run, "mining") == {"sous_trame": "mining", "cost": None, "reached": 0}
    pending = {"after_round": 12, "pending": [{"sous_trame": "mining", "tile": 3}]}
    call_tiled_run.store.put_bytes("work/call/fedcba9876543210/tiles/pending.json", json.dumps(pending).encode())
    with pytest.raises(RuntimeError, match="1 tiles still changing after round 12"):
        tiled.stage_stitch_tiles(run, "mining")


def test_every_tiled_stage_runs_under_its_territory_memory_bound(call_tiled_run, monkeypatch, tmp_path):
    """Each stage enters memory_bound with its task's name, the territory's tiling.memory_limit_gib and the setting
    to change; with a bound below the process's own memory the stitch stage fails naming itself and the setting
    (the peak check on exit: no output is left as the result)."""
    import contextlib

    from tvb_tasks import tiled
    from tvb_tasks.memory import MemoryBoundError

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path))
    cfg = call_tiled_run.run["config"]
    run = {**call_tiled_run.run, "input_key": "fedcba9876543211",
           "config": {**cfg, "tiling": {**cfg["tiling"], "memory_limit_gib": 0.001}}}
    with pytest.raises(MemoryBoundError, match=r"stitch of mining: peak memory \d+ MB, above the memory bound "
                                               r"tiling.memory_limit_gib = 0.001 \(1 MB\)"):
        tiled.stage_stitch_tiles(run, "mining")
    entered = []

    @contextlib.contextmanager
    def record(task, limit_gib, hint=""):
        entered.append((task, limit_gib, hint))
        yield

    monkeypatch.setattr(tiled, "memory_bound", record)
    for stage, args in ((tiled.stage_plan_tiles, ("forest",)), (tiled.stage_run_tile, ({"sous_trame": "forest",
                        "tile": 3}, 2)), (tiled.stage_stitch_tiles, ("mining",)), (tiled.stage_tile_part,
                                                                                   ("mining",))):
        with contextlib.suppress(Exception):               # the stages' own failures (no plan) do not matter here
            stage(run, *args)
    assert [(t, lim) for t, lim, _ in entered] == [("planning forest", 0.001), ("tile 3 of forest", 0.001),
                                                   ("stitch of mining", 0.001), ("part of mining", 0.001)]
    assert "tiling.tile_size" in entered[0][2] and "tiling.tile_size" in entered[1][2]
