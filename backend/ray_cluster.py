"""Where Ray is reached: address checks, the job server's own local cluster, one connection per process.

Torch-free and Ray-free at import (the server imports this; ``backend.clips`` would pull in torch):
Ray is imported only by :func:`attach` (in a job worker) and by :func:`main` (the cluster holder).

``avatar-studio serve --ray local|ADDRESS`` (docs/clips.md, "The job kind"):

- ``local``: the server starts one private cluster for its whole life in a child process, the
  *holder* (``python -m backend.ray_cluster``), which prints the cluster's address, then waits for
  its stdin to close: the server closes it when it stops, and a server killed outright closes it
  too (the kernel closes its pipes), so the cluster never outlives the server. The cluster gets a
  random token of Ray's token authentication, which only the server's job workers receive.
- ``ADDRESS``: an existing cluster; the server checks at start that something answers there.

The job workers receive the address in ``$AVATAR_STUDIO_RAY`` (the server's setting: it wins over
the inherited environment) and connect once per worker process (:func:`attach`), reusing the
connection for every later ``clips.render`` job.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import select
import socket
import subprocess
import sys
import time
from typing import Any

INSTALL_HINT = "pip install 'avatar-studio[ray]'"
ADDRESS_FORMS = "'local', 'auto', ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS)"
# Small results only travel through the object store; Ray's default would reserve 30% of the RAM.
LOCAL_OBJECT_STORE = 128 * 1024 * 1024
RAY_ENV = "AVATAR_STUDIO_RAY"  # the cluster the job workers render clips on; "" = none
# Names the server sets for its workers whatever their inherited environment says.
SERVER_ENV = (RAY_ENV, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
HEAD_START_TIMEOUT_S = 120.0
HEAD_STOP_TIMEOUT_S = 20.0


class RayError(RuntimeError):
    """Ray missing, a cluster that cannot be reached, or clips the driver cannot see."""


def quiet_init() -> dict[str, Any]:
    return {"logging_level": logging.ERROR, "log_to_driver": False}


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def require_ray() -> None:
    """RayError when Ray is not installed, without importing it (the server must stay light)."""
    if importlib.util.find_spec("ray") is None:
        raise RayError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}")


def parse_address(address: str) -> tuple[str, int] | None:
    """The host and port to probe, None for ``local`` / ``auto``; RayError for a malformed address."""
    if address in ("local", "auto"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise RayError(f"--ray: {ADDRESS_FORMS}; got {address!r}")
    return host.strip("[]"), int(port)


def probe(address: str, host: str, port: int, timeout: float = 5.0) -> None:
    # ray.init retries an unreachable address for 30 s (ray://) to minutes (GCS); one TCP connect
    # tells a wrong host or port, or a cluster that is not running, at once.
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): is its head "
                       f"running (`ray start --head`) and the port open from here?") from exc


def check_address(address: str, timeout: float = 5.0) -> None:
    """A malformed address or one where nothing answers is a RayError (``auto``: Ray finds it)."""
    target = parse_address(address)
    if target is not None:
        probe(address, *target, timeout)


def auth_hint(exc: BaseException) -> str:
    # Clusters started by `ray start` require a token by default (Ray 2.60), and ray.init reports a
    # client without one as "Failed to connect" (InvalidAuthToken is only in its causes' text) or,
    # through Ray Client, as a timeout.
    texts, cause = [], exc
    while cause is not None and len(texts) < 8:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any(marker in text for text in texts
           for marker in ("InvalidAuthToken", "AuthenticationError", "client connection timeout")):
        return ("; if the cluster uses Ray's token authentication (`ray start`'s default in Ray 2.60), "
                "set RAY_AUTH_MODE=token and give this machine the cluster's token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token)")
    return ""


def attach(address: str) -> Any:
    """Connect this process to the cluster at ``address`` unless it already is; the connection
    stays open for the process's life (a job worker reuses it for every job). Returns ``ray``."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    check_address(address)
    try:
        ray.init(address=address, **quiet_init())
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise RayError(f"cannot connect to the Ray cluster at {address}: {exc}{auth_hint(exc)}") from exc
    return ray


def cpus_here() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalHead:
    """The job server's private cluster: the holder child process and the token of its cluster."""

    def __init__(self, num_cpus: int | None = None) -> None:
        self.num_cpus = num_cpus or cpus_here()
        self.token = secrets.token_hex(32)
        self.address = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = HEAD_START_TIMEOUT_S) -> str:
        """Start the cluster and return its address; RayError (with the holder's words) if it fails."""
        require_ray()
        env = {**os.environ, **self._auth(), "RAY_USAGE_STATS_ENABLED":
               os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}  # no phoning home for a private cluster
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.ray_cluster", str(self.num_cpus)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        assert self.process.stdout is not None
        line, deadline = b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and not line):
                self.stop()
                raise RayError(f"the server's local Ray cluster did not start within {timeout:g} s")
            if select.select([self.process.stdout], [], [], min(remaining, 0.5))[0]:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    self.stop()
                    raise RayError("the server's local Ray cluster did not start (see the log above)")
                line += chunk
        answer = json.loads(line)
        if "address" not in answer:
            self.stop()
            raise RayError(f"the server's local Ray cluster did not start: {answer.get('error', answer)}")
        self.address = str(answer["address"])
        return self.address

    def _auth(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def environment(self) -> dict[str, str]:
        """What a job worker needs to join the cluster."""
        return {RAY_ENV: self.address, **self._auth()}

    def stop(self, timeout: float = HEAD_STOP_TIMEOUT_S) -> None:
        """Close the holder's stdin (it shuts the cluster down), then kill it if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def server_ray(setting: str | None, num_cpus: int | None = None) -> tuple[dict[str, str], LocalHead | None]:
    """What ``serve --ray`` gives the job workers, and the local head to stop with the server.
    RayError when Ray is missing, the address is malformed or nothing answers there."""
    if not setting:
        return {RAY_ENV: ""}, None
    require_ray()
    if num_cpus is not None and num_cpus < 1:
        raise RayError(f"--ray-cpus: at least 1, got {num_cpus}")
    if setting != "local":
        check_address(setting)
        return {RAY_ENV: setting}, None
    head = LocalHead(num_cpus)
    head.start()
    return head.environment(), head


def main(argv: list[str]) -> int:
    """The holder: start a local cluster of ``argv[0]`` CPUs, print its address, keep it up until
    stdin closes (the server stopped or died), then shut it down."""
    try:
        ray = import_ray()
        context = ray.init(address="local", num_cpus=int(argv[0]), include_dashboard=False,
                           object_store_memory=LOCAL_OBJECT_STORE, **quiet_init())
        address = context.address_info["gcs_address"]
    except Exception as exc:  # told to the server, which refuses to start with it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"address": address}), flush=True)
    try:
        sys.stdin.buffer.read()
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
