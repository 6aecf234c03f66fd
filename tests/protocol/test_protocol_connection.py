"""Connection files and CURVE key files: contents, permissions, atomicity, validation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from protocol import (
    PROTOCOL_VERSION,
    ConnectionFileError,
    ConnectionInfo,
    default_connection_file,
    default_data_dir,
    new_key,
    read_connection_file,
    write_connection_file,
)
from protocol.curve import default_client_key_file, load_keypair, load_public_key, write_keypair


def test_round_trip_mode_0600_and_required_fields(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the most permissive umask: the file must still be 0600
    try:
        info = ConnectionInfo(address="tcp://127.0.0.1:5599", key=new_key(), server_pid=42,
                              extra={"future_field": [1]})
        path = write_connection_file(tmp_path / "sub" / "connection.json", info)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["address"] == "tcp://127.0.0.1:5599" and len(data["key"]) == 64
    assert data["protocol_version"] == PROTOCOL_VERSION and data["transport"] == "tcp"
    assert data["ip"] == "127.0.0.1" and data["port"] == 5599 and data["curve"] is False
    back = read_connection_file(path)
    assert back.key == info.key and back.server_pid == 42 and back.extra == {"future_field": [1]}
    assert [p.name for p in path.parent.iterdir()] == ["connection.json"]  # no temp file left behind


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "connection.json"
    write_connection_file(path, ConnectionInfo(address="tcp://127.0.0.1:1", key="a" * 32))
    inode_before = path.stat().st_ino
    write_connection_file(path, ConnectionInfo(address="tcp://127.0.0.1:2", key="b" * 32))
    assert read_connection_file(path).address == "tcp://127.0.0.1:2"
    assert path.stat().st_ino != inode_before  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [
    "not json", "[]", "{}", '{"address": "tcp://x:1", "key": "k"}',
    '{"address": "tcp://x:1", "key": "short", "protocol_version": "1.0"}',
    '{"address": "tcp://x:1", "key": "0123456789abcdef", "protocol_version": "1.0", "curve": true}',
    '{"address": "tcp://x:1", "key": "0123456789abcdef", "protocol_version": "1.0",'
    ' "signature_scheme": "md5"}',
    '{"address": 5, "key": "0123456789abcdef", "protocol_version": "1.0"}',
])
def test_bad_connection_files_raise_connection_file_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    path.chmod(0o600)  # refused for its content, not for its mode
    with pytest.raises(ConnectionFileError):
        read_connection_file(path)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="no connection file"):
        read_connection_file(tmp_path / "absent.json")


def test_default_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AVATAR_STUDIO_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert default_connection_file() == tmp_path / "connection.json"
    monkeypatch.delenv("AVATAR_STUDIO_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "avatar-studio"
    monkeypatch.setenv("AVATAR_STUDIO_CLIENT_KEY", str(tmp_path / "mine.key_secret"))
    assert default_client_key_file() == tmp_path / "mine.key_secret"
    assert default_client_key_file(str(tmp_path / "hint")) == tmp_path / "hint"


def test_curve_key_files_are_zmq_certificates_and_secret_is_private(tmp_path: Path) -> None:
    public_path, secret_path = write_keypair(tmp_path, "alice")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    public, secret = load_keypair(secret_path)
    assert load_public_key(public_path) == public
    assert zmq.curve_public(secret) == public  # the pair really belongs together
    assert zmq.auth.load_certificates(tmp_path) == {public: True}  # a server can list client keys
    with pytest.raises(ConnectionFileError):
        load_keypair(public_path)  # no secret in the public file
    with pytest.raises(ConnectionFileError):
        load_keypair(tmp_path / "missing.key_secret")
