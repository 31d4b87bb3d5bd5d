"""The memory bound of a task (tvb_tasks.memory): the enforced limit turns an over-allocation into the clear error
instead of an OOM kill, the watchdog catches resident memory the limit cannot see, a normal tile task under the
bound succeeds, the previous limit comes back, and the pre-check refuses a window from its estimate.

Every over-allocation runs in a child process (``subprocess``): the pytest process's limits are never lowered for
them."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tvb_tasks import memory
from tvb_tasks.memory import MemoryBoundError, check_allocation, check_peak, current_bound, memory_bound

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
import numpy as np
from tvb_tasks.memory import MemoryBoundError, memory_bound
case = sys.argv[1]
before = resource.getrlimit(resource.RLIMIT_DATA)
out = {"error": None}
if case == "kernel":
    import numba

    @numba.njit(nogil=True)
    def grow(n):                                 # allocates inside a nogil kernel
        return np.ones(n).sum()
    grow(10)
reserved = np.empty(200_000_000) if case == "watchdog" else None   # 1.6 GB, untouched: not resident yet
try:
    with memory_bound("tile 12 of forest", 0.75, "use smaller tiles (tiling.tile_size)") as g:
        out["enforced"] = g.enforced
        out["inside"] = resource.getrlimit(resource.RLIMIT_DATA)[0]
        if case == "numpy":
            x = np.empty(300_000_000)            # 2.4 GB, never touched: only the data limit can refuse it
        elif case == "kernel":
            grow(150_000_000)                    # 1.2 GB inside the kernel
        elif case == "watchdog":                 # resident growth of memory reserved before the context
            reserved[:] = 1.0
            import time
            for _ in range(200):
                time.sleep(0.02)
        elif case == "small":
            from tvb_tasks.layers.tiles import tiled_accumulated_cost
            rng = np.random.default_rng(0)
            cost = rng.uniform(1, 10, (300, 300))
            res = tiled_accumulated_cost(cost, np.array([[5, 5], [250, 200]]), tile_size=64, overlap=2, knight=True)
            out["reached"] = int(np.isfinite(res.acc).sum())
except MemoryBoundError as e:
    out["error"] = str(e)
out["restored"] = resource.getrlimit(resource.RLIMIT_DATA) == before
print(json.dumps(out))
"""


def _child(case: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, case], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]                # not killed: a clean exit with the error caught
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["numpy", "kernel"])
def test_the_data_limit_turns_an_over_allocation_into_the_clear_error(case):
    """2.4 GB of never-touched NumPy memory (no resident growth: the watchdog cannot see it) and 1.2 GB allocated
    inside a nogil numba kernel, under a 0.75 GiB bound: refused at the allocation, with the task, the bound and
    the settings named; the previous limit is back after."""
    out = _child(case)
    assert out["enforced"] and out["inside"] == int(0.75 * 2**30)
    assert out["error"] is not None, "the allocation was not refused"
    for part in ("tile 12 of forest", "tiling.memory_limit_gib = 0.75", "768 MB", "tiling.tile_size",
                 "an allocation would have taken"):
        assert part in out["error"]
    assert out["restored"]


def test_the_watchdog_stops_resident_growth_the_data_limit_cannot_see():
    """Memory reserved before the context (already above the bound: no data limit then) and filled inside it: the
    watchdog raises the same error, naming the resident memory reached."""
    out = _child("watchdog")
    assert not out["enforced"]
    assert out["error"] is not None and "tile 12 of forest: resident memory" in out["error"]
    assert "tiling.memory_limit_gib = 0.75" in out["error"] and out["restored"]


def test_a_normal_tiled_run_under_the_bound_succeeds():
    out = _child("small")
    assert out["enforced"] and out["error"] is None and out["reached"] == 300 * 300 and out["restored"]


def test_the_limit_is_lowered_inside_and_restored_after_in_this_process():
    """In the pytest process too: the bound (4 GiB, above what the process holds) applies inside, the previous
    limit after, also when the body fails; the active bound is the innermost context's."""
    before = resource.getrlimit(resource.RLIMIT_DATA)
    assert current_bound() is None
    with memory_bound("tile 0 of forest", 4.0) as g:
        assert current_bound() == 4.0
        if g.enforced:
            assert resource.getrlimit(resource.RLIMIT_DATA)[0] == 4 * 2**30
        x = np.ones(1000).sum()
    assert x == 1000 and g.peak_mb > 0
    assert resource.getrlimit(resource.RLIMIT_DATA) == before and current_bound() is None
    with pytest.raises(KeyError), memory_bound("tile 0 of forest", 4.0):
        raise KeyError("not a memory error: passes through")
    # an error raised while handling a MemoryError (np.savez's clean-up at the limit: "I/O operation on closed
    # file") is the bound's error too
    with pytest.raises(MemoryBoundError, match="tile 0 of forest: an allocation would have taken") as err, \
            memory_bound("tile 0 of forest", 4.0):
        try:
            raise MemoryError()
        finally:
            raise ValueError("I/O operation on closed file.")
    assert isinstance(err.value.__cause__, ValueError)
    assert resource.getrlimit(resource.RLIMIT_DATA) == before and current_bound() is None


def test_the_peak_check_and_the_pre_check(monkeypatch):
    """check_peak: the process's peak RSS against the bound; check_allocation: the estimate plus what the process
    holds, refused above the bound, with the window's size in cells and MB; no bound, no check."""
    assert check_peak("stitch of forest", 1000.0) > 0
    with pytest.raises(MemoryBoundError, match=r"stitch of forest: peak memory \d+ MB, above the memory bound "
                                               r"tiling.memory_limit_gib = 0.001 \(1 MB\)"):
        check_peak("stitch of forest", 0.001)
    monkeypatch.setattr(memory, "rss_mb", lambda: 100.0)
    assert check_allocation("window", 1_000_000, 16, limit_gib=1) == pytest.approx(15.26, abs=0.01)
    with pytest.raises(MemoryBoundError, match=r"window: 70,000,000 cells need about 1,068 MB besides the 100 MB"):
        check_allocation("window", 70_000_000, 16, "lower max_cost", limit_gib=1)
    assert check_allocation("window", 60_000_000, 16) > 900                   # no bound set: estimate only
    with memory_bound("corridors of forest", 64.0, enforce=False, poll_s=60):  # the active task's bound
        with pytest.raises(MemoryBoundError, match="lower max_cost"):
            check_allocation("window", 5_000_000_000, 16, "lower max_cost")
        check_allocation("window", 60_000_000, 16)
    assert isinstance(MemoryBoundError("x"), MemoryError)
