"""The parts of fair service, without a server: token buckets, per-peer outbox bounds, the
executor's turns between clients, the blob collector and the parsers of the CLI's sizes and
durations. (The same behaviour over real sockets: test_fairness.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from backend.cli.serve import parse_size
from backend.server.artifacts import ArtifactStore, DiskQuotaExceeded
from backend.server.inputs import StagedInputs
from backend.server.jobstore import JobStore
from backend.server.outbox import Outbox, Outgoing
from backend.server.params import externalize
from backend.server.quotas import QueueLimits, Refusal
from backend.server.ratelimit import RateLimiter, request_cost
from backend.server.retention import GRACE_S, collect_garbage, parse_duration, prune, referenced_blobs
from protocol import Message
from protocol import messages as M


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_charges_cost_allows_debt_and_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    assert limiter.allow("a")
    limiter.charge("a", request_cost(0.030))  # 31 units: more than the burst, capped at one burst of debt
    assert limiter.tokens("a") == pytest.approx(-11)
    assert not limiter.allow("a") and limiter.allow("b")  # per client
    assert limiter.retry_after("a") == pytest.approx(1.1001, abs=1e-3)
    clock.now += 1.2
    assert limiter.allow("a")
    clock.now += 100
    assert limiter.tokens("a") == 20  # never more than the burst


def test_token_bucket_off_and_bounded_memory() -> None:
    assert RateLimiter(rate=0).allow("x")
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=5, clock=clock, max_clients=100)
    for index in range(1000):
        limiter.charge(f"c{index}", 1)
    assert len(limiter._buckets) <= 100


def _item(identity: bytes, nbytes: int) -> Outgoing:
    return Outgoing(identity, Message(header={"msg_type": "x"}), expires=time.monotonic() + 30, nbytes=nbytes)


def test_outbox_bounds_per_peer_keeps_order_and_reports_stalled_peers() -> None:
    box = Outbox(max_messages=3, max_bytes=1000)
    assert box.add(_item(b"a", 5000))  # one message of any size may wait
    assert not box.add(_item(b"a", 10))  # but nothing more past the byte bound
    assert box.add(_item(b"b", 100)) and box.add(_item(b"b", 100)) and box.add(_item(b"b", 100))
    assert not box.add(_item(b"b", 1))  # message bound
    sent: list[bytes] = []

    def try_send(item: Outgoing) -> str:
        if item.identity == b"a":
            return "again"
        sent.append(item.identity)
        return "sent"

    assert box.flush(try_send, time.monotonic()) == []
    assert sent == [b"b"] * 3 and not box.blocked(b"b") and box.blocked(b"a")
    assert box.flush(try_send, time.monotonic() + 60) == [b"a"]  # its oldest message waited too long
    assert box.discard(b"a") == 1 and not box


def test_queue_limits_name_the_limit_and_the_count() -> None:
    limits = QueueLimits(per_client=2, total=3)
    limits.check("a", 1, 2)
    with pytest.raises(Refusal) as one:
        limits.check("a", 2, 2)
    assert one.value.ename == "QueueFull"
    assert "already has 2" in one.value.evalue and "limit is 2" in one.value.evalue
    with pytest.raises(Refusal) as total:
        limits.check("b", 0, 3)
    assert "limit is 3 for all clients" in total.value.evalue


def test_staged_inputs_commit_only_when_recorded(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    array = np.arange(1000)
    with pytest.raises(RuntimeError), StagedInputs(store) as inputs:
        params = externalize({"x": array, "y": [b"raw"]}, store, inputs.blobs)
        raise RuntimeError("refused")
    assert list(store.iter_blobs()) == [] and not list(store.root.glob("*.tmp"))
    with StagedInputs(store) as inputs:
        params = externalize({"x": array, "y": [b"raw"]}, store, inputs.blobs)
    assert sorted(store.iter_blobs()) == sorted(
        [params["x"]["__stored_array__"]["sha256"], params["y"][0]["__stored_bytes__"]["sha256"]]
    )


def test_quota_refuses_a_blob_that_would_cross_it(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    store.set_quota(10_000)
    store.put_bytes(b"x" * 6000)
    with pytest.raises(DiskQuotaExceeded) as full:
        ArtifactStore(store.root).put_bytes(b"y" * 6000)  # another process sees the same quota
    assert "10000" in str(full.value) and "jobs prune" in str(full.value)
    assert not list(store.root.glob("*.tmp"))
    store.put_bytes(b"x" * 6000)  # identical content costs nothing
    with pytest.raises(Refusal) as refused, StagedInputs(store) as inputs:
        externalize({"big": b"z" * 5000}, store, inputs.blobs)
        inputs.admit()
    assert refused.value.ename == "DiskQuotaExceeded" and not list(store.root.glob("*.tmp"))
    store.set_quota(None)
    store.put_bytes(b"y" * 6000)


def _age(store: ArtifactStore, seconds: float) -> None:
    for sha in store.iter_blobs():
        then = time.time() - seconds
        os.utime(store.path(sha), (then, then))


def test_collector_keeps_referenced_and_young_blobs(tmp_path: Path) -> None:
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    store = ArtifactStore(tmp_path / "artifacts")
    kept_input = externalize({"a": np.arange(3)}, store)
    orphan, _ = store.put_bytes(b"nobody")
    job, _ = jobs.create("system.sleep", kept_input)
    record = store.store_array("out", np.arange(7))
    jobs.transition(job.job_id, M.RUNNING)
    jobs.transition(job.job_id, M.SUCCEEDED, artifacts=[record])
    assert referenced_blobs(jobs) == {kept_input["a"]["__stored_array__"]["sha256"], record.sha256}
    assert collect_garbage(jobs, store).blobs == 0  # the orphan is young: maybe being written
    _age(store, 2 * GRACE_S)
    running, _ = jobs.create("system.sleep", {})  # an unfinished job created now...
    with jobs.transaction() as db:
        db.execute("UPDATE jobs SET created = '2000-01-01T00:00:00.000Z' WHERE job_id = ?", (running.job_id,))
    assert collect_garbage(jobs, store).blobs == 0  # ...as old as 2000: anything may be its output
    jobs.transition(running.job_id, M.CANCELLED)
    report = collect_garbage(jobs, store)
    assert report.blobs == 1 and report.bytes == len(b"nobody") and not store.exists(orphan)
    # prune: the finished job goes, then its bytes (older than the horizon) with it
    assert prune(jobs, store, older_than_s=0, now=time.time() + 1).jobs == 2
    assert list(store.iter_blobs()) == []
    jobs.close()


def test_parse_duration_and_size() -> None:
    assert parse_duration("7d") == 7 * 86400 and parse_duration("12h") == 43200
    assert parse_duration("90s") == 90
    assert parse_duration(" 1.5 m ") == 90 and parse_duration("2w") == 14 * 86400
    for bad in ("7", "d", "-1d", "7 days", "1e3s", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_size("500M") == 500 << 20 and parse_size("2g") == 2 << 30
    assert parse_size("1.5TiB") == int(1.5 * (1 << 40))
    assert parse_size("1234") == 1234
