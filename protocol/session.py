"""Serialize, sign, verify and deserialize messages (docs/protocol.md §1-3).

A :class:`Session` holds the key, this peer's session id, the limits and the replay guard. It does
no I/O of its own beyond :meth:`Session.send`/:meth:`Session.recv`, thin wrappers over
``send_multipart`` (``copy=False`` when there are buffers) and ``recv_multipart(copy=False)``, so
buffers are never copied. Thread-safe: the replay guard has its own lock.
"""

from __future__ import annotations

import json
import json.encoder
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import zmq

from .arrays import extract_buffers, restore_buffers
from .errors import LimitExceeded, MalformedMessage, ProtocolError
from .integrity import DIGEST
from .signing import ReplayGuard, Signer
from .version import PROTOCOL_VERSION, parse_version

DELIMITER = b"<AVS|MSG>"
N_FIXED_FRAMES = 6  # delimiter, signature, header, parent_header, metadata, content
MAX_IDENTITIES = 16
MAX_IDENTITY_BYTES = 255  # ZeroMQ routing ids are at most 255 bytes
MAX_HEADER_STRING = 256
# A server refuses messages dated more than this before its start (replay across restarts, §2):
# room for a client clock slightly behind, small enough that a capture cannot be reused.
REPLAY_START_SKEW_S = 2.0


@dataclass(frozen=True)
class Limits:
    """Upper bounds enforced on every received message (docs/protocol.md §3).

    ``max_frame_bytes`` is the only bound libzmq enforces *while* bytes arrive (``ZMQ_MAXMSGSIZE``:
    a bigger frame drops the connection before it is allocated). libzmq hands over a multipart
    message only once all its parts are in, so the total and the frame count are checked after it
    is buffered; the frame cap is set well below the total so that one oversized payload never
    gets that far (docs/protocol.md §3.1).
    """

    max_message_bytes: int = 1 << 30  # all frames together, checked when the message is delivered
    max_frames: int = 1024  # routing ids + fixed frames + buffers
    max_json_bytes: int = 8 << 20  # per JSON frame
    max_json_depth: int = 64  # nesting of objects/arrays inside one JSON frame
    max_frame_bytes: int = 128 << 20  # any one frame: ZMQ_MAXMSGSIZE, enforced by libzmq on receipt

    @property
    def frame_cap(self) -> int:
        """The per-frame bound actually in force (never above the per-message one)."""
        return min(self.max_frame_bytes, self.max_message_bytes)

    @property
    def max_payload_bytes(self) -> int:
        """The biggest buffer one message may carry next to its JSON frames (ranged downloads)."""
        return min(self.frame_cap, self.max_message_bytes - (1 << 20))

    def configure_socket(self, socket: zmq.Socket[Any]) -> None:
        """Make libzmq drop any single frame above the frame cap before it is allocated."""
        socket.setsockopt(zmq.MAXMSGSIZE, self.frame_cap)


DEFAULT_LIMITS = Limits()


def utcnow_iso() -> str:
    """Now, UTC, ISO 8601 with microseconds and a ``Z``. Built from ``time`` because that is half the
    cost of ``datetime.now(UTC).isoformat()``, and this runs once per message."""
    now = time.time()
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((now - seconds) * 1e6):06d}Z"


def new_id() -> str:
    """128 random bits as 32 hex digits (what uuid4().hex carries, minus its fixed version bits,
    in a fifth of the time: this runs once per message)."""
    return os.urandom(16).hex()


@dataclass
class Message:
    """A decoded (or to-be-sent) message. ``content`` has arrays/bytes restored in place."""

    header: dict[str, Any]
    parent_header: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    buffers: list[memoryview] = field(default_factory=list)
    identities: list[bytes] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])

    @property
    def parent_id(self) -> str | None:
        value = self.parent_header.get("msg_id")
        return value if isinstance(value, str) else None


