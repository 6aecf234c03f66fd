"""Correctly signed requests with arbitrary content: every one gets a reply, never ``InternalError``.

The decoder fuzz (tests/protocol) covers bytes that are not a valid message; this covers valid
messages whose *content* is wrong, which only the server's request handlers can judge.
"""

from __future__ import annotations

from typing import Any

import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from server_helpers import ServerProcess

from protocol import Session, read_connection_file
from protocol import messages as M

FIELDS = [
    "kind",
    "params",
    "idempotency_key",
    "job_id",
    "states",
    "limit",
    "name",
    "offset",
    "length",
    "time",
    "protocol_version",
    "client",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["system.sleep", "queued", "succeeded", "ticks", "1.0", "2.0", "0" * 32])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
contents = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
msg_types = st.sampled_from([*sorted(M.REQUESTS - {M.SUBMIT}), "bogus", "job_state", "error", ""])


def test_arbitrary_request_content_never_breaks_a_handler(server: ServerProcess) -> None:
    info = read_connection_file(server.connection_file)
    session = Session(info.key_bytes)
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(info.address)
    replies: list[str] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(msg_type=msg_types, content=contents)
    @example(msg_type=M.LIST_JOBS, content={"limit": 2**70})
    @example(msg_type=M.GET_ARTIFACT, content={"job_id": "0" * 32, "name": "x", "offset": 2**70})
    @example(msg_type=M.LIST_JOBS, content={"states": [None, []]})
    @example(msg_type=M.ATTACH, content={"job_id": "\ud800"})  # a lone surrogate, valid in JSON
    def check(msg_type: str, content: dict[str, Any]) -> None:
        if not msg_type:
            msg_type = "x"
        request = session.send(socket, msg_type, content)
        assert socket.poll(5000), f"no reply to {msg_type} {content!r}"
        reply = session.recv(socket)
        assert reply.parent_header.get("msg_id") == request.msg_id
        if reply.msg_type == M.ERROR:
            assert reply.content["ename"] != M.E_INTERNAL, (msg_type, content, reply.content)
        else:
            assert reply.msg_type == M.reply_type(msg_type)
        replies.append(reply.msg_type)
        while socket.poll(0):  # events (e.g. after attach) are not replies: drain them
            session.recv(socket)

    try:
        check()
    finally:
        socket.close()
    assert server.alive() and len(replies) >= 100


def test_arbitrary_submit_content_is_accepted_or_refused_cleanly(server: ServerProcess) -> None:
    """Submits: refused with a clear error, or queued (a job that then fails cleanly is fine)."""
    info = read_connection_file(server.connection_file)
    session = Session(info.key_bytes)
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(info.address)
    kinds = st.sampled_from(["system.sleep", "no.such", ""]) | st.integers() | st.none()
    params = st.dictionaries(st.sampled_from(["seconds", "fail", "silent", "x"]), json_values, max_size=3)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=kinds, params=params | json_values, key=st.none() | st.text(max_size=300) | st.integers())
    @example(kind="system.sleep", params={"seconds": 0}, key="\udfff")
    def check(kind: Any, params: Any, key: Any) -> None:
        # Keep accepted jobs short: a valid "seconds" is clamped to a tiny value.
        if isinstance(params, dict) and isinstance(params.get("seconds"), int | float):
            params["seconds"] = 0
        content: dict[str, Any] = {"kind": kind, "params": params}
        if key is not None:
            content["idempotency_key"] = key
        request = session.send(socket, M.SUBMIT, content)
        while True:
            assert socket.poll(5000), f"no reply to submit {content!r}"
            reply = session.recv(socket)
            if reply.parent_header.get("msg_id") == request.msg_id and reply.msg_type in (
                M.ERROR,
                "submit_reply",
            ):
                break
        if reply.msg_type == M.ERROR:
            assert reply.content["ename"] in (M.E_BAD_REQUEST, M.E_UNKNOWN_KIND), reply.content
        else:
            assert isinstance(reply.content["job_id"], str)

    try:
        check()
    finally:
        socket.close()
    assert server.alive()
