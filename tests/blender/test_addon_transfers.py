"""Results reach Blender through the protocol's stepped transfers, and no pump freezes Blender.

- an artifact larger than the server's message limit downloads into Blender in ranges (a server
  started with a 1.5 MiB limit, a 5 MiB ``system.sleep`` ``file_bytes`` artifact);
- a corrupted cached array is fetched again on re-import, an intact cached file is kept;
- while a posed 10k-vertex body (downloaded from a backend) and an avatar-sized result import at
  the same time, no pump costs 30 ms; every import step is measured and printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import SMALL_MESSAGE_BYTES  # noqa: E402
from test_addon_rig import synthetic_body  # noqa: E402

from blender_addon import bridge as bridge_mod  # noqa: E402
from blender_addon import props  # noqa: E402
from blender_addon.wire import client_module, messages, protocol  # noqa: E402

PUMP_LIMIT_S = 0.03  # the budget of issue 10: no pump over 30 ms

pytestmark = pytest.mark.timeout(600)


class Timed:
    """Pumps the bridge like Blender's timer, recording each pump's wall time, process CPU time
    and the garbage collections that ran inside it (the bridge's own clock measures those)."""

    def __init__(self, bridge: bridge_mod.Bridge) -> None:
        self.bridge = bridge
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.gcs: list[float] = []

    @property
    def works(self) -> list[float]:
        """CPU time of each pump's own work: its CPU time less the collections inside it."""
        return [cpu - gc for cpu, gc in zip(self.cpus, self.gcs, strict=True)]

    def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            started = time.perf_counter()
            self.bridge.pump()
            self.walls.append(time.perf_counter() - started)
            self.cpus.append(self.bridge.clock.last_cpu_s)
            self.gcs.append(self.bridge.clock.last_gc_s)
            if time.monotonic() > deadline:
                log = "\n".join(f"{level}: {text}" for level, text in self.bridge.log)
                raise AssertionError(f"timed out waiting for {what}: {self.bridge.status_text()}\n{log}")
            time.sleep(0.005)


def connect(tmp_path: Path, connection_file: Path) -> tuple[bridge_mod.Bridge, Timed]:
    the_bridge = bridge_mod.get_bridge()
    the_bridge.download_root_override = tmp_path / "downloads"
    the_bridge.connect(connection_file)
    timed = Timed(the_bridge)
    timed.until(lambda: the_bridge.connected, 60, "the connection")
    return the_bridge, timed


def job(scene: bpy.types.Scene, request_key: str) -> props.AVS_JobItem:
    # Look the item up each time: item references die when the collection grows.
    return next(i for i in scene.avatar_studio.jobs if i.request_key == request_key)


def settled(scene: bpy.types.Scene, request_key: str) -> bool:
    item = job(scene, request_key)
    return item.state in ("failed", "cancelled") or item.imported or item.message.endswith("failed")


def test_an_artifact_over_the_message_limit_downloads_in_ranges_and_a_damaged_cache_is_refetched(
    clean_scene, small_message_backend, tmp_path: Path
) -> None:
    scene = clean_scene
    the_bridge, timed = connect(tmp_path, small_message_backend.connection_file)
    size = 5 << 20  # > SMALL_MESSAGE_BYTES: one message could not carry it
    assert size > SMALL_MESSAGE_BYTES
    key = the_bridge.submit(scene, "system.sleep", {"seconds": 0.1, "file_bytes": size}).request_key
    timed.until(lambda: settled(scene, key), 120, "the sleep job's results")
    item = job(scene, key)
    assert item.state == "succeeded" and item.imported, (item.error, item.message)
    data = Path(item.result_dir) / "files" / "data.bin"
    expected = (np.arange(size, dtype=np.uint64) * 2654435761 % 251).astype(np.uint8).tobytes()
    assert data.read_bytes() == expected
    assert not list(Path(item.result_dir).rglob("*.part"))

    # The limit is real: the same artifact asked for whole is refused, naming ranges.
    checker = client_module().Client.from_connection_file(small_message_backend.connection_file)
    try:
        checker.attach(item.job_id)
        with pytest.raises(protocol.ServerError, match="ranges"):
            checker.request(messages.GET_ARTIFACT, {"job_id": item.job_id, "name": "files/data.bin"})
    finally:
        checker.close()

    # A cached array damaged on disk is fetched again; an intact cached file is verified and kept.
    ticks = Path(item.result_dir) / "ticks.npy"
    good = ticks.read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF
    ticks.write_bytes(bytes(damaged))
    data_inode = data.stat().st_ino
    job_id = item.job_id
    assert bpy.ops.avatar_studio.import_job(job_id=job_id) == {"FINISHED"}
    timed.until(lambda: settled(scene, key), 60, "the re-import")
    item = job(scene, key)
    assert item.imported, item.message
    assert ticks.read_bytes() == good
    assert data.stat().st_ino == data_inode  # kept: its sha256 matched, nothing was re-sent
    assert max(timed.works) < PUMP_LIMIT_S, max(timed.works)


def avatar_sized_result(seed: int = 1) -> dict[str, np.ndarray]:
    """An avatar.from_views-like result of SMPL-X size: ~10k vertices on the 55-joint tree,
    4 weights each, per-vertex UVs and normals, a 1024² texture."""
    body = synthetic_body(seed)
    joints = body["joints_rest"]
    rng = np.random.default_rng(seed)
    verts = np.repeat(joints, 190, axis=0) + rng.normal(scale=0.05, size=(55 * 190, 3))
    dist = np.linalg.norm(verts[:, None] - joints[None], axis=2)
    weights = np.exp(-dist / 0.05)
    weights[weights < np.sort(weights, axis=1)[:, -4:-3]] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    count = len(verts)
    faces = np.stack([np.arange(count - 2), np.arange(1, count - 1), np.arange(2, count)], 1)
    normals = rng.normal(size=verts.shape)
    return {
        "vertices": verts.astype(np.float32),
        "faces": faces.astype(np.int32),
        "weights": weights.astype(np.float32),
        "joints_rest": joints.astype(np.float32),
        "parents": body["parents"],
        "uvs": rng.random((count, 2)).astype(np.float32),
        "normals": (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32),
        "texture": rng.integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8),
    }


