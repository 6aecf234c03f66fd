"""Buffer integrity: what the HMAC guarantees about buffer *bytes* on one connection (docs/protocol.md §2.1).

Two modes, fixed per connection by the server and written into the connection file:

- ``digest``: the signature covers a SHA-256 tree digest of every buffer byte. End-to-end, whatever
  carries the frames; costs one hash of every byte on each side.
- ``transport``: the signature covers each buffer's index, length and (through the signed content
  JSON) its dtype/shape descriptor, but not its bytes. Those are left to the transport, so the mode
  is *allowed* only where the transport really protects them from everyone the HMAC keeps out:
  CurveZMQ (every frame is authenticated with Poly1305 under per-connection keys, so the digest
  would only repeat that check) and loopback/IPC (only the two endpoints' kernel carries the bytes;
  altering them in flight needs root, who can read the connection file's key anyway).

Defaults: ``transport`` with CURVE (the digest would be redundant work) and on ``ipc://`` (the
local server's default endpoint, a Unix socket inside the 0700 data dir: only the data dir's owner
can connect at all, and only the kernel carries the bytes); ``digest`` on TCP loopback, the
fallback where ipc is unavailable (any local user can connect to a TCP port, and nothing else
checks the bytes there, not even TCP checksums, which Linux skips on ``lo``). An explicit setting
overrides the default wherever it is allowed.
Messages without buffers are signed identically in both modes.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from .errors import ConnectionFileError

DIGEST: Final = "digest"
TRANSPORT: Final = "transport"
BUFFER_INTEGRITY_MODES: Final = (DIGEST, TRANSPORT)
# What a peer that does not state a mode uses: protocol 1.0 peers older than this setting hash.
LEGACY_BUFFER_INTEGRITY: Final = DIGEST
# Server-side override of the default (also `avatar-studio serve --buffer-integrity`).
BUFFER_INTEGRITY_ENV: Final = "AVATAR_STUDIO_BUFFER_INTEGRITY"


def is_loopback_address(address: str) -> bool:
    """True for ``tcp://127.x.x.x:P``, ``tcp://[::1]:P``, ``tcp://localhost:P``, ``ipc://`` and
    ``inproc://``: endpoints whose bytes never leave this machine's kernel. The server's bind check
    (a non-loopback bind needs CURVE) uses this same function."""
    try:
        parts = urlsplit(address)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_buffer_integrity(curve: bool, address: str | None = None) -> str:
    """``transport`` under CURVE or on ``ipc://``, ``digest`` otherwise (the module docstring says why)."""
    return TRANSPORT if curve or (address or "").startswith("ipc://") else DIGEST


def check_buffer_integrity_mode(mode: object) -> str:
    """``mode`` if it names a known mode; :class:`ConnectionFileError` otherwise."""
    if mode not in BUFFER_INTEGRITY_MODES:
        expected = ", ".join(BUFFER_INTEGRITY_MODES)
        raise ConnectionFileError(f"unknown buffer_integrity {str(mode)[:32]!r} (expected one of {expected})")
    assert isinstance(mode, str)
    return mode


def resolve_buffer_integrity(requested: object, address: str, curve: bool) -> str:
    """The mode a connection to/at ``address`` uses: ``requested`` (None: the default for the link).

    Raises :class:`ConnectionFileError` for an unknown mode, and for ``transport`` on a link whose
    transport does not protect the bytes (neither CURVE nor loopback/IPC): there, unhashed buffers
    could be altered in flight by anyone on the path, so this is refused rather than accepted.
    """
    if requested is None:
        return default_buffer_integrity(curve, address)
    mode = check_buffer_integrity_mode(requested)
    if mode == TRANSPORT and not curve and not is_loopback_address(address):
        raise ConnectionFileError(
            f"buffer_integrity 'transport' is refused for {address!r}: it leaves buffer bytes unsigned, "
            "which is sound only where the transport authenticates them (CURVE) or never leaves this "
            "machine (loopback, ipc). Use 'digest' or enable CURVE."
        )
    return mode
