"""avatar-studio wire protocol (spec: docs/protocol.md, protocol v1.1). Stdlib + zmq + numpy only.

Usage (server side; the client side is :class:`protocol.client.Client`)::

    from protocol import Session, ProtocolError, ConnectionInfo, write_connection_file, messages as M
    session = Session(key_bytes)                       # one per process; key >= 16 bytes
    write_connection_file(path, ConnectionInfo(address="tcp://127.0.0.1:5555", key=key_text))
    DEFAULT_LIMITS.configure_socket(router)            # ZMQ_MAXMSGSIZE before bind
    try:
        msg = session.recv(router, zmq.NOBLOCK)        # or session.deserialize(frames)
    except ProtocolError as exc: ...                   # the only exception for bad input; reply
                                                       # M.ERROR to frames[0] (the ROUTER's id)
    check_compatible(msg.header["version"])            # VersionMismatch -> M.version_mismatch_content
    session.send(router, M.reply_type(msg.msg_type), {"job_id": jid}, parent=msg,
                 identities=msg.identities)            # np arrays anywhere in content: zero-copy
    session.send(router, M.ERROR, M.error_content(M.E_UNKNOWN_JOB, "no such job"), parent=msg,
                 identities=msg.identities)
Buffer integrity (docs/protocol.md §2.1): ``Session(key, buffer_integrity="transport")`` signs
buffer lengths but not bytes; allowed only under CURVE or on loopback/IPC, chosen per connection
with ``resolve_buffer_integrity`` / ``ConnectionInfo.effective_buffer_integrity``.
Received arrays are read-only views of the frames (``.copy()`` to modify).
Client: ``c = Client.from_connection_file(); jid = c.submit("system.sleep", {"seconds": 1});
view = c.wait(jid)``; Blender: ``c = Client.from_connection_file(connect=False); c.start()`` then
``events = c.pump()`` from a timer (never blocks; ``c.jobs``, ``c.backend_alive``).
"""

from __future__ import annotations

from . import messages
from .client import Client, ClientEvent, JobView, PendingRequest
from .connection import (
    ConnectionInfo,
    default_connection_file,
    default_data_dir,
    new_key,
    read_connection_file,
    write_connection_file,
    write_private_file,
)
from .errors import (
    BackendUnavailable,
    BufferIntegrityMismatch,
    ConnectionFileError,
    LimitExceeded,
    MalformedMessage,
    ProtocolError,
    ReplayError,
    ServerError,
    SignatureError,
    VersionMismatch,
)
from .integrity import (
    BUFFER_INTEGRITY_MODES,
    DIGEST,
    TRANSPORT,
    is_loopback_address,
    resolve_buffer_integrity,
)
from .session import DEFAULT_LIMITS, DELIMITER, Limits, Message, Session
from .version import PROTOCOL_VERSION, check_compatible, is_compatible, parse_version

__all__ = [
    "BUFFER_INTEGRITY_MODES",
    "DEFAULT_LIMITS",
    "DELIMITER",
    "DIGEST",
    "PROTOCOL_VERSION",
    "TRANSPORT",
    "BackendUnavailable",
    "BufferIntegrityMismatch",
    "Client",
    "ClientEvent",
    "ConnectionFileError",
    "ConnectionInfo",
    "JobView",
    "LimitExceeded",
    "Limits",
    "MalformedMessage",
    "Message",
    "PendingRequest",
    "ProtocolError",
    "ReplayError",
    "ServerError",
    "Session",
    "SignatureError",
    "VersionMismatch",
    "check_compatible",
    "default_connection_file",
    "default_data_dir",
    "is_compatible",
    "is_loopback_address",
    "messages",
    "new_key",
    "parse_version",
    "read_connection_file",
    "resolve_buffer_integrity",
    "write_connection_file",
    "write_private_file",
]
