"""The job server: one ROUTER socket, one thread, never blocked by a job.

Each loop iteration (:meth:`Server.run_once`) polls the socket together with the executor's worker
pipes and process sentinels, handles every request that is waiting, turns executor events into
job-store state changes and messages for the subscribed clients, and retries replies that met
back-pressure. The parts, each in its own module:

- startup.py: the start-up checks and steps (bind refused before anything is created, data dir
  lock, stores, socket options, bind);
- receive.py (:class:`Receiver`): per-client rate limits, verification, malformed input answered
  (at most a few errors per second per peer), dispatch; a bug costs one request, not the loop;
- handlers.py (:class:`Handlers`): one method per request type;
- events.py (:class:`LiveJobs`): subscribers of live jobs, executor events -> store and messages;
- sending.py (:class:`Sender`): non-blocking sends, the bounded outbox (outbox.py), dropped peers.

Fair service (docs/security.md): requests are metered per client (ratelimit.py), submits are
admitted per client and in total (quotas.py), and a peer whose waiting messages exceed their bound
(outbox.py) is dropped. Delivery rules: docs/protocol.md §4, §8 and sending.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from protocol import DEFAULT_LIMITS, ConnectionInfo, Limits, Session, write_connection_file
from protocol import messages as M
from protocol.integrity import LEGACY_BUFFER_INTEGRITY
from protocol.session import REPLAY_START_SKEW_S

from . import startup
from .artifacts import ArtifactStore
from .curve_auth import CurveKeys, start_authenticator
from .datadir import DataDirError, load_or_create_hmac_key, secure_data_dir
from .events import LiveJobs
from .executor import Executor
from .handlers import BadRequest, Handlers
from .identity import PeerIdentities
from .jobstore import JobStore
from .quotas import QueueLimits
from .ratelimit import DEFAULT_BURST, DEFAULT_RATE
from .receive import Receiver
from .sending import Sender
from .startup import ServerStartError

__all__ = ["BadRequest", "Server", "ServerConfig", "ServerStartError"]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
MAX_REQUESTS_PER_ITERATION = 200
# Requests are read until this much time went by in one iteration, so workers' events (a job
# started, a job finished) wait at most about this long behind a burst of requests.
REQUEST_TIME_PER_ITERATION_S = 0.05


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
    # `serve --ray local|ADDRESS`: clips.render jobs render on Ray (backend/ray_cluster.py); None: not.
    ray: str | None = None
    ray_cpus: int | None = None  # the CPUs of a `local` cluster (default: this machine's)


class Server:
    """The server's resources (socket, sessions, stores, executor) and its loop; the loop's parts
    (:attr:`receiver`, :attr:`handlers`, :attr:`live_jobs`, :attr:`sender`) work on them."""

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
        self._ray_head: Any = None  # backend.ray_cluster.LocalHead of `--ray local`
        self._stopping = False
        self.stats = {"requests": 0, "malformed": 0, "internal_errors": 0, "dropped_progress": 0,
                      "rate_limited": 0, "dropped_peers": 0}
        # The parts of the loop; each owns its own state and reaches the resources above.
        self.sender = Sender(self)
        self.live_jobs = LiveJobs(self)
        self.handlers = Handlers(self)
        self.receiver = Receiver(self)

    # --- start / stop ----------------------------------------------------------------------------

    def start(self) -> ConnectionInfo:
        """Lock the data dir, open the store, start workers, bind, then write the connection file."""
        # Before anything is created: a refused setting leaves nothing behind.
        bind, self.buffer_integrity = startup.checked_bind(self.config, self.data_dir)
        try:  # private like ~/.ssh before any secret is read or written there
            secure_data_dir(self.data_dir)
        except DataDirError as exc:
            raise ServerStartError(str(exc)) from None
        self._lock_fd = startup.lock_data_dir(self.data_dir)
        self.store = startup.open_job_store(self.data_dir)
        self.artifacts = startup.open_artifact_store(
            self.data_dir, self.store, self.config.artifact_quota_bytes)
        key = load_or_create_hmac_key(self.data_dir)
        not_before = time.time() - REPLAY_START_SKEW_S  # messages signed before this start: replays
        self.session = Session(key.encode("utf-8"), limits=self.config.limits,
                               buffer_integrity=self.buffer_integrity, replay_not_before=not_before)
        self.identities = PeerIdentities(self.data_dir, self.config.curve, session_id=self.session.session_id,
                                         limits=self.config.limits, buffer_integrity=self.buffer_integrity,
                                         replay_not_before=not_before)
        self.executor = Executor(
            self.data_dir, workers=self.config.workers, cancel_grace_s=self.config.cancel_grace_s,
            input_roots=tuple(self.config.input_roots), environment=self._start_ray(),
        )
        self.executor.start()
        self.context = zmq.Context()
        server_public: str | None = None
        local_client_key: str | None = None
        socket = startup.router_socket(self.context, self.config)
        if self.config.curve:
            keys = CurveKeys(self.data_dir)
            public, secret = keys.server_keypair()
            self._auth = start_authenticator(self.context, keys)  # before bind: no unchecked handshake
            local_client_key = startup.make_curve_server(socket, keys, public, secret, self.data_dir)
            server_public = public.decode("ascii")
        self.socket = socket  # closed by close() even if the bind fails
        try:
            address = startup.bind(socket, bind, self.connection_file)
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

    def _start_ray(self) -> dict[str, str]:
        """The workers' Ray settings; `--ray local` starts the server's cluster, an address is
        checked to answer. Ray itself is never imported here."""
        from backend.ray_cluster import RayError, server_ray

        try:
            environment, self._ray_head = server_ray(self.config.ray, self.config.ray_cpus)
        except RayError as exc:
            raise ServerStartError(str(exc)) from None
        if self.config.ray:
            log.info("clips.render jobs render on Ray at %s", environment["AVATAR_STUDIO_RAY"])
        return environment

    def request_stop(self, *_: Any) -> None:
        self._stopping = True

    def close(self) -> None:
        """Stop workers, fail what was running (clearly), close sockets, remove our connection file."""
        if self.executor is not None and self.store is not None:
            unfinished = [*self.executor.running, *self.executor.queued]
            self.executor.shutdown()
            for job_id in unfinished:
                self.live_jobs.finish(
                    job_id,
                    M.FAILED,
                    error={
                        "ename": "ServerStopped",
                        "evalue": "the server was stopped while the job was unfinished",
                        "traceback": "",
                    },
                )
            self.executor = None
        if self._ray_head is not None:  # after the workers: their Ray drivers are gone
            self._ray_head.stop()
            self._ray_head = None
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
        if self.sender.outbox:
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
            self.receiver.receive(frames)
            if time.monotonic() > until:
                break
        self.live_jobs.apply(self.executor.service())
        self.sender.flush()

    def forget_peer(self, identity: bytes) -> None:
        """A peer is gone or dropped: forget its subscriptions, its budgets and its client."""
        self.live_jobs.unsubscribe(identity)
        self.receiver.forget(identity)
        if self.identities is not None:
            self.identities.forget(identity)
