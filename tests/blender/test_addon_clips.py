"""The Clips panel's add-on side on real bpy: Load Clip of a dataset rendered by the backend (a
subprocess of the backend's Python), and the params the Render Clips operator builds."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import REPO_ROOT, backend_python  # noqa: E402

from blender_addon import scene_export  # noqa: E402
from blender_addon.importers.action import bone_joint_map  # noqa: E402
from blender_addon.importers.clip import load_clip  # noqa: E402
from blender_addon.importers.preview import strip_duration, strip_start  # noqa: E402
from protocol.cameras import (  # noqa: E402
    blender_extrinsics,
    blender_intrinsics,
    protocol_to_blender_points,
)


def render_dataset(out: Path, *flags: str) -> Path:
    """``python -m backend clips render ... --out DIR`` in the backend's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    command = [backend_python(), "-m", "backend", "clips", "render", *flags, "--out", str(out), "--json"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_dataset(tmp_path_factory.mktemp("clips") / "ds", "--people", "1", "--motion", "walk",
                          "--cameras", "orbit:1", "--cameras", "handheld:1", "--frames", "5",
                          "--clips", "2", "--size", "80x60", "--seed", "4")


def assert_camera_reproduces(scene: bpy.types.Scene, obj: bpy.types.Object, K: np.ndarray, R: np.ndarray,
                             t: np.ndarray, frame_start: int) -> float:
    """Per frame, the Blender camera's own K, R, t (read back from bpy) against the stored ones,
    and a world point projected both ways; returns the worst pixel difference."""
    worst = 0.0
    points = np.array([[0.0, 1.0, 0.0], [0.3, 0.2, -0.4], [-0.5, 1.6, 0.2]])  # protocol world
    for f in range(K.shape[0]):
        scene.frame_set(frame_start + f)
        fields = scene_export.blender_camera(scene, obj)
        K_b, (R_b, t_b) = blender_intrinsics(fields), blender_extrinsics(fields.matrix_world)
        np.testing.assert_allclose(K_b, K[f], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(R_b, R[f], atol=1e-5)
        np.testing.assert_allclose(t_b, t[f], atol=1e-5)
        # Blender's own matrices: world -> camera (matrix_world inverted), camera -> image (K_b).
        mw = np.array(obj.matrix_world)
        world_b = np.c_[protocol_to_blender_points(points), np.ones(len(points))]
        cam_b = (np.linalg.inv(mw) @ world_b.T).T[:, :3] * np.array([1.0, -1.0, -1.0])  # Blender -> OpenCV
        pix_b = (K_b @ cam_b.T).T
        pix_b = pix_b[:, :2] / pix_b[:, 2:]
        cam = (R[f] @ points.T).T + t[f]
        pix = (K[f] @ cam.T).T
        pix = pix[:, :2] / pix[:, 2:]
        worst = max(worst, float(np.abs(pix_b - pix).max()))
    return worst


def test_load_clip_cameras_and_strips(clean_scene, dataset: Path) -> None:
    scene = clean_scene
    loaded = load_clip(dataset, 1, scene=scene, frame_start=10)
    assert loaded.clip_id == "000001" and loaded.frames == 5
    assert [o.name for o in loaded.cameras] == ["000001 cam_00", "000001 cam_01"]
    worst = 0.0
    for obj in loaded.cameras:
        with np.load(dataset / "clips" / "000001" / obj.name.split()[1] / "camera.npz") as z:
            worst = max(worst, assert_camera_reproduces(scene, obj, z["K"], z["R"], z["t"], 10))
    print(f"Load Clip: worst reprojection difference {worst:.2e} px")
    assert worst < 1e-3
    assert (scene.render.resolution_x, scene.render.resolution_y) == (80, 60)
    assert (scene.frame_start, scene.frame_end) == (10, 14)
    assert len(loaded.strips) == 2
    for strip in loaded.strips:
        assert strip_start(strip) == 10 and strip_duration(strip) == 5
        assert [e.filename for e in strip.elements] == [f"{i:06d}.png" for i in range(5)]
    # Loading again replaces the cameras and strips instead of stacking copies.
    again = load_clip(dataset, "000001", scene=scene, frame_start=10)
    assert len([o for o in scene.objects if o.type == "CAMERA"]) == 2
    assert len(scene.sequence_editor.strips) == len(again.strips) == 2
    with pytest.raises(ValueError, match="not a finished clip"):
        load_clip(dataset, 7, scene=scene)


def test_clip_json_is_what_the_backend_wrote(dataset: Path) -> None:
    entry = json.loads((dataset / "clips" / "000000" / "clip.json").read_text())
    assert entry["id"] == "000000" and entry["width"] == 80


def animated_scene(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """Two cameras looking at the origin over frames 1-5; the second moves (keyframed)."""
    from mathutils import Vector

    scene.frame_start, scene.frame_end = 1, 5
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 640, 480, 100
    cameras = []
    for name in ("CamA", "CamB"):
        cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(cam)
        cam.rotation_mode = "QUATERNION"
        cameras.append(cam)
    for frame, shift in ((1, 0.0), (5, 1.0)):
        for cam, location in zip(cameras, ((0.0, -4.0, 1.2), (3.5 - shift, -2.0 - shift, 1.5 + 0.3 * shift)),
                                 strict=True):
            cam.location = location
            cam.rotation_quaternion = (Vector((0.0, 0.0, 1.0)) - Vector(location)).to_track_quat("-Z", "Y")
            if cam.name == "CamB" or frame == 1:
                cam.keyframe_insert("location", frame=frame)
                cam.keyframe_insert("rotation_quaternion", frame=frame)
    cameras[1].data.lens = 35.0
    for obj in scene.objects:
        obj.select_set(False)
    return cameras


def test_render_clips_params_from_a_scene_with_an_animated_camera(clean_scene) -> None:
    from blender_addon import job_params
    from blender_addon.operators.clips import build_clips_params
    from protocol import kinds

    scene = clean_scene
    cameras = animated_scene(scene)
    settings = scene.avatar_studio.clips
    settings.camera_source, settings.width, settings.people, settings.people_max = "SCENE", 64, 2, 3
    settings.passes = {"rgb", "depth"}
    params, frame_start = build_clips_params(bpy.context)
    kinds.validate("clips.render", params)
    typed = kinds.parse("clips.render", params)
    assert frame_start == 1 and typed.people == [2, 3] and typed.passes == ["rgb", "depth"]
    assert len(typed.cameras) == 2 and typed.frames is None and typed.size is None  # the paths' own
    moving = typed.cameras[1]
    assert moving[job_params.kinds.names(kinds.CAMERA_PATH).K].shape == (5, 3, 3)
    assert (moving["width"], moving["height"]) == (64, 48)
    centres = [-np.einsum("fji,fj->fi", c["R"], c["t"]) for c in typed.cameras]
    assert np.linalg.norm(centres[1][0] - centres[1][4]) > 1.0  # animated: sampled per frame
    np.testing.assert_allclose(centres[0][0], centres[0][4], atol=1e-6)
    assert cameras[0].name == "CamA"

    settings.camera_source, settings.motion, settings.motion_path = "RIG", "FILE", "/shots/run.npz"
    rig = kinds.parse("clips.render", build_clips_params(bpy.context)[0])
    assert rig.cameras == ["ring:4"] and rig.motions == ["/shots/run.npz"] and rig.size == (64, 256)

    settings.people_source = "SELECTED"  # no body selected: a clear error, nothing sent
    with pytest.raises(scene_export.ExportError, match="no SMPL-X body selected"):
        build_clips_params(bpy.context)
    settings.people_source = "SAMPLED"


def assert_clip_cameras_match(scene: bpy.types.Scene, originals: list[bpy.types.Object]) -> None:
    """Clip 000000's loaded cameras against the scene cameras it was rendered through (rendered at
    64 x 48): intrinsics, extrinsics and the projection of points agree to 1e-5 at every frame."""
    loaded = [scene.objects[f"000000 cam_0{i}"] for i in range(len(originals))]
    points = np.array([[0.0, 1.0, 0.0], [0.3, 0.2, -0.4], [-0.5, 1.6, 0.2]])  # protocol world
    for original, clip_cam in zip(originals, loaded, strict=True):
        for frame in range(scene.frame_start, scene.frame_end + 1):
            scene.frame_set(frame)
            want, got = (scene_export.blender_camera(scene, o) for o in (original, clip_cam))
            want.resolution_x, want.resolution_y = 64, 48  # the clip renders at the panel's width
            K_got, K_want = blender_intrinsics(got), blender_intrinsics(want)
            np.testing.assert_allclose(K_got, K_want, rtol=1e-5)
            (R_got, t_got), (R_want, t_want) = (blender_extrinsics(c.matrix_world) for c in (got, want))
            np.testing.assert_allclose(R_got, R_want, atol=1e-5)
            np.testing.assert_allclose(t_got, t_want, atol=1e-5)
            pixels = [(K @ (points @ R.T + t).T).T
                      for K, R, t in ((K_got, R_got, t_got), (K_want, R_want, t_want))]
            pixels = [p[:, :2] / p[:, 2:] for p in pixels]
            np.testing.assert_allclose(pixels[0], pixels[1], atol=1e-5 * 64)  # 1e-5 of the image width


@pytest.mark.timeout(600)
def test_render_clips_with_scene_cameras_over_a_backend(clean_scene, backend_server, tmp_path: Path) -> None:
    """The panel's Render Clips through the bridge (pumped, never blocking) with two scene cameras,
    one animated; the clip comes back as cameras that match the scene's and strips of its length."""
    from test_addon_e2e import connect, run_job

    scene = clean_scene
    originals = animated_scene(scene)
    settings = scene.avatar_studio.clips
    settings.camera_source, settings.width, settings.clips = "SCENE", 64, 1
    settings.people, settings.people_max, settings.motion = 1, 1, "walk"  # (settings live in the scene)
    settings.passes = {"rgb", "depth", "instance"}
    _bridge, pumper = connect(tmp_path, backend_server.connection_file)
    item = run_job(pumper, scene, lambda: bpy.ops.avatar_studio.render_clips(), timeout=400)
    assert item.kind == "clips.render" and item.imported, item.message
    assert_clip_cameras_match(scene, originals)
    strips = [s for s in scene.sequence_editor.strips if s.get("avatar_studio_pass", "").endswith("rgb")]
    assert len(strips) == 2 and all(strip_duration(s) == 5 and strip_start(s) == 1 for s in strips)
    # The clip's person comes back through body.mesh as an animated body where the clip has it.
    people = [i for i in scene.avatar_studio.jobs if i.kind == "body.mesh"]
    assert len(people) == 1
    pumper.until(lambda: people[0].imported or people[0].state in ("failed", "cancelled"), 300, "the person")
    assert people[0].state == "succeeded" and people[0].imported, people[0].error
    arm = scene.objects["000000 person 0"]
    root = bone_joint_map(arm)[0].name
    with np.load(Path(item.result_dir) / "dataset" / "clips" / "000000" / "people.npz") as z:
        pelvis = z["joints"][:, 0, 0]  # (F, 3) protocol world
    for frame in range(1, 6):
        scene.frame_set(frame)
        head = np.array(arm.matrix_world @ arm.pose.bones[root].head)
        np.testing.assert_allclose(head, protocol_to_blender_points(pelvis[frame - 1]), atol=1e-4)
    assert max(pumper.durations) < 1.0  # the imports ran in steps across pumps


def test_load_clip_operator_imports_in_bridge_steps(clean_scene, dataset: Path) -> None:
    from blender_addon import bridge as bridge_mod

    scene = clean_scene
    scene.frame_start = 3
    assert bpy.ops.avatar_studio.load_clip(directory=str(dataset), clip=0) == {"FINISHED"}
    the_bridge = bridge_mod.get_bridge()
    pumps = 0
    while the_bridge.results:
        the_bridge.pump()
        pumps += 1
        assert pumps < 1000
    assert pumps > 1  # in steps, not in the operator's call
    assert {o.name for o in scene.objects if o.type == "CAMERA"} == {"000000 cam_00", "000000 cam_01"}
    assert (scene.frame_start, scene.frame_end) == (3, 7)
    assert any("people not loaded (connect" in text for _level, text in the_bridge.log)
    with pytest.raises(RuntimeError, match="not a finished clip"):  # reported, nothing imported
        bpy.ops.avatar_studio.load_clip(directory=str(dataset), clip=9)
    assert not the_bridge.results


@pytest.mark.timeout(900)
def test_render_clips_of_a_selected_body_with_its_action(clean_scene, backend_server, tmp_path: Path) -> None:
    """People "Selected Bodies": an SMPL-X body made by the backend (body.mesh), keyed by an action
    and moved and turned as an object, seen by two scene cameras (one animated) -> Render Clips ->
    the clip comes back with cameras that match the scene's, RGB and GT overlay strips of the clip's
    length, and its person's 3D joints are the scene body's posed joints at every frame."""
    from test_addon_e2e import body_objects, connect, run_job

    from blender_addon import axes
    from blender_addon.importers.action import apply_pose_action

    scene = clean_scene
    _bridge, pumper = connect(tmp_path, backend_server.connection_file)
    run_job(pumper, scene, lambda: bpy.ops.avatar_studio.add_body(name="Dancer"))
    arm, _mesh = body_objects(scene, "Dancer")
    originals = animated_scene(scene)  # frames 1-5; deselects everything
    frames = 5
    rng = np.random.default_rng(11)
    pose = rng.normal(scale=0.2, size=(frames, 55, 3))
    transl = np.cumsum(rng.normal(scale=0.04, size=(frames, 3)), axis=0)
    apply_pose_action(arm, pose.reshape(frames, -1), transl, frame_start=1, name="Dance")
    arm.location = (0.4, -0.3, 0.05)
    arm.rotation_euler = (0.0, 0.0, 0.6)  # the object's transform is part of the person's motion
    arm.select_set(True)  # the body only: the cameras are then every camera of the scene
    bpy.context.view_layer.objects.active = arm
    settings = scene.avatar_studio.clips
    settings.people_source, settings.camera_source, settings.width = "SELECTED", "SCENE", 64
    settings.clips, settings.load_people = 1, False
    assert "overlay" in type(settings).bl_rna.properties["passes"].default_flag  # on from the panel
    settings.passes = {"rgb", "instance", "overlay"}
    try:
        item = run_job(pumper, scene, lambda: bpy.ops.avatar_studio.render_clips(), timeout=400)
    finally:  # the settings live in the scene, which the next tests keep
        settings.people_source, settings.load_people = "SAMPLED", True
    assert item.kind == "clips.render" and item.imported, item.message
    assert_clip_cameras_match(scene, originals)
    strips = {s["avatar_studio_pass"]: s for s in scene.sequence_editor.strips if s.get("avatar_studio_pass")}
    assert sorted(strips) == ["cam_00/overlay", "cam_00/rgb", "cam_01/overlay", "cam_01/rgb"]
    for name, strip in strips.items():
        assert strip_duration(strip) == frames and strip_start(strip) == 1, name
        assert len(strip.elements) == frames
    for cam in ("cam_00", "cam_01"):  # the overlay sits above its RGB
        assert strips[f"{cam}/overlay"].channel > strips[f"{cam}/rgb"].channel
    clip = Path(item.result_dir) / "dataset" / "clips" / "000000"
    assert json.loads((clip / "clip.json").read_text())["people"][0]["source"] == "explicit"
    with np.load(clip / "people.npz") as z:
        joints = z["joints"][:, 0, :55]  # (F, 55, 3) protocol world
    bones = bone_joint_map(arm)
    worst = 0.0
    for frame in range(1, frames + 1):
        scene.frame_set(frame)
        heads = np.array([np.array(arm.matrix_world @ arm.pose.bones[bones[j].name].head) for j in range(55)])
        worst = max(worst, float(np.abs(axes.to_protocol(heads) - joints[frame - 1]).max()))
    print(f"selected body: worst joint difference {worst * 1e3:.3f} mm")
    assert worst < 1e-3
    moved = np.linalg.norm(joints[-1, 0] - joints[0, 0])
    assert moved > 0.01  # the action moves the body: the frames are not one pose repeated
