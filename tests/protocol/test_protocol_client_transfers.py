"""Stepped, ranged, hash-checked downloads (protocol/transfers.py) against the in-test server.

The fake server caps every range at 40 bytes, so an artifact of a few hundred bytes needs many
round trips: that is the "artifact larger than the frame limit" case in miniature.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from protocol_fakes import KEY, FakeServer

from protocol import Client, ConnectionInfo, ServerError
from protocol.transfers import Download, JobDownload, TransferError, local_path, safe_relative_path


@pytest.fixture
def client(fake_server: FakeServer) -> Iterator[Client]:
    c = Client(ConnectionInfo(address=fake_server.address, key=KEY.decode()), heartbeat_interval_s=0.2,
               dead_after_s=1.0, reconnect_interval_s=0.2, request_timeout_s=5.0)
    c.connect(5)
    yield c
    c.close()


def finished_job(client: Client, steps: int = 60) -> str:
    job_id = client.submit("test.count", {"steps": steps})
    assert client.wait(job_id, timeout=10).succeeded
    return job_id


def pump_transfer(client: Client, transfer: Download | JobDownload, timeout: float = 10.0) -> int:
    """Step like a Blender timer: a pump, a step of at most 2 ms, never a blocking call."""
    steps = 0
    deadline = time.monotonic() + timeout
    while not transfer.done:
        client.pump()
        started = time.perf_counter()
        transfer.step(0.002)
        # One step never waits for the server (no data yet = return at once).
        assert time.perf_counter() - started < 0.5
        steps += 1
        assert time.monotonic() < deadline, "transfer did not finish"
        time.sleep(0.001)
    return steps


def test_a_download_is_stepped_ranged_and_renamed_into_place(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    job_id = finished_job(client)
    record = client.jobs[job_id].artifact("counts")
    assert record is not None and record["size"] > 200  # several 40-byte ranges
    target = local_path(tmp_path, record)
    download = client.start_download(job_id, "counts", target, range_bytes=64)
    before = fake_server.range_requests
    steps = pump_transfer(client, download)
    assert download.error is None and not download.cached and target.name == "counts.npy"
    assert fake_server.range_requests - before >= record["size"] // 40
    assert steps > 1  # it took several pumps: the caller stayed in control between ranges
    assert hashlib.sha256(target.read_bytes()).hexdigest() == record["sha256"]
    assert np.load(target).tolist() == [2.0 * i for i in range(60)]
    assert [p.name for p in tmp_path.iterdir()] == ["counts.npy"]  # no .part left behind
    value = download.value()
    assert isinstance(value, np.ndarray) and value.tolist() == [2.0 * i for i in range(60)]


def test_rate_limited_ranges_are_asked_again_not_failed(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    """The server paces a busy client with RateLimited replies (e.g. a job of hundreds of small
    files downloaded 4 at a time): the download waits and asks again, and the file is whole."""
    job_id = finished_job(client)
    fake_server.rate_limit_every = 3
    download = JobDownload(client, job_id, list(client.jobs[job_id].artifacts), tmp_path, range_bytes=64)
    pump_transfer(client, download)
    assert download.error is None, download.error
    assert fake_server.rate_limited >= 3
    record = client.jobs[job_id].artifact("counts")
    assert hashlib.sha256(download.files["counts"].read_bytes()).hexdigest() == record["sha256"]


def test_unanswered_ranges_are_asked_again(
    client: Client, fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals over the server's error budget get no reply at all: a range unanswered for
    UNANSWERED_S is asked again, and the download completes."""
    import protocol.transfers as transfers

    monkeypatch.setattr(transfers, "UNANSWERED_S", 0.2)
    job_id = finished_job(client)
    fake_server.drop_every = 4
    download = JobDownload(client, job_id, list(client.jobs[job_id].artifacts), tmp_path, range_bytes=64)
    pump_transfer(client, download, timeout=30.0)
    assert download.error is None, download.error
    assert fake_server.dropped >= 2
    record = client.jobs[job_id].artifact("counts")
    assert hashlib.sha256(download.files["counts"].read_bytes()).hexdigest() == record["sha256"]