def _reject_constant(name: str) -> Any:
    raise MalformedMessage(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    """``parse_float`` hook: a literal like ``1e400`` overflows to inf, which no JSON encoder can
    write back (so a stored or echoed value would break every later reply): refuse it here.
    Called only for literals with a fraction or exponent; the C scanner stays in use."""
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan, and nan != 0.0; finite floats give 0.0
        raise MalformedMessage(f"number {text[:40]} is out of range (not a finite double)")
    return value


# Built once: constructing a JSONEncoder/JSONDecoder per call costs more than encoding a small dict.
# ensure_ascii: lone surrogates from a peer's "\ud800" escapes stay encodable when echoed back.
# allow_nan=False on both sides: we never emit NaN/Infinity and never accept them (strict JSON).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON the way the wire does: NaN, Infinity and overflowing numbers raise
    :class:`MalformedMessage` (a :class:`ProtocolError`); other bad JSON raises ``ValueError``."""
    return _DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)


def _not_serializable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# The C encoder that JSONEncoder.encode builds afresh on every call, built once (saves ~2 us per
# frame). No circular-reference markers: a cycle ends in RecursionError, which _dumps reports.
# Falls back to JSONEncoder where the C accelerator is missing.
_C_ENCODER = (
    json.encoder.c_make_encoder(None, _not_serializable, json.encoder.encode_basestring_ascii, None,
                                ":", ",", False, False, False)
    if json.encoder.c_make_encoder is not None else None
)


def _dumps(obj: Any) -> bytes:
    if isinstance(obj, dict) and not obj:  # the usual metadata / parent of a request
        return b"{}"
    try:
        if _C_ENCODER is not None and isinstance(obj, dict):
            return "".join(_C_ENCODER(obj, 0)).encode("ascii")
        return _ENCODER.encode(obj).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"content is not JSON-serializable: {exc}") from exc


def _json_depth_ok(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _loads_object(frame: bytes, what: str, limits: Limits) -> dict[str, Any]:
    if frame == b"{}":  # the usual parent_header/metadata: skip the parser
        return {}
    if len(frame) > limits.max_json_bytes:
        raise LimitExceeded(f"{what} is {len(frame)} bytes, limit {limits.max_json_bytes}")
    try:
        value = _DECODER.decode(frame.decode("utf-8"))
    except MalformedMessage:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise MalformedMessage(f"{what} is not valid UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} must be a JSON object, got {type(value).__name__}")
    # Nesting can't exceed the number of opening brackets (counted at C speed), so the walk is
    # only needed for the rare frame with many of them.
    if frame.count(b"[") + frame.count(b"{") > limits.max_json_depth and not _json_depth_ok(
            value, limits.max_json_depth):
        raise LimitExceeded(f"{what} nests deeper than {limits.max_json_depth}")
    return value


def _may_hold_descriptor(frame: bytes) -> bool:
    """False only when no descriptor key can be in the frame: neither literally nor via escapes."""
    return b"\\" in frame or b"_array__" in frame or b"_bytes__" in frame


def _check_header(header: dict[str, Any]) -> float:
    """Validate the required header fields; return the date as a POSIX timestamp."""
    for name in ("msg_id", "session", "msg_type", "version", "date"):
        value = header.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_HEADER_STRING:
            raise MalformedMessage(f"header field {name!r} must be a non-empty string of at most "
                                   f"{MAX_HEADER_STRING} characters")
    parse_version(header["version"])
    try:
        date = datetime.fromisoformat(header["date"])
    except ValueError:
        raise MalformedMessage(f"header date {header['date'][:40]!r} is not ISO 8601") from None
    if date.tzinfo is None:
        raise MalformedMessage("header date must carry a timezone (UTC)")
    try:
        return date.timestamp()
    except (OverflowError, OSError, ValueError):
        raise MalformedMessage("header date out of range") from None


def split_identities(frames: Sequence[bytes | memoryview | zmq.Frame]) -> tuple[list[bytes], int]:
    """Find the delimiter; return the routing ids before it and its index."""
    for index, frame in enumerate(frames[: MAX_IDENTITIES + 1]):
        data = frame.bytes if isinstance(frame, zmq.Frame) else frame
        if len(data) == len(DELIMITER) and bytes(data) == DELIMITER:
            identities = [bytes(f.bytes if isinstance(f, zmq.Frame) else f) for f in frames[:index]]
            if any(len(i) > MAX_IDENTITY_BYTES for i in identities):
                raise MalformedMessage("routing id longer than 255 bytes")
            return identities, index
    raise MalformedMessage(f"no {DELIMITER!r} delimiter within the first {MAX_IDENTITIES + 1} frames")


def _best_effort_identities(frames: object) -> tuple[bytes, ...]:
    """Routing ids of a message that failed to decode, so a server can still address an error
    reply; empty when they cannot be told apart."""
    try:
        return tuple(split_identities([_as_view(f) for f in frames])[0])  # type: ignore[attr-defined]
    except Exception:
        return ()


def _as_view(frame: bytes | memoryview | zmq.Frame) -> memoryview:
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    if isinstance(frame, bytes | bytearray | memoryview):
        return memoryview(frame)
    raise MalformedMessage(f"frames must be bytes-like, got {type(frame).__name__}")


class Session:
    """Builds, signs, verifies and parses messages for one peer.

    ``key``: the shared HMAC key (bytes, >= 16). ``session_id``: this peer's id put in every header.
    ``replay_window_s``: accepted clock skew / how long seen signatures are remembered.
    ``replay_not_before``: refuse anything dated earlier (a server: its start time, so messages
    captured before a restart are not accepted again; see :class:`ReplayGuard`).
    ``buffer_integrity``: ``digest`` (default: every buffer byte is hashed under the HMAC) or
    ``transport`` (only buffer lengths are; see protocol/integrity.py). A Session does not know
    which link it serves, so whoever builds one for a connection must choose the mode with
    :func:`protocol.integrity.resolve_buffer_integrity` (the Client and the server do).
    """

    def __init__(
        self,
        key: bytes,
        session_id: str | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        replay_window_s: float = 300.0,
        replay_max_entries: int = 100_000,
        replay_not_before: float | None = None,
        protocol_version: str = PROTOCOL_VERSION,
        buffer_integrity: str = DIGEST,
    ) -> None:
        self.signer = Signer(key, buffer_integrity)
        self.session_id = session_id or new_id()
        self.limits = limits
        self.replay_guard = ReplayGuard(replay_window_s, replay_max_entries, replay_not_before)
        self.protocol_version = protocol_version

    @property
    def buffer_integrity(self) -> str:
        return self.signer.buffer_integrity

    # --- building ------------------------------------------------------------------------------
    def header(self, msg_type: str) -> dict[str, Any]:
        return {
            "msg_id": new_id(),
            "session": self.session_id,
            "msg_type": msg_type,
            "version": self.protocol_version,
            "date": utcnow_iso(),
        }

    def msg(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: Message | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """A new message; ``parent`` is the message (or header) this one answers."""
        parent_header = parent.header if isinstance(parent, Message) else dict(parent or {})
        return Message(self.header(msg_type), parent_header, dict(metadata or {}), dict(content or {}))

    def serialize(self, message: Message) -> list[bytes | memoryview]:
        """Frames ready for ``send_multipart(copy=False)``: ids, delimiter, signature, 4 JSON, buffers.

        Arrays/bytes inside ``content`` become buffer frames that reference the original memory:
        don't modify them until the message has been sent (see :meth:`send_tracked`).
        """
        buffers: list[memoryview] = list(message.buffers)
        content = extract_buffers(message.content, buffers)
        parts = [_dumps(message.header), _dumps(message.parent_header), _dumps(message.metadata),
                 _dumps(content)]
        self._check_outgoing(parts, buffers, message.identities)
        signature = self.signer.sign(parts, buffers)
        return [*message.identities, DELIMITER, signature, *parts, *buffers]

    def _check_outgoing(self, parts: list[bytes], buffers: list[memoryview],
                        identities: list[bytes]) -> None:
        """Refuse here what the peer would refuse (it drops the connection on a frame over its
        ``ZMQ_MAXMSGSIZE``, which looks like a dead backend): say so while the caller can act."""
        limits = self.limits
        overhead = len(DELIMITER) + 64 + sum(len(i) for i in identities) + MAX_IDENTITY_BYTES
        json_bytes = len(parts[0]) + len(parts[1]) + len(parts[2]) + len(parts[3])
        if not buffers and json_bytes <= min(limits.frame_cap, limits.max_message_bytes - overhead):
            return  # the usual small message: no frame can be over the cap
        sizes = [len(p) for p in parts] + [b.nbytes for b in buffers]
        if max(sizes) > limits.frame_cap:
            raise LimitExceeded(
                f"a frame of {max(sizes)} bytes exceeds the {limits.frame_cap}-byte frame limit "
                "(docs/protocol.md §3): send big data in pieces or as a server-side file")
        total = sum(sizes) + overhead  # + delimiter, signature, ids and the id a ROUTER prepends
        if total > limits.max_message_bytes:
            raise LimitExceeded(f"message of {total} bytes exceeds the "
                                f"{limits.max_message_bytes}-byte message limit (docs/protocol.md §3)")

    # --- parsing -------------------------------------------------------------------------------
    def deserialize(self, frames: Sequence[bytes | memoryview | zmq.Frame]) -> Message:
        """Verify and parse received frames (with or without routing ids in front).

        Raises :class:`ProtocolError` (or a subclass) for anything wrong, and only that; the
        exception's ``identities`` attribute holds the routing ids when they could be found (a
        ROUTER-side caller can use ``frames[0]`` in any case). Arrays in the content come back as
        read-only views of the received frames (no copy).
        """
        try:
            return self._deserialize(frames)
        except ProtocolError as exc:
            exc.identities = _best_effort_identities(frames)
            raise
        except Exception as exc:  # defence in depth: nothing else may escape to the caller
            error = MalformedMessage(f"undecodable message ({type(exc).__name__}: {str(exc)[:200]})")
            error.identities = _best_effort_identities(frames)
            raise error from exc

    def _deserialize(self, frames: Sequence[bytes | memoryview | zmq.Frame]) -> Message:
        limits = self.limits
        if not isinstance(frames, Sequence):
            raise MalformedMessage("frames must be a sequence")
        if len(frames) > limits.max_frames:
            raise LimitExceeded(f"{len(frames)} frames, limit {limits.max_frames}")
        views = [_as_view(f) for f in frames]
        sizes = [v.nbytes for v in views]
        total = sum(sizes)
        if total > limits.max_message_bytes:
            raise LimitExceeded(f"message is {total} bytes, limit {limits.max_message_bytes}")
        if max(sizes, default=0) > limits.frame_cap:  # libzmq enforces it too, where configured
            raise LimitExceeded(f"a frame of {max(sizes)} bytes, limit {limits.frame_cap}")
        identities, delim = split_identities(views)
        if len(views) - delim < N_FIXED_FRAMES:
            raise MalformedMessage(f"expected at least {N_FIXED_FRAMES} frames from the delimiter on, "
                                   f"got {len(views) - delim}")
        signature = bytes(views[delim + 1])
        parts = [bytes(v) for v in views[delim + 2: delim + 6]]
        buffers = [v.cast("B") if v.format != "B" or v.ndim != 1 else v for v in views[delim + 6:]]
        # Authenticate before parsing anything: unauthenticated bytes never reach the JSON parser.
        self.signer.verify(signature, parts, buffers)
        header = _loads_object(parts[0], "header", limits)
        sent_at = _check_header(header)
        self.replay_guard.check_and_record(signature, sent_at)
        parent_header = _loads_object(parts[1], "parent_header", limits)
        metadata = _loads_object(parts[2], "metadata", limits)
        content = _loads_object(parts[3], "content", limits)
        if buffers or _may_hold_descriptor(parts[3]):
            content = restore_buffers(content, buffers)
        return Message(header, parent_header, metadata, content, buffers, identities)

    # --- socket helpers ------------------------------------------------------------------------
    def send(
        self,
        socket: zmq.Socket[Any],
        message: Message | str,
        content: dict[str, Any] | None = None,
        *,
        parent: Message | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        identities: Sequence[bytes] | None = None,
        flags: int = 0,
    ) -> Message:
        """Sign and send; ``message`` is a :class:`Message` or a msg_type to build one from.

        ``identities``: ROUTER routing ids (e.g. ``request.identities``). Returns the sent message
        (its header is the parent of the replies). Buffers go out without a copy; use
        :meth:`send_tracked` when you must know when their memory may be reused.
        """
        if isinstance(message, str):
            message = self.msg(message, content, parent, metadata)
        if identities is not None:
            message.identities = list(identities)
        frames = self.serialize(message)
        # copy=False only pays off for big frames; a message without buffers goes the cheaper way.
        has_buffers = len(frames) > len(message.identities) + N_FIXED_FRAMES
        socket.send_multipart(frames, flags=flags, copy=not has_buffers)
        return message

    def send_tracked(self, socket: zmq.Socket[Any], message: Message, flags: int = 0) -> zmq.MessageTracker:
        """Send; the tracker's ``done`` turns true once libzmq no longer needs the buffers."""
        tracker = socket.send_multipart(self.serialize(message), flags=flags, copy=False, track=True)
        assert tracker is not None
        return tracker

    def recv(self, socket: zmq.Socket[Any], flags: int = 0) -> Message:
        """Receive one message (zero-copy) and deserialize it. ``flags=zmq.NOBLOCK`` raises
        ``zmq.Again`` when nothing is waiting; everything wrong with the message is ProtocolError."""
        frames = socket.recv_multipart(flags=flags, copy=False)
        return self.deserialize(frames)
