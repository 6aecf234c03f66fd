# Over 450 lines: worker pool, per-client queue and watchdog share the executor state.
"""Server side of job execution: a small pool of worker processes, a queue, a watchdog, cancel.

Nothing here blocks. The server's event loop polls :meth:`Executor.poll_fds` (worker pipes and
process sentinels) together with its ZeroMQ socket, then calls :meth:`Executor.service`, which
reads what the workers said, notices dead or silent workers, enforces cancel deadlines, starts
queued jobs, and returns what happened as a list of events. The executor knows nothing about
the job store or the wire: the server turns these events into state changes and messages.

Jobs wait in one FIFO per client (``client_id``, see ``clientid.py``) and clients take turns
when a worker frees up, so a client with many queued jobs does not hold back another's one job;
:meth:`Executor.unfinished` counts jobs per client for the server's queue limits (quotas.py).

Worker processes are long-lived (a job after the first does not pay for interpreter start and
the torch import again) and run one job at a time. A worker that died, was killed by the
watchdog, or was killed because it ignored a cancel is replaced by a fresh one.

Pipe messages, worker -> server (tuples): ``("ready", pid)``, ``("loaded", job_id)``,
``("progress", job_id, fraction, stage, message, preview | None)``,
``("succeeded", job_id, data, [ArtifactRecord])``, ``("failed", job_id, {ename, evalue,
traceback: ""}, traceback text for the log)``, ``("cancelled", job_id)``. Server -> worker:
``("run", job_id, module, function, params, work_dir)`` (the job function is imported lazily, in
the worker) and ``("exit",)``.
Cancel is a ``multiprocessing.Event`` per worker, so the job sees it without the worker having to
read its pipe while busy.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from backend.jobs.api import JOB_KINDS, JobKind

from .executor_events import (
    ExecutorEvent,
    JobCancelledEvent,
    JobFailed,
    JobProgressed,
    JobStarted,
    JobSucceeded,
)
from .worker import worker_main

log = logging.getLogger(__name__)

DEFAULT_CANCEL_GRACE_S = 0.5  # a job that ignores a cancel this long is killed
RESPAWN_BACKOFF_S = 1.0  # a worker that keeps dying at start is not respawned in a hot loop
MAX_START_FAILURES = 3  # then queued jobs fail instead of waiting forever (respawning goes on)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


# Read by backend.render.bands.default_threads (not imported: the server never imports torch/numba).
RENDER_THREADS_ENV = "AVATAR_STUDIO_RENDER_THREADS"


def _with_environment(defaults: dict[str, str], entry: Callable[..., None], *args: Any) -> None:
    """A worker's entry point, run with ``defaults`` added to its environment where unset (the
    input roots and the Ray cluster are the server's settings, always)."""
    from backend.jobs.confine import INPUT_ROOTS_ENV
    from backend.ray_cluster import SERVER_ENV

    for name, value in defaults.items():
        if name == INPUT_ROOTS_ENV or name in SERVER_ENV:
            os.environ[name] = value
        else:
            os.environ.setdefault(name, value)
    entry(*args)


@dataclass
class _Assignment:
    job_id: str
    kind: JobKind
    work_dir: Path
    last_seen: float
    cancel_deadline: float | None = None
    client_id: str = ""


@dataclass
class _Slot:
    index: int
    process: SpawnProcess | None = None
    conn: Connection | None = None
    cancel: Event | None = None
    ready: bool = False
    job: _Assignment | None = None
    spawned_at: float = -1e9
    start_failures: int = 0  # workers in a row that died before saying "ready"
    last_exit: str = ""


@dataclass
class _Queued:
    job_id: str
    kind: JobKind
    params: dict[str, Any]
    client_id: str = ""


