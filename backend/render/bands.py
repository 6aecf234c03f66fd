"""Row bands shared between the calling thread and a few helper threads (CPU render kernels).

Why not numba's own ``parallel=True``: on a shared 2-core machine its thread pool made the
rasterizer 5-15x *slower* (every parallel region waits at a barrier for all of its threads, and the
OS had given one core to another process; docs/benchmarks.md, Render). Here the kernels are numba
``nogil`` functions of one band each, and jobs are *claimed* from a shared counter by the calling
thread and by the helpers. If a helper is not scheduled, the calling thread claims the remaining
jobs itself and the helper's unstarted task is cancelled, so a busy machine costs about the serial
time and an idle one gets every core. Waking a helper costs ~40-80 us on a VM, so a frame should
be one call (``prologue`` jobs, then the bands) rather than one call per stage.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0


def default_threads() -> int:
    """Threads for CPU render kernels: ``AVATAR_STUDIO_RENDER_THREADS``, else ``NUMBA_NUM_THREADS``,
    else the CPUs this process may run on."""
    for name in ("AVATAR_STUDIO_RENDER_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(name)
        if value:
            return max(1, int(value))
    return max(1, len(os.sched_getaffinity(0)))


def _helpers(count: int) -> ThreadPoolExecutor:
    """The shared helper pool, grown to ``count`` workers; rebuilt in a forked child (its threads
    do not survive a fork, and submitting to the parent's pool would wait forever)."""
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size < count:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="render-band")
            _pool_size = count
            _pool_pid = os.getpid()
        return _pool


def run_bands(work: Callable[[int], None], n_bands: int, threads: int,
              prologue: Sequence[Callable[[], None]] = ()) -> None:
    """Run every ``prologue`` job, then ``work(band)`` for each band in ``range(n_bands)``, on up
    to ``threads`` threads (the caller's included). No band starts before all prologue jobs ended.

    Jobs must release the GIL for the time to overlap (numba ``nogil`` kernels do) and must write
    disjoint memory. The first exception stops the remaining jobs and is raised here, after every
    thread has left the caller's arrays.
    """
    total = len(prologue) + n_bands
    if threads <= 1 or total <= 1:
        for job in prologue:
            job()
        for band in range(n_bands):
            work(band)
        return
    claim = itertools.count()  # next() on it is atomic under the GIL
    ready = threading.Event()
    state = {"finished": 0, "failed": False}
    if not prologue:
        ready.set()

    def drain() -> None:
        try:
            while not state["failed"] and (job := next(claim)) < total:
                if job < len(prologue):
                    try:
                        prologue[job]()
                    finally:
                        with _lock:
                            state["finished"] += 1
                            if state["finished"] == len(prologue):
                                ready.set()
                else:
                    ready.wait()  # another thread may still be in a prologue job
                    if state["failed"]:
                        return
                    work(job - len(prologue))
        except BaseException:
            state["failed"] = True
            ready.set()
            raise

    pool = _helpers(threads - 1)
    futures: list[Future[None]] = [pool.submit(drain) for _ in range(min(threads, total) - 1)]
    try:
        drain()
    finally:
        # A helper that has not started finds nothing left: cancel it instead of waiting for the
        # OS to schedule it. One that started may still be writing: wait for it.
        errors = [f.exception() for f in futures if not f.cancel()]
    for error in errors:
        if error is not None:
            raise error


def band_rows(n_rows: int, n_bands: int, band: int) -> tuple[int, int]:
    """Rows [lo, hi) of ``band`` when ``n_rows`` are split into ``n_bands`` near-equal bands."""
    size = (n_rows + n_bands - 1) // n_bands
    lo = min(n_rows, band * size)
    return lo, min(n_rows, lo + size)