def test_no_pump_costs_30_ms_while_a_body_and_an_avatar_import(
    clean_scene, backend_server, tmp_path: Path
) -> None:
    scene = clean_scene
    the_bridge, timed = connect(tmp_path, backend_server.connection_file)
    # A posed 10475-vertex body from the backend: download, rig, mesh, weights, action, correctives.
    key = the_bridge.submit(
        scene, "body.mesh", {"motion": "walk", "frames": 12}, meta={"name": "Walker", "import_motion": True}
    ).request_key
    timed.until(lambda: job(scene, key).state in props.TERMINAL_STATES, 300, "the body job")
    start = len(timed.cpus)
    # The avatar import runs beside the body's download and import.
    avatar = avatar_sized_result()
    the_bridge.import_local(scene, "avatar.from_views", "local-avatar", {}, avatar, {}, meta={"name": "Av"})
    seen_progress: set[str] = set()

    def both_done() -> bool:
        for job_id in ("local-avatar", job(scene, key).job_id):
            text = the_bridge.import_progress(job_id)
            if text:
                seen_progress.add(text.split(" (")[0])
        return settled(scene, key) and the_bridge.import_progress("local-avatar") is None

    timed.until(both_done, 300, "both imports")
    item = job(scene, key)
    assert item.imported, (item.error, item.message)
    walker = scene.objects[item.target]
    assert walker.animation_data.action is not None
    body_mesh = next(c for c in walker.children if c.type == "MESH")
    assert len(body_mesh.data.vertices) == 10475 and len(body_mesh.vertex_groups) == 55
    av_mesh = next(c for c in scene.objects["Av"].children if c.type == "MESH")
    assert len(av_mesh.data.vertices) == len(avatar["vertices"]) and "UVMap" in av_mesh.data.uv_layers
    image = next(n for n in av_mesh.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
    pixels = np.empty(1024 * 1024 * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(1024, 1024, 4)[::-1, :, :3]
    np.testing.assert_allclose(pixels, avatar["texture"] / 255.0, atol=0.5 / 255)
    assert any(p.startswith("importing") and "/8: vertex groups" in p for p in seen_progress), seen_progress

    walls, cpus, gcs = timed.walls[start:], timed.cpus[start:], timed.gcs[start:]
    works = timed.works[start:]
    costs = sorted(the_bridge.results.step_costs, key=lambda c: -c[3])
    print(f"\n{len(cpus)} pumps while importing: max CPU {max(cpus) * 1e3:.1f} ms (own work "
          f"{max(works) * 1e3:.1f} ms, garbage collection up to {max(gcs) * 1e3:.1f} ms), max wall "
          f"{max(walls) * 1e3:.1f} ms, p99 wall {sorted(walls)[int(0.99 * (len(walls) - 1))] * 1e3:.1f} ms")
    for kind, stage, wall, cpu in costs[:8]:
        print(f"  step {kind:18} {stage:32} CPU {cpu * 1e3:5.1f} ms  wall {wall * 1e3:5.1f} ms")
    # CPU time of the whole process: what each pump cost, not how long the loaded machine made us
    # wait for a core; a pump that waited on something would not hide here (nothing in it blocks).
    # Collections are process-wide (their length follows the whole heap: pytest's here) and are
    # printed above, not counted as the pump's work.
    assert max(works) < PUMP_LIMIT_S, max(works)
    # Steps are small enough that one started just before the pump's work deadline still fits.
    assert costs[0][3] < PUMP_LIMIT_S - bridge_mod.WORK_BUDGET_S, costs[0]
