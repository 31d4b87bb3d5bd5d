"""The memory bound of one task (``tiling.memory_limit_gib``): enforced while the task runs, checked before big
allocations and after the task.

Why: a task far above the bound on a worker with a container memory limit is OOM-killed (SIGKILL: Airflow shows a
failed or zombie task with no message) and can take other tasks of the worker with it. So a bounded task fails
itself, with a :class:`MemoryBoundError` naming the task, the memory reached, the bound and the setting to change.

Semantics of :func:`memory_bound` (a context manager around a task's work), three layers:

1. **Enforced limit on writable memory**: the soft ``RLIMIT_DATA`` of the process is lowered to the bound for the
   duration of the context. Since Linux 4.7 it caps ``VmData`` — every private writable mapping (heap, anonymous
   ``mmap``: NumPy arrays, numba's allocations inside a ``nogil`` kernel, GDAL's cache, thread stacks) — so the
   allocation that would cross the bound fails at once: NumPy raises ``MemoryError``, numba raises
   ``MemoryError`` from the kernel, and the context turns it into a :class:`MemoryBoundError`. The resident memory
   that is not writable private memory (the libraries' code, ≈ 100 MB, read-only file mappings) is not counted:
   the page cache can give it back. Measured on this machine (Python 3.11, Linux 6.18): an interpreter with
   NumPy, pandas, numba, rasterio, pyogrio, geopandas and the tiled stages imported and a kernel compiled has
   ``VmData`` 371 MB for an RSS of 486 MB, but a **virtual size of 919 MB**, and every thread that allocates
   reserves a 64 MB malloc arena (+ 72 MB of ``VmSize``, + 8 MB of ``VmData`` each: 4 threads → 1,207 MB virtual);
   with one OpenBLAS thread per core on a 32-core worker the virtual size alone would pass 3 GiB (estimated from
   those 72 MB per thread, not measured on such a worker). So
   ``RLIMIT_AS`` at the bound would refuse normal tasks on large machines, and ``RLIMIT_AS`` above it would not
   bound the memory; ``RLIMIT_DATA`` follows what the task actually can dirty (a default 2048-cell tile task,
   433 MB resident at its peak, passes under a 0.45 GiB data limit and fails under 0.42). A C library that
   does not fail on a failed allocation cannot be helped: scipy's OpenBLAS retries forever when it initialises,
   so :data:`PRELOAD` initialises it before the limit is lowered; LLVM (numba compiling or loading a kernel at its
   first call in the process) can abort the process at the limit (``std::bad_alloc``, exit 134: measured).
2. **Watchdog**: a daemon thread reads the resident size (``/proc/self/statm``) every ``poll_s`` seconds; above
   the bound (memory the data limit does not see: shared mappings, resident pages of writable mappings reserved
   before the context), it logs the error at once (so the log has it even if the task is killed later) and
   raises an exception asynchronously in the guarded thread (``PyThreadState_SetAsyncExc``, which works in any
   thread and leaves Airflow's signal handlers alone), which the context turns into the same
   :class:`MemoryBoundError`. It cannot stop code that does not return to the interpreter: a ``nogil`` numba
   kernel or a long NumPy/GDAL call is interrupted only when it returns (the kernels' own allocations meet the
   data limit, though), and the watchdog cannot even run while a C call holds the GIL.
3. **After the fact**: :func:`check_peak` compares the peak RSS of the process (``VmHWM``: :func:`peak_mb`) with the
   bound when the work is done — the task's reported peak, and the last guard where nothing above could act.

Before a big allocation whose size depends on the data (a window grown until a cut-off cost is unreached),
:func:`check_allocation` refuses it from its estimate, naming the window and the settings that size it.

The previous limit is restored when the context exits (tests run many stages in one process), whatever the exit;
the limit is not lowered when the process's writable memory is already above the bound when the context starts
(a long-lived process, such as a test runner, that already holds more: only the watchdog and the peak check apply
then, and that is logged), nor where ``setrlimit`` is unavailable.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import threading
from types import TracebackType

from .errors import DeterministicError

log = logging.getLogger(__name__)

__all__ = ["MemoryBoundError", "check_allocation", "check_peak", "current_bound", "data_mb", "memory_bound", "peak_mb",
           "rss_mb"]

MB = 2**20
#: Seconds between two resident-size readings of the watchdog.
POLL_S = 0.25
#: Modules imported before the limit is lowered: scipy's OpenBLAS retries a failed allocation of its buffers
#: forever when it initialises (seen: a task importing ``scipy.linalg`` at the limit spun in ``brk`` for minutes
#: instead of failing), so it initialises with the memory it needs first (once a process: ≈ 0.5 s, 86 MB of
#: ``VmData``, 20 MB resident).
PRELOAD = ("scipy.linalg",)
#: The :func:`memory_bound` contexts entered and not yet left, innermost last.
_ACTIVE: list[memory_bound] = []


class MemoryBoundError(DeterministicError, MemoryError):
    """A task needs (or reached) more memory than its configured bound: the same inputs and settings fail the same
    way, so it fails at once (no retry); still a ``MemoryError`` for callers."""


def rss_mb() -> float:
    """Current resident set size of this process (MiB), from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def data_mb() -> float:
    """Current writable private memory of this process (``VmData``, MiB: what ``RLIMIT_DATA`` caps)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    """Peak resident set size of this process so far (MiB): ``VmHWM`` of ``/proc/self/status``, the peak of the
    process's own memory since it started its program; ``ru_maxrss`` where ``/proc`` is unavailable.

    Not ``ru_maxrss`` on Linux: a process created by fork then exec (``multiprocessing``'s spawn,
    ``subprocess``) inherits its parent's peak and keeps it across the exec (measured: a spawned child of an
    812 MB process reports ``ru_maxrss`` 812 MB and ``VmHWM`` 15 MB), so a task spawned by the CLI's process,
    which holds ≈ 0.8–1.5 GB after validating the sources, would be charged that process's peak. A process forked
    without exec inherits both."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _message(task: str, reached: str, limit_gib: float, hint: str) -> str:
    return (f"{task}: {reached}, above the memory bound tiling.memory_limit_gib = {limit_gib:g} "
            f"({limit_gib * 1024:.0f} MB){': ' + hint if hint else ''}")


