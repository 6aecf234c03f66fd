# Over 450 lines: one vertical slice against one backend subprocess, its steps share fixtures.
"""The vertical slice against a real backend subprocess on 127.0.0.1, driven through the add-on's
operators with the bridge's pump called from the test (timers do not run in bpy-as-a-module).

- add a body (body.mesh), reshape it, animate it, add two cameras, render a preview (body.preview)
  and pose the body on the backend; assert on the imported Blender data;
- SIGKILL the backend during a system.sleep job: the bridge reports it, every pump returns within
  50 ms, and a backend restarted on the same data dir is re-attached and shows the job's final state;
- a job saved in a .blend is re-attached after the file is opened again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_addon_rig import C, evaluated_vertices  # noqa: E402  (protocol -> Blender axes)

from blender_addon import bridge as bridge_mod  # noqa: E402
from blender_addon import smplx_rig  # noqa: E402
from blender_addon.importers.action import apply_pose_action  # noqa: E402
from blender_addon.importers.preview import strip_duration, strip_start  # noqa: E402
from blender_addon.wire import client_module  # noqa: E402

PUMP_LIMIT_S = 0.05

pytestmark = pytest.mark.timeout(900)


class Pumper:
    """Drives the bridge like Blender's timer would, timing every call."""

    def __init__(self, bridge: bridge_mod.Bridge) -> None:
        self.bridge = bridge
        self.durations: list[float] = []  # wall time per pump
        self.cpu: list[float] = []  # this thread's CPU time per pump

    def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            started, started_cpu = time.perf_counter(), time.thread_time()
            self.bridge.pump()
            self.durations.append(time.perf_counter() - started)
            self.cpu.append(time.thread_time() - started_cpu)
            if predicate():
                return
            if time.monotonic() > deadline:
                log = "\n".join(f"{level}: {text}" for level, text in self.bridge.log)
                raise AssertionError(
                    f"timed out waiting for {what}; bridge: {self.bridge.status_text()}\n{log}"
                )
            time.sleep(0.01)


def assert_responsive(walls: list[float], cpus: list[float], what: str) -> None:
    """Every pump returns within PUMP_LIMIT_S. On this shared 2-core machine the OS may pause the
    process mid-pump, so the bound applies to each pump's CPU time and to 99% of the wall times;
    no pump at all may take 5x the bound (a pump waiting on a dead socket would take seconds)."""
    ordered = sorted(walls)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    print(
        f"{what}: {len(walls)} pumps, wall max {ordered[-1] * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
        f"cpu max {max(cpus) * 1e3:.2f} ms"
    )
    assert max(cpus) < PUMP_LIMIT_S, max(cpus)
    assert p99 < PUMP_LIMIT_S, p99
    assert ordered[-1] < 5 * PUMP_LIMIT_S, ordered[-1]


def connect(tmp_path: Path, connection_file: Path) -> tuple[bridge_mod.Bridge, Pumper]:
    the_bridge = bridge_mod.get_bridge()
    the_bridge.download_root_override = tmp_path / "downloads"
    the_bridge.connect(connection_file)
    pumper = Pumper(the_bridge)
    pumper.until(lambda: the_bridge.connected, 30, "the connection")
    return the_bridge, pumper


def last_job(scene: bpy.types.Scene):
    return scene.avatar_studio.jobs[len(scene.avatar_studio.jobs) - 1]


def run_jobs(
    pumper: Pumper,
    scene: bpy.types.Scene,
    operator: Callable[[], set[str]],
    count: int = 1,
    timeout: float = 300,
) -> list:
    """Run an operator that submits ``count`` jobs; pump until all are imported."""
    before = len(scene.avatar_studio.jobs)
    assert operator() == {"FINISHED"}
    assert len(scene.avatar_studio.jobs) == before + count
    items = [scene.avatar_studio.jobs[i] for i in range(before, before + count)]

    def finished() -> bool:
        return all(i.state in ("failed", "cancelled") or i.imported for i in items)

    pumper.until(finished, timeout, ", ".join(i.kind for i in items))
    for item in items:
        assert item.state == "succeeded", f"{item.kind}: {item.error}"
    return items


