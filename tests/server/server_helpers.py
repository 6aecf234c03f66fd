"""Helpers for the server tests: a real ``python -m backend serve`` subprocess on 127.0.0.1.

The server prints one JSON line (``{"event": "ready", ...}``) once it is bound and its connection
file is written; the fixture reads it, and always kills the process (and so its workers) at the end.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from protocol import messages as M
from protocol.client import Client

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, data_dir: Path, *extra: str, workers: int = 2) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def connection_file(self) -> Path:
        return self.data_dir / "connection.json"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "backend",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--json",
            "--workers",
            str(self.workers),
            *self.extra,
        ]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(self.command(), cwd=REPO, stdout=subprocess.PIPE, stderr=log)
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                self.kill()
                raise RuntimeError(f"server did not start: {self.log()}")
            ready, _, _ = select.select([self.process.stdout], [], [], remaining)
            if ready:
                line += os.read(self.process.stdout.fileno(), 4096)
        self.ready = json.loads(line)
        if self.ready.get("event") != "ready":  # e.g. {"error": ...} from a refused start
            self.process.wait(10)
            raise RuntimeError(f"server did not start: {line.decode(errors='replace')} {self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("timeout", 10.0)
        return Client.from_connection_file(self.connection_file, **kwargs)


def wait_running(client: Client, job_id: str, timeout: float = 10.0) -> int:
    """Wait for the job's ``running`` event; return the worker pid it carries."""
    for event in client.events(job_id, timeout=timeout):
        if event.type == M.JOB_STATE and event.content.get("state") == M.RUNNING:
            return int(event.content["worker_pid"])
        if event.type in M.TERMINAL_EVENTS:
            raise AssertionError(f"job ended before running was seen: {event}")
    raise AssertionError("no running event")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
