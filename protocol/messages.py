"""Message type names, job states and helpers to build and read the records of docs/protocol.md §4.

Plain constants and small functions (no classes to subclass), so both the server and the Blender
add-on can use them without pulling in anything but the standard library.
"""

from __future__ import annotations

from typing import Any, Final

# --- requests (client -> server); each answered by "<type>_reply" or by ERROR -----------------
HELLO: Final = "hello"
SUBMIT: Final = "submit"
CANCEL: Final = "cancel"
LIST_JOBS: Final = "list_jobs"
ATTACH: Final = "attach"
GET_ARTIFACT: Final = "get_artifact"
HEARTBEAT: Final = "heartbeat"
REQUESTS: Final = frozenset({HELLO, SUBMIT, CANCEL, LIST_JOBS, ATTACH, GET_ARTIFACT, HEARTBEAT})

# --- events (server -> client, unsolicited; parent_header = the submit/attach that subscribed) ----
JOB_STATE: Final = "job_state"
JOB_PROGRESS: Final = "job_progress"
JOB_SUCCEEDED: Final = "job_succeeded"
JOB_FAILED: Final = "job_failed"
JOB_CANCELLED: Final = "job_cancelled"
EVENTS: Final = frozenset({JOB_STATE, JOB_PROGRESS, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED})
TERMINAL_EVENTS: Final = frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED})
PREVIEW: Final = "preview"  # a progress event's optional image (e.g. each generated view)

ERROR: Final = "error"
REPLY_SUFFIX: Final = "_reply"

# --- job states ---------------------------------------------------------------------------------
QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
JOB_STATES: Final = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL_STATES: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})

# Allowed transitions of the job state machine (docs/protocol.md §5). A terminal state is final.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

TERMINAL_EVENT_STATE: Final = {JOB_SUCCEEDED: SUCCEEDED, JOB_FAILED: FAILED, JOB_CANCELLED: CANCELLED}
STATE_TERMINAL_EVENT: Final = {state: event for event, state in TERMINAL_EVENT_STATE.items()}

# --- error names used in ERROR replies ----------------------------------------------------------
E_PROTOCOL: Final = "ProtocolError"
E_VERSION: Final = "VersionMismatch"
E_BUFFER_INTEGRITY: Final = "BufferIntegrityMismatch"
E_BAD_REQUEST: Final = "BadRequest"
E_UNKNOWN_JOB: Final = "UnknownJob"
E_UNKNOWN_KIND: Final = "UnknownJobKind"
E_UNKNOWN_ARTIFACT: Final = "UnknownArtifact"
E_UNKNOWN_TYPE: Final = "UnknownMessageType"
E_NOT_HELLO: Final = "HelloRequired"
E_INTERNAL: Final = "InternalError"


def reply_type(request_type: str) -> str:
    """``"submit"`` -> ``"submit_reply"``."""
    return request_type + REPLY_SUFFIX


def is_terminal_state(state: object) -> bool:
    return state in TERMINAL_STATES


def can_transition(old: str, new: str) -> bool:
    """True when the state machine allows ``old -> new`` (unknown states never transition)."""
    return new in TRANSITIONS.get(old, frozenset())


def error_content(ename: str, evalue: str, details: Any = None) -> dict[str, Any]:
    """Content of an ``error`` reply."""
    content: dict[str, Any] = {"ename": ename, "evalue": evalue}
    if details is not None:
        content["details"] = details
    return content


def version_mismatch_content(server_version: str, client_version: object) -> dict[str, Any]:
    """The ``error`` reply a server sends to a ``hello`` of another major version: names both."""
    return error_content(
        E_VERSION,
        f"protocol version mismatch: server speaks {server_version}, client speaks {client_version}",
        {"server_version": server_version, "client_version": client_version},
    )


def buffer_integrity_mismatch_content(server_mode: str, client_mode: object) -> dict[str, Any]:
    """The ``error`` reply to a ``hello`` stating another buffer-integrity mode: names both."""
    return error_content(
        E_BUFFER_INTEGRITY,
        f"buffer_integrity mismatch: server uses {server_mode!r}, client uses {client_mode!r}; use the "
        "server's connection file (or set the same buffer_integrity in yours)",
        {"server_buffer_integrity": server_mode, "client_buffer_integrity": client_mode},
    )


def hello_content(protocol_version: str, client_name: str, client_version: str,
                  buffer_integrity: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"protocol_version": protocol_version,
                               "client": {"name": client_name, "version": client_version}}
    if buffer_integrity is not None:
        content["buffer_integrity"] = buffer_integrity
    return content


def submit_content(kind: str, params: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"kind": kind, "params": params}
    if idempotency_key is not None:
        content["idempotency_key"] = idempotency_key
    return content


def progress_content(
    job_id: str, seq: int, fraction: float, stage: str = "", message: str = "", preview: Any = None
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "job_id": job_id, "seq": seq, "fraction": float(fraction), "stage": stage, "message": message,
    }
    if preview is not None:
        content[PREVIEW] = preview
    return content


def failure_content(job_id: str, ename: str, evalue: str, traceback: str = "") -> dict[str, Any]:
    return {"job_id": job_id, "error": {"ename": ename, "evalue": evalue, "traceback": traceback}}
