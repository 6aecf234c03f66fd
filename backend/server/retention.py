"""Which stored bytes are still needed, and deleting the rest: ``jobs prune`` and the collector.

A blob in the artifact store is *referenced* when a job's artifact record names it or a job's
stored params hold its descriptor (an input array or bytes). Blobs are shared by content, so a
blob is deleted only when nothing references it any more, never because one job went away.

A blob that nothing references may still be about to be: a running job stores its outputs
before the server records them (at the job's end). So unreferenced blobs are deleted only when
their mtime is older than the *horizon*: the creation time of the oldest unfinished job, and at
most now minus :data:`GRACE_S`. A blob that is stored again while it exists has its mtime
refreshed (``ArtifactStore._commit``), so an old blob that a running job reproduces counts as
young. Orphan ``*.tmp`` files (a crash while writing) follow the same rule.

Both the server (at start) and ``avatar-studio jobs prune`` (from another process, while the
server runs) call this; SQLite's transactions and the rules above make that safe.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol import messages as M

from .artifacts import ArtifactStore
from .jobstore import JobStore
from .params import STORED_ARRAY, STORED_BYTES

GRACE_S = 600.0  # a blob younger than this is never collected (a submit or a job may be writing it)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` -> seconds (ValueError otherwise)."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use a number and a unit: 90s, 30m, 12h, 7d, 2w)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _descriptor_hashes(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for tag in (STORED_ARRAY, STORED_BYTES):
            inner = value.get(tag)
            if len(value) == 1 and isinstance(inner, dict) and isinstance(inner.get("sha256"), str):
                found.add(inner["sha256"])
                return
        for item in value.values():
            _descriptor_hashes(item, found)
    elif isinstance(value, list):
        for item in value:
            _descriptor_hashes(item, found)


def referenced_blobs(store: JobStore) -> set[str]:
    """Hashes named by any artifact record or any job's stored params."""
    found = {row[0] for row in store.db.execute("SELECT DISTINCT sha256 FROM artifacts")}
    for (params,) in store.db.execute("SELECT params FROM jobs WHERE params LIKE '%__stored_%'"):
        try:
            _descriptor_hashes(json.loads(params), found)
        except ValueError:
            continue  # an unreadable row keeps nothing alive; it is reported by listing, not here
    return found


def horizon(store: JobStore, now: float | None = None) -> float:
    """Epoch seconds: unreferenced blobs last touched before this may be deleted."""
    now = time.time() if now is None else now
    limit = now - GRACE_S
    row = store.db.execute(
        "SELECT MIN(created) FROM jobs WHERE state IN (?, ?)", (M.QUEUED, M.RUNNING)
    ).fetchone()
    if row and row[0]:
        try:
            oldest = datetime.fromisoformat(str(row[0]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return float("-inf")  # cannot tell how old the oldest live job is: delete nothing
        limit = min(limit, oldest - GRACE_S)
    return limit


@dataclass
class CollectReport:
    blobs: int = 0
    bytes: int = 0
    temp_files: int = 0


def collect_garbage(store: JobStore, artifacts: ArtifactStore, now: float | None = None) -> CollectReport:
    """Delete blobs nothing references (and stale temp files), older than the horizon."""
    report = CollectReport()
    keep = referenced_blobs(store)
    before = horizon(store, now)
    for sha256 in list(artifacts.iter_blobs()):
        if sha256 in keep:
            continue
        try:
            if artifacts.path(sha256).stat().st_mtime >= before:
                continue
        except FileNotFoundError:
            continue
        freed = artifacts.remove(sha256)
        report.blobs += 1
        report.bytes += freed
    for tmp in artifacts.root.glob("*.tmp"):
        try:
            if tmp.stat().st_mtime < before:
                tmp.unlink()
                report.temp_files += 1
        except FileNotFoundError:
            continue
    return report


@dataclass
class PruneReport:
    jobs: int
    blobs: int
    bytes: int
    temp_files: int

    def to_json(self) -> dict[str, int]:
        return {"jobs": self.jobs, "blobs": self.blobs, "bytes": self.bytes, "temp_files": self.temp_files}


def prune(
    store: JobStore, artifacts: ArtifactStore, older_than_s: float, now: float | None = None
) -> PruneReport:
    """Delete finished jobs whose last change is older than ``older_than_s``, then the blobs that
    only they used. Queued and running jobs are never pruned."""
    now = time.time() if now is None else now
    cutoff = _iso(datetime.fromtimestamp(now, UTC) - timedelta(seconds=older_than_s))
    terminal = sorted(M.TERMINAL_STATES)
    marks = ",".join("?" * len(terminal))
    with store.transaction() as db:
        ids = [
            row[0]
            for row in db.execute(
                f"SELECT job_id FROM jobs WHERE state IN ({marks}) AND updated < ?", (*terminal, cutoff)
            )
        ]
        db.executemany("DELETE FROM artifacts WHERE job_id = ?", [(i,) for i in ids])
        db.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
    collected = collect_garbage(store, artifacts, now)
    return PruneReport(len(ids), collected.blobs, collected.bytes, collected.temp_files)

