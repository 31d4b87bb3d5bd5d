"""Missing links (fractures) from the tiles (tvb_tasks.layers.tile_missing): a motorway and a railway (high-friction
columns with one underpass each) cut potential links across tile borders; the potential links, real costs, kept
missing links and each crossing's own score from the tiles equal the whole-grid ``corridors.missing_links`` /
``barrier_crossing_scores``, and the cut-off window of the real-cost Dijkstra gives the whole-grid distances."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from tvb_tasks.layers import costdistance as cd
from tvb_tasks.layers import tile_missing
from tvb_tasks.layers.common import Grid
from tvb_tasks.layers.corridors import barrier_crossing_scores, missing_links, select_links
from tvb_tasks.layers.tile_links import CoreReader, tiled_links
from tvb_tasks.layers.tile_missing import (
    cost_box,
    input_summary,
    reach_window,
    tiled_crossing_scores,
    tiled_missing_links,
    window_inputs,
)
from tvb_tasks.layers.tiles import TilingConfig, plan_to_store, run_rounds, stitch_from_store
from tvb_tasks.store import LocalStore

RES = 10.0
MAX_COST = 700.0


def _scene(seed: int):
    """(friction, potential friction, sources, reservoir index per source): land of friction 1–5, a pond (NaN), a
    motorway (column 14, friction 400, an underpass at row 3) and a railway (column 17, 150, a crossing at row 20)."""
    rng = np.random.default_rng(seed)
    H, W = 26, 30
    potential = rng.integers(1, 6, (H, W)).astype(np.float32)
    potential[20:23, 4:7] = np.nan
    friction = potential.copy()
    friction[:, 14] = 400.0
    friction[3, 14] = potential[3, 14]
    friction[:, 17] = np.maximum(friction[:, 17], 150.0)
    friction[20, 17] = potential[20, 17]
    friction[20:23, 4:7] = np.nan
    blobs = [(2, 3), (11, 9), (22, 11), (6, 22), (15, 25), (23, 27), (12, 2)]
    src = np.array([(r + dr, c + dc) for r, c in blobs for dr in range(2) for dc in range(2)])
    lab = np.repeat(np.arange(len(blobs)), 4)
    return friction, potential, src, lab


def _grid(shape):
    return Grid(Affine(RES, 0.0, 1000.0, 0.0, -RES, 5000.0), shape, "EPSG:2154", RES)


def _tiled(root, friction, potential, src, lab, *, tile_size, knight):
    store = LocalStore(root / "store")
    prefix = "work/x/tiles/forest"
    for pfx, cost in ((prefix, friction), (f"{prefix}/potential", potential)):
        first = plan_to_store(store, pfx, cost, src, tiling=TilingConfig(tile_size=tile_size, overlap=2),
                              cell_size=RES, knight=knight, max_cost=MAX_COST, source_labels=lab,
                              lu_friction=friction)
        run_rounds(store, pfx, first, max_rounds=100)
    return store, prefix


@pytest.mark.parametrize("tile_size, knight, max_barrier_m", [(9, True, None), (12, False, 25.0)])
def test_tiled_missing_links_and_crossing_scores_equal_the_whole_grid_ones(tmp_path, tile_size, knight,
                                                                           max_barrier_m, monkeypatch):
    if max_barrier_m is not None:                 # windows grown from a 1-cell margin (the reach check at work)
        monkeypatch.setattr(tile_missing, "MARGIN", 1)
    friction, potential, src, lab = _scene(1)
    grid = _grid(friction.shape)
    store, prefix = _tiled(tmp_path, friction, potential, src, lab, tile_size=tile_size, knight=knight)
    acc, _, alloc = stitch_from_store(store, prefix)
    real = select_links(friction, acc, alloc, grid, knight=knight, max_cost=MAX_COST, max_links=3)
    barrier = np.isfinite(potential) & (friction > potential)
    ref = missing_links(potential, friction, barrier, real, src, lab, grid, knight=knight, max_cost=MAX_COST,
                        max_links=3, min_gain_share=0.25, max_barrier_m=max_barrier_m)
    got_real = tiled_links(store, prefix, max_cost=MAX_COST, max_links=3)
    pd.testing.assert_frame_equal(got_real, real, check_dtype=False)
    got = tiled_missing_links(store, prefix, f"{prefix}/potential", got_real, grid, max_cost=MAX_COST, max_links=3,
                              min_gain_share=0.25, max_barrier_m=max_barrier_m)
    assert len(ref[0]) >= 2                       # the scene has missing links, across the tile borders
    assert any(len({(r // tile_size, c // tile_size) for r, c in p}) > 2 for p in ref[1])
    pd.testing.assert_frame_equal(got[0], ref[0], check_dtype=False)
    assert got[1] == ref[1] and got[2] == ref[2]
    detoured = [i for i in ref[2] if i["real_cost"] < i["with_barrier"]]
    assert detoured and len(detoured) < len(ref[2]) + 1       # a real detour (underpass) found by the window
    # each crossing's own score: barrier cells of the missing paths (the first 3 of each) as crossing points, 15 m
    score = tiled_crossing_scores(store, prefix, f"{prefix}/potential", grid, radius_m=15.0)
    n_saved = 0
    for (_, link), path, info in zip(ref[0].iterrows(), ref[1], ref[2]):
        cells = np.array([p for p in path if barrier[p]][:3])
        xy = np.column_stack(grid.cell_centres(cells[:, 0], cells[:, 1]))
        want = barrier_crossing_scores(xy, int(link["a"]), int(link["b"]), info["real_cost"], path, friction,
                                       potential, src, lab, grid, knight=knight, radius_m=15.0,
                                       potential_cost=float(link["cost"]))
        assert score(xy, int(link["a"]), int(link["b"]), info["real_cost"], path, float(link["cost"])) == want
        n_saved += sum(w["cost_saved"] > 0 for w in want)
    assert n_saved > 0


def test_the_cut_off_window_gives_the_whole_grid_distances(tmp_path):
    """Dijkstra from one reservoir on its cost_box: every cell within the cut is in the box, with the same
    distance; the cells beyond the cut are beyond it in both; a box one cell narrower than the bound would miss
    a cell (the bound is tight to within its one-cell margin)."""
    friction, potential, src, lab = _scene(2)
    store, prefix = _tiled(tmp_path, friction, potential, src, lab, tile_size=9, knight=True)
    boxes, fmin = input_summary(store, prefix)
    assert fmin == np.nanmin(friction)
    reader = CoreReader(store, prefix, cache=12)
    for a, cut in ((0, 60.0), (3, 150.0), (5, 2000.0)):
        rc = src[lab == a]
        assert boxes[a] == (rc[:, 0].min(), rc[:, 0].max() + 1, rc[:, 1].min(), rc[:, 1].max() + 1)
        whole = cd.accumulated_cost(friction, rc, cell_size=RES, knight=True, max_cost=cut)
        box = cost_box(boxes[a], cut, fmin, RES, friction.shape)
        fr, wsrc, wlab = window_inputs(reader, box)
        assert np.array_equal(fr, friction[box[0]:box[1], box[2]:box[3]], equal_nan=True)
        win = cd.accumulated_cost(fr, wsrc[wlab == a], cell_size=RES, knight=True, max_cost=cut)
        reached = np.isfinite(whole)
        inside = np.zeros_like(reached)
        inside[box[0]:box[1], box[2]:box[3]] = True
        assert reached.any() and not (reached & ~inside).any()
        assert np.array_equal(win, whole[box[0]:box[1], box[2]:box[3]], equal_nan=True)
    # the reach window, grown from a 1-cell margin: the same distances on fewer cells than the bound
    for a, cut in ((0, 60.0), (3, 150.0), (5, 2000.0)):
        rc = src[lab == a]
        whole = cd.accumulated_cost(friction, rc, cell_size=RES, knight=True, max_cost=cut)

        def run(box, a=a, cut=cut):
            fr, wsrc, wlab = window_inputs(reader, box)
            return cd.accumulated_cost(fr, wsrc[wlab == a], cell_size=RES, knight=True, max_cost=cut)

        box, win = reach_window(boxes[a], cut, fmin, RES, friction.shape, run, margin=1)
        assert np.array_equal(win, whole[box[0]:box[1], box[2]:box[3]], equal_nan=True)
        reached = np.isfinite(whole)
        assert reached[box[0]:box[1], box[2]:box[3]].sum() == reached.sum()
        if cut < 100:
            assert (box[1] - box[0]) * (box[3] - box[2]) < friction.size / 4       # grown less than the bound
    # the bound: at friction 1 along a row, a cut of 10 × 5 m... reaches 5 cells: the box holds them
    flat = np.ones((5, 40), np.float32)
    d = cd.accumulated_cost(flat, np.array([[2, 0]]), cell_size=RES, knight=False, max_cost=50.0)
    assert np.isfinite(d[2, 5]) and not np.isfinite(d[2, 6])
    assert cost_box((2, 3, 0, 1), 50.0, 1.0, RES, flat.shape)[3] >= 6


def test_a_window_above_the_memory_bound_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    """The real-cost and crossing-score windows are estimated before they are allocated: with the bound just below
    the largest window's estimate (the whole 26 × 30 grid: cells × REACH_BYTES / CROSSING_BYTES, the process's
    own memory set to 0), the missing links and the scores are refused naming the link, the window and the
    settings; just above it they are computed (the same as with the normal bound). Without an explicit bound the
    running task's (memory_bound) applies."""
    from tvb_tasks import memory
    from tvb_tasks.memory import MemoryBoundError, memory_bound

    monkeypatch.setattr(memory, "rss_mb", lambda: 0.0)
    friction, potential, src, lab = _scene(1)
    grid = _grid(friction.shape)
    store, prefix = _tiled(tmp_path, friction, potential, src, lab, tile_size=9, knight=True)
    real = tiled_links(store, prefix, max_cost=MAX_COST, max_links=3)
    cells = friction.size
    kw = dict(max_cost=MAX_COST, max_links=3, min_gain_share=0.25, max_barrier_m=None)
    with pytest.raises(MemoryBoundError) as err:
        tiled_missing_links(store, prefix, f"{prefix}/potential", real, grid, **kw,
                            memory_limit_gib=0.99 * cells * tile_missing.REACH_BYTES / 2**30)
    msg = str(err.value)
    for part in ("real-cost window of reservoir", "of forest (window 26 × 30 cells)", "780 cells need about 0.01 MB",
                 "max_cost", "corridors.missing_links.min_gain_share", "tiling.memory_limit_gib"):
        assert part in msg
    ref = tiled_missing_links(store, prefix, f"{prefix}/potential", real, grid, **kw)
    got = tiled_missing_links(store, prefix, f"{prefix}/potential", real, grid, **kw,
                              memory_limit_gib=1.01 * cells * tile_missing.REACH_BYTES / 2**30)
    assert len(ref[0]) >= 2
    pd.testing.assert_frame_equal(got[0], ref[0])
    with pytest.raises(MemoryBoundError, match="real-cost window"), \
            memory_bound("corridors of forest", 0.99 * cells * tile_missing.REACH_BYTES / 2**30, enforce=False,
                         poll_s=60):
        tiled_missing_links(store, prefix, f"{prefix}/potential", real, grid, **kw)
    # a crossing's score window
    link, path, info = ref[0].iloc[0], ref[1][0], ref[2][0]
    barrier = np.isfinite(potential) & (friction > potential)
    cell = next(p for p in path if barrier[p])
    xy = np.column_stack(grid.cell_centres(np.array([cell[0]]), np.array([cell[1]])))
    args = (xy, int(link["a"]), int(link["b"]), info["real_cost"], path, float(link["cost"]))
    limit = cells * tile_missing.CROSSING_BYTES / 2**30
    score = tiled_crossing_scores(store, prefix, f"{prefix}/potential", grid, radius_m=15.0,
                                  memory_limit_gib=0.99 * limit)
    with pytest.raises(MemoryBoundError, match=r"score window of a barrier crossing of the missing link \d+–\d+ of "
                                               r"forest \(window 26 × 30 cells\)"):
        score(*args)
    assert tiled_crossing_scores(store, prefix, f"{prefix}/potential", grid, radius_m=15.0,
                                 memory_limit_gib=1.01 * limit)(*args) == \
        tiled_crossing_scores(store, prefix, f"{prefix}/potential", grid, radius_m=15.0)(*args)
