"""Exactness tests of the accumulated cost-distance kernel against an independent
brute-force Dijkstra (plain Python + heapq over an explicitly built graph)."""

from __future__ import annotations

import csv
import heapq
import math

import numpy as np
import pytest

from tvb_tasks.layers import costdistance as cdm
from tvb_tasks.layers.costdistance import (
    OFFSETS,
    accumulated_cost,
    adjacent_sources,
    cost_distance_file,
    trace_path,
)

SQ2 = math.sqrt(2.0)
SQ5 = math.sqrt(5.0)

# ---------------------------------------------------------------------------
# Independent reference: GRASS r.cost rules written out move by move
# ---------------------------------------------------------------------------
# (drow, dcol, [cells passed between, for knight moves]) - as in r.cost main.c:
# NNW uses N and NW, NNE uses N and NE, ... WSW uses W and SW.
_N, _S, _W, _E = (-1, 0), (1, 0), (0, -1), (0, 1)
_NW, _NE, _SE, _SW = (-1, -1), (-1, 1), (1, 1), (1, -1)
_MOVES8 = [(_N, []), (_S, []), (_W, []), (_E, []), (_NW, []), (_NE, []), (_SE, []), (_SW, [])]
_KNIGHT = [
    ((-2, -1), [_N, _NW]), ((-2, 1), [_N, _NE]), ((2, 1), [_S, _SE]), ((2, -1), [_S, _SW]),
    ((-1, -2), [_W, _NW]), ((-1, 2), [_E, _NE]), ((1, 2), [_E, _SE]), ((1, -2), [_W, _SW]),
]


def _ok(cost, mask, r, c):
    v = float(cost[r, c])
    return math.isfinite(v) and v > 0 and not (mask is not None and mask[r, c])


def _edges(cost, knight, cell_size, mask=None):
    """Explicit adjacency list {(r, c): [((r2, c2), weight), ...]}."""
    dy, dx = (cell_size, cell_size) if np.ndim(cell_size) == 0 else cell_size
    H, W = cost.shape
    moves = _MOVES8 + (_KNIGHT if knight else [])
    graph = {}
    for r in range(H):
        for c in range(W):
            if not _ok(cost, mask, r, c):
                continue
            out = []
            for (mr, mc), mids in moves:
                r2, c2 = r + mr, c + mc
                if not (0 <= r2 < H and 0 <= c2 < W) or not _ok(cost, mask, r2, c2):
                    continue
                length = math.sqrt((mr * dy) ** 2 + (mc * dx) ** 2)
                if mids:
                    cells = [(r + a, c + b) for a, b in mids]
                    if not all(_ok(cost, mask, *rc) for rc in cells):
                        continue
                    tot = float(cost[r, c]) + float(cost[r2, c2]) + sum(float(cost[rc]) for rc in cells)
                    w = tot / 4.0 * length
                else:
                    w = (float(cost[r, c]) + float(cost[r2, c2])) / 2.0 * length
                out.append(((r2, c2), w))
            graph[(r, c)] = out
    return graph


def _brute(cost, sources, knight=False, cell_size=1.0, max_cost=None, mask=None):
    graph = _edges(cost, knight, cell_size, mask)
    H, W = cost.shape
    dist = np.full((H, W), np.inf)
    heap = []
    for r, c in sources:
        dist[r, c] = 0.0
        heap.append((0.0, (int(r), int(c))))
    heapq.heapify(heap)
    done = set()
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        for v, w in graph[u]:
            nd = d + w
            if max_cost is not None and nd > max_cost:
                continue
            if nd < dist[v]:
                dist[v] = nd
                heapq.heappush(heap, (nd, v))
    for r in range(H):
        for c in range(W):
            if not _ok(cost, mask, r, c):
                dist[r, c] = np.nan
    return dist


def _random_case(seed, shape, barrier_frac=0.12, dtype=np.float64):
    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 100.0, shape).astype(dtype)
    kinds = rng.random(shape)
    cost[kinds < barrier_frac / 3] = np.nan
    cost[(kinds >= barrier_frac / 3) & (kinds < 2 * barrier_frac / 3)] = 0.0
    cost[(kinds >= 2 * barrier_frac / 3) & (kinds < barrier_frac)] = -5.0
    ok = np.argwhere(np.isfinite(cost) & (cost > 0))
    n_src = int(rng.integers(1, 5))
    sources = ok[rng.choice(len(ok), size=n_src, replace=False)]
    return cost, sources


