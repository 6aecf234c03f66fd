"""CurveZMQ helpers and key files for remote mode (docs/protocol.md §9).

Key files use the ZeroMQ certificate format that pyzmq reads with ``zmq.auth.load_certificate``
(``NAME.key`` holds the public key, ``NAME.key_secret`` both keys), so a server can authorise a
directory of client public keys with ``zmq.auth`` directly. We write them ourselves rather than
with ``zmq.auth.create_certificates`` because that leaves the secret file's mode to the umask;
here the secret file is created 0600 atomically.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from .connection import check_private_file, default_data_dir, write_private_file
from .errors import ConnectionFileError

CLIENT_KEY_ENV = "AVATAR_STUDIO_CLIENT_KEY"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_LEN = 40


def _certificate_text(public_key: bytes, secret_key: bytes | None, role: str) -> str:
    lines = [
        f"#   ****  Generated on {datetime.now(UTC).isoformat(timespec='seconds')} by avatar-studio  ****",
        f"#   ZeroMQ CURVE {'**Secret**' if secret_key else 'Public'} Certificate ({role})",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public_key.decode("ascii")}"',
    ]
    if secret_key:
        lines.append(f'    secret-key = "{secret_key.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def write_keypair(directory: str | os.PathLike[str], name: str, role: str = "client") -> tuple[Path, Path]:
    """Create a CURVE key pair as ``DIR/NAME.key`` (public, 0644) and ``DIR/NAME.key_secret`` (0600).

    Returns ``(public_path, secret_path)``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}")
    public_key, secret_key = zmq.curve_keypair()
    directory = Path(directory)
    secret_path = write_private_file(directory / (name + SECRET_SUFFIX),
                                     _certificate_text(public_key, secret_key, role).encode("ascii"))
    public_path = write_private_file(directory / (name + PUBLIC_SUFFIX),
                                     _certificate_text(public_key, None, role).encode("ascii"))
    public_path.chmod(0o644)  # a public key may be world-readable
    return public_path, secret_path


def load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a secret key file; ConnectionFileError if unusable or
    readable by others (like ssh, see :func:`protocol.connection.check_private_file`)."""
    try:
        check_private_file(path, "CURVE secret key file")
    except FileNotFoundError:
        raise ConnectionFileError(f"no CURVE secret key file at {path}") from None
    public, secret = _load(path)
    if secret is None:
        raise ConnectionFileError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    return _load(path)[0]


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConnectionFileError(f"cannot load CURVE key file {path}: {exc}") from None
    for key in (public, secret):
        if key is not None and len(key) != Z85_KEY_LEN:
            raise ConnectionFileError(f"{path}: a CURVE key must be {Z85_KEY_LEN} Z85 characters")
    return public, secret


def default_client_key_file(hint: str | None = None) -> Path:
    """Where this client's secret key lives: ``hint``, else ``$AVATAR_STUDIO_CLIENT_KEY``,
    else ``<data-dir>/client.key_secret``."""
    if hint:
        return Path(hint).expanduser()
    env = os.environ.get(CLIENT_KEY_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir() / ("client" + SECRET_SUFFIX)


def apply_client_curve(socket: zmq.Socket[Any], server_public_key: str | bytes,
                       client_public_key: bytes, client_secret_key: bytes) -> None:
    """Configure a (not yet connected) client socket for CURVE."""
    if isinstance(server_public_key, str):
        server_public_key = server_public_key.encode("ascii")
    socket.curve_serverkey = server_public_key
    socket.curve_publickey = client_public_key
    socket.curve_secretkey = client_secret_key


def apply_server_curve(socket: zmq.Socket[Any], server_public_key: bytes, server_secret_key: bytes) -> None:
    """Configure a (not yet bound) server socket for CURVE. Which clients may connect is decided
    by a ZAP authenticator, e.g. ``zmq.auth.thread.ThreadAuthenticator.configure_curve(location=DIR)``
    on a directory of ``*.key`` public key files."""
    socket.curve_server = True
    socket.curve_publickey = server_public_key
    socket.curve_secretkey = server_secret_key
