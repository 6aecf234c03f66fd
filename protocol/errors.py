"""The protocol's exceptions.

Every problem with bytes that came off the wire (truncated, garbage, oversized, wrongly typed,
badly signed, replayed, of an incompatible version) raises :class:`ProtocolError` or one of its
subclasses, never ``KeyError``/``ValueError``/``UnicodeError``/``json.JSONDecodeError``. Callers
that only care "was this message acceptable" catch ``ProtocolError`` alone.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """A message (or connection file) that this implementation refuses.

    ``ename`` is the name put in an ``error`` reply so the peer can tell the cases apart.
    """

    ename = "ProtocolError"
    # Routing ids of the offending message when known, so a server can address its error reply.
    identities: tuple[bytes, ...] = ()


class MalformedMessage(ProtocolError):
    """Wrong frame layout, bad JSON, bad header fields, bad array descriptors."""


class LimitExceeded(MalformedMessage):
    """Too many frames, too many bytes, JSON too large or too deeply nested."""

    ename = "LimitExceeded"


class SignatureError(ProtocolError):
    """The HMAC signature is missing or does not match (wrong key or tampered message)."""

    ename = "SignatureError"


class ReplayError(SignatureError):
    """A correctly signed message whose signature was already seen, or dated outside the window."""

    ename = "ReplayError"


class BufferIntegrityMismatch(SignatureError):
    """The peers sign buffers differently (``digest`` vs ``transport``, docs/protocol.md §2.1).

    Raised by the handshake when the two sides state different modes, and by verification when a
    message with buffers carries a valid signature of the *other* mode: it is refused either way
    (a subclass of :class:`SignatureError`, so code that rejects bad signatures rejects it too).
    """

    ename = "BufferIntegrityMismatch"

    def __init__(self, local: str, remote: str, detail: str = "") -> None:
        self.local = local
        self.remote = remote
        text = (f"buffer_integrity mismatch: this side uses {local!r}, the peer uses {remote!r}; "
                "both must use the mode in the server's connection file")
        super().__init__(f"{text}: {detail}" if detail else text)


class VersionMismatch(ProtocolError):
    """The peer speaks an incompatible protocol major version. The message names both versions."""

    ename = "VersionMismatch"

    def __init__(self, local: str, remote: str, detail: str = "") -> None:
        self.local = local
        self.remote = remote
        text = f"protocol version mismatch: this side speaks {local}, the peer speaks {remote}"
        super().__init__(f"{text}: {detail}" if detail else text)


class ConnectionFileError(ProtocolError):
    """A connection file or key file that is missing, unreadable or lacks required fields."""

    ename = "ConnectionFileError"


class ServerError(ProtocolError):
    """The server answered a request with an ``error`` reply (``ename``, ``evalue``, ``details``)."""

    def __init__(self, ename: str, evalue: str, details: Any = None) -> None:
        self.remote_ename = ename
        self.evalue = evalue
        self.details = details
        super().__init__(f"{ename}: {evalue}")


class BackendUnavailable(ProtocolError):
    """No answer from the backend in time (dead, unreachable, or the keys do not match)."""

    ename = "BackendUnavailable"
