"""The codec over real DEALER->ROUTER sockets: arrays, signing, replay, limits, versions."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np
import pytest
import zmq

from protocol import (
    DELIMITER,
    PROTOCOL_VERSION,
    LimitExceeded,
    Limits,
    MalformedMessage,
    ProtocolError,
    ReplayError,
    Session,
    SignatureError,
    VersionMismatch,
    check_compatible,
    messages,
)
from protocol.signing import CHUNK_BYTES, ReplayGuard, Signer, buffer_digests

KEY = b"k" * 32


def recv_frames(sock: zmq.Socket[Any], timeout_ms: int = 5000) -> list[zmq.Frame]:
    assert sock.poll(timeout_ms), "nothing arrived"
    return sock.recv_multipart(copy=False)


def test_64mib_float32_round_trip_is_bit_exact_and_zero_copy(router_dealer) -> None:
    router, dealer = router_dealer
    client, server = Session(KEY), Session(KEY)
    rng = np.random.default_rng(7)
    array = rng.standard_normal(16 * 1024 * 1024, dtype=np.float32).reshape(4096, 4096)  # 64 MiB
    array[0, :4] = [np.nan, np.inf, -0.0, np.float32(1e-45)]  # bit patterns that must survive
    client.send(dealer, "submit", {"kind": "x", "params": {"image": array}})
    message = server.deserialize(recv_frames(router, 20000))
    received = message.content["params"]["image"]
    assert received.shape == (4096, 4096) and received.dtype == np.float32
    assert received.tobytes() == array.tobytes()
    assert not received.flags.writeable
    # Zero-copy receive: the array's memory is the received frame's memory.
    frame_address = np.frombuffer(message.buffers[0], dtype=np.uint8).ctypes.data
    assert received.ctypes.data == frame_address


def test_arrays_anywhere_keep_dtype_byte_order_and_shape(router_dealer) -> None:
    router, dealer = router_dealer
    client, server = Session(KEY), Session(KEY)
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2]  # not contiguous
    content = {
        "a": [big_endian, {"deep": [strided]}],
        "scalar0d": np.array(3.5, dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.uint8),
        "flags": np.array([True, False]),
        "cplx": np.array([1 + 2j], dtype=np.complex64),
        "raw": b"\x00\x01raw",
        "np_scalar": np.int64(7),
    }
    client.send(dealer, "thing", content)
    got = server.deserialize(recv_frames(router)).content
    assert got["a"][0].dtype == np.dtype(">i4") and np.array_equal(got["a"][0], big_endian)
    assert np.array_equal(got["a"][1]["deep"][0], strided)
    assert got["scalar0d"].shape == () and got["scalar0d"] == np.float16(3.5)
    assert got["empty"].shape == (0, 3)
    assert got["flags"].tolist() == [True, False]
    assert got["cplx"][0] == 1 + 2j
    assert bytes(got["raw"]) == b"\x00\x01raw"
    assert got["np_scalar"] == 7


def test_header_fields_and_reply_parenting(router_dealer) -> None:
    router, dealer = router_dealer
    client, server = Session(KEY), Session(KEY)
    request = client.send(dealer, messages.HELLO, messages.hello_content("1.0", "t", "0"))
    got = server.deserialize(recv_frames(router))
    assert set(got.header) >= {"msg_id", "session", "msg_type", "version", "date"}
    assert got.header == request.header and got.identities and got.msg_type == "hello"
    server.send(router, messages.reply_type(got.msg_type), {"ok": 1}, parent=got, identities=got.identities)
    reply = client.deserialize(recv_frames(dealer))
    assert reply.msg_type == "hello_reply" and reply.parent_id == request.msg_id
    assert reply.identities == []


def test_wrong_key_nothing_accepted(router_dealer) -> None:
    router, dealer = router_dealer
    intruder, server = Session(b"w" * 32), Session(KEY)
    for msg_type in ("hello", "submit", "cancel"):
        intruder.send(dealer, msg_type, {"kind": "system.info", "x": np.ones(3)})
    for _ in range(3):
        with pytest.raises(SignatureError):
            server.deserialize(recv_frames(router))


def test_replayed_message_rejected(router_dealer) -> None:
    router, dealer = router_dealer
    client, server = Session(KEY), Session(KEY)
    frames = client.serialize(client.msg("submit", {"kind": "a", "params": {}}))
    dealer.send_multipart(frames)
    dealer.send_multipart(frames)  # an attacker re-sending captured frames
    server.deserialize(recv_frames(router))
    with pytest.raises(ReplayError):
        server.deserialize(recv_frames(router))


@pytest.mark.parametrize("where", ["header", "content", "buffer", "signature"])
def test_any_tampering_breaks_the_signature(where: str) -> None:
    session = Session(KEY)
    frames = [bytes(f) for f in session.serialize(session.msg("m", {"a": np.arange(10, dtype=np.int16)}))]
    index = {"signature": 1, "header": 2, "content": 5, "buffer": 6}[where]
    corrupted = bytearray(frames[index])
    corrupted[len(corrupted) // 2] ^= 0x01
    frames[index] = bytes(corrupted)
    with pytest.raises(SignatureError):
        Session(KEY).deserialize(frames)


def test_buffer_digest_does_not_depend_on_threads_and_covers_every_chunk() -> None:
    data = np.random.default_rng(1).integers(0, 255, 5 * CHUNK_BYTES + 123, dtype=np.uint8)
    parallel = buffer_digests([memoryview(data)])  # >= 4 MiB: hashed on the thread pool
    # The same definition computed by hand, serially.
    import hashlib
    import struct
    h = hashlib.sha256(b"AVS-BUF-v1" + struct.pack(">Q", data.nbytes))
    for start in range(0, data.nbytes, CHUNK_BYTES):
        h.update(hashlib.sha256(data[start:start + CHUNK_BYTES]).digest())
    assert parallel == [h.digest()]
    flipped = data.copy()
    flipped[-1] ^= 1
    assert buffer_digests([memoryview(flipped)]) != parallel


def test_signature_separates_frame_boundaries() -> None:
    signer = Signer(KEY)
    assert signer.sign([b"{}", b"{}{", b"}", b"{}"], []) != signer.sign([b"{}", b"{}", b"{}", b"{}"], [])
    assert signer.sign([b"{}"] * 4, [memoryview(b"ab")]) != signer.sign([b"{}"] * 4, [memoryview(b"a"),
                                                                                         memoryview(b"b")])


def test_replay_guard_window_and_eviction_are_sound() -> None:
    guard = ReplayGuard(window_s=10.0, max_entries=3)
    now = 1000.0
    with pytest.raises(ReplayError):
        guard.check_and_record(b"old", now - 11, now)
    with pytest.raises(ReplayError):
        guard.check_and_record(b"future", now + 11, now)
    for i, sig in enumerate([b"a", b"b", b"c", b"d"]):
        guard.check_and_record(sig, now + i * 0.1, now)
    assert len(guard) == 3  # "a" was evicted ...
    with pytest.raises(ReplayError):  # ... but replaying it is still refused (date <= floor)
        guard.check_and_record(b"a", now, now)
    for sig in (b"b", b"c", b"d"):
        with pytest.raises(ReplayError):
            guard.check_and_record(sig, now + 0.2, now)
    guard.check_and_record(b"e", now + 1, now)  # fresh messages still pass


def test_message_dated_outside_window_is_rejected() -> None:
    sender, receiver = Session(KEY), Session(KEY, replay_window_s=60)
    message = sender.msg("x")
    message.header["date"] = "2020-01-01T00:00:00Z"
    with pytest.raises(ReplayError):
        receiver.deserialize(sender.serialize(message))


def test_limits_frames_bytes_json_size_and_depth() -> None:
    sender = Session(KEY)
    small = Session(KEY, limits=Limits(max_message_bytes=10_000, max_frames=10, max_json_bytes=2000,
                                       max_json_depth=8))
    with pytest.raises(LimitExceeded):
        small.deserialize(sender.serialize(sender.msg("x", {"b": [np.zeros(1) for _ in range(5)]})))
    with pytest.raises(LimitExceeded):
        small.deserialize(sender.serialize(sender.msg("x", {"a": np.zeros(2000)})))
    with pytest.raises(LimitExceeded):
        small.deserialize(sender.serialize(sender.msg("x", {"s": "x" * 3000})))
    def nest(lists: int) -> Any:
        value: Any = 1
        for _ in range(lists):
            value = [value]
        return value

    # The content object is depth 1, so 8 nested lists make depth 9: refused; 7 lists: accepted.
    with pytest.raises(LimitExceeded):
        small.deserialize(sender.serialize(sender.msg("x", {"n": nest(8)})))
    assert small.deserialize(sender.serialize(sender.msg("x", {"n": nest(7)}))).content["n"] == nest(7)


def test_unknown_types_and_extra_fields_are_tolerated() -> None:
    sender, receiver = Session(KEY), Session(KEY)
    message = sender.msg("future_message_type", {"new": 1}, metadata={"trace": "x"})
    message.header["new_header_field"] = {"anything": [1, 2]}
    got = receiver.deserialize(sender.serialize(message))
    assert got.msg_type == "future_message_type" and got.header["new_header_field"] == {"anything": [1, 2]}


def test_sending_bad_content_raises_protocol_error() -> None:
    session = Session(KEY)
    with pytest.raises(ProtocolError):
        session.serialize(session.msg("x", {"a": np.array([object()], dtype=object)}))
    with pytest.raises(ProtocolError):
        session.serialize(session.msg("x", {"__array__": 1}))
    with pytest.raises(ProtocolError):
        session.serialize(session.msg("x", {"a": float("nan")}))
    with pytest.raises(ProtocolError):
        session.serialize(session.msg("x", {"a": {1, 2}}))


def test_bad_descriptors_and_size_mismatch() -> None:
    sender, signer = Session(KEY), Signer(KEY)

    def signed(content: dict[str, Any], buffers: list[bytes]) -> list[bytes]:
        parts = [json.dumps(sender.header("x")).encode(), b"{}", b"{}", json.dumps(content).encode()]
        return [DELIMITER, signer.sign(parts, [memoryview(b) for b in buffers]), *parts, *buffers]

    cases = [
        ({"a": {"__array__": {"buffer": 0, "dtype": "<f4", "shape": [3]}}}, [b"\0" * 8]),
        ({"a": {"__array__": {"buffer": 1, "dtype": "<f4", "shape": [2]}}}, [b"\0" * 8]),
        ({"a": {"__array__": {"buffer": 0, "dtype": "|O8", "shape": [1]}}}, [b"\0" * 8]),
        ({"a": {"__array__": {"buffer": 0, "dtype": "<f3", "shape": [1]}}}, [b"\0" * 3]),
        ({"a": {"__array__": {"buffer": 0, "dtype": "<f4", "shape": [-2]}}}, [b""]),
        ({"a": {"__array__": {"buffer": 0, "dtype": "<f4", "shape": "2"}}}, [b"\0" * 8]),
        ({"a": {"__array__": {"buffer": True, "dtype": "<f4", "shape": [2]}}}, [b"\0" * 8]),
        ({"a": {"__array__": [0]}}, [b"\0" * 8]),
        ({"a": {"__bytes__": {"buffer": 0, "size": 9}}}, [b"\0" * 8]),
        ({"a": {"__array__": {"buffer": 0, "dtype": "<f4", "shape": [2]}, "x": 1}}, [b"\0" * 8]),
    ]
    for content, buffers in cases:
        with pytest.raises(MalformedMessage):
            Session(KEY).deserialize(signed(content, buffers))


def test_version_helpers_name_both_versions() -> None:
    check_compatible("1.7")
    with pytest.raises(VersionMismatch, match=rf"{re.escape(PROTOCOL_VERSION)}.*2\.3"):
        check_compatible("2.3")
    content = messages.version_mismatch_content("1.0", "2.3")
    assert "1.0" in content["evalue"] and "2.3" in content["evalue"]
    assert content["ename"] == "VersionMismatch"


def test_state_machine_table() -> None:
    assert messages.can_transition("queued", "running")
    assert messages.can_transition("running", "cancelled")
    assert not messages.can_transition("succeeded", "running")
    assert not messages.can_transition("failed", "failed")
    assert {"succeeded", "failed", "cancelled"} == messages.TERMINAL_STATES


def test_recv_nonblocking_raises_again_when_empty(router_dealer) -> None:
    router, _ = router_dealer
    start = time.monotonic()
    with pytest.raises(zmq.Again):
        Session(KEY).recv(router, zmq.NOBLOCK)
    assert time.monotonic() - start < 1.0


def test_send_side_is_zero_copy_for_contiguous_arrays() -> None:
    session = Session(KEY)
    array = np.arange(1 << 16, dtype=np.float64)
    frames = session.serialize(session.msg("x", {"a": array, "b": array[::2]}))
    assert np.frombuffer(frames[6], dtype=np.uint8).ctypes.data == array.ctypes.data  # shares memory
    assert np.frombuffer(frames[7], dtype=np.uint8).ctypes.data != array.ctypes.data  # strided: copied once


@pytest.mark.parametrize("frames", [None, 5, "abc", b"abc", [None], [[b"x"]], {"a": b"b"}, [DELIMITER] * 7])
def test_wrong_python_types_are_protocol_errors(frames: Any) -> None:
    with pytest.raises(ProtocolError):
        Session(KEY).deserialize(frames)
