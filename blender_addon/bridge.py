"""The bridge between Blender and the backend: the protocol client's non-blocking ``pump()`` driven
by a ``bpy.app.timers`` timer on the main thread.

- Socket I/O never blocks: submits, cancels, attaches and listings go through one table of
  requests in flight with their callbacks (:mod:`.inflight`, used by :mod:`.bridge_jobs`);
  results download in ranges and import in steps (:mod:`.results`).
- Blender never freezes: one pump does a bounded amount of socket reads, then steps transfers
  and imports until ``WORK_BUDGET_S`` after it started; each step is a few milliseconds (see
  :mod:`.importers.steps`), so a pump stays under ``PUMP_LIMIT_S``.
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
import tempfile
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

import bpy
import zmq  # for its error type only: all traffic goes through protocol.client
from bpy.app.handlers import persistent

from . import props
from .bridge_jobs import JobsMixin
from .importers.dispatch import ImportRequest
from .inflight import RequestTable
from .pump_clock import PumpClock
from .results import ResultTasks
from .view_previews import ViewPreviews
from .wire import client_module, messages, protocol

PUMP_INTERVAL_S = 0.1  # timer period while connected or connecting
BUSY_INTERVAL_S = 0.03  # timer period while results download or import: finish sooner, UI still free
IDLE_INTERVAL_S = 0.5  # timer period with nothing to do
PUMP_BUDGET_S = 0.01  # socket reads per pump
WORK_BUDGET_S = 0.012  # transfers and import steps stop being started this long after a pump began
PUMP_LIMIT_S = 0.03  # what a pump must stay under (steps are small enough for the difference)
DEAD_AFTER_S = 3.0  # silence before the backend is shown as lost
CONNECTION_FILE_RECHECK_S = 1.0  # while lost: look for a restarted backend's new connection file


class Bridge(JobsMixin):
    """One per Blender session (module singleton, see :func:`get_bridge`)."""

    def __init__(self) -> None:
        self.client: Any = None
        self.status = "disconnected"  # disconnected | connecting | connected | lost | error
        self.status_detail = ""
        self.want_connection = False
        self.connection_override: Any = None  # a ConnectionInfo or a path; else the preferences
        self.download_root_override: Path | None = None
        self.clock = PumpClock()  # wall, CPU and garbage-collector time of the pumps
        self.clock.gc.install()
        self.results = ResultTasks(self.report, self.clock.gc)
        self.previews = ViewPreviews()  # generated views of avatar jobs, into images
        self.log: deque[tuple[str, str]] = deque(maxlen=100)
        self.protocol = protocol
        self.requests = RequestTable(lambda error: isinstance(error, protocol.BackendUnavailable))
        self._client_identity: tuple[str, str] | None = None
        self._last_source_check = 0.0
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
        self.requests.drop_all("disconnected before the backend answered")
        self.results.cancel_all("stopped: disconnected")
        self.status, self.status_detail = "disconnected", ""

    def _drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        self._client_identity = None
        self.requests.connection_lost()  # submits are re-sent (same idempotency key) once one answers

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
        self.clock.start()
        started = time.perf_counter()
        try:
            self._pump(started, budget_s)
        except Exception as exc:  # a timer that raises is dropped by Blender: keep the bridge alive
            text = f"internal error in the bridge: {exc!r}"
            if text != self._last_internal_error:  # once per distinct error, not ten times a second
                self._last_internal_error = text
                self.report("ERROR", text)
                traceback.print_exc()
        self.clock.stop()

    @property
    def last_pump_s(self) -> float:
        return self.clock.last_wall_s

    @property
    def max_pump_s(self) -> float:
        return self.clock.max_wall_s

    def _pump(self, started: float, budget_s: float) -> None:
        if self.want_connection:
            self._pump_connection(budget_s)
        if self.previews.pending:  # first: a view shows up before the next download step
            self.previews.step(started + WORK_BUDGET_S)
        # Local imports run without a connection; downloads wait for one.
        self.results.step(started + WORK_BUDGET_S, self.connected)

    def _pump_connection(self, budget_s: float) -> None:
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
            self.requests.step(connected=True)
            # Only while connected: a lost backend's last known states are stale ("unknown").
            self._sync_jobs()

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
        """Download the job's artifacts and import them, a little per pump."""
        if item.job_id in self.results:
            return
        view = self.client.jobs.get(item.job_id) if self.client is not None else None
        if view is None or not view.terminal:
            # After a file load the client does not know the job yet: attach, then import.
            if self.connected:
                self.reattach(item.job_id, then_import=True)
            else:
                self.report("WARNING", f"job {item.job_id[:8]}: connect to import its results")
            return
        if not view.succeeded:
            self.report("ERROR", f"job {item.job_id[:8]} is {view.state}: nothing to import")
            return
        self.results.start_download(scene, item, self.client, view, self.download_root() / item.job_id)

    def import_local(self, scene: bpy.types.Scene, kind: str, key: str, data: dict[str, Any],
                     arrays: dict[str, Any], files: dict[str, Path], meta: dict[str, Any] | None = None,
                     folder: Path | None = None, frame_start: int = 1) -> None:
        """Import results already on disk (e.g. a CLI output folder) in steps, like a job's;
        ``key`` names the task (:meth:`import_progress`, :meth:`cancel_import`)."""
        request = ImportRequest(scene.name, key, kind, frame_start=frame_start, meta=dict(meta or {}),
                                result_dir=str(folder or ""))
        self.results.start_import(scene, request, data, arrays, files)

    def import_progress(self, job_id: str) -> str | None:
        """"downloading 2/7 files (40%)", "importing 3/7: vertex groups", or None."""
        return self.results.progress(job_id)

    def cancel_import(self, job_id: str) -> bool:
        return self.results.cancel(job_id)

    def busy(self) -> bool:
        """Work in flight that needs pumping (for scripts that pump until idle)."""
        return bool(len(self.requests) or self.results or props.active_jobs())


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
        elif event.type == messages.JOB_PROGRESS and self.client is not None:
            view = self.client.jobs.get(event.job_id)
            self.previews.add(event.job_id, view.kind if view is not None else None, event.content)
        elif event.type == messages.ERROR:
            self.report(
                "WARNING", f"backend error: {event.content.get('ename')}: {event.content.get('evalue')}"
            )

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
        _bridge.clock.gc.remove()
    _bridge = None


def pump() -> None:
    """What the timer calls; scripts and tests call it directly (timers do not run in bpy module)."""
    get_bridge().pump()


def timer_callback() -> float:
    bridge = get_bridge()
    bridge.pump()
    if bridge.results:
        return BUSY_INTERVAL_S
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
    if bpy.app.background:  # see warm_image_decoding: a one-off set-up, done here, not in a pump
        from .importers.texture import warm_image_decoding

        with contextlib.suppress(RuntimeError):  # restricted context while Blender starts
            warm_image_decoding()
    from .preferences import get_preferences

    prefs = get_preferences()
    if prefs is not None and prefs.auto_connect:
        get_bridge().want_connection = True


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    remove_timer()
    reset_bridge()
