"""Diagnostic job kinds: ``system.info`` (what this backend has) and ``system.sleep`` (a cheap,
cancellable job that exercises progress, cancel and artifacts end to end)."""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any

import numpy as np

from .api import JobContext, JobResult, typed_params

SLEEP_TICK_S = 0.1  # the range of every param is in the contract (protocol/kinds.py)


def _torch_info() -> dict[str, Any]:
    try:
        import torch  # lazily: only worker processes pay for it
    except Exception as exc:  # a broken torch install is a fact to report, not a crash
        return {
            "torch": None,
            "torch_error": f"{type(exc).__name__}: {exc}",
            "device": "cpu",
            "device_name": platform.processor() or platform.machine(),
        }
    info: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info.update(
            device="cuda",
            device_name=torch.cuda.get_device_name(0),
            cuda_devices=torch.cuda.device_count(),
            cuda_version=torch.version.cuda,
        )
    else:
        info.update(device="cpu", device_name=platform.processor() or platform.machine())
    return info


def _render_threads() -> int:
    from backend.render.bands import default_threads

    return default_threads()


def system_info(params: Any, ctx: JobContext) -> JobResult:
    """Versions, device, CPU count and which model roles are present."""
    from backend.models.registry import ModelRegistry

    typed_params("system.info", params)  # no params; refuses unknown ones
    ctx.progress(0.0, "collecting versions", stage="versions")
    data: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
        "render_threads": _render_threads(),
    }
    try:
        import zmq

        data["pyzmq"] = zmq.__version__
    except ImportError:
        data["pyzmq"] = None
    data.update(_torch_info())
    ctx.check_cancelled()
    ctx.progress(0.5, "checking models", stage="models")
    registry = ModelRegistry.load()
    checks = registry.check()
    # Presence only: server paths are not a client's business (`models check` on the server
    # shows them to its operator).
    data["models"] = {r.spec.role: {"present": r.present, "source": r.source} for r in checks}
    smplx = registry.resolve("smplx")
    data["body_model"] = (
        {"kind": "licensed"}
        if smplx.present
        else {"kind": "stand-in", "how_to": "configure the smplx role in the server's models.toml"}
    )
    ctx.progress(1.0, "done", stage="done")
    return JobResult(data=data)


def sleep_file_content(size: int) -> bytes:
    """The bytes of the ``files/data.bin`` artifact: a fixed pattern, so tests can check it."""
    return (np.arange(size, dtype=np.uint64) * 2654435761 % 251).astype(np.uint8).tobytes()


def system_sleep(params: Any, ctx: JobContext) -> JobResult:
    """Sleep ``seconds`` in 0.1 s ticks, reporting progress and honouring cancel at each tick.

    Returns ``data = {"seconds", "ticks", "slept_s"}`` and the array artifact ``ticks`` =
    0..ticks-1 (float32). Diagnostic switches, for tests of the server and of clients:
    ``ignore_cancel`` (never checks the cancel flag, so the server must kill it), ``silent`` (no
    progress, so the watchdog must fire), ``fail`` (raises ``RuntimeError(fail)`` at the end, to see
    how errors cross the process boundary), ``preview`` (a small RGB uint8 preview with each
    progress event), ``file_bytes`` (also returns a file artifact ``files/data.bin`` of that size,
    content :func:`sleep_file_content`), ``echo`` (an input array: exercises stored inputs end to
    end; ``data.echo`` = [element count, sum]).
    """
    p = typed_params("system.sleep", params)
    ticks = max(1, math.ceil(p.seconds / SLEEP_TICK_S - 1e-9))
    start = time.monotonic()
    for tick in range(ticks):
        if not p.ignore_cancel:
            ctx.check_cancelled()
        if not p.silent:
            preview = np.full((8, 8, 3), int(255 * tick / ticks), dtype=np.uint8) if p.preview else None
            ctx.progress(tick / ticks, f"tick {tick + 1}/{ticks}", stage="sleep", preview=preview)
        # Sleep to the tick's absolute deadline so the total does not drift with overheads.
        time.sleep(max(0.0, start + min(p.seconds, (tick + 1) * SLEEP_TICK_S) - time.monotonic()))
    if not p.ignore_cancel:
        ctx.check_cancelled()
    if p.fail is not None:
        raise RuntimeError(p.fail)
    if not p.silent:
        ctx.progress(1.0, "done", stage="sleep")
    files = {}
    if p.file_bytes:
        path = ctx.work_dir / "data.bin"
        path.write_bytes(sleep_file_content(p.file_bytes))
        files["files/data.bin"] = path
    slept = round(time.monotonic() - start, 4)
    data: dict[str, Any] = {"seconds": p.seconds, "ticks": ticks, "slept_s": slept}
    if p.echo is not None:
        data["echo"] = [int(p.echo.size), float(p.echo.sum())]
    return JobResult(
        data=data,
        arrays={"ticks": np.arange(ticks, dtype=np.float32)},
        files=files,
    )