def check_peak(task: str, limit_gib: float, hint: str = "") -> float:
    """The peak RSS (MiB) of the process; :class:`MemoryBoundError` if above ``limit_gib`` GiB. ``task`` names the
    task in the message ("tile 12 of forest"), ``hint`` the setting to change."""
    peak = peak_mb()
    if peak > limit_gib * 1024:
        raise MemoryBoundError(_message(task, f"peak memory {peak:.0f} MB", limit_gib, hint))
    return peak


def current_bound() -> float | None:
    """The bound (GiB) of the innermost :func:`memory_bound` context active in this process, or None."""
    return _ACTIVE[-1].limit_gib if _ACTIVE else None


def check_allocation(what: str, cells: int, bytes_per_cell: float, hint: str = "",
                     limit_gib: float | None = None) -> float:
    """Refuse an allocation before it is made: :class:`MemoryBoundError` if ``cells`` × ``bytes_per_cell`` plus
    the process's current resident memory exceeds ``limit_gib`` GiB (default: :func:`current_bound`; no check
    when neither is set); the estimate (MiB) otherwise. ``what`` names the window ("real-cost window of reservoir
    3 of forest"), ``hint`` the settings that size it."""
    need = cells * bytes_per_cell / MB
    limit_gib = limit_gib if limit_gib is not None else current_bound()
    if limit_gib is None:
        return need
    now = rss_mb()
    if now + need > limit_gib * 1024:
        size = f"{need:,.0f}" if need >= 10 else f"{need:.2f}"
        raise MemoryBoundError(_message(what, f"{cells:,} cells need about {size} MB besides the {now:,.0f} MB "
                                        "already held", limit_gib, hint))
    return need


def _after_memory_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is GDAL's out-of-memory error or was raised while handling a ``MemoryError`` (seen:
    ``np.savez`` into a buffer fails at the limit, then its clean-up raises ``ValueError: I/O operation on closed
    file``, which hides the MemoryError)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "CPLE_OutOfMemoryError":   # GDAL's, via rasterio
            return True
        exc, seen = exc.__context__, seen + 1
    return False


class _Interrupt(BaseException):
    """Raised in the guarded thread by the watchdog (a ``BaseException``: ``except Exception`` does not hide it)."""


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc is not None else None)