def test_a_server_that_only_rate_limits_fails_the_download_in_the_end(
    client: Client, fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import protocol.transfers as transfers

    monkeypatch.setattr(transfers, "RATE_LIMIT_MIN_WAIT_S", 0.001)
    job_id = finished_job(client)
    fake_server.rate_limit_every = 1
    download = client.start_download(job_id, "counts", tmp_path / "counts.npy", range_bytes=64)
    pump_transfer(client, download)
    assert isinstance(download.error, ServerError) and download.error.remote_ename == "RateLimited"
    # two ranges are in flight per round: each round is refused once or twice
    assert transfers.RATE_LIMIT_RETRIES < fake_server.rate_limited <= 2 * (transfers.RATE_LIMIT_RETRIES + 1)
    assert not (tmp_path / "counts.npy").exists()


def test_a_corrupted_cached_file_is_fetched_again_a_good_one_is_reused(
    client: Client, fake_server: FakeServer, tmp_path: Path
) -> None:
    job_id = finished_job(client)
    record = client.jobs[job_id].artifact("counts")
    assert record is not None
    target = local_path(tmp_path, record)
    pump_transfer(client, client.start_download(job_id, "counts", target))
    good = target.read_bytes()

    # Same size, one byte flipped in the payload: still a loadable .npy, but not the artifact.
    damaged = bytearray(good)
    damaged[-3] ^= 0xFF
    target.write_bytes(bytes(damaged))
    assert np.load(target).tolist() != [2.0 * i for i in range(60)]
    before = fake_server.range_requests
    again = client.start_download(job_id, "counts", target)
    pump_transfer(client, again)
    assert again.error is None and not again.cached
    assert fake_server.range_requests > before  # re-fetched from the server
    assert target.read_bytes() == good

    before = fake_server.range_requests
    reused = client.start_download(job_id, "counts", target)
    pump_transfer(client, reused)
    assert reused.cached and fake_server.range_requests == before  # verified locally, not fetched


def test_a_hash_mismatch_fails_and_leaves_no_file(client: Client, tmp_path: Path) -> None:
    job_id = finished_job(client)
    record = dict(client.jobs[job_id].artifact("logs/log.txt") or {})
    record["sha256"] = "0" * 64
    target = tmp_path / "logs" / "log.txt"
    download = Download(client, job_id, "logs/log.txt", record=record, target=target)
    pump_transfer(client, download)
    assert isinstance(download.error, TransferError) and "sha256" in str(download.error)
    assert not target.exists() and not list((tmp_path / "logs").iterdir())


def test_a_job_download_fetches_every_artifact_and_reports_errors(client: Client, tmp_path: Path) -> None:
    job_id = finished_job(client, steps=30)
    transfer = client.start_job_download(job_id, tmp_path, range_bytes=100)
    pump_transfer(client, transfer)
    assert transfer.error is None and transfer.fraction == 1.0
    assert sorted(transfer.files) == ["counts", "logs/log.txt"]
    assert (tmp_path / "logs" / "log.txt").read_bytes() == f"job {job_id} counted 30\n".encode()

    missing = JobDownload(client, job_id, [{"name": "nope", "kind": "file", "size": 5, "sha256": "0" * 64}],
                          tmp_path / "missing")
    pump_transfer(client, missing)
    assert isinstance(missing.error, ServerError) and missing.error.remote_ename == "UnknownArtifact"
    escape = JobDownload(client, job_id, [{"name": "../escape", "size": 1, "sha256": "0" * 64}], tmp_path)
    assert escape.step() and isinstance(escape.error, TransferError) and "unsafe" in str(escape.error)
    assert not (tmp_path.parent / "escape").exists()


def test_unsafe_names_are_refused() -> None:
    for name in ("", "/abs", "../up", "a/../b", "a\\b", "a//b", "./a"):
        with pytest.raises(TransferError):
            safe_relative_path(name)
    assert safe_relative_path("rgb/0001.png").as_posix() == "rgb/0001.png"
