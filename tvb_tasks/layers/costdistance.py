"""Exact accumulated cost-distance on a raster grid (GRASS ``r.cost`` semantics).

Model
-----
Every cell holds a *cost per unit of distance* (resistance). Moving from cell
``a`` to a neighbour ``b`` costs::

    orthogonal / diagonal (8 neighbours):  (cost[a] + cost[b]) / 2 * length(a -> b)
    knight's move (16 neighbours, knight=True):
        (cost[a] + cost[b] + cost[m1] + cost[m2]) / 4 * length(a -> b)

where ``length`` is the centre-to-centre distance in the units of ``cell_size``
(``1``, ``sqrt(2)`` or ``sqrt(5)`` cells for square cells) and ``m1``, ``m2`` are the
two cells the knight's move passes between (e.g. for a move of (-2 rows, -1 col) the
cells at (-1, 0) and (-1, -1)). This is exactly the rule of GRASS ``r.cost -k``
(its ``V_DIAG_fac`` / ``H_DIAG_fac`` branches); a knight's move is blocked if ``m1``
or ``m2`` is impassable. The 8-neighbour rule is also the one of
scikit-image's ``MCP_Geometric(fully_connected=True)``.

Sources have accumulated cost 0. The result is the minimum over all paths of the
sum of the edge costs (multi-source Dijkstra), in *cost x map unit* when
``cell_size`` is the pixel size (GRASS ``r.cost`` itself works in "cell" units,
i.e. ``cell_size=1``).

Conventions of the output (float64):

* impassable cells (cost NaN, +/-inf, <= 0, or masked) -> ``NaN``;
* passable cells not reached (isolated, or beyond ``max_cost``) -> ``+inf``.

Differences with ``r.cost``: ``r.cost`` accepts cost 0 (we treat <= 0 as barrier),
and with ``max_cost`` it keeps the tentative values of cells labelled but not
expanded; here every cell whose accumulated cost is ``> max_cost`` is ``+inf``.

Algorithm
---------
Dijkstra with a *bucket queue* (Dial's algorithm generalised to real weights): the
bucket width ``w`` is the smallest possible edge weight, ``min(passable cost) *
min(cell size)`` (shrunk by 1e-9 to absorb rounding). All the nodes of the lowest
non-empty bucket ``k`` have final distances: any relaxation from a node of bucket
``k`` adds at least ``w`` and so lands in bucket ``>= k + 1``. Hence the result is
exact: the same values as a binary-heap Dijkstra (bit-identical in the tests and
the benchmark; at most last-bit differences between equal-cost alternatives).
The buckets are a circular array (a power of two ``>= max edge / w + 2`` of
singly linked lists, plus a one-bit-per-bucket occupancy map to skip empty runs)
whose entries come from a small growable pool (lazy deletion: a cell may be queued
several times, the entry whose key equals its current distance is the live one).
The whole lowest bucket is taken at once, and the rows of the cells a few places
ahead are software-prefetched: Dijkstra on a large raster is bound by memory
latency, not arithmetic. When the cost dynamic range is too large for the ring
(``max edge / w > 2**22``, e.g. costs spanning more than 6 decades) a binary-heap
Dijkstra is used instead (same results, about 5x slower).

Sources may start at a cost > 0 (``source_costs``; used to seed a tile with its
neighbours' values, :mod:`tvb_tasks.layers.tiles`): they are sorted and enter the
ring when their bucket comes within its span; an empty queue jumps to the next one.
Ties: of several predecessors giving a cell exactly the same cost, the back-link and
the allocation come from the one with the lowest move index. Every such predecessor
is settled before the cell (its cost is lower by at least one bucket width), so the
rule does not depend on the settling order: back-links and allocation are functions
of the accumulated costs, which is what makes tiled runs identical to untiled ones.

Speed (3100 x 3100 float32, 50 sources, 8 neighbours, 2-core VM): ~0.9-1.3 s,
vs ~9-11 s for scikit-image ``MCP_Geometric`` and ~12-16 s for GRASS ``r.cost``
(see ``bench/cost_distance.py``). Knight's moves roughly double the time.

Memory (N cells): output float64 (8N) + optional back-links int8 (1N) + optional
allocation int32 (4N) + the queue (20 bytes per queued entry, proportional to the
front, typically < N/50) + the ring (4 bytes per bucket, e.g. 64 KB for costs
1-10000). The cost raster is used in place when it is a C-contiguous
float32/float64 array (other dtypes are converted: a copy).

Numba: kernels are compiled with ``cache=True`` (``nogil=True``, so several rasters
can be processed by threads in parallel; the kernel itself is sequential, Dijkstra
does not parallelise well). The first call in a fresh environment compiles (about
5 s for the first cost dtype, 2-3 s for the other; :func:`warm_up` does it ahead);
later processes load the machine code from the disk cache in well under a second.
Cache location, as numba chooses it: ``$NUMBA_CACHE_DIR`` if set, otherwise
``__pycache__`` next to this file, otherwise (read-only package directory) the
user-wide ``~/.cache/numba``; if nothing is writable the kernels fall back to
in-memory compilation once per process (checked: import and results unaffected).
In containers with a read-only image and home, set ``NUMBA_CACHE_DIR`` to a
writable volume to avoid recompiling in every task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "OFFSETS",
    "accumulated_cost",
    "adjacent_sources",
    "cost_distance_file",
    "trace_path",
    "warm_up",
]

# ---------------------------------------------------------------------------
# Neighbourhood
# ---------------------------------------------------------------------------
#: (drow, dcol) of the 16 moves. Indices 0-3 orthogonal, 4-7 diagonal, 8-15 knight.
#: A back-link value ``j >= 0`` at cell (r, c) means "reached from
#: (r - OFFSETS[j, 0], c - OFFSETS[j, 1])".
OFFSETS = np.array(
    [
        (0, -1), (0, 1), (-1, 0), (1, 0),            # W E N S
        (-1, -1), (-1, 1), (1, 1), (1, -1),          # NW NE SE SW
        (-2, -1), (-2, 1), (2, 1), (2, -1),          # NNW NNE SSE SSW
        (-1, -2), (-1, 2), (1, 2), (1, -2),          # WNW ENE ESE WSW
    ],
    dtype=np.int64,
)
# Cells a knight's move passes between: (m1, m2) offsets relative to the origin.
_KNIGHT_MID = np.zeros((16, 4), dtype=np.int64)
for _j in range(8, 16):
    _dr, _dc = OFFSETS[_j]
    if abs(_dr) == 2:
        _KNIGHT_MID[_j] = (_dr // 2, 0, _dr // 2, _dc)
    else:
        _KNIGHT_MID[_j] = (0, _dc // 2, _dr, _dc // 2)
del _j, _dr, _dc

#: Back-link codes that are not moves.
BACK_SOURCE = -1
BACK_NONE = -2

_MAX_BUCKETS = 1 << 22
_NO_KSTOP = np.int64(2**62)


def _jit(**kw):
    """``numba.njit(cache=True, **kw)``, falling back to no disk cache if no
    cache location is writable (numba raises at decoration time then)."""

    def deco(fn):
        try:
            return njit(cache=True, error_model="numpy", **kw)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, error_model="numpy", **kw)(fn)

    return deco


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------
@_jit(nogil=True)
def _cost_range(cost, mask, has_mask):
    """(min, max, n_passable) over passable cells (finite and > 0, not masked)."""
    lo = np.inf
    hi = 0.0
    n = 0
    flat = cost.ravel()
    mflat = mask.ravel()
    for i in range(flat.size):
        v = flat[i]
        if v > 0.0 and v < np.inf:
            if has_mask and mflat[i]:
                continue
            fv = float(v)
            if fv < lo:
                lo = fv
            if fv > hi:
                hi = fv
            n += 1
    return lo, hi, n


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Software prefetch of ``arr[idx]`` into cache (no bounds check: prefetching
    an invalid address is a no-op on the CPU, it never faults)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # rw=0 (read), locality=3 (keep in all cache levels), cache type=1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@_jit(nogil=True)
def _relax(u, d, H, W, cost, mask, has_mask, nnb, dr, dc, wf, mid, dist, back,
           want_back, alloc, want_alloc, max_cost, nbuf):
    """Relax the neighbours of settled node ``u`` (distance ``d``); write the
    improved neighbours into ``nbuf`` and return their count."""
    r = u // W
    c = u - r * W
    cu = np.float64(cost[u])
    n = 0
    jmax = nnb if nnb < 8 else 8
    for j in range(jmax):
        rr = r + dr[j]
        cc = c + dc[j]
        if rr < 0 or rr >= H or cc < 0 or cc >= W:
            continue
        v = rr * W + cc
        cv = cost[v]
        if not (cv > 0.0 and cv < np.inf):
            continue
        if has_mask and mask[v]:
            continue
        nd = d + (cu + np.float64(cv)) * wf[j]
        if nd < dist[v] and nd <= max_cost:
            dist[v] = nd
            if want_back:
                back[v] = j
            if want_alloc:
                alloc[v] = alloc[u]
            nbuf[n] = v
            n += 1
        elif want_back and nd == dist[v] and j < back[v]:
            back[v] = j  # equal-cost predecessor: the lowest move index wins
            if want_alloc:
                alloc[v] = alloc[u]
    for j in range(8, nnb):
        rr = r + dr[j]
        cc = c + dc[j]
        if rr < 0 or rr >= H or cc < 0 or cc >= W:
            continue
        v = rr * W + cc
        cv = cost[v]
        if not (cv > 0.0 and cv < np.inf):
            continue
        m1 = (r + mid[j, 0]) * W + (c + mid[j, 1])
        m2 = (r + mid[j, 2]) * W + (c + mid[j, 3])
        c1 = cost[m1]
        c2 = cost[m2]
        if not (c1 > 0.0 and c1 < np.inf and c2 > 0.0 and c2 < np.inf):
            continue
        if has_mask and (mask[v] or mask[m1] or mask[m2]):
            continue
        nd = d + (cu + np.float64(cv) + np.float64(c1) + np.float64(c2)) * wf[j]
        if nd < dist[v] and nd <= max_cost:
            dist[v] = nd
            if want_back:
                back[v] = j
            if want_alloc:
                alloc[v] = alloc[u]
            nbuf[n] = v
            n += 1
        elif want_back and nd == dist[v] and j < back[v]:
            back[v] = j  # equal-cost predecessor: the lowest move index wins
            if want_alloc:
                alloc[v] = alloc[u]
    return n


@_jit(nogil=True)
def _finish(cost, mask, has_mask, dist):
    """Impassable cells -> NaN (unreached passable cells stay +inf)."""
    for i in range(dist.size):
        v = cost[i]
        if not (v > 0.0 and v < np.inf) or (has_mask and mask[i]):
            dist[i] = np.nan


@_jit(nogil=True)
def _grow_i32(a):
    b = np.empty(2 * a.shape[0], dtype=np.int32)
    b[: a.shape[0]] = a
    return b


@_jit(nogil=True)
def _grow_f64(a):
    b = np.empty(2 * a.shape[0], dtype=np.float64)
    b[: a.shape[0]] = a
    return b


_PREFETCH_DIST = 4


@_jit(nogil=True)
def _dial_core(cost, mask, has_mask, H, W, nnb, dr, dc, wf, mid, max_cost, dist,
               back, want_back, alloc, want_alloc, inv_w, bmask, head, occ,
               e_node, e_next, e_key, batch, st, kstop):
    """Bucket-queue main loop. Never reallocates (array re-binding inside a hot
    numba loop costs reference counting on every iteration): returns 1 when the
    entry pool is nearly full so that the caller grows it and calls again
    (state in ``st``); 0 when the queue is empty; 2 when the next bucket to settle
    is beyond ``kstop`` (seeded runs: ``st[0]`` is then that bucket, not opened).

    The lowest non-empty bucket ``k`` is moved at once into ``batch`` (its nodes
    are all final), which lets the CPU prefetch the rows of upcoming nodes."""
    k = st[0]
    free = st[1]
    used = st[2]
    count = st[3]
    nb = st[4]
    ib = st[5]
    settled = st[6]
    cap = e_node.shape[0]
    pd = _PREFETCH_DIST
    status = 0
    while True:
        if ib >= nb:
            if count == 0:
                break
            # next non-empty bucket; ``occ`` has one bit per bucket so long runs
            # of empty buckets (very expensive cells) are skipped 64 at a time
            slot = k & bmask
            while True:
                word = occ[slot >> 6] >> np.uint64(slot & 63)
                if word != 0:
                    while (word & np.uint64(1)) == 0:
                        word >>= np.uint64(1)
                        k += 1
                    break
                k += 64 - (slot & 63)
                slot = k & bmask
            if k > kstop:
                status = 2
                break
            slot = k & bmask
            e = head[slot]
            head[slot] = -1
            occ[slot >> 6] &= ~(np.uint64(1) << np.uint64(slot & 63))
            nb = 0
            ib = 0
            while e >= 0:
                nx = e_next[e]
                u = e_node[e]
                if e_key[e] == dist[u]:  # else stale: improved since queued
                    batch[nb] = u
                    nb += 1
                e_next[e] = free
                free = e
                count -= 1
                e = nx
            settled += nb
            if nb == 0:
                k += 1
                continue
        if cap - count < 17:
            status = 1
            break
        if ib + pd < nb:
            p = np.int64(batch[ib + pd])
            _prefetch(dist, p - W)
            _prefetch(dist, p)
            _prefetch(dist, p + W)
            _prefetch(cost, p - W)
            _prefetch(cost, p)
            _prefetch(cost, p + W)
            if nnb > 8:
                _prefetch(dist, p - 2 * W)
                _prefetch(dist, p + 2 * W)
                _prefetch(cost, p - 2 * W)
                _prefetch(cost, p + 2 * W)
            if want_alloc:
                _prefetch(alloc, p - W)
                _prefetch(alloc, p)
                _prefetch(alloc, p + W)
            if want_back:
                _prefetch(back, p - W)
                _prefetch(back, p)
                _prefetch(back, p + W)
        u = np.int64(batch[ib])
        ib += 1
        d = dist[u]
        r = u // W
        c = u - r * W
        cu = np.float64(cost[u])
        au = alloc[u] if want_alloc else 0
        for j in range(nnb):
            rr = r + dr[j]
            cc = c + dc[j]
            if rr < 0 or rr >= H or cc < 0 or cc >= W:
                continue
            v = rr * W + cc
            cv = cost[v]
            if not (cv > 0.0 and cv < np.inf):
                continue
            if has_mask and mask[v]:
                continue
            if j < 8:
                nd = d + (cu + np.float64(cv)) * wf[j]
            else:
                m1 = (r + mid[j, 0]) * W + (c + mid[j, 1])
                m2 = (r + mid[j, 2]) * W + (c + mid[j, 3])
                c1 = cost[m1]
                c2 = cost[m2]
                if not (c1 > 0.0 and c1 < np.inf and c2 > 0.0 and c2 < np.inf):
                    continue
                if has_mask and (mask[m1] or mask[m2]):
                    continue
                nd = d + (cu + np.float64(cv) + np.float64(c1) + np.float64(c2)) * wf[j]
            if nd < dist[v] and nd <= max_cost:
                dist[v] = nd
                if want_back:
                    back[v] = j
                if want_alloc:
                    alloc[v] = au
                kb = np.int64(nd * inv_w)
                if kb <= k:  # rounding guard: relaxations go to a later bucket
                    kb = k + 1
                if free >= 0:
                    e = free
                    free = e_next[e]
                else:
                    e = used
                    used += 1
                bs = kb & bmask
                e_node[e] = v
                e_key[e] = nd
                e_next[e] = head[bs]
                head[bs] = e
                occ[bs >> 6] |= np.uint64(1) << np.uint64(bs & 63)
                count += 1
            elif want_back and nd == dist[v] and j < back[v]:
                back[v] = j  # equal-cost predecessor: the lowest move index wins
                if want_alloc:
                    alloc[v] = au
        if ib == nb:
            k += 1
    st[0] = k
    st[1] = free
    st[2] = used
    st[3] = count
    st[4] = nb
    st[5] = ib
    st[6] = settled
    return status


@_jit(nogil=True)
def _dial(cost, mask, has_mask, H, W, src, labels, nnb, dr, dc, wf, mid, max_cost,
          width, nbuckets, dist, back, want_back, alloc, want_alloc, cap0):
    """Bucket-queue Dijkstra (``nbuckets`` a power of two >= 64). Flat C-order arrays.
    Returns the number of settled cells."""
    head = np.full(nbuckets, -1, dtype=np.int32)
    occ = np.zeros(nbuckets >> 6, dtype=np.uint64)
    occ[0] = 1
    cap = max(cap0, src.shape[0] + 64)
    e_node = np.empty(cap, dtype=np.int32)
    e_next = np.empty(cap, dtype=np.int32)
    e_key = np.empty(cap, dtype=np.float64)
    batch = np.empty(cap, dtype=np.int32)
    used = 0
    for s in range(src.shape[0]):
        u = src[s]
        if dist[u] == 0.0:
            continue  # duplicate source: the first one wins
        dist[u] = 0.0
        if want_back:
            back[u] = -1
        if want_alloc:
            alloc[u] = labels[s]
        e_node[used] = u
        e_key[used] = 0.0
        e_next[used] = head[0]
        head[0] = used
        used += 1
    st = np.zeros(8, dtype=np.int64)
    st[1] = -1
    st[2] = used
    st[3] = used
    while _dial_core(cost, mask, has_mask, H, W, nnb, dr, dc, wf, mid, max_cost,
                     dist, back, want_back, alloc, want_alloc, 1.0 / width,
                     nbuckets - 1, head, occ, e_node, e_next, e_key, batch, st,
                     _NO_KSTOP):
        e_node = _grow_i32(e_node)
        e_next = _grow_i32(e_next)
        e_key = _grow_f64(e_key)
        batch = _grow_i32(batch)
    return st[6]


@_jit(nogil=True)
def _dial_seeded(cost, mask, has_mask, H, W, src, src_cost, labels, nnb, dr, dc, wf, mid,
                 max_cost, width, nbuckets, dist, back, want_back, alloc, want_alloc, cap0):
    """Bucket-queue Dijkstra from sources with start costs (``src_cost`` sorted
    ascending, any range): same main loop as :func:`_dial`; a source enters the
    ring only once its bucket is within ``nbuckets`` of the lowest open bucket, and
    the queue jumps to the next source's bucket when it runs empty. Returns #settled."""
    head = np.full(nbuckets, -1, dtype=np.int32)
    occ = np.zeros(nbuckets >> 6, dtype=np.uint64)
    cap = max(cap0, 64)
    e_node = np.empty(cap, dtype=np.int32)
    e_next = np.empty(cap, dtype=np.int32)
    e_key = np.empty(cap, dtype=np.float64)
    batch = np.empty(cap, dtype=np.int32)
    inv_w = 1.0 / width
    bmask = nbuckets - 1
    st = np.zeros(8, dtype=np.int64)
    st[1] = -1
    n = src.shape[0]
    i = 0
    status = 0
    while True:
        if status != 1:
            if st[3] == 0:
                if i >= n:
                    break
                kb = np.int64(src_cost[i] * inv_w)  # queue empty: jump to the next source
                if kb > st[0]:
                    st[0] = kb
            klim = st[0] + nbuckets
            while i < n:
                d0 = src_cost[i]
                kb = np.int64(d0 * inv_w)
                if kb >= klim:
                    break
                u = src[i]
                i += 1
                if not (d0 < dist[u] and d0 <= max_cost):
                    continue  # duplicate source: the first one wins
                dist[u] = d0
                if want_back:
                    back[u] = -1
                if want_alloc:
                    alloc[u] = labels[i - 1]
                if kb < st[0]:
                    kb = st[0]
                while e_node.shape[0] - st[3] < 18:
                    e_node = _grow_i32(e_node)
                    e_next = _grow_i32(e_next)
                    e_key = _grow_f64(e_key)
                    batch = _grow_i32(batch)
                free = st[1]
                if free >= 0:
                    e = free
                    st[1] = e_next[e]
                else:
                    e = st[2]
                    st[2] += 1
                bs = kb & bmask
                e_node[e] = u
                e_key[e] = d0
                e_next[e] = head[bs]
                head[bs] = e
                occ[bs >> 6] |= np.uint64(1) << np.uint64(bs & 63)
                st[3] += 1
        # settle every bucket below the one where the next pending source fits the ring
        kstop = _NO_KSTOP if i >= n else np.int64(src_cost[i] * inv_w) - nbuckets
        status = _dial_core(cost, mask, has_mask, H, W, nnb, dr, dc, wf, mid, max_cost,
                            dist, back, want_back, alloc, want_alloc, inv_w, bmask,
                            head, occ, e_node, e_next, e_key, batch, st, kstop)
        if status == 1:
            e_node = _grow_i32(e_node)
            e_next = _grow_i32(e_next)
            e_key = _grow_f64(e_key)
            batch = _grow_i32(batch)
        elif status == 2:
            st[0] = kstop + 1  # buckets up to the next non-empty one are empty
        elif i >= n:
            break
    return st[6]


