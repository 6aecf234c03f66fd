"""The bridge's job side: submit, cancel, attach and list through the one request table, and the
scene's job items kept in step with the client's view of each job.

A mixin of :class:`blender_addon.bridge.Bridge` (which owns the client, the table and the result
tasks); kept apart so the connection/pump code and the job bookkeeping each read on their own.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import bpy

from . import props
from .inflight import InFlight
from .wire import messages

if TYPE_CHECKING:
    from .bridge import Bridge

SUBMIT_RETRY_S = 20.0  # a submit unanswered this long by a live backend is sent again (same key)
ACTIVE_STATES = frozenset({"queued", "running"})


class JobsMixin:
    # --- submit ----------------------------------------------------------------------------------
    def submit(
        self: Bridge,
        scene: bpy.types.Scene,
        kind: str,
        params: dict[str, Any],
        *,
        target: str = "",
        frame_start: int = 1,
        meta: dict[str, Any] | None = None,
        auto_import: bool | None = None,
    ) -> props.AVS_JobItem:
        """Send a job (non-blocking) and add it to the scene's job list in state ``submitting``.

        Until the backend accepts it, the submit survives a lost connection: it is sent again
        with the same idempotency key, so the backend runs it at most once."""
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        key = uuid.uuid4().hex
        item = scene.avatar_studio.jobs.add()
        item.kind = kind
        item.state = "submitting"
        item.request_key = key
        item.target = target
        item.frame_start = frame_start
        item.auto_import = scene.avatar_studio.auto_import if auto_import is None else auto_import
        item.meta = json.dumps(meta or {})
        scene.avatar_studio.active_job_index = len(scene.avatar_studio.jobs) - 1
        scene_name = scene.name

        def send() -> Any:
            return self.client.submit_nowait(kind, params, idempotency_key=key)

        def done(request: Any) -> None:
            if request.error is not None:
                self._fail_submit(scene_name, key, str(request.error))
                return
            found = self._item_by_request(scene_name, key)
            job_id = request.reply.content.get("job_id")
            if found is not None and isinstance(job_id, str):
                found.job_id = job_id
                state = request.reply.content.get("state")
                found.state = state if state in props.TERMINAL_STATES | ACTIVE_STATES else "queued"

        self.requests.add(
            InFlight(f"submit:{key}", send, done, resend=True, retry_after_s=SUBMIT_RETRY_S,
                     on_dropped=lambda why: self._fail_submit(scene_name, key, why)),
            send_now=True,
        )
        return item

    def _item_by_request(self: Bridge, scene_name: str, key: str) -> props.AVS_JobItem | None:
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            return None
        return next((i for i in scene.avatar_studio.jobs if i.request_key == key), None)

    def _fail_submit(self: Bridge, scene_name: str, key: str, text: str) -> None:
        item = self._item_by_request(scene_name, key)
        if item is not None and item.state == "submitting":
            item.state = "failed"
            item.error = text
        self.report("ERROR", f"could not submit the job: {text}")

    # --- cancel, list, attach ----------------------------------------------------------------------
    def cancel(self: Bridge, job_id: str) -> None:
        if not self.connected:
            raise RuntimeError("not connected to a backend")

        def done(request: Any) -> None:
            if request.error is not None:
                self.report("ERROR", f"cancel of job {job_id[:8]} failed: {request.error}")

        self.requests.add(
            InFlight(f"cancel:{job_id}",
                     lambda: self.client.request_nowait(messages.CANCEL, {"job_id": job_id}), done),
            send_now=True,
        )

    def fetch_jobs(self: Bridge, scene: bpy.types.Scene, limit: int = 200) -> None:
        """Add the backend's jobs (submitted from anywhere: the CLI, another Blender) to the
        scene's list; unfinished ones are followed from then on."""
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        scene_name = scene.name
        self.requests.add(
            InFlight("list_jobs", lambda: self.client.request_nowait(messages.LIST_JOBS, {"limit": limit}),
                     lambda request: self._on_listing(scene_name, request)),
            send_now=True,
        )

    def _on_listing(self: Bridge, scene_name: str, request: Any) -> None:
        scene = bpy.data.scenes.get(scene_name)
        if request.error is not None or scene is None:
            self.report("ERROR", f"could not list the backend's jobs: {request.error}")
            return
        records = request.reply.content.get("jobs")
        known = {item.job_id for item in scene.avatar_studio.jobs}
        added = 0
        for record in records if isinstance(records, list) else []:
            job_id = record.get("job_id") if isinstance(record, dict) else None
            if not isinstance(job_id, str) or job_id in known:
                continue
            item = scene.avatar_studio.jobs.add()
            item.job_id = job_id
            item.kind = str(record.get("kind", ""))
            state = record.get("state")
            item.state = state if state in ACTIVE_STATES | props.TERMINAL_STATES else "unknown"
            fraction = record.get("fraction")
            item.fraction = float(fraction) if isinstance(fraction, int | float) else 0.0
            item.message = str(record.get("message") or "")
            error = record.get("error")
            if isinstance(error, dict):
                item.error = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}"
            item.auto_import = False  # found, not asked for: import only on request
            added += 1
        self._needs_reattach = True
        self.report("INFO", f"{added} job(s) added from the backend")

    def reattach(self: Bridge, job_id: str, *, then_import: bool = False) -> None:
        """Follow ``job_id`` again (its final state and results come back if it already ended);
        with ``then_import``, import its results once the backend has said how it ended."""
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        key = f"attach:{job_id}"
        if key in self.requests and not then_import:
            return
        if then_import:  # replaces a plain attach in flight: this one must survive a reconnect
            self.requests.add(
                InFlight(f"attach+import:{job_id}", lambda: self._send_attach(job_id),
                         lambda request: self._on_attach(job_id, request, then_import=True), resend=True),
                send_now=True,
            )
            return
        self.requests.add(
            InFlight(key, lambda: self._send_attach(job_id),
                     lambda request: self._on_attach(job_id, request)),
            send_now=True,
        )

    def _send_attach(self: Bridge, job_id: str) -> Any:
        return self.client.request_nowait(messages.ATTACH, {"job_id": job_id})

    def _on_attach(self: Bridge, job_id: str, request: Any, *, then_import: bool = False) -> None:
        if request.error is None:
            view = self.client.jobs.get(job_id) if self.client is not None else None
            if then_import and view is not None:
                if view.terminal:
                    for scene, item in props.find_job(job_id):
                        self.start_import(scene, item)
                else:  # still running: imported when it succeeds
                    for _scene, item in props.find_job(job_id):
                        item.auto_import = True
            return
        if getattr(request.error, "remote_ename", "") == messages.E_UNKNOWN_JOB:
            for _scene, item in props.find_job(job_id):
                item.state = "failed"
                item.error = "the backend no longer knows this job (was its data folder replaced?)"
            self.report("ERROR", f"job {job_id[:8]} is unknown to the backend")
        elif isinstance(request.error, self.protocol.BackendUnavailable):
            self._needs_reattach = True  # retried after the next reconnect
        else:
            self.report("ERROR", f"re-attach of job {job_id[:8]} failed: {request.error}")

    def _reattach_all(self: Bridge) -> None:
        self._needs_reattach = False
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                known = self.client.jobs.get(item.job_id)
                unfinished = item.state not in props.TERMINAL_STATES
                if item.job_id and unfinished and (known is None or not known.terminal):
                    self.reattach(item.job_id)

    # --- the scenes' job items ------------------------------------------------------------------------
    def _sync_jobs(self: Bridge) -> None:
        """Copy the client's view of every job into the scenes' job items; act on terminal states."""
        if self.client is None:
            return
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                view = self.client.jobs.get(item.job_id) if item.job_id else None
                if view is None or item.state in props.TERMINAL_STATES:
                    continue  # a final state is final; its message now belongs to the importer
                if view.state in props.TERMINAL_STATES or view.state in ACTIVE_STATES:
                    item.state = view.state
                item.fraction = view.fraction
                item.stage = view.stage or ""
                item.message = view.message or ""
                if view.error:
                    item.error = f"{view.error.get('ename', 'Error')}: {view.error.get('evalue', '')}"
                if view.terminal:
                    self._on_terminal(scene, item, view)

    def _on_terminal(self: Bridge, scene: bpy.types.Scene, item: props.AVS_JobItem, view: Any) -> None:
        if view.state == "succeeded":
            self.report("INFO", f"{item.kind} job {item.job_id[:8]} succeeded")
            if item.auto_import and not item.imported:
                self.start_import(scene, item)
        elif view.state == "failed":
            self.report("ERROR", f"{item.kind} job {item.job_id[:8]} failed: {item.error}")
        else:
            self.report("INFO", f"{item.kind} job {item.job_id[:8]} was cancelled")

    def on_file_loaded(self: Bridge) -> None:
        """Jobs saved in the loaded file are re-attached on the next pump; jobs the file saved
        while they were still being submitted never got an id and cannot be found again."""
        self._needs_reattach = True
        self.requests.drop_all("a file was loaded")
        self.results.cancel_all("stopped: a file was loaded")
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                if item.state == "submitting" and not item.job_id:
                    item.state = "failed"
                    item.error = "the file was saved before the backend accepted this job; submit it again"
