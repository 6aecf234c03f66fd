"""Admission limits for submits: jobs queued or running, per client and for the whole server.

A refused submit stores nothing: the check runs before the params' arrays and bytes are written
to the artifact store and before the job table is touched. The refusal is an ``error`` reply
whose ``ename`` is :data:`E_QUEUE_FULL`, whose message names the limit and how many jobs the
client has, and whose ``details`` carry the same numbers for programs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

E_QUEUE_FULL = "QueueFull"
E_DISK_QUOTA = "DiskQuotaExceeded"
E_RATE_LIMITED = "RateLimited"

# A shared GPU box runs a few jobs at once; a hundred waiting per user is already hours of work.
DEFAULT_MAX_UNFINISHED_PER_CLIENT = 100
DEFAULT_MAX_UNFINISHED_TOTAL = 1000


class Refusal(Exception):
    """A request refused by a limit; the server answers it with an ``error`` reply."""

    def __init__(self, ename: str, evalue: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue
        self.details = details or {}


@dataclass(frozen=True)
class QueueLimits:
    per_client: int = DEFAULT_MAX_UNFINISHED_PER_CLIENT
    total: int = DEFAULT_MAX_UNFINISHED_TOTAL

    def check(self, client_id: str, client_unfinished: int, total_unfinished: int) -> None:
        """Raise :class:`Refusal` when one more job would exceed a limit."""
        details = {
            "client_unfinished": client_unfinished,
            "limit_per_client": self.per_client,
            "total_unfinished": total_unfinished,
            "limit_total": self.total,
        }
        if client_unfinished >= self.per_client:
            raise Refusal(
                E_QUEUE_FULL,
                f"queue full: this client already has {client_unfinished} job(s) queued or running, "
                f"the limit is {self.per_client} per client (serve --max-jobs-per-client); "
                f"wait for some to finish or cancel them",
                details,
            )
        if total_unfinished >= self.total:
            raise Refusal(
                E_QUEUE_FULL,
                f"queue full: the server already has {total_unfinished} job(s) queued or running, "
                f"the limit is {self.total} for all clients (serve --max-jobs); this client has "
                f"{client_unfinished}; try again later",
                details,
            )
