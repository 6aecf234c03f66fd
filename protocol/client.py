"""The client: jobs, events and artifacts over a :class:`~protocol.link.Link`; blocking for scripts,
``pump()`` for Blender.

- :mod:`protocol.link`: socket, handshake, heartbeats, reconnects, requests (the pump).
- :mod:`protocol.jobview`: what the client knows about a job and how events update it.
- :mod:`protocol.transfers`: ranged, hash-checked artifact downloads that a caller steps.
- here: the job API. Every blocking call is "pump until done", so it survives a backend restart.

Not thread-safe: use one client from one thread (Blender: the main thread's timer).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import messages as M
from .connection import read_connection_file
from .errors import BackendUnavailable, ProtocolError, ServerError
from .jobview import JobView
from .link import CLIENT_NAME, MAX_BUFFERED_EVENTS, Link
from .requests import BACKEND_LOST, BACKEND_RESTORED, CONNECTED, ClientEvent, PendingRequest
from .session import Message
from .transfers import Download, JobDownload, array_from_npy

# Range size of the blocking downloads (read at call time, so tests can shrink it); the bridge
# passes a smaller one so each pump verifies and writes little.
ARTIFACT_RANGE_BYTES = 64 << 20  # at most half the per-frame cap (docs/protocol.md §3)
_array_from_npy = array_from_npy  # the name older tests and scripts import

__all__ = [
    "ARTIFACT_RANGE_BYTES", "BACKEND_LOST", "BACKEND_RESTORED", "CLIENT_NAME", "CONNECTED",
    "MAX_BUFFERED_EVENTS", "Client", "ClientEvent", "JobView", "PendingRequest",
]


class Client(Link):
    """A connection to one backend. Create with :meth:`from_connection_file`, then :meth:`connect`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jobs: dict[str, JobView] = {}

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_connection_file(cls, path: str | os.PathLike[str] | None = None, *, connect: bool = True,
                             timeout: float | None = None, **kwargs: Any) -> Client:
        """Read the connection file (default: the default data dir's), connect and say hello.

        With ``connect=False`` nothing is sent: call :meth:`start` (non-blocking, then ``pump()``)
        or :meth:`connect` (blocking) yourself.
        """
        client = cls(read_connection_file(path), **kwargs)
        if connect:
            try:
                client.connect(timeout)
            except BaseException:
                client.close()  # don't leave a socket behind for a client the caller never gets
                raise
        return client


    # --- job bookkeeping (the link's hooks) ---------------------------------------------------------
    def _on_connected(self) -> None:
        for view in self.jobs.values():
            if not view.terminal:  # re-subscribe: results produced while we were away come again
                self._send_request(M.ATTACH, {"job_id": view.job_id})

    def _on_reply_tracked(self, request_type: str, pending: PendingRequest) -> None:
        if pending.reply is not None:
            self._track_reply(request_type, pending)
        elif request_type == M.ATTACH and isinstance(pending.error, ServerError):
            self._on_attach_unknown(pending)

    def _on_server_event(self, message: Message) -> None:
        job_id = message.content.get("job_id")
        if isinstance(job_id, str) and self._view(job_id).apply_event(message.msg_type, message.content):
            self._events.append(ClientEvent(message.msg_type, job_id, message.content))

    def _track_reply(self, request_type: str, pending: PendingRequest) -> None:
        assert pending.reply is not None
        content = pending.reply.content
        if request_type == M.SUBMIT and isinstance(content.get("job_id"), str):
            view = self._view(content["job_id"])
            kind = pending.message.content.get("kind")
            view.kind = kind if isinstance(kind, str) else view.kind
            if isinstance(content.get("state"), str) and not view.terminal:
                view.state = content["state"]
        elif request_type == M.ATTACH and isinstance(content.get("job"), dict):
            record = content["job"]
            if isinstance(record.get("job_id"), str):
                self._view(record["job_id"]).update_from_record(record)
        elif request_type == M.CANCEL and isinstance(content.get("job_id"), str):
            state = content.get("state")
            view = self._view(content["job_id"])
            if state in M.TERMINAL_STATES and not view.terminal:
                view.state = state

    def _on_attach_unknown(self, pending: PendingRequest) -> None:
        """The server no longer knows a job we follow (its data dir was wiped): fail it locally."""
        assert isinstance(pending.error, ServerError)
        job_id = pending.message.content.get("job_id")
        if pending.error.remote_ename == M.E_UNKNOWN_JOB and isinstance(job_id, str) and job_id in self.jobs:
            view = self.jobs[job_id]
            if not view.terminal:
                view.state = M.FAILED
                view.error = {"ename": M.E_UNKNOWN_JOB, "evalue": pending.error.evalue, "traceback": ""}
                self._events.append(ClientEvent(M.JOB_FAILED, job_id, {"job_id": job_id,
                                                                       "error": view.error}))

    def _view(self, job_id: str) -> JobView:
        view = self.jobs.get(job_id)
        if view is None:
            view = self.jobs[job_id] = JobView(job_id)
        return view


    # --- the job API (blocking) -----------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any] | None = None, idempotency_key: str | None = None,
               timeout: float | None = None) -> str:
        """Submit a job and return its id. Without an ``idempotency_key`` one is made up, so a
        retry of this call after a lost reply cannot run the job twice."""
        key = idempotency_key or uuid.uuid4().hex
        reply = self.request(M.SUBMIT, M.submit_content(kind, params or {}, key), timeout)
        job_id = reply.content.get("job_id")
        if not isinstance(job_id, str):
            raise ProtocolError("submit_reply without a job_id")
        return job_id

    def submit_nowait(self, kind: str, params: dict[str, Any] | None = None,
                      idempotency_key: str | None = None) -> PendingRequest:
        """Non-blocking submit for the UI: the ``submit_reply`` arrives as a :meth:`pump` event."""
        key = idempotency_key or uuid.uuid4().hex
        return self.request_nowait(M.SUBMIT, M.submit_content(kind, params or {}, key))

    def cancel(self, job_id: str, timeout: float | None = None) -> str:
        """Ask to cancel; returns the job's state at the time of the reply."""
        reply = self.request(M.CANCEL, {"job_id": job_id}, timeout)
        return str(reply.content.get("state", ""))

    def list_jobs(self, states: list[str] | None = None, limit: int | None = None,
                  timeout: float | None = None) -> list[dict[str, Any]]:
        content: dict[str, Any] = {}
        if states is not None:
            content["states"] = list(states)
        if limit is not None:
            content["limit"] = limit
        jobs = self.request(M.LIST_JOBS, content, timeout).content.get("jobs")
        return [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []

    def attach(self, job_id: str, timeout: float | None = None) -> JobView:
        """Follow a job (e.g. after a restart of this program); returns its current view."""
        self.request(M.ATTACH, {"job_id": job_id}, timeout)
        return self._view(job_id)

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[ClientEvent]:
        """Yield the job's events until its terminal one (inclusive). Attaches if needed."""
        if job_id not in self.jobs:
            self.attach(job_id)
        view = self.jobs[job_id]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            yield from self._events_for(job_id)
            if view.terminal:
                return
            remaining = 0.25 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(f"job {job_id} not finished within {timeout} s")
            self._step(min(remaining, 0.25))

    def _events_for(self, job_id: str) -> list[ClientEvent]:
        mine = [e for e in self._events if e.job_id == job_id]
        self._events = [e for e in self._events if e.job_id != job_id]
        return mine

    def wait(self, job_id: str, on_progress: Callable[[JobView], None] | None = None,
             timeout: float | None = None) -> JobView:
        """Block until the job is terminal and return its view (state, data, artifacts, error).

        ``on_progress(view)`` is called on each progress/state event. Survives backend restarts
        (re-attaches). Raises :class:`BackendUnavailable` when ``timeout`` passes first.
        """
        for event in self.events(job_id, timeout):
            if on_progress is not None and event.type in (M.JOB_PROGRESS, M.JOB_STATE):
                on_progress(self.jobs[job_id])
        return self.jobs[job_id]


    # --- artifacts --------------------------------------------------------------------------------------
    def start_download(self, job_id: str, name: str, target: str | os.PathLike[str] | None = None,
                       range_bytes: int | None = None) -> Download:
        """A non-blocking download of one artifact (step it, or pump it with :meth:`finish`)."""
        view = self.jobs.get(job_id)
        return Download(self, job_id, name, record=view.artifact(name) if view else None,
                        target=Path(target) if target is not None else None,
                        range_bytes=range_bytes or ARTIFACT_RANGE_BYTES)

    def start_job_download(self, job_id: str, out_dir: str | os.PathLike[str],
                           range_bytes: int | None = None) -> JobDownload:
        """A non-blocking download of every artifact of a succeeded job (its view must be known)."""
        view = self.jobs.get(job_id)
        if view is None or not view.succeeded:
            state = view.state if view is not None else "unknown"
            raise ProtocolError(f"job {job_id} is {state}, not succeeded: nothing to download")
        return JobDownload(self, job_id, view.artifacts, Path(out_dir),
                           range_bytes=range_bytes or ARTIFACT_RANGE_BYTES, load_arrays=False)

    def finish(self, transfer: Download | JobDownload, timeout: float | None = None) -> None:
        """Pump until ``transfer`` is done ("the blocking download"); raises its error."""
        allowed = self.request_timeout_s if timeout is None else timeout
        if not self.backend_alive:
            self.connect(timeout)
        deadline, progress = time.monotonic() + allowed, -1.0
        while not transfer.step(0.05):
            if transfer.fraction != progress:  # the timeout is for silence, not for the whole file
                deadline, progress = time.monotonic() + allowed, transfer.fraction
            if time.monotonic() > deadline:
                transfer.cancel("timed out")
                raise BackendUnavailable(self._unavailable_text("no artifact bytes in time"))
            self._step(0.05)
        if transfer.error is not None:
            raise transfer.error

    def get_artifact(self, job_id: str, name: str, timeout: float | None = None) -> np.ndarray | bytes:
        """An artifact: a read-only numpy array for ``array`` artifacts, ``bytes`` for files.

        Fetched in ranges of its stored bytes (an array's ``.npy`` file), so no message nears the
        size limit, and checked against its sha256."""
        download = self.start_download(job_id, name)
        self.finish(download, timeout)
        return download.value()

    def download(self, job_id: str, out_dir: str | os.PathLike[str],
                 timeout: float | None = None) -> list[Path]:
        """Fetch every artifact of a succeeded job into ``out_dir`` (arrays as ``.npy``, each
        checked against its sha256; files already there with the right hash are kept). Returns
        the written paths."""
        view = self.jobs.get(job_id)
        if view is None or not view.terminal:
            self.attach(job_id, timeout)
        transfer = self.start_job_download(job_id, out_dir)
        self.finish(transfer, timeout)
        return transfer.written()
