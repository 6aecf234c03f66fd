"""The job table and artifact records, in SQLite under the data dir.

SQLite gives real transactions in one file with no server; WAL mode lets a reader (``jobs`` from
the CLI, a test) look while the server writes. Only the server process writes, from its single
event-loop thread. Every state change goes through :meth:`JobStore.transition`, which enforces the
state machine of docs/protocol.md (a finished job never changes again).

Restart policy: a job found ``queued`` or ``running`` when a server opens the store belonged to a
server that died (SIGKILL, power loss). Its worker is gone and its params may not be safe to rerun,
so it is marked ``failed`` with ``ename = "ServerRestarted"``; clients may resubmit it (with the
same idempotency key they get the failed job back, so they choose a new key to retry).

Owners: every job records the client id that submitted it (backend/server/identity.py);
idempotency keys are scoped per owner, so one client's key never finds (or reveals) another's job.
Schema 1 stores (no owner, keys unique across all clients) are migrated on open: their jobs
belong to ``local``, the data dir's owner.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol import messages as m
from protocol.session import loads_strict

from .artifacts import ArtifactRecord

SCHEMA_VERSION = 2
DEFAULT_OWNER = "local"  # backend/server/identity.py LOCAL_CLIENT_ID; the data dir's owner
log = logging.getLogger(__name__)
_REPORTED_DAMAGE: set[str] = set()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    params          TEXT NOT NULL,              -- JSON object
    state           TEXT NOT NULL,
    fraction        REAL NOT NULL DEFAULT 0,
    stage           TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,                       -- unique per owner (NULLs never collide)
    created         TEXT NOT NULL,              -- ISO 8601 UTC
    updated         TEXT NOT NULL,
    seq             INTEGER NOT NULL DEFAULT 0, -- submission order (stable sort for list_jobs)
    error           TEXT,                       -- JSON {ename, evalue, traceback} when failed
    result          TEXT,                       -- JSON data object when succeeded
    owner           TEXT NOT NULL DEFAULT 'local', -- client id that submitted it
    UNIQUE (owner, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
CREATE TABLE IF NOT EXISTS artifacts (
    job_id     TEXT NOT NULL REFERENCES jobs(job_id),
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    kind       TEXT NOT NULL,                   -- array | file
    media_type TEXT NOT NULL,
    dtype      TEXT,
    shape      TEXT,                            -- JSON list for arrays
    PRIMARY KEY (job_id, name)
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IdempotencyConflict(ValueError):
    """The idempotency key is already used by a job of another kind or with other params."""


class InvalidTransition(RuntimeError):
    pass


@dataclass
class Job:
    job_id: str
    kind: str
    params: dict[str, Any]
    state: str
    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    idempotency_key: str | None = None
    created: str = ""
    updated: str = ""
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    damaged: str | None = None  # why a stored column could not be read (see _load_column)
    owner: str = DEFAULT_OWNER

    @property
    def terminal(self) -> bool:
        return self.state in m.TERMINAL_STATES

    def to_wire(self) -> dict[str, Any]:
        """The job record of docs/protocol.md §4."""
        record: dict[str, Any] = {
            "job_id": self.job_id,
            "kind": self.kind,
            "state": self.state,
            "fraction": self.fraction,
            "stage": self.stage,
            "message": self.message,
            "created": self.created,
            "updated": self.updated,
            "idempotency_key": self.idempotency_key,
            "params": self.params,
            "owner": self.owner,
        }
        if self.state == m.SUCCEEDED:
            record["artifacts"] = [a.to_wire() for a in self.artifacts]
            record["data"] = self.result or {}
        if self.error is not None:
            record["error"] = self.error
        if self.damaged is not None:
            record["damaged"] = self.damaged
        return record


def _load_column(row: sqlite3.Row, column: str, problems: list[str]) -> Any:
    """A JSON column read as strictly as the wire reads messages. A value that cannot be decoded,
    or that no reply could carry (``Infinity`` written by an older server), is replaced by an empty
    object and noted, so one bad row is reported in listings instead of failing all of them."""
    text = row[column]
    if not text:
        return None
    try:
        return loads_strict(text)
    except Exception as exc:  # ProtocolError for NaN/Infinity, ValueError for broken JSON
        problems.append(f"{column}: {str(exc)[:120]}")
        return {}


def _artifact_from_row(row: sqlite3.Row) -> ArtifactRecord:
    shape = tuple(json.loads(row["shape"])) if row["shape"] is not None else None
    return ArtifactRecord(
        row["name"], row["kind"], row["sha256"], row["size"], row["media_type"], row["dtype"], shape
    )


class JobStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so every change is one explicit
        # transaction. One thread uses the store at a time (the server's loop), but that need not be
        # the thread that opened it (a server started in one thread and run in another).
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a reported result survives power loss
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate_v1()
        # executescript commits on its own, so it runs outside an explicit transaction.
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2: add ``owner`` (old jobs: the data dir's owner) and scope idempotency keys
        per owner. SQLite cannot drop a column's UNIQUE, so the table is rebuilt in one transaction."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if not columns or "owner" in columns:
            return
        self.db.execute("PRAGMA foreign_keys=OFF")  # artifacts reference jobs while it is swapped
        try:
            with self.transaction() as db:
                # The order SQLite documents for a rebuild: new table, copy, drop, rename (renaming
                # the old table instead would repoint the artifacts' foreign key at it).
                db.execute(_SCHEMA.split(";")[0].replace("IF NOT EXISTS jobs (", "jobs_v2 ("))
                db.execute(
                    "INSERT INTO jobs_v2 (job_id, kind, params, state, fraction, stage, message,"
                    " idempotency_key, created, updated, seq, error, result, owner)"
                    " SELECT job_id, kind, params, state, fraction, stage, message, idempotency_key,"
                    " created, updated, seq, error, result, ? FROM jobs", (DEFAULT_OWNER,)
                )
                db.execute("DROP TABLE jobs")
                db.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
        finally:
            self.db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- reading ---------------------------------------------------------------------------------

    def _job_from_row(self, row: sqlite3.Row) -> Job:
        problems: list[str] = []
        job = Job(
            job_id=row["job_id"],
            kind=row["kind"],
            params=_load_column(row, "params", problems) or {},
            state=row["state"],
            fraction=row["fraction"],
            stage=row["stage"],
            message=row["message"],
            idempotency_key=row["idempotency_key"],
            created=row["created"],
            updated=row["updated"],
            error=_load_column(row, "error", problems),
            result=_load_column(row, "result", problems),
            owner=row["owner"],
        )
        if problems:
            job.damaged = "stored record unreadable, shown without it: " + "; ".join(problems)
            if job.job_id not in _REPORTED_DAMAGE:  # once per row: listings may be frequent
                _REPORTED_DAMAGE.add(job.job_id)
                log.warning("job %s: %s", job.job_id, job.damaged)
        if job.state == m.SUCCEEDED:
            job.artifacts = self.artifacts(job.job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._job_from_row(row) if row else None

    def by_idempotency_key(self, key: str, owner: str = DEFAULT_OWNER) -> Job | None:
        row = self.db.execute(
            "SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, key)
        ).fetchone()
        return self._job_from_row(row) if row else None

    def list(
        self, states: Iterable[str] | None = None, limit: int | None = None, owner: str | None = None
    ) -> list[Job]:
        """Newest first; ``owner``: only that client's jobs (None: everybody's)."""
        sql, args, where = "SELECT * FROM jobs", [], []
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._job_from_row(row) for row in self.db.execute(sql, args).fetchall()]

    def artifacts(self, job_id: str) -> list[ArtifactRecord]:
        rows = self.db.execute("SELECT * FROM artifacts WHERE job_id = ? ORDER BY name", (job_id,))
        return [_artifact_from_row(row) for row in rows.fetchall()]

    def artifact(self, job_id: str, name: str) -> ArtifactRecord | None:
        row = self.db.execute("SELECT * FROM artifacts WHERE job_id = ? AND name = ?", (job_id, name))
        found = row.fetchone()
        return _artifact_from_row(found) if found else None

    # --- writing ---------------------------------------------------------------------------------

    def create(
        self, kind: str, params: dict[str, Any], idempotency_key: str | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> tuple[Job, bool]:
        """Insert a queued job owned by ``owner``; with an idempotency key that owner used before,
        return that job instead.

        Returns ``(job, duplicate)``. Raises :class:`IdempotencyConflict` when the key is reused for
        a different kind or different params (a client bug that must not silently return the wrong
        job).
        """
        # allow_nan=False: never store what no reply could carry (the wire refuses it already).
        params_json = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
        with self.transaction() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, idempotency_key)
                ).fetchone()
                if row is not None:
                    if row["kind"] != kind or json.loads(row["params"]) != json.loads(params_json):
                        raise IdempotencyConflict(
                            f"idempotency key {idempotency_key!r} already names job {row['job_id']} "
                            f"of kind {row['kind']!r} with other params"
                        )
                    return self._job_from_row(row), True
            now = utc_now()
            job_id = uuid.uuid4().hex
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute(
                "INSERT INTO jobs (job_id, kind, params, state, idempotency_key, created, updated, seq,"
                " owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, params_json, m.QUEUED, idempotency_key, now, now, seq, owner),
            )
        job = self.get(job_id)
        assert job is not None
        return job, False

    def transition(
        self,
        job_id: str,
        new_state: str,
        *,
        error: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        artifacts: Iterable[ArtifactRecord] = (),
        message: str | None = None,
    ) -> Job:
        """Move a job to ``new_state`` (and record its result/artifacts) in one transaction."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            if not m.can_transition(row["state"], new_state):
                raise InvalidTransition(f"job {job_id}: {row['state']} -> {new_state} is not allowed")
            fraction_sql = ", fraction = 1.0" if new_state == m.SUCCEEDED else ""
            db.execute(
                f"UPDATE jobs SET state = ?, updated = ?, error = ?, result = ?,"
                f" message = COALESCE(?, message){fraction_sql} WHERE job_id = ?",
                (
                    new_state,
                    utc_now(),
                    json.dumps(error, allow_nan=False) if error is not None else None,
                    json.dumps(result, allow_nan=False) if result is not None else None,
                    message,
                    job_id,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO artifacts"
                " (job_id, name, sha256, size, kind, media_type, dtype, shape)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        job_id,
                        a.name,
                        a.sha256,
                        a.size,
                        a.kind,
                        a.media_type,
                        a.dtype,
                        json.dumps(list(a.shape)) if a.shape is not None else None,
                    )
                    for a in artifacts
                ],
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def set_progress(self, job_id: str, fraction: float, stage: str, message: str) -> None:
        """Record the latest progress of a running job (no state change)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET fraction = ?, stage = ?, message = ?, updated = ?"
                " WHERE job_id = ? AND state = ?",
                (fraction, stage, message, utc_now(), job_id, m.RUNNING),
            )

    def fail_unfinished(self, reason: str, ename: str = "ServerRestarted") -> list[str]:
        """Mark every queued/running job failed (their server is gone). Returns their ids."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE state IN (?, ?)", (m.QUEUED, m.RUNNING)
            ).fetchall()
            error = json.dumps({"ename": ename, "evalue": reason, "traceback": ""})
            db.executemany(
                "UPDATE jobs SET state = ?, error = ?, updated = ? WHERE job_id = ?",
                [(m.FAILED, error, utc_now(), row["job_id"]) for row in rows],
            )
        return [row["job_id"] for row in rows]