@dataclass
class Executor:
    data_dir: Path
    workers: int = 2
    cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S
    kinds: Mapping[str, JobKind] = field(default_factory=lambda: JOB_KINDS)
    worker_entry: Callable[..., None] = worker_main  # the child's entry point (tests swap it)
    input_roots: tuple[Path, ...] = ()  # `serve --input-root`: where jobs may read (backend/jobs/confine.py)
    # The server's settings for its workers (`serve --ray`: backend/ray_cluster.py), over theirs.
    environment: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.artifacts_root = self.data_dir / "artifacts"
        self.work_root = self.data_dir / "work"
        self._mp = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(max(1, int(self.workers)))]
        # One FIFO per client, served round-robin: a client with a hundred queued jobs delays
        # another client's single job by at most one job per worker, not by a hundred.
        self._queues: OrderedDict[str, deque[_Queued]] = OrderedDict()
        self._pending: list[ExecutorEvent] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        # Leftover scratch dirs belong to jobs of a previous server; nothing can use them now.
        shutil.rmtree(self.work_root, ignore_errors=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        for slot in self._slots:
            self._spawn(slot)

    def shutdown(self, timeout: float = 0.5) -> None:
        """Ask idle workers to exit, then kill whatever is left (busy or slow) after ``timeout``.

        Killing is safe: a worker holds nothing that is not either in the store already or lost
        with its unfinished job anyway.
        """
        for slot in self._slots:
            if slot.conn is not None and slot.process is not None and slot.ready and slot.job is None:
                with contextlib.suppress(OSError):
                    slot.conn.send(("exit",))
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.0, deadline - time.monotonic()) if slot.job is None else 0)
                self._discard(slot)

    def _spawn(self, slot: _Slot) -> None:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        cancel = self._mp.Event()
        process = self._mp.Process(
            target=_with_environment,
            args=(self._worker_environment(), self.worker_entry, child_conn, cancel, str(self.data_dir),
                  str(self.artifacts_root)),
            name=f"avatar-studio-worker-{slot.index}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # the child has its copy; ours would keep EOF from ever arriving
        slot.process, slot.conn, slot.cancel = process, parent_conn, cancel
        slot.ready, slot.job, slot.spawned_at = False, None, time.monotonic()
        log.info("started worker %d (pid %s)", slot.index, process.pid)

    def _worker_environment(self) -> dict[str, str]:
        """Defaults for the workers' environment: the CPUs shared among the workers, for our
        renderer and for torch's (OpenMP) pool, so that two busy workers do not each start a
        thread per CPU: oversubscribed pools collapse (docs/benchmarks.md, Render). The user's
        settings win."""
        share = str(max(1, len(os.sched_getaffinity(0)) // len(self._slots)))
        return {RENDER_THREADS_ENV: share, "OMP_NUM_THREADS": share, **self._roots_environment(),
                **self.environment}

    def _roots_environment(self) -> dict[str, str]:
        """The input roots travel to the workers in their environment, not in any job's params."""
        from backend.jobs.confine import INPUT_ROOTS_ENV, InputRoots

        return {INPUT_ROOTS_ENV: InputRoots.for_server(self.data_dir, self.input_roots).to_env()}

    def _discard(self, slot: _Slot) -> None:
        """Kill (if needed) and forget a slot's worker."""
        if slot.process is not None:
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join(timeout=5)
            slot.process.close()
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn, slot.cancel, slot.ready = None, None, None, False
        if slot.job is not None:
            shutil.rmtree(slot.job.work_dir, ignore_errors=True)
            slot.job = None

    # --- requests from the server ----------------------------------------------------------------

    def submit(self, job_id: str, kind: str, params: dict[str, Any], client_id: str = "") -> None:
        """Queue a job; it starts (``JobStarted``) at a later :meth:`service` when a worker is free.

        Jobs of one client start in the order they were submitted; clients take turns."""
        queued = _Queued(job_id, self.kinds[kind], params, client_id)
        self._queues.setdefault(client_id, deque()).append(queued)

    def unfinished(self, client_id: str | None = None) -> int:
        """Jobs queued or running, of one client or (``None``) of all clients."""
        queued = sum(len(q) for c, q in self._queues.items() if client_id is None or c == client_id)
        running = sum(
            1 for s in self._slots if s.job is not None and client_id in (None, s.job.client_id)
        )
        return queued + running

    def _pop_next(self) -> _Queued | None:
        """The next job to start: the oldest of the client whose turn it is (round-robin)."""
        while self._queues:
            client_id, queue = next(iter(self._queues.items()))
            if not queue:
                del self._queues[client_id]
                continue
            queued = queue.popleft()
            if queue:
                self._queues.move_to_end(client_id)  # the others go first next time
            else:
                del self._queues[client_id]
            return queued
        return None

    def _push_front(self, queued: _Queued) -> None:
        """Put back a job that could not start: it keeps its place at the head of the line."""
        self._queues.setdefault(queued.client_id, deque()).appendleft(queued)
        self._queues.move_to_end(queued.client_id, last=False)

    def cancel(self, job_id: str) -> bool:
        """Ask a queued or running job to stop. False when the executor does not know the job.

        A queued job is cancelled at once; a running one sees its cancel flag, and is killed if it
        has not stopped after ``cancel_grace_s``. Either way a ``JobCancelledEvent`` follows from
        :meth:`service` (unless the job finished first, then its result stands).
        """
        for queue in self._queues.values():
            for queued in queue:
                if queued.job_id == job_id:
                    queue.remove(queued)
                    self._pending.append(JobCancelledEvent(job_id))
                    return True
        for slot in self._slots:
            if slot.job is not None and slot.job.job_id == job_id:
                if slot.job.cancel_deadline is None:
                    assert slot.cancel is not None
                    slot.cancel.set()
                    slot.job.cancel_deadline = time.monotonic() + self.cancel_grace_s
                return True
        return False

    @property
    def running(self) -> dict[str, int]:
        """job_id -> worker pid of the jobs running now."""
        return {
            s.job.job_id: s.process.pid
            for s in self._slots
            if s.job is not None and s.process is not None and s.process.pid is not None
        }

    @property
    def queued(self) -> list[str]:
        return [q.job_id for queue in self._queues.values() for q in queue]

    # --- polling ---------------------------------------------------------------------------------

    def poll_fds(self) -> list[int]:
        """File descriptors that become readable when :meth:`service` has something to do."""
        fds: list[int] = []
        for slot in self._slots:
            if slot.conn is not None and slot.process is not None:
                fds.append(slot.conn.fileno())
                fds.append(slot.process.sentinel)
        return fds

    def next_deadline(self) -> float | None:
        """Earliest monotonic time at which :meth:`service` must run even if no fd is readable."""
        deadlines: list[float] = []
        for slot in self._slots:
            if slot.job is not None:
                deadlines.append(slot.job.last_seen + slot.job.kind.watchdog_s)
                if slot.job.cancel_deadline is not None:
                    deadlines.append(slot.job.cancel_deadline)
            elif slot.process is None:
                deadlines.append(slot.spawned_at + RESPAWN_BACKOFF_S)
        if self._pending:
            deadlines.append(time.monotonic())
        return min(deadlines) if deadlines else None

    def service(self) -> list[ExecutorEvent]:
        events, self._pending = self._pending, []
        now = time.monotonic()
        for slot in self._slots:
            self._drain(slot, events)
            self._check_alive(slot, events)
            self._check_deadlines(slot, events, now)
            if slot.process is None and now - slot.spawned_at >= RESPAWN_BACKOFF_S:
                self._spawn(slot)
        self._fail_queue_if_workers_cannot_start(events)
        self._dispatch(events)
        return events

    def _fail_queue_if_workers_cannot_start(self, events: list[ExecutorEvent]) -> None:
        """Queued jobs must not wait forever for workers that die at start (broken install...)."""
        if not self.queued or not all(s.start_failures >= MAX_START_FAILURES for s in self._slots):
            return
        how = self._slots[0].last_exit
        while (queued := self._pop_next()) is not None:
            events.append(
                JobFailed(
                    queued.job_id,
                    {
                        "ename": "WorkerStartFailed",
                        "evalue": f"no worker process could start ({MAX_START_FAILURES} attempts per "
                        f"worker, last: {how}); see the server log",
                        "traceback": "",
                    },
                )
            )

    # --- internals -------------------------------------------------------------------------------

    def _drain(self, slot: _Slot, events: list[ExecutorEvent]) -> None:
        conn = slot.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._handle(slot, conn.recv(), events)
        except (EOFError, OSError):
            pass  # the worker is gone; _check_alive reports it once its exit status is known
        except Exception:  # an unreadable message: the worker cannot be trusted any more
            log.exception("bad message from worker %d; killing it", slot.index)
            if slot.process is not None:
                slot.process.kill()

    def _handle(self, slot: _Slot, message: tuple[Any, ...], events: list[ExecutorEvent]) -> None:
        tag = message[0]
        if tag == "ready":
            slot.ready = True
            slot.start_failures = 0
            return
        job = slot.job
        if job is None or message[1] != job.job_id:
            log.warning("worker %d sent %r for a job it does not run", slot.index, tag)
            return
        job.last_seen = time.monotonic()
        if tag == "progress":
            _, job_id, fraction, stage, text, preview = message
            events.append(JobProgressed(job_id, fraction, stage, text, preview))
        elif tag == "succeeded":
            events.append(JobSucceeded(job.job_id, message[2], list(message[3])))
            self._finish(slot)
        elif tag == "failed":
            if len(message) > 3 and message[3]:  # the traceback: for the server's log, not clients
                log.error("job %s failed in its worker:\n%s", job.job_id, message[3])
            events.append(JobFailed(job.job_id, dict(message[2])))
            self._finish(slot)
        elif tag == "cancelled":
            events.append(JobCancelledEvent(job.job_id))
            self._finish(slot)

    def _finish(self, slot: _Slot) -> None:
        assert slot.job is not None and slot.cancel is not None
        shutil.rmtree(slot.job.work_dir, ignore_errors=True)
        slot.job = None
        slot.cancel.clear()  # before the next "run": a late cancel of this job cannot hit the next

    def _check_alive(self, slot: _Slot, events: list[ExecutorEvent]) -> None:
        process = slot.process
        if process is None or process.exitcode is None:
            return
        how = _describe_exit(process.exitcode)
        if slot.job is not None:
            job = slot.job
            if job.cancel_deadline is not None:  # it died while being cancelled: that is a cancel
                events.append(JobCancelledEvent(job.job_id))
            else:
                events.append(
                    JobFailed(
                        job.job_id,
                        {
                            "ename": "WorkerDied",
                            "evalue": f"the worker process (pid {process.pid}) died with {how} while running "
                            f"the job (crash, out-of-memory kill or external kill)",
                            "traceback": "",
                        },
                    )
                )
        if not slot.ready:
            slot.start_failures += 1
            slot.last_exit = how
        log.warning("worker %d (pid %s) exited with %s", slot.index, process.pid, how)
        self._discard(slot)

    def _check_deadlines(self, slot: _Slot, events: list[ExecutorEvent], now: float) -> None:
        job = slot.job
        if job is None or slot.process is None:
            return
        if job.cancel_deadline is not None and now >= job.cancel_deadline:
            log.warning(
                "job %s ignored its cancel for %.1f s; killing worker %d",
                job.job_id,
                self.cancel_grace_s,
                slot.index,
            )
            events.append(JobCancelledEvent(job.job_id))
            self._discard(slot)
        elif now >= job.last_seen + job.kind.watchdog_s:
            events.append(
                JobFailed(
                    job.job_id,
                    {
                        "ename": "WatchdogTimeout",
                        "evalue": f"no progress from the job for {job.kind.watchdog_s:g} s (the watchdog of "
                        f"{job.kind.name!r}); its worker was killed",
                        "traceback": "",
                    },
                )
            )
            self._discard(slot)

    def _dispatch(self, events: list[ExecutorEvent]) -> None:
        for slot in self._slots:
            if not self._queues:
                return
            if slot.job is not None or not slot.ready or slot.conn is None or slot.process is None:
                continue
            queued = self._pop_next()
            if queued is None:
                return
            work_dir = self.work_root / queued.job_id
            try:
                slot.conn.send(
                    (
                        "run",
                        queued.job_id,
                        queued.kind.module,
                        queued.kind.function,
                        queued.params,
                        str(work_dir),
                    )
                )
            except OSError:  # died between ready and now: put the job back, respawn the worker
                self._push_front(queued)
                slot.process.kill()
                continue
            slot.job = _Assignment(
                queued.job_id, queued.kind, work_dir, time.monotonic(), client_id=queued.client_id
            )
            assert slot.process.pid is not None
            events.append(JobStarted(queued.job_id, slot.process.pid))
