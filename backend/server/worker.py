"""The child side of the executor: one worker process runs one job at a time.

The worker is started with the ``spawn`` method, so it is a fresh interpreter: the server's
sockets, SQLite handle and threads are not inherited, and torch (imported lazily by the job
modules) lives only here. A crash, an OOM kill or a SIGKILL of this process is therefore a failed
job, never a dead server.

Messages to the server are tuples over a ``multiprocessing`` pipe (see :mod:`.executor` for the
list). A job's outputs are written to the content-addressed store *here*, and only their records
cross the pipe, so big arrays are never pickled through it.
"""

from __future__ import annotations

import importlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobCancelled, JobInputError, JobResult
from protocol.connection import DATA_DIR_ENV

from .artifacts import ArtifactNameError, ArtifactStore
from .params import internalize

# Minimum time between two progress messages of one job. Liveness only needs a few per watchdog
# period and the client's progress bar a few per second; faster ones would only load the pipe.
PROGRESS_INTERVAL_S = 0.05
_WIRE_DTYPE_KINDS = frozenset("biufc")  # what protocol/arrays.py can send as a buffer

# Exceptions whose message is meant for the user: no traceback is sent with them.
_CLEAN_ERRORS: tuple[type[BaseException], ...] = (JobInputError, ArtifactNameError)


def _clean_error_types() -> tuple[type[BaseException], ...]:
    try:  # the registry is part of the backend, but keep the worker alive if it fails to import
        from backend.models.registry import ModelMissingError
    except Exception:
        return _CLEAN_ERRORS
    return (*_CLEAN_ERRORS, ModelMissingError)


def error_record(
    exc: BaseException, clean: tuple[type[BaseException], ...] = _CLEAN_ERRORS
) -> dict[str, str]:
    """``{ename, evalue, traceback}``: how an exception crosses the process and the wire."""
    tb = "" if isinstance(exc, clean) else "".join(traceback.format_exception(exc))
    return {"ename": type(exc).__name__, "evalue": str(exc), "traceback": tb}


class WorkerContext:
    """The :class:`backend.jobs.api.JobContext` given to a job inside the worker."""

    def __init__(self, job_id: str, conn: Connection, cancel_event: Event, work_dir: Path) -> None:
        self.job_id = job_id
        self.work_dir = work_dir
        self._conn = conn
        self._cancel = cancel_event
        self._last_sent = -math.inf
        self._last_stage: str | None = None

    def progress(
        self, fraction: float, message: str = "", *, stage: str = "", preview: np.ndarray | None = None
    ) -> None:
        now = time.monotonic()
        fraction = min(max(float(fraction), 0.0), 1.0) if math.isfinite(float(fraction)) else 0.0
        # A new stage, a preview or the final 100 % always goes through; plain ticks are throttled.
        throttled = now - self._last_sent < PROGRESS_INTERVAL_S
        if throttled and stage == self._last_stage and preview is None and fraction < 1.0:
            return
        if preview is not None:
            preview = np.ascontiguousarray(preview)
        self._conn.send(("progress", self.job_id, fraction, str(stage), str(message), preview))
        self._last_sent = now
        self._last_stage = stage

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled by request")


def _store_result(result: object, store: ArtifactStore) -> tuple[dict[str, Any], list[Any]]:
    if not isinstance(result, JobResult):
        raise TypeError(f"a job must return JobResult, got {type(result).__name__}")
    try:
        data = json.loads(json.dumps(result.data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"JobResult.data must be JSON-serialisable: {exc}") from exc
    clash = set(result.arrays) & set(result.files)
    if clash:
        raise ArtifactNameError(f"artifact names used both as array and file: {sorted(clash)}")
    for name, array in result.arrays.items():
        dtype = np.asarray(array).dtype
        if dtype.kind not in _WIRE_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise TypeError(
                f"array artifact {name!r} has dtype {dtype}, which cannot travel on the wire "
                f"(bool, int, uint, float and complex only); return it as a file instead"
            )
    records = [store.store_array(name, array) for name, array in result.arrays.items()]
    records += [store.store_file(name, Path(path)) for name, path in result.files.items()]
    return data, records


def _run_one(
    conn: Connection,
    cancel_event: Event,
    store: ArtifactStore,
    job_id: str,
    target: tuple[str, str],
    params: dict[str, Any],
    work_dir: Path,
) -> None:
    clean = _clean_error_types()
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        module, name = target
        function = getattr(importlib.import_module(module), name)
        conn.send(("loaded", job_id))  # liveness: importing torch may have taken a while
        result = function(internalize(params, store), WorkerContext(job_id, conn, cancel_event, work_dir))
        data, records = _store_result(result, store)
    except JobCancelled:
        conn.send(("cancelled", job_id))
    except Exception as exc:  # any job error becomes a failed job; the worker lives on
        conn.send(("failed", job_id, error_record(exc, clean)))
    else:
        conn.send(("succeeded", job_id, data, records))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _exit_with_parent() -> None:
    """Die when the server dies (even by SIGKILL), so no orphan keeps computing or holding a GPU."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(conn: Connection, cancel_event: Event, data_dir: str, artifacts_root: str) -> None:
    """Entry point of a worker process: announce readiness, then run jobs until told to exit."""
    # Ctrl-C in the server's terminal reaches the whole process group; the server decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    os.environ[DATA_DIR_ENV] = data_dir  # the models registry finds models.toml through this
    store = ArtifactStore(artifacts_root)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "exit":
            return
        _, job_id, module, function, params, work_dir = message
        try:
            _run_one(conn, cancel_event, store, job_id, (module, function), params, Path(work_dir))
        except (BrokenPipeError, EOFError, OSError):
            return  # the server is gone or closed our pipe
        sys.stdout.flush()
        sys.stderr.flush()
