"""The client: handshake, jobs, events, artifacts; blocking for scripts, ``pump()`` for Blender.

One machine serves both styles. :meth:`Client.pump` does a bounded amount of work and returns at
once (zero-timeout polling): it reads whatever has arrived, updates :attr:`Client.jobs`, sends a
heartbeat when one is due, notices a dead backend and reconnects, then returns the new events.
The blocking calls (:meth:`Client.connect`, :meth:`Client.submit`, :meth:`Client.wait`...) run the
same step in a loop with a short poll, so they also survive a backend restart.

Not thread-safe: use one client from one thread (Blender: the main thread's timer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from . import messages as M
from .artifact_names import artifact_path
from .connection import ConnectionInfo, read_connection_file, write_private_file
from .curve import apply_client_curve, default_client_key_file, load_keypair
from .errors import BackendUnavailable, BufferIntegrityMismatch, ProtocolError, ServerError, VersionMismatch
from .integrity import LEGACY_BUFFER_INTEGRITY
from .session import DEFAULT_LIMITS, Limits, Message, Session
from .version import PROTOCOL_VERSION, check_compatible

CLIENT_NAME = "avatar-studio-protocol"
# Files above this size are fetched in ranges so no single message nears the size limit; at most
# half the default per-frame cap (docs/protocol.md §3), which the server also clips ranges to.
ARTIFACT_RANGE_BYTES = 64 << 20

# Synthetic event types (not on the wire) that pump() reports besides the server's events.
BACKEND_LOST = "backend_lost"
BACKEND_RESTORED = "backend_restored"
CONNECTED = "connected"
MAX_BUFFERED_EVENTS = 10_000


@dataclass
class JobView:
    """What the client knows about one job; updated from events and job records."""

    job_id: str
    kind: str | None = None
    state: str = M.QUEUED
    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    seq: int = -1
    data: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    preview: Any = None

    @property
    def terminal(self) -> bool:
        return self.state in M.TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == M.SUCCEEDED

    @property
    def result(self) -> dict[str, Any] | None:
        """``{"data": ..., "artifacts": [...]}`` once succeeded, else None."""
        return {"data": self.data or {}, "artifacts": self.artifacts} if self.succeeded else None

    def update_from_record(self, record: dict[str, Any]) -> None:
        if self.terminal:  # terminal is final; a stale record must not resurrect the job
            return
        state = record.get("state")
        if isinstance(state, str):
            self.state = state
        if isinstance(record.get("kind"), str):
            self.kind = record["kind"]
        self._update_progress(record)
        if isinstance(record.get("data"), dict):
            self.data = record["data"]
        if isinstance(record.get("artifacts"), list):
            self.artifacts = [a for a in record["artifacts"] if isinstance(a, dict)]
        if isinstance(record.get("error"), dict):
            self.error = record["error"]

    def _update_progress(self, content: dict[str, Any]) -> None:
        fraction = content.get("fraction")
        if isinstance(fraction, int | float) and not isinstance(fraction, bool):
            self.fraction = min(1.0, max(0.0, float(fraction)))
        for name in ("stage", "message"):
            if isinstance(content.get(name), str):
                setattr(self, name, content[name])


@dataclass(frozen=True)
class ClientEvent:
    """One thing that happened: a server event (``job_progress``...), a reply to an asynchronous
    request (``submit_reply``...), an ``error`` reply, or ``backend_lost``/``backend_restored``."""

    type: str
    job_id: str | None = None
    content: dict[str, Any] = field(default_factory=dict)


@dataclass
class PendingRequest:
    """A request in flight; ``done`` turns true on its reply, an error reply, or a lost backend."""

    message: Message
    reply: Message | None = None
    error: ProtocolError | None = None
    emit: bool = False  # report the reply as a ClientEvent from pump()

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None

    def result(self) -> Message:
        if self.error is not None:
            raise self.error
        if self.reply is None:
            raise BackendUnavailable(f"no reply yet to {self.message.msg_type}")
        return self.reply


def _array_from_npy(data: bytearray) -> np.ndarray:
    """Parse ``.npy`` bytes without copying the payload (``np.load`` would copy it once more)."""
    try:
        stream = io.BytesIO(bytes(data[: 1 << 20]))  # the header is small; only it is copied
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ValueError("object arrays are refused")
        count = math.prod(shape)
        array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    except (ValueError, TypeError, OSError) as exc:
        raise ProtocolError(f"artifact is not a valid .npy file: {exc}") from None
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    array.flags.writeable = False
    return array


class Client:
    """A connection to one backend. Create with :meth:`from_connection_file`, then :meth:`connect`."""

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        client_key_file: str | os.PathLike[str] | None = None,
        heartbeat_interval_s: float | None = None,
        dead_after_s: float = 4.0,
        reconnect_interval_s: float = 1.0,
        request_timeout_s: float = 10.0,
        limits: Limits = DEFAULT_LIMITS,
        context: zmq.Context[Any] | None = None,
        client_name: str = CLIENT_NAME,
        client_version: str = "0",
    ) -> None:
        self.info = info
        # Resolved (and refused where the link does not protect unsigned bytes) before any socket.
        self.buffer_integrity = info.effective_buffer_integrity
        self.session = Session(info.key_bytes, limits=limits, buffer_integrity=self.buffer_integrity)
        self.limits = limits
        self._own_heartbeat = heartbeat_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s or 1.0
        self.dead_after_s = dead_after_s
        self.reconnect_interval_s = reconnect_interval_s
        self.request_timeout_s = request_timeout_s
        self.client_name = client_name
        self.client_version = client_version
        self._context = context or zmq.Context.instance()
        self._curve_keys: tuple[bytes, bytes] | None = None
        if info.curve:
            hint = str(client_key_file) if client_key_file else info.client_key_file
            self._curve_keys = load_keypair(default_client_key_file(hint))

        self.jobs: dict[str, JobView] = {}
        self.server_info: dict[str, Any] = {}
        self.backend_alive = False
        self.rejected_messages = 0  # messages that failed verification (wrong key? garbage?)
        self.last_rejection = ""
        self.fatal_error: ProtocolError | None = None  # e.g. VersionMismatch: no point retrying
        self.last_hello_error: ProtocolError | None = None
        self._pending: dict[str, PendingRequest] = {}
        self._socket: zmq.Socket[Any] | None = None
        self._hello: PendingRequest | None = None
        self._ever_connected = False
        self._last_heard = 0.0
        self._last_heartbeat_sent = 0.0
        self._last_hello_sent = 0.0
        self._events: list[ClientEvent] = []
        self._closed = False

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

    # --- connection ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the socket and send ``hello`` without waiting (the add-on's way); see :meth:`pump`."""
        self._closed = False
        if self._socket is None:
            self._open_socket()

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Open the socket, do the ``hello`` handshake and return the server's ``hello_reply``.

        Raises :class:`VersionMismatch` (naming both versions) or :class:`BackendUnavailable`.
        """
        self.start()
        deadline = time.monotonic() + (self.request_timeout_s if timeout is None else timeout)
        while not self.backend_alive:
            if self.fatal_error is not None:
                raise self.fatal_error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.last_hello_error is not None:
                    raise self.last_hello_error
                raise BackendUnavailable(self._unavailable_text("no hello_reply"))
            self._step(min(remaining, 0.05))
        return self.server_info

    def _unavailable_text(self, what: str) -> str:
        text = f"{what} from the backend at {self.info.address}"
        if self.rejected_messages:
            text += (f"; {self.rejected_messages} message(s) failed verification "
                     f"(last: {self.last_rejection}): wrong key or connection file?")
        return text

    def _open_socket(self) -> None:
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0  # closing never waits for unsent messages: a dead backend can't hang us
        self.limits.configure_socket(socket)
        if self._curve_keys is not None:
            if not self.info.server_public_key:
                raise BackendUnavailable("connection file says curve but names no server key")
            apply_client_curve(socket, self.info.server_public_key, *self._curve_keys)
        try:
            socket.connect(self.info.address)
        except zmq.ZMQError as exc:  # e.g. a malformed address in the connection file
            socket.close(linger=0)
            raise BackendUnavailable(f"cannot connect to {self.info.address!r}: {exc}") from None
        self._socket = socket
        self._last_heard = time.monotonic()  # grace period for the handshake
        self._send_hello()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        lost = BackendUnavailable(self._unavailable_text("connection reset before a reply"))
        for pending in self._pending.values():
            pending.error = lost
        self._pending.clear()
        self._hello = None

    def _send_hello(self) -> None:
        content = M.hello_content(PROTOCOL_VERSION, self.client_name, self.client_version,
                                  self.buffer_integrity)
        self._hello = self._send_request(M.HELLO, content)
        self._last_hello_sent = time.monotonic()

    def close(self) -> None:
        """Close the socket (linger 0). The context is shared and left open."""
        self._closed = True
        self._close_socket()
        self.backend_alive = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the pump ----------------------------------------------------------------------------------
    def pump(self, budget_s: float = 0.005, max_messages: int = 64) -> list[ClientEvent]:
        """Do what is due without blocking and return the new events.

        Reads at most ``max_messages`` messages or until ``budget_s`` is spent (a single very large
        message still has to be verified whole), sends a heartbeat when due, detects a dead
        backend (``backend_alive`` turns False after ``dead_after_s`` of silence), reconnects with a
        new socket and re-attaches unfinished jobs once the backend answers again.
        """
        if self._closed:
            return []
        self._run_once(budget_s, max_messages)
        events, self._events = self._events, []
        return events

    def _run_once(self, budget_s: float, max_messages: int) -> None:
        if self._socket is None:
            self._open_socket()
        self._drain(budget_s, max_messages)
        self._housekeeping()
        if len(self._events) > MAX_BUFFERED_EVENTS:  # a blocking-only user never pumps them out
            del self._events[:-MAX_BUFFERED_EVENTS]

    def _step(self, wait_s: float) -> None:
        """Blocking flavour of pump: wait up to ``wait_s`` for input, then do the same work.
        New events stay in the buffer for pump()/events() to hand out."""
        if self._closed:
            raise BackendUnavailable("the client is closed")
        if self._socket is None:
            self._open_socket()
        assert self._socket is not None
        wait_s = max(0.0, min(wait_s, self._time_to_housekeeping()))
        with contextlib.suppress(zmq.ZMQError):
            self._socket.poll(int(wait_s * 1000), zmq.POLLIN)
        self._run_once(0.05, 1000)

    def _time_to_housekeeping(self) -> float:
        now = time.monotonic()
        if self.backend_alive:
            return max(0.0, min(self._last_heartbeat_sent + self.heartbeat_interval_s,
                                self._last_heard + self._silence_allowed()) - now)
        return max(0.0, self._last_hello_sent + self.reconnect_interval_s - now)

    def _drain(self, budget_s: float, max_messages: int) -> None:
        assert self._socket is not None
        deadline = time.monotonic() + budget_s
        for _ in range(max_messages):
            try:
                frames = self._socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = self.session.deserialize(frames)
            except ProtocolError as exc:
                self.rejected_messages += 1
                self.last_rejection = f"{type(exc).__name__}: {exc}"
            else:
                self._last_heard = time.monotonic()
                self._dispatch(message)
            if time.monotonic() >= deadline:
                return

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.backend_alive:
            if now - self._last_heard > self._silence_allowed():
                self.backend_alive = False
                self._events.append(ClientEvent(BACKEND_LOST, None, {"silent_s": now - self._last_heard}))
                self._close_socket()
                self._open_socket()  # a fresh DEALER: new routing id, no stale queued messages
                self._last_heard = now
            elif now - self._last_heartbeat_sent >= self.heartbeat_interval_s:
                self._send_request(M.HEARTBEAT, {"time": time.time()})
                self._last_heartbeat_sent = now
        elif self.fatal_error is None and now - self._last_hello_sent >= self.reconnect_interval_s:
            if now - self._last_heard > self.dead_after_s:
                # Still silent: start over with a fresh socket rather than pile hellos on one.
                self._close_socket()
                self._open_socket()
                self._last_heard = now
            else:
                self._send_hello()

    def _silence_allowed(self) -> float:
        """How long the backend may stay silent before we call it dead. A big artifact reply
        arrives in one piece and holds back the heartbeat replies queued behind it, so while one
        is expected the request timeout applies instead."""
        if any(p.message.msg_type == M.GET_ARTIFACT for p in self._pending.values()):
            return max(self.dead_after_s, self.request_timeout_s)
        return self.dead_after_s

    # --- requests ------------------------------------------------------------------------------------
    def _send_request(self, msg_type: str, content: dict[str, Any], emit: bool = False) -> PendingRequest:
        assert self._socket is not None
        message = self.session.msg(msg_type, content)
        pending = PendingRequest(message, emit=emit)
        try:
            self.session.send(self._socket, message, flags=zmq.NOBLOCK)
        except zmq.Again:
            pending.error = BackendUnavailable(self._unavailable_text(f"send queue full for {msg_type}"))
            return pending
        if msg_type != M.HEARTBEAT:  # heartbeat replies only count as liveness
            self._pending[message.msg_id] = pending
        return pending

    def request_nowait(self, msg_type: str, content: dict[str, Any]) -> PendingRequest:
        """Send a request without waiting; the reply arrives through :meth:`pump` (as an event)."""
        if self._socket is None:
            self._open_socket()
        return self._send_request(msg_type, content, emit=True)

    def request(self, msg_type: str, content: dict[str, Any], timeout: float | None = None) -> Message:
        """Send a request and wait for its reply. Raises :class:`ServerError` for an ``error``
        reply and :class:`BackendUnavailable` when nothing comes back in time."""
        if not self.backend_alive:
            self.connect(timeout)
        pending = self._send_request(msg_type, content)
        deadline = time.monotonic() + (self.request_timeout_s if timeout is None else timeout)
        while not pending.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._pending.pop(pending.message.msg_id, None)
                raise BackendUnavailable(self._unavailable_text(f"no reply to {msg_type}"))
            self._step(min(remaining, 0.05))
        return pending.result()

    # --- dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, message: Message) -> None:
        msg_type = message.msg_type
        parent_id = message.parent_id
        pending = self._pending.pop(parent_id, None) if parent_id is not None else None
        if pending is not None:
            self._on_reply(pending, message)
        elif msg_type in M.EVENTS:
            self._on_event(message)
        elif msg_type == M.ERROR:
            # An error not tied to a request of ours (e.g. our garbage, or a request we gave up on).
            self._events.append(ClientEvent(M.ERROR, None, message.content))
        # Anything else (heartbeat replies, unknown types from a newer server) only counts as life.

    def _on_reply(self, pending: PendingRequest, reply: Message) -> None:
        request_type = pending.message.msg_type
        content = reply.content
        if reply.msg_type == M.ERROR:
            ename = str(content.get("ename", "ProtocolError"))
            evalue = str(content.get("evalue", ""))
            if ename == M.E_VERSION:
                details = content.get("details") if isinstance(content.get("details"), dict) else {}
                remote = str(details.get("server_version", reply.header.get("version", "?")))
                pending.error = VersionMismatch(PROTOCOL_VERSION, remote, evalue)
            elif ename == M.E_BUFFER_INTEGRITY:
                details = content.get("details") if isinstance(content.get("details"), dict) else {}
                server_mode = str(details.get("server_buffer_integrity", "?"))
                pending.error = BufferIntegrityMismatch(self.buffer_integrity, server_mode,
                                                        "refused by the server")
            else:
                pending.error = ServerError(ename, evalue, content.get("details"))
        else:
            pending.reply = reply
        if request_type == M.HELLO:
            self._on_hello_reply(pending)
        elif pending.reply is not None:
            self._track_reply(request_type, pending)
        elif request_type == M.ATTACH and isinstance(pending.error, ServerError):
            self._on_attach_unknown(pending)
        if pending.emit:
            job_id = pending.message.content.get("job_id") or content.get("job_id")
            self._events.append(ClientEvent(reply.msg_type, job_id if isinstance(job_id, str) else None,
                                            content))

    def _on_hello_reply(self, pending: PendingRequest) -> None:
        if pending is not self._hello:
            return  # a late answer to an older hello: ignore
        if pending.error is not None:
            if isinstance(pending.error, VersionMismatch | BufferIntegrityMismatch):
                self.fatal_error = pending.error  # retrying cannot help: the configuration differs
                self._events.append(ClientEvent(M.ERROR, None, {"ename": pending.error.ename,
                                                                "evalue": str(pending.error)}))
            self.last_hello_error = pending.error
            return
        assert pending.reply is not None
        content = pending.reply.content
        try:
            check_compatible(content.get("protocol_version"))
        except VersionMismatch as exc:
            self.fatal_error = exc
            pending.error, pending.reply = exc, None
            return
        # A server that states no mode predates the setting and hashes buffers (digest).
        server_mode = content.get("buffer_integrity", LEGACY_BUFFER_INTEGRITY)
        if server_mode != self.buffer_integrity:
            mismatch = BufferIntegrityMismatch(self.buffer_integrity, str(server_mode)[:32],
                                               "stated in the server's hello_reply")
            self.fatal_error = mismatch
            pending.error, pending.reply = mismatch, None
            self._events.append(ClientEvent(M.ERROR, None, {"ename": mismatch.ename,
                                                            "evalue": str(mismatch)}))
            return
        self.server_info = content
        interval = content.get("heartbeat_interval_s")
        if self._own_heartbeat is None and isinstance(interval, int | float) and 0 < interval <= 60:
            self.heartbeat_interval_s = float(interval)
        was_lost = self._ever_connected
        self.backend_alive = True
        self._ever_connected = True
        self._last_heartbeat_sent = time.monotonic()
        self._events.append(ClientEvent(BACKEND_RESTORED if was_lost else CONNECTED, None, content))
        for view in self.jobs.values():
            if not view.terminal:  # re-subscribe: results produced while we were away come again
                self._send_request(M.ATTACH, {"job_id": view.job_id})

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

    def _on_event(self, message: Message) -> None:
        content = message.content
        job_id = content.get("job_id")
        if not isinstance(job_id, str):
            return
        view = self._view(job_id)
        msg_type = message.msg_type
        if view.terminal:
            return  # e.g. the terminal event re-sent after attach: we already have it
        if msg_type == M.JOB_PROGRESS:
            seq = content.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if seq <= view.seq:
                    return  # stale or duplicated progress
                view.seq = seq
            if view.state == M.QUEUED:
                view.state = M.RUNNING
            view._update_progress(content)
            if isinstance(content.get("preview"), np.ndarray):
                view.preview = content["preview"]
        elif msg_type == M.JOB_STATE:
            state = content.get("state")
            if state in (M.QUEUED, M.RUNNING):
                view.state = state
        else:
            view.state = M.TERMINAL_EVENT_STATE[msg_type]
            if msg_type == M.JOB_SUCCEEDED:
                view.fraction = 1.0
                view.data = content.get("data") if isinstance(content.get("data"), dict) else {}
                artifacts = content.get("artifacts")
                if isinstance(artifacts, list):
                    view.artifacts = [a for a in artifacts if isinstance(a, dict)]
            elif msg_type == M.JOB_FAILED:
                error = content.get("error")
                view.error = error if isinstance(error, dict) else {"ename": "Unknown", "evalue": str(error)}
        self._events.append(ClientEvent(msg_type, job_id, content))

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

    def get_artifact(self, job_id: str, name: str, timeout: float | None = None) -> np.ndarray | bytes:
        """An artifact: a read-only numpy array for ``array`` artifacts, ``bytes`` for files.

        Artifacts above ``ARTIFACT_RANGE_BYTES`` (per the job's artifact record) are fetched in
        ranges of their stored bytes (an array's ``.npy`` file), so no message nears the size limit.
        """
        view = self.jobs.get(job_id)
        record = next((a for a in view.artifacts if a.get("name") == name), None) if view else None
        size = record.get("size") if record else None
        if isinstance(size, int) and not isinstance(size, bool) and size > ARTIFACT_RANGE_BYTES:
            return self._get_in_ranges(job_id, name, size, record.get("kind") == "array", timeout)
        content = self.request(M.GET_ARTIFACT, {"job_id": job_id, "name": name}, timeout).content
        if isinstance(content.get("array"), np.ndarray):
            return content["array"]
        if isinstance(content.get("data"), memoryview):
            return bytes(content["data"])
        raise ProtocolError(f"get_artifact_reply for {name!r} holds neither an array nor data")

    def _get_in_ranges(self, job_id: str, name: str, size: int, is_array: bool,
                       timeout: float | None) -> np.ndarray | bytes:
        out = bytearray()
        while len(out) < size:
            content = self.request(M.GET_ARTIFACT, {"job_id": job_id, "name": name, "offset": len(out),
                                                    "length": ARTIFACT_RANGE_BYTES}, timeout).content
            if "offset" not in content:  # the server sent the whole artifact at once
                if isinstance(content.get("array"), np.ndarray):
                    return content["array"]
                if isinstance(content.get("data"), memoryview):
                    return bytes(content["data"])
                raise ProtocolError(f"get_artifact_reply for {name!r} holds neither an array nor data")
            data = content.get("data")
            if not isinstance(data, memoryview) or content.get("offset") != len(out) or not data.nbytes:
                raise ProtocolError(f"artifact {name!r}: bad range reply")
            out += data
        return _array_from_npy(out) if is_array else bytes(out)

    def download(self, job_id: str, out_dir: str | os.PathLike[str],
                 timeout: float | None = None) -> list[Path]:
        """Fetch every artifact of a succeeded job into ``out_dir`` (arrays as ``.npy``; files
        checked against their sha256). Returns the written paths."""
        view = self.jobs.get(job_id)
        if view is None or not view.terminal:
            view = self.attach(job_id, timeout)
        if not view.succeeded:
            raise ProtocolError(f"job {job_id} is {view.state}, not succeeded: nothing to download")
        out = Path(out_dir)
        written: list[Path] = []
        for record in view.artifacts:
            name = record.get("name")
            if not isinstance(name, str):
                continue
            relative = artifact_path(name)
            value = self.get_artifact(job_id, name, timeout)
            if isinstance(value, np.ndarray):
                target = out / (str(relative) if relative.suffix == ".npy" else f"{relative}.npy")
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, value, allow_pickle=False)
            else:
                expected = record.get("sha256")
                if isinstance(expected, str) and hashlib.sha256(value).hexdigest() != expected.lower():
                    raise ProtocolError(f"artifact {name!r} does not match its sha256")
                target = out / relative
                write_private_file(target, value).chmod(0o644)
            written.append(target)
        return written
