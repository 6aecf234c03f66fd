"""A correctly signed but nonsensical server must not break the client: random message types,
parents and contents go through the client's dispatch without raising, and the job views stay sane."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import Client, ConnectionInfo, Message, messages
from protocol.session import new_id, utcnow_iso

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=12,
)
field_values = st.one_of(json_values, st.sampled_from(["j1", "j2", *messages.JOB_STATES]))
contents = st.dictionaries(
    st.sampled_from(["job_id", "state", "seq", "fraction", "stage", "message", "data", "artifacts",
                     "error", "job", "protocol_version", "heartbeat_interval_s", "ename", "evalue",
                     "details", "jobs"]),
    field_values, max_size=8)
msg_types = st.sampled_from([*messages.EVENTS, messages.ERROR, "hello_reply", "submit_reply", "attach_reply",
                             "cancel_reply", "heartbeat_reply", "get_artifact_reply", "whatever"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(msg_types, contents, st.sampled_from(["none", "pending", "hello", "random"])),
                      max_size=12))
def test_client_dispatch_survives_any_signed_content(steps: list[tuple[str, dict[str, Any], str]]) -> None:
    client = Client(ConnectionInfo(address="tcp://127.0.0.1:9", key="k" * 32))
    try:
        client.start()  # opens a socket (nothing listens) so requests can be "sent" and pending
        for msg_type, content, parent_kind in steps:
            parent: dict[str, Any] = {}
            if parent_kind == "pending":
                kind = messages.ATTACH if "job_id" in content else messages.SUBMIT
                parent = client.request_nowait(kind, {"job_id": "j1", "kind": "k"}).message.header
            elif parent_kind == "hello" and client._hello is not None:
                parent = client._hello.message.header
            elif parent_kind == "random":
                parent = {"msg_id": new_id()}
            header = {"msg_id": new_id(), "session": "s", "msg_type": msg_type, "version": "1.0",
                      "date": utcnow_iso()}
            client._dispatch(Message(header, parent, {}, content))
            client.pump()
        for view in client.jobs.values():
            assert isinstance(view.state, str) and 0.0 <= view.fraction <= 1.0
    finally:
        client.close()
