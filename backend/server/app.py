# Over 450 lines: one loop; to split into startup, receive, handlers, events, sending (next).
"""The job server: one ROUTER socket, one thread, never blocked by a job.

Each loop iteration polls the socket together with the executor's worker pipes and process
sentinels, handles every request that is waiting, turns executor events into job-store state
changes and messages for the subscribed clients, and retries replies that met back-pressure.

Delivery rules (docs/protocol.md §4, §8):
- Replies and terminal events are sent without blocking; if a peer's queue is full they wait in an
  outbox and are retried each iteration (for :data:`OUTBOX_TTL_S`; after that the client's
  re-``attach`` gets the terminal event again from the job store, which is the real guarantee).
- Progress events are sent with ``NOBLOCK`` and simply dropped when the peer is slow.
- ``ROUTER_MANDATORY`` makes a send to a vanished peer fail at once (``EHOSTUNREACH``), and that peer's
  subscriptions are forgotten. TCP keepalive on the socket notices dead TCP peers.
- Fair service (docs/security.md): requests are metered per client (ratelimit.py), submits are
  admitted per client and in total (quotas.py), and a peer whose waiting messages exceed their
  bound (outbox.py) is dropped.
- A malformed message is logged and answered with an ``error`` (at most a few per second per peer);
  a bug while handling a request is answered with ``InternalError``. Neither stops the loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import mmap
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

import backend
from backend.jobs.api import JOB_KINDS
from backend.jobs.confine import check_params
from protocol import (
    DEFAULT_LIMITS,
    PROTOCOL_VERSION,
    ConnectionInfo,
    Limits,
    Message,
    ProtocolError,
    Session,
    parse_version,
    write_connection_file,
)
from protocol import messages as M
from protocol.integrity import (
    BUFFER_INTEGRITY_ENV,
    LEGACY_BUFFER_INTEGRITY,
    is_loopback_address,  # one definition of 'loopback' for the project
    resolve_buffer_integrity,
)
from protocol.kinds import ParamError
from protocol.session import REPLAY_START_SKEW_S

from . import outbox as ob
from .artifacts import ArtifactStore
from .clientid import client_id_of
from .curve_auth import LOCAL_CLIENT_NAME, CurveKeys, start_authenticator
from .datadir import (
    TCP_LOOPBACK_BIND,
    DataDirError,
    load_or_create_hmac_key,
    local_endpoint,
    secure_data_dir,
)
from .executor import Executor
from .executor_events import (
    ExecutorEvent,
    JobCancelledEvent,
    JobFailed,
    JobProgressed,
    JobStarted,
    JobSucceeded,
)
from .identity import ClientIdentity, PeerIdentities
from .inputs import StagedInputs
from .jobstore import IdempotencyConflict, InvalidTransition, Job, JobStore
from .params import ParamsError, externalize, refuse_reserved_keys
from .quotas import E_RATE_LIMITED, QueueLimits, Refusal
from .ratelimit import DEFAULT_BURST, DEFAULT_RATE, RateLimiter, request_cost
from .retention import collect_garbage

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
OUTBOX_TTL_S = ob.TTL_S
PROGRESS_DB_INTERVAL_S = 0.25  # progress is written to SQLite at most this often per job
ERROR_REPLIES_PER_S = 5.0  # per peer, for malformed input (a garbage flood gets few answers)
MAX_REQUESTS_PER_ITERATION = 200
# Requests are read until this much time went by in one iteration, so workers' events (a job
# started, a job finished) wait at most about this long behind a burst of requests.
REQUEST_TIME_PER_ITERATION_S = 0.05
DROPPED_PEER_IGNORED_S = 10.0  # a peer dropped for not reading is ignored this long
LIST_JOBS_DEFAULT_LIMIT = 1000
LIST_JOBS_MAX_LIMIT = 1_000_000
# Headroom under the message limit for the JSON frames of a get_artifact reply.
ARTIFACT_REPLY_MARGIN = 1 << 20


class ServerStartError(RuntimeError):
    """The server refuses to start (unsafe bind, data dir in use...). The message says why."""


class BadRequest(Exception):
    """A request we understood but cannot serve; becomes an ``error`` reply with this ``ename``."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue


