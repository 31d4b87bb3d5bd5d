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
``__pycache__`` next to :mod:`.kernels`, otherwise (read-only package directory) the
user-wide ``~/.cache/numba``; if nothing is writable the kernels fall back to
in-memory compilation once per process (checked: import and results unaffected).
In containers with a read-only image and home, set ``NUMBA_CACHE_DIR`` to a
writable volume to avoid recompiling in every task.

Layout: :mod:`.kernels` (the numba kernels: bucket queue, binary heap, zone adjacency),
:mod:`.api` (the array API: :func:`accumulated_cost`, :func:`trace_path`,
:func:`adjacent_sources`, :func:`warm_up`) and :mod:`.io` (the GeoTIFF/CSV level:
:func:`cost_distance_file`). Every name is importable from this package.
"""

from __future__ import annotations

# Private helpers re-exported for layers.tiles and the tests, which use them.
from .api import (  # noqa: F401
    _cell_sizes,
    _check_sources,
    _prepare_cost,
    accumulated_cost,
    adjacent_sources,
    trace_path,
    warm_up,
)
from .io import OUTPUT_OPTIONS, cost_distance_file
from .kernels import BACK_NONE, BACK_SOURCE, OFFSETS

__all__ = [
    "BACK_NONE",
    "BACK_SOURCE",
    "OFFSETS",
    "OUTPUT_OPTIONS",
    "accumulated_cost",
    "adjacent_sources",
    "cost_distance_file",
    "trace_path",
    "warm_up",
]
