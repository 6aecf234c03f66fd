"""Messages waiting for slow peers, bounded per peer; a peer over its bound is dropped.

ZeroMQ keeps up to :data:`PEER_SEND_HWM` messages per peer in its own pipe (plus the kernel's
socket buffers); once that is full a send fails with ``EAGAIN`` and the server keeps what may not
be lost (replies, terminal events) here, to retry each loop iteration. A peer that stops reading
would make this grow without end, so each peer may have at most :data:`MAX_MESSAGES_PER_PEER`
messages and :data:`MAX_BYTES_PER_PEER` bytes waiting here, and none older than
:data:`TTL_S`; past either bound the server drops the peer: its waiting messages are discarded,
its subscriptions forgotten, and its requests ignored for a while (``Sender.drop_peer``). A
client that comes back re-``attach``es and gets the final state from the job store, which is the
real delivery guarantee (docs/protocol.md §4).

Bytes are counted for the frames this process owns (identities, signature, the four JSON
frames). Buffer frames of queued replies are views of memory-mapped artifact files, not copies;
they are not counted, so one large download waiting for a slow reader does not drop it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from protocol import Message

PEER_SEND_HWM = 32  # messages ZeroMQ keeps per peer before a send reports EAGAIN
MAX_MESSAGES_PER_PEER = 256
MAX_BYTES_PER_PEER = 16 << 20
TTL_S = 30.0  # a peer that has not taken a message for this long is dropped
N_OWNED_FRAMES_AFTER_IDS = 6  # delimiter, signature, header, parent, metadata, content


@dataclass
class Outgoing:
    identity: bytes
    message: Message
    expires: float
    frames: list[Any] | None = None  # serialised (and signed) once, resent as is
    nbytes: int = 0


def owned_bytes(frames: list[Any], n_identities: int) -> int:
    """Bytes of the frames this process allocated for a message (see the module docstring)."""
    return sum(len(memoryview(f)) if not isinstance(f, bytes) else len(f)
               for f in frames[: n_identities + N_OWNED_FRAMES_AFTER_IDS])


@dataclass
class _PeerQueue:
    items: deque[Outgoing] = field(default_factory=deque)
    nbytes: int = 0


class Outbox:
    """Per-peer FIFOs of messages that met back-pressure; order per peer is kept."""

    def __init__(
        self,
        max_messages: int = MAX_MESSAGES_PER_PEER,
        max_bytes: int = MAX_BYTES_PER_PEER,
    ) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._peers: dict[bytes, _PeerQueue] = {}

    def __bool__(self) -> bool:
        return bool(self._peers)

    def __len__(self) -> int:
        return sum(len(q.items) for q in self._peers.values())

    def __iter__(self) -> Iterator[Outgoing]:
        for queue in list(self._peers.values()):
            yield from queue.items

    def blocked(self, identity: bytes) -> bool:
        """Messages to this peer are waiting: new ones queue behind them (order per peer)."""
        return identity in self._peers

    def bytes_waiting(self, identity: bytes) -> int:
        queue = self._peers.get(identity)
        return queue.nbytes if queue else 0

    def add(self, item: Outgoing) -> bool:
        """Keep ``item`` for a retry. False (nothing kept) when the peer would exceed its bound."""
        queue = self._peers.get(item.identity)
        if queue is None:
            queue = self._peers[item.identity] = _PeerQueue()
        # One message of any size may wait (a large reply to a slow reader is not a reason to drop it).
        if queue.items and (
            len(queue.items) >= self.max_messages or queue.nbytes + item.nbytes > self.max_bytes
        ):
            return False
        queue.items.append(item)
        queue.nbytes += item.nbytes
        return True

    def discard(self, identity: bytes) -> int:
        """Forget everything waiting for a peer; returns how many messages that was."""
        queue = self._peers.pop(identity, None)
        return len(queue.items) if queue else 0

    def flush(self, try_send: Callable[[Outgoing], str], now: float) -> list[bytes]:
        """Send what each peer can take now, oldest first.

        ``try_send`` returns ``"sent"``, ``"again"`` or ``"gone"``. Returns the peers whose oldest
        message has waited past its deadline: they stopped reading, the caller drops them.
        """
        stalled: list[bytes] = []
        for identity, queue in list(self._peers.items()):
            while queue.items:
                item = queue.items[0]
                if item.expires < now:
                    stalled.append(identity)
                    break
                outcome = try_send(item)
                if outcome == "again":
                    break
                if outcome == "gone":
                    self._peers.pop(identity, None)
                    break
                queue.items.popleft()
                queue.nbytes -= item.nbytes
            if not queue.items:
                self._peers.pop(identity, None)
        return stalled
