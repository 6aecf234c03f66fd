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

from backend.jobs.api import JOB_KINDS, JobCancelled, JobInputError, JobResult
from backend.jobs.confine import InputRoots
from protocol.connection import DATA_DIR_ENV
from protocol.kinds import ParamError, check_result, parse

from .artifacts import ArtifactNameError, ArtifactStore
from .params import internalize

# Minimum time between two progress messages of one job. Liveness only needs a few per watchdog
# period and the client's progress bar a few per second; faster ones would only load the pipe.
PROGRESS_INTERVAL_S = 0.05
_WIRE_DTYPE_KINDS = frozenset("biufc")  # what protocol/arrays.py can send as a buffer

# Exceptions whose message is meant for the user. No traceback ever goes to a client: it goes to
# the server's log (this process's stderr is the server's), for the others only.
_CLEAN_ERRORS: tuple[type[BaseException], ...] = (JobInputError, ArtifactNameError, ParamError)


def _clean_error_types() -> tuple[type[BaseException], ...]:
    try:  # the registry is part of the backend, but keep the worker alive if it fails to import
        from backend.models.registry import ModelMissingError
    except Exception:
        return _CLEAN_ERRORS
    return (*_CLEAN_ERRORS, ModelMissingError)


def _server_paths(data_dir: str | None) -> list[tuple[str, str]]:
    """(path, placeholder) pairs to hide from clients, longest first."""
    pairs = {
        str(Path(__file__).resolve().parents[2]): "<backend>",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        str(Path.home()): "~",
    }
    if data_dir:
        pairs[str(Path(data_dir))] = "<data-dir>"
        pairs[os.path.realpath(data_dir)] = "<data-dir>"
    return sorted(((p, h) for p, h in pairs.items() if len(p) > 1), key=lambda ph: -len(ph[0]))


def redact(text: str, data_dir: str | None = None) -> str:
    """``text`` with the server's own paths (data dir, code, Python, home) replaced by placeholders."""
    for path, placeholder in _server_paths(data_dir):
        text = text.replace(path, placeholder)
    return text


def error_record(exc: BaseException, data_dir: str | None = None) -> dict[str, str]:
    """``{ename, evalue, traceback}``: how an exception crosses the process and the wire. The
    client gets the class and the message (server paths replaced); ``traceback`` stays empty."""
    return {"ename": type(exc).__name__, "evalue": redact(str(exc), data_dir)[:4000], "traceback": ""}


def log_traceback(exc: BaseException, clean: tuple[type[BaseException], ...] = _CLEAN_ERRORS) -> str:
    """The traceback for the server's log ('' for errors whose message says it all)."""
    return "" if isinstance(exc, clean) else "".join(traceback.format_exception(exc))


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


def _warn_off_contract(job_id: str, kind: str, result: JobResult) -> None:
    """A result that breaks its contract is a backend bug: say so in the server's log (stderr)."""
    try:
        problems = check_result(kind, result.data, {k: np.asarray(v) for k, v in result.arrays.items()})
    except Exception as exc:  # the check must never cost the job
        problems = [f"result check failed: {exc!r}"]
    if problems:
        print(f"avatar-studio worker: job {job_id} ({kind}) breaks its contract: {'; '.join(problems)}",
              file=sys.stderr, flush=True)


def _kind_of(target: tuple[str, str]) -> str | None:
    """The contract of the function ``target`` runs (None: an executor test's own function)."""
    for kind in JOB_KINDS.values():
        if (kind.module, kind.function) == target:
            return kind.name
    return None


def _run_one(
    conn: Connection,
    cancel_event: Event,
    store: ArtifactStore,
    job_id: str,
    target: tuple[str, str],
    params: dict[str, Any],
    work_dir: Path,
    roots: InputRoots | None = None,
) -> None:
    clean = _clean_error_types()
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = os.environ.get(DATA_DIR_ENV)
    try:
        module, name = target
        # The contract again, now with paths confined (the server checked at submit; files may
        # have changed since): the job gets typed params, never the client's raw dict.
        roots = roots or InputRoots.from_env(data_dir or work_dir)
        kind = _kind_of(target)
        raw = internalize(params, store)
        try:
            typed = raw if kind is None else parse(kind, raw, roots.resolve)
        except ParamError as exc:
            raise JobInputError(str(exc)) from None
        function = getattr(importlib.import_module(module), name)
        conn.send(("loaded", job_id))  # liveness: importing torch may have taken a while
        result = function(typed, WorkerContext(job_id, conn, cancel_event, work_dir))
        if kind is not None and isinstance(result, JobResult):
            _warn_off_contract(job_id, kind, result)
        data, records = _store_result(result, store)
    except JobCancelled:
        conn.send(("cancelled", job_id))
    except Exception as exc:  # any job error becomes a failed job; the worker lives on
        conn.send(("failed", job_id, error_record(exc, data_dir), log_traceback(exc, clean)))
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
