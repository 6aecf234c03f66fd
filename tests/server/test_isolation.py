"""Per-client identity under CURVE, on a live server: each client sees only its own jobs (unless
its key is an admin's), a foreign job id is answered like an unknown one, and a message signed
with another client's HMAC key is refused on this client's connection."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import zmq
from server_helpers import ServerProcess

from backend.cli import main as cli_main
from backend.server.jobstore import JobStore
from protocol import ConnectionInfo, ServerError, Session, read_connection_file, write_connection_file
from protocol import messages as M
from protocol.client import Client
from protocol.curve import apply_client_curve, load_keypair


def _create(data_dir: Path, name: str, capsys: Any, *extra: str) -> Path:
    assert cli_main(["keys", "create", name, "--data-dir", str(data_dir), "--json", *extra]) == 0
    return Path(json.loads(capsys.readouterr().out)["connection_file"])


def _refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ServerError) as caught:
        call()
    return caught.value.remote_ename, str(caught.value.evalue)


def test_a_client_sees_only_its_own_jobs_an_admin_sees_all(server_factory: Any, capsys: Any) -> None:
    server: ServerProcess = server_factory("--curve")
    alice_file = _create(server.data_dir, "alice", capsys)
    bob_file = _create(server.data_dir, "bob", capsys)
    root_file = _create(server.data_dir, "root", capsys, "--admin")
    # Each issued client got its own HMAC key, different from the data dir's.
    keys = {read_connection_file(f).key for f in (alice_file, bob_file, root_file, server.connection_file)}
    assert len(keys) == 4

    with Client.from_connection_file(alice_file, timeout=10) as alice:
        done = alice.submit("system.sleep", {"seconds": 0}, idempotency_key="shared-key")
        assert alice.wait(done, timeout=30).state == M.SUCCEEDED
        long = alice.submit("system.sleep", {"seconds": 60})
        assert {j["job_id"] for j in alice.list_jobs()} == {done, long}

        with Client.from_connection_file(bob_file, timeout=10) as bob:
            assert bob.list_jobs() == []
            unknown = "0" * 32
            for job_id in (done, long):
                # Exactly the answer for a job id that does not exist (modulo the id itself).
                for call in (lambda j=job_id: bob.attach(j), lambda j=job_id: bob.cancel(j),
                             lambda j=job_id: bob.get_artifact(j, "ticks")):
                    ename, evalue = _refusal(call)
                    assert ename == M.E_UNKNOWN_JOB
                    assert evalue.replace(job_id, unknown) == f"no job with id {unknown!r}"
            # The same idempotency key is bob's own: a new job, not alice's.
            mine = bob.submit("system.sleep", {"seconds": 0}, idempotency_key="shared-key")
            assert mine not in (done, long)
            assert [j["job_id"] for j in bob.list_jobs()] == [mine]
            assert alice.attach(long).state in (M.QUEUED, M.RUNNING)  # bob's cancel did nothing
            ename, _ = _refusal(lambda: alice.attach(mine))
            assert ename == M.E_UNKNOWN_JOB

        with Client.from_connection_file(root_file, timeout=10) as root:
            seen = {j["job_id"]: j for j in root.list_jobs()}
            assert {done, long, mine} <= set(seen)
            assert seen[done]["owner"] == "alice" and seen[mine]["owner"] == "bob"
            assert root.attach(done).state == M.SUCCEEDED
            assert root.get_artifact(done, "ticks").tolist() == [0.0]
            assert root.attach(long).state in (M.QUEUED, M.RUNNING)
            root.cancel(long)
            assert root.wait(long, timeout=30).state == M.CANCELLED

        # The data dir's own (local) client is the data dir's owner: an admin too.
        with Client.from_connection_file(server.connection_file, timeout=10) as local:
            assert {done, long, mine} <= {j["job_id"] for j in local.list_jobs()}
            assert local.get_artifact(done, "ticks").tolist() == [0.0]

    # The store says who owns what.
    store = JobStore(server.data_dir / "jobs.sqlite3")
    try:
        assert [store.get(j).owner for j in (done, long, mine)] == ["alice", "alice", "bob"]  # type: ignore[union-attr]
    finally:
        store.close()


def _hello(session: Session) -> Any:
    return session.msg(M.HELLO, {"protocol_version": "1.1", "buffer_integrity": "transport"})


def test_another_clients_hmac_key_is_refused_on_this_connection(
    server_factory: Any, capsys: Any, tmp_path: Path
) -> None:
    server: ServerProcess = server_factory("--curve")
    alice = read_connection_file(_create(server.data_dir, "alice", capsys))
    bob = read_connection_file(_create(server.data_dir, "bob", capsys))
    assert bob.client_key_file is not None

    context = zmq.Context()
    try:
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
        socket.rcvtimeo = 10_000
        apply_client_curve(socket, bob.server_public_key or "", *load_keypair(bob.client_key_file))
        socket.connect(bob.address)
        bob_session = Session(bob.key_bytes, buffer_integrity="transport")
        # Signed with alice's key on bob's CURVE connection: refused, and the refusal is signed
        # with bob's key (the server knows who is on this connection).
        Session(alice.key_bytes, buffer_integrity="transport").send(socket, _hello(bob_session))
        refusal = bob_session.recv(socket)
        assert refusal.msg_type == M.ERROR and refusal.content["ename"] == "SignatureError"
        # Bob's own key on the same connection works.
        bob_session.send(socket, _hello(bob_session))
        reply = bob_session.recv(socket)
        assert reply.msg_type == M.reply_type(M.HELLO)
    finally:
        context.destroy(linger=0)

    # A connection file mixing bob's CURVE key and alice's HMAC key gets nowhere either.
    mixed = write_connection_file(tmp_path / "mixed.json", ConnectionInfo(**{
        **{k: getattr(bob, k) for k in ("address", "curve", "server_public_key", "client_key_file")},
        "key": alice.key, "buffer_integrity": "transport"}))
    with pytest.raises(Exception):  # noqa: B017 - BackendUnavailable or a signature error, either refuses
        Client.from_connection_file(mixed, timeout=1)


def test_a_schema_1_store_is_migrated_its_jobs_owned_by_the_data_dir_owner(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE jobs (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL,
        state TEXT NOT NULL, fraction REAL NOT NULL DEFAULT 0, stage TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '', idempotency_key TEXT UNIQUE, created TEXT NOT NULL,
        updated TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT);
        CREATE TABLE artifacts (job_id TEXT NOT NULL REFERENCES jobs(job_id), name TEXT NOT NULL,
        sha256 TEXT NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL, media_type TEXT NOT NULL,
        dtype TEXT, shape TEXT, PRIMARY KEY (job_id, name));
        INSERT INTO jobs (job_id, kind, params, state, idempotency_key, created, updated, seq, result)
        VALUES ('old', 'system.sleep', '{}', 'succeeded', 'k', 't', 't', 1, '{}');
        INSERT INTO artifacts VALUES ('old', 'ticks', 'ab', 8, 'file', 'text/plain', NULL, NULL);
        PRAGMA user_version=1;"""
    )
    db.close()
    store = JobStore(path)
    try:
        old = store.get("old")
        assert old is not None and old.owner == "local" and [a.name for a in old.artifacts] == ["ticks"]
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
        # Keys are per owner now: another client's "k" is a new job, the owner's "k" the old one.
        assert store.create("system.sleep", {}, "k", owner="bob")[1] is False
        assert store.create("system.sleep", {}, "k", owner="local")[0].job_id == "old"
        assert [j.job_id for j in store.list(owner="local")] == ["old"]
    finally:
        store.close()
    assert JobStore(path).get("old") is not None  # opening a migrated store again changes nothing


