"""A finished job's results into the scene, a little per pump: download, then import in steps.

Each job's task downloads its artifacts with the protocol's stepped, ranged, hash-checked
:class:`~protocol.transfers.JobDownload` (files already in the result folder are reused only when
their sha256 matches), then runs the kind's importer generator (:mod:`.importers.dispatch`) a few
milliseconds at a time until the pump's deadline. Progress goes to the job's ``message`` (the
Jobs panel shows it: "downloading 2/7 files", "importing 3/7: vertex groups"); a task can be
cancelled at any point.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import props
from .importers.dispatch import ImportFailed, ImportOutcome, ImportRequest, import_steps, stages
from .importers.steps import StepRunner
from .wire import transfers_module

# Range size the bridge asks for: verifying (HMAC + sha256) and writing 2 MiB takes a few ms.
RANGE_BYTES = 2 << 20


@dataclass
class ResultTask:
    request: ImportRequest
    data: dict[str, Any]
    download: Any = None  # protocol.transfers.JobDownload while downloading
    runner: StepRunner | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def progress_text(self) -> str:
        if self.runner is not None:
            return self.runner.progress_text()
        if self.download is not None:
            d = self.download
            return f"downloading {d.finished_count}/{d.total} files ({100 * d.fraction:.0f}%)"
        return "waiting to import"


class ResultTasks:
    """The bridge's result tasks, by job id (a local import uses any unique key)."""

    def __init__(self, report: Callable[[str, str], None], gc_clock: Any = None) -> None:
        self.report = report
        self.gc_clock = gc_clock  # pump_clock.GcClock: step costs are given without collections
        self.tasks: dict[str, ResultTask] = {}
        self.longest_step_s = 0.0  # the slowest single import step so far (for measurements)
        # (kind, stage, wall s, CPU s) of recent import steps: what each step costs.
        self.step_costs: deque[tuple[str, str, float, float]] = deque(maxlen=2_000)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.tasks

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def progress(self, job_id: str) -> str | None:
        task = self.tasks.get(job_id)
        return task.progress_text() if task is not None else None

    def start_download(self, scene: bpy.types.Scene, item: props.AVS_JobItem, client: Any, view: Any,
                       out_dir: Path) -> None:
        item.result_dir = str(out_dir)
        item.message = "downloading results"
        download = transfers_module().JobDownload(client, item.job_id, list(view.artifacts), out_dir,
                                                  range_bytes=RANGE_BYTES)
        self.tasks[item.job_id] = ResultTask(ImportRequest.from_item(scene, item), dict(view.data or {}),
                                             download)

    def start_import(self, scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
                     arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> None:
        """Import results already on this machine (no download), e.g. a CLI output folder."""
        self.tasks[request.job_id] = ResultTask(request, dict(data), arrays=dict(arrays), files=dict(files))

    def cancel(self, job_id: str, why: str = "cancelled") -> bool:
        task = self.tasks.pop(job_id, None)
        if task is None:
            return False
        if task.download is not None:
            task.download.cancel()
        if task.runner is not None:
            task.runner.close()  # the importer removes what it half made
        self._set_message(job_id, f"import {why}")
        return True

    def cancel_all(self, why: str) -> None:
        for job_id in list(self.tasks):
            self.cancel(job_id, why)

    def step(self, deadline: float, connected: bool) -> None:
        """Work on the tasks until ``deadline`` (``time.perf_counter()``)."""
        for job_id, task in list(self.tasks.items()):
            if time.perf_counter() >= deadline:
                return
            if task.download is not None:
                self._step_download(job_id, task, deadline, connected)
            elif task.runner is None:
                self._begin_import(job_id, task)
            else:
                self._step_import(job_id, task, deadline)
            if job_id in self.tasks:
                self._set_message(job_id, task.progress_text())

    def _step_download(self, job_id: str, task: ResultTask, deadline: float, connected: bool) -> None:
        download = task.download
        if connected or download.done:
            download.step(max(0.0, deadline - time.perf_counter()))
        if not download.done:
            return
        task.download = None
        if download.error is not None:
            del self.tasks[job_id]
            self._set_message(job_id, "download failed")
            self.report("ERROR", f"results of job {job_id[:8]}: {download.error}")
            return
        task.arrays, task.files = download.arrays, download.files

    def _begin_import(self, job_id: str, task: ResultTask) -> None:
        scene = bpy.data.scenes.get(task.request.scene_name)
        if scene is None:
            del self.tasks[job_id]
            return
        steps = import_steps(scene, task.request, task.data, task.arrays, task.files)
        task.runner = StepRunner(steps, stages(task.request.kind), self.gc_clock)

    def _step_import(self, job_id: str, task: ResultTask, deadline: float) -> None:
        assert task.runner is not None
        try:
            done = task.runner.step(deadline)
        except ImportFailed as exc:
            del self.tasks[job_id]
            self._set_message(job_id, "import failed")
            self.report("ERROR", f"importing {task.request.kind} job {job_id[:8]}: {exc}")
            return
        except Exception as exc:  # an importer bug: say so on the job, never leave it "importing"
            traceback.print_exc()
            del self.tasks[job_id]
            self._set_message(job_id, "import failed (add-on error, see the console)")
            what = f"{type(exc).__name__}: {exc}"
            self.report("ERROR", f"importing {task.request.kind} job {job_id[:8]}: {what}")
            return
        finally:
            self.longest_step_s = max(self.longest_step_s, task.runner.longest_step_s)
            self.step_costs.extend((task.request.kind, *cost) for cost in task.runner.costs)
            task.runner.costs.clear()
        if done:
            del self.tasks[job_id]
            self._finish(job_id, task, task.runner.value)

    def _finish(self, job_id: str, task: ResultTask, outcome: ImportOutcome) -> None:
        for _scene, item in props.find_job(job_id):
            item.imported = True
            item.message = outcome.summary
            if outcome.target is not None:
                item.target = outcome.target
        self.report("INFO", f"imported {task.request.kind} job {job_id[:8]}: {outcome.summary}")

    @staticmethod
    def _set_message(job_id: str, text: str) -> None:
        for _scene, item in props.find_job(job_id):
            if item.message != text:
                item.message = text
