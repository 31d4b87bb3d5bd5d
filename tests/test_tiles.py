"""Tiled cost-distance (tvb_tasks.layers.tiles): stitched rasters identical to the untiled kernel's, on hand-built
scenes whose answer is known, random scenes (barriers, nodata, max_cost, knight's moves, several tile sizes) and the
CALL sample's friction rasters; plus the kernel's start costs and tie rule the stitching relies on."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tvb_tasks.layers import costdistance as cd
from tvb_tasks.layers.tiles import TilingConfig, tile_grid, tiled_accumulated_cost


def _untiled(cost, sources, **kw):
    return cd.accumulated_cost(cost, sources, return_backlinks=True, return_allocation=True, **kw)


def _assert_identical(res, ref):
    acc, back, alloc = ref
    assert np.array_equal(res.acc, acc, equal_nan=True)      # max abs difference 0, NaN/inf at the same cells
    assert np.array_equal(res.back, back)
    assert np.array_equal(res.alloc, alloc)


# ---------------------------------------------------------------------------
# Kernel: start costs and ties
# ---------------------------------------------------------------------------
def test_source_costs_are_start_costs():
    rng = np.random.default_rng(3)
    cost = rng.uniform(1, 20, (15, 17))
    src = np.array([[0, 0], [14, 16], [7, 3]])
    start = np.array([0.0, 35.5, 1e4])   # the third starts far above everything (bucket ring jump)
    acc, alloc = cd.accumulated_cost(cost, src, source_costs=start, return_allocation=True)
    each = [s0 + cd.accumulated_cost(cost, [s]) for s, s0 in zip(src, start)]
    np.testing.assert_allclose(acc, np.fmin.reduce(each), rtol=1e-12)
    assert np.all(alloc != 2)                      # never the cheapest
    assert acc[7, 3] < 1e4 and alloc[14, 16] == 1 and acc[14, 16] == 35.5
    # above max_cost: ignored; same answer from the binary-heap fallback (extreme cost range)
    acc_mc = cd.accumulated_cost(cost, src, source_costs=start, max_cost=5000.0)
    assert np.array_equal(acc_mc, np.where(acc <= 5000.0, acc, np.inf))
    wide = cost.copy()
    wide[0, 16] = 1e9
    a1 = cd.accumulated_cost(wide, src, source_costs=start)
    a2 = np.fmin.reduce([s0 + cd.accumulated_cost(wide, [s]) for s, s0 in zip(src, start)])
    np.testing.assert_allclose(a1, a2, rtol=1e-12)
    with pytest.raises(ValueError, match="source_costs"):
        cd.accumulated_cost(cost, src, source_costs=[0.0, -1.0, 2.0])


def test_ties_go_to_the_lowest_move_index_whatever_the_source_order():
    cost = np.ones((1, 3))
    for order in ([0, 1], [1, 0]):
        src = np.array([[0, 0], [0, 2]])[order]
        lab = np.array([5, 9])[order]
        acc, back, alloc = cd.accumulated_cost(cost, src, source_labels=lab, return_backlinks=True,
                                               return_allocation=True)
        # (0, 1) is 1 from both: reached from the east (move W, index 0) rather than the west (move E, index 1)
        assert acc[0, 1] == 1.0 and back[0, 1] == 0 and alloc[0, 1] == 9
    # a uniform plane: ties everywhere; back-links and allocation independent of the sources' order
    rng = np.random.default_rng(1)
    cost = np.ones((30, 30), np.float32)
    src = rng.integers(0, 30, (12, 2))
    src = src[np.unique(src[:, 0] * 30 + src[:, 1], return_index=True)[1]]
    lab = np.arange(len(src))
    ref = cd.accumulated_cost(cost, src, source_labels=lab, knight=True, return_backlinks=True,
                              return_allocation=True)
    perm = rng.permutation(len(src))
    got = cd.accumulated_cost(cost, src[perm], source_labels=lab[perm], knight=True, return_backlinks=True,
                              return_allocation=True)
    for a, b in zip(got, ref):
        assert np.array_equal(a, b)
    # allocation alone follows the same rule as with back-links
    alloc_only = cd.accumulated_cost(cost, src, source_labels=lab, knight=True, return_allocation=True)[1]
    assert np.array_equal(alloc_only, ref[2])


# ---------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------
def test_tile_grid_covers_the_raster_once():
    tiles = tile_grid((23, 31), 10, 3)
    assert len(tiles) == 3 * 4
    seen = np.zeros((23, 31), int)
    for t in tiles:
        r0, r1, c0, c1 = t.core
        seen[r0:r1, c0:c1] += 1
        w0, w1, v0, v1 = t.window
        assert w0 == max(r0 - 3, 0) and w1 == min(r1 + 3, 23) and v0 == max(c0 - 3, 0) and v1 == min(c1 + 3, 31)
    assert np.all(seen == 1)
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((23, 31), 4, 5)


def _serpentine(n_turns: int = 5, width: int = 30):
    """A cheap one-cell corridor zig-zagging down through impassable ground: the path crosses tile borders many
    times, each way (cost 1, 8 neighbours)."""
    H = 2 * n_turns + 1
    cost = np.full((H, width), np.nan)
    for k in range(n_turns + 1):
        cost[2 * k, 1:width - 1] = 1.0
        if k < n_turns:
            col = width - 2 if k % 2 == 0 else 1
            cost[2 * k + 1, col] = 1.0
    return cost


def test_serpentine_needs_many_rounds_and_stitches_exactly():
    cost = _serpentine()
    ref = _untiled(cost, [[0, 1]])
    # the only route runs along the 6 rows (27 moves each) and turns 5 times (diagonals cut the corners)
    path = cd.trace_path(ref[1], (10, 1))
    assert len(path) > 6 * 27 and {r for r, _ in path} == set(range(11))
    assert 6 * 27 < ref[0][10, 1] < 6 * 27 + 5 * 2
    res = tiled_accumulated_cost(cost, [[0, 1]], tile_size=4, overlap=1)
    _assert_identical(res, ref)
    assert res.rounds > 5 and res.tile_runs > res.tiles
    with pytest.raises(RuntimeError, match="did not converge in 2 rounds") as err:
        tiled_accumulated_cost(cost, [[0, 1]], tile_size=4, overlap=1, max_rounds=2)
    from tvb_tasks.errors import DeterministicError

    assert isinstance(err.value, DeterministicError)      # the same rounds again give the same: no retry


def test_overlap_must_hold_a_knights_move():
    cost = np.ones((10, 10))
    with pytest.raises(ValueError, match="overlap must be >= 2"):
        tiled_accumulated_cost(cost, [[0, 0]], tile_size=4, overlap=1, knight=True)
    with pytest.raises(ValueError, match="impassable"):
        tiled_accumulated_cost(np.where(np.eye(10) > 0, np.nan, cost), [[3, 3]], tile_size=4, overlap=1)


def _random_scene(seed: int):
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(12, 60, 2))
    if seed % 2:  # few distinct values: exact ties everywhere
        cost = rng.choice([1.0, 2.0, 5.0, 30.0, 1000.0], size=(H, W)).astype(np.float32)
    else:
        cost = rng.uniform(1, 100, (H, W))
    cost[rng.random((H, W)) < 0.12] = np.nan          # barriers
    cost[rng.integers(0, H), :] = 0.0                  # a wall with gaps (cost <= 0 is impassable)
    cost[rng.integers(0, H), rng.integers(0, W, 3)] = 3.0
    mask = rng.random((H, W)) < 0.05                   # nodata
    ok = np.argwhere((cost > 0) & ~mask)
    src = ok[rng.choice(len(ok), 6)]
    src = np.vstack([src, src[:1]])                    # a duplicate source
    labels = rng.integers(0, 4, len(src))              # patches: several cells share a label
    return cost, mask, src, labels


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("tile_size", [5, 11, 24])
def test_random_scenes_tiled_equals_untiled(seed, tile_size):
    cost, mask, src, labels = _random_scene(seed)
    knight = seed % 3 == 0
    max_cost = None if seed % 4 < 2 else float(np.nanmedian(np.where(cost > 0, cost, np.nan)) * 40)
    kw = dict(cell_size=(5.0, 4.0) if seed == 5 else 25.0, knight=knight, max_cost=max_cost, nodata_mask=mask,
              source_labels=labels)
    ref = _untiled(cost, src, **kw)
    for overlap in sorted({2, min(5, tile_size)}):
        _assert_identical(tiled_accumulated_cost(cost, src, tile_size=tile_size, overlap=overlap, **kw), ref)


@pytest.mark.parametrize("seed", [0, 3, 6])
def test_tiles_through_a_store_on_two_workers_equal_untiled(seed, tmp_path):
    """Per-tile objects in a store, each round's tiles run by two worker threads (the kernel releases the GIL),
    as mapped tasks would: the stitched rasters are the untiled ones."""
    from concurrent.futures import ThreadPoolExecutor

    from tvb_tasks.layers.tiles import plan_to_store, run_rounds, stitch_from_store
    from tvb_tasks.store import LocalStore

    cost, mask, src, labels = _random_scene(seed)
    knight = seed % 3 == 0
    kw = dict(cell_size=25.0, knight=knight, max_cost=None if seed < 6 else 5e4, nodata_mask=mask,
              source_labels=labels)
    ref = _untiled(cost, src, **kw)
    store = LocalStore(tmp_path / "store")
    tiling = TilingConfig(tile_size=8, overlap=2)
    first = plan_to_store(store, "run1/tiles/forest", cost, src, tiling=tiling, **kw)
    assert first and store.exists("run1/tiles/forest/plan.json")
    with ThreadPoolExecutor(2) as pool:
        rounds, runs = run_rounds(store, "run1/tiles/forest", first, max_rounds=200, map_fn=pool.map)
    acc, back, alloc = stitch_from_store(store, "run1/tiles/forest")
    assert np.array_equal(acc, ref[0], equal_nan=True)
    assert np.array_equal(back, ref[1]) and np.array_equal(alloc, ref[2])
    assert rounds >= 2 and runs >= len(first)
    # a second plan under the same prefix starts afresh
    plan_to_store(store, "run1/tiles/forest", cost, src, tiling=tiling, **kw)
    assert not any("/core/" in k for k in store.list("run1/tiles/forest/"))


@pytest.mark.parametrize("seed", [0, 6])
def test_a_retried_tile_task_announces_its_neighbours_again(seed, tmp_path):
    """A tile task whose first attempt wrote its core and then failed or lost its worker is retried in the same
    round: the retry finds its core unchanged and must still announce the neighbours (else they stay stale and
    the stitched raster is wrong: cells the untiled run reaches left unreached). Every task here is run twice and
    only the second answer counts, as Airflow would after a retry; the stitched rasters are the untiled ones."""
    from tvb_tasks.layers.tiles import plan_to_store, run_tile_from_store, stitch_from_store
    from tvb_tasks.store import LocalStore

    cost, mask, src, labels = _random_scene(seed)
    kw = dict(cell_size=25.0, knight=seed % 3 == 0, max_cost=None, nodata_mask=mask, source_labels=labels)
    ref = _untiled(cost, src, **kw)
    store = LocalStore(tmp_path / "store")
    prefix = "run1/tiles/forest"
    dirty = plan_to_store(store, prefix, cost, src, tiling=TilingConfig(tile_size=8, overlap=2), **kw)
    first = run_tile_from_store(store, prefix, dirty[0], 1)
    assert first and run_tile_from_store(store, prefix, dirty[0], 1) == first     # the retry: same neighbours
    assert run_tile_from_store(store, prefix, dirty[0], 2) == []                   # a later round: nothing new
    rounds = 0
    while dirty:
        rounds += 1
        nxt: set[int] = set()
        for i in dirty:
            run_tile_from_store(store, prefix, i, rounds + 1)          # the attempt whose answer is lost
            nxt.update(run_tile_from_store(store, prefix, i, rounds + 1))
        dirty = sorted(nxt)
        assert rounds < 200
    acc, back, alloc = stitch_from_store(store, prefix)
    assert np.array_equal(acc, ref[0], equal_nan=True)
    assert np.array_equal(back, ref[1]) and np.array_equal(alloc, ref[2])


def test_tile_task_memory_is_checked_against_the_bound():
    from tvb_tasks.layers.tiles import check_memory, tile_task_bytes

    assert tile_task_bytes(2048, 16) < 0.2 * 2**30             # default tiles: ~0.13 GiB of arrays
    assert check_memory(TilingConfig()) == tile_task_bytes(2048, 16)
    with pytest.raises(ValueError, match="memory_limit_gib"):
        check_memory(TilingConfig(tile_size=20000, memory_limit_gib=4))


def test_tiling_that_cannot_run_is_refused_before_any_work_naming_the_setting():
    from tvb_tasks.layers.tiles import largest_tile_size, tile_task_bytes, tiling_problems

    assert tiling_problems(TilingConfig(tile_size=100000)) == []                  # disabled: nothing to check
    on = TilingConfig(enabled=True)
    assert tiling_problems(on) == [] and tiling_problems(on, 16) == []
    # too small a bound for any tile: no "use smaller tiles" advice that no tile size could follow
    (key, msg), = tiling_problems(on.model_copy(update={"memory_limit_gib": 0.3}))
    assert key == "tiling.memory_limit_gib" and "at least 1 GiB" in msg and "smaller" not in msg
    # tiles too large: the largest that fits is named, and it does fit (and 8 cells more does not)
    big = on.model_copy(update={"tile_size": 20000, "memory_limit_gib": 1.0})
    (key, msg), = tiling_problems(big)
    fits = largest_tile_size(16, 1.0)
    assert key == "tiling.tile_size" and f"at most {fits} cells" in msg
    assert tile_task_bytes(fits, 16) <= 0.5 * 2**30 < tile_task_bytes(fits + 8, 16)
    assert tiling_problems(big.model_copy(update={"tile_size": fits})) == []
    # knight's moves reach 2 cells: an overlap of 1 is refused with 16 neighbours only
    narrow = on.model_copy(update={"overlap": 1})
    assert tiling_problems(narrow, 8) == []
    (key, msg), = tiling_problems(narrow, 16)
    assert key == "tiling.overlap" and "corridors.neighbours: 16" in msg


def test_check_config_and_the_fetch_refuse_tiles_that_cannot_run(tmp_path, capsys):
    from helpers.yamlio import dump_yaml, load_yaml
    from tvb_tasks import cli
    from tvb_tasks.config import ConfigError, load_territory
    from tvb_tasks.pipeline import check_runnable

    root = Path(__file__).resolve().parents[1]
    raw = load_yaml((root / "config" / "territories" / "call.yaml").read_text(encoding="utf-8"))
    raw["tiling"] = {**raw["tiling"], "enabled": True, "tile_size": 100000}
    path = tmp_path / "call.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert cli.main(["check-config", str(path)]) != 0
    assert re.search(r"tiling cannot run: tiling.tile_size: 100000 cells need about [\d.]+ GiB per tile task.* use "
                     r"tiles of at most \d+ cells", capsys.readouterr().err)
    with pytest.raises(ConfigError, match=r"cannot run \(nothing fetched\).*tiling.tile_size"):
        check_runnable(load_territory(str(path)))


def test_tiling_config_defaults_and_bounds():
    assert TilingConfig().memory_limit_gib == 4.0 and not TilingConfig().enabled
    with pytest.raises(ValueError):
        TilingConfig(tile_size=4)
    with pytest.raises(ValueError):
        TilingConfig(overlap=0)


# ---------------------------------------------------------------------------
# CALL sample
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def call(call_sample):
    return call_sample


@pytest.mark.integration          # every sous-trame of the bundled sample, twice
@pytest.mark.slow
def test_call_sous_trames_tiled_equal_untiled(call, tmp_path):
    """Every sous-trame's friction and reservoir sources from the CALL sample: stitched = untiled; and the
    forest layers (cost raster, corridors) of the engine with tiling enabled are those of the untiled engine."""
    import geopandas as gpd
    import rasterio

    from tvb_tasks.layers import engine
    from tvb_tasks.layers.corridors import reservoir_sources
    from tvb_tasks.layers.friction import friction_raster
    from tvb_tasks.layers.landuse import habitat_patches
    from tvb_tasks.layers.reservoirs import select_reservoirs

    territory, inputs = call
    ctx = engine._context(territory, inputs)
    knight = territory.corridors.neighbours == 16
    for name, st in territory.sous_trames.items():
        patches = habitat_patches(territory, name, ctx.landuse, ctx.extra)
        reservoirs, _ = select_reservoirs(territory, name, patches, ctx.protected, ctx.always)
        friction, _ = friction_raster(territory, name, ctx.classes_raster, ctx.classes, ctx.infra, ctx.grid)
        src, res_idx = reservoir_sources(reservoirs, ctx.grid, ctx.inside & np.isfinite(friction))
        kw = dict(cell_size=ctx.grid.res, knight=knight, max_cost=st.max_cost, source_labels=res_idx)
        ref = _untiled(friction, src, **kw)
        got = tiled_accumulated_cost(friction, src, tile_size=160, overlap=8, **kw)
        _assert_identical(got, ref)
        assert got.tiles > 10 and np.isfinite(got.acc).sum() > 10_000, name

    tiled = territory.model_copy(update={"tiling": TilingConfig(enabled=True, tile_size=200, overlap=4)})
    a = engine.compute_sous_trame(territory, inputs, "forest", tmp_path / "untiled")
    b = engine.compute_sous_trame(tiled, inputs, "forest", tmp_path / "tiled")
    with rasterio.open(a["files"]["cost"]) as ra, rasterio.open(b["files"]["cost"]) as rb:
        assert np.array_equal(ra.read(1), rb.read(1))
    ca, cb = gpd.read_parquet(a["files"]["corridors"]), gpd.read_parquet(b["files"]["corridors"])
    assert len(ca) > 0 and len(ca) == len(cb)
    assert ca.drop(columns="geometry").equals(cb.drop(columns="geometry"))
    assert ca.geometry.geom_equals_exact(cb.geometry, tolerance=0).all()


def test_a_round_over_airflows_map_limit_is_refused_naming_the_setting(tmp_path):
    """More items than Airflow's [core] max_map_length: a clear error naming the setting (Airflow's own refusal
    names neither), and nothing recorded as pending."""
    from tvb_tasks.errors import InvalidInputError
    from tvb_tasks.tiled import stage_next_round

    run = {"territory": "t", "input_key": "0" * 64, "store_uri": str(tmp_path / "store")}
    results = [{"next": [{"sous_trame": "forest", "tile": i} for i in range(5)], "peak_mb": 1.0}]
    assert len(stage_next_round(run, results, 1, max_items=5)) == 5
    with pytest.raises(InvalidInputError, match=r"round 3 would map 5 tile tasks.*max_map_length \(4\).*"
                                                r"AIRFLOW__CORE__MAX_MAP_LENGTH"):
        stage_next_round(run, results, 2, max_items=4)


@pytest.mark.parametrize("enabled", [True, False])
def test_cli_run_of_a_tiled_territory_goes_through_the_tiled_stages(enabled, monkeypatch):
    """``tvb run`` (``pipeline._run_stages``): a territory with ``tiling.enabled`` gets its parts from the tiled
    stages (plan → rounds → stitch → part, each task in its own process: ``tiled.run_tiled_parts``), in the
    territory's order, and the
    same tail as an untiled one; an untiled territory keeps ``stage_compute_sous_trame``."""
    from tvb_tasks import pipeline, tiled
    from tvb_tasks.config import load_territory

    territory = load_territory("call").model_copy(update={"tiling": TilingConfig(enabled=enabled)})
    calls = []
    monkeypatch.setattr(pipeline, "_territory", lambda run: territory)
    monkeypatch.setattr(pipeline, "stage_validate_sources", lambda run: {"success": True})
    monkeypatch.setattr(pipeline, "stage_compute_sous_trame", lambda run, st: calls.append(("untiled", st)) or st)
    monkeypatch.setattr(tiled, "run_tiled_parts", lambda run, sts: calls.append(("tiled", tuple(sts))) or sts)
    monkeypatch.setattr(pipeline, "stage_assemble", lambda run, parts: calls.append(("assemble", tuple(parts))))
    monkeypatch.setattr(pipeline, "stage_indicators", lambda run: {})
    monkeypatch.setattr(pipeline, "stage_validate_outputs", lambda run: {"success": True})
    monkeypatch.setattr(pipeline, "publish_outcome", lambda *a, **k: {"status": "dry_run"})
    assert pipeline._run_stages({}, dry_run=True) == {"status": "dry_run"}
    names = tuple(territory.sous_trames)
    first = [("tiled", names)] if enabled else [("untiled", st) for st in names]
    assert calls == [*first, ("assemble", names)]


def test_run_tiled_parts_runs_the_rounds_until_none_is_left_and_stops_at_max_rounds(monkeypatch):
    """The rounds of ``tiled.run_tiled_parts`` (in this process, ``processes=False``, for the stages monkeypatched
    here; tests/test_tiled_processes.py and tests/test_tile_part.py run them through processes): plan every
    sous-trame, run each round's items until no item is left, then stitch and part each sous-trame; ``TilingError``
    after ``tiling.max_rounds``."""
    from tvb_tasks import tiled
    from tvb_tasks.config import load_territory
    from tvb_tasks.layers.tiles import TilingError

    log = []
    territory = load_territory("call").model_copy(update={"tiling": TilingConfig(enabled=True, max_rounds=3)})
    monkeypatch.setattr(tiled, "_territory", lambda run: territory)
    monkeypatch.setattr(tiled, "stage_plan_tiles", lambda run, st: [{"sous_trame": st, "tile": 0}])
    monkeypatch.setattr(tiled, "stage_next_round",
                        lambda run, results, r, *a: [i for res in results for i in res["next"]])
    monkeypatch.setattr(tiled, "stage_stitch_tiles", lambda run, st: log.append(("stitch", st)))
    monkeypatch.setattr(tiled, "stage_tile_part", lambda run, st: log.append(("part", st)) or st)

    def run_tile(run, item, r):               # forest converges after round 2, wetland after round 1
        log.append((r, item["sous_trame"]))
        again = r < 2 and item["sous_trame"] == "forest"
        return {"next": [item] if again else [], "peak_mb": 1.0}

    monkeypatch.setattr(tiled, "stage_run_tile", run_tile)
    assert tiled.run_tiled_parts({}, ["forest", "wetland"], processes=False) == ["forest", "wetland"]
    assert log == [(1, "forest"), (1, "wetland"), (2, "forest"), ("stitch", "forest"), ("stitch", "wetland"),
                   ("part", "forest"), ("part", "wetland")]
    monkeypatch.setattr(tiled, "stage_run_tile", lambda run, item, r: {"next": [item], "peak_mb": 1.0})
    with pytest.raises(TilingError, match=r"still changing after tiling.max_rounds \(3\) rounds: raise tiling.max_rounds"):
        tiled.run_tiled_parts({}, ["forest"], processes=False)


def test_an_error_in_a_tiled_task_process_reaches_the_caller_as_raised(tmp_path):
    """An error raised in a spawned task process (``tiled._pool``, ``_stage_task``: what ``run_tiled_parts`` runs)
    is raised in the caller with its class and message: a stitch whose tiles still change (``TilingError``, raised
    in the child); the child got the parent's environment (its work folder)."""
    from tvb_tasks import tiled
    from tvb_tasks.config import load_territory
    from tvb_tasks.layers.tiles import TilingError

    territory = load_territory("call").model_copy(update={"tiling": TilingConfig(enabled=True)})
    run = {"territory": "call", "input_key": "0" * 64, "store_uri": str(tmp_path / "store"),
           "config": territory.model_dump(mode="json", by_alias=True)}
    tiled.stage_next_round(run, [{"next": [{"sous_trame": "forest", "tile": 3}], "peak_mb": 1.0}], 4)
    with tiled._pool(1) as ex:
        fut = ex.submit(tiled._stage_task, "stage_stitch_tiles", run, "forest")
        with pytest.raises(TilingError, match=r"^sous-trame forest: 1 tiles still changing after round 4: raise "
                                              r"tiling.dag_rounds$"):
            fut.result()


def test_an_error_that_does_not_pickle_back_keeps_its_message_and_family():
    """``tiled._portable``: an error whose ``__init__`` does not take its message (``ReferenceProblems`` takes a
    list) fails to unpickle in the parent (the pool would then be reported broken, the message lost): it crosses as its family (``DeterministicError``) with its message; an
    error that pickles back unchanged crosses as itself."""
    import pickle

    from tvb_tasks import tiled
    from tvb_tasks.config_checks import ReferenceProblems
    from tvb_tasks.errors import DeterministicError
    from tvb_tasks.memory import MemoryBoundError

    exc = ReferenceProblems([("sources.x", "no such source"), ("classes.y", "unknown class")])
    with pytest.raises(ValueError, match="not enough values to unpack"):   # unpickled in the parent: fails
        pickle.loads(pickle.dumps(exc))
    got = tiled._portable(exc)
    assert type(got) is DeterministicError and str(got) == "sources.x: no such source; classes.y: unknown class"
    same = MemoryBoundError("part of forest: peak memory 900 MB, above the memory bound")
    assert tiled._portable(same) is same
