"""The link to one backend: socket, ``hello`` handshake, heartbeats, reconnects, requests and replies.

:meth:`Link.pump` does a bounded amount of work and returns at once (zero-timeout polling): it
reads whatever has arrived, sends a heartbeat when one is due, notices a dead backend and
reconnects, then returns the new events. The blocking calls (:meth:`Link.connect`,
:meth:`Link.request`) run the same step in a loop with a short poll, so they also survive a
backend restart. What the replies and events mean for jobs is the subclass's business
(:class:`protocol.client.Client` overrides the ``_on_*`` hooks).

Not thread-safe: use one link from one thread (Blender: the main thread's timer).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import zmq

from . import messages as M
from .connection import ConnectionInfo
from .curve import apply_client_curve, default_client_key_file, load_keypair
from .errors import BackendUnavailable, BufferIntegrityMismatch, ProtocolError, ServerError, VersionMismatch
from .integrity import LEGACY_BUFFER_INTEGRITY
from .requests import BACKEND_LOST, BACKEND_RESTORED, CONNECTED, ClientEvent, PendingRequest
from .session import DEFAULT_LIMITS, Limits, Message, Session
from .version import PROTOCOL_VERSION, check_compatible

CLIENT_NAME = "avatar-studio-protocol"
MAX_BUFFERED_EVENTS = 10_000


class Link:
    """A connection to one backend; see :class:`protocol.client.Client` for the job API."""

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

    def __enter__(self) -> Link:
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

    def request_nowait(self, msg_type: str, content: dict[str, Any], *, emit: bool = True) -> PendingRequest:
        """Send a request without waiting; the reply arrives through :meth:`pump` (also as an event
        unless ``emit`` is false: the caller then watches the returned request itself)."""
        if self._socket is None:
            self._open_socket()
        return self._send_request(msg_type, content, emit=emit)

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
            self._on_server_event(message)
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
        else:
            self._on_reply_tracked(request_type, pending)
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
        self._on_connected()

    # --- hooks for the job layer ---------------------------------------------------------------------
    def _on_reply_tracked(self, request_type: str, pending: PendingRequest) -> None:
        """A reply (or error reply) to one of our requests other than ``hello`` arrived."""

    def _on_server_event(self, message: Message) -> None:
        """A job event (``job_progress``...) arrived."""

    def _on_connected(self) -> None:
        """The handshake succeeded (first time or after a reconnect)."""
