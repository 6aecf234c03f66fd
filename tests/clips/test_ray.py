"""Clips on a real local Ray cluster (2 CPUs, started once for the module): the same bytes as local
rendering, a worker killed mid-clip is retried, Ctrl-C cancels and a rerun resumes, a clip the
driver cannot see and a bad address or a missing Ray are clear errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.clips.dataset import render_dataset
from backend.clips.distributed import RayError, connect, import_ray, parse_address, render_dataset_ray
from backend.clips.spec import ClipSpec

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"clips": 4, "frames": 3, "width": 64, "height": 64, "seed": 5, "people": {"count": [1, 2]},
        "motion": {"sources": ["walk", "turn"]}, "cameras": ["ring:1", "handheld:1"]}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    # Ray is a dev dependency (pyproject): a missing install fails here rather than skipping.
    with connect("local", num_cpus=2):
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local") / "ds"
    render_dataset(ClipSpec.parse(SPEC), out, workers=1)
    return _files(out)


def test_ray_writes_the_same_bytes_as_one_local_worker(cluster: None, reference: dict[str, bytes],
                                                        tmp_path: Path) -> None:
    spec = ClipSpec.parse(SPEC)
    clips: list[tuple[str, bool]] = []
    frames: list[int] = []
    manifest = render_dataset_ray(spec, tmp_path / "ds", on_clip=lambda c, s: clips.append((c, s)),
                                  on_frames=frames.append)
    got = _files(tmp_path / "ds")
    assert got.keys() == reference.keys() and len(got) > 40
    assert [k for k in got if got[k] != reference[k]] == []
    assert manifest["counts"]["clips"] == 4
    assert sorted(clips) == [(f"{i:06d}", False) for i in range(4)]
    assert sum(frames) == 4 * 3 * 2


def test_a_worker_killed_mid_clip_is_retried_and_the_dataset_completes(
        cluster: None, reference: dict[str, bytes], tmp_path: Path) -> None:
    marker = tmp_path / "killed"

    def kill_first_attempt_of_clip_1(index: int, stage: str) -> None:  # runs in the Ray worker
        if index == 1 and stage == "frames" and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies with a half-written .tmp folder

    out = tmp_path / "ds"
    render_dataset_ray(ClipSpec.parse(SPEC), out, worker_hook=kill_first_attempt_of_clip_1)
    assert marker.is_file(), "the fault was never injected"
    assert list((out / "clips").glob(".tmp-*")) == []  # the dead attempt's partial clip is gone
    got = _files(out)
    assert got.keys() == reference.keys() and [k for k in got if got[k] != reference[k]] == []


def test_ctrl_c_cancels_the_pending_clips_and_a_rerun_resumes(
        cluster: None, reference: dict[str, bytes], tmp_path: Path) -> None:
    spec = ClipSpec.parse(SPEC)
    out = tmp_path / "ds"
    never = tmp_path / "never-created"

    def hold_clip_3(index: int, stage: str) -> None:  # runs in the Ray worker
        while index == 3 and not never.exists():  # half written; only a cancel ends it
            time.sleep(0.05)

    def interrupt(cid: str, skipped: bool) -> None:
        raise KeyboardInterrupt  # as Ctrl-C in the driver after the first clip

    with pytest.raises(KeyboardInterrupt):
        render_dataset_ray(spec, out, on_clip=interrupt, worker_hook=hold_clip_3)
    done = sorted(p.name for p in (out / "clips").iterdir() if not p.name.startswith("."))
    assert 1 <= len(done) <= 3 and "000003" not in done
    # Clip 3 was cancelled mid-clip: its task got the KeyboardInterrupt and removed its temp folder.
    assert list((out / "clips").glob(".tmp-*")) == []
    assert not (out / "manifest.json").exists()
    resumed: list[tuple[str, bool]] = []
    render_dataset_ray(spec, out, on_clip=lambda c, s: resumed.append((c, s)))
    assert sorted(c for c, skipped in resumed if skipped) == done
    got = _files(out)
    assert got.keys() == reference.keys() and [k for k in got if got[k] != reference[k]] == []


def test_a_clip_the_driver_cannot_see_is_a_clear_error(cluster: None, tmp_path: Path) -> None:
    elsewhere = tmp_path / "worker-disk"
    elsewhere.mkdir()

    def move_to_the_workers_own_disk(index: int, stage: str) -> None:  # runs in the Ray worker
        if stage == "done":
            folder = tmp_path / "ds" / "clips" / f"{index:06d}"
            shutil.move(folder, elsewhere / folder.name)

    with pytest.raises(RayError, match=r"does not see it: the output folder must be on a filesystem that "
                                       r"the driver and every Ray worker share"):
        render_dataset_ray(ClipSpec.parse(SPEC), tmp_path / "ds", worker_hook=move_to_the_workers_own_disk,
                           visibility_timeout=0.5)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_bad_addresses_and_a_missing_ray_are_clear_errors(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("nonsense", "ray://host", "host:99999", "http://host:10001/x"):
        with pytest.raises(RayError, match="'local', 'auto', ray://HOST:PORT"):
            parse_address(bad)
    assert parse_address("ray://head.example:10001") == ("head.example", 10001)
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "backend", "clips", "render", "--clips", "1", "--frames", "1",
               "--size", "32x32", "--out", str(tmp_path / "ds"), "--ray", f"ray://127.0.0.1:{port}", "--json"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "ds").exists()  # nothing written before the cluster answers
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RayError, match=r"pip install 'avatar-studio\[ray\]'"):
        import_ray()
