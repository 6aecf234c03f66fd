"""The server's outgoing side: send to one peer without blocking, retry what may not be lost.

Delivery rules (docs/protocol.md §4, §8):
- Replies and terminal events are sent without blocking; if a peer's queue is full they wait in the
  outbox (outbox.py) and are retried each loop iteration (for :data:`OUTBOX_TTL_S`; after that the
  client's re-``attach`` gets the terminal event again from the job store, the real guarantee).
- Progress events are sent with ``NOBLOCK`` and simply dropped when the peer is slow.
- ``ROUTER_MANDATORY`` makes a send to a vanished peer fail at once (``EHOSTUNREACH``), and that
  peer is forgotten (``Server.forget_peer``).
- A peer whose waiting messages exceed their bound, or that took none for :data:`OUTBOX_TTL_S`, is
  dropped: its waiting messages are discarded, it is forgotten, and its requests are ignored for
  :data:`DROPPED_PEER_IGNORED_S`.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import TYPE_CHECKING, Any

import zmq

from protocol import Message

from . import outbox as ob

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger(__name__)

OUTBOX_TTL_S = ob.TTL_S
DROPPED_PEER_IGNORED_S = 10.0  # a peer dropped for not reading is ignored this long


class Sender:
    """Sends on the server's socket, signed with each peer's session; owns the outbox and the
    list of dropped peers."""

    def __init__(self, server: Server) -> None:
        self.server = server  # its socket, session and identities exist once it has started
        self.outbox = ob.Outbox()  # messages that met back-pressure, bounded per peer
        self.dropped: dict[bytes, float] = {}  # peers that stopped reading -> ignored until

    def ignores(self, identity: bytes) -> bool:
        """The peer was dropped for not reading and is still ignored."""
        return bool(self.dropped) and self.dropped.get(identity, 0.0) > time.monotonic()

    def send(
        self,
        identity: bytes,
        msg_type: str,
        content: dict[str, Any],
        *,
        parent: Message | dict[str, Any],
        droppable: bool = False,
    ) -> None:
        """Send to one peer without blocking; keep non-droppable messages for a retry if it is slow."""
        session = self.server.session
        assert session is not None
        if self.ignores(identity):
            return  # dropped for not reading (e.g. a job's subscriber): nothing more for it
        message = session.msg(msg_type, content, parent)
        message.identities = [identity]
        item = ob.Outgoing(identity, message, time.monotonic() + OUTBOX_TTL_S)
        # Messages to a slow peer keep their order behind the queue.
        outcome = "again" if self.outbox.blocked(identity) else self.try_send(item)
        if outcome == "again":
            if droppable:
                self.server.stats["dropped_progress"] += 1
            else:
                self._keep_for_retry(item)

    def flush(self) -> None:
        """Retry what waits in the outbox; drop the peers that took nothing for too long."""
        if not self.outbox:
            return
        for identity in self.outbox.flush(self.try_send, time.monotonic()):
            self.drop_peer(identity, f"it took no message for {OUTBOX_TTL_S:g} s")

    def drop_peer(self, identity: bytes, why: str) -> None:
        """Stop serving a peer that does not read (outbox.py): discard, forget, ignore a while."""
        discarded = self.outbox.discard(identity)
        self.server.forget_peer(identity)
        now = time.monotonic()
        if len(self.dropped) > 10_000:
            self.dropped = {peer: until for peer, until in self.dropped.items() if until > now}
        self.dropped[identity] = now + DROPPED_PEER_IGNORED_S
        self.server.stats["dropped_peers"] += 1
        log.warning("dropped peer %s: %s; discarded %d waiting message(s), its requests are ignored "
                    "for %g s", identity.hex()[:16], why, discarded, DROPPED_PEER_IGNORED_S)

    def _keep_for_retry(self, item: ob.Outgoing) -> None:
        assert self.server.session is not None
        if item.frames is None:
            item.frames = self.server.session.serialize(item.message)
        item.nbytes = ob.owned_bytes(item.frames, len(item.message.identities))
        if not self.outbox.add(item):
            self.drop_peer(item.identity, f"over its bound of waiting messages ({self.outbox.max_messages} "
                           f"messages, {self.outbox.max_bytes} bytes)")

    def try_send(self, item: ob.Outgoing) -> str:
        """``"sent"``, ``"again"`` (the peer's queue is full) or ``"gone"`` (the peer disconnected)."""
        server = self.server
        assert server.session is not None and server.socket is not None and server.identities is not None
        if item.frames is None:  # signed once, with that client's key: a retry sends the same frames
            client = server.identities.client(item.identity)
            session = server.identities.session(client) if client is not None else server.session
            item.frames = session.serialize(item.message)
        try:
            server.socket.send_multipart(item.frames, flags=zmq.NOBLOCK, copy=False)
            return "sent"
        except zmq.Again:
            return "again"
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:  # the peer is gone: stop sending it anything
                server.forget_peer(item.identity)
                return "gone"
            raise