def _assert_same(got, ref, rtol=1e-9):
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN (barrier) pattern differs"
    assert np.array_equal(np.isinf(got), np.isinf(ref)), "inf (unreached) pattern differs"
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=0)


# ---------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------
def test_hand_computed_3x3():
    cost = np.arange(1.0, 10.0).reshape(3, 3)
    expected = np.array([
        [0.0, 1.5, 4.0],
        [2.5, 3 * SQ2, 1.5 + 4 * SQ2],
        [8.0, 3 * SQ2 + 6.5, 10 * SQ2],
    ])
    got = accumulated_cost(cost, np.array([[0, 0]]))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    got25 = accumulated_cost(cost, np.array([[0, 0]]), cell_size=25.0)
    np.testing.assert_allclose(got25, 25 * expected, rtol=1e-12)
    # knight's move (0,0)->(2,1): mean of (0,0), (2,1), (1,0), (1,1) x sqrt(5)
    gk = accumulated_cost(cost, np.array([[0, 0]]), knight=True)
    assert gk[2, 1] == pytest.approx(min(expected[2, 1], (1 + 8 + 4 + 5) / 4 * SQ5), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(7, 9), (20, 20), (13, 31)])
@pytest.mark.parametrize("knight", [False, True])
def test_matches_bruteforce(seed, shape, knight):
    cost, sources = _random_case(seed, shape)
    cell_size = [1.0, 25.0, 0.37, (2.0, 3.0), 1.0][seed]
    got = accumulated_cost(cost, sources, knight=knight, cell_size=cell_size)
    ref = _brute(cost, sources, knight=knight, cell_size=cell_size)
    _assert_same(got, ref)
    # sources are exactly 0
    assert np.all(got[sources[:, 0], sources[:, 1]] == 0.0)


@pytest.mark.parametrize("knight", [False, True])
@pytest.mark.parametrize("seed", [10, 11, 12])
def test_max_cost_cutoff(seed, knight):
    cost, sources = _random_case(seed, (18, 23))
    full = _brute(cost, sources, knight=knight, cell_size=5.0)
    max_cost = float(np.nanmedian(full[np.isfinite(full)]))
    got = accumulated_cost(cost, sources, knight=knight, cell_size=5.0, max_cost=max_cost)
    ref = _brute(cost, sources, knight=knight, cell_size=5.0, max_cost=max_cost)
    _assert_same(got, ref)
    fin = np.isfinite(got)
    assert np.all(got[fin] <= max_cost)
    # the cut-off only removes cells: below it the values are the uncut ones
    np.testing.assert_allclose(got[fin], full[fin], rtol=1e-9)
    assert np.all(np.isinf(got[np.isfinite(full) & (full > max_cost)]))


def test_float32_and_integer_costs():
    cost, sources = _random_case(3, (16, 17), barrier_frac=0.0)
    c32 = cost.astype(np.float32)
    ref = _brute(c32.astype(np.float64), sources)
    _assert_same(accumulated_cost(c32, sources), ref)
    ci = np.round(cost).astype(np.uint16)
    _assert_same(accumulated_cost(ci, sources), _brute(ci.astype(np.float64), sources))


def test_nodata_mask_is_barrier():
    cost, sources = _random_case(4, (15, 15), barrier_frac=0.0)
    rng = np.random.default_rng(0)
    mask = rng.random(cost.shape) < 0.2
    mask[sources[:, 0], sources[:, 1]] = False
    for knight in (False, True):
        got = accumulated_cost(cost, sources, nodata_mask=mask, knight=knight)
        _assert_same(got, _brute(cost, sources, knight=knight, mask=mask))
        assert np.all(np.isnan(got[mask]))


def test_unreachable_is_inf_and_barrier_nan():
    cost = np.ones((5, 5))
    cost[:, 2] = np.nan  # wall
    got = accumulated_cost(cost, [[0, 0]])
    assert np.all(np.isnan(got[:, 2]))
    assert np.all(np.isinf(got[:, 3:]))
    assert np.all(np.isfinite(got[:, :2]))
    # the knight's move may not jump the wall either (its mid cells are barriers)
    got = accumulated_cost(cost, [[0, 0]], knight=True)
    assert np.all(np.isinf(got[:, 3:]))


