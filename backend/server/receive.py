"""The server's incoming side: meter, verify and dispatch each request; answer what is wrong.

- Fair service (docs/security.md): requests are metered per client (ratelimit.py); a client over
  its share gets a ``RateLimited`` error (those replies are limited too).
- Each message is verified with the key of the client CURVE authenticated on its connection
  (identity.py). A malformed message is logged and answered with an ``error`` (at most
  :data:`ERROR_REPLIES_PER_S` per peer); a bug while handling a request is answered with
  ``InternalError``. Neither stops the loop.
- ``hello`` is answered whatever the version; other requests need the same major version, then go
  to their handler (handlers.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from protocol import PROTOCOL_VERSION, Message, ProtocolError, parse_version
from protocol import messages as M

from .clientid import client_id_of
from .handlers import BadRequest
from .identity import ClientIdentity
from .quotas import E_RATE_LIMITED, Refusal
from .ratelimit import RateLimiter, request_cost

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger(__name__)

ERROR_REPLIES_PER_S = 5.0  # per peer, for malformed input (a garbage flood gets few answers)


class Receiver:
    """Handles the frames of one request; owns the rate limiter, each peer's client share and
    each peer's budget of error replies."""

    def __init__(self, server: Server) -> None:
        self.server = server  # its session, identities, sender, handlers, live jobs, stats
        self.limiter = RateLimiter(server.config.request_rate, server.config.request_burst)
        self.peer_clients: dict[bytes, str] = {}  # routing identity -> client id (accounting)
        self.error_budget: dict[bytes, tuple[float, float]] = {}  # identity -> (tokens, time)

    def forget(self, identity: bytes) -> None:
        self.error_budget.pop(identity, None)
        self.peer_clients.pop(identity, None)

    def receive(self, frames: list[Any]) -> None:
        """Rate limit per client (ratelimit.py) around :meth:`_on_frames`; ignore dropped peers."""
        identity = bytes(frames[0].bytes) if frames else b""
        if self.server.sender.ignores(identity):
            return  # it stopped reading what we sent; nothing it asks now would reach it
        client = self.peer_clients.get(identity)
        if client is None:
            if len(self.peer_clients) > 10_000:  # bound memory against many short-lived peers
                self.peer_clients.clear()
            client = self.peer_clients[identity] = client_id_of(frames, identity)
        if not self.limiter.allow(client):
            self.server.stats["rate_limited"] += 1
            if identity and self.may_send_error(identity):  # the refusals are limited too
                self._refuse_rate_limited(identity, client, frames)
            return
        started = time.perf_counter()
        try:
            self._on_frames(frames)
        finally:
            self.limiter.charge(client, request_cost(time.perf_counter() - started))

    def _refuse_rate_limited(self, identity: bytes, client: str, frames: list[Any]) -> None:
        assert self.server.session is not None
        try:
            message = self.server.session.deserialize(frames)  # only to name the request in the reply
        except ProtocolError:
            return
        wait = self.limiter.retry_after(client)
        text = (f"too many requests: this client used its share of the server's time "
                f"({self.limiter.rate:g} units/s, burst {self.limiter.burst:g}; a unit is about "
                f"1 ms of the server's loop); retry in {wait:.2f} s")
        content = M.error_content(E_RATE_LIMITED, text, {"retry_after_s": round(wait, 3)})
        self.server.sender.send(identity, M.ERROR, content, parent=message)

    def share_of(self, identity: bytes) -> str:
        """The share a request is counted against for queue and rate limits (clientid.py): a CURVE
        client's name, else the connection. Local connections are all owned by "local" (see
        :meth:`client_id_of`) but each gets its own share, so one busy script does not starve the
        user's Blender session."""
        return self.peer_clients.get(identity) or f"peer:{identity.hex()}"

    def client_of(self, identity: bytes) -> ClientIdentity:
        """The client behind a routing id that sent the request being handled (client_id, admin)."""
        assert self.server.identities is not None
        client = self.server.identities.client(identity)
        assert client is not None, "only requests of known clients reach the handlers"
        return client

    def client_id_of(self, identity: bytes) -> str:
        """The client id of the request being handled: the key for per-client quotas and limits
        (a CURVE client's listed name, else "local"; backend/server/identity.py). Before a message
        is verified, ``identity.client_id_of(frames)`` gives the same from the raw frames."""
        return self.client_of(identity).client_id

    def _on_frames(self, frames: list[Any]) -> None:
        server = self.server
        assert server.session is not None and server.identities is not None
        identity = bytes(frames[0].bytes) if frames else b""
        # Verified with the key of the client CURVE authenticated on this connection (ZAP User-Id),
        # so another client's HMAC key is useless here.
        client, changed = server.identities.on_frames(identity, frames)
        if changed:  # a routing id reused by another client: it inherits no subscriptions
            server.live_jobs.unsubscribe(identity)
        if client is None:  # revoked while connected: nothing to verify with, nobody to answer
            server.stats["malformed"] += 1
            log.log(logging.WARNING if self.may_send_error(identity) else logging.DEBUG,
                    "dropped a message from peer %s: its client is no longer listed", identity.hex()[:16])
            return
        send = server.sender.send
        try:
            message = server.identities.session(client).deserialize(frames)
        except ProtocolError as exc:
            server.stats["malformed"] += 1
            # One budget for the log line and the reply: a flood of garbage costs little of either.
            answer = bool(identity) and self.may_send_error(identity)
            log.log(
                logging.WARNING if answer else logging.DEBUG,
                "rejected a message from peer %s: %s: %s",
                identity.hex()[:16],
                type(exc).__name__,
                exc,
            )
            if answer:
                ename = getattr(exc, "ename", M.E_PROTOCOL)
                send(identity, M.ERROR, M.error_content(ename, str(exc)[:500]), parent={})
            return
        server.stats["requests"] += 1
        try:
            self._on_request(identity, message)
        except BadRequest as exc:
            send(identity, M.ERROR, M.error_content(exc.ename, exc.evalue), parent=message)
        except Refusal as exc:  # a limit (quotas.py): the reply names it
            send(identity, M.ERROR, M.error_content(exc.ename, exc.evalue, exc.details), parent=message)
        except UnicodeEncodeError:  # JSON may carry lone surrogates ("\ud800"); SQLite refuses them
            text = "strings in the request must be valid Unicode (no lone surrogates)"
            send(identity, M.ERROR, M.error_content(M.E_BAD_REQUEST, text), parent=message)
        except Exception as exc:  # a bug must cost one request, not the server
            server.stats["internal_errors"] += 1
            log.exception("internal error while handling %s", message.header.get("msg_type"))
            send(
                identity,
                M.ERROR,
                M.error_content(M.E_INTERNAL, f"{type(exc).__name__}: {exc}"),
                parent=message,
            )

    def may_send_error(self, identity: bytes) -> bool:
        """Token bucket per peer, so a flood of garbage does not turn into a flood of replies."""
        now = time.monotonic()
        tokens, last = self.error_budget.get(identity, (ERROR_REPLIES_PER_S, now))
        tokens = min(ERROR_REPLIES_PER_S, tokens + (now - last) * ERROR_REPLIES_PER_S)
        allowed = tokens >= 1.0
        self.error_budget[identity] = (tokens - 1.0 if allowed else tokens, now)
        if len(self.error_budget) > 10_000:  # bound memory against many short-lived peers
            self.error_budget.clear()
        return allowed

    def _on_request(self, identity: bytes, message: Message) -> None:
        msg_type = message.msg_type
        handlers = self.server.handlers
        if msg_type == M.HELLO:
            handlers.hello(identity, message)
            return
        remote = message.header.get("version")
        if parse_version(remote)[0] != parse_version(PROTOCOL_VERSION)[0]:
            self.server.sender.send(
                identity, M.ERROR, M.version_mismatch_content(PROTOCOL_VERSION, remote), parent=message
            )
            return
        handler = handlers.by_type.get(msg_type)
        if handler is None:
            raise BadRequest(M.E_UNKNOWN_TYPE, f"unknown request type {msg_type[:64]!r}")
        handler(identity, message)