class memory_bound:                                     # a context manager used like a function
    """Context manager bounding the memory of the work it wraps to ``limit_gib`` GiB (module doc): data limit,
    watchdog, then :func:`check_peak` on a normal exit. ``task`` names the task in the error ("tile 12 of
    forest"), ``hint`` what to change besides ``tiling.memory_limit_gib`` ("use smaller tiles
    (tiling.tile_size)"). ``peak_mb``: the peak RSS after a normal exit. ``enforce=False``: watchdog and peak check
    only."""

    def __init__(self, task: str, limit_gib: float, hint: str = "", *, poll_s: float = POLL_S, enforce: bool = True):
        self.task, self.limit_gib, self.hint, self.poll_s, self.enforce = task, limit_gib, hint, poll_s, enforce
        self.peak_mb = 0.0
        self.enforced = False
        self._old: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._active = False
        self._fired: float | None = None
        self._watch: threading.Thread | None = None
        self._tid = 0

    def _limit(self) -> None:
        import importlib

        for name in PRELOAD:
            with contextlib.suppress(ImportError):       # not installed: nothing to initialise
                importlib.import_module(name)
        limit = int(self.limit_gib * 2**30)
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if soft != resource.RLIM_INFINITY and soft <= limit:
            return                                       # already at least as strict (an outer guard)
        now = data_mb()
        if now * MB >= limit:
            log.warning("%s: writable memory %.0f MB already above the bound (%.0f MB) at the start: the data "
                        "limit is not applied, only the watchdog and the peak check", self.task, now,
                        self.limit_gib * 1024)
            return
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit if hard == resource.RLIM_INFINITY else min(limit, hard),
                                                      hard))
        except (ValueError, OSError) as e:                   # not permitted here: watchdog and peak check only
            log.warning("%s: cannot set the data limit (%s)", self.task, e)
            return
        self._old, self.enforced = (soft, hard), True

    def _watchdog(self) -> None:
        limit = self.limit_gib * 1024
        while not self._stop.wait(self.poll_s):
            now = rss_mb()
            if now <= limit:
                continue
            with self._lock:
                if not self._active:
                    return
                self._fired, self._active = now, False
                log.error("%s", _message(self.task, f"resident memory {now:.0f} MB", self.limit_gib, self.hint))
                self._restore()                          # the task fails now: its error path may allocate
                _async_raise(self._tid, _Interrupt)
            return

    def _restore(self) -> None:
        if self._old is not None:
            old, self._old = self._old, None
            resource.setrlimit(resource.RLIMIT_DATA, old)

    def __enter__(self) -> memory_bound:
        self._tid = threading.get_ident()
        self._active = True
        self._watch = threading.Thread(target=self._watchdog, name=f"memory watchdog ({self.task})", daemon=True)
        self._watch.start()                              # before the limit: a thread's stack is writable memory
        if self.enforce:
            with self._lock:
                self._limit()
        _ACTIVE.append(self)
        return self

    def _close(self) -> None:
        """Stop the watchdog (no new interrupt after this), clear an interrupt not delivered yet, restore the limit."""
        try:
            with self._lock:
                self._active = False
            self._stop.set()
            if self._fired is not None:
                _async_raise(self._tid, None)
        finally:
            with self._lock:
                self._restore()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        while True:                                      # an interrupt may land inside _close: close again
            try:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)
                self._close()
                break
            except _Interrupt:
                exc_type = exc_type or _Interrupt
        if self._watch is not None:
            self._watch.join()
        if exc_type is not None and issubclass(exc_type, MemoryBoundError):
            return
        if exc_type is not None and issubclass(exc_type, _Interrupt):
            raise MemoryBoundError(_message(self.task, f"resident memory {self._fired:.0f} MB", self.limit_gib,
                                            self.hint)) from None
        if exc_type is not None and (issubclass(exc_type, MemoryError) or _after_memory_error(exc)):
            raise MemoryBoundError(_message(
                self.task, f"an allocation would have taken its writable memory above the bound (peak resident "
                f"{peak_mb():.0f} MB)", self.limit_gib, self.hint)) from exc
        if exc_type is None:
            self.peak_mb = check_peak(self.task, self.limit_gib, self.hint)
