"""Hypothesis-driven fuzz of the decoder: whatever comes in, only ProtocolError comes out.

Three families, 1000+ examples in all: raw garbage and wrongly typed frames; mutations of valid
messages (truncated, dropped, duplicated, corrupted, oversized); and *correctly signed* messages
whose JSON, header fields and buffer descriptors are garbage, so the fuzz reaches the parser
behind the HMAC check instead of bouncing off it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import DELIMITER, Limits, Message, ProtocolError, Session
from protocol.signing import Signer

KEY = b"f" * 32
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_LIMITS = Limits(max_message_bytes=64 * 1024, max_frames=24, max_json_bytes=4096, max_json_depth=12)


def decode_only_protocol_errors(session: Session, frames: Any) -> Message | None:
    try:
        message = session.deserialize(frames)
    except ProtocolError:
        return None
    # Anything accepted must be a well-formed message.
    assert isinstance(message.header["msg_type"], str)
    assert isinstance(message.content, dict)
    return message


def valid_frames(content: dict[str, Any] | None = None) -> list[bytes]:
    sender = Session(KEY)
    message = sender.msg("submit", content if content is not None else {
        "kind": "x", "params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": b"bytes"}})
    return [bytes(f) for f in sender.serialize(message)]


json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)

frame_like = st.one_of(
    st.binary(max_size=200),
    st.just(DELIMITER),
    st.integers(),
    st.none(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
)


@SETTINGS
@given(frames=st.lists(frame_like, max_size=30))
def test_garbage_and_wrongly_typed_frames(frames: list[Any]) -> None:
    assert decode_only_protocol_errors(Session(KEY, limits=SMALL_LIMITS), frames) is None


@SETTINGS
@given(
    data=st.data(),
    action=st.sampled_from(["truncate_list", "drop", "duplicate", "replace", "flip", "append", "cut_frame",
                            "oversize", "prepend_ids"]),
)
def test_mutated_valid_messages(data: st.DataObject, action: str) -> None:
    frames: list[Any] = valid_frames()
    index = data.draw(st.integers(0, len(frames) - 1))
    if action == "truncate_list":
        frames = frames[:index]
    elif action == "drop":
        del frames[index]
    elif action == "duplicate":
        frames.insert(index, frames[index])
    elif action == "replace":
        frames[index] = data.draw(st.binary(max_size=100))
    elif action == "flip":
        frame = bytearray(frames[index] or b"\0")
        position = data.draw(st.integers(0, len(frame) - 1))
        frame[position] ^= data.draw(st.integers(1, 255))
        frames[index] = bytes(frame)
    elif action == "append":
        frames.extend(data.draw(st.lists(st.binary(max_size=50), min_size=1, max_size=5)))
    elif action == "cut_frame":
        frames[index] = frames[index][: data.draw(st.integers(0, max(0, len(frames[index]) - 1)))]
    elif action == "oversize":
        frames.append(b"\0" * (SMALL_LIMITS.max_message_bytes + 1))
    elif action == "prepend_ids":
        frames = data.draw(st.lists(st.binary(max_size=300), min_size=1, max_size=20)) + frames
    session = Session(KEY, limits=SMALL_LIMITS)
    message = decode_only_protocol_errors(session, frames)
    if action in ("drop", "duplicate", "flip", "append", "oversize") or (
            action == "truncate_list" and index < 6):
        assert message is None  # these can never leave a valid signed message behind


def signed(parts: list[bytes], buffers: list[bytes]) -> list[bytes]:
    return [DELIMITER, Signer(KEY).sign(parts, [memoryview(b) for b in buffers]), *parts, *buffers]


def header_bytes(draw: st.DrawFn) -> bytes:
    now = datetime.now(UTC).isoformat()
    header: dict[str, Any] = {"msg_id": "m" + draw(st.text(max_size=5)), "session": "s", "msg_type": "x",
                              "version": "1.0", "date": now}
    field = draw(st.sampled_from([None, "msg_id", "session", "msg_type", "version", "date"]))
    if field is not None:
        if draw(st.booleans()):
            del header[field]
        else:
            header[field] = draw(st.one_of(json_values, st.sampled_from(
                ["", "1", "1.0.0", "x.y", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00",
                 "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-14:00", "a" * 300])))
    return json.dumps(header).encode()


@st.composite
def json_frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["value", "bytes", "deep", "constant", "text"]))
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "deep":
        depth = draw(st.integers(1, 2040))  # fits SMALL_LIMITS' 4096 bytes: reaches the parser
        return b"[" * depth + b"]" * draw(st.sampled_from([depth, 0, depth - 1]))
    if kind == "constant":
        return draw(st.sampled_from([b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e999}', b'{"a": "\\ud800"}',
                                     b'{"a": 1' + b"0" * 5000 + b"}", b"\xef\xbb\xbf{}", b'{"a":1,"a":2}']))
    return draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")


@st.composite
def descriptor(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible descriptor (index in range, small shape, real dtype) with some fields spoiled."""
    result: dict[str, Any] = {
        "buffer": draw(st.integers(0, 2)),
        "dtype": draw(st.sampled_from(["<f4", ">f8", "|u1", "|b1", "<c8", "<i2", ">u2"])),
        "shape": draw(st.lists(st.integers(0, 5), max_size=3)),
        "size": draw(st.integers(0, 40)),
    }
    spoilers: dict[str, st.SearchStrategy[Any]] = {
        "buffer": st.one_of(st.integers(-2, 4), st.booleans(), st.text(max_size=2), st.none(), st.floats()),
        "dtype": st.one_of(st.sampled_from(["|O8", "<U4", "<f3", "f4", "<M8", "|V4", "<i9", "<f16", "float32",
                                            "<f4,<f4", "(2,)<f4", ""]), st.text(max_size=6), st.integers()),
        "shape": st.one_of(st.lists(st.one_of(st.integers(-3, 2**62), st.floats(), st.none(), st.booleans()),
                                    max_size=40), st.integers(), st.text(max_size=3), st.none()),
        "size": st.one_of(st.integers(-1, 2**64), st.none(), st.text(max_size=2), st.floats()),
    }
    for name in draw(st.sets(st.sampled_from(sorted(spoilers)), max_size=2)):
        if draw(st.booleans()):
            result[name] = draw(spoilers[name])
        else:
            del result[name]
    return result


