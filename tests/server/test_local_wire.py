"""The default local endpoint: an ipc socket only this user can reach, with a fallback for long
paths, on live servers (docs/protocol.md §2.1). Its speed is in bench/protocol.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerProcess

from backend.server.datadir import MAX_IPC_PATH_BYTES, local_endpoint
from protocol import messages as M
from protocol import read_connection_file

pytestmark = pytest.mark.skipif(os.name == "nt", reason="ipc sockets and POSIX modes")


def test_a_data_dir_too_deep_for_a_socket_path_gets_a_short_private_one(
    server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # the server subprocess inherits it
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "data"
    deep.parent.mkdir(parents=True)
    assert len(os.fsencode(deep / "backend.sock")) > MAX_IPC_PATH_BYTES
    server: ServerProcess = server_factory(data_dir=deep)
    info = read_connection_file(server.connection_file)
    assert info.transport == "ipc" and info.effective_buffer_integrity == "transport"
    socket_path = Path(info.address[len("ipc://"):])
    assert socket_path.parent == runtime / "avatar-studio"
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    with server.client() as client:
        job = client.submit("system.sleep", {"seconds": 0})
        assert client.wait(job, timeout=30).state == M.SUCCEEDED
        assert client.get_artifact(job, "ticks").tolist() == [0.0]


def test_a_runtime_dir_that_is_not_ours_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    (runtime / "avatar-studio").mkdir(parents=True)
    (runtime / "avatar-studio").chmod(0o777)
    if os.getuid() == 0:
        os.chown(runtime / "avatar-studio", 4242, 4242)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    endpoint = local_endpoint(deep)
    if os.getuid() == 0:  # not ours: skipped for /tmp/avatar-studio-0 (or TCP loopback)
        assert not endpoint.startswith(f"ipc://{runtime}")
    else:  # ours but open: made private again
        assert stat.S_IMODE((runtime / "avatar-studio").stat().st_mode) == 0o700
    assert endpoint.startswith(("ipc://", "tcp://127.0.0.1:"))
    # A short data dir's socket lives in the data dir itself.
    assert local_endpoint(tmp_path / "d") == f"ipc://{tmp_path / 'd' / 'backend.sock'}"


def test_an_explicit_tcp_bind_keeps_digest(server_factory: Any) -> None:
    server: ServerProcess = server_factory("--bind", "tcp://127.0.0.1:0")
    info = read_connection_file(server.connection_file)
    assert info.transport == "tcp" and info.effective_buffer_integrity == "digest"
    with server.client() as client:
        assert client.server_info["buffer_integrity"] == "digest"
