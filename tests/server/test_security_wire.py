"""Wire-level hardening against a live server over real sockets (issue 9, docs/protocol.md §2-3).

Hostile messages are hand-crafted and signed here with the server's key, because the reference
client refuses to encode them: non-finite numbers in any JSON frame, a heartbeat whose ``time``
overflows, forged stored-array descriptors, a message replayed after a restart, and (without the
key) a message of 8 x 300 MiB frames. After each, the server must still answer other requests.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.utils.monitor
from server_helpers import REPO, ServerProcess

from backend.server.artifacts import ArtifactStore
from backend.server.jobstore import JobStore
from backend.server.params import STORED_ARRAY, STORED_BYTES, ParamsError, check_sha256, internalize
from protocol import DELIMITER, Session, read_connection_file
from protocol import messages as M
from protocol.session import REPLAY_START_SKEW_S

ANSWER_TIMEOUT_MS = 10_000
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400 + ".5", "1" * 5000]
JSON_FRAMES = ["header", "parent_header", "metadata", "content"]


def _connect(server: ServerProcess) -> tuple[zmq.Socket[Any], Session]:
    """A raw DEALER (its own routing id, so its own error-reply budget) and a Session with the key."""
    info = read_connection_file(server.connection_file)
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(info.address)
    return socket, Session(info.key_bytes)


def _signed_frames(session: Session, msg_type: str, content_json: str, *, header_extra: str = "",
                   parent_json: str = "{}", metadata_json: str = "{}",
                   date: datetime | None = None) -> list[bytes]:
    """Frames of a message whose JSON text is written by hand (so it may hold any literal)."""
    header = session.header(msg_type)
    if date is not None:
        header["date"] = date.isoformat().replace("+00:00", "Z")
    header_json = json.dumps(header, separators=(",", ":"))
    if header_extra:
        header_json = header_json[:-1] + "," + header_extra + "}"
    parts = [p.encode() for p in (header_json, parent_json, metadata_json, content_json)]
    signature = session.signer.sign(parts, [])
    return [DELIMITER, signature, *parts]


def _answer(socket: zmq.Socket[Any], session: Session) -> Any:
    assert socket.poll(ANSWER_TIMEOUT_MS), "no answer from the server"
    return session.deserialize(socket.recv_multipart())


def _with_bad_number(frame: str, literal: str) -> dict[str, Any]:
    """Keyword arguments of :func:`_signed_frames` putting ``literal`` into ``frame``."""
    if frame == "header":
        return {"header_extra": f'"extra":{literal}'}
    if frame == "parent_header":
        return {"parent_json": f'{{"x":[{literal}]}}'}
    if frame == "metadata":
        return {"metadata_json": f'{{"x":{{"y":{literal}}}}}'}
    return {}


@pytest.mark.parametrize("literal", BAD_NUMBERS)
@pytest.mark.parametrize("frame", JSON_FRAMES)
def test_non_finite_numbers_in_any_frame_are_refused_and_listing_survives(
        server: ServerProcess, frame: str, literal: str) -> None:
    socket, session = _connect(server)

    def list_jobs() -> list[dict[str, Any]]:
        socket.send_multipart(session.serialize(session.msg(M.LIST_JOBS, {"limit": 100_000})))
        listing = _answer(socket, session)
        assert listing.msg_type == M.reply_type(M.LIST_JOBS), listing.content
        return list(listing.content["jobs"])

    try:
        before = list_jobs()
        content = (f'{{"kind":"system.sleep","params":{{"seconds":{literal}}}}}' if frame == "content"
                   else '{"kind":"system.sleep","params":{"seconds":0}}')
        socket.send_multipart(_signed_frames(session, M.SUBMIT, content, **_with_bad_number(frame, literal)))
        reply = _answer(socket, session)
        assert reply.msg_type == M.ERROR
        assert reply.content["ename"] == "ProtocolError", reply.content
        assert any(text in reply.content["evalue"] for text in
                   ("is not valid JSON", "is out of range", "Exceeds the limit")), reply.content
        # Nothing was stored, and listing (which a stored Infinity used to break) still works.
        assert list_jobs() == before
    finally:
        socket.close(linger=0)


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "1" * 5000])
def test_heartbeat_with_an_out_of_range_time_gets_a_protocol_error(server: ServerProcess,
                                                                  literal: str) -> None:
    socket, session = _connect(server)
    try:
        socket.send_multipart(_signed_frames(session, M.HEARTBEAT, f'{{"time":{literal}}}'))
        reply = _answer(socket, session)
        assert (reply.msg_type, reply.content["ename"]) == (M.ERROR, "ProtocolError"), reply.content
        # The largest finite double is fine, and echoed back as it came.
        socket.send_multipart(_signed_frames(session, M.HEARTBEAT, '{"time":1.7976931348623157e308}'))
        reply = _answer(socket, session)
        assert reply.msg_type == M.reply_type(M.HEARTBEAT)
        assert reply.content["time"] == 1.7976931348623157e308
    finally:
        socket.close(linger=0)


def test_a_stored_row_holding_infinity_is_reported_not_fatal(fresh_server: ServerProcess) -> None:
    """An old store may hold ``Infinity`` (written before the wire refused it): list_jobs, attach and
    the CLI's ``jobs`` report that row as damaged and keep listing the others."""
    with fresh_server.client() as client:
        good = client.submit("system.sleep", {"seconds": 0})
        bad = client.submit("system.sleep", {"seconds": 0})
        client.wait(good, timeout=30)
        client.wait(bad, timeout=30)
    db = sqlite3.connect(fresh_server.data_dir / "jobs.sqlite3")  # what an older server wrote
    with db:
        db.execute("UPDATE jobs SET params = ?, result = ? WHERE job_id = ?",
                   ('{"seconds":Infinity}', '{"slept":NaN}', bad))
    db.close()

    with fresh_server.client() as client:
        jobs = {job["job_id"]: job for job in client.list_jobs()}
        assert set(jobs) == {good, bad}
        assert "damaged" not in jobs[good] and jobs[good]["params"] == {"seconds": 0}
        assert jobs[bad]["params"] == {} and jobs[bad]["state"] == M.SUCCEEDED
        assert "params" in jobs[bad]["damaged"] and "result" in jobs[bad]["damaged"]
        view = client.attach(bad)
        assert view.state == M.SUCCEEDED
    result = subprocess.run([sys.executable, "-m", "backend", "jobs", "--json", "--connection",
                             str(fresh_server.connection_file)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert {job["job_id"] for job in json.loads(result.stdout)["jobs"]} == {good, bad}
    assert f"job {bad}: stored record unreadable" in fresh_server.log()  # the log names the row


@pytest.mark.parametrize("descriptor", [
    {"__stored_array__": {"sha256": "0" * 64, "dtype": "<f4", "shape": [1]}},
    {"__stored_bytes__": {"sha256": "0" * 64 + "\n", "size": 1}},
])
def test_a_client_cannot_forge_a_stored_descriptor(server: ServerProcess, descriptor: dict[str, Any]) -> None:
    """Stored descriptors are the server's own: params naming one (any stored blob, by hash) are
    refused before anything is stored or run."""
    with server.client() as client:
        before = len(client.list_jobs())
        with pytest.raises(Exception) as raised:
            client.submit("system.sleep", {"seconds": 0, "nested": [descriptor]})
        assert getattr(raised.value, "remote_ename", None) == M.E_BAD_REQUEST
        assert "reserved" in str(raised.value)
        assert len(client.list_jobs()) == before


def test_a_message_captured_before_a_restart_is_refused_after_it(server_factory: Any, tmp_path: Path) -> None:
    """The replay memory is not kept across restarts; instead a server refuses anything dated before
    its start (minus a 2 s skew allowance), so a capture from its previous life is useless."""
    server = server_factory(data_dir=tmp_path / "replay")
    socket, session = _connect(server)
    # Dated inside the allowance before "now", so after this server's start minus the allowance:
    # accepted now, and older than the next start minus the allowance once the clock passed date + 2 s.
    date = datetime.now(UTC) - timedelta(seconds=REPLAY_START_SKEW_S * 0.75)
    captured = _signed_frames(session, M.LIST_JOBS, "{}", date=date)
    socket.send_multipart(captured)
    assert _answer(socket, session).msg_type == M.reply_type(M.LIST_JOBS)  # fresh enough: accepted
    socket.send_multipart(captured)
    assert _answer(socket, session).content["ename"] == "ReplayError"  # same life: remembered
    socket.close(linger=0)

    server.stop()
    while datetime.now(UTC) <= date + timedelta(seconds=REPLAY_START_SKEW_S):  # the precondition, not a race
        time.sleep(0.05)
    server.start()
    socket, session = _connect(server)
    try:
        socket.send_multipart(captured)
        reply = _answer(socket, session)
        assert (reply.msg_type, reply.content["ename"]) == (M.ERROR, "ReplayError")
        assert "before this receiver started" in reply.content["evalue"]
        socket.send_multipart(_signed_frames(session, M.LIST_JOBS, "{}"))  # a new message is fine
        assert _answer(socket, session).msg_type == M.reply_type(M.LIST_JOBS)
    finally:
        socket.close(linger=0)


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_eight_300_mib_frames_without_the_key_are_dropped_with_bounded_memory(
        fresh_server: ServerProcess) -> None:
    """libzmq only hands over a multipart message once every part is in, so no check in Python can
    stop it from buffering; the per-frame cap (ZMQ_MAXMSGSIZE, 128 MiB) makes libzmq drop the
    connection at the first 300 MiB frame header, before allocating it (docs/protocol.md §3.1)."""
    info = read_connection_file(fresh_server.connection_file)
    payload = memoryview(bytearray(300 << 20))  # one buffer, sent 8 times without a copy
    context = zmq.Context()
    attacker = context.socket(zmq.DEALER)
    attacker.linger = 0
    monitor = attacker.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:
        attacker.connect(info.address)
        frames = [DELIMITER, b"0" * 64, b"{}", b"{}", b"{}", b"{}", *[payload] * 8]  # no key: bogus signature
        attacker.send_multipart(frames, copy=False)
        events: list[int] = []
        deadline = time.monotonic() + 60
        while zmq.EVENT_DISCONNECTED not in events and time.monotonic() < deadline:
            if monitor.poll(1000):
                events.append(zmq.utils.monitor.recv_monitor_message(monitor)["event"])
        assert zmq.EVENT_DISCONNECTED in events, "the server never dropped the oversized sender"
    finally:
        attacker.disable_monitor()
        monitor.close(linger=0)
        attacker.close(linger=0)
        context.term()
    del payload
    peak = _peak_rss_bytes(fresh_server.pid)
    assert peak < 1_500_000_000, f"server peak RSS {peak / 1e9:.2f} GB"
    with fresh_server.client() as client:  # and it serves the next client as before
        job = client.submit("system.sleep", {"seconds": 0})
        assert client.wait(job, timeout=30).state == M.SUCCEEDED
    assert fresh_server.alive()
    assert _peak_rss_bytes(fresh_server.pid) < 1_500_000_000



def test_the_job_store_never_writes_a_value_no_reply_could_carry(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    try:
        with pytest.raises(ValueError):
            store.create("system.sleep", {"seconds": float("inf")})
        assert store.list() == []
        job, _ = store.create("system.sleep", {"seconds": 0})
        store.transition(job.job_id, M.RUNNING)
        with pytest.raises(ValueError):
            store.transition(job.job_id, M.SUCCEEDED, result={"x": float("nan")})
        assert store.get(job.job_id).state == M.RUNNING  # the failed write changed nothing
    finally:
        store.close()


@pytest.mark.parametrize("sha", ["a" * 64 + "\n", "A" * 64, "a" * 63, "a" * 65, None, ["a" * 64]])
def test_stored_descriptor_hashes_need_a_full_match(tmp_path: Path, sha: Any) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    good, _ = store.put_bytes(memoryview(b"payload"))
    assert check_sha256(good) == good
    assert bytes(internalize({"x": {STORED_BYTES: {"sha256": good, "size": 7}}}, store)["x"]) == b"payload"
    with pytest.raises(ParamsError):
        check_sha256(sha)
    with pytest.raises(ParamsError):
        internalize({"x": {STORED_ARRAY: {"sha256": sha, "dtype": "<f4", "shape": [1]}}}, store)
    if isinstance(sha, str):
        with pytest.raises(ValueError):  # the store's own check (a second line) agrees
            store.path(sha)
