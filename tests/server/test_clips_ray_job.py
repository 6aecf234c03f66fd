"""``clips.render`` on a server started with ``--ray local`` (2 CPUs): the dataset's files are the
bytes the same job writes without Ray, progress comes per clip, a cancel ends the job cancelled
with no partial clip, the cluster stops with the server; a ``--ray`` address where nothing answers
refuses the start."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerProcess, pid_alive, wait_running

from backend.jobs.clips import clips_render
from backend.ray_cluster import RAY_ENV
from protocol import messages as M
from protocol.client import Client

PARAMS = {"people": [1, 2], "motions": ["walk", "turn"], "cameras": ["ring:1", "handheld:1"], "frames": 3,
          "size": [64, 64], "clips": 3, "seed": 7, "passes": ["rgb", "depth", "instance"]}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _holder(server_pid: int) -> int:
    for pid in _children(server_pid):
        try:
            if b"backend.ray_cluster" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError("no Ray cluster holder among the server's children")


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A long cancel grace: the job stops by itself (the graceful path), it is not killed.
    server = ServerProcess(tmp_path_factory.mktemp("rayjob") / "data", "--ray", "local", "--ray-cpus", "2",
                           "--cancel-grace", "30", workers=1).start(timeout=180)
    yield server
    server.stop()


@pytest.fixture
def client(ray_server: ServerProcess) -> Iterator[Client]:
    with ray_server.client(timeout=30.0) as c:
        yield c


class _Context:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        pass

    def check_cancelled(self) -> None:
        pass


def test_ray_job_writes_the_bytes_of_the_job_without_ray_with_progress_per_clip(
        client: Client, ray_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = client.submit("clips.render", PARAMS)
    messages = []
    for event in client.events(job_id, timeout=300):
        if event.type == M.JOB_PROGRESS:
            messages.append((event.content["fraction"], event.content.get("message", "")))
    view = client.wait(job_id, timeout=30)
    assert view.state == M.SUCCEEDED, view.error
    written = [m for _, m in messages if " written (" in m]
    # An event as clips finish on Ray (in any order; two that finish within the worker's 50 ms
    # progress interval share one: its count says so), the last one at 100 %.
    counts = [int(m.rpartition("(")[2].split("/")[0]) for m in written]
    assert len(written) >= 2 and counts == sorted(set(counts)) and counts[-1] == 3, written
    assert {m.split()[1] for m in written} <= {"000000", "000001", "000002"}
    assert [f for f, _ in messages] == sorted(f for f, _ in messages) and messages[-1][0] == 1.0
    client.download(job_id, tmp_path / "ray")

    monkeypatch.delenv(RAY_ENV, raising=False)  # the same job in this process, without Ray
    local = tmp_path / "local"
    local.mkdir()
    clips_render(PARAMS, _Context(local))
    reference, got = _files(local / "dataset"), _files(tmp_path / "ray" / "dataset")
    assert got.keys() == reference.keys() and len(got) > 30
    assert [name for name in got if got[name] != reference[name]] == []

    maps = Path(f"/proc/{ray_server.pid}/maps").read_text()
    assert "torch" not in maps and "_raylet" not in maps  # Ray and torch live in the workers only


def test_cancel_mid_way_ends_the_job_cancelled_with_no_partial_clip(
        client: Client, ray_server: ServerProcess) -> None:
    params = {**PARAMS, "clips": 40, "frames": 4, "size": [96, 96]}
    job_id = client.submit("clips.render", params)
    worker = wait_running(client, job_id, timeout=60)
    for event in client.events(job_id, timeout=300):
        if event.type == M.JOB_PROGRESS and " written (" in event.content.get("message", ""):
            client.cancel(job_id)  # one clip is in, more are running or queued on Ray
            break
    view = client.wait(job_id, timeout=120)
    assert view.state == M.CANCELLED and not view.artifacts
    assert not (ray_server.data_dir / "work" / job_id).exists()  # no clip, no temp folder left
    # The worker stopped by itself (it was not killed) and renders the next job on the same cluster.
    after = client.submit("clips.render", {**PARAMS, "clips": 1})
    assert wait_running(client, after, timeout=60) == worker
    assert client.wait(after, timeout=300).state == M.SUCCEEDED
    assert not any((ray_server.data_dir / "work").iterdir())


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_the_local_cluster_stops_with_the_server(tmp_path: Path, end: str) -> None:
    server = ServerProcess(tmp_path / "data", "--ray", "local", "--ray-cpus", "1", workers=1)
    server.start(timeout=180)
    try:
        holder = _holder(server.pid)
        assert pid_alive(holder)
    finally:
        server.stop() if end == "stop" else server.kill()
    if end == "stop":  # the server's close waits for its holder, which shuts the cluster down first
        assert not pid_alive(holder)
    else:  # killed outright: the holder sees its stdin close and shuts the cluster down by itself
        deadline = time.monotonic() + 60
        while pid_alive(holder) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(holder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("address, expected", [
    (f"127.0.0.1:{_free_port()}", "cannot reach the Ray cluster at 127.0.0.1:"),
    ("no-port-here", "--ray: 'local', 'auto', ray://HOST:PORT (Ray Client) or HOST:PORT"),
])
def test_a_ray_address_that_does_not_answer_refuses_the_start(tmp_path: Path, address: str,
                                                              expected: str) -> None:
    server = ServerProcess(tmp_path / "data", "--ray", address, workers=1)
    with pytest.raises(RuntimeError, match="server did not start") as err:
        server.start(timeout=60)
    assert expected in str(err.value)
    assert server.process is not None and server.process.returncode == 2
    assert not server.connection_file.exists()
    assert os.environ.get(RAY_ENV) is None  # nothing leaked into the test process either
