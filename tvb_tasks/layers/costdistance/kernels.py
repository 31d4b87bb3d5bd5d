"""Numba kernels of the exact cost-distance (model and algorithm: :mod:`tvb_tasks.layers.costdistance`).

Move tables, the bucket-queue (Dial) Dijkstra, its binary-heap fallback and the zone adjacency
scan, all compiled with ``cache=True`` (see the package docstring for ``NUMBA_CACHE_DIR``).
"""
# Over 500 lines on purpose: the kernels share the move tables and the inlined relaxation step
# (_relax) and are read together; splitting them would scatter one algorithm over several files.

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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


def _prefetch_intrinsic(typingctx, arr, idx):
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


# called as ``_prefetch(arr, idx)`` in jitted code (numba passes the typing context itself)
_prefetch: Any = intrinsic(_prefetch_intrinsic)


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
def _adjacent(cost, mask, has_mask, H, W, acc, alloc, nnb, dr, dc, wf, mid, nsrc, sr0, sr1, sc0, sc1):
    """For every pair of allocation zones that touch (through a legal move),
    the cheapest crossing ``acc[a] + edge(a, b) + acc[b]`` and its cells.

    Only the moves from cells ``u`` with ``sr0 <= row < sr1`` and ``sc0 <= col < sc1`` are scanned (row-major; the
    whole raster: ``0, H, 0, W``); a pair's first cheapest crossing in that order wins an exact tie."""
    best: dict[np.int64, tuple[float, np.int64, np.int64]] = {}     # zone pair key -> (cost, cell a, cell b)
    sw = sc1 - sc0
    for u0 in range((sr1 - sr0) * sw):
        r = sr0 + u0 // sw
        c = sc0 + u0 % sw
        u = r * W + c
        au = alloc[u]
        if au < 0:
            continue
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

