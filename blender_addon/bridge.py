"""The bridge between Blender and the backend: the protocol client's non-blocking ``pump()`` driven
by a ``bpy.app.timers`` timer on the main thread.

- Socket I/O never blocks: submits, cancels, attaches and artifact downloads are sent with
  ``request_nowait`` and their replies collected on later pumps. One pump does a bounded amount of
  work (a few milliseconds of socket reads) plus bookkeeping, so Blender stays responsive.
- ``bpy`` data is touched only here, on the main thread (timers run there).
- The job list lives in each scene (``scene.avatar_studio.jobs``), saved with the .blend. After a
  reconnect, a backend restart (new address or key: the connection file is re-read while the
  backend is lost) or a file load (a persistent ``load_post`` handler), every unfinished job is
  re-attached and its state comes back from the backend.
- A lost backend shows in the UI once the client hears nothing for ``DEAD_AFTER_S`` seconds.

Timers never fire in ``bpy``-as-a-module (tests, headless scripts): call :func:`pump` directly.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import zmq  # for its error type only: all traffic goes through protocol.client
from bpy.app.handlers import persistent

from . import props
from .downloads import DownloadTask
from .wire import client_module, messages, protocol

PUMP_INTERVAL_S = 0.1  # timer period while connected or connecting
IDLE_INTERVAL_S = 0.5  # timer period with nothing to do
PUMP_BUDGET_S = 0.01  # socket reads per pump
DEAD_AFTER_S = 3.0  # silence before the backend is shown as lost
CONNECTION_FILE_RECHECK_S = 1.0  # while lost: look for a restarted backend's new connection file
SUBMIT_RETRY_S = 20.0  # a submit unanswered this long by a live backend is sent again (same key)


@dataclass
class PendingSubmit:
    """A submit not yet accepted. Kept (with its parameters) until the backend answers: if the
    connection drops first, it is sent again after the reconnect with the same idempotency key,
    so the backend runs it at most once."""

    request: Any  # protocol.client.PendingRequest; None while waiting to be re-sent
    scene_name: str
    request_key: str
    kind: str
    params: dict[str, Any]
    sent_at: float = 0.0


class Bridge:
    """One per Blender session (module singleton, see :func:`get_bridge`)."""

    def __init__(self) -> None:
        self.client: Any = None
        self.status = "disconnected"  # disconnected | connecting | connected | lost | error
        self.status_detail = ""
        self.want_connection = False
        self.connection_override: Any = None  # a ConnectionInfo or a path; else the preferences
        self.download_root_override: Path | None = None
        self.last_pump_s = 0.0
        self.max_pump_s = 0.0
        self.log: deque[tuple[str, str]] = deque(maxlen=100)
        self._client_identity: tuple[str, str] | None = None
        self._last_source_check = 0.0
        self._pending_submits: list[PendingSubmit] = []
        self._attaching: dict[str, Any] = {}
        self._cancelling: dict[str, Any] = {}
        self._downloads: dict[str, DownloadTask] = {}
        self._import_when_known: set[str] = set()
        self._listing: tuple[str, Any] | None = None  # (scene name, pending list_jobs request)
        self._needs_reattach = False
        self._last_internal_error = ""

    # --- status ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.client.backend_alive)

    def has_job_kind(self, kind: str) -> bool:
        """Whether the connected backend offers ``kind`` (from its hello reply)."""
        kinds = self.client.server_info.get("job_kinds") if self.client is not None else None
        return isinstance(kinds, list) and any(isinstance(k, dict) and k.get("name") == kind for k in kinds)

    def status_text(self) -> str:
        text = {
            "disconnected": "Not connected",
            "connecting": "Connecting...",
            "connected": "Connected",
            "lost": "Backend lost, reconnecting...",
            "error": "Cannot connect",
        }[self.status]
        return f"{text}: {self.status_detail}" if self.status_detail else text

    def status_icon(self) -> str:
        return {"connected": "CHECKMARK", "connecting": "TIME", "lost": "ERROR", "error": "CANCEL"}.get(
            self.status, "UNLINKED"
        )

    def report(self, level: str, text: str) -> None:
        """Record a message and show it in Blender's info area (from a timer there is no operator
        to report through, so a tiny operator does it)."""
        self.log.append((level, text))
        print(f"Avatar Studio {level}: {text}")
        # Operator not registered (bridge used alone) or no context: the log still has the message.
        with contextlib.suppress(AttributeError, RuntimeError):
            bpy.ops.avatar_studio.show_report(level=level, message=text[:1000])

    # --- connection --------------------------------------------------------------------------------
    def connect(self, source: Any = None) -> None:
        """Start connecting (returns at once); ``source`` overrides the preferences: a connection
        file path or a ``ConnectionInfo``."""
        if source is not None:
            self.connection_override = source
        self.want_connection = True
        self._drop_client()
        self._try_make_client()
        ensure_timer()

    def disconnect(self) -> None:
        self.want_connection = False
        self._drop_client()
        for pending in self._pending_submits:
            self._fail_submit(pending, "disconnected before the backend accepted the job")
        self._pending_submits.clear()
        self.status, self.status_detail = "disconnected", ""

    def _drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        self._client_identity = None
        self._attaching.clear()
        self._cancelling.clear()
        for pending in self._pending_submits:
            pending.request = None  # re-sent (same idempotency key) once a backend answers
        for task in self._downloads.values():
            task.error = task.error or "the connection was reset during the download"

    def _connection_info(self) -> Any:
        source = self.connection_override
        if source is None:
            from .preferences import connection_file, get_preferences

            prefs = get_preferences()
            if prefs is not None and prefs.connection_mode == "ADDRESS":
                return protocol.ConnectionInfo(address=prefs.address.strip(), key=prefs.key)
            source = connection_file(prefs)
        if isinstance(source, protocol.ConnectionInfo):
            return source
        return protocol.read_connection_file(Path(source))

    def _try_make_client(self) -> None:
        self._last_source_check = time.monotonic()
        try:
            info = self._connection_info()
        except protocol.ProtocolError as exc:
            self.status, self.status_detail = "error", str(exc)
            return
        identity = (info.address, info.key)
        if identity == self._client_identity and self.client is not None:
            return
        self._drop_client()
        client_cls = client_module().Client
        try:
            self.client = client_cls(
                info,
                dead_after_s=DEAD_AFTER_S,
                reconnect_interval_s=0.5,
                client_name="avatar-studio-blender",
                client_version=_addon_version(),
            )
            self.client.start()
        except (protocol.ProtocolError, zmq.ZMQError, OSError) as exc:  # e.g. a malformed address
            self.client = None
            self.status, self.status_detail = "error", f"{info.address}: {exc}"
            return
        self._client_identity = identity
        self._needs_reattach = True
        self.status, self.status_detail = "connecting", info.address

    # --- the pump ----------------------------------------------------------------------------------
    def pump(self, budget_s: float = PUMP_BUDGET_S) -> None:
        """One bounded round of work. Never raises: errors go to the info area and the log."""
        started = time.perf_counter()
        try:
            self._pump(budget_s)
        except Exception as exc:  # a timer that raises is dropped by Blender: keep the bridge alive
            text = f"internal error in the bridge: {exc!r}"
            if text != self._last_internal_error:  # once per distinct error, not ten times a second
                self._last_internal_error = text
                self.report("ERROR", text)
                traceback.print_exc()
        self.last_pump_s = time.perf_counter() - started
        self.max_pump_s = max(self.max_pump_s, self.last_pump_s)

    def _pump(self, budget_s: float) -> None:
        if not self.want_connection:
            return
        now = time.monotonic()
        if self.client is None:
            if now - self._last_source_check >= CONNECTION_FILE_RECHECK_S:
                self._try_make_client()
            return
        for event in self.client.pump(budget_s=budget_s):
            self._on_event(event)
        if not self.client.backend_alive and now - self._last_source_check >= CONNECTION_FILE_RECHECK_S:
            # A restarted backend may listen elsewhere with a new key: follow its connection file.
            self._try_make_client()
            if self.client is None:
                return
        if self.client.fatal_error is not None:
            self.status, self.status_detail = "error", str(self.client.fatal_error)
        if self.connected:
            if self._needs_reattach:
                self._reattach_all()
            self._collect_submits()
            self._collect_attaches()
            self._collect_cancels()
            self._collect_listing()
            # Only while connected: a lost backend's last known states are stale ("unknown").
            self._sync_jobs()
        self._step_downloads()

    def _on_event(self, event: Any) -> None:
        client_mod = client_module()
        if event.type in (client_mod.CONNECTED, client_mod.BACKEND_RESTORED):
            self.status, self.status_detail = "connected", self.client.info.address
            self._needs_reattach = True
            if event.type == client_mod.BACKEND_RESTORED:
                self.report("INFO", f"backend at {self.client.info.address} is back; re-attaching jobs")
        elif event.type == client_mod.BACKEND_LOST:
            self.status, self.status_detail = "lost", self.client.info.address
            lost = [item for item in props.active_jobs()]
            for item in lost:
                item.state = "unknown"
                item.message = "backend lost; the job is re-attached when it is back"
            self.report(
                "ERROR",
                f"lost the backend at {self.client.info.address} "
                f"({len(lost)} unfinished job(s) will be re-attached)",
            )
        elif event.type == messages.ERROR:
            self.report(
                "WARNING", f"backend error: {event.content.get('ename')}: {event.content.get('evalue')}"
            )

    # --- jobs ----------------------------------------------------------------------------------------
    def submit(
        self,
        scene: bpy.types.Scene,
        kind: str,
        params: dict[str, Any],
        *,
        target: str = "",
        frame_start: int = 1,
        meta: dict[str, Any] | None = None,
        auto_import: bool | None = None,
    ) -> props.AVS_JobItem:
        """Send a job (non-blocking) and add it to the scene's job list in state ``submitting``."""
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
        pending = PendingSubmit(None, scene.name, key, kind, params)
        self._send_submit(pending)
        self._pending_submits.append(pending)
        return item

    def _send_submit(self, pending: PendingSubmit) -> None:
        pending.sent_at = time.monotonic()
        pending.request = self.client.submit_nowait(
            pending.kind, pending.params, idempotency_key=pending.request_key
        )

    def _item_by_request(self, pending: PendingSubmit) -> props.AVS_JobItem | None:
        scene = bpy.data.scenes.get(pending.scene_name)
        if scene is None:
            return None
        return next((i for i in scene.avatar_studio.jobs if i.request_key == pending.request_key), None)

    def _fail_submit(self, pending: PendingSubmit, text: str) -> None:
        item = self._item_by_request(pending)
        if item is not None and item.state == "submitting":
            item.state = "failed"
            item.error = text
        self.report("ERROR", f"could not submit the job: {text}")

    def _collect_submits(self) -> None:
        still: list[PendingSubmit] = []
        for pending in self._pending_submits:
            request = pending.request
            if request is None:
                self._send_submit(pending)  # connected again: same key, so never run twice
                still.append(pending)
            elif not request.done:
                if time.monotonic() - pending.sent_at > SUBMIT_RETRY_S:
                    self._send_submit(pending)  # no answer from a live backend: ask again, same key
                still.append(pending)
            elif isinstance(request.error, protocol.BackendUnavailable):
                pending.request = None  # the connection dropped before the reply: send it again
                still.append(pending)
            elif request.error is not None:
                self._fail_submit(pending, str(request.error))
            else:
                item = self._item_by_request(pending)
                job_id = request.reply.content.get("job_id")
                if item is not None and isinstance(job_id, str):
                    item.job_id = job_id
                    state = request.reply.content.get("state")
                    item.state = state if state in props.TERMINAL_STATES | {"queued", "running"} else "queued"
        self._pending_submits = still

    def cancel(self, job_id: str) -> None:
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        self._cancelling[job_id] = self.client.request_nowait(messages.CANCEL, {"job_id": job_id})

    def _collect_cancels(self) -> None:
        for job_id, request in list(self._cancelling.items()):
            if request.done:
                del self._cancelling[job_id]
                if request.error is not None:
                    self.report("ERROR", f"cancel of job {job_id[:8]} failed: {request.error}")

    def fetch_jobs(self, scene: bpy.types.Scene, limit: int = 200) -> None:
        """Add the backend's jobs (submitted from anywhere: the CLI, another Blender) to the
        scene's list; unfinished ones are followed from then on."""
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        self._listing = (scene.name, self.client.request_nowait(messages.LIST_JOBS, {"limit": limit}))

    def _collect_listing(self) -> None:
        if self._listing is None or not self._listing[1].done:
            return
        scene_name, request = self._listing
        self._listing = None
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
            item.state = state if state in ("queued", "running", *props.TERMINAL_STATES) else "unknown"
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

    def reattach(self, job_id: str) -> None:
        """Follow ``job_id`` again (its final state and results come back if it already ended)."""
        if not self.connected:
            raise RuntimeError("not connected to a backend")
        if job_id not in self._attaching:
            self._attaching[job_id] = self.client.request_nowait(messages.ATTACH, {"job_id": job_id})

    def _reattach_all(self) -> None:
        self._needs_reattach = False
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                known = self.client.jobs.get(item.job_id)
                wanted = item.state not in props.TERMINAL_STATES or item.job_id in self._import_when_known
                if item.job_id and wanted and (known is None or not known.terminal):
                    self.reattach(item.job_id)

    def _collect_attaches(self) -> None:
        for job_id, request in list(self._attaching.items()):
            if not request.done:
                continue
            del self._attaching[job_id]
            if request.error is None:
                continue
            remote = getattr(request.error, "remote_ename", "")
            if remote == messages.E_UNKNOWN_JOB:
                for _scene, item in props.find_job(job_id):
                    item.state = "failed"
                    item.error = "the backend no longer knows this job (was its data folder replaced?)"
                self._import_when_known.discard(job_id)
                self.report("ERROR", f"job {job_id[:8]} is unknown to the backend")
            elif isinstance(request.error, protocol.BackendUnavailable):
                self._needs_reattach = True  # retried after the next reconnect
            else:
                self.report("ERROR", f"re-attach of job {job_id[:8]} failed: {request.error}")

    def _sync_jobs(self) -> None:
        """Copy the client's view of every job into the scenes' job items; act on terminal states."""
        if self.client is None:
            return
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                view = self.client.jobs.get(item.job_id) if item.job_id else None
                if view is None:
                    continue
                was_terminal = item.state in props.TERMINAL_STATES
                if was_terminal:
                    if item.job_id in self._import_when_known and view.terminal:
                        self._import_when_known.discard(item.job_id)
                        self.start_import(scene, item)
                    continue  # a final state is final; its message now belongs to the importer
                if view.state in props.TERMINAL_STATES or view.state in ("queued", "running"):
                    item.state = view.state
                item.fraction = view.fraction
                item.stage = view.stage or ""
                item.message = view.message or ""
                if view.error:
                    item.error = f"{view.error.get('ename', 'Error')}: {view.error.get('evalue', '')}"
                if view.terminal:
                    self._on_terminal(scene, item, view)

    def _on_terminal(self, scene: bpy.types.Scene, item: props.AVS_JobItem, view: Any) -> None:
        if view.state == "succeeded":
            self.report("INFO", f"{item.kind} job {item.job_id[:8]} succeeded")
            if item.auto_import and not item.imported:
                self.start_import(scene, item)
        elif view.state == "failed":
            self.report("ERROR", f"{item.kind} job {item.job_id[:8]} failed: {item.error}")
        else:
            self.report("INFO", f"{item.kind} job {item.job_id[:8]} was cancelled")

    # --- results -------------------------------------------------------------------------------------
    def download_root(self) -> Path:
        if self.download_root_override is not None:
            return Path(self.download_root_override)
        from .preferences import get_preferences

        prefs = get_preferences()
        if prefs is not None and prefs.download_dir:
            return Path(bpy.path.abspath(prefs.download_dir))
        if bpy.data.filepath:
            return Path(bpy.path.abspath("//avatar_studio_results"))
        return Path(tempfile.gettempdir()) / "avatar_studio_results"

    def start_import(self, scene: bpy.types.Scene, item: props.AVS_JobItem) -> None:
        """Download the job's artifacts (non-blocking) and import them when complete."""
        if item.job_id in self._downloads:
            return
        view = self.client.jobs.get(item.job_id) if self.client is not None else None
        if view is None or not view.terminal:
            # After a file load the client does not know the job yet: attach, then import.
            self._import_when_known.add(item.job_id)
            if self.connected:
                self.reattach(item.job_id)
            return
        if not view.succeeded:
            self.report("ERROR", f"job {item.job_id[:8]} is {view.state}: nothing to import")
            return
        out_dir = self.download_root() / item.job_id
        item.result_dir = str(out_dir)
        item.message = "downloading results"
        self._downloads[item.job_id] = DownloadTask(item.job_id, out_dir, list(view.artifacts))

    def _step_downloads(self) -> None:
        for job_id, task in list(self._downloads.items()):
            if not task.done and self.connected:
                task.step(self.client, messages.GET_ARTIFACT)
            if not task.done:
                continue
            del self._downloads[job_id]
            places = props.find_job(job_id)
            if task.error:
                for _scene, item in places:
                    item.message = "download failed"
                self.report("ERROR", f"results of job {job_id[:8]}: {task.error}")
                continue
            for scene, item in places:
                self._import(scene, item, task)

    def _import(self, scene: bpy.types.Scene, item: props.AVS_JobItem, task: DownloadTask) -> None:
        from .importers.dispatch import ImportFailed, import_result

        view = self.client.jobs.get(item.job_id) if self.client is not None else None
        data = dict(view.data or {}) if view is not None else {}
        try:
            summary = import_result(scene, item, data, task.arrays, task.files)
        except ImportFailed as exc:
            item.message = "import failed"
            self.report("ERROR", f"importing {item.kind} job {item.job_id[:8]}: {exc}")
            return
        except Exception as exc:  # an importer bug: say so on the job, never leave it "downloading"
            traceback.print_exc()
            item.message = "import failed (add-on error, see the console)"
            self.report("ERROR", f"importing {item.kind} job {item.job_id[:8]}: {type(exc).__name__}: {exc}")
            return
        item.imported = True
        item.message = summary
        self.report("INFO", f"imported {item.kind} job {item.job_id[:8]}: {summary}")

    def busy(self) -> bool:
        """Work in flight that needs pumping (for scripts that pump until idle)."""
        return bool(
            self._pending_submits
            or self._attaching
            or self._cancelling
            or self._downloads
            or self._import_when_known
            or props.active_jobs()
        )

    def on_file_loaded(self) -> None:
        """Jobs saved in the loaded file are re-attached on the next pump; jobs the file saved
        while they were still being submitted never got an id and cannot be found again."""
        self._needs_reattach = True
        self._pending_submits.clear()
        for scene in bpy.data.scenes:
            for item in scene.avatar_studio.jobs:
                if item.state == "submitting" and not item.job_id:
                    item.state = "failed"
                    item.error = "the file was saved before the backend accepted this job; submit it again"