def test_quick_key_changes_are_all_seen_by_a_registry(tmp_path: Path) -> None:
    """Each change of a client record or the listing is seen at the next message (ChangeWatch also
    re-reads while a stamp is younger than its last read, for file systems with coarse mtimes)."""
    from backend.server.curve_auth import ClientRecord, CurveKeys
    from backend.server.identity import ClientRegistry

    keys = CurveKeys(tmp_path)
    keys.create_client("alice", "tcp://127.0.0.1:9")
    registry = ClientRegistry(tmp_path, curve=True)
    first = registry.resolve("alice")
    assert first is not None and not first.admin
    for admin in (True, False, True):  # rewritten right after each read
        record = keys.client_records()["alice"]
        keys.write_record(ClientRecord(**{**record.to_json(), "hmac_key": "n" * 64, "admin": admin}))
        seen = registry.resolve("alice")
        assert seen is not None and seen.admin is admin and seen.key == b"n" * 64
    keys.revoke_client("alice")
    assert registry.resolve("alice") is None
    assert registry.resolve("mallory") is None and registry.resolve("local").admin  # type: ignore[union-attr]


def test_a_revoked_clients_open_connection_is_cut_off(server_factory: Any, capsys: Any) -> None:
    server: ServerProcess = server_factory("--curve")
    alice = read_connection_file(_create(server.data_dir, "alice", capsys))
    assert alice.client_key_file is not None
    context = zmq.Context()
    try:
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
        socket.rcvtimeo = 10_000
        apply_client_curve(socket, alice.server_public_key or "", *load_keypair(alice.client_key_file))
        socket.connect(alice.address)
        session = Session(alice.key_bytes, buffer_integrity="transport")
        session.send(socket, _hello(session))
        assert session.recv(socket).msg_type == M.reply_type(M.HELLO)
        assert cli_main(["keys", "revoke", "alice", "--data-dir", str(server.data_dir)]) == 0
        session.send(socket, _hello(session))  # same open connection, after the revoke
        socket.rcvtimeo = 2_000
        with pytest.raises(zmq.Again):
            session.recv(socket)
    finally:
        context.destroy(linger=0)
    assert "no longer listed" in server.log()
