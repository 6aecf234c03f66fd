"""What one client request and one client event are: the small records the link and the job API pass.

A :class:`PendingRequest` is a request in flight; it turns ``done`` on its reply, an ``error``
reply, or a lost connection. A :class:`ClientEvent` is what :meth:`protocol.client.Client.pump`
hands out: a server event, the reply to an asynchronous request, an ``error``, or one of the
synthetic connection events below (they never travel on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import BackendUnavailable, ProtocolError
from .session import Message

# Synthetic event types (not on the wire) that pump() reports besides the server's events.
BACKEND_LOST = "backend_lost"
BACKEND_RESTORED = "backend_restored"
CONNECTED = "connected"


@dataclass(frozen=True)
class ClientEvent:
    """One thing that happened: a server event (``job_progress``...), a reply to an asynchronous
    request (``submit_reply``...), an ``error`` reply, or ``backend_lost``/``backend_restored``."""

    type: str
    job_id: str | None = None
    content: dict[str, Any] = field(default_factory=dict)


@dataclass
class PendingRequest:
    """A request in flight; ``done`` turns true on its reply, an error reply, or a lost backend."""

    message: Message
    reply: Message | None = None
    error: ProtocolError | None = None
    emit: bool = False  # report the reply as a ClientEvent from pump()

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None

    def result(self) -> Message:
        if self.error is not None:
            raise self.error
        if self.reply is None:
            raise BackendUnavailable(f"no reply yet to {self.message.msg_type}")
        return self.reply
