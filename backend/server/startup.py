"""The steps of starting the server that refuse or prepare: the bind checked before anything is
created, the data dir locked, the stores opened (with what a previous run left behind), the
ROUTER socket configured and bound. ``Server.start`` (app.py) runs them in order."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from protocol import ProtocolError
from protocol.integrity import (
    BUFFER_INTEGRITY_ENV,
    is_loopback_address,  # one definition of 'loopback' for the project
    resolve_buffer_integrity,
)

from . import outbox as ob
from .artifacts import ArtifactStore
from .curve_auth import LOCAL_CLIENT_NAME, CurveKeys
from .datadir import TCP_LOOPBACK_BIND, local_endpoint
from .jobstore import JobStore
from .retention import collect_garbage

if TYPE_CHECKING:
    from .app import ServerConfig

log = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The server refuses to start (unsafe bind, data dir in use...). The message says why."""


def normalize_bind(address: str) -> str:
    # ZeroMQ's own spelling of "any free port" is '*'; accept the familiar ':0' too.
    return address[:-2] + ":*" if address.startswith("tcp://") and address.endswith(":0") else address


def check_ipc_path_free(path: str) -> None:
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


def checked_bind(config: ServerConfig, data_dir: Path) -> tuple[str, str]:
    """``(bind address, buffer integrity)``, refused before anything is created. Fills in
    ``config.bind`` when it is None (the local default; TCP loopback with CURVE)."""
    if config.bind is None:
        config.bind = TCP_LOOPBACK_BIND if config.curve else local_endpoint(data_dir)
    bind = normalize_bind(config.bind)
    if not is_loopback_address(bind) and not config.curve:
        raise ServerStartError(
            f"refusing to bind {config.bind} without CURVE encryption: a non-loopback address "
            f"can be reached from other machines. Start with --curve and give each client a key "
            f"(`avatar-studio keys create NAME`), or bind tcp://127.0.0.1:PORT."
        )
    try:  # a refused setting leaves nothing behind
        integrity = resolve_buffer_integrity(
            config.buffer_integrity or os.environ.get(BUFFER_INTEGRITY_ENV) or None, bind, config.curve)
    except ProtocolError as exc:
        raise ServerStartError(str(exc)) from None
    return bind, integrity


def lock_data_dir(data_dir: Path) -> int:
    """Lock ``server.lock`` (one server per data dir) and write our pid in it; returns the fd."""
    path = data_dir / "server.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = path.read_text().strip() or "?"
        raise ServerStartError(f"another server (pid {other}) is using the data dir {data_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd  # held until this process exits; the kernel drops it even on SIGKILL


def open_job_store(data_dir: Path) -> JobStore:
    """The job table; jobs a previous server left queued or running are failed (their worker is gone)."""
    store = JobStore(data_dir / "jobs.sqlite3")
    lost = store.fail_unfinished(
        "the server stopped while this job was queued or running (its worker is gone); resubmit it"
    )
    if lost:
        log.warning("marked %d job(s) of a previous server failed: %s", len(lost), ", ".join(lost))
    return store


def open_artifact_store(data_dir: Path, store: JobStore, quota_bytes: int | None) -> ArtifactStore:
    """The content-addressed store, with its quota, cleared of the orphans of earlier runs."""
    artifacts = ArtifactStore(data_dir / "artifacts")
    artifacts.set_quota(quota_bytes)  # read by the workers too
    collected = collect_garbage(store, artifacts)
    if collected.blobs or collected.temp_files:
        log.info("removed %d unreferenced blob(s) (%d bytes) and %d temp file(s) from the artifact "
                 "store", collected.blobs, collected.bytes, collected.temp_files)
    return artifacts


def router_socket(context: zmq.Context[Any], config: ServerConfig) -> zmq.Socket[Any]:
    """The server's ROUTER socket with its options (no CURVE yet, not bound)."""
    socket = context.socket(zmq.ROUTER)
    socket.linger = 0
    socket.router_mandatory = True
    socket.sndhwm = ob.PEER_SEND_HWM  # beyond this a slow peer's messages wait in the bounded outbox
    socket.rcvhwm = 1000
    # Dead TCP peers are noticed by TCP keepalive, not ZMTP heartbeats: libzmq 4.3 aborts the
    # whole process (assert !_io_error) when a heartbeat timer fires on a connection whose
    # peer flooded until our receive pipe was full and then hung up (docs/security.md).
    socket.tcp_keepalive = 1
    socket.tcp_keepalive_idle = max(1, round(config.heartbeat_interval_s * 5))
    socket.tcp_keepalive_intvl = max(1, round(config.heartbeat_interval_s))
    socket.tcp_keepalive_cnt = 5
    config.limits.configure_socket(socket)
    return socket


def make_curve_server(socket: zmq.Socket[Any], keys: CurveKeys, public: bytes, secret: bytes,
                      data_dir: Path) -> str:
    """Make ``socket`` a CURVE server with the server's keypair; returns the local client's key
    file (created if missing). Warns when no remote client has a key yet."""
    socket.curve_server = True
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    local_client_key = str(keys.ensure_local_client())
    remote = set(keys.client_public_keys()) - {LOCAL_CLIENT_NAME}
    if not remote:
        log.warning(
            "CURVE is on but only this machine's own key is listed: give each remote client "
            "a key with `avatar-studio keys create NAME --data-dir %s`",
            data_dir,
        )
    return local_client_key


def bind(socket: zmq.Socket[Any], bind: str, connection_file: Path) -> str:
    """Bind; for a free-port request prefer the port of the previous run (clients reconnect).
    Returns the bound endpoint."""
    if bind.startswith("tcp://["):
        socket.ipv6 = True
    if bind.startswith("ipc://"):
        check_ipc_path_free(bind[len("ipc://"):])
    if bind.startswith("tcp://") and bind.endswith(":*") and connection_file.exists():
        with contextlib.suppress(Exception):
            from protocol import read_connection_file

            previous = read_connection_file(connection_file)
            if previous.port and previous.ip == bind[len("tcp://") : -2].strip("[]"):
                try:
                    socket.bind(f"{bind[:-2]}:{previous.port}")
                    return socket.getsockopt_string(zmq.LAST_ENDPOINT)
                except zmq.ZMQError:
                    pass  # taken by something else: any free port will do
    socket.bind(bind)
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)