def _addon_version() -> str:
    from . import __version__

    return __version__


_bridge: Bridge | None = None


def get_bridge() -> Bridge:
    global _bridge
    if _bridge is None:
        _bridge = Bridge()
    return _bridge


def reset_bridge() -> None:
    """Close and forget the bridge (unregister, tests)."""
    global _bridge
    if _bridge is not None:
        _bridge.disconnect()
    _bridge = None


def pump() -> None:
    """What the timer calls; scripts and tests call it directly (timers do not run in bpy module)."""
    get_bridge().pump()


def timer_callback() -> float:
    bridge = get_bridge()
    bridge.pump()
    return PUMP_INTERVAL_S if bridge.want_connection else IDLE_INTERVAL_S


def ensure_timer() -> None:
    # persistent=True: the timer survives loading another .blend file.
    if not bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.register(timer_callback, first_interval=PUMP_INTERVAL_S, persistent=True)


def remove_timer() -> None:
    if bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.unregister(timer_callback)


@persistent
def on_load_post(*_args: Any) -> None:
    get_bridge().on_file_loaded()
    ensure_timer()


def register() -> None:
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    ensure_timer()
    from .preferences import get_preferences

    prefs = get_preferences()
    if prefs is not None and prefs.auto_connect:
        get_bridge().want_connection = True


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    remove_timer()
    reset_bridge()
