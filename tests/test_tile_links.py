"""Corridors from the tiled cost-distance's per-tile objects (tvb_tasks.layers.tile_links): links, paths and corridor
lines equal to the whole-grid ``select_links`` / ``link_paths`` / ``corridor_lines`` on the stitched rasters, on
small hand-built scenes where zone borders, crossings, exact ties and paths cross tile borders (several tile sizes,
8 and 16 neighbours, a nodata mask), through a local folder store as the DAG's tasks use it."""
from __future__ import annotations

from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from affine import Affine

from tvb_tasks.config_models import CorridorsConfig, CorridorStatusConfig
from tvb_tasks.layers import costdistance as cd
from tvb_tasks.layers import engine
from tvb_tasks.layers.common import Grid
from tvb_tasks.layers.corridors import corridor_lines, corridor_stretches, link_paths, select_links
from tvb_tasks.layers.tile_links import (
    CellValues,
    path_values,
    tiled_corridor_area,
    tiled_link_paths,
    tiled_links,
    zone_boxes,
)
from tvb_tasks.layers.tiles import TilingConfig, plan_to_store, run_rounds, stitch_from_store
from tvb_tasks.store import LocalStore

RES = 10.0


def _scene(kind: str, seed: int):
    """(friction, land-use friction, sources (N, 2), reservoir index per source, nodata mask or None)."""
    rng = np.random.default_rng(seed)
    H, W = 31, 37
    if kind == "uniform":                      # friction 1 everywhere: exact ties between crossings everywhere
        cost = np.ones((H, W), np.float32)
    else:
        cost = rng.integers(1, 6, (H, W)).astype(np.float32)      # integer frictions: many equal sums
        cost[12, 3:30] = np.nan                                    # a barrier with a gap
        cost[5:25, 22] = 200.0                                     # a costly wall
    mask = None
    if kind == "mask":
        mask = np.zeros((H, W), bool)
        mask[18:21, 8:14] = True
        mask[0:3, 30:37] = True
    blobs = [(2, 2), (3, 18), (27, 5), (25, 33), (15, 17), (8, 34), (29, 20)]
    src, lab = [], []
    for i, (r, c) in enumerate(blobs):
        for dr in range(2):
            for dc in range(2):
                if np.isfinite(cost[r + dr, c + dc]) and not (mask is not None and mask[r + dr, c + dc]):
                    src.append((r + dr, c + dc))
                    lab.append(i)
    lu = rng.choice([1.0, 3.0, 5.0, 20.0, 150.0], (H, W)).astype(np.float32)
    return cost, lu, np.array(src), np.array(lab), mask


def _tiled(tmp_path, cost, lu, src, lab, mask, *, tile_size, knight, max_cost=np.inf):
    store = LocalStore(tmp_path / "store")
    prefix = "work/x/tiles/forest"
    first = plan_to_store(store, prefix, cost, src, tiling=TilingConfig(tile_size=tile_size, overlap=2),
                          cell_size=RES, knight=knight, max_cost=max_cost, nodata_mask=mask, source_labels=lab,
                          lu_friction=lu)
    run_rounds(store, prefix, first, max_rounds=100)
    return store, prefix


def _grid(shape):
    return Grid(Affine(RES, 0.0, 1000.0, 0.0, -RES, 5000.0), shape, "EPSG:2154", RES)


CASES = [("random", 1, 8, False), ("random", 2, 9, True), ("uniform", 0, 8, False), ("uniform", 0, 10, True),
         ("mask", 3, 11, True), ("mask", 4, 8, False), ("random", 5, 40, True)]