@_jit(nogil=True)
def _heap_core(cost, mask, has_mask, H, W, nnb, dr, dc, wf, mid, max_cost, dist,
               back, want_back, alloc, want_alloc, hk, hn, nbuf, st):
    """Binary-heap main loop (lazy deletion); returns 1 when the heap arrays
    must grow (state in ``st``), 0 when done."""
    size = st[0]
    settled = st[1]
    cap = hk.shape[0]
    status = 0
    while size > 0:
        if cap - size < 17:
            status = 1
            break
        key = hk[0]
        u = np.int64(hn[0])
        size -= 1
        if size > 0:
            lk = hk[size]
            ln = hn[size]
            pos = 0
            while True:
                ch = 2 * pos + 1
                if ch >= size:
                    break
                if ch + 1 < size and hk[ch + 1] < hk[ch]:
                    ch += 1
                if hk[ch] >= lk:
                    break
                hk[pos] = hk[ch]
                hn[pos] = hn[ch]
                pos = ch
            hk[pos] = lk
            hn[pos] = ln
        if key != dist[u]:
            continue  # stale
        settled += 1
        n = _relax(u, key, H, W, cost, mask, has_mask, nnb, dr, dc, wf, mid,
                   dist, back, want_back, alloc, want_alloc, max_cost, nbuf)
        for i in range(n):
            v = nbuf[i]
            nd = dist[v]
            pos = size
            size += 1
            while pos > 0:
                par = (pos - 1) >> 1
                if hk[par] <= nd:
                    break
                hk[pos] = hk[par]
                hn[pos] = hn[par]
                pos = par
            hk[pos] = nd
            hn[pos] = v
    st[0] = size
    st[1] = settled
    return status


