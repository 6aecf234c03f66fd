"""The connection file: where the backend listens and the secrets a client needs to talk to it.

JSON with at least ``address``, ``key`` and ``protocol_version``, plus ``transport``, ``ip``,
``port``, ``signature_scheme``, ``curve``, ``buffer_integrity`` (docs/protocol.md §2.1) and, in
remote mode, ``server_public_key`` (Z85). A client's own CURVE secret key is never in this file:
it lives in a separate key file the user holds (see :mod:`protocol.curve`), named by
``client_key_file`` or passed explicitly.

Written atomically with mode 0600 from the moment it exists: a temp file created with
``O_CREAT | O_EXCL`` and mode 0600 in the same directory, fsynced, then renamed over the target,
so there is no window in which the key is world-readable or a reader sees half a file.

Read like ``ssh`` reads its keys: :func:`check_private_file` refuses (on POSIX) a connection file
or secret key file that group or others may read or write, or that belongs to another user,
naming the file and the ``chmod`` that fixes it. A readable key is a leaked key: anyone who could
read it can sign as this client.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConnectionFileError
from .integrity import resolve_buffer_integrity
from .version import PROTOCOL_VERSION

DATA_DIR_ENV = "AVATAR_STUDIO_DATA_DIR"
CONNECTION_FILE_NAME = "connection.json"
SIGNATURE_SCHEME = "hmac-sha256"


def default_data_dir() -> Path:
    """``$AVATAR_STUDIO_DATA_DIR`` if set, else ``~/.local/share/avatar-studio``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "avatar-studio"


def default_connection_file(data_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(data_dir if data_dir is not None else default_data_dir()) / CONNECTION_FILE_NAME


def new_key() -> str:
    """A fresh signing key: 32 random bytes as 64 hex digits (stored and used as its ASCII bytes)."""
    return secrets.token_hex(32)


@dataclass
class ConnectionInfo:
    """What a connection file holds. ``key`` is text; the HMAC key is its UTF-8 bytes."""

    address: str
    key: str
    protocol_version: str = PROTOCOL_VERSION
    signature_scheme: str = SIGNATURE_SCHEME
    curve: bool = False
    server_public_key: str | None = None  # Z85, 40 characters; required when curve is True
    client_key_file: str | None = None  # optional hint: where this client's secret key file lives
    server_pid: int | None = None
    # "digest" | "transport" (protocol/integrity.py); None: the default for this link (e.g. a file
    # written before the setting existed). Written out resolved: see effective_buffer_integrity.
    buffer_integrity: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, kept for round trips

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode("utf-8")

    @property
    def effective_buffer_integrity(self) -> str:
        """The mode this connection uses: the stated one, else the link's default. Raises
        :class:`ConnectionFileError` for an unknown mode or ``transport`` where it is not allowed."""
        return resolve_buffer_integrity(self.buffer_integrity, self.address, self.curve)

    @property
    def transport(self) -> str:
        return urlsplit(self.address).scheme

    @property
    def ip(self) -> str | None:
        return urlsplit(self.address).hostname

    @property
    def port(self) -> int | None:
        try:
            return urlsplit(self.address).port
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "extra"}
        data.update(transport=self.transport, ip=self.ip, port=self.port,
                    buffer_integrity=self.effective_buffer_integrity)  # always explicit once written
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: object) -> ConnectionInfo:
        if not isinstance(data, Mapping):
            raise ConnectionFileError("a connection file must hold a JSON object")
        for name in ("address", "key", "protocol_version"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ConnectionFileError(f"connection file lacks a string {name!r}")
        scheme = data.get("signature_scheme", SIGNATURE_SCHEME)
        if scheme != SIGNATURE_SCHEME:
            raise ConnectionFileError(f"unsupported signature_scheme {scheme!r}")
        if len(data["key"].encode("utf-8")) < 16:
            raise ConnectionFileError("the connection file's key is too short (< 16 bytes)")
        curve = data.get("curve", False)
        server_key = data.get("server_public_key")
        if not isinstance(curve, bool):
            raise ConnectionFileError("'curve' must be true or false")
        if curve and (not isinstance(server_key, str) or len(server_key) != 40):
            raise ConnectionFileError("curve is on but 'server_public_key' is not a 40-character Z85 key")
        client_key_file = data.get("client_key_file")
        pid = data.get("server_pid")
        integrity = data.get("buffer_integrity")
        # Validated now, so a connection file asking for unsigned buffers on a link that does not
        # protect them is refused when read, before any socket exists.
        resolve_buffer_integrity(integrity, data["address"], curve)
        known = {"address", "key", "protocol_version", "signature_scheme", "curve", "server_public_key",
                 "client_key_file", "server_pid", "transport", "ip", "port", "buffer_integrity"}
        return cls(
            address=data["address"],
            key=data["key"],
            protocol_version=data["protocol_version"],
            signature_scheme=scheme,
            curve=curve,
            server_public_key=server_key if isinstance(server_key, str) else None,
            client_key_file=client_key_file if isinstance(client_key_file, str) else None,
            server_pid=pid if type(pid) is int else None,
            buffer_integrity=integrity,
            extra={k: v for k, v in data.items() if k not in known},
        )


def write_private_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, readable by the owner only (0600 from creation)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with O_EXCL and mode 0600 regardless of umask.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return target


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> Path:
    """Atomically write ``info`` as JSON with mode 0600; returns the path."""
    return write_private_file(path, (json.dumps(info.to_json(), indent=2) + "\n").encode("utf-8"))


def check_private_file(path: str | os.PathLike[str], what: str = "key file") -> None:
    """Raise :class:`ConnectionFileError` unless ``path`` is private to its owner: no permission
    bits for group or others, and owned by this user (or root). No-op on Windows (no POSIX modes).
    FileNotFoundError passes through."""
    if os.name == "nt":
        return
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConnectionFileError(
            f"{what} {path} has mode {mode:04o}: group or others may read or change it, so its "
            f"key may be known to others. Refusing to use it; run `chmod 600 {path}` (and get a new "
            f"key, `avatar-studio keys rotate`, if others may have read it)"
        )
    if st.st_uid not in (os.getuid(), 0):
        raise ConnectionFileError(
            f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): refusing to "
            f"use a key another user controls; copy it to a file of your own with mode 0600"
        )


def read_connection_file(path: str | os.PathLike[str] | None = None) -> ConnectionInfo:
    """Load and validate a connection file (default: the default data dir's); refuses one that
    others may read or write (:func:`check_private_file`)."""
    file = Path(path) if path is not None else default_connection_file()
    try:
        check_private_file(file, "connection file")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectionFileError(f"no connection file at {file} (is the backend running?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionFileError(f"cannot read connection file {file}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConnectionFileError(f"connection file {file} is not JSON: {exc}") from None
    return ConnectionInfo.from_json(data)
