"""The bridge's one table of requests in flight, each with the callback that handles its answer.

Submits, attaches, cancels and job listings all go through it: the bridge adds an entry (how to
send the request, what to do with the reply), and every pump :meth:`RequestTable.step` sends
what is waiting, re-sends what must survive a reconnect, and calls the callbacks of what is done.
Nothing here touches ``bpy``: the callbacks do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class InFlight:
    """One request. ``send()`` sends it and returns the client's ``PendingRequest``."""

    key: str  # one entry per key, e.g. "submit:<idempotency key>", "attach:<job id>"
    send: Callable[[], Any]
    on_done: Callable[[Any], None]  # called with the done PendingRequest (reply or error)
    # Survives a lost connection: sent again (same content, so a submit keeps its idempotency key)
    # once a backend answers, instead of being dropped.
    resend: bool = False
    retry_after_s: float | None = None  # no answer this long from a live backend: send again
    on_dropped: Callable[[str], None] | None = None  # given up (disconnect): why
    request: Any = None  # None while waiting to be sent
    sent_at: float = 0.0


class RequestTable:
    def __init__(self, is_unavailable: Callable[[BaseException], bool]) -> None:
        # Tells a lost connection (answer: send again) from a real error reply.
        self._is_unavailable = is_unavailable
        self._entries: dict[str, InFlight] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def add(self, entry: InFlight, *, send_now: bool) -> bool:
        """Track ``entry`` (False if one with its key is already in flight); sends it at once
        when ``send_now``, else on the first :meth:`step` with a connection."""
        if entry.key in self._entries:
            return False
        self._entries[entry.key] = entry
        if send_now:
            self._send(entry)
        return True

    def _send(self, entry: InFlight) -> None:
        entry.sent_at = time.monotonic()
        entry.request = entry.send()

    def step(self, connected: bool) -> None:
        """Send, re-send and finish entries; callbacks run here (never inside :meth:`add`)."""
        now = time.monotonic()
        for entry in list(self._entries.values()):
            request = entry.request
            if request is None:
                if connected:
                    self._send(entry)
            elif not request.done:
                retry = entry.retry_after_s
                if connected and retry is not None and now - entry.sent_at > retry:
                    self._send(entry)
            elif entry.resend and request.error is not None and self._is_unavailable(request.error):
                entry.request = None  # the connection dropped before the reply: send it again
            else:
                del self._entries[entry.key]
                entry.on_done(request)

    def connection_lost(self) -> None:
        """The client was replaced: entries that must survive wait to be re-sent, the rest go
        (their requests died with the socket; the bridge re-attaches jobs after a reconnect)."""
        for key, entry in list(self._entries.items()):
            if entry.resend:
                entry.request = None
            else:
                del self._entries[key]

    def drop_all(self, why: str) -> None:
        """Give up on everything (disconnect, file load): ``on_dropped(why)`` where set."""
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            if entry.on_dropped is not None:
                entry.on_dropped(why)