@_jit(nogil=True)
def _heap_dijkstra(cost, mask, has_mask, H, W, src, src_cost, labels, nnb, dr, dc, wf, mid,
                   max_cost, dist, back, want_back, alloc, want_alloc, cap0):
    """Binary-heap Dijkstra (fallback for extreme cost ranges). ``src_cost``: start
    costs, sorted ascending (a sorted array is a heap). Returns #settled."""
    cap = max(cap0, src.shape[0] + 64)
    hk = np.empty(cap, dtype=np.float64)
    hn = np.empty(cap, dtype=np.int32)
    nbuf = np.empty(16, dtype=np.int64)
    size = 0
    for s in range(src.shape[0]):
        u = src[s]
        if not (src_cost[s] < dist[u] and src_cost[s] <= max_cost):
            continue  # duplicate source: the first one wins
        dist[u] = src_cost[s]
        if want_back:
            back[u] = -1
        if want_alloc:
            alloc[u] = labels[s]
        hk[size] = src_cost[s]  # keys sorted ascending: already a heap
        hn[size] = u
        size += 1
    st = np.zeros(2, dtype=np.int64)
    st[0] = size
    while _heap_core(cost, mask, has_mask, H, W, nnb, dr, dc, wf, mid, max_cost,
                     dist, back, want_back, alloc, want_alloc, hk, hn, nbuf, st):
        hk = _grow_f64(hk)
        hn = _grow_i32(hn)
    return st[1]


