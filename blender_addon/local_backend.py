"""Start and stop a backend process on this machine (the preferences' Start/Stop buttons).

Never waits on the process from the UI: ``start`` returns once the process is spawned; the bridge
notices the connection file the backend writes and connects on its next pump.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

_process: subprocess.Popen | None = None


class LocalBackendError(RuntimeError):
    pass


def server_command(backend_python: str, backend_command: str, data_dir: Path) -> list[str]:
    """The command line that serves a backend on ``data_dir`` (127.0.0.1, a free port)."""
    if backend_python:
        return [backend_python, "-m", "backend", "serve", "--data-dir", str(data_dir)]
    if backend_command:
        return [*shlex.split(backend_command), "serve", "--data-dir", str(data_dir)]
    raise LocalBackendError("set a backend Python or the avatar-studio command in the add-on preferences")


def start(backend_python: str, backend_command: str, data_dir: Path, log_path: Path | None = None) -> int:
    """Spawn the backend; returns its pid. The old connection file is removed first so the bridge
    cannot connect to a stale address before the new server wrote its own."""
    global _process
    if is_running():
        raise LocalBackendError(f"a local backend is already running (pid {_process.pid})")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "connection.json").unlink(missing_ok=True)
    command = server_command(backend_python, backend_command, data_dir)
    log = open(log_path or data_dir / "backend.log", "ab")  # noqa: SIM115 - the child owns it
    try:
        # A new session: Ctrl-C in Blender's terminal must not kill the backend mid-job.
        _process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=_child_env(),
        )
    except OSError as exc:
        raise LocalBackendError(f"cannot start {command[0]!r}: {exc}") from exc
    finally:
        log.close()
    return _process.pid


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Blender's own Python settings must not leak into the backend's interpreter.
    for name in ("PYTHONHOME", "PYTHONPATH"):
        env.pop(name, None)
    return env


def is_running() -> bool:
    return _process is not None and _process.poll() is None


def pid() -> int | None:
    return _process.pid if is_running() else None


def stop(timeout_s: float = 3.0) -> None:
    """Terminate the backend we started (SIGTERM, then SIGKILL if it lingers)."""
    global _process
    if _process is None:
        return
    if _process.poll() is None:
        _process.terminate()
        try:
            _process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _process.kill()
            _process.wait(timeout=timeout_s)
    _process = None


def python_hint() -> str:
    """A guess for the backend Python when the add-on runs from a development checkout."""
    repo = Path(__file__).resolve().parents[1]
    candidate = repo / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    return str(candidate) if candidate.is_file() else ""
