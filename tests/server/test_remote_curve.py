"""Remote mode: CURVE encryption with one key per client, on 127.0.0.1 with ``--curve`` forced on."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import zmq
from server_helpers import ServerProcess

from backend.cli import main as cli_main
from protocol import BackendUnavailable, ConnectionInfo, read_connection_file, write_connection_file
from protocol import messages as M
from protocol.client import Client
from protocol.curve import write_keypair


def _create_key(data_dir: Path, name: str, capsys: Any) -> dict[str, Any]:
    assert cli_main(["keys", "create", name, "--data-dir", str(data_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_listed_key_runs_a_job_others_get_nothing(server_factory: Any, tmp_path: Path, capsys: Any) -> None:
    server: ServerProcess = server_factory("--curve")
    info = read_connection_file(server.connection_file)
    assert info.curve and info.server_public_key == server.ready["server_public_key"]

    alice = _create_key(server.data_dir, "alice", capsys)  # made while the server runs
    alice_file = Path(alice["connection_file"])
    assert stat.S_IMODE(Path(alice["secret_key_file"]).stat().st_mode) == 0o600
    alice_info = read_connection_file(alice_file)
    assert alice_info.curve and alice_info.server_public_key == info.server_public_key
    assert alice_info.address == info.address

    with Client.from_connection_file(alice_file, timeout=10) as client:
        job_id = client.submit("system.sleep", {"seconds": 0.1})
        view = client.wait(job_id, timeout=30)
        assert view.state == M.SUCCEEDED
        assert client.get_artifact(job_id, "ticks").tolist() == [0.0]

    # A client key pair the server does not list: the handshake fails, nothing gets through.
    _public, secret = write_keypair(tmp_path / "mallory", "mallory")
    mallory_file = write_connection_file(
        tmp_path / "mallory.json",
        ConnectionInfo(
            address=info.address,
            key=info.key,
            curve=True,
            server_public_key=info.server_public_key,
            client_key_file=str(secret),
        ),
    )
    with pytest.raises(BackendUnavailable):
        Client.from_connection_file(mallory_file, timeout=1)

    # Alice's key but a wrong server key: nothing gets through either.
    wrong_server = zmq.curve_keypair()[0].decode("ascii")
    wrong_file = write_connection_file(
        tmp_path / "wrong.json",
        ConnectionInfo(
            address=info.address,
            key=info.key,
            curve=True,
            server_public_key=wrong_server,
            client_key_file=alice["secret_key_file"],
        ),
    )
    with pytest.raises(BackendUnavailable):
        Client.from_connection_file(wrong_file, timeout=1)

    # A plain (unencrypted) client gets nothing from a CURVE server.
    plain_file = write_connection_file(
        tmp_path / "plain.json", ConnectionInfo(address=info.address, key=info.key)
    )
    with pytest.raises(BackendUnavailable):
        Client.from_connection_file(plain_file, timeout=1)

    # The server's own connection file works on this machine, through the listed "local" key.
    assert info.client_key_file == str(server.data_dir / "client.key_secret")
    with server.client() as client:
        assert client.wait(client.submit("system.sleep", {"seconds": 0}), timeout=30).state == M.SUCCEEDED

    # Revoked: alice's next connection is refused, without restarting the server.
    assert cli_main(["keys", "revoke", "alice", "--data-dir", str(server.data_dir)]) == 0
    capsys.readouterr()
    with pytest.raises(BackendUnavailable):
        Client.from_connection_file(alice_file, timeout=1)
    assert server.alive()


def test_issued_key_signs_buffers_the_way_the_server_checks_them(
    server_factory: Any, tmp_path: Path, capsys: Any
) -> None:
    # A CURVE server told to hash every buffer byte: a client made by `keys create` must do the
    # same, or its hello is refused with a buffer-integrity mismatch.
    server: ServerProcess = server_factory("--curve", "--buffer-integrity", "digest")
    assert read_connection_file(server.connection_file).effective_buffer_integrity == "digest"
    carol = _create_key(server.data_dir, "carol", capsys)
    assert carol["buffer_integrity"] == "digest"
    assert read_connection_file(Path(carol["connection_file"])).effective_buffer_integrity == "digest"
    with Client.from_connection_file(Path(carol["connection_file"]), timeout=10) as client:
        job_id = client.submit("system.sleep", {"seconds": 0})
        assert client.wait(job_id, timeout=30).state == M.SUCCEEDED

    # An explicit mode wins over the server's (for a server configured differently later).
    assert cli_main(["keys", "create", "dave", "--buffer-integrity", "transport", "--data-dir",
                     str(server.data_dir), "--json"]) == 0
    dave = json.loads(capsys.readouterr().out)
    assert dave["buffer_integrity"] == "transport"
    from protocol import BufferIntegrityMismatch

    with pytest.raises(BufferIntegrityMismatch), Client.from_connection_file(
        Path(dave["connection_file"]), timeout=10
    ) as client:
        client.wait(client.submit("system.sleep", {"seconds": 0}), timeout=30)


def test_keys_list_and_duplicate_names(tmp_path: Path, capsys: Any) -> None:
    data_dir = tmp_path / "data"
    args = ["--data-dir", str(data_dir), "--json"]
    assert cli_main(["keys", "create", "bob", "--address", "tcp://gpu-box:5555", *args]) == 0
    created = json.loads(capsys.readouterr().out)
    assert read_connection_file(created["connection_file"]).address == "tcp://gpu-box:5555"
    assert cli_main(["keys", "list", *args]) == 0
    listed = json.loads(capsys.readouterr().out)["clients"]
    # no "local" before a start; not an admin unless created with --admin
    assert listed == [{"name": "bob", "public_key": created["public_key"], "admin": False}]
    assert cli_main(["keys", "create", "bob", "--address", "tcp://gpu-box:5555", *args]) == 2
    assert "already exists" in capsys.readouterr().out
    assert cli_main(["keys", "create", "../evil", "--address", "tcp://gpu-box:5555", *args]) == 2
    assert cli_main(["keys", "create", "local", "--address", "tcp://gpu-box:5555", *args]) == 2
    assert "this machine's own key" in capsys.readouterr().out
    assert cli_main(["keys", "revoke", "bob", *args]) == 0
    assert cli_main(["keys", "revoke", "bob", *args]) == 2
    capsys.readouterr()
    assert cli_main(["keys", "list", *args]) == 0
    assert json.loads(capsys.readouterr().out)["clients"] == []


def test_curve_server_may_bind_non_loopback_only_with_curve(tmp_path: Path) -> None:
    """Which addresses count as loopback (the refused start itself is in test_server_e2e)."""
    from protocol.integrity import is_loopback_address

    assert is_loopback_address("tcp://127.0.0.1:0") and is_loopback_address("tcp://[::1]:5")
    assert is_loopback_address("tcp://localhost:5") and is_loopback_address("ipc:///tmp/x")
    for address in ("tcp://0.0.0.0:0", "tcp://*:5555", "tcp://192.168.1.4:5", "tcp://eth0:5"):
        assert not is_loopback_address(address)
