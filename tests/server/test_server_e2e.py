"""The job server end to end: a real server subprocess, real sockets, real worker processes."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from server_helpers import ServerProcess, pid_alive, wait_running

from backend.models.registry import ROLES
from protocol import PROTOCOL_VERSION, ServerError, Session, read_connection_file
from protocol import messages as M


def test_start_writes_private_connection_file(server: ServerProcess) -> None:
    info = read_connection_file(server.connection_file)
    mode = stat.S_IMODE(server.connection_file.stat().st_mode)
    assert mode == 0o600
    assert info.address == server.ready["address"]
    # The local default: a Unix socket inside the (0700) data dir, buffers left to the kernel.
    assert info.address == f"ipc://{server.data_dir.resolve() / 'backend.sock'}"
    assert info.effective_buffer_integrity == "transport"
    assert info.protocol_version == PROTOCOL_VERSION
    assert len(info.key) >= 32 and info.server_pid == server.pid and info.curve is False


def test_hello_reply_lists_job_kinds(client: Any) -> None:
    info = client.server_info
    assert info["protocol_version"] == PROTOCOL_VERSION
    names = {k["name"] for k in info["job_kinds"]}
    assert {"system.info", "system.sleep"} <= names
    assert info["heartbeat_interval_s"] > 0


def test_system_info_and_sleep_via_client(client: Any, tmp_path: Path) -> None:
    info_id = client.submit("system.info", {})
    sleep_id = client.submit("system.sleep", {"seconds": 0.3})
    info = client.wait(info_id, timeout=60)
    assert info.state == M.SUCCEEDED, info.error
    assert info.data["python"].count(".") == 2 and info.data["numpy"] == np.__version__
    assert info.data["device"] in ("cpu", "cuda") and info.data["cpu_count"] >= 1
    assert set(info.data["models"]) == set(ROLES)
    assert info.data["body_model"]["kind"] in ("stand-in", "licensed")
    assert info.data["pid"] != os.getpid()  # it ran in a worker process
    # Two workers share the CPUs for rendering, unless the user chose a thread count.
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert info.data["render_threads"] == int(os.environ.get("AVATAR_STUDIO_RENDER_THREADS") or share)
    assert info.data["torch_threads"] == int(os.environ.get("OMP_NUM_THREADS") or share)

    progress: list[float] = []
    view = client.wait(sleep_id, on_progress=lambda v: progress.append(v.fraction), timeout=30)
    assert view.state == M.SUCCEEDED, view.error
    assert view.data["ticks"] == 3 and view.data["slept_s"] >= 0.29
    assert progress and progress == sorted(progress)  # progress arrived, in order
    ticks = client.get_artifact(sleep_id, "ticks")
    assert ticks.dtype == np.float32 and ticks.tolist() == [0.0, 1.0, 2.0]
    record = view.artifacts[0]
    assert record["name"] == "ticks" and record["kind"] == "array" and record["shape"] == [3]
    written = client.download(sleep_id, tmp_path / "out")
    assert written == [tmp_path / "out" / "ticks.npy"]
    assert np.load(written[0]).tolist() == [0.0, 1.0, 2.0]


def test_bad_requests_get_clear_errors(client: Any) -> None:
    with pytest.raises(ServerError) as err:
        client.submit("no.such.kind", {})
    assert err.value.remote_ename == M.E_UNKNOWN_KIND and "system.sleep" in err.value.evalue
    with pytest.raises(ServerError) as err:
        client.attach("0" * 32)
    assert err.value.remote_ename == M.E_UNKNOWN_JOB
    with pytest.raises(ServerError) as err:
        client.request(M.SUBMIT, {"kind": "system.sleep", "params": [1, 2]})
    assert err.value.remote_ename == M.E_BAD_REQUEST
    with pytest.raises(ServerError) as err:
        client.request("make_coffee", {})
    assert err.value.remote_ename == M.E_UNKNOWN_TYPE
    # Bad job params are refused at submit, against the kind's contract, naming the field.
    with pytest.raises(ServerError) as err:
        client.submit("system.sleep", {"seconds": -1})
    assert err.value.remote_ename == M.E_BAD_REQUEST
    assert err.value.evalue == "params.seconds: must be a number in [0, 3600], got -1"
    # A job's own exception crosses as its class and message; the traceback stays in the log.
    job_id = client.submit("system.sleep", {"seconds": 0, "fail": "boom"})
    view = client.wait(job_id, timeout=30)
    assert view.error["ename"] == "RuntimeError" and view.error["evalue"] == "boom"
    assert view.error["traceback"] == ""


def _raw_dealer(address: str) -> zmq.Socket[Any]:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(address)
    return socket


def _recv(session: Session, socket: zmq.Socket[Any], timeout: float = 5.0) -> Any:
    assert socket.poll(int(timeout * 1000)), "no reply"
    return session.recv(socket)


def test_version_mismatch_names_both_versions(server: ServerProcess) -> None:
    info = read_connection_file(server.connection_file)
    session = Session(info.key_bytes, protocol_version="2.0")
    socket = _raw_dealer(info.address)
    try:
        session.send(socket, M.HELLO, M.hello_content("2.0", "test", "0"))
        reply = _recv(session, socket)
        assert reply.msg_type == M.ERROR and reply.content["ename"] == M.E_VERSION
        assert PROTOCOL_VERSION in reply.content["evalue"] and "2.0" in reply.content["evalue"]
        assert reply.content["details"] == {"server_version": PROTOCOL_VERSION, "client_version": "2.0"}
        # Any other request of another major version gets the same error.
        session.send(socket, M.LIST_JOBS, {})
        reply = _recv(session, socket)
        assert reply.content["ename"] == M.E_VERSION
    finally:
        socket.close()


def test_garbage_does_not_stop_the_server(server: ServerProcess, client: Any) -> None:
    info = read_connection_file(server.connection_file)
    good = Session(info.key_bytes)
    socket = _raw_dealer(info.address)
    rng = np.random.default_rng(0)
    try:
        valid = good.serialize(good.msg(M.LIST_JOBS, {}))
        wrong_key = Session(b"w" * 32).serialize(Session(b"w" * 32).msg(M.LIST_JOBS, {}))
        attempts: list[list[Any]] = [
            [b""],
            [rng.bytes(100)],
            [rng.bytes(int(n)) for n in rng.integers(0, 50, size=12)],
            [b"<AVS|MSG>"],
            valid[:4],  # truncated
            [*valid[:-1], b"{not json"],
            wrong_key,
            [*valid[:5], b'{"kind": "system.sleep"' * 10, b"{}"],  # frames shuffled
            [valid[0], b"0" * 64, *valid[2:]],  # signature tampered
            [b"x"] * 2000,  # too many frames
            [*valid, rng.bytes(1000)],  # a buffer frame the signature does not cover
        ]
        # Too big a JSON frame, correctly signed: the limit check must refuse it.
        big = good.msg(M.SUBMIT, {"kind": "system.sleep", "params": {"pad": "x" * (9 << 20)}})
        attempts.append(good.serialize(big))
        for _ in range(30):
            attempts.append([rng.bytes(int(rng.integers(0, 300))) for _ in range(int(rng.integers(1, 9)))])
        for frames in attempts:
            socket.send_multipart(frames)
        socket.send_multipart(valid)  # the replay of a good message is refused too
        # Errors come back for at least some of them, signed with the server's key.
        replies = []
        while socket.poll(1000):
            replies.append(good.recv(socket))
        assert any(
            r.msg_type == M.ERROR
            and r.content["ename"] in ("ProtocolError", "SignatureError", "LimitExceeded")
            for r in replies
        )
    finally:
        socket.close()
    assert server.alive()
    job_id = client.submit("system.sleep", {"seconds": 0.1})
    assert client.wait(job_id, timeout=30).state == M.SUCCEEDED


def test_sigkill_of_worker_fails_job_and_next_job_runs(client: Any) -> None:
    job_id = client.submit("system.sleep", {"seconds": 30})
    worker_pid = wait_running(client, job_id)
    os.kill(worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    view = client.wait(job_id, timeout=10)
    assert time.monotonic() - killed_at < 5.0
    assert view.state == M.FAILED and view.error["ename"] == "WorkerDied"
    assert "SIGKILL" in view.error["evalue"]
    next_id = client.submit("system.sleep", {"seconds": 0.1})
    assert client.wait(next_id, timeout=30).state == M.SUCCEEDED


def _artifact_bytes(server: ServerProcess, record: dict[str, Any]) -> bytes:
    sha = record["sha256"]
    return (server.data_dir / "artifacts" / sha[:2] / sha).read_bytes()


def test_server_sigkill_and_restart_keeps_finished_jobs(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    with server.client() as client:
        done = [client.submit("system.sleep", {"seconds": s}) for s in (0.1, 0.25)]
        done.append(client.submit("system.info", {}))
        before = {}
        for job_id in done:
            view = client.wait(job_id, timeout=60)
            assert view.state == M.SUCCEEDED
            before[job_id] = view
        arrays = {job_id: client.get_artifact(job_id, "ticks").copy() for job_id in done[:2]}
        running = client.submit("system.sleep", {"seconds": 60})
        worker_pid = wait_running(client, running)
    server.kill()
    # The orphaned worker notices its parent died and exits (no job keeps running unowned).
    deadline = time.monotonic() + 5
    while pid_alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(worker_pid)

    restarted = server_factory(data_dir=server.data_dir)
    with restarted.client() as client:
        jobs = {j["job_id"]: j for j in client.list_jobs()}
        assert set(jobs) == {*done, running}
        for job_id in done:
            assert jobs[job_id]["state"] == M.SUCCEEDED
            assert jobs[job_id]["data"] == before[job_id].data
            assert jobs[job_id]["artifacts"] == before[job_id].artifacts
            for record in jobs[job_id]["artifacts"]:
                stored = _artifact_bytes(restarted, record)
                assert hashlib.sha256(stored).hexdigest() == record["sha256"]
                assert len(stored) == record["size"]
        for job_id, array in arrays.items():
            again = client.get_artifact(job_id, "ticks")
            assert again.tobytes() == array.tobytes() and again.dtype == array.dtype
        assert jobs[running]["state"] == M.FAILED
        assert jobs[running]["error"]["ename"] == "ServerRestarted"
        # And the restarted server runs new jobs.
        assert client.wait(client.submit("system.sleep", {"seconds": 0.1}), timeout=30).state == M.SUCCEEDED


def test_second_server_on_same_data_dir_refuses(server: ServerProcess, server_factory: Any) -> None:
    with pytest.raises(RuntimeError, match="another server"):
        server_factory(data_dir=server.data_dir)
    assert server.alive()


def test_reconnect_and_reattach_gets_result(server: ServerProcess) -> None:
    first = server.client()
    job_id = first.submit("system.sleep", {"seconds": 1.0})
    wait_running(first, job_id)
    first.close()  # the client goes away mid-job
    time.sleep(1.2)  # the job finishes while nobody listens
    with server.client() as second:
        view = second.attach(job_id)
        view = second.wait(job_id, timeout=30)
        assert view.state == M.SUCCEEDED and view.data["ticks"] == 10
        assert second.get_artifact(job_id, "ticks").tolist() == list(range(10))


def test_reattach_while_running_gets_events(server: ServerProcess) -> None:
    first = server.client()
    job_id = first.submit("system.sleep", {"seconds": 1.0})
    wait_running(first, job_id)
    first.close()
    with server.client() as second:
        progress: list[float] = []
        view = second.wait(job_id, on_progress=lambda v: progress.append(v.fraction), timeout=30)
        assert view.state == M.SUCCEEDED
        assert progress  # the new client got live progress of a job it did not submit


def test_cancel_running_job_within_one_second(client: Any) -> None:
    job_id = client.submit("system.sleep", {"seconds": 30})
    wait_running(client, job_id)
    started = time.monotonic()
    client.cancel(job_id)
    view = client.wait(job_id, timeout=5)
    assert view.state == M.CANCELLED
    assert time.monotonic() - started < 1.0


def test_cancel_of_job_ignoring_it_kills_worker_within_one_second(client: Any) -> None:
    job_id = client.submit("system.sleep", {"seconds": 30, "ignore_cancel": True})
    worker_pid = wait_running(client, job_id)
    started = time.monotonic()
    client.cancel(job_id)
    view = client.wait(job_id, timeout=5)
    assert view.state == M.CANCELLED and time.monotonic() - started < 1.0
    assert not pid_alive(worker_pid)
    assert client.wait(client.submit("system.sleep", {"seconds": 0.1}), timeout=30).state == M.SUCCEEDED


def test_cancel_queued_job_is_immediate(server_factory: Any) -> None:
    server = server_factory(workers=1)
    with server.client() as client:
        blocker = client.submit("system.sleep", {"seconds": 30})
        wait_running(client, blocker)
        queued = client.submit("system.sleep", {"seconds": 30})
        assert client.cancel(queued) == M.CANCELLED
        assert client.wait(queued, timeout=5).state == M.CANCELLED
        assert client.cancel(queued) == M.CANCELLED  # cancelling a finished job is not an error
        client.cancel(blocker)
        assert client.wait(blocker, timeout=5).state == M.CANCELLED


def test_many_concurrent_clients(fresh_server: ServerProcess) -> None:
    server = fresh_server
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def one_client(index: int) -> None:
        try:
            with server.client(timeout=30) as client:
                seconds = [0.02 * (1 + (index + k) % 3) for k in range(5)]
                ids = [client.submit("system.sleep", {"seconds": s}) for s in seconds]
                results[index] = [client.wait(job_id, timeout=120).state for job_id in ids]
        except BaseException as exc:  # reported below, with the thread's index
            errors.append(exc)

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert len(results) == 20
    assert all(states == [M.SUCCEEDED] * 5 for states in results.values()), results
    with server.client() as client:
        assert len(client.list_jobs(states=[M.SUCCEEDED])) == 100


def test_idempotency_key_gives_one_job(client: Any) -> None:
    params = {"seconds": 0.2}
    first = client.request(M.SUBMIT, M.submit_content("system.sleep", params, "key-1")).content
    second = client.request(M.SUBMIT, M.submit_content("system.sleep", params, "key-1")).content
    assert first["job_id"] == second["job_id"]
    assert first["duplicate"] is False and second["duplicate"] is True
    assert client.wait(first["job_id"], timeout=30).state == M.SUCCEEDED
    third = client.submit("system.sleep", params, idempotency_key="key-1")
    assert third == first["job_id"]
    jobs = [j for j in client.list_jobs() if j["idempotency_key"] == "key-1"]
    assert len(jobs) == 1
    # The same key for different params is a client bug, reported rather than silently merged.
    with pytest.raises(ServerError) as err:
        client.submit("system.sleep", {"seconds": 5}, idempotency_key="key-1")
    assert err.value.remote_ename == M.E_BAD_REQUEST and "key-1" in err.value.evalue


def test_params_refused_at_submit_store_nothing(client: Any, server: Any) -> None:
    # An array param the contract does not know is refused before anything is stored.
    blobs = lambda: sorted(p for p in (server.data_dir / "artifacts").rglob("*") if p.is_file())  # noqa: E731
    before = blobs()
    with pytest.raises(ServerError) as err:
        client.submit("system.sleep", {"seconds": 0, "extra": np.arange(4, dtype=np.int16)})
    assert err.value.evalue.startswith("params.extra: unknown field; known: ")
    assert blobs() == before
    assert not any(j["kind"] == "system.sleep" and "extra" in j["params"] for j in client.list_jobs())


def test_non_loopback_bind_without_curve_refuses(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--bind", "tcp://0.0.0.0:0")
    with pytest.raises(RuntimeError) as err:
        server.start(timeout=30)
    assert server.process is not None and server.process.returncode == 2
    assert "without CURVE" in str(err.value) and "--curve" in str(err.value)
    assert not (tmp_path / "data" / "connection.json").exists()


def test_file_artifacts_whole_and_in_ranges(client: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from backend.jobs.system import sleep_file_content

    size = 5000
    job_id = client.submit("system.sleep", {"seconds": 0, "file_bytes": size})
    view = client.wait(job_id, timeout=30)
    assert view.state == M.SUCCEEDED, view.error
    record = next(a for a in view.artifacts if a["name"] == "files/data.bin")
    expected = sleep_file_content(size)
    assert record["kind"] == "file" and record["size"] == size
    assert record["sha256"] == hashlib.sha256(expected).hexdigest()
    assert client.get_artifact(job_id, "files/data.bin") == expected

    reply = client.request(
        M.GET_ARTIFACT, {"job_id": job_id, "name": "files/data.bin", "offset": 100, "length": 300}
    ).content
    assert reply["offset"] == 100 and bytes(reply["data"]) == expected[100:400]
    reply = client.request(
        M.GET_ARTIFACT, {"job_id": job_id, "name": "files/data.bin", "offset": size}
    ).content
    assert bytes(reply["data"]) == b""
    with pytest.raises(ServerError) as err:
        client.request(M.GET_ARTIFACT, {"job_id": job_id, "name": "files/data.bin", "offset": size + 1})
    assert err.value.remote_ename == M.E_BAD_REQUEST
    # An array artifact can be fetched as ranges of its stored .npy bytes too.
    npy = client.request(M.GET_ARTIFACT, {"job_id": job_id, "name": "ticks", "offset": 0}).content
    assert bytes(npy["data"]).startswith(b"\x93NUMPY") and npy["artifact"]["kind"] == "array"
    with pytest.raises(ServerError) as err:
        client.get_artifact(job_id, "nope")
    assert err.value.remote_ename == M.E_UNKNOWN_ARTIFACT

    # The client switches to ranged fetches above its threshold; the result is the same bytes.
    import protocol.client

    monkeypatch.setattr(protocol.client, "ARTIFACT_RANGE_BYTES", 1000)
    written = client.download(job_id, tmp_path / "dl")
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in written) == [
        "files/data.bin",
        "ticks.npy",
    ]
    assert (tmp_path / "dl" / "files" / "data.bin").read_bytes() == expected


def test_previews_and_heartbeat(server: ServerProcess, client: Any) -> None:
    job_id = client.submit("system.sleep", {"seconds": 0.5, "preview": True})
    previews: list[Any] = []
    client.wait(job_id, on_progress=lambda v: previews.append(v.preview), timeout=30)
    arrays = [p for p in previews if isinstance(p, np.ndarray)]
    assert arrays and arrays[-1].shape == (8, 8, 3) and arrays[-1].dtype == np.uint8
    # The client library treats heartbeat replies as liveness only; check the reply on a raw socket.
    info = read_connection_file(server.connection_file)
    session = Session(info.key_bytes)
    socket = _raw_dealer(info.address)
    try:
        request = session.send(socket, M.HEARTBEAT, {"time": 12.5})
        reply = _recv(session, socket)
        assert reply.msg_type == "heartbeat_reply" and reply.parent_header["msg_id"] == request.msg_id
        assert reply.content["time"] == 12.5 and abs(reply.content["server_time"] - time.time()) < 5
    finally:
        socket.close()


def test_bind_to_a_taken_port_is_a_clear_error(server: ServerProcess, tmp_path: Path) -> None:
    other = ServerProcess(tmp_path / "other", "--bind", server.ready["address"])
    with pytest.raises(RuntimeError, match="cannot bind"):
        other.start()
    assert other.process is not None and other.process.returncode == 2
    assert server.alive()


def test_same_client_keeps_working_across_a_server_restart(server_factory: Any) -> None:
    server = server_factory()
    with server.client() as client:
        first = client.submit("system.sleep", {"seconds": 0.1})
        assert client.wait(first, timeout=30).state == M.SUCCEEDED
        server.kill()
        restarted = server_factory(data_dir=server.data_dir)
        # Same address and key as before: the old connection file and client stay valid.
        assert restarted.ready["address"] == server.ready["address"]
        second = client.submit("system.sleep", {"seconds": 0.1}, timeout=15)
        assert client.wait(second, timeout=30).state == M.SUCCEEDED
        assert {j["job_id"] for j in client.list_jobs()} == {first, second}
