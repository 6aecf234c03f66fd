"""What a client knows about one job, and how server events and records update it.

Kept apart from the socket code so the rules (terminal is final, stale progress is dropped, a
record never resurrects a finished job) can be read and tested in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import messages as M


@dataclass
class JobView:
    """What the client knows about one job; updated from events and job records."""

    job_id: str
    kind: str | None = None
    state: str = M.QUEUED
    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    seq: int = -1
    data: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    preview: Any = None

    @property
    def terminal(self) -> bool:
        return self.state in M.TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == M.SUCCEEDED

    @property
    def result(self) -> dict[str, Any] | None:
        """``{"data": ..., "artifacts": [...]}`` once succeeded, else None."""
        return {"data": self.data or {}, "artifacts": self.artifacts} if self.succeeded else None

    def artifact(self, name: str) -> dict[str, Any] | None:
        """The artifact record called ``name`` (size, sha256, kind...), if the job has one."""
        return next((a for a in self.artifacts if a.get("name") == name), None)

    def update_from_record(self, record: dict[str, Any]) -> None:
        if self.terminal:  # terminal is final; a stale record must not resurrect the job
            return
        state = record.get("state")
        if isinstance(state, str):
            self.state = state
        if isinstance(record.get("kind"), str):
            self.kind = record["kind"]
        self._update_progress(record)
        if isinstance(record.get("data"), dict):
            self.data = record["data"]
        if isinstance(record.get("artifacts"), list):
            self.artifacts = [a for a in record["artifacts"] if isinstance(a, dict)]
        if isinstance(record.get("error"), dict):
            self.error = record["error"]

    def apply_event(self, msg_type: str, content: dict[str, Any]) -> bool:
        """Fold one server event into the view; False when it changed nothing worth reporting
        (an event after the terminal one, a stale or duplicated progress)."""
        if self.terminal:
            return False  # e.g. the terminal event re-sent after attach: we already have it
        if msg_type == M.JOB_PROGRESS:
            seq = content.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if seq <= self.seq:
                    return False
                self.seq = seq
            if self.state == M.QUEUED:
                self.state = M.RUNNING
            self._update_progress(content)
            if isinstance(content.get("preview"), np.ndarray):
                self.preview = content["preview"]
        elif msg_type == M.JOB_STATE:
            state = content.get("state")
            if state in (M.QUEUED, M.RUNNING):
                self.state = state
        else:
            self.state = M.TERMINAL_EVENT_STATE[msg_type]
            if msg_type == M.JOB_SUCCEEDED:
                self.fraction = 1.0
                self.data = content.get("data") if isinstance(content.get("data"), dict) else {}
                artifacts = content.get("artifacts")
                if isinstance(artifacts, list):
                    self.artifacts = [a for a in artifacts if isinstance(a, dict)]
            elif msg_type == M.JOB_FAILED:
                error = content.get("error")
                self.error = error if isinstance(error, dict) else {"ename": "Unknown", "evalue": str(error)}
        return True

    def _update_progress(self, content: dict[str, Any]) -> None:
        fraction = content.get("fraction")
        if isinstance(fraction, int | float) and not isinstance(fraction, bool):
            self.fraction = min(1.0, max(0.0, float(fraction)))
        for name in ("stage", "message"):
            if isinstance(content.get(name), str):
                setattr(self, name, content[name])
