"""``backend.render.bands``: every job once, prologue first, errors surface, busy helpers don't stall."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.render import bands
from backend.render.bands import band_rows, run_bands

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_every_band_runs_once_after_every_prologue_job(threads: int) -> None:
    log: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def record(kind: str, index: int) -> None:
        time.sleep(0.002)  # long enough for helpers to join in
        with lock:
            log.append((kind, index, time.perf_counter()))

    prologue = [lambda i=i: record("pro", i) for i in range(3)]
    run_bands(lambda band: record("band", band), 7, threads, prologue=prologue)
    assert sorted(i for kind, i, _ in log if kind == "pro") == [0, 1, 2]
    assert sorted(i for kind, i, _ in log if kind == "band") == list(range(7))
    last_prologue = max(t for kind, _, t in log if kind == "pro")
    # A band's record is written at its end, after its 2 ms sleep: it started after the prologue.
    assert all(t - 0.002 >= last_prologue - 1e-4 for kind, _, t in log if kind == "band")


def test_band_rows_cover_all_rows_without_overlap() -> None:
    for n_rows, n_bands in [(512, 6), (7, 3), (5, 8), (1, 1)]:
        covered = np.zeros(n_rows, dtype=int)
        for band in range(n_bands):
            lo, hi = band_rows(n_rows, n_bands, band)
            covered[lo:hi] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("where", ["band", "prologue"])
def test_first_error_is_raised_and_stops_the_rest(where: str) -> None:
    ran: list[int] = []

    def work(band: int) -> None:
        if where == "band" and band == 1:
            raise RuntimeError("band 1 failed")
        time.sleep(0.001)
        ran.append(band)

    def bad_prologue() -> None:
        raise RuntimeError("prologue failed")

    prologue = [bad_prologue] if where == "prologue" else []
    with pytest.raises(RuntimeError, match=f"{where} 1 failed" if where == "band" else "prologue failed"):
        run_bands(work, 50, 2, prologue=prologue)
    if where == "prologue":
        assert ran == []  # no band may start after a failed prologue
    else:
        assert len(ran) < 50


def test_busy_helper_does_not_stall_the_caller() -> None:
    # Occupy the only helper thread: the caller must run every band itself, not wait for it.
    pool = bands._helpers(1)
    release = threading.Event()
    blocker = pool.submit(release.wait, 10.0)
    try:
        calls: list[str] = []
        t0 = time.perf_counter()
        run_bands(lambda band: calls.append(threading.current_thread().name), 4, 2)
        elapsed = time.perf_counter() - t0
        assert len(calls) == 4 and set(calls) == {threading.current_thread().name}
        assert elapsed < 5.0
    finally:
        release.set()
        blocker.result()


def test_pool_is_rebuilt_in_a_forked_child() -> None:
    bands._helpers(1)  # the parent has a pool with a live thread
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from backend.render import bands\n"
        "bands._helpers(1)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    out = []\n"
        "    bands.run_bands(lambda b: out.append(b), 6, 2)\n"
        "    os._exit(0 if sorted(out) == list(range(6)) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_default_threads_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_STUDIO_RENDER_THREADS", "3")
    assert bands.default_threads() == 3
    monkeypatch.delenv("AVATAR_STUDIO_RENDER_THREADS")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert bands.default_threads() == len(os.sched_getaffinity(0))


def test_threaded_render_equals_serial_render() -> None:
    from meshes import uv_sphere

    from backend.render.camera import CameraBatch
    from backend.render.cpu_numba import NumbaRasterizer
    from backend.render.passes import ALL_PASSES, Mesh, render_passes

    verts, faces = uv_sphere(24, 32, centre=(0.0, 0.0, 0.0))
    verts_t = torch.as_tensor(verts, dtype=torch.float32)
    uv = torch.rand(len(verts), 2, generator=torch.Generator().manual_seed(0))
    mesh = Mesh(verts=verts_t, faces=torch.as_tensor(faces), uv=uv, texture=torch.rand(32, 32, 3),
                part_labels=torch.arange(len(verts)) % 5)
    K = torch.tensor([[80.0, 0, 48], [0, 80.0, 40], [0, 0, 1]]).expand(3, 3, 3)
    t = torch.tensor([[0.0, 0, 3], [0.2, 0.1, 3.5], [-0.3, 0, 2.5]])
    cams = CameraBatch(K, torch.eye(3).expand(3, 3, 3), t, 96, 80, 0.1, 10.0)
    joints = verts_t[::37]
    with torch.no_grad():
        serial = render_passes(mesh, cams, joints=joints, rasterizer=NumbaRasterizer(threads=1), threads=1)
        banded = render_passes(mesh, cams, joints=joints, rasterizer=NumbaRasterizer(threads=3), threads=3)
    assert serial.raster.mask.any()
    for name in ALL_PASSES:
        if name == "joints":
            assert torch.equal(serial.joints_2d, banded.joints_2d)
            assert torch.equal(serial.joints_visible, banded.joints_visible)
        else:
            assert torch.equal(getattr(serial, name), getattr(banded, name)), name