@pytest.mark.parametrize("kind, seed, tile_size, knight", CASES)
def test_tiled_links_and_paths_equal_the_whole_grid_ones(tmp_path, kind, seed, tile_size, knight):
    cost, lu, src, lab, mask = _scene(kind, seed)
    store, prefix = _tiled(tmp_path, cost, lu, src, lab, mask, tile_size=tile_size, knight=knight)
    acc, back, alloc = stitch_from_store(store, prefix)
    grid = _grid(cost.shape)
    for max_cost, max_links in ((np.inf, 3), (np.inf, 1), (60.0, 2)):
        ref = select_links(cost, acc, alloc, grid, knight=knight, max_cost=max_cost, max_links=max_links,
                           nodata_mask=mask)
        got = tiled_links(store, prefix, max_cost=max_cost, max_links=max_links)
        pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    ref = select_links(cost, acc, alloc, grid, knight=knight, max_cost=np.inf, max_links=3, nodata_mask=mask)
    assert len(ref) >= 6                            # the scene has links, whose paths cross tile borders
    paths = tiled_link_paths(store, prefix, ref, cache=2)
    assert paths == link_paths(ref, back)
    if tile_size < min(cost.shape):                 # not the one-tile case: paths cross tile borders
        assert any(len({(r // tile_size, c // tile_size) for r, c in p}) > 1 for p in paths)


def test_an_exact_tie_goes_to_the_crossing_scanned_first_even_across_tiles(tmp_path):
    """Two reservoirs filling columns 1 and 18 of a uniform plane: every row's crossing between their zones costs
    the same; the whole grid keeps the one scanned first (row 0), the tiles too although each row of tiles finds
    its own equal crossing."""
    cost = np.ones((26, 20), np.float32)
    rows = np.arange(26)
    src = np.concatenate([np.stack([rows, np.full(26, 1)], 1), np.stack([rows, np.full(26, 18)], 1)])
    lab = np.repeat([0, 1], 26)
    for tile_size in (8, 9, 13):
        for knight in (False, True):
            store, prefix = _tiled(tmp_path / f"{tile_size}{knight}", cost, cost, src, lab, None,
                                   tile_size=tile_size, knight=knight)
            acc, _back, alloc = stitch_from_store(store, prefix)
            ref = select_links(cost, acc, alloc, _grid(cost.shape), knight=knight, max_cost=np.inf, max_links=3)
            got = tiled_links(store, prefix, max_cost=np.inf, max_links=3)
            pd.testing.assert_frame_equal(got, ref, check_dtype=False)
            assert len(got) == 1 and got["cell_a"].iloc[0][0] == 0     # the first row of the border wins


def test_the_scan_range_kernel_is_the_whole_grid_one_restricted():
    """adjacent_sources with scan = whole raster is the former call; scanning two halves and merging by (cost,
    scanned cell) gives it back."""
    cost, _, src, lab, _ = _scene("random", 7)
    acc, _, alloc = cd.accumulated_cost(cost, src, source_labels=lab, return_backlinks=True,
                                        return_allocation=True)
    whole = cd.adjacent_sources(cost, acc, alloc, knight=True)
    full = cd.adjacent_sources(cost, acc, alloc, knight=True, scan=(0, cost.shape[0], 0, cost.shape[1]))
    for a, b in zip(whole, full):
        assert np.array_equal(a, b)
    top = cd.adjacent_sources(cost, acc, alloc, knight=True, scan=(0, 15, 0, cost.shape[1]))
    assert 0 < len(top[0]) < len(whole[0]) + 1
    with pytest.raises(ValueError, match="scan"):
        cd.adjacent_sources(cost, acc, alloc, scan=(0, 99, 0, 3))


@pytest.mark.parametrize("kind, seed, tile_size, knight", [CASES[0], CASES[3], CASES[4]])
def test_tiled_corridor_lines_equal_the_whole_grid_ones(tmp_path, kind, seed, tile_size, knight):
    cost, lu, src, lab, mask = _scene(kind, seed)
    store, prefix = _tiled(tmp_path, cost, lu, src, lab, mask, tile_size=tile_size, knight=knight)
    acc, back, alloc = stitch_from_store(store, prefix)
    grid = _grid(cost.shape)
    territory = SimpleNamespace(crs="EPSG:2154", corridors=CorridorsConfig(
        status=CorridorStatusConfig(gap_min_friction=100, support_max_friction=5, existing_max_gap_m=15,
                                    restore_max_gap_m=40)))
    reservoirs = gpd.GeoDataFrame({"id": [f"forest-R{i:03d}" for i in range(1, 8)]}, geometry=[None] * 7,
                                  crs="EPSG:2154")
    links = select_links(cost, acc, alloc, grid, knight=knight, max_cost=np.inf, max_links=3, nodata_mask=mask)
    ref = corridor_lines(territory, "forest", reservoirs, links, link_paths(links, back), cost, lu, grid)
    tl = tiled_links(store, prefix, max_cost=np.inf, max_links=3)
    paths = tiled_link_paths(store, prefix, tl)
    fr_v, lu_v = path_values(store, prefix, paths)
    got = corridor_lines(territory, "forest", reservoirs, tl, paths, fr_v, lu_v, grid)
    assert len(ref) >= 5 and ref["status"].nunique() >= 2          # statuses differ: the values matter
    pd.testing.assert_frame_equal(got.drop(columns="geometry"), ref.drop(columns="geometry"))
    assert list(got.geometry.to_wkb()) == list(ref.geometry.to_wkb())
    # stretches from the values gathered along the paths
    ref_s = corridor_stretches(ref, grid, lu, territory.corridors.status)
    got_s = corridor_stretches(got, grid, lu_v, territory.corridors.status)
    assert len(ref_s) > len(ref) and ref_s["status"].nunique() >= 2
    pd.testing.assert_frame_equal(got_s.drop(columns="geometry"), ref_s.drop(columns="geometry"))
    assert list(got_s.geometry.to_wkb()) == list(ref_s.geometry.to_wkb())
    # corridor polygons: each on the window of its two zones assembled from cores and inputs
    ref_areas = engine._corridor_areas(territory, ref, links, len(links), (acc, alloc, cost), None, src, lab, grid,
                                       knight)
    boxes = zone_boxes(store, prefix)
    got_areas = engine.corridor_area_frame(territory, got, tl, lambda _k, a, b, c: tiled_corridor_area(
        store, prefix, c, a, b, boxes, grid, margin=territory.corridors.width.cost_margin), grid)
    assert len(ref_areas) >= 5
    pd.testing.assert_frame_equal(got_areas.drop(columns="geometry"), ref_areas.drop(columns="geometry"))
    assert list(got_areas.geometry.to_wkb()) == list(ref_areas.geometry.to_wkb())


def test_cell_values_take_like_a_raster_and_refuse_other_cells():
    raster = np.arange(20.0).reshape(4, 5)
    v = CellValues(np.array([7, 3, 12]), raster.take([7, 3, 12]))
    assert np.array_equal(v.take([12, 3, 7, 3]), raster.take([12, 3, 7, 3]))
    with pytest.raises(ValueError, match="outside"):
        v.take([4])


def test_a_corridor_area_window_above_the_memory_bound_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    """The zone window of a corridor polygon is estimated (cells × AREA_BYTES, the process's own memory set to 0)
    before it is assembled: just below the estimate it is refused naming the link, the window and the settings;
    just above it the polygon is the one computed without a bound."""
    from tvb_tasks import memory
    from tvb_tasks.layers.tile_links import AREA_BYTES
    from tvb_tasks.memory import MemoryBoundError

    monkeypatch.setattr(memory, "rss_mb", lambda: 0.0)
    cost, lu, src, lab, mask = _scene("random", 1)
    store, prefix = _tiled(tmp_path, cost, lu, src, lab, mask, tile_size=8, knight=False)
    grid = _grid(cost.shape)
    boxes = zone_boxes(store, prefix)
    link = tiled_links(store, prefix, max_cost=np.inf, max_links=3).iloc[0]
    a, b, c = int(link["a"]), int(link["b"]), float(link["cost"])
    box = tuple(f(boxes[a][i], boxes[b][i]) for i, f in enumerate((min, max, min, max)))
    need = (box[1] - box[0]) * (box[3] - box[2]) * AREA_BYTES / 2**30
    with pytest.raises(MemoryBoundError) as err:
        tiled_corridor_area(store, prefix, c, a, b, boxes, grid, margin=50.0, memory_limit_gib=0.99 * need)
    for part in (f"corridor area of link {a}–{b} of forest (zone window {box[1] - box[0]} × {box[3] - box[2]} "
                 "cells)", "cells need about", "max_cost", "tiling.memory_limit_gib"):
        assert part in str(err.value)
    got = tiled_corridor_area(store, prefix, c, a, b, boxes, grid, margin=50.0, memory_limit_gib=1.01 * need)
    assert got is not None and got.equals(tiled_corridor_area(store, prefix, c, a, b, boxes, grid, margin=50.0))