def run_job(pumper: Pumper, scene: bpy.types.Scene, operator: Callable[[], set[str]], timeout: float = 300):
    return run_jobs(pumper, scene, operator, 1, timeout)[0]


def vertex_weights(mesh_obj: bpy.types.Object) -> np.ndarray:
    weights = np.zeros((len(mesh_obj.data.vertices), len(mesh_obj.vertex_groups)))
    for vertex in mesh_obj.data.vertices:
        for element in vertex.groups:
            weights[vertex.index, element.group] = element.weight
    return weights


def image_pixels(path: Path) -> np.ndarray:
    """(H, W, 4) float pixels, top row first."""
    image = bpy.data.images.load(str(path))
    try:
        pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(image.size[1], image.size[0], 4)[::-1]
    finally:
        bpy.data.images.remove(image)


def workbench_silhouette(
    scene: bpy.types.Scene, camera: bpy.types.Object, frame: int, size: tuple[int, int], out: Path
) -> np.ndarray:
    """Blender's own render (Workbench, transparent film) of the scene's meshes: alpha > 0.5."""
    render = scene.render
    saved = (
        scene.camera,
        render.engine,
        render.resolution_x,
        render.resolution_y,
        render.film_transparent,
        render.use_sequencer,
        render.filepath,
        scene.frame_current,
    )
    try:
        scene.camera = camera
        render.engine = "BLENDER_WORKBENCH"
        render.resolution_x, render.resolution_y = size
        render.film_transparent, render.use_sequencer = True, False
        render.filepath = str(out)
        scene.frame_set(frame)
        bpy.ops.render.render(write_still=True)
    finally:
        (
            scene.camera,
            render.engine,
            render.resolution_x,
            render.resolution_y,
            render.film_transparent,
            render.use_sequencer,
            render.filepath,
            current,
        ) = saved
        scene.frame_set(current)
    return image_pixels(out)[..., 3] > 0.5


def body_objects(scene: bpy.types.Scene, name: str) -> tuple[bpy.types.Object, bpy.types.Object]:
    arm_obj = scene.objects[name]
    mesh_obj = next(c for c in arm_obj.children if c.type == "MESH")
    return arm_obj, mesh_obj


def add_camera(scene: bpy.types.Scene, name: str, location: tuple[float, float, float]) -> bpy.types.Object:
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.location = location
    # Aim at the body's chest (Blender world, Z up).
    direction = np.array([0.0, 0.0, 1.0]) - np.array(location)
    cam.rotation_mode = "QUATERNION"
    from mathutils import Vector

    cam.rotation_quaternion = Vector(direction.tolist()).to_track_quat("-Z", "Y")
    return cam


