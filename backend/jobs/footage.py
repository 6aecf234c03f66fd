"""Job kinds ``footage.decompose`` and ``footage.insert`` (contracts: protocol/kinds_footage.py).

Scaffold while issue 13 is built on branches: the contract is in place so the add-on, the CLI and
the backend build against it; the job functions refuse clearly until the footage library lands.
"""

from __future__ import annotations

from typing import Any

from backend.jobs.api import JobContext, JobInputError, JobResult


def footage_decompose(params: Any, ctx: JobContext) -> JobResult:
    raise JobInputError("footage.decompose is not built yet (issue 13)")


def footage_insert(params: Any, ctx: JobContext) -> JobResult:
    raise JobInputError("footage.insert is not built yet (issue 13)")
