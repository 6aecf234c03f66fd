"""Strict JSON, the per-frame cap, replay across restarts and full-string matches (docs/protocol.md §2-3).

The libzmq tests speak ZMTP 3.0 (NULL mechanism) over a raw TCP socket, because the property the
per-frame cap rests on is libzmq's, not ours: a multipart message reaches the application only
once all its parts are in (so no application check can bound what is buffered before), and a frame
over ``ZMQ_MAXMSGSIZE`` drops the connection as soon as its size is read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from protocol import DELIMITER, LimitExceeded, Limits, MalformedMessage, ProtocolError, ReplayError, Session
from protocol.arrays import dtype_from_wire
from protocol.session import DEFAULT_LIMITS, loads_strict
from protocol.signing import ReplayGuard
from protocol.version import check_compatible, parse_version

KEY = b"k" * 32
# The last three overflow without a big exponent; "1" * 5000 exceeds Python's int digit limit.
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+309", "1" + "0" * 400 + ".0",
               "9" * 400 + "e10", "-" + "9" * 310 + ".5", "1" * 5000]


def _frames(session: Session, texts: list[str]) -> list[bytes]:
    parts = [t.encode() for t in texts]
    return [DELIMITER, session.signer.sign(parts, []), *parts]


@pytest.mark.parametrize("literal", BAD_NUMBERS)
@pytest.mark.parametrize("frame", range(4))
def test_non_finite_and_overflowing_numbers_are_refused_in_every_json_frame(frame: int, literal: str) -> None:
    sender, receiver = Session(KEY), Session(KEY)
    texts = [json.dumps(sender.header("x")), "{}", "{}", "{}"]
    texts[frame] = texts[frame][:-1] + ("," if texts[frame] != "{}" else "") + f'"v":[{literal}]}}'
    with pytest.raises(MalformedMessage) as raised:
        receiver.deserialize(_frames(sender, texts))
    assert isinstance(raised.value, ProtocolError)
    assert "JSON" in str(raised.value) or "out of range" in str(raised.value)


def test_finite_extremes_still_parse_and_tiny_numbers_underflow_harmlessly() -> None:
    sender, receiver = Session(KEY), Session(KEY)
    extremes = '{"max":1.7976931348623157e308,"min":-1.7976931348623157e308,"tiny":1e-400,"int":'
    texts = [json.dumps(sender.header("x")), "{}", "{}", extremes + "9" * 400 + "}"]
    content = receiver.deserialize(_frames(sender, texts)).content
    assert content["max"] == 1.7976931348623157e308 and content["min"] == -1.7976931348623157e308
    assert content["tiny"] == 0.0 and content["int"] == int("9" * 400)


def test_loads_strict_and_encoding_refuse_non_finite_values() -> None:
    for text in ('{"a":NaN}', '{"a":1e400}', "[-Infinity]"):
        with pytest.raises(ProtocolError):
            loads_strict(text)
    assert loads_strict(b'{"a":1.5}') == {"a": 1.5}
    sender = Session(KEY)
    for value in (float("nan"), float("inf"), -float("inf"), np.float64("inf")):
        with pytest.raises(ProtocolError):
            sender.serialize(sender.msg("x", {"v": [value]}))


def test_frame_cap_is_set_on_sockets_and_checked_on_both_sides() -> None:
    limits = Limits(max_message_bytes=1 << 20, max_frame_bytes=1000)
    assert limits.frame_cap == 1000 and Limits(max_message_bytes=500).frame_cap == 500
    assert DEFAULT_LIMITS.frame_cap == 128 << 20 < DEFAULT_LIMITS.max_message_bytes
    assert DEFAULT_LIMITS.max_payload_bytes == 128 << 20
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    try:
        limits.configure_socket(sock)
        assert sock.getsockopt(zmq.MAXMSGSIZE) == 1000
    finally:
        sock.close(linger=0)
    capped = Session(KEY, limits=limits)
    with pytest.raises(LimitExceeded, match="frame limit"):  # refused before sending: a clear error
        capped.serialize(capped.msg("x", {"a": np.zeros(1001, np.uint8)}))
    assert capped.serialize(capped.msg("x", {"a": np.zeros(1000, np.uint8)}))
    two = Session(KEY, limits=Limits(max_message_bytes=100_000, max_frame_bytes=60_000))
    assert two.serialize(two.msg("x", {"a": [np.zeros(49_000, np.uint8)] * 2}))
    with pytest.raises(LimitExceeded, match="message limit"):
        two.serialize(two.msg("x", {"a": [np.zeros(50_000, np.uint8)] * 2}))
    roomy = Session(KEY)
    with pytest.raises(LimitExceeded, match="a frame of 1001 bytes"):  # and refused on receipt
        capped.deserialize(roomy.serialize(roomy.msg("x", {"a": np.zeros(1001, np.uint8)})))


def test_replay_guard_refuses_messages_dated_before_it_started() -> None:
    now = time.time()
    guard = ReplayGuard(300.0, not_before=now - 2.0)
    guard.check_and_record(b"a" * 64, now - 1.0, now=now)  # inside the skew allowance
    with pytest.raises(ReplayError, match="before this receiver started"):
        guard.check_and_record(b"b" * 64, now - 2.5, now=now)  # inside the window, before the start
    sender = Session(KEY)
    message = sender.msg("x")
    frames = sender.serialize(message)
    assert Session(KEY).deserialize(frames).msg_type == "x"
    later = Session(KEY, replay_not_before=time.time() + 1.0)  # "restarted" after it was signed
    with pytest.raises(ReplayError):
        later.deserialize(frames)


@pytest.mark.parametrize("text", ["<f4\n", "|u1\n", "<f4 "])
def test_dtype_needs_a_full_match(text: str) -> None:
    assert dtype_from_wire(text.strip()) == np.dtype(text.strip())
    with pytest.raises(MalformedMessage):
        dtype_from_wire(text)


def test_version_needs_a_full_match() -> None:
    assert parse_version("1.0") == (1, 0)
    with pytest.raises(MalformedMessage):
        parse_version("1.0\n")
    with pytest.raises(ProtocolError):
        check_compatible("1.1\n")


# --- libzmq's own behaviour, over a raw ZMTP 3.0 NULL connection ----------------------------------

def _zmtp_connect(port: int) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" * 32)
    _recv_exactly(raw, 64)  # the server's greeting
    body = b"\x05READY" + bytes([11]) + b"Socket-Type" + struct.pack(">I", 6) + b"DEALER"
    raw.sendall(bytes([0x04, len(body)]) + body)
    flags, size = _recv_exactly(raw, 2)  # the server's READY (a short command)
    assert flags == 0x04
    _recv_exactly(raw, size)
    return raw


def _recv_exactly(raw: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = raw.recv(count - len(data))
        assert chunk, "connection closed during the handshake"
        data += chunk
    return data


def _zmtp_frame(payload: bytes, more: bool) -> bytes:
    return bytes([(0x01 if more else 0) | 0x02]) + struct.pack(">Q", len(payload)) + payload


@pytest.fixture
def capped_router() -> Iterator[tuple[zmq.Socket[Any], int]]:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    Limits(max_frame_bytes=1 << 20).configure_socket(router)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    yield router, port
    router.close(linger=0)
    context.term()


def test_libzmq_delivers_a_multipart_message_only_once_complete(capped_router: Any) -> None:
    router, port = capped_router
    raw = _zmtp_connect(port)
    try:
        raw.sendall(_zmtp_frame(b"a" * 1000, more=True))
        # The part is in the server's memory, but the application cannot see (nor refuse) it yet.
        assert router.poll(300) == 0
        raw.sendall(_zmtp_frame(b"b" * 1000, more=False))
        assert router.poll(10_000)
        frames = router.recv_multipart()
        assert [len(f) for f in frames[1:]] == [1000, 1000]  # after the routing id
    finally:
        raw.close()


def test_libzmq_drops_the_connection_at_a_frame_header_over_the_cap(capped_router: Any) -> None:
    router, port = capped_router
    raw = _zmtp_connect(port)
    try:
        raw.sendall(bytes([0x01 | 0x02]) + struct.pack(">Q", 300 << 20))  # announces 300 MiB, sends none
        raw.settimeout(10)
        with contextlib.suppress(ConnectionResetError):  # either way: closed by the server
            assert raw.recv(1) == b""  # before any payload byte arrived
        assert router.poll(100) == 0
    finally:
        raw.close()