@dataclass
class ServerConfig:
    data_dir: Path
    # None: the local default, an ipc socket inside the data dir (datadir.local_endpoint; TCP
    # loopback where ipc is unavailable), or TCP loopback with CURVE (meant for remote clients).
    bind: str | None = None
    curve: bool = False
    workers: int = 2
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    cancel_grace_s: float = 0.5
    limits: Limits = DEFAULT_LIMITS
    # "digest" | "transport" | None (the link's default: transport with CURVE, else digest);
    # docs/protocol.md §2.1. Falls back to $AVATAR_STUDIO_BUFFER_INTEGRITY; CLI: serve --buffer-integrity.
    buffer_integrity: str | None = None
    # Folders jobs may read besides <data-dir>/inputs (`serve --input-root DIR`, repeatable);
    # paths in params are confined to them (backend/jobs/confine.py).
    input_roots: tuple[Path, ...] = ()
    # Fair service (backend/server/quotas.py, ratelimit.py, outbox.py; docs/security.md).
    queue_limits: QueueLimits = field(default_factory=QueueLimits)
    request_rate: float = DEFAULT_RATE  # loop-time units (~1 ms) per second per client; <= 0: off
    request_burst: float = DEFAULT_BURST
    artifact_quota_bytes: int | None = None  # all stored blobs together; None: no quota


_Outgoing = ob.Outgoing


@dataclass
class _JobRuntime:
    """In-memory state of a live job: who listens, progress sequence, last DB write."""

    subscribers: dict[bytes, dict[str, Any]] = field(default_factory=dict)  # identity -> parent header
    seq: int = 0
    last_db_write: float = 0.0


def _normalize_bind(address: str) -> str:
    # ZeroMQ's own spelling of "any free port" is '*'; accept the familiar ':0' too.
    return address[:-2] + ":*" if address.startswith("tcp://") and address.endswith(":0") else address


