"""Secrets are private like ssh's: the server repairs (or refuses) a data dir others may read,
clients refuse key files others may read, and ``keys rotate`` retires every old key. On live servers."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerProcess

from backend.cli import main as cli_main
from backend.server.jobstore import JobStore
from protocol import BackendUnavailable, ConnectionFileError, read_connection_file
from protocol import messages as M
from protocol.client import Client
from protocol.curve import load_keypair


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_0755_data_dir_and_0644_key_are_repaired_on_start(server_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    key = "k" * 64
    (data / "hmac.key").write_text(key)
    (data / "hmac.key").chmod(0o644)
    JobStore(data / "jobs.sqlite3").close()
    (data / "jobs.sqlite3").chmod(0o644)
    for folder in ("work", "artifacts", "curve/clients"):
        (data / folder).mkdir(parents=True)
        (data / folder).chmod(0o755)
    (data / "curve").chmod(0o755)
    (data / "curve" / "clients" / "x.key").write_text("public")
    (data / "curve" / "clients" / "x.key").chmod(0o664)

    server: ServerProcess = server_factory(data_dir=data)
    assert _mode(data) == 0o700
    for name in ("work", "artifacts", "curve", "curve/clients"):
        assert _mode(data / name) == 0o700, name
    for name in ("hmac.key", "jobs.sqlite3", "connection.json", "curve/clients/x.key"):
        assert _mode(data / name) == 0o600, name
    assert "made private" in server.log() and "hmac.key 0644" in server.log()
    # Repaired, not replaced: the key is the same one, and the server works with it.
    assert read_connection_file(server.connection_file).key == key
    with server.client() as client:
        assert client.wait(client.submit("system.sleep", {"seconds": 0}), timeout=30).state == M.SUCCEEDED


@pytest.mark.skipif(os.name == "nt" or os.getuid() != 0, reason="needs root to give a file away")
def test_a_data_dir_entry_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "hmac.key").write_text("k" * 64)
    os.chown(data / "hmac.key", 4242, 4242)
    server = ServerProcess(data)
    with pytest.raises(RuntimeError, match="owned by uid 4242") as caught:
        server.start()
    assert "chown" in str(caught.value)
    assert not (data / "connection.json").exists()


def test_a_client_refuses_a_0644_connection_file_and_secret_key(server_factory: Any, tmp_path: Path) -> None:
    server: ServerProcess = server_factory("--curve")
    copy = tmp_path / "copy.json"
    shutil.copy(server.connection_file, copy)
    copy.chmod(0o644)
    for load in (lambda: read_connection_file(copy), lambda: Client.from_connection_file(copy, timeout=2)):
        with pytest.raises(ConnectionFileError) as caught:
            load()
        assert str(copy) in str(caught.value) and f"chmod 600 {copy}" in str(caught.value)
    copy.chmod(0o600)
    assert read_connection_file(copy).key == read_connection_file(server.connection_file).key

    secret = server.data_dir / "client.key_secret"
    secret.chmod(0o640)
    with pytest.raises(ConnectionFileError, match="chmod 600"):
        load_keypair(secret)
    with pytest.raises(ConnectionFileError, match="CURVE secret key file"):
        Client.from_connection_file(server.connection_file, timeout=2)
    secret.chmod(0o600)
    with server.client() as client:  # once private again, it works
        assert client.list_jobs(limit=1) is not None


def test_keys_rotate_retires_the_old_keys(server_factory: Any, tmp_path: Path, capsys: Any) -> None:
    server: ServerProcess = server_factory("--curve")
    args = ["--data-dir", str(server.data_dir), "--json"]
    assert cli_main(["keys", "create", "alice", *args]) == 0
    alice_file = Path(json.loads(capsys.readouterr().out)["connection_file"])
    old_alice, old_local = tmp_path / "old-alice.json", tmp_path / "old-local.json"
    shutil.copy(alice_file, old_alice)
    shutil.copy(server.connection_file, old_local)
    with Client.from_connection_file(old_alice, timeout=10) as client:
        job = client.submit("system.sleep", {"seconds": 0})

    assert cli_main(["keys", "rotate", *args]) == 0
    rotated = set(json.loads(capsys.readouterr().out)["rotated"])
    assert {str(alice_file), str(server.connection_file), str(server.data_dir / "hmac.key")} <= rotated
    assert read_connection_file(alice_file).key != read_connection_file(old_alice).key
    assert read_connection_file(server.connection_file).key != read_connection_file(old_local).key
    assert _mode(server.data_dir / "hmac.key") == 0o600 and _mode(alice_file) == 0o600

    for old in (old_alice, old_local):  # the running server no longer accepts the old keys
        with pytest.raises(BackendUnavailable):
            Client.from_connection_file(old, timeout=1)
    assert server.log().count("SignatureError") >= 2
    with Client.from_connection_file(alice_file, timeout=10) as client:  # the new ones work
        assert client.wait(job, timeout=30).state == M.SUCCEEDED  # and alice still owns her job
    with server.client() as client:
        assert job in {j["job_id"] for j in client.list_jobs()}
