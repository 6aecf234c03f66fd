"""The executor alone: real worker processes, no sockets."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_helpers import pid_alive

from backend.jobs.api import JOB_KINDS, JobKind, JobResult
from backend.server.artifacts import ArtifactStore
from backend.server.executor import (
    Executor,
    ExecutorEvent,
    JobCancelledEvent,
    JobFailed,
    JobProgressed,
    JobStarted,
    JobSucceeded,
)

KINDS = {
    **JOB_KINDS,
    # system.sleep with a short watchdog, so a silent job is caught quickly.
    "test.watched_sleep": JobKind(
        "test.watched_sleep", "backend.jobs.system", "system_sleep", "", watchdog_s=0.5
    ),
    "test.missing_module": JobKind("test.missing_module", "backend.jobs.no_such_module", "run", ""),
    # Job functions defined below; the worker imports this module by name (pytest put it on sys.path).
    "test.outputs": JobKind("test.outputs", "test_executor", "outputs_job", ""),
}
TERMINAL = (JobSucceeded, JobFailed, JobCancelledEvent)


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Executor]:
    ex = Executor(tmp_path / "data", workers=2, kinds=KINDS)
    ex.start()
    yield ex
    ex.shutdown()


def run_until_terminal(
    ex: Executor, job_ids: set[str], timeout: float = 30.0
) -> dict[str, list[ExecutorEvent]]:
    events: dict[str, list[ExecutorEvent]] = {job_id: [] for job_id in job_ids}
    pending = set(job_ids)
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"jobs {pending} did not finish; events: {events}"
        wait([fd for fd in ex.poll_fds()], timeout=0.05)
        for event in ex.service():
            events.setdefault(event.job_id, []).append(event)
            if isinstance(event, TERMINAL):
                pending.discard(event.job_id)
    return events


def started_pid(ex: Executor, job_id: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait([fd for fd in ex.poll_fds()], timeout=0.05)
        for event in ex.service():
            if isinstance(event, JobStarted) and event.job_id == job_id:
                return event.pid
    raise AssertionError("job never started")


def test_jobs_run_in_workers_and_store_artifacts(executor: Executor) -> None:
    executor.submit("a", "system.sleep", {"seconds": 0.25})
    executor.submit("b", "system.sleep", {"seconds": 0.1})
    events = run_until_terminal(executor, {"a", "b"})
    for job_id, ticks in (("a", 3), ("b", 1)):
        kinds = [type(e) for e in events[job_id]]
        assert kinds[0] is JobStarted and kinds[-1] is JobSucceeded and JobProgressed in kinds
        pid = events[job_id][0].pid  # type: ignore[union-attr]
        assert pid != os.getpid()
        done = events[job_id][-1]
        assert isinstance(done, JobSucceeded) and done.data["ticks"] == ticks
        record = done.artifacts[0]
        stored = ArtifactStore(executor.artifacts_root).load_array(record.sha256)
        assert np.array_equal(stored, np.arange(ticks, dtype=np.float32))
        fractions = [e.fraction for e in events[job_id] if isinstance(e, JobProgressed)]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert not any((executor.work_root).iterdir())  # scratch dirs are removed


def test_errors_cross_the_process_boundary(executor: Executor, caplog: Any) -> None:
    executor.submit("bad", "system.sleep", {"seconds": "soon"})
    executor.submit("boom", "system.sleep", {"seconds": 0, "fail": "kaput"})
    executor.submit("nomod", "test.missing_module", {})
    events = run_until_terminal(executor, {"bad", "boom", "nomod"})
    bad, boom, nomod = (events[j][-1] for j in ("bad", "boom", "nomod"))
    assert isinstance(bad, JobFailed) and bad.error["ename"] == "JobInputError"
    assert "seconds" in bad.error["evalue"] and bad.error["traceback"] == ""
    assert isinstance(boom, JobFailed) and boom.error == {
        **boom.error,
        "ename": "RuntimeError",
        "evalue": "kaput",
    }
    # Clients get the class and the message; the traceback goes to the server's log (stderr).
    assert boom.error["traceback"] == ""
    log = caplog.text
    assert "job boom failed" in log and "system_sleep" in log and "RuntimeError: kaput" in log
    assert isinstance(nomod, JobFailed) and nomod.error["ename"] == "ModuleNotFoundError"
    # The worker survived all three and runs the next job.
    executor.submit("ok", "system.sleep", {"seconds": 0})
    assert isinstance(run_until_terminal(executor, {"ok"})["ok"][-1], JobSucceeded)


def test_killed_worker_fails_job_then_is_replaced(executor: Executor) -> None:
    executor.submit("victim", "system.sleep", {"seconds": 30})
    pid = started_pid(executor, "victim")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    end = run_until_terminal(executor, {"victim"})["victim"][-1]
    assert time.monotonic() - killed < 1.5
    assert (
        isinstance(end, JobFailed) and end.error["ename"] == "WorkerDied" and "SIGKILL" in end.error["evalue"]
    )
    executor.submit("next", "system.sleep", {"seconds": 0.1})
    assert isinstance(run_until_terminal(executor, {"next"})["next"][-1], JobSucceeded)


def test_watchdog_kills_a_silent_job(executor: Executor) -> None:
    executor.submit("quiet", "test.watched_sleep", {"seconds": 30, "silent": True})
    pid = started_pid(executor, "quiet")
    started = time.monotonic()
    end = run_until_terminal(executor, {"quiet"})["quiet"][-1]
    assert isinstance(end, JobFailed) and end.error["ename"] == "WatchdogTimeout"
    assert 0.4 < time.monotonic() - started < 3.0
    assert not pid_alive(pid)  # the stuck worker was killed, not left running
    # The same kind with progress (the default) is not killed: progress is liveness.
    executor.submit("chatty", "test.watched_sleep", {"seconds": 1.0})
    assert isinstance(run_until_terminal(executor, {"chatty"})["chatty"][-1], JobSucceeded)


def test_cancel_running_queued_and_stubborn(tmp_path: Path) -> None:
    ex = Executor(tmp_path / "data", workers=1, kinds=KINDS, cancel_grace_s=0.3)
    ex.start()
    try:
        ex.submit("run", "system.sleep", {"seconds": 30})
        ex.submit("queued", "system.sleep", {"seconds": 30})
        started_pid(ex, "run")
        assert ex.queued == ["queued"]
        assert ex.cancel("queued") and ex.queued == []
        t0 = time.monotonic()
        assert ex.cancel("run")
        events = run_until_terminal(ex, {"run", "queued"})
        assert isinstance(events["queued"][-1], JobCancelledEvent)
        assert isinstance(events["run"][-1], JobCancelledEvent) and time.monotonic() - t0 < 1.0
        assert not ex.cancel("run")  # finished: unknown to the executor now

        ex.submit("stubborn", "system.sleep", {"seconds": 30, "ignore_cancel": True})
        pid = started_pid(ex, "stubborn")
        t0 = time.monotonic()
        ex.cancel("stubborn")
        end = run_until_terminal(ex, {"stubborn"})["stubborn"][-1]
        assert isinstance(end, JobCancelledEvent) and 0.25 < time.monotonic() - t0 < 1.0
        assert ex.running == {}
        assert not pid_alive(pid)
        # A fresh worker replaces the killed one, and a later cancel flag does not leak into it.
        ex.submit("after", "system.sleep", {"seconds": 0.2})
        assert isinstance(run_until_terminal(ex, {"after"})["after"][-1], JobSucceeded)
    finally:
        ex.shutdown()


def broken_worker(*_: object) -> None:
    """Stands in for a worker whose start fails (e.g. a broken install): exits before "ready"."""
    raise SystemExit(7)


def test_queued_jobs_fail_when_no_worker_can_start(tmp_path: Path) -> None:
    ex = Executor(tmp_path / "data", workers=1, kinds=KINDS, worker_entry=broken_worker)
    ex.start()
    try:
        ex.submit("stuck", "system.sleep", {"seconds": 0})
        end = run_until_terminal(ex, {"stuck"}, timeout=30)["stuck"][-1]
        assert isinstance(end, JobFailed) and end.error["ename"] == "WorkerStartFailed"
        assert "exit code 7" in end.error["evalue"]
    finally:
        ex.shutdown()


def outputs_job(params: dict[str, Any], ctx: Any) -> JobResult:
    """Returns what ``params["case"]`` names: folders of files, or a dtype the wire cannot carry."""
    if params["case"] == "strings":
        return JobResult(arrays={"names": np.array(["a", "b"])})
    if params["case"] == "escape":
        (ctx.work_dir / "x").write_text("x")
        return JobResult(files={"../x": ctx.work_dir / "x"})
    for index in range(3):
        (ctx.work_dir / f"{index}.png").write_bytes(bytes([index]) * 10)
    return JobResult(
        files={f"rgb/{i:04d}.png": ctx.work_dir / f"{i}.png" for i in range(3)},
        data={"work_dir": str(ctx.work_dir)},
    )


def test_job_outputs_are_checked_and_stored(executor: Executor) -> None:
    executor.submit("files", "test.outputs", {"case": "files"})
    executor.submit("strings", "test.outputs", {"case": "strings"})
    executor.submit("escape", "test.outputs", {"case": "escape"})
    events = run_until_terminal(executor, {"files", "strings", "escape"})
    files = events["files"][-1]
    assert isinstance(files, JobSucceeded)
    assert [r.name for r in files.artifacts] == ["rgb/0000.png", "rgb/0001.png", "rgb/0002.png"]
    assert all(r.kind == "file" and r.media_type == "image/png" and r.size == 10 for r in files.artifacts)
    store = ArtifactStore(executor.artifacts_root)
    assert store.read_bytes(files.artifacts[1].sha256) == b"\x01" * 10
    assert not Path(files.data["work_dir"]).exists()  # the scratch dir is gone, the artifacts stay
    strings, escape = events["strings"][-1], events["escape"][-1]
    assert isinstance(strings, JobFailed) and "cannot travel" in strings.error["evalue"]
    assert isinstance(escape, JobFailed) and escape.error["ename"] == "ArtifactNameError"


def test_workers_get_a_share_of_the_cpus_unless_the_user_set_it(monkeypatch: Any) -> None:
    from backend.server.executor import RENDER_THREADS_ENV, Executor, _with_environment

    monkeypatch.delenv(RENDER_THREADS_ENV, raising=False)
    for workers in (1, 2, 64):
        env = Executor(data_dir=Path("/nonexistent"), workers=workers)._worker_environment()
        share = str(max(1, len(os.sched_getaffinity(0)) // workers))
        assert env.pop("AVATAR_STUDIO_INPUT_ROOTS") == "/nonexistent/inputs"  # confine.py
        assert env == {RENDER_THREADS_ENV: share, "OMP_NUM_THREADS": share}
    seen: list[str | None] = []
    _with_environment({RENDER_THREADS_ENV: "1"}, lambda: seen.append(os.environ.get(RENDER_THREADS_ENV)))
    monkeypatch.setenv(RENDER_THREADS_ENV, "7")
    _with_environment({RENDER_THREADS_ENV: "1"}, lambda: seen.append(os.environ.get(RENDER_THREADS_ENV)))
    assert seen == ["1", "7"]
    monkeypatch.delenv(RENDER_THREADS_ENV, raising=False)
