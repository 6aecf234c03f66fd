"""Who sent a message: the client identity behind each connection, and the key it signs with.

A client id is a string:

- under CURVE, the name its public key is listed under (``keys create NAME``), which the ZAP
  handler puts into the connection's ZMQ ``User-Id`` (backend/server/curve_auth.py); libzmq
  attaches it to every frame received on that connection, and a peer cannot set it;
- without CURVE (loopback or the data dir's ipc socket, reachable only by whoever can read the
  data dir's key), always :data:`LOCAL_CLIENT_ID`, the data dir's owner.

``local`` is an admin (it owns the data dir and could read the store directly anyway); an issued
client is one if its record says so (``keys create NAME --admin``).

The hook for other server features (quotas, rate limits): :func:`client_id_of` gives the client
id of raw received frames before anything is parsed or verified (it is authenticated by CURVE,
not by the HMAC), and ``Receiver.client_of(routing_id).client_id`` the same for a handled request.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from protocol import Limits, Session
from protocol.signing import ReplayGuard

from .curve_auth import LOCAL_CLIENT_NAME, ChangeWatch, ClientRecord, CurveKeys
from .datadir import HMAC_KEY_FILE, read_hmac_key

log = logging.getLogger(__name__)

LOCAL_CLIENT_ID = LOCAL_CLIENT_NAME
MAX_REMEMBERED_PEERS = 10_000


def client_id_of(frames: Sequence[Any]) -> str:
    """The client id of a received message (``recv_multipart(copy=False)`` frames), unverified
    by HMAC but authenticated by CURVE: the ZAP ``User-Id``, else :data:`LOCAL_CLIENT_ID`."""
    if frames:
        try:
            user = frames[0].get("User-Id")
        except (zmq.ZMQError, AttributeError):  # no ZAP on this socket (or plain bytes frames)
            user = None
        if user:
            return str(user)
    return LOCAL_CLIENT_ID


@dataclass(frozen=True)
class ClientIdentity:
    client_id: str
    admin: bool
    key: bytes  # the HMAC key its messages are verified with, and ours to it are signed with

    def may_see(self, owner: str | None) -> bool:
        """Whether this client may see a job owned by ``owner`` (None: a job stored before owners
        existed, which belongs to the data dir's owner)."""
        return self.admin or (owner or LOCAL_CLIENT_ID) == self.client_id


class ClientRegistry:
    """client id -> :class:`ClientIdentity`, re-read when ``hmac.key`` or the clients folder changes,
    so ``keys create``/``revoke``/``rotate`` act on a running server for the next message."""

    def __init__(self, data_dir: Path, curve: bool) -> None:
        self.data_dir = Path(data_dir)
        self.curve = curve
        self.keys = CurveKeys(self.data_dir)
        watched = [self.data_dir / HMAC_KEY_FILE] + ([self.keys.clients_dir] if curve else [])
        self._watch = ChangeWatch(*watched)
        self._local_key = b""
        self._records: dict[str, ClientRecord] = {}
        self._listed: set[str] = set()

    def _refresh(self) -> None:
        if not self._watch.changed():
            return
        self._local_key = read_hmac_key(self.data_dir).encode("utf-8")
        if self.curve:
            self._records = self.keys.client_records()
            self._listed = set(self.keys.client_public_keys())

    def resolve(self, client_id: str) -> ClientIdentity | None:
        """The identity behind ``client_id``; None when it may not talk to us (revoked meanwhile)."""
        self._refresh()
        if client_id == LOCAL_CLIENT_ID:
            return ClientIdentity(LOCAL_CLIENT_ID, True, self._local_key)
        if not self.curve or client_id not in self._listed:
            return None
        record = self._records.get(client_id)
        if record is None:  # issued before per-client keys: the shared key, never admin
            return ClientIdentity(client_id, False, self._local_key)
        return ClientIdentity(client_id, record.admin, record.hmac_key.encode("utf-8"))


class PeerIdentities:
    """The server's view of its peers: routing id -> client identity, and a :class:`Session` per
    client key, all sharing the server's session id and one replay memory (signatures differ per
    key, so one bounded memory covers every client, as the single Session did before)."""

    def __init__(self, data_dir: Path, curve: bool, *, session_id: str, limits: Limits,
                 buffer_integrity: str, replay_not_before: float | None = None) -> None:
        self.registry = ClientRegistry(data_dir, curve)
        self._session_args = {"session_id": session_id, "limits": limits,
                              "buffer_integrity": buffer_integrity, "replay_not_before": replay_not_before}
        self._sessions: dict[tuple[str, bytes], Session] = {}
        self._replay_guard: ReplayGuard | None = None
        self._peers: OrderedDict[bytes, ClientIdentity] = OrderedDict()

    def on_frames(self, routing_id: bytes, frames: Sequence[Any]) -> tuple[ClientIdentity | None, bool]:
        """Who sent ``frames``; and whether this routing id was another client before (its old
        subscriptions must then be dropped: a routing id is not an identity)."""
        # Without CURVE there is no ZAP User-Id to read (and asking raises): everyone is local.
        client = self.registry.resolve(client_id_of(frames) if self.registry.curve else LOCAL_CLIENT_ID)
        previous = self._peers.pop(routing_id, None)
        if client is not None:
            self._peers[routing_id] = client
            while len(self._peers) > MAX_REMEMBERED_PEERS:
                self._peers.popitem(last=False)
        changed = previous is not None and (client is None or previous.client_id != client.client_id)
        return client, changed

    def client(self, routing_id: bytes) -> ClientIdentity | None:
        return self._peers.get(routing_id)

    def forget(self, routing_id: bytes) -> None:
        self._peers.pop(routing_id, None)

    def session(self, client: ClientIdentity) -> Session:
        """The Session that verifies this client's messages and signs ours to it."""
        cache_key = (client.client_id, client.key)
        session = self._sessions.get(cache_key)
        if session is None:
            if len(self._sessions) > 4 * 1024:  # keys rotated many times: start over (the replay
                # memory is kept: it is shared, not per session)
                self._sessions.clear()
            session = self._sessions[cache_key] = Session(client.key, **self._session_args)  # type: ignore[arg-type]
            if self._replay_guard is None:
                self._replay_guard = session.replay_guard
            session.replay_guard = self._replay_guard
        return session