def test_slice_end_to_end(clean_scene, backend_server, tmp_path: Path) -> None:
    scene = clean_scene
    _bridge, pumper = connect(tmp_path, backend_server.connection_file)

    # --- add a body ------------------------------------------------------------------------------
    item = run_job(pumper, scene, lambda: bpy.ops.avatar_studio.add_body(name="Body"))
    arm_obj, mesh_obj = body_objects(scene, "Body")
    assert len(mesh_obj.data.vertices) == 10475
    assert len(arm_obj.data.bones) == 55
    for j, parent in enumerate(smplx_rig.PARENTS):
        bone = next(b for b in arm_obj.data.bones if b[smplx_rig.JOINT_PROPERTY] == j)
        assert (bone.parent[smplx_rig.JOINT_PROPERTY] if bone.parent else -1) == parent
    weights = vertex_weights(mesh_obj)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    rest_height = np.ptp(evaluated_vertices(mesh_obj)[:, 2])
    assert 1.0 < rest_height < 2.5, rest_height  # a standing human in Blender's Z-up world
    assert abs(evaluated_vertices(mesh_obj)[:, 2].min()) < 1e-4  # feet on Blender's ground
    assert item.result_dir and Path(item.result_dir).is_dir()

    # --- set a shape -------------------------------------------------------------------------------
    bpy.context.view_layer.objects.active = arm_obj
    arm_obj.avatar_studio_body.betas[0] = 2.0
    head_before = np.array(arm_obj.data.bones["head"].head_local)
    run_job(pumper, scene, lambda: bpy.ops.avatar_studio.apply_shape())
    arm_obj, mesh_obj = body_objects(scene, "Body")  # same objects, reshaped
    assert len(arm_obj.data.bones) == 55 and len(mesh_obj.data.vertices) == 10475
    assert np.linalg.norm(np.array(arm_obj.data.bones["head"].head_local) - head_before) > 1e-3
    assert abs(np.ptp(evaluated_vertices(mesh_obj)[:, 2]) - rest_height) > 1e-3

    # --- animate it (keys on the rig, like an animator) -----------------------------------------
    frames = 4
    rng = np.random.default_rng(7)
    pose = rng.normal(scale=0.25, size=(frames, 55, 3))
    transl = np.cumsum(rng.normal(scale=0.05, size=(frames, 3)), axis=0)
    apply_pose_action(arm_obj, pose.reshape(frames, -1), transl, frame_start=1, name="Test Motion")
    scene.frame_start, scene.frame_end = 1, frames

    # --- two cameras, both selected ------------------------------------------------------------------
    cams = [add_camera(scene, "CamFront", (0.0, -4.0, 1.0)), add_camera(scene, "CamSide", (4.0, 0.0, 1.2))]
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 240, 100
    scene.avatar_studio.preview_width = 160
    for obj in scene.objects:
        obj.select_set(obj in cams or obj == arm_obj)
    bpy.context.view_layer.objects.active = arm_obj

    # --- preview: strips at the right frames, pixels from the backend's files --------------------
    items = run_jobs(pumper, scene, lambda: bpy.ops.avatar_studio.render_preview(), count=2)
    job_ids = {i.job_id for i in items}
    strips = [s for s in scene.sequence_editor.strips if s.get("avatar_studio_job") in job_ids]
    passes = sorted(s["avatar_studio_pass"] for s in strips)
    assert len(strips) == 2 * 5, passes  # rgb, mask, depth, normal, pose for each camera
    assert {s.name.split()[2] for s in strips} == {"CamFront", "CamSide"}
    assert len({s.channel for s in strips}) == len(strips)  # one channel per pass and camera
    for strip in strips:
        assert strip_start(strip) == 1 and strip_duration(strip) == frames, strip.name
        assert len(strip.elements) == frames
    checker = client_module().Client.from_connection_file(backend_server.connection_file)
    try:
        result_dirs = {i.job_id: i.result_dir for i in items}
        for strip in strips:
            job_id = strip["avatar_studio_job"]
            checker.attach(job_id)
            for element in (strip.elements[0], strip.elements[frames - 1]):
                local = Path(strip.directory) / element.filename
                name = local.relative_to(result_dirs[job_id]).as_posix()
                remote = checker.get_artifact(job_id, name)
                assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(remote).digest()
    finally:
        checker.close()
    rgb = next(s for s in strips if s["avatar_studio_pass"].endswith("rgb"))
    mask = next(s for s in strips if s["avatar_studio_pass"].endswith("mask"))
    for strip, check in (
        (rgb, lambda p: np.ptp(p[..., :3]) > 0.05),
        (mask, lambda p: 0 < (p[..., 0] > 0.5).mean() < 1),
    ):
        image = bpy.data.images.load(str(Path(strip.directory) / strip.elements[frames - 1].filename))
        pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        assert tuple(image.size) == (160, 120), tuple(image.size)
        assert check(pixels.reshape(image.size[1], image.size[0], 4)), strip.name

    # The backend saw what Blender sees: Blender's own render of the rig through CamFront covers the
    # backend's mask (exported motion + exported camera, both through the protocol's conventions).
    front_mask = next(s for s in strips if s["avatar_studio_pass"] == "mask" and "CamFront" in s.name)
    blender_mask = workbench_silhouette(scene, cams[0], frames, (160, 120), tmp_path / "front.png")
    backend_mask = (
        image_pixels(Path(front_mask.directory) / front_mask.elements[frames - 1].filename)[..., 0] > 0.5
    )
    iou = (blender_mask & backend_mask).sum() / (blender_mask | backend_mask).sum()
    assert iou > 0.95, iou

    # --- pose on the backend: Blender's deformation equals the backend's posed vertices ------------
    item = run_job(pumper, scene, lambda: bpy.ops.avatar_studio.pose_on_backend())
    posed = np.load(next(Path(item.result_dir).glob("posed_vertices*.npy")))
    assert posed.shape == (frames, 10475, 3)
    posed_arm, posed_mesh = body_objects(scene, item.target)
    assert posed_arm != arm_obj and posed_arm.animation_data.action is not None
    # The backend's body has pose correctives (SMPL-X posedirs): both meshes got them as shape keys.
    for mesh in (mesh_obj, posed_mesh):
        keys = mesh.data.shape_keys.key_blocks if mesh.data.shape_keys else []
        assert len([k for k in keys if k.name.startswith("AVS corrective")]) in (0, frames)
    worst = 0.0
    for frame in (1, 3, frames):
        scene.frame_set(frame)
        expected = posed[frame - 1] @ C.T
        for mesh in (mesh_obj, posed_mesh):  # the user's rig, the imported action
            deviation = np.abs(evaluated_vertices(mesh) - expected).max()
            worst = max(worst, deviation)
            assert deviation < 1e-4, (mesh.name, frame, deviation)
    print(f"posed mesh vs backend: max deviation {worst:.2e} m")

    assert max(pumper.durations) < 1.0  # imports included; the plain pump bound is tested below