@_jit(nogil=True)
def _adjacent(cost, mask, has_mask, H, W, acc, alloc, nnb, dr, dc, wf, mid, nsrc):
    """For every pair of allocation zones that touch (through a legal move),
    the cheapest crossing ``acc[a] + edge(a, b) + acc[b]`` and its cells."""
    best = {}
    for u in range(H * W):
        au = alloc[u]
        if au < 0:
            continue
        r = u // W
        c = u - r * W
        cu = float(cost[u])
        for j in range(nnb):
            # each unordered edge once: only moves with a positive flat offset
            if dr[j] < 0 or (dr[j] == 0 and dc[j] < 0):
                continue
            rr = r + dr[j]
            cc = c + dc[j]
            if rr < 0 or rr >= H or cc < 0 or cc >= W:
                continue
            v = rr * W + cc
            av = alloc[v]
            if av < 0 or av == au:
                continue
            cv = float(cost[v])
            if j < 8:
                w = (cu + cv) * wf[j]
            else:
                m1 = (r + mid[j, 0]) * W + (c + mid[j, 1])
                m2 = (r + mid[j, 2]) * W + (c + mid[j, 3])
                c1 = cost[m1]
                c2 = cost[m2]
                if not (c1 > 0.0 and c1 < np.inf and c2 > 0.0 and c2 < np.inf):
                    continue
                if has_mask and (mask[m1] or mask[m2]):
                    continue
                w = (cu + cv + float(c1) + float(c2)) * wf[j]
            tot = acc[u] + w + acc[v]
            if au < av:
                key = np.int64(au) * nsrc + av
                a, b = u, v
            else:
                key = np.int64(av) * nsrc + au
                a, b = v, u
            if key in best:
                if tot < best[key][0]:
                    best[key] = (tot, np.int64(a), np.int64(b))
            else:
                best[key] = (tot, np.int64(a), np.int64(b))
    n = len(best)
    out_ij = np.empty((n, 2), dtype=np.int64)
    out_c = np.empty(n, dtype=np.float64)
    out_ab = np.empty((n, 2), dtype=np.int64)
    i = 0
    for key, val in best.items():
        out_ij[i, 0] = key // nsrc
        out_ij[i, 1] = key % nsrc
        out_c[i] = val[0]
        out_ab[i, 0] = val[1]
        out_ab[i, 1] = val[2]
        i += 1  # noqa: SIM113 - numba kernel: a plain counter over the typed dict
    return out_ij, out_c, out_ab


