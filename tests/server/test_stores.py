"""Job store (real SQLite) and artifact store (real files)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.server.artifacts import ArtifactNameError, ArtifactStore, check_artifact_name
from backend.server.jobstore import IdempotencyConflict, InvalidTransition, JobStore
from protocol import messages as M


def test_jobs_survive_reopen_with_artifacts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    job, duplicate = store.create("system.sleep", {"seconds": 1.5})
    assert not duplicate and job.state == M.QUEUED and job.params == {"seconds": 1.5}
    store.transition(job.job_id, M.RUNNING)
    store.set_progress(job.job_id, 0.5, "sleep", "half")
    record = artifacts.store_array("out/ticks", np.arange(3, dtype=np.float32))
    store.transition(job.job_id, M.SUCCEEDED, result={"ticks": 3}, artifacts=[record])
    store.close()

    again = JobStore(tmp_path / "jobs.sqlite3")
    loaded = again.get(job.job_id)
    assert loaded is not None and loaded.state == M.SUCCEEDED and loaded.fraction == 1.0
    assert loaded.result == {"ticks": 3} and loaded.artifacts == [record]
    assert again.artifact(job.job_id, "out/ticks") == record
    wire = loaded.to_wire()
    assert wire["artifacts"][0]["shape"] == [3] and wire["data"] == {"ticks": 3}
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_state_machine_is_enforced(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job, _ = store.create("system.sleep", {})
    with pytest.raises(InvalidTransition):
        store.transition(job.job_id, M.SUCCEEDED)  # queued -> succeeded skips running
    store.transition(job.job_id, M.CANCELLED)
    for state in (M.RUNNING, M.FAILED, M.SUCCEEDED):
        with pytest.raises(InvalidTransition):
            store.transition(job.job_id, state)  # terminal is final
    with pytest.raises(KeyError):
        store.transition("missing", M.RUNNING)


def test_idempotency_key(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    first, dup1 = store.create("system.sleep", {"seconds": 1, "x": [1, 2]}, "k")
    second, dup2 = store.create("system.sleep", {"x": [1, 2], "seconds": 1}, "k")  # same params, other order
    assert (dup1, dup2) == (False, True) and first.job_id == second.job_id
    with pytest.raises(IdempotencyConflict):
        store.create("system.sleep", {"seconds": 2}, "k")
    with pytest.raises(IdempotencyConflict):
        store.create("system.info", {"seconds": 1, "x": [1, 2]}, "k")
    other, _ = store.create("system.sleep", {"seconds": 1})
    assert other.job_id != first.job_id
    assert len(store.list()) == 2


def test_unfinished_jobs_fail_on_recovery(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    queued, _ = store.create("system.sleep", {})
    running, _ = store.create("system.sleep", {})
    done, _ = store.create("system.sleep", {})
    store.transition(running.job_id, M.RUNNING)
    store.transition(done.job_id, M.RUNNING)
    store.transition(done.job_id, M.SUCCEEDED, result={})
    assert sorted(store.fail_unfinished("gone")) == sorted([queued.job_id, running.job_id])
    for job_id in (queued.job_id, running.job_id):
        job = store.get(job_id)
        assert job is not None and job.state == M.FAILED and job.error["ename"] == "ServerRestarted"
    assert store.get(done.job_id).state == M.SUCCEEDED  # type: ignore[union-attr]
    assert [j.job_id for j in store.list(states=[M.FAILED], limit=1)] == [running.job_id]  # newest first


def test_artifact_store_content_addressed_and_atomic(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    array = np.random.default_rng(0).normal(size=(4, 5)).astype(">f8")  # big-endian survives as such
    record = store.store_array("x", array)
    path = store.path(record.sha256)
    assert path.parent.name == record.sha256[:2] and path.name == record.sha256
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256 and path.stat().st_size == record.size
    )
    loaded = store.load_array(record.sha256)
    assert loaded.dtype == np.dtype(">f8") and np.array_equal(loaded, array) and not loaded.flags.writeable
    assert record.dtype == ">f8" and record.shape == (4, 5)
    # The same content again: the same blob, stored once.
    assert store.store_array("y", array.copy()).sha256 == record.sha256
    source = tmp_path / "frame.png"
    source.write_bytes(b"\x89PNG fake")
    file_record = store.store_file("rgb/0001.png", source)
    assert file_record.media_type == "image/png" and store.read_bytes(file_record.sha256) == b"\x89PNG fake"
    assert sorted(store.iter_blobs()) == sorted({record.sha256, file_record.sha256})
    assert not list(store.root.glob("*.tmp"))  # no temp files left behind
    assert store.verify(record.sha256)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert not store.verify(record.sha256)


def test_concurrent_writers_of_the_same_content(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    data = os.urandom(1 << 20)
    digests: list[str] = []
    threads = [threading.Thread(target=lambda: digests.append(store.put_bytes(data)[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(digests)) == 1 and store.read_bytes(digests[0]) == data
    assert not list(store.root.glob("*.tmp"))


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "..", "a//b", "a\\b", "./a", "x\x00"])
def test_bad_artifact_names(name: str) -> None:
    with pytest.raises(ArtifactNameError):
        check_artifact_name(name)


def test_good_artifact_names() -> None:
    for name in ("ticks", "rgb/0001.png", "a.b/c-d_e.npy"):
        assert check_artifact_name(name) == name
