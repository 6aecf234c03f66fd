"""Render a clips dataset on a Ray cluster: one clip per Ray task, the driver writes the manifest.

The driver does what local rendering does before and after the clips (:func:`dataset.begin`,
:func:`dataset.write_manifest`); each clip is one Ray task running :func:`dataset.render_one`, so a
clip is rendered by exactly the same code as with ``--workers N`` and the dataset's files are the
same bytes. A task writes into ``clips/.tmp-<id>-<pid>`` and renames it into place, so a worker
killed mid-clip leaves no partial clip: Ray retries the task (``max_retries``) in another worker,
and the driver removes the dead attempt's temp folder at the end. Workers write straight into the
output folder, so it must be on a filesystem that the driver and every worker see (docs/clips.md,
"Scaling out on Ray"). Ray is imported only here and in ``backend/ray_cluster.py`` (the address
checks, the job server's cluster), only when asked for.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.clips.dataset import begin, render_one, write_manifest
from backend.clips.spec import ClipSpec, clip_id
from backend.ray_cluster import (  # noqa: F401 - ADDRESS_FORMS, INSTALL_HINT, parse_address: this API too
    ADDRESS_FORMS,
    INSTALL_HINT,
    LOCAL_OBJECT_STORE,
    RayError,
    auth_hint,
    cpus_here,
    import_ray,
    parse_address,
    probe,
    quiet_init,
)

SHARED_FS = "docs/clips.md, 'Scaling out on Ray'"
# A task that dies with its worker (killed, out of memory, node lost) is run again this many times.
RETRIES = 3

# Test-only fault injection, never passed by the CLI: called in the worker with the clip index and
# "frames" after each rendered batch (the clip is half written) or "done" once it is in place.
WorkerHook = Callable[[int, str], None]


@contextmanager
def connect(address: str = "local", num_cpus: int | None = None,
            probe_timeout: float = 5.0) -> Iterator[Any]:
    """Connect this process to Ray for the block, then disconnect (and stop a ``local`` cluster).

    ``local`` starts a private cluster of ``num_cpus`` CPUs (default: this process's CPUs) with no
    dashboard and quiet logs; any other address joins a running cluster (``num_cpus`` is then the
    cluster's business). When this process is already connected (tests, notebooks), that
    connection is used as it is and left open.
    """
    target = parse_address(address)
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = quiet_init()
    if target is not None:
        probe(address, *target, probe_timeout)
    if address == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home for a private cluster
        cpus = num_cpus or cpus_here()
        init: dict[str, Any] = {"address": "local", "num_cpus": cpus, "include_dashboard": False,
                                "object_store_memory": LOCAL_OBJECT_STORE, **quiet}
    else:
        init = {"address": address, **quiet}
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise RayError(f"cannot connect to the Ray cluster at {address}: {exc}{auth_hint(exc)}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _render_task(spec_json: dict[str, Any], index: int, clips_dir: str, threads: int,
                 hook: WorkerHook | None) -> tuple[str, str]:
    """One clip, in a Ray worker. Returns its id and the worker's host (for the driver's errors)."""
    spec = ClipSpec.parse(spec_json)
    folder = Path(clips_dir)
    final = folder / clip_id(index)
    # A retry whose earlier attempt renamed the clip into place and then died has nothing to do:
    # the clip depends only on the spec and its index, so it holds the bytes this attempt would write.
    if not final.is_dir():
        on_frames = (lambda n: hook(index, "frames")) if hook else (lambda n: None)
        try:
            render_one(spec, index, folder, threads=threads, on_frames=on_frames)
        except OSError:
            if not final.is_dir():  # else another attempt renamed the same clip first
                raise
    if hook:
        hook(index, "done")
    return clip_id(index), socket.gethostname()


def _visible(folder: Path, timeout: float) -> bool:
    """Whether the driver sees a clip a worker reported; NFS clients may cache the directory's old
    listing for a few seconds, so look again (listing the parent revalidates it) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if (folder / "clip.json").is_file():
            return True
        if time.monotonic() >= deadline:
            return False
        os.listdir(folder.parent)
        time.sleep(0.2)


def render_dataset_ray(spec: ClipSpec, out: Path, *, address: str = "local", num_cpus: int | None = None,
                       cpus_per_task: int = 1, retries: int = RETRIES,
                       on_clip: Callable[[str, bool], None] = lambda cid, skipped: None,
                       on_frames: Callable[[int], None] = lambda n: None,
                       poll: Callable[[], None] = lambda: None, poll_interval: float = 0.2,
                       visibility_timeout: float = 10.0, cancel_grace: float = 10.0,
                       worker_hook: WorkerHook | None = None) -> dict[str, Any]:
    """Render every missing clip of ``spec`` into ``out`` on Ray; returns the manifest.

    The same files as :func:`dataset.render_dataset` (resume included). Each task asks Ray for
    ``cpus_per_task`` CPUs and renders on as many threads. Progress arrives per finished clip
    (``on_clip``, then ``on_frames`` with the clip's frames x cameras). On an exception or Ctrl-C
    the tasks not yet finished are cancelled (those running get a KeyboardInterrupt and remove
    their temp folder; the driver waits up to ``cancel_grace`` s for that) and it propagates.
    ``poll`` is called every ``poll_interval`` s while clips render: an exception it raises (a
    job's cancel) stops the run in the same way.
    """
    if cpus_per_task < 1:
        raise RayError(f"--ray-cpus-per-task: at least 1, got {cpus_per_task}")
    out = Path(out)
    with connect(address, num_cpus) as ray:
        todo = begin(spec, out, on_clip)
        clips_dir = (out / "clips").resolve()
        task = ray.remote(_render_task).options(num_cpus=cpus_per_task, max_retries=retries,
                                                 name="avatar-studio.clip")
        spec_ref = ray.put(spec.to_json_dict())
        pending = [task.remote(spec_ref, i, str(clips_dir), cpus_per_task, worker_hook) for i in todo]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=poll_interval)
                poll()
                for ref in done:
                    cid, host = _result(ray, ref)
                    if not _visible(clips_dir / cid, visibility_timeout):
                        raise RayError(
                            f"clip {cid} was rendered by a Ray worker on {host} into {clips_dir / cid}, but "
                            f"this driver does not see it: the output folder must be on a filesystem that "
                            f"the driver and every Ray worker share ({SHARED_FS})")
                    on_frames(spec.frames * spec.n_cameras)
                    on_clip(cid, False)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=cancel_grace)
            raise
    # Every task has finished: what is left of attempts whose worker died can go.
    for stale in clips_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return write_manifest(spec, out)


def _result(ray: Any, ref: Any) -> tuple[str, str]:
    """A task's value; a task that lost its worker more than ``retries`` times is a RayError (an
    exception raised by the render itself, e.g. a SpecError, propagates as its own type)."""
    from ray.exceptions import LocalRayletDiedError, NodeDiedError, OutOfMemoryError, WorkerCrashedError

    try:
        cid, host = ray.get(ref)
    except (WorkerCrashedError, NodeDiedError, OutOfMemoryError, LocalRayletDiedError) as exc:
        raise RayError(f"a clip's Ray worker died on every try: {exc}") from exc
    return cid, host