def test_heap_fallback_for_extreme_cost_range():
    # max edge / min edge > 2**22 -> binary-heap Dijkstra, same results
    rng = np.random.default_rng(7)
    cost = 10.0 ** rng.uniform(-3, 4, (14, 19))
    cost[rng.random(cost.shape) < 0.1] = np.nan
    ok = np.argwhere(np.isfinite(cost))
    sources = ok[[0, len(ok) // 2, -1]]
    for knight in (False, True):
        got = accumulated_cost(cost, sources, knight=knight)
        _assert_same(got, _brute(cost, sources, knight=knight))


def test_duplicate_sources():
    cost, sources = _random_case(5, (9, 9))
    dup = np.vstack([sources, sources[:1]])
    acc, alloc = accumulated_cost(cost, dup, return_allocation=True)
    _assert_same(acc, _brute(cost, sources))
    assert alloc[sources[0, 0], sources[0, 1]] == 0


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_source_on_barrier_or_outside_is_an_error():
    cost = np.ones((4, 4))
    cost[1, 1] = np.nan
    cost[2, 2] = 0.0
    with pytest.raises(ValueError, match=r"source #1 \(row=1, col=1\).*impassable"):
        accumulated_cost(cost, [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="impassable"):
        accumulated_cost(cost, [[2, 2]])
    with pytest.raises(ValueError, match=r"impassable.*masked"):
        mask = np.zeros((4, 4), bool)
        mask[3, 3] = True
        accumulated_cost(cost, [[3, 3]], nodata_mask=mask)
    with pytest.raises(ValueError, match="outside"):
        accumulated_cost(cost, [[4, 0]])
    with pytest.raises(ValueError, match="outside"):
        accumulated_cost(cost, [[0, -1]])
    with pytest.raises(ValueError, match="non-empty"):
        accumulated_cost(cost, np.empty((0, 2), int))
    with pytest.raises(ValueError, match="cell_size"):
        accumulated_cost(cost, [[0, 0]], cell_size=0)


# ---------------------------------------------------------------------------
# Back-links, paths, allocation
# ---------------------------------------------------------------------------
def _edge_weight(graph, a, b):
    for v, w in graph[a]:
        if v == b:
            return w
    raise AssertionError(f"{a} -> {b} is not a legal move")


@pytest.mark.parametrize("knight", [False, True])
def test_trace_path_cost_and_allocation(knight):
    cost, sources = _random_case(21, (17, 19))
    acc, back, alloc = accumulated_cost(cost, sources, knight=knight, cell_size=2.0,
                                        return_backlinks=True, return_allocation=True)
    assert back.dtype == np.int8 and alloc.dtype == np.int32
    graph = _edges(cost, knight, 2.0)
    src_set = {tuple(s) for s in sources.tolist()}
    per_source = [_brute(cost, [s], knight=knight, cell_size=2.0) for s in sources]
    best = np.fmin.reduce(per_source)
    for r, c in np.argwhere(np.isfinite(acc)):
        r, c = int(r), int(c)
        path = trace_path(back, (r, c))
        assert path[0] == (r, c) and path[-1] in src_set
        assert sum(_edge_weight(graph, path[i + 1], path[i]) for i in range(len(path) - 1)) == \
            pytest.approx(acc[r, c], rel=1e-9, abs=1e-12)
        lab = alloc[r, c]
        assert tuple(sources[lab]) == path[-1]
        assert all(alloc[p] == lab for p in path)
        # the allocated source is (one of) the cheapest
        assert per_source[lab][r, c] == pytest.approx(best[r, c], rel=1e-9, abs=1e-12)
    assert np.all(alloc[~np.isfinite(acc)] == -1)
    assert np.all(back[~np.isfinite(acc)] == cdm.BACK_NONE)
    for s in sources:
        assert back[tuple(s)] == cdm.BACK_SOURCE
    with pytest.raises(ValueError, match="not reached"):
        trace_path(back, tuple(np.argwhere(np.isnan(acc))[0]))


def test_backlink_codes_are_offsets():
    cost = np.ones((3, 3))
    _, back = accumulated_cost(cost, [[1, 1]], return_backlinks=True)
    for r in range(3):
        for c in range(3):
            if (r, c) == (1, 1):
                continue
            j = back[r, c]
            assert (r - OFFSETS[j, 0], c - OFFSETS[j, 1]) == (1, 1)


@pytest.mark.parametrize("knight", [False, True])
def test_adjacent_sources(knight):
    cost, sources = _random_case(33, (21, 24), barrier_frac=0.05)
    acc, back, alloc = accumulated_cost(cost, sources, knight=knight, cell_size=3.0,
                                        return_backlinks=True, return_allocation=True)
    pairs, link, cells = adjacent_sources(cost, acc, alloc, knight=knight, cell_size=3.0)
    graph = _edges(cost, knight, 3.0)
    expect = {}
    for a, out in graph.items():
        for b, w in out:
            la, lb = alloc[a], alloc[b]
            if la < 0 or lb < 0 or la == lb:
                continue
            key = (min(la, lb), max(la, lb))
            expect[key] = min(expect.get(key, np.inf), acc[a] + w + acc[b])
    assert [tuple(p) for p in pairs.tolist()] == sorted(expect)
    for (i, j), lc, ((ra, ca), (rb, cb)) in zip(pairs.tolist(), link, cells.tolist()):
        assert lc == pytest.approx(expect[(i, j)], rel=1e-12)
        assert alloc[ra, ca] == i and alloc[rb, cb] == j
        path = trace_path(back, (ra, ca))[::-1] + trace_path(back, (rb, cb))
        assert path[0] == tuple(sources[i]) and path[-1] == tuple(sources[j])
        total = sum(_edge_weight(graph, path[k], path[k + 1]) for k in range(len(path) - 1))
        assert total == pytest.approx(lc, rel=1e-9)


def test_patch_sources_with_labels():
    """Reservoir patches as sources: every cell of a patch is a source carrying the
    patch id; allocation and adjacency are by patch id."""
    rng = np.random.default_rng(8)
    cost = rng.uniform(1, 20, (16, 18))
    patches = np.zeros(cost.shape, np.int32)
    patches[1:4, 1:5] = 7
    patches[10:14, 2:4] = 3
    patches[5:8, 12:17] = 12
    src = np.argwhere(patches > 0)
    labels = patches[src[:, 0], src[:, 1]]
    acc, _back, alloc = accumulated_cost(cost, src, source_labels=labels,
                                        return_backlinks=True, return_allocation=True)
    _assert_same(acc, _brute(cost, src))
    assert np.all(alloc[patches > 0] == patches[patches > 0])
    for pid in (3, 7, 12):
        own = _brute(cost, np.argwhere(patches == pid))
        others = np.fmin.reduce([_brute(cost, np.argwhere(patches == q)) for q in (3, 7, 12) if q != pid])
        zone = alloc == pid
        np.testing.assert_allclose(own[zone], acc[zone], rtol=1e-9)
        assert np.all(own[zone] <= others[zone] * (1 + 1e-9))
    pairs, _link, _cells = adjacent_sources(cost, acc, alloc)
    assert {tuple(p) for p in pairs.tolist()} <= {(3, 7), (3, 12), (7, 12)}
    assert len(pairs) >= 2
    with pytest.raises(ValueError, match="source_labels"):
        accumulated_cost(cost, src, source_labels=labels[:-1])


# ---------------------------------------------------------------------------
# File level
# ---------------------------------------------------------------------------
def _write_case(tmp_path, cost, nodata=None):
    import rasterio
    from rasterio.transform import Affine

    tr = Affine(25.0, 0.0, 700000.0, 0.0, -25.0, 6600000.0)
    path = tmp_path / "cost.tif"
    with rasterio.open(path, "w", driver="GTiff", height=cost.shape[0], width=cost.shape[1],
                       count=1, dtype=cost.dtype, crs="EPSG:2154", transform=tr,
                       nodata=nodata) as ds:
        ds.write(cost, 1)
    return path, tr


def _xy(tr, col, row):
    """Map coordinates of fractional (col, row) for a north-up transform."""
    return tr.c + col * tr.a, tr.f + row * tr.e


def _write_csv(path, rows, header=("x", "y")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_file_round_trip(tmp_path):
    import rasterio

    rng = np.random.default_rng(5)
    cost = rng.uniform(1, 50, (12, 15)).astype(np.float32)
    cost[3, 4:9] = -9999.0  # nodata
    cost[7, 2] = 0.0  # barrier
    tif, tr = _write_case(tmp_path, cost, nodata=-9999.0)
    # centre of cell (row 2, col 3) and a point inside cell (10, 12)
    pts = [_xy(tr, 3 + 0.5, 2 + 0.5), _xy(tr, 12 + 0.3, 10 + 0.9)]
    csv_path = _write_csv(tmp_path / "src.csv", [(f"{x:.3f}", f"{y:.3f}") for x, y in pts])
    out = tmp_path / "acc.tif"
    stats = cost_distance_file(str(tif), str(csv_path), str(out))
    assert stats["sources"] == 2 and stats["cells"] == 12 * 15
    mask = cost == -9999.0
    ref = accumulated_cost(cost, [[2, 3], [10, 12]], cell_size=25.0, nodata_mask=mask)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 2154
        assert ds.transform == tr
        assert ds.dtypes[0] == "float32" and ds.nodata == -1.0
        assert ds.profile["tiled"] and ds.profile["compress"].lower() == "zstd"
        got = ds.read(1)
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin].astype(np.float32), rtol=1e-6)
    assert np.all(got[~fin] == -1.0)
    assert np.all(got[mask] == -1.0) and got[7, 2] == -1.0
    assert stats["reached"] == int(fin.sum())
    assert stats["max_finite_cost"] == pytest.approx(float(ref[fin].max()))
    # per-cell units (GRASS r.cost) and max_cost
    stats1 = cost_distance_file(str(tif), str(csv_path), str(out), cell_size=1.0,
                                max_cost=100.0, knight=True)
    with rasterio.open(out) as ds:
        got1 = ds.read(1)
    ref1 = accumulated_cost(cost, [[2, 3], [10, 12]], nodata_mask=mask, max_cost=100.0, knight=True)
    fin1 = np.isfinite(ref1)
    np.testing.assert_allclose(got1[fin1], ref1[fin1].astype(np.float32), rtol=1e-6)
    assert np.all(got1[~fin1] == -1.0) and stats1["max_finite_cost"] <= 100.0


def test_file_errors_name_file_and_line(tmp_path):
    cost = np.full((6, 6), 3.0, dtype=np.float32)
    cost[0, 0] = -9999.0
    cost[5, 5] = np.nan
    tif, tr = _write_case(tmp_path, cost, nodata=-9999.0)
    inside = _xy(tr, 2.5, 2.5)
    out = str(tmp_path / "o.tif")
    bad = _write_csv(tmp_path / "bad.csv", [inside, (inside[0], 6600000.0 + 10.0)])
    with pytest.raises(ValueError, match=r"bad\.csv:3: .*outside the raster"):
        cost_distance_file(str(tif), str(bad), out)
    west = _write_csv(tmp_path / "west.csv", [(700000.0 - 1.0, inside[1])])
    with pytest.raises(ValueError, match=r"west\.csv:2: .*outside"):
        cost_distance_file(str(tif), str(west), out)
    nod = _write_csv(tmp_path / "nod.csv", [inside, inside, _xy(tr, 0.5, 0.5)])
    with pytest.raises(ValueError, match=r"nod\.csv:4: .*nodata"):
        cost_distance_file(str(tif), str(nod), out)
    nan = _write_csv(tmp_path / "nan.csv", [_xy(tr, 5.5, 5.5)])
    with pytest.raises(ValueError, match=r"nan\.csv:2: .*(nodata|barrier)"):
        cost_distance_file(str(tif), str(nan), out)
    hdr = _write_csv(tmp_path / "hdr.csv", [inside], header=("lon", "lat"))
    with pytest.raises(ValueError, match=r"hdr\.csv:1: .*'x' and 'y'"):
        cost_distance_file(str(tif), str(hdr), out)
    txt = tmp_path / "txt.csv"
    txt.write_text("x,y\n1,abc\n")
    with pytest.raises(ValueError, match=r"txt\.csv:2: cannot read"):
        cost_distance_file(str(tif), str(txt), out)