def test_backend_killed_mid_job_then_restarted(clean_scene, backend_server, tmp_path: Path) -> None:
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)
    item = the_bridge.submit(scene, "system.sleep", {"seconds": 30.0})
    pumper.until(lambda: item.state == "running" and item.fraction > 0, 60, "the sleep job to run")
    job_id = item.job_id
    pumper.durations.clear()
    pumper.cpu.clear()

    backend_server.kill()
    pumper.until(lambda: the_bridge.status == "lost", bridge_mod.DEAD_AFTER_S + 3, "the backend to be lost")
    assert item.state == "unknown"
    assert any(level == "ERROR" and "lost the backend" in text for level, text in the_bridge.log)
    # Blender stays responsive: no pump blocks on the dead socket.
    pumper.until(lambda: len(pumper.durations) >= 200, 30, "200 pumps")
    assert_responsive(pumper.durations, pumper.cpu, "backend dead")

    backend_server.start()  # same data dir; new port and key in a new connection file
    pumper.until(
        lambda: the_bridge.connected and item.state in ("failed", "succeeded", "cancelled"),
        60,
        "re-attachment after the restart",
    )
    assert item.job_id == job_id and item.state == "failed"  # the server marks interrupted jobs failed
    assert item.error
    assert_responsive(pumper.durations, pumper.cpu, "until re-attached")


def test_a_submit_lost_with_the_backend_is_sent_again(clean_scene, backend_server, tmp_path: Path) -> None:
    """Submitted just as the backend died (the bridge has not noticed yet): no reply ever comes, so
    the bridge re-sends it to the restarted backend with the same idempotency key; it runs once."""
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)
    backend_server.kill()
    assert the_bridge.connected  # not noticed yet
    key = the_bridge.submit(scene, "system.sleep", {"seconds": 0.2}, auto_import=False).request_key

    def item():
        return next(i for i in scene.avatar_studio.jobs if i.request_key == key)

    pumper.until(lambda: the_bridge.status == "lost", bridge_mod.DEAD_AFTER_S + 3, "the backend to be lost")
    assert item().state == "submitting" and not item().job_id
    backend_server.start()
    pumper.until(lambda: item().state in ("succeeded", "failed"), 60, "the re-sent job")
    assert item().state == "succeeded", item().error
    checker = client_module().Client.from_connection_file(backend_server.connection_file)
    try:
        sleeps = [j for j in checker.list_jobs() if j.get("kind") == "system.sleep"]
    finally:
        checker.close()
    assert [j["job_id"] for j in sleeps] == [item().job_id]


