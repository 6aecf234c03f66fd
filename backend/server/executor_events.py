"""What :meth:`Executor.service` reports: a job started, progressed, succeeded, failed or was cancelled.

The executor (executor.py) knows nothing about the job store or the wire; the server turns these
events into state changes and messages (events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .artifacts import ArtifactRecord


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    pid: int


@dataclass(frozen=True)
class JobProgressed:
    job_id: str
    fraction: float
    stage: str
    message: str
    preview: np.ndarray | None = None


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    data: dict[str, Any]
    artifacts: list[ArtifactRecord]


@dataclass(frozen=True)
class JobFailed:
    job_id: str
    error: dict[str, str]  # {ename, evalue, traceback}


@dataclass(frozen=True)
class JobCancelledEvent:
    job_id: str


ExecutorEvent = JobStarted | JobProgressed | JobSucceeded | JobFailed | JobCancelledEvent
