"""The client against a tiny in-test ROUTER peer (conftest.FakeServer) over real TCP sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from protocol_fakes import KEY, FakeServer

from protocol import (
    PROTOCOL_VERSION,
    BackendUnavailable,
    Client,
    ConnectionInfo,
    ServerError,
    VersionMismatch,
    messages,
    write_connection_file,
)
from protocol.client import BACKEND_LOST, BACKEND_RESTORED, CONNECTED
from protocol.curve import load_keypair, write_keypair

FAST = {
    "heartbeat_interval_s": 0.2,
    "dead_after_s": 1.0,
    "reconnect_interval_s": 0.2,
    "request_timeout_s": 5.0,
}


def make_client(server: FakeServer, key: bytes = KEY, **kwargs: Any) -> Client:
    options = {**FAST, **kwargs}
    return Client(ConnectionInfo(address=server.address, key=key.decode()), **options)


@pytest.fixture
def client(fake_server: FakeServer) -> Iterator[Client]:
    c = make_client(fake_server)
    yield c
    c.close()


def pump_until(client: Client, predicate: Any, timeout: float = 5.0) -> list[Any]:
    """Call pump() like a Blender timer would, collecting events, until predicate(events) holds."""
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.extend(client.pump())
        if predicate(events):
            return events
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s; events: {[e.type for e in events]}")


def test_from_connection_file_handshake(fake_server: FakeServer, tmp_path: Path) -> None:
    path = write_connection_file(
        tmp_path / "connection.json", ConnectionInfo(address=fake_server.address, key=KEY.decode())
    )
    with Client.from_connection_file(path, **FAST) as c:
        assert c.backend_alive
        assert (
            c.server_info["protocol_version"] == PROTOCOL_VERSION
            and c.server_info["server_version"] == "fake"
        )
        assert c.heartbeat_interval_s == 0.2
    assert fake_server.received[0] == "hello"


def test_submit_wait_progress_artifacts_and_download(client: Client, tmp_path: Path) -> None:
    job_id = client.submit("test.count", {"steps": 6})
    seen: list[float] = []
    view = client.wait(job_id, on_progress=lambda v: seen.append(v.fraction), timeout=10)
    assert view.state == "succeeded" and view.data == {"counted": 6} and view.fraction == 1.0
    assert view.result is not None
    assert [a["name"] for a in view.result["artifacts"]] == ["counts", "logs/log.txt"]
    assert seen == sorted(seen) and len(seen) >= 6 and seen[-1] == pytest.approx(1.0)
    counts = client.get_artifact(job_id, "counts")
    assert isinstance(counts, np.ndarray) and counts.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    log = client.get_artifact(job_id, "logs/log.txt")
    assert log == f"job {job_id} counted 6\n".encode()
    written = client.download(job_id, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == ["counts.npy", "logs/log.txt"]
    assert np.load(tmp_path / "out" / "counts.npy").tolist() == counts.tolist()
    assert (tmp_path / "out" / "logs" / "log.txt").read_bytes() == log


def test_events_iterator_ends_with_terminal_event(client: Client) -> None:
    job_id = client.submit("test.count", {"steps": 3})
    types = [e.type for e in client.events(job_id, timeout=10)]
    assert types[-1] == "job_succeeded" and types.count("job_progress") == 3
    assert "job_state" in types


def test_failed_and_cancelled_outcomes(client: Client) -> None:
    failed = client.wait(client.submit("test.fail"), timeout=10)
    assert failed.state == "failed" and failed.error is not None
    assert failed.error["ename"] == "JobInputError"
    forever = client.submit("test.forever")
    pump_until(client, lambda _: client.jobs[forever].state == "running")
    assert client.cancel(forever) == "cancelled"
    assert client.wait(forever, timeout=5).state == "cancelled"
    assert client.cancel(forever) == "cancelled"  # cancelling a finished job is not an error


def test_list_jobs_attach_and_errors(client: Client, fake_server: FakeServer) -> None:
    job_id = client.submit("test.count", {"steps": 2})
    client.wait(job_id, timeout=10)
    assert [j["job_id"] for j in client.list_jobs()] == [job_id]
    with pytest.raises(ServerError) as info:
        client.attach("no-such-job")
    assert info.value.remote_ename == "UnknownJob"
    with pytest.raises(ServerError):
        client.get_artifact(job_id, "missing")
    # A second client attaches to the finished job and gets the outcome again.
    other = make_client(fake_server)
    try:
        view = other.attach(job_id)
        assert other.wait(job_id, timeout=5).data == {"counted": 2} and view.succeeded
    finally:
        other.close()


def test_idempotency_key_returns_the_same_job(client: Client) -> None:
    first = client.submit("test.count", {"steps": 2}, idempotency_key="once")
    second = client.submit("test.count", {"steps": 2}, idempotency_key="once")
    assert first == second


def test_version_mismatch_names_both_versions() -> None:
    server = FakeServer(version="2.0")
    try:
        c = make_client(server)
        with pytest.raises(VersionMismatch) as info:
            c.connect(timeout=5)
        assert PROTOCOL_VERSION in str(info.value) and "2.0" in str(info.value)
        c.close()
    finally:
        server.stop()


def test_wrong_key_gets_nothing_through(fake_server: FakeServer) -> None:
    c = make_client(fake_server, key=b"x" * 32)
    try:
        with pytest.raises(BackendUnavailable):
            c.connect(timeout=1.0)
    finally:
        c.close()
    assert fake_server.received == [] and fake_server.rejected >= 1


def test_pump_never_blocks_and_detects_dead_backend(fake_server: FakeServer) -> None:
    c = make_client(fake_server)
    c.start()
    pump_until(c, lambda events: any(e.type == CONNECTED for e in events))
    fake_server.stop()
    lost_at = None
    stopped = time.monotonic()
    slowest = 0.0
    while time.monotonic() - stopped < 3.0:
        start = time.perf_counter()
        events = c.pump()
        slowest = max(slowest, time.perf_counter() - start)
        if lost_at is None and any(e.type == BACKEND_LOST for e in events):
            lost_at = time.monotonic() - stopped
        time.sleep(0.005)
    c.close()
    assert slowest < 0.05, f"a pump() call took {slowest * 1000:.1f} ms"
    assert lost_at is not None and lost_at < 2.5, lost_at  # dead_after_s = 1 s, heartbeats every 0.2 s
    assert not c.backend_alive


def test_reconnect_reattaches_and_gets_the_result(fake_server: FakeServer) -> None:
    c = make_client(fake_server)
    c.start()
    pump_until(c, lambda events: any(e.type == CONNECTED for e in events))
    pending = c.submit_nowait("test.forever")
    pump_until(c, lambda _: pending.done)
    job_id = pending.result().content["job_id"]
    pump_until(c, lambda _: c.jobs[job_id].state == "running")
    jobs, port = fake_server.jobs, fake_server.port
    fake_server.stop()
    pump_until(c, lambda events: any(e.type == BACKEND_LOST for e in events))
    # While the client is away the job finishes on the (restarted) backend.
    jobs[job_id].state = messages.SUCCEEDED
    jobs[job_id].data = {"finished": "while away"}
    restarted = FakeServer(port=port, jobs=jobs)
    try:
        events = pump_until(c, lambda _: c.jobs[job_id].terminal, timeout=8)
        assert any(e.type == BACKEND_RESTORED for e in events) and c.backend_alive
        assert c.jobs[job_id].state == "succeeded" and c.jobs[job_id].data == {"finished": "while away"}
        assert "attach" in restarted.received
    finally:
        c.close()
        restarted.stop()


def test_pump_drives_a_job_without_blocking_calls(client: Client) -> None:
    client.start()
    pending = client.submit_nowait("test.count", {"steps": 3})
    events = pump_until(client, lambda evs: any(e.type == "job_succeeded" for e in evs))
    types = [e.type for e in events]
    assert types.index("submit_reply") < types.index("job_succeeded")
    job_id = pending.result().content["job_id"]
    assert client.jobs[job_id].succeeded and client.jobs[job_id].kind == "test.count"


def test_curve_listed_key_works_unlisted_or_wrong_server_key_does_not(tmp_path: Path) -> None:
    _, server_secret_path = write_keypair(tmp_path / "server", "server", role="server")
    allowed = tmp_path / "allowed"
    _, alice_secret = write_keypair(allowed, "alice")
    _, mallory_secret = write_keypair(tmp_path / "other", "mallory")
    server = FakeServer(curve_keys=load_keypair(server_secret_path), authorized_keys_dir=str(allowed))
    server_public = load_keypair(server_secret_path)[0].decode()

    def curve_client(secret: Path, server_key: str) -> Client:
        info = ConnectionInfo(
            address=server.address, key=KEY.decode(), curve=True, server_public_key=server_key
        )
        return Client(info, client_key_file=secret, **FAST)

    try:
        good = curve_client(alice_secret, server_public)
        try:
            assert good.wait(good.submit("test.count", {"steps": 2}), timeout=10).succeeded
        finally:
            good.close()
        wrong_server_key = load_keypair(mallory_secret)[0].decode()
        for secret, key in ((mallory_secret, server_public), (alice_secret, wrong_server_key)):
            bad = curve_client(secret, key)
            try:
                with pytest.raises(BackendUnavailable):
                    bad.connect(timeout=1.0)
            finally:
                bad.close()
        assert server.received.count("hello") == 1 and server.received.count("submit") == 1
    finally:
        server.stop()


def test_blocking_wait_survives_a_backend_restart(fake_server: FakeServer) -> None:
    c = make_client(fake_server)
    job_id = c.submit("test.forever")
    jobs, port = fake_server.jobs, fake_server.port
    restarted: list[FakeServer] = []

    def restart_later() -> None:
        time.sleep(0.3)
        fake_server.stop()
        time.sleep(1.5)  # longer than dead_after_s: the client gives the old socket up
        jobs[job_id].state = messages.SUCCEEDED
        jobs[job_id].data = {"after": "restart"}
        restarted.append(FakeServer(port=port, jobs=jobs))

    thread = threading.Thread(target=restart_later)
    thread.start()
    try:
        view = c.wait(job_id, timeout=10)
        assert view.succeeded and view.data == {"after": "restart"}
    finally:
        thread.join()
        c.close()
        for server in restarted:
            server.stop()


def test_big_artifacts_come_in_ranges(
    client: Client, fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the range size the client asks for slices of the stored bytes (an array's .npy file);
    the fake server caps each slice at 40 bytes so several round trips are needed."""
    import protocol.client as client_module

    monkeypatch.setattr(client_module, "ARTIFACT_RANGE_BYTES", 16)
    job_id = client.submit("test.count", {"steps": 40})
    client.wait(job_id, timeout=10)
    counts = client.get_artifact(job_id, "counts")
    assert isinstance(counts, np.ndarray) and not counts.flags.writeable
    assert counts.dtype == np.float32 and counts.tolist() == [2.0 * i for i in range(40)]
    assert client.get_artifact(job_id, "logs/log.txt") == f"job {job_id} counted 40\n".encode()
    assert fake_server.range_requests >= 5
    written = client.download(job_id, tmp_path)
    assert np.load(tmp_path / "counts.npy").tolist() == counts.tolist() and len(written) == 2


def test_npy_parsing_keeps_order_and_refuses_garbage() -> None:
    import io

    from protocol import ProtocolError
    from protocol.client import _array_from_npy

    for array in (np.arange(12, dtype=">i4").reshape(3, 4), np.asfortranarray(np.arange(6.0).reshape(2, 3))):
        stream = io.BytesIO()
        np.save(stream, array)
        parsed = _array_from_npy(bytearray(stream.getvalue()))
        assert parsed.dtype == array.dtype and np.array_equal(parsed, array)
    with pytest.raises(ProtocolError):
        _array_from_npy(bytearray(b"not an npy file at all"))
    truncated = io.BytesIO()
    np.save(truncated, np.arange(100))
    with pytest.raises(ProtocolError):
        _array_from_npy(bytearray(truncated.getvalue()[:-8]))