def test_jobs_are_reattached_after_a_file_reload(clean_scene, backend_server, tmp_path: Path) -> None:
    """A .blend holding a job this Blender's client has never seen: opening it (the persistent
    load_post handler) is what makes the bridge attach the job and follow it to its end."""
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)
    pumper.until(lambda: not the_bridge.busy(), 10, "an idle bridge")
    other = client_module().Client.from_connection_file(backend_server.connection_file)
    try:
        job_id = other.submit("system.sleep", {"seconds": 1.5})
    finally:
        other.close()
    item = scene.avatar_studio.jobs.add()
    item.job_id, item.kind, item.state, item.auto_import = job_id, "system.sleep", "running", False
    blend = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    for _ in range(20):  # nothing tells the bridge about this job until the file is loaded
        the_bridge.pump()
    assert job_id not in the_bridge.client.jobs

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert bridge_mod.on_load_post in bpy.app.handlers.load_post
    reloaded = next(i for i in bpy.context.scene.avatar_studio.jobs if i.job_id == job_id)
    pumper.until(lambda: reloaded.state == "succeeded", 60, "the re-attached job to finish")
    assert reloaded.fraction == pytest.approx(1.0)


def test_start_and_stop_a_local_backend_from_the_preferences(clean_scene, tmp_path: Path) -> None:
    from conftest import backend_python

    from blender_addon import local_backend
    from blender_addon.preferences import get_preferences

    prefs = get_preferences()
    saved = (prefs.data_dir, prefs.backend_python)
    prefs.data_dir, prefs.backend_python = str(tmp_path / "local-data"), backend_python()
    try:
        assert bpy.ops.avatar_studio.start_backend() == {"FINISHED"}
        assert local_backend.is_running() and not bpy.ops.avatar_studio.start_backend.poll()
        the_bridge = bridge_mod.get_bridge()
        deadline = time.monotonic() + 60
        while not the_bridge.connected:  # what Blender's timer does
            assert bridge_mod.timer_callback() == bridge_mod.PUMP_INTERVAL_S
            assert time.monotonic() < deadline, the_bridge.status_text()
            time.sleep(0.05)
        assert (tmp_path / "local-data" / "connection.json").is_file()
        assert bpy.ops.avatar_studio.stop_backend() == {"FINISHED"}
        assert not local_backend.is_running()
    finally:
        local_backend.stop()
        prefs.data_dir, prefs.backend_python = saved


def test_cancel_and_fetch_jobs_from_the_backend(clean_scene, backend_server, tmp_path: Path) -> None:
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)
    item = the_bridge.submit(scene, "system.sleep", {"seconds": 30.0})
    pumper.until(lambda: item.state == "running", 60, "the sleep job to run")
    assert bpy.ops.avatar_studio.cancel_job(job_id=item.job_id) == {"FINISHED"}
    started = time.monotonic()
    pumper.until(lambda: item.state == "cancelled", 10, "the cancel")
    assert time.monotonic() - started < 2.0
    cancelled_id = item.job_id  # item references die when the collection grows: keep the id

    # A job submitted elsewhere (a script with the blocking client) shows up after a fetch.
    other = client_module().Client.from_connection_file(backend_server.connection_file)
    try:
        job_id = other.submit("system.sleep", {"seconds": 0.2})
        assert other.wait(job_id, timeout=60).state == "succeeded"
    finally:
        other.close()
    assert bpy.ops.avatar_studio.fetch_jobs() == {"FINISHED"}
    pumper.until(lambda: any(i.job_id == job_id for i in scene.avatar_studio.jobs), 10, "the fetched job")
    fetched = next(i for i in scene.avatar_studio.jobs if i.job_id == job_id)
    assert fetched.kind == "system.sleep" and fetched.state == "succeeded" and not fetched.auto_import
    assert sum(1 for i in scene.avatar_studio.jobs if i.job_id == cancelled_id) == 1  # no duplicate