def _check_ipc_path_free(path: str) -> None:
    """libzmq unlinks whatever is at an ipc path before binding it: refuse a path where another
    server listens (it would silently lose its socket) or that is not a socket at all (a file)."""
    import socket as pysocket
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise zmq.ZMQError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return  # nobody listens: a socket left by a server that died, libzmq replaces it
    finally:
        probe.close()
    raise zmq.ZMQError(errno.EADDRINUSE)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).expanduser().resolve()
        self.connection_file = self.data_dir / "connection.json"
        self.context: zmq.Context[Any] | None = None
        self.socket: zmq.Socket[Any] | None = None
        self.session: Session | None = None  # builds headers; per-client keys in self.identities
        self.identities: PeerIdentities | None = None
        self.store: JobStore | None = None
        self.artifacts: ArtifactStore | None = None
        self.executor: Executor | None = None
        self.info: ConnectionInfo | None = None
        self.buffer_integrity = LEGACY_BUFFER_INTEGRITY  # resolved in start()
        self._auth: Any = None
        self._lock_fd: int | None = None
        self._stopping = False
        self._jobs: dict[str, _JobRuntime] = {}
        self._outbox = ob.Outbox()  # messages that met back-pressure, bounded per peer
        self._limiter = RateLimiter(config.request_rate, config.request_burst)
        self._peer_clients: dict[bytes, str] = {}  # routing identity -> client id (accounting)
        self._dropped: dict[bytes, float] = {}  # peers that stopped reading -> ignored until
        self._error_budget: dict[bytes, tuple[float, float]] = {}  # identity -> (tokens, time)
        self.stats = {"requests": 0, "malformed": 0, "internal_errors": 0, "dropped_progress": 0,
                      "rate_limited": 0, "dropped_peers": 0}

    # --- start / stop ----------------------------------------------------------------------------

    def start(self) -> ConnectionInfo:
        """Lock the data dir, open the store, start workers, bind, then write the connection file."""
        if self.config.bind is None:
            self.config.bind = TCP_LOOPBACK_BIND if self.config.curve else local_endpoint(self.data_dir)
        bind = _normalize_bind(self.config.bind)
        if not is_loopback_address(bind) and not self.config.curve:
            raise ServerStartError(
                f"refusing to bind {self.config.bind} without CURVE encryption: a non-loopback address "
                f"can be reached from other machines. Start with --curve and give each client a key "
                f"(`avatar-studio keys create NAME`), or bind tcp://127.0.0.1:PORT."
            )
        try:  # before anything is created: a refused setting leaves nothing behind
            self.buffer_integrity = resolve_buffer_integrity(
                self.config.buffer_integrity or os.environ.get(BUFFER_INTEGRITY_ENV) or None,
                bind, self.config.curve)
        except ProtocolError as exc:
            raise ServerStartError(str(exc)) from None
        try:  # private like ~/.ssh before any secret is read or written there
            secure_data_dir(self.data_dir)
        except DataDirError as exc:
            raise ServerStartError(str(exc)) from None
        self._lock_data_dir()
        self.store = JobStore(self.data_dir / "jobs.sqlite3")
        lost = self.store.fail_unfinished(
            "the server stopped while this job was queued or running (its worker is gone); resubmit it"
        )
        if lost:
            log.warning("marked %d job(s) of a previous server failed: %s", len(lost), ", ".join(lost))
        self.artifacts = ArtifactStore(self.data_dir / "artifacts")
        self.artifacts.set_quota(self.config.artifact_quota_bytes)  # read by the workers too
        collected = collect_garbage(self.store, self.artifacts)  # orphans of earlier runs
        if collected.blobs or collected.temp_files:
            log.info("removed %d unreferenced blob(s) (%d bytes) and %d temp file(s) from the artifact "
                     "store", collected.blobs, collected.bytes, collected.temp_files)
        key = load_or_create_hmac_key(self.data_dir)
        not_before = time.time() - REPLAY_START_SKEW_S  # messages signed before this start: replays
        self.session = Session(key.encode("utf-8"), limits=self.config.limits,
                               buffer_integrity=self.buffer_integrity, replay_not_before=not_before)
        self.identities = PeerIdentities(self.data_dir, self.config.curve, session_id=self.session.session_id,
                                         limits=self.config.limits, buffer_integrity=self.buffer_integrity,
                                         replay_not_before=not_before)
        self.executor = Executor(
            self.data_dir, workers=self.config.workers, cancel_grace_s=self.config.cancel_grace_s,
            input_roots=tuple(self.config.input_roots),
        )
        self.executor.start()
        self.context = zmq.Context()
        server_public: str | None = None
        local_client_key: str | None = None
        socket = self.context.socket(zmq.ROUTER)
        socket.linger = 0
        socket.router_mandatory = True
        socket.sndhwm = ob.PEER_SEND_HWM  # beyond this a slow peer's messages wait in the bounded outbox
        socket.rcvhwm = 1000
        # Dead TCP peers are noticed by TCP keepalive, not ZMTP heartbeats: libzmq 4.3 aborts the
        # whole process (assert !_io_error) when a heartbeat timer fires on a connection whose
        # peer flooded until our receive pipe was full and then hung up (docs/security.md).
        socket.tcp_keepalive = 1
        socket.tcp_keepalive_idle = max(1, round(self.config.heartbeat_interval_s * 5))
        socket.tcp_keepalive_intvl = max(1, round(self.config.heartbeat_interval_s))
        socket.tcp_keepalive_cnt = 5
        self.config.limits.configure_socket(socket)
        if self.config.curve:
            keys = CurveKeys(self.data_dir)
            public, secret = keys.server_keypair()
            self._auth = start_authenticator(self.context, keys)  # before bind: no unchecked handshake
            socket.curve_server = True
            socket.curve_publickey = public
            socket.curve_secretkey = secret
            server_public = public.decode("ascii")
            local_client_key = str(keys.ensure_local_client())
            remote = set(keys.client_public_keys()) - {LOCAL_CLIENT_NAME}
            if not remote:
                log.warning(
                    "CURVE is on but only this machine's own key is listed: give each remote client "
                    "a key with `avatar-studio keys create NAME --data-dir %s`",
                    self.data_dir,
                )
        self.socket = socket  # closed by close() even if the bind fails
        if bind.startswith("tcp://["):
            socket.ipv6 = True
        try:
            address = self._bind(socket, bind)
        except zmq.ZMQError as exc:
            raise ServerStartError(f"cannot bind {self.config.bind}: {exc}") from None
        self.info = ConnectionInfo(
            address=address,
            key=key,
            curve=self.config.curve,
            server_public_key=server_public,
            client_key_file=local_client_key,
            server_pid=os.getpid(),
            buffer_integrity=self.buffer_integrity,  # clients sign buffers the way this file says
        )
        # Written last: a client that sees the file finds a server ready to answer.
        write_connection_file(self.connection_file, self.info)
        log.info("serving on %s (data dir %s, %d worker(s))", address, self.data_dir, self.config.workers)
        return self.info

    def _lock_data_dir(self) -> None:
        path = self.data_dir / "server.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = path.read_text().strip() or "?"
            raise ServerStartError(
                f"another server (pid {other}) is using the data dir {self.data_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd  # held until this process exits; the kernel drops it even on SIGKILL

    def _bind(self, socket: zmq.Socket[Any], bind: str) -> str:
        """Bind; for a free-port request prefer the port of the previous run (clients reconnect)."""
        if bind.startswith("ipc://"):
            _check_ipc_path_free(bind[len("ipc://"):])
        if bind.startswith("tcp://") and bind.endswith(":*") and self.connection_file.exists():
            with contextlib.suppress(Exception):
                from protocol import read_connection_file

                previous = read_connection_file(self.connection_file)
                if previous.port and previous.ip == bind[len("tcp://") : -2].strip("[]"):
                    try:
                        socket.bind(f"{bind[:-2]}:{previous.port}")
                        return socket.getsockopt_string(zmq.LAST_ENDPOINT)
                    except zmq.ZMQError:
                        pass  # taken by something else: any free port will do
        socket.bind(bind)
        return socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def request_stop(self, *_: Any) -> None:
        self._stopping = True

    def close(self) -> None:
        """Stop workers, fail what was running (clearly), close sockets, remove our connection file."""
        if self.executor is not None and self.store is not None:
            unfinished = [*self.executor.running, *self.executor.queued]
            self.executor.shutdown()
            for job_id in unfinished:
                self._finish(
                    job_id,
                    M.FAILED,
                    error={
                        "ename": "ServerStopped",
                        "evalue": "the server was stopped while the job was unfinished",
                        "traceback": "",
                    },
                )
            self.executor = None
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self.context is not None:
            self.context.term()
            self.context = None
        if self.store is not None:
            self.store.close()
            self.store = None
        with contextlib.suppress(Exception):
            from protocol import read_connection_file

            if read_connection_file(self.connection_file).server_pid == os.getpid():
                self.connection_file.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM (or :meth:`request_stop`), then :meth:`close`."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopping:
                self.run_once(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    # --- the loop ----------------------------------------------------------------------------------

    def run_once(self, max_wait_s: float) -> None:
        assert self.socket is not None and self.executor is not None
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        for fd in self.executor.poll_fds():
            poller.register(fd, zmq.POLLIN)
        wait = max_wait_s
        deadline = self.executor.next_deadline()
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if self._outbox:
            wait = min(wait, 0.02)
        poller.poll(math.ceil(wait * 1000))  # ceil: never spin on a sub-millisecond wait
        # ZeroMQ hands out one message per peer in turn (fair queueing), so a flood from one peer
        # does not hide the others' requests; the time budget bounds how long workers' events wait.
        until = time.monotonic() + REQUEST_TIME_PER_ITERATION_S
        for _ in range(MAX_REQUESTS_PER_ITERATION):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._on_frames_metered(frames)
            if time.monotonic() > until:
                break
        for event in self.executor.service():
            self._on_executor_event(event)
        self._flush_outbox()

    # --- incoming -------------------------------------------------------------------------------

    def _on_frames_metered(self, frames: list[Any]) -> None:
        """Rate limit per client (ratelimit.py) around :meth:`_on_frames`; ignore dropped peers."""
        identity = bytes(frames[0].bytes) if frames else b""
        if self._dropped and self._dropped.get(identity, 0.0) > time.monotonic():
            return  # it stopped reading what we sent; nothing it asks now would reach it
        client = self._peer_clients.get(identity)
        if client is None:
            if len(self._peer_clients) > 10_000:  # bound memory against many short-lived peers
                self._peer_clients.clear()
            client = self._peer_clients[identity] = client_id_of(frames, identity)
        if not self._limiter.allow(client):
            self.stats["rate_limited"] += 1
            if identity and self._may_send_error(identity):  # the refusals are limited too
                self._refuse_rate_limited(identity, client, frames)
            return
        started = time.perf_counter()
        try:
            self._on_frames(frames)
        finally:
            self._limiter.charge(client, request_cost(time.perf_counter() - started))

    def _refuse_rate_limited(self, identity: bytes, client: str, frames: list[Any]) -> None:
        assert self.session is not None
        try:
            message = self.session.deserialize(frames)  # only to name the request in the reply
        except ProtocolError:
            return
        wait = self._limiter.retry_after(client)
        text = (f"too many requests: this client used its share of the server's time "
                f"({self._limiter.rate:g} units/s, burst {self._limiter.burst:g}; a unit is about "
                f"1 ms of the server's loop); retry in {wait:.2f} s")
        content = M.error_content(E_RATE_LIMITED, text, {"retry_after_s": round(wait, 3)})
        self._send(identity, M.ERROR, content, parent=message)

    def _client_of(self, identity: bytes) -> str:
        """The share a request is counted against for queue and rate limits (clientid.py): a CURVE
        client's name, else the connection. Local connections are all owned by "local" (see
        :meth:`client_id_of`) but each gets its own share, so one busy script does not starve the
        user's Blender session."""
        return self._peer_clients.get(identity) or f"peer:{identity.hex()}"

    def client_of(self, identity: bytes) -> ClientIdentity:
        """The client behind a routing id that sent the request being handled (client_id, admin)."""
        assert self.identities is not None
        client = self.identities.client(identity)
        assert client is not None, "only requests of known clients reach the handlers"
        return client

    def client_id_of(self, identity: bytes) -> str:
        """The client id of the request being handled: the key for per-client quotas and limits
        (a CURVE client's listed name, else "local"; backend/server/identity.py). Before a message
        is verified, ``identity.client_id_of(frames)`` gives the same from the raw frames."""
        return self.client_of(identity).client_id

    def _on_frames(self, frames: list[Any]) -> None:
        assert self.session is not None and self.identities is not None
        identity = bytes(frames[0].bytes) if frames else b""
        # Verified with the key of the client CURVE authenticated on this connection (ZAP User-Id),
        # so another client's HMAC key is useless here.
        client, changed = self.identities.on_frames(identity, frames)
        if changed:  # a routing id reused by another client: it inherits no subscriptions
            for runtime in self._jobs.values():
                runtime.subscribers.pop(identity, None)
        if client is None:  # revoked while connected: nothing to verify with, nobody to answer
            self.stats["malformed"] += 1
            log.log(logging.WARNING if self._may_send_error(identity) else logging.DEBUG,
                    "dropped a message from peer %s: its client is no longer listed", identity.hex()[:16])
            return
        try:
            message = self.identities.session(client).deserialize(frames)
        except ProtocolError as exc:
            self.stats["malformed"] += 1
            # One budget for the log line and the reply: a flood of garbage costs little of either.
            answer = bool(identity) and self._may_send_error(identity)
            log.log(
                logging.WARNING if answer else logging.DEBUG,
                "rejected a message from peer %s: %s: %s",
                identity.hex()[:16],
                type(exc).__name__,
                exc,
            )
            if answer:
                ename = getattr(exc, "ename", M.E_PROTOCOL)
                self._send(identity, M.ERROR, M.error_content(ename, str(exc)[:500]), parent={})
            return
        self.stats["requests"] += 1
        try:
            self._on_request(identity, message)
        except BadRequest as exc:
            self._send(identity, M.ERROR, M.error_content(exc.ename, exc.evalue), parent=message)
        except Refusal as exc:  # a limit (quotas.py): the reply names it
            self._send(identity, M.ERROR, M.error_content(exc.ename, exc.evalue, exc.details), parent=message)
        except UnicodeEncodeError:  # JSON may carry lone surrogates ("\ud800"); SQLite refuses them
            text = "strings in the request must be valid Unicode (no lone surrogates)"
            self._send(identity, M.ERROR, M.error_content(M.E_BAD_REQUEST, text), parent=message)
        except Exception as exc:  # a bug must cost one request, not the server
            self.stats["internal_errors"] += 1
            log.exception("internal error while handling %s", message.header.get("msg_type"))
            self._send(
                identity,
                M.ERROR,
                M.error_content(M.E_INTERNAL, f"{type(exc).__name__}: {exc}"),
                parent=message,
            )

    def _may_send_error(self, identity: bytes) -> bool:
        """Token bucket per peer, so a flood of garbage does not turn into a flood of replies."""
        now = time.monotonic()
        tokens, last = self._error_budget.get(identity, (ERROR_REPLIES_PER_S, now))
        tokens = min(ERROR_REPLIES_PER_S, tokens + (now - last) * ERROR_REPLIES_PER_S)
        allowed = tokens >= 1.0
        self._error_budget[identity] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._error_budget) > 10_000:  # bound memory against many short-lived peers
            self._error_budget.clear()
        return allowed

    def _on_request(self, identity: bytes, message: Message) -> None:
        msg_type = message.msg_type
        if msg_type == M.HELLO:
            self._on_hello(identity, message)
            return
        remote = message.header.get("version")
        if parse_version(remote)[0] != parse_version(PROTOCOL_VERSION)[0]:
            self._send(
                identity, M.ERROR, M.version_mismatch_content(PROTOCOL_VERSION, remote), parent=message
            )
            return
        handler = {
            M.SUBMIT: self._on_submit,
            M.CANCEL: self._on_cancel,
            M.LIST_JOBS: self._on_list_jobs,
            M.ATTACH: self._on_attach,
            M.GET_ARTIFACT: self._on_get_artifact,
            M.HEARTBEAT: self._on_heartbeat,
        }.get(msg_type)
        if handler is None:
            raise BadRequest(M.E_UNKNOWN_TYPE, f"unknown request type {msg_type[:64]!r}")
        handler(identity, message)

    def _reply(self, identity: bytes, request: Message, content: dict[str, Any]) -> None:
        self._send(identity, M.reply_type(request.msg_type), content, parent=request)

    def _on_hello(self, identity: bytes, message: Message) -> None:
        client_version = message.content.get("protocol_version", message.header.get("version"))
        try:
            compatible = parse_version(client_version)[0] == parse_version(PROTOCOL_VERSION)[0]
        except ProtocolError:
            compatible = False
        if not compatible:
            self._send(
                identity,
                M.ERROR,
                M.version_mismatch_content(PROTOCOL_VERSION, client_version),
                parent=message,
            )
            return
        assert self.session is not None
        # Refuse a client that signs buffers another way (an old client states nothing: digest).
        client_mode = message.content.get("buffer_integrity", LEGACY_BUFFER_INTEGRITY)
        if client_mode != self.buffer_integrity:
            content = M.buffer_integrity_mismatch_content(self.buffer_integrity, str(client_mode)[:32])
            self._send(identity, M.ERROR, content, parent=message)
            return
        self._reply(
            identity,
            message,
            {
                "protocol_version": PROTOCOL_VERSION,
                "buffer_integrity": self.buffer_integrity,
                "server_version": backend.__version__,
                "session": self.session.session_id,
                "job_kinds": [{"name": k.name, "description": k.description} for k in JOB_KINDS.values()],
                "heartbeat_interval_s": self.config.heartbeat_interval_s,
                "curve": self.config.curve,
            },
        )

    def _on_heartbeat(self, identity: bytes, message: Message) -> None:
        self._reply(identity, message, {"time": message.content.get("time"), "server_time": time.time()})

    def _job_or_error(self, identity: bytes, message: Message) -> Job:
        """The requested job, if this client may see it. Another client's job is answered exactly
        like a job that does not exist (no oracle for other clients' job ids)."""
        assert self.store is not None
        job_id = message.content.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest(M.E_BAD_REQUEST, f"{message.msg_type} needs a string 'job_id'")
        job = self.store.get(job_id)
        if job is None or not self.client_of(identity).may_see(job.owner):
            raise BadRequest(M.E_UNKNOWN_JOB, f"no job with id {job_id[:64]!r}")
        return job

    def _on_submit(self, identity: bytes, message: Message) -> None:
        assert self.store is not None and self.artifacts is not None and self.executor is not None
        content = message.content
        kind = content.get("kind")
        params = content.get("params", {})
        key = content.get("idempotency_key")
        if not isinstance(kind, str):
            raise BadRequest(M.E_BAD_REQUEST, "submit needs a string 'kind'")
        if kind not in JOB_KINDS:
            raise BadRequest(
                M.E_UNKNOWN_KIND, f"unknown job kind {kind[:64]!r}; known: {', '.join(sorted(JOB_KINDS))}"
            )
        if not isinstance(params, dict):
            raise BadRequest(M.E_BAD_REQUEST, "submit 'params' must be an object")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
            raise BadRequest(M.E_BAD_REQUEST, "'idempotency_key' must be a string of 1-256 characters")
        try:  # the kind's contract (protocol/kinds.py), paths confined, before anything is stored
            refuse_reserved_keys(params)
            check_params(kind, params, self.data_dir, self.config.input_roots)
        except (ParamError, ParamsError) as exc:
            raise BadRequest(M.E_BAD_REQUEST, str(exc)) from None
        client, owner = self._client_of(identity), self.client_id_of(identity)
        if key is None or self.store.by_idempotency_key(key, owner) is None:  # a duplicate adds no job
            limits = self.config.queue_limits
            limits.check(client, self.executor.unfinished(client), self.executor.unfinished())
        try:  # inputs are kept only if the job is recorded (inputs.py): a refusal stores nothing
            with StagedInputs(self.artifacts) as inputs:
                stored = externalize(params, self.artifacts, inputs.blobs)
                inputs.admit()
                job, duplicate = self.store.create(kind, stored, key, owner=owner)
        except (IdempotencyConflict, ParamsError) as exc:
            raise BadRequest(M.E_BAD_REQUEST, str(exc)) from None
        self._subscribe(job.job_id, identity, message)
        self._reply(identity, message, {"job_id": job.job_id, "state": job.state, "duplicate": duplicate})
        if duplicate:
            self._send_current_state(identity, job, message)
        else:
            self.executor.submit(job.job_id, kind, job.params, client_id=client)
            log.info("job %s (%s) queued", job.job_id, kind)

    def _on_attach(self, identity: bytes, message: Message) -> None:
        job = self._job_or_error(identity, message)
        if not job.terminal:
            self._subscribe(job.job_id, identity, message)
        self._reply(identity, message, {"job": job.to_wire()})
        self._send_current_state(identity, job, message)

    def _send_current_state(self, identity: bytes, job: Job, parent: Message) -> None:
        """After attach (or a duplicate submit): the terminal event again, or the live state."""
        if job.terminal:
            self._send(
                identity, M.STATE_TERMINAL_EVENT[job.state], self._terminal_content(job), parent=parent
            )
        else:
            self._send(identity, M.JOB_STATE, {"job_id": job.job_id, "state": job.state}, parent=parent)

    def _on_cancel(self, identity: bytes, message: Message) -> None:
        assert self.executor is not None
        job = self._job_or_error(identity, message)
        if not job.terminal:
            if self.executor.cancel(job.job_id):
                # A queued job is cancelled at once: let the reply carry the final state.
                self._apply_events(self.executor.service())
            else:  # in the store but unknown to the executor (should not happen): end it here
                self._finish(job.job_id, M.CANCELLED)
            job = self._job_or_error(identity, message)
        self._reply(identity, message, {"job_id": job.job_id, "state": job.state})

    def _on_list_jobs(self, identity: bytes, message: Message) -> None:
        assert self.store is not None
        states = message.content.get("states")
        limit = message.content.get("limit", LIST_JOBS_DEFAULT_LIMIT)
        if states is not None and (
            not isinstance(states, list) or not all(s in M.JOB_STATES for s in states)
        ):
            raise BadRequest(M.E_BAD_REQUEST, f"'states' must be a list of {', '.join(M.JOB_STATES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= LIST_JOBS_MAX_LIMIT:
            raise BadRequest(M.E_BAD_REQUEST, f"'limit' must be an integer in [0, {LIST_JOBS_MAX_LIMIT}]")
        client = self.client_of(identity)
        jobs = self.store.list(states, limit, owner=None if client.admin else client.client_id)
        self._reply(identity, message, {"jobs": [job.to_wire() for job in jobs]})

    def _on_get_artifact(self, identity: bytes, message: Message) -> None:
        assert self.store is not None and self.artifacts is not None
        job = self._job_or_error(identity, message)
        name = message.content.get("name")
        if not isinstance(name, str):
            raise BadRequest(M.E_BAD_REQUEST, "get_artifact needs a string 'name'")
        record = self.store.artifact(job.job_id, name) if job.state == M.SUCCEEDED else None
        if record is None:
            raise BadRequest(M.E_UNKNOWN_ARTIFACT, f"job {job.job_id} has no artifact {name[:200]!r}")
        content: dict[str, Any] = {"job_id": job.job_id, "name": name, "artifact": record.to_wire()}
        budget = min(self.config.limits.max_payload_bytes,
                     self.config.limits.max_message_bytes - ARTIFACT_REPLY_MARGIN)
        offset = message.content.get("offset")
        if offset is None and record.size > budget:
            raise BadRequest(
                M.E_BAD_REQUEST,
                f"artifact {name!r} has {record.size} bytes, more than one message may carry: ask for "
                f"ranges (offset, length) of its stored bytes (for an array: its .npy file)",
            )
        if offset is None and record.kind == "array":
            content["array"] = self.artifacts.load_array(record.sha256)  # memory-mapped, sent zero-copy
        elif offset is None:
            content["data"] = self._file_slice(record.sha256, 0, record.size)
        else:  # a range of the stored bytes, for files and (as .npy bytes) arrays alike
            length = message.content.get("length", record.size)
            if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= record.size:
                raise BadRequest(M.E_BAD_REQUEST, f"'offset' must be an int in [0, {record.size}]")
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise BadRequest(M.E_BAD_REQUEST, "'length' must be a non-negative int")
            length = min(length, budget, record.size - offset)
            content["offset"] = offset
            content["data"] = self._file_slice(record.sha256, offset, length)
        self._reply(identity, message, content)

    def _file_slice(self, sha256: str, offset: int, length: int) -> memoryview:
        """A zero-copy view of part of a stored file (memory-mapped; the mapping lives with the view)."""
        assert self.artifacts is not None
        if length == 0:
            return memoryview(b"")
        with open(self.artifacts.path(sha256), "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return memoryview(mapped)[offset : offset + length]

    # --- subscriptions and outgoing ----------------------------------------------------------------

    def _subscribe(self, job_id: str, identity: bytes, message: Message) -> None:
        self._jobs.setdefault(job_id, _JobRuntime()).subscribers[identity] = message.header

    def _forget_peer(self, identity: bytes) -> None:
        for runtime in self._jobs.values():
            runtime.subscribers.pop(identity, None)
        self._error_budget.pop(identity, None)
        self._peer_clients.pop(identity, None)
        if self.identities is not None:
            self.identities.forget(identity)

    def _drop_peer(self, identity: bytes, why: str) -> None:
        """Stop serving a peer that does not read (outbox.py): discard, forget, ignore a while."""
        discarded = self._outbox.discard(identity)
        self._forget_peer(identity)
        now = time.monotonic()
        if len(self._dropped) > 10_000:
            self._dropped = {peer: until for peer, until in self._dropped.items() if until > now}
        self._dropped[identity] = now + DROPPED_PEER_IGNORED_S
        self.stats["dropped_peers"] += 1
        log.warning("dropped peer %s: %s; discarded %d waiting message(s), its requests are ignored "
                    "for %g s", identity.hex()[:16], why, discarded, DROPPED_PEER_IGNORED_S)

    def _send(
        self,
        identity: bytes,
        msg_type: str,
        content: dict[str, Any],
        *,
        parent: Message | dict[str, Any],
        droppable: bool = False,
    ) -> None:
        """Send to one peer without blocking; keep non-droppable messages for a retry if it is slow."""
        assert self.session is not None
        if self._dropped and self._dropped.get(identity, 0.0) > time.monotonic():
            return  # dropped for not reading (e.g. a job's subscriber): nothing more for it
        message = self.session.msg(msg_type, content, parent)
        message.identities = [identity]
        item = _Outgoing(identity, message, time.monotonic() + OUTBOX_TTL_S)
        # Messages to a slow peer keep their order behind the queue.
        outcome = "again" if self._outbox.blocked(identity) else self._try_send(item)
        if outcome == "again":
            if droppable:
                self.stats["dropped_progress"] += 1
            else:
                self._keep_for_retry(item)

    def _keep_for_retry(self, item: _Outgoing) -> None:
        assert self.session is not None
        if item.frames is None:
            item.frames = self.session.serialize(item.message)
        item.nbytes = ob.owned_bytes(item.frames, len(item.message.identities))
        if not self._outbox.add(item):
            self._drop_peer(item.identity, f"over its bound of waiting messages ({self._outbox.max_messages} "
                            f"messages, {self._outbox.max_bytes} bytes)")

    def _try_send(self, item: _Outgoing) -> str:
        """``"sent"``, ``"again"`` (the peer's queue is full) or ``"gone"`` (the peer disconnected)."""
        assert self.session is not None and self.socket is not None and self.identities is not None
        if item.frames is None:  # signed once, with that client's key: a retry sends the same frames
            client = self.identities.client(item.identity)
            session = self.identities.session(client) if client is not None else self.session
            item.frames = session.serialize(item.message)
        try:
            self.socket.send_multipart(item.frames, flags=zmq.NOBLOCK, copy=False)
            return "sent"
        except zmq.Again:
            return "again"
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:  # the peer is gone: stop sending it anything
                self._forget_peer(item.identity)
                return "gone"
            raise

    def _flush_outbox(self) -> None:
        if not self._outbox:
            return
        for identity in self._outbox.flush(self._try_send, time.monotonic()):
            self._drop_peer(identity, f"it took no message for {OUTBOX_TTL_S:g} s")

    def _emit(self, job_id: str, msg_type: str, content: dict[str, Any], *, droppable: bool = False) -> None:
        runtime = self._jobs.get(job_id)
        if runtime is None:
            return
        for identity, parent in list(runtime.subscribers.items()):
            self._send(identity, msg_type, content, parent=parent, droppable=droppable)

    # --- executor events --------------------------------------------------------------------------

    def _apply_events(self, events: list[ExecutorEvent]) -> None:
        for event in events:
            self._on_executor_event(event)

    def _on_executor_event(self, event: ExecutorEvent) -> None:
        assert self.store is not None
        try:
            if isinstance(event, JobStarted):
                self.store.transition(event.job_id, M.RUNNING)
                log.info("job %s running in worker pid %d", event.job_id, event.pid)
                # worker_pid: an extra field (tolerated by clients) for diagnostics and kill tests.
                self._emit(
                    event.job_id,
                    M.JOB_STATE,
                    {"job_id": event.job_id, "state": M.RUNNING, "worker_pid": event.pid},
                )
            elif isinstance(event, JobProgressed):
                self._on_progress(event)
            elif isinstance(event, JobSucceeded):
                self._finish(event.job_id, M.SUCCEEDED, result=event.data, artifacts=event.artifacts)
            elif isinstance(event, JobFailed):
                self._finish(event.job_id, M.FAILED, error=event.error)
            elif isinstance(event, JobCancelledEvent):
                self._finish(event.job_id, M.CANCELLED)
        except InvalidTransition as exc:  # e.g. a result that raced a cancel: the first end stands
            log.info("ignored executor event: %s", exc)
        except Exception:  # e.g. a full disk under SQLite: log it, keep serving the others
            self.stats["internal_errors"] += 1
            log.exception("could not apply executor event %r", event)

    def _on_progress(self, event: JobProgressed) -> None:
        assert self.store is not None
        runtime = self._jobs.setdefault(event.job_id, _JobRuntime())
        runtime.seq += 1
        now = time.monotonic()
        if now - runtime.last_db_write >= PROGRESS_DB_INTERVAL_S or event.fraction >= 1.0:
            self.store.set_progress(event.job_id, event.fraction, event.stage, event.message)
            runtime.last_db_write = now
        content = M.progress_content(
            event.job_id,
            runtime.seq,
            event.fraction,
            event.stage,
            event.message,
            event.preview if isinstance(event.preview, np.ndarray) else None,
        )
        self._emit(event.job_id, M.JOB_PROGRESS, content, droppable=True)

    def _terminal_content(self, job: Job) -> dict[str, Any]:
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

    def _finish(self, job_id: str, state: str, **fields: Any) -> None:
        """Record the terminal state (artifacts are already in the store), then tell subscribers."""
        assert self.store is not None
        job = self.store.transition(job_id, state, **fields)
        if state == M.FAILED and job.error:
            log.info("job %s failed: %s: %s", job_id, job.error.get("ename"), job.error.get("evalue"))
        else:
            log.info("job %s %s", job_id, state)
        self._emit(job_id, M.STATE_TERMINAL_EVENT[state], self._terminal_content(job))
        self._jobs.pop(job_id, None)
