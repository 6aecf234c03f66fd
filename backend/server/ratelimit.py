"""Per-client request rate limit: a token bucket whose tokens are the server loop's time.

The server has one thread; every request a client sends is time that loop does not spend on
others. So the cost of a request is what it actually took: one unit for being a request at all
plus one unit per millisecond the loop spent handling it (checking its signature, querying the
job table, encoding the reply). A ``heartbeat`` costs about 1, a ``list_jobs(limit=200)`` over a
full table tens; a client may spend :data:`DEFAULT_RATE` units per second (a fifth of the loop)
with bursts up to :data:`DEFAULT_BURST`.

A client may start a request while it has any credit; the cost is charged afterwards (it is only
known then), so a bucket can go into debt, at most one burst deep. A client in debt gets
``RateLimited`` error replies (themselves limited, see ``Receiver.may_send_error``) without its
requests being read further, so a flood costs the loop a dictionary lookup per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATE = 200.0  # units per second; a unit is about a millisecond of the loop
DEFAULT_BURST = 250.0  # a client that was idle may spend this much at once (a quarter second)
MAX_TRACKED_CLIENTS = 10_000  # buckets kept in memory (full buckets are forgotten first)


def request_cost(elapsed_s: float) -> float:
    """Units charged for a request that kept the loop busy ``elapsed_s`` seconds."""
    return 1.0 + max(0.0, elapsed_s) * 1000.0


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by client id. ``rate <= 0`` turns the limit off."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _bucket(self, client_id: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._forget_idle(now)
            bucket = self._buckets[client_id] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        return bucket

    def _forget_idle(self, now: float) -> None:
        """Bound memory: a bucket that has refilled is the same as a new one; drop those first."""
        for client_id, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[client_id]
        while len(self._buckets) >= self.max_clients:  # all busy: forgive the oldest entries
            del self._buckets[next(iter(self._buckets))]

    def allow(self, client_id: str) -> bool:
        """May this client's next request be handled now?"""
        return not self.enabled or self._bucket(client_id).tokens > 0

    def charge(self, client_id: str, cost: float) -> None:
        """Take ``cost`` units (a debt of at most one burst: one huge request is not a long ban)."""
        if self.enabled:
            bucket = self._bucket(client_id)
            bucket.tokens = max(-self.burst, bucket.tokens - cost)

    def retry_after(self, client_id: str) -> float:
        """Seconds until the client has credit again (0 when it has some now)."""
        if not self.enabled:
            return 0.0
        tokens = self._bucket(client_id).tokens
        return 0.0 if tokens > 0 else (1e-3 - tokens) / self.rate

    def tokens(self, client_id: str) -> float:
        return self._bucket(client_id).tokens