def test_unreachable_or_malformed_backends_are_reported(clean_scene, tmp_path: Path) -> None:
    """No backend: the status says why, operators that need one are disabled, nothing raises."""
    from blender_addon.preferences import get_preferences

    the_bridge = bridge_mod.get_bridge()
    the_bridge.connect(tmp_path / "missing" / "connection.json")
    for _ in range(5):
        the_bridge.pump()
    assert the_bridge.status == "error" and "no connection file" in the_bridge.status_text()
    assert not bpy.ops.avatar_studio.add_body.poll() and not bpy.ops.avatar_studio.render_preview.poll()

    prefs = get_preferences()
    saved = (prefs.connection_mode, prefs.address, prefs.key)
    try:
        prefs.connection_mode, prefs.address, prefs.key = "ADDRESS", "not an address", "k" * 32
        the_bridge.connection_override = None
        assert bpy.ops.avatar_studio.connect() == {"FINISHED"}
        the_bridge.pump()
        assert the_bridge.status == "error" and "not an address" in the_bridge.status_text()

        # A well-formed address where nobody listens: "connecting", never "connected", pumps stay fast.
        prefs.address = "tcp://127.0.0.1:9"
        assert bpy.ops.avatar_studio.connect() == {"FINISHED"}
        pumper = Pumper(the_bridge)
        pumper.until(lambda: len(pumper.durations) >= 100, 30, "100 pumps")
        assert the_bridge.status == "connecting" and not the_bridge.connected
        assert_responsive(pumper.durations, pumper.cpu, "nobody listening")
    finally:
        prefs.connection_mode, prefs.address, prefs.key = saved


@pytest.mark.slow
def test_avatar_from_the_backend_imports_textured_and_rigged(
    clean_scene, backend_server, tmp_path: Path
) -> None:
    """avatar.from_views on a tiny synthetic character (small grid, few iterations): the imported
    avatar has the backend's vertices, UVs, texture (packed, rows in Blender's order) and rig."""
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)
    assert the_bridge.has_job_kind("avatar.from_views")
    params = {
        "grid": 36,
        "init_iters": 30,
        "refine_iters": 10,
        "texture_size": 64,
        "texture_iters": 4,
        "synthetic": {"shape": "average", "resolution": 96, "skirt": False, "hair": False},
    }
    item = the_bridge.submit(scene, "avatar.from_views", params, meta={"name": "Av"})
    job_key = item.request_key
    pumper.until(
        lambda: (
            next(i for i in scene.avatar_studio.jobs if i.request_key == job_key).state
            in ("failed", "cancelled")
            or next(i for i in scene.avatar_studio.jobs if i.request_key == job_key).imported
        ),
        600,
        "the avatar",
    )
    item = next(i for i in scene.avatar_studio.jobs if i.request_key == job_key)
    assert item.state == "succeeded", item.error
    result = Path(item.result_dir)
    vertices = np.load(result / "vertices.npy")
    texture = np.load(result / "texture.npy")
    arm_obj, mesh_obj = body_objects(scene, item.target)
    assert len(mesh_obj.data.vertices) == len(vertices) and len(arm_obj.data.bones) == 55
    np.testing.assert_allclose(vertex_weights(mesh_obj).sum(axis=1), 1.0, atol=1e-5)
    image = next(n for n in mesh_obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
    assert image.packed_file is not None and tuple(image.size) == (texture.shape[1], texture.shape[0])
    pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(image.size[1], image.size[0], 4)[::-1, :, :3]
    np.testing.assert_allclose(pixels, texture[..., :3] / 255.0, atol=1 / 255)
    assert "UVMap" in mesh_obj.data.uv_layers
