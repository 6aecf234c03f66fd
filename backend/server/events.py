"""Live jobs: who follows each job, and the executor's events turned into job-store state and
messages for those subscribers.

The executor (executor.py) knows nothing about the store or the wire; each of its events
(executor_events.py) becomes a state change in the job store (jobstore.py) and a message to every
peer that submitted or attached to the job. Progress is written to SQLite at most every
:data:`PROGRESS_DB_INTERVAL_S` per job and sent as droppable; terminal events are not droppable
(sending.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from protocol import Message
from protocol import messages as M

from .executor_events import (
    ExecutorEvent,
    JobCancelledEvent,
    JobFailed,
    JobProgressed,
    JobStarted,
    JobSucceeded,
)
from .jobstore import InvalidTransition, Job

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger(__name__)

PROGRESS_DB_INTERVAL_S = 0.25  # progress is written to SQLite at most this often per job


@dataclass
class JobRuntime:
    """In-memory state of a live job: who listens, progress sequence, last DB write."""

    subscribers: dict[bytes, dict[str, Any]] = field(default_factory=dict)  # identity -> parent header
    seq: int = 0
    last_db_write: float = 0.0


def terminal_content(job: Job) -> dict[str, Any]:
    """The content of a finished job's terminal event (sent again to a client that re-attaches)."""
    if job.state == M.SUCCEEDED:
        return {
            "job_id": job.job_id,
            "data": job.result or {},
            "artifacts": [a.to_wire() for a in job.artifacts],
        }
    if job.state == M.FAILED:
        return {
            "job_id": job.job_id,
            "error": job.error or {"ename": "Unknown", "evalue": "", "traceback": ""},
        }
    return {"job_id": job.job_id}


class LiveJobs:
    """The subscribers of unfinished jobs, and what happens to them as the executor reports."""

    def __init__(self, server: Server) -> None:
        self.server = server  # its store and sender
        self.runtimes: dict[str, JobRuntime] = {}

    def subscribe(self, job_id: str, identity: bytes, message: Message) -> None:
        self.runtimes.setdefault(job_id, JobRuntime()).subscribers[identity] = message.header

    def unsubscribe(self, identity: bytes) -> None:
        """Forget a peer's subscriptions (it is gone, or its routing id now names another client)."""
        for runtime in self.runtimes.values():
            runtime.subscribers.pop(identity, None)

    def emit(self, job_id: str, msg_type: str, content: dict[str, Any], *, droppable: bool = False) -> None:
        runtime = self.runtimes.get(job_id)
        if runtime is None:
            return
        for identity, parent in list(runtime.subscribers.items()):
            self.server.sender.send(identity, msg_type, content, parent=parent, droppable=droppable)

    def apply(self, events: list[ExecutorEvent]) -> None:
        for event in events:
            self.on_event(event)

    def on_event(self, event: ExecutorEvent) -> None:
        assert self.server.store is not None
        try:
            if isinstance(event, JobStarted):
                self.server.store.transition(event.job_id, M.RUNNING)
                log.info("job %s running in worker pid %d", event.job_id, event.pid)
                # worker_pid: an extra field (tolerated by clients) for diagnostics and kill tests.
                self.emit(
                    event.job_id,
                    M.JOB_STATE,
                    {"job_id": event.job_id, "state": M.RUNNING, "worker_pid": event.pid},
                )
            elif isinstance(event, JobProgressed):
                self._on_progress(event)
            elif isinstance(event, JobSucceeded):
                self.finish(event.job_id, M.SUCCEEDED, result=event.data, artifacts=event.artifacts)
            elif isinstance(event, JobFailed):
                self.finish(event.job_id, M.FAILED, error=event.error)
            elif isinstance(event, JobCancelledEvent):
                self.finish(event.job_id, M.CANCELLED)
        except InvalidTransition as exc:  # e.g. a result that raced a cancel: the first end stands
            log.info("ignored executor event: %s", exc)
        except Exception:  # e.g. a full disk under SQLite: log it, keep serving the others
            self.server.stats["internal_errors"] += 1
            log.exception("could not apply executor event %r", event)

    def _on_progress(self, event: JobProgressed) -> None:
        assert self.server.store is not None
        runtime = self.runtimes.setdefault(event.job_id, JobRuntime())
        runtime.seq += 1
        now = time.monotonic()
        if now - runtime.last_db_write >= PROGRESS_DB_INTERVAL_S or event.fraction >= 1.0:
            self.server.store.set_progress(event.job_id, event.fraction, event.stage, event.message)
            runtime.last_db_write = now
        content = M.progress_content(
            event.job_id,
            runtime.seq,
            event.fraction,
            event.stage,
            event.message,
            event.preview if isinstance(event.preview, np.ndarray) else None,
        )
        self.emit(event.job_id, M.JOB_PROGRESS, content, droppable=True)

    def finish(self, job_id: str, state: str, **fields: Any) -> None:
        """Record the terminal state (artifacts are already in the store), then tell subscribers."""
        assert self.server.store is not None
        job = self.server.store.transition(job_id, state, **fields)
        if state == M.FAILED and job.error:
            log.info("job %s failed: %s: %s", job_id, job.error.get("ename"), job.error.get("evalue"))
        else:
            log.info("job %s %s", job_id, state)
        self.emit(job_id, M.STATE_TERMINAL_EVENT[state], terminal_content(job))
        self.runtimes.pop(job_id, None)
