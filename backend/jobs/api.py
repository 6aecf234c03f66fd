"""The contract between the job server and the pipelines.

A job kind is a plain function ``run(params, ctx: JobContext) -> JobResult`` registered under a
dotted name (``system.sleep``, ``body.preview``, ``avatar.from_views``...). ``params`` are the typed
params of the kind's contract (``protocol/kinds.py``): the worker builds them with paths confined
to the server's input roots; trusted local callers (the CLI, tests) may pass a plain dict, parsed
with :func:`typed_params` (paths not confined). It knows nothing about
sockets or the job store: the worker process calls it with a context whose ``progress`` sends events
to the server and whose ``check_cancelled`` raises :class:`JobCancelled` once a cancel arrived.
This module must stay light (no torch import) because the server imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from protocol.kinds import KINDS


class JobCancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""


class JobInputError(ValueError):
    """Bad parameters or inputs: the job fails with this message, the server keeps serving."""


class JobContext(Protocol):
    """What a running job may use: progress reporting, cancellation and a scratch directory."""

    work_dir: Path

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        stage: str = "",
        preview: np.ndarray | None = None,
    ) -> None:
        """Report progress in [0, 1]. Also serves as the liveness signal the watchdog expects."""
        ...

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if a cancel request arrived."""
        ...


@dataclass
class JobResult:
    """What a job returns.

    ``data``   small JSON-able summary (sent inline in the terminal event).
    ``arrays`` named numpy arrays; stored as ``.npy`` artifacts and sent as raw buffer frames.
    ``files``  named files on disk (PNG frames, mp4, glb, obj...); names may contain ``/`` to
               form folders, e.g. ``rgb/0001.png``. Stored content-addressed before the job is
               announced finished.
    """

    data: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


JobFunction = Callable[[Any, JobContext], JobResult]


def typed_params(kind: str, params: Any) -> Any:
    """``params`` as the typed params of ``kind``: returned as is when already typed; a mapping
    (trusted local callers) is parsed against the contract without path confinement.
    Contract violations raise :class:`JobInputError` naming the field."""
    from protocol.kinds import ParamError, contract, parse

    if isinstance(params, contract(kind).params_class):
        return params
    from .confine import InputRoots

    try:
        return parse(kind, params, InputRoots.unconfined().resolve)
    except ParamError as exc:
        raise JobInputError(str(exc)) from None


@dataclass(frozen=True)
class JobKind:
    name: str
    module: str
    function: str
    description: str
    watchdog_s: float = 60.0  # no progress for this long => the worker is considered stuck

    def load(self) -> JobFunction:
        return getattr(importlib.import_module(self.module), self.function)


# Registry of job kinds. Modules are imported lazily, inside the worker process, so the server
# never pays for (or depends on) torch. A new kind starts with its contract in protocol/kinds.py.
JOB_KINDS: dict[str, JobKind] = {
    k.name: k
    for k in [
        JobKind("system.info", "backend.jobs.system", "system_info", KINDS["system.info"].summary),
        JobKind("system.sleep", "backend.jobs.system", "system_sleep", KINDS["system.sleep"].summary, 10.0),
        JobKind("body.preview", "backend.jobs.body", "body_preview", KINDS["body.preview"].summary, 120.0),
        JobKind("body.mesh", "backend.jobs.body", "body_mesh", KINDS["body.mesh"].summary, 120.0),
        JobKind(
            "avatar.from_views",
            "backend.jobs.avatar",
            "avatar_from_views",
            KINDS["avatar.from_views"].summary,
            300.0,
        ),
        JobKind("clips.render", "backend.jobs.clips", "clips_render", KINDS["clips.render"].summary, 300.0),
        # Loading SD 1.5 from disk and one denoising step of 8 views may each take a minute or more.
        JobKind("avatar.from_text", "backend.jobs.generate_avatar", "avatar_from_text",
                KINDS["avatar.from_text"].summary, 600.0),
        JobKind("avatar.from_image", "backend.jobs.generate_avatar", "avatar_from_image",
                KINDS["avatar.from_image"].summary, 600.0),
        JobKind("footage.decompose", "backend.jobs.footage_decompose", "footage_decompose",
                KINDS["footage.decompose"].summary, 300.0),
        JobKind("footage.insert", "backend.jobs.footage", "footage_insert",
                KINDS["footage.insert"].summary, 300.0),
        JobKind("avatar.from_noise", "backend.jobs.threedgm_avatar", "avatar_from_noise",
                KINDS["avatar.from_noise"].summary, 300.0),
        JobKind("avatar.from_image_inversion", "backend.jobs.threedgm_avatar", "avatar_from_image_inversion",
                KINDS["avatar.from_image_inversion"].summary, 300.0),
    ]
}
assert set(JOB_KINDS) == set(KINDS), "every contract in protocol/kinds.py has a job function and back"


def get_job_kind(name: str) -> JobKind:
    try:
        return JOB_KINDS[name]
    except KeyError:
        raise JobInputError(
            f"unknown job kind {name!r}; known kinds: {', '.join(sorted(JOB_KINDS))}"
        ) from None