@st.composite
def content_frame(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(["__array__", "__bytes__"]))
    # sampled_from rather than integers: hypothesis favours boundary integers, which would skew the mix.
    rarely = st.sampled_from([False] * 7 + [True])
    wrapper: Any = {key: draw(json_values) if draw(rarely) else draw(descriptor())}
    if draw(rarely):
        wrapper["extra"] = 1
    nested = draw(st.sampled_from([lambda v: v, lambda v: [v], lambda v: {"deep": [1, {"x": v}]}]))
    return json.dumps({"payload": nested(wrapper)}).encode()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_signed_but_malformed_messages(data: st.DataObject) -> None:
    draw = data.draw
    # Corrupt one part at a time (descriptors most often) so the others let the decoder get that far.
    target = draw(st.sampled_from(["header", "header_json", "parent", "metadata", "content",
                                   "descriptor", "descriptor", "descriptor"]))
    header = header_now()
    if target == "header":
        header = header_bytes(draw)
    elif target == "header_json":
        header = draw(json_frame())
    parent = draw(json_frame()) if target == "parent" else b"{}"
    metadata = draw(json_frame()) if target == "metadata" else b"{}"
    content = {"content": lambda: draw(json_frame()), "descriptor": lambda: draw(content_frame())}.get(
        target, lambda: b"{}")()
    sizes = st.sampled_from([0, 1, 2, 3, 4, 8, 12, 16, 24, 32, 40])
    min_buffers = 3 if target == "descriptor" else 0
    buffers = [bytes(n) for n in draw(st.lists(sizes, min_size=min_buffers, max_size=4))]
    decode_only_protocol_errors(Session(KEY, limits=SMALL_LIMITS), signed([header, parent, metadata, content],
                                                                          buffers))


@settings(max_examples=200, deadline=None)
@given(arrays=st.lists(hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(endianness="<"),
                    hnp.floating_dtypes(endianness=">"), hnp.complex_number_dtypes(), hnp.boolean_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)), max_size=4))
def test_any_numeric_arrays_round_trip_exactly(arrays: list[np.ndarray]) -> None:
    sender = Session(KEY)
    got = Session(KEY).deserialize(valid_frames_of(sender, {"arrays": arrays}))
    assert len(got.content["arrays"]) == len(arrays)
    for sent, received in zip(arrays, got.content["arrays"], strict=True):
        assert received.dtype == sent.dtype and received.shape == sent.shape
        assert received.tobytes() == sent.tobytes()  # bit-exact, NaN payloads included


def valid_frames_of(sender: Session, content: dict[str, Any]) -> list[bytes]:
    return [bytes(f) for f in sender.serialize(sender.msg("x", content))]


def test_pathologically_deep_json_within_size_limit() -> None:
    """A million nested brackets (2 MB, under the 8 MiB frame limit) must not crash the parser."""
    for depth in (1_000_000, 65, 64):
        deep = b"[" * depth + b"]" * depth
        content = b'{"a":' + deep + b"}"
        frames = signed([header_now(), b"{}", b"{}", content], [])
        assert decode_only_protocol_errors(Session(KEY), frames) is None


def header_now() -> bytes:
    return json.dumps({"msg_id": "m", "session": "s", "msg_type": "x", "version": "1.0",
                       "date": datetime.now(UTC).isoformat()}).encode()


def test_live_socket_garbage_then_valid_message(router_dealer) -> None:
    """Garbage sent to a real ROUTER yields ProtocolErrors, and the next valid message still decodes."""
    router, dealer = router_dealer
    server = Session(KEY)
    garbage = [[b""], [b"x" * 1000], [DELIMITER], [DELIMITER, b"0" * 64, b"{}", b"{}", b"{}", b"{}"],
               [b"\xff\xfe", DELIMITER, b"sig"], *[[bytes([i]) * i] for i in range(1, 30)]]
    for frames in garbage:
        dealer.send_multipart(frames)
    for frames in garbage:
        assert router.poll(5000)
        try:
            server.recv(router)
        except ProtocolError as exc:
            if DELIMITER in frames:  # the ROUTER's routing id is still known for an error reply
                assert exc.identities
        else:
            raise AssertionError("garbage accepted")
    Session(KEY).send(dealer, "hello", {"protocol_version": "1.0"})
    assert router.poll(5000)
    assert server.recv(router, zmq.NOBLOCK).msg_type == "hello"