# ---------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------
def _cell_sizes(cell_size: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(cell_size) == 0:
        dy = dx = float(cell_size)  # type: ignore[arg-type]
    else:
        dy, dx = (float(v) for v in cell_size)  # type: ignore[union-attr]
    for v in (dy, dx):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"cell_size must be finite and > 0, got {cell_size!r}")
    return dy, dx


def _tables(knight: bool, dy: float, dx: float):
    """Move tables: (nnb, drow, dcol, weight factor, knight mid-cells)."""
    nnb = 16 if knight else 8
    dr = np.ascontiguousarray(OFFSETS[:, 0])
    dc = np.ascontiguousarray(OFFSETS[:, 1])
    wf = np.array([math.hypot(dr[j] * dy, dc[j] * dx) / (2.0 if j < 8 else 4.0)
                   for j in range(16)])
    return nnb, dr, dc, wf, _KNIGHT_MID


def _prepare_cost(cost, nodata_mask):
    cost = np.asarray(cost)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D array, got shape {cost.shape}")
    if cost.dtype not in (np.float32, np.float64):
        if (cost.dtype.kind in "biu" and cost.dtype.itemsize <= 2) or cost.dtype == np.float16:
            cost = cost.astype(np.float32)
        else:
            cost = cost.astype(np.float64)
    cost = np.ascontiguousarray(cost)
    if nodata_mask is None:
        mask = np.zeros(1, dtype=np.bool_)
        has_mask = False
    else:
        mask = np.ascontiguousarray(np.asarray(nodata_mask, dtype=np.bool_))
        if mask.shape != cost.shape:
            raise ValueError(
                f"nodata_mask shape {mask.shape} differs from cost shape {cost.shape}")
        has_mask = True
    return cost, mask, has_mask


def _passable(cost, mask, has_mask, r: int, c: int) -> bool:
    v = cost[r, c]
    return bool(v > 0 and np.isfinite(v) and not (has_mask and mask[r, c]))


def _check_sources(cost, mask, has_mask: bool, sources, source_labels):
    """Validated ``(sources (N, 2) int64, labels (N,) int32)`` (clear ``ValueError`` otherwise)."""
    H, W = cost.shape
    src = np.asarray(sources)
    if src.ndim == 1 and src.size == 2:
        src = src.reshape(1, 2)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape[0] == 0:
        raise ValueError(f"sources must be a non-empty (N, 2) array of (row, col), got shape {src.shape}")
    if src.dtype.kind not in "iu" and not np.all(np.equal(np.mod(src, 1), 0)):
        raise ValueError("sources must be integer (row, col) indices")
    src = src.astype(np.int64)
    rs, cs_ = src[:, 0], src[:, 1]
    outside = (rs < 0) | (rs >= H) | (cs_ < 0) | (cs_ >= W)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"source #{i} (row={rs[i]}, col={cs_[i]}) is outside the raster ({H} x {W})")
    sv = cost[rs, cs_]
    bad = ~((sv > 0) & np.isfinite(sv))
    if has_mask:
        bad |= mask[rs, cs_]
    if bad.any():
        i = int(np.argmax(bad))
        r, c = int(rs[i]), int(cs_[i])
        raise ValueError(
            f"source #{i} (row={r}, col={c}) is on an impassable cell "
            f"(cost={cost[r, c]!r}{', masked' if has_mask and mask[r, c] else ''})")
    if source_labels is None:
        labels = np.arange(src.shape[0], dtype=np.int32)
    else:
        labels = np.asarray(source_labels)
        if labels.shape != (src.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError("source_labels must be an integer array with one label per source")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
            raise ValueError("source_labels must be in [0, 2**31 - 1]")
        labels = labels.astype(np.int32)
    return src, labels

def accumulated_cost(
    cost: np.ndarray,
    sources: np.ndarray,
    *,
    cell_size: float | Sequence[float] = 1.0,
    knight: bool = False,
    max_cost: float | None = None,
    nodata_mask: np.ndarray | None = None,
    return_backlinks: bool = False,
    return_allocation: bool = False,
    source_labels: np.ndarray | None = None,
    source_costs: np.ndarray | None = None,
):
    """Accumulated least-cost distance from the nearest source (GRASS ``r.cost``).

    Parameters
    ----------
    cost : (H, W) array
        Cost per unit of distance (resistance). NaN, +/-inf and values <= 0 are
        impassable. float32/float64 are used in place; other dtypes are converted.
    sources : (N, 2) int array
        (row, col) of the source cells (accumulated cost 0). Must be inside the
        raster and on passable cells (``ValueError`` otherwise). Duplicates allowed.
    cell_size : float or (row_size, col_size)
        Cell size in map units (e.g. metres); edge lengths are centre-to-centre
        distances in these units. ``1`` gives GRASS ``r.cost`` "cell" units.
    knight : bool
        16 neighbours (knight's moves of length sqrt(5) cells, cost = mean of the
        two end cells and the two cells passed between, as ``r.cost -k``).
    max_cost : float, optional
        Cut-off: cells whose accumulated cost is ``> max_cost`` are ``+inf`` and not
        expanded (also makes the computation faster).
    nodata_mask : (H, W) bool array, optional
        True = impassable (nodata) cell.
    return_backlinks : bool
        Also return the int8 back-link raster: ``j >= 0`` -> the cell was reached
        from ``(r, c) - OFFSETS[j]``; ``-1`` = source; ``-2`` = not reached /
        impassable. Use :func:`trace_path`.
    return_allocation : bool
        Also return the int32 allocation raster: index (into ``sources``) of the
        source each cell is cheapest to reach from; ``-1`` = not reached.
    source_labels : (N,) int array, optional
        Values written in the allocation raster instead of the source index
        (e.g. the reservoir id of each source cell when sources are whole
        patches, ``np.argwhere(patches > 0)``). Must be in ``[0, 2**31 - 1]``.
    source_costs : (N,) float array, optional
        Start cost of each source (default 0): the result is the minimum over sources
        of start cost + path cost (a source whose start cost is above ``max_cost``, or
        not below the cost already reached at its cell, is ignored). Used by
        :mod:`tvb_tasks.layers.tiles` to seed a tile with its neighbours' values.

    Ties: when several predecessors give a cell exactly the same accumulated cost
    (same float64 value), the back-link (and the allocation) comes from the one with
    the lowest move index in :data:`OFFSETS`, whatever the order in which the queue
    settles them; a duplicate source cell keeps its first occurrence (lowest start
    cost first). So back-links and allocation are a function of the accumulated
    costs alone, which makes tiled runs identical to untiled ones.

    Returns
    -------
    acc : (H, W) float64
        Accumulated cost (cost x ``cell_size`` units); ``0`` at sources, ``NaN`` on
        impassable cells, ``+inf`` on passable cells that are unreachable or beyond
        ``max_cost``.
    If ``return_backlinks`` and/or ``return_allocation``: a tuple
    ``(acc[, backlinks][, allocation])`` in that order.
    """
    cost, mask, has_mask = _prepare_cost(cost, nodata_mask)
    H, W = cost.shape
    if H * W >= 2**31 - 64:
        raise ValueError(f"raster too large ({H} x {W}): at most 2**31 cells (int32 queue)")
    src, labels = _check_sources(cost, mask, has_mask, sources, source_labels)
    if source_costs is None:
        start = None
    else:
        start = np.asarray(source_costs, dtype=np.float64)
        if start.shape != (src.shape[0],) or not np.all(start >= 0) or not np.all(np.isfinite(start)):
            raise ValueError("source_costs must be finite, >= 0, one per source")
        if not start.any():
            start = None
    dy, dx = _cell_sizes(cell_size)
    mc = np.inf if max_cost is None else float(max_cost)
    if not (mc >= 0):
        raise ValueError(f"max_cost must be >= 0, got {max_cost!r}")
    nnb, dr, dc, wf, mid = _tables(knight, dy, dx)

    cflat = cost.reshape(-1)
    mflat = mask.reshape(-1)
    dist = np.full(H * W, np.inf, dtype=np.float64)
    # back-links are also kept (internally) for the allocation: its tie rule needs them
    want_back = return_backlinks or return_allocation
    back = (np.full(H * W, BACK_NONE, dtype=np.int8) if want_back
            else np.empty(1, dtype=np.int8))
    alloc = (np.full(H * W, -1, dtype=np.int32) if return_allocation
             else np.empty(1, dtype=np.int32))
    flat_src = src[:, 0] * W + src[:, 1]

    lo, hi, _n = _cost_range(cost, mask, has_mask)
    # Bucket width = smallest possible edge weight (two cheapest cells, shortest
    # step), shrunk by 1e-9 so that floating-point rounding of the bucket index
    # can never put an improvable node in the bucket being settled.
    width = lo * min(dy, dx) * (1.0 - 1e-9)
    max_len = max(float(wf[j]) * (2.0 if j < 8 else 4.0) for j in range(nnb))
    ratio = hi * max_len / width if width > 0 else math.inf
    cap0 = max(1 << 16, (H * W) >> 6)
    nbuckets = 1 << max(6, math.ceil(math.log2(ratio + 2))) if ratio < 1e18 else 0
    if start is None:
        zeros = np.zeros(flat_src.shape[0], dtype=np.float64)
    else:  # sources in ascending start cost (stable: first occurrence first)
        order = np.argsort(start, kind="stable")
        flat_src, labels, start = flat_src[order], labels[order], start[order]
    if 0 < nbuckets <= _MAX_BUCKETS:
        if start is None:
            _dial(cflat, mflat, has_mask, H, W, flat_src, labels, nnb, dr, dc, wf, mid, mc,
                  width, nbuckets, dist, back, want_back, alloc,
                  return_allocation, cap0)
        else:
            _dial_seeded(cflat, mflat, has_mask, H, W, flat_src, start, labels, nnb, dr, dc,
                         wf, mid, mc, width, nbuckets, dist, back, want_back, alloc,
                         return_allocation, cap0)
    else:
        _heap_dijkstra(cflat, mflat, has_mask, H, W, flat_src, zeros if start is None else start,
                       labels, nnb, dr, dc, wf, mid, mc, dist, back, want_back, alloc,
                       return_allocation, cap0)
    _finish(cflat, mflat, has_mask, dist)

    acc = dist.reshape(H, W)
    if not (return_backlinks or return_allocation):
        return acc
    out = [acc]
    if return_backlinks:
        out.append(back.reshape(H, W))
    if return_allocation:
        out.append(alloc.reshape(H, W))
    return tuple(out)


def trace_path(backlinks: np.ndarray, start_rc: tuple[int, int]) -> list[tuple[int, int]]:
    """Least-cost path from ``start_rc`` (row, col) back to its source.

    ``backlinks`` is the raster returned with ``return_backlinks=True``. Returns the
    list of (row, col) from ``start_rc`` to the source cell (both included).
    Raises ``ValueError`` if the start cell was not reached.
    """
    H, W = backlinks.shape
    r, c = int(start_rc[0]), int(start_rc[1])
    if not (0 <= r < H and 0 <= c < W):
        raise ValueError(f"start cell {start_rc} is outside the raster ({H} x {W})")
    if backlinks[r, c] == BACK_NONE:
        raise ValueError(f"start cell {start_rc} was not reached (impassable, isolated or beyond max_cost)")
    path = [(r, c)]
    for _ in range(H * W):
        j = int(backlinks[r, c])
        if j == BACK_SOURCE:
            return path
        if j < 0 or j >= 16:
            raise ValueError(f"invalid back-link {j} at {(r, c)}")
        r -= int(OFFSETS[j, 0])
        c -= int(OFFSETS[j, 1])
        path.append((r, c))
    raise ValueError("back-links contain a cycle")  # cannot happen with our output


def adjacent_sources(
    cost: np.ndarray,
    accumulated: np.ndarray,
    allocation: np.ndarray,
    *,
    cell_size: float | Sequence[float] = 1.0,
    knight: bool = False,
    nodata_mask: np.ndarray | None = None,
):
    """Pairs of sources whose allocation zones touch, with the cheapest crossing.

    For each pair ``(i, j)`` (``i < j``, allocation values: indices into the
    ``sources`` given to :func:`accumulated_cost`, or their ``source_labels``) of
    zones that touch through a legal move ``a -> b``
    (``a`` in zone i, ``b`` in zone j), returns the minimum of
    ``accumulated[a] + edge(a, b) + accumulated[b]`` (same units as ``accumulated``)
    and the cells ``a``, ``b`` realising it: the least-cost path between the two
    sources through their zones is ``trace_path(back, a)[::-1] + trace_path(back, b)``.
    Use the same ``cell_size`` / ``knight`` / ``nodata_mask`` as for the distances.

    Returns ``(pairs (M, 2) int64, link_cost (M,) float64, cells (M, 2, 2) int64)``
    sorted by pair; ``cells[k] = [[row_a, col_a], [row_b, col_b]]``.
    """
    cost, mask, has_mask = _prepare_cost(cost, nodata_mask)
    H, W = cost.shape
    if accumulated.shape != cost.shape or allocation.shape != cost.shape:
        raise ValueError("cost, accumulated and allocation must have the same shape")
    dy, dx = _cell_sizes(cell_size)
    nnb, dr, dc, wf, mid = _tables(knight, dy, dx)
    alloc = np.ascontiguousarray(allocation, dtype=np.int32).reshape(-1)
    acc = np.ascontiguousarray(accumulated, dtype=np.float64).reshape(-1)
    nsrc = int(alloc.max()) + 1 if alloc.size else 0
    ij, lc, ab = _adjacent(cost.reshape(-1), mask.reshape(-1), has_mask, H, W, acc,
                           alloc, nnb, dr, dc, wf, mid, max(nsrc, 1))
    order = np.lexsort((ij[:, 1], ij[:, 0]))
    ij, lc, ab = ij[order], lc[order], ab[order]
    cells = np.stack([np.stack([ab[:, 0] // W, ab[:, 0] % W], axis=1),
                      np.stack([ab[:, 1] // W, ab[:, 1] % W], axis=1)], axis=1)
    return ij, lc, cells


def warm_up() -> float:
    """Compile (or load from the numba cache) the bucket-queue kernels for float32
    and float64 costs (8 and 16 neighbours share them). Returns the seconds spent."""
    t0 = time.perf_counter()
    for dt in (np.float32, np.float64):
        c = np.ones((5, 5), dtype=dt)
        for kn in (False, True):
            accumulated_cost(c, np.array([[2, 2]]), knight=kn, return_backlinks=True,
                             return_allocation=True)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# File level
# ---------------------------------------------------------------------------
def _read_sources_csv(path: str, transform, shape, cost, mask, has_mask: bool, cost_tif: str):
    """Parse ``x,y`` (map coordinates) -> (N, 2) row/col with clear errors."""
    import csv

    H, W = shape
    rows: list[tuple[int, int]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file (expected a header 'x,y')") from None
        names = [h.strip().lower() for h in header]
        if "x" not in names or "y" not in names:
            raise ValueError(f"{path}:1: header must contain columns 'x' and 'y', got {header}")
        ix, iy = names.index("x"), names.index("y")
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not f.strip() for f in rec):
                continue
            try:
                x = float(rec[ix])
                y = float(rec[iy])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: cannot read x,y from {rec}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{path}:{lineno}: non-finite coordinates ({x}, {y})")
            fc = (x - transform.c) / transform.a  # no rotation (checked by the caller)
            fr = (y - transform.f) / transform.e
            c, r = math.floor(fc), math.floor(fr)
            if not (0 <= r < H and 0 <= c < W):
                raise ValueError(
                    f"{path}:{lineno}: source ({x}, {y}) is outside the raster {cost_tif} "
                    f"(row={r}, col={c}, raster {H} x {W})")
            if not _passable(cost, mask, has_mask, r, c):
                v = cost[r, c]
                why = "nodata" if (has_mask and mask[r, c]) else f"barrier (cost={v!r})"
                raise ValueError(
                    f"{path}:{lineno}: source ({x}, {y}) falls on a {why} cell of {cost_tif} "
                    f"(row={r}, col={c})")
            rows.append((r, c))
    if not rows:
        raise ValueError(f"{path}: no source point")
    return np.array(rows, dtype=np.int64)


@_jit(nogil=True)
def _to_output(acc, out, nodata):
    """float64 accumulated cost -> float32 ``out`` with ``nodata`` for NaN/+inf, in one
    pass; returns (number of finite cells, largest finite value or NaN)."""
    n = 0
    hi = -np.inf
    for i in range(acc.size):
        v = acc[i]
        if v - v == 0.0:  # finite
            out[i] = np.float32(v)
            n += 1
            if v > hi:
                hi = v
        else:
            out[i] = nodata
    return n, (hi if n > 0 else np.nan)


#: GeoTIFF creation options of :func:`cost_distance_file`: ZSTD level 1 with horizontal
#: differencing (lossless) costs about 0.1 s of CPU for 3100 x 3100 cells, against 0.6 s
#: for DEFLATE with the floating-point predictor (the former default), for a file about
#: 10 % larger (27 vs 24 MB on ``bench/cost_distance.py``'s raster; ZSTD + predictor 3:
#: 24 MB for 0.18 s); GDAL compresses the 256 x 256 blocks on every core (``NUM_THREADS``).
OUTPUT_OPTIONS = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "zstd",
                  "zstd_level": 1, "predictor": 2, "BIGTIFF": "IF_SAFER", "num_threads": "ALL_CPUS"}


def _read_cost(cost_tif: str):
    """(cost band 1, nodata mask or None, transform, crs) with one decoding of the file
    (multi-threaded): the mask comes from the nodata value when that is the only mask."""
    import rasterio
    from rasterio.enums import MaskFlags

    with rasterio.open(cost_tif, num_threads="ALL_CPUS") as ds:
        tr = ds.transform
        if tr.b != 0 or tr.d != 0:
            raise ValueError(f"{cost_tif}: rotated/sheared geotransform is not supported")
        cost = ds.read(1)
        flags = ds.mask_flag_enums[0]
        if MaskFlags.all_valid in flags:
            mask = None
        elif flags == [MaskFlags.nodata]:
            nd = ds.nodata
            mask = np.isnan(cost) if (cost.dtype.kind == "f" and np.isnan(nd)) else cost == nd
        else:
            mask = ds.read_masks(1) == 0
        crs = ds.crs
    if mask is not None and cost.dtype.kind == "f":
        mask |= ~np.isfinite(cost)
    if mask is not None and not mask.any():
        mask = None
    return cost, mask, tr, crs


def cost_distance_file(
    cost_tif: str,
    sources_csv: str,
    out_tif: str,
    *,
    knight: bool = False,
    max_cost: float | None = None,
    cell_size: float | None = None,
) -> dict:
    """Accumulated cost GeoTIFF from a cost GeoTIFF and a CSV of source points.

    * ``cost_tif``: band 1 is the cost per map unit; its nodata / mask cells, NaN
      and values <= 0 are barriers. Rotated/sheared transforms are refused.
    * ``sources_csv``: header with columns ``x,y`` (other columns ignored), map
      coordinates in the raster's CRS; a point falls in the cell containing it.
      A point outside the raster or on a nodata/barrier cell raises ``ValueError``
      naming the file and line.
    * ``cell_size``: ``None`` (default) = the pixel size of the raster (output in
      cost x map units, e.g. cost x metres); ``1`` = per-cell units like GRASS
      ``r.cost``. ``max_cost`` is in the same units as the output.
    * ``out_tif``: float32 GeoTIFF, same CRS/transform, tiled 256 x 256, ZSTD
      (:data:`OUTPUT_OPTIONS`), ``nodata = -1`` for barriers, unreachable cells and
      cells beyond ``max_cost``.

    The kernels are loaded from the numba cache in a second thread while GDAL
    decodes the input (the first numba call of a process costs about a second).

    Returns ``{"cells", "reached", "sources", "seconds", "max_finite_cost",
    "cell_size", "out"}`` (``seconds`` = whole call, I/O included).
    """
    import threading

    import rasterio

    t0 = time.perf_counter()
    loader = threading.Thread(target=_load_kernels, args=(knight,), daemon=True)
    loader.start()
    try:
        cost, mask, tr, crs = _read_cost(cost_tif)
    finally:
        loader.join()
    shape = cost.shape
    cs: float | tuple[float, float] = (abs(tr.e), abs(tr.a)) if cell_size is None else float(cell_size)
    cost, mask_p, has_mask = _prepare_cost(cost, mask)
    src = _read_sources_csv(sources_csv, tr, shape, cost, mask_p, has_mask, cost_tif)
    acc = accumulated_cost(cost, src, cell_size=cs, knight=knight, max_cost=max_cost,
                           nodata_mask=mask)
    del cost, mask, mask_p
    out = np.empty(shape, dtype=np.float32)
    n_reached, max_finite = _to_output(acc.reshape(-1), out.reshape(-1), np.float32(-1.0))
    del acc
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": shape[0],
               "width": shape[1], "crs": crs, "transform": tr, "nodata": -1.0, **OUTPUT_OPTIONS}
    with rasterio.open(out_tif, "w", **profile) as dst:
        dst.write(out, 1)
    return {
        "cells": int(shape[0] * shape[1]),
        "reached": int(n_reached),
        "sources": int(src.shape[0]),
        "seconds": round(time.perf_counter() - t0, 3),
        "max_finite_cost": float(max_finite),
        "cell_size": cs,
        "out": str(out_tif),
    }


def _load_kernels(knight: bool) -> None:
    """Load (or compile) the kernels a file run uses, on a tiny raster."""
    c = np.ones((5, 5), dtype=np.float32)
    accumulated_cost(c, np.array([[2, 2]]), knight=knight)
    _to_output(np.zeros(1), np.zeros(1, np.float32), np.float32(-1.0))
