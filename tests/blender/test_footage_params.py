"""What the Footage panel sends, built from a real scene (no backend): a movie strip Blender encodes
from PNG frames, a keyed camera, an avatar imported from an avatar job and keyed with an action.
The params parse against the footage.insert contract; the camera per footage frame is the direct
protocol.cameras conversion; files outside the backend's input roots are staged into its exchange
folder."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from footage_scene import W, encode_movie, imported_avatar, keyed_camera, write_plate  # noqa: E402
from test_addon_avatar_import import synthetic_avatar  # noqa: E402

from blender_addon import footage_export, footage_settings, scene_export  # noqa: E402
from blender_addon.importers.footage import META_CHANNEL, META_FRAME_ONE, META_INDEX0, META_STRIP  # noqa: E402
from protocol import cameras, kinds  # noqa: E402

INSERT = kinds.names("footage.insert")
POSE = kinds.names(kinds.SMPLX_POSE)


def stage(prepared: footage_export.Prepared) -> None:
    for _ in prepared.staging.steps():
        pass


def direct_camera_path(scene: bpy.types.Scene, camera: bpy.types.Object, start: int, end: int,
                       width: int, height: int) -> cameras.CameraPath:
    """The camera per frame straight from bpy fields through protocol.cameras (no add-on code)."""
    fields = []
    for frame in range(start, end + 1):
        scene.frame_set(frame)
        data = camera.data
        fields.append(cameras.BlenderCamera(
            lens=data.lens, sensor_width=data.sensor_width, sensor_height=data.sensor_height,
            sensor_fit=data.sensor_fit, shift_x=data.shift_x, shift_y=data.shift_y,
            clip_start=data.clip_start, clip_end=data.clip_end, resolution_x=width, resolution_y=height,
            resolution_percentage=100, pixel_aspect_x=1.0, pixel_aspect_y=1.0,
            matrix_world=np.array(camera.matrix_world)))
    return cameras.camera_path_from_blender(fields, fps=24.0, frame_start=start)


@pytest.fixture
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shot")
    return encode_movie(write_plate(folder), folder / "plate.mp4")


def movie_scene(scene: bpy.types.Scene, movie: Path, tmp_path: Path) -> tuple[bpy.types.Object, ...]:
    """The movie strip from scene frame 10 (footage frame n at 9 + n), the scene range 11-14
    (footage frames 2-5), a keyed camera, an avatar job's avatar keyed over the range."""
    scene.render.fps, scene.render.fps_base = 24, 1.0
    editor = scene.sequence_editor_create()
    strip = editor.strips.new_movie(name="Shot", filepath=str(movie), channel=1, frame_start=10)
    scene.frame_start, scene.frame_end = 11, 14
    camera = keyed_camera(scene, 11, 14)
    arm = imported_avatar(scene, tmp_path / "avatar-job", synthetic_avatar(), frames=4, frame_start=11)
    settings = scene.avatar_studio.footage
    settings.source, settings.strip_name = footage_settings.SOURCE_STRIP, strip.name
    settings.avatar_source, settings.avatar_object = footage_settings.AVATAR_OBJECT, arm
    settings.motion = footage_settings.MOTION_ACTION
    settings.route, settings.lighting, settings.shadow, settings.heading = "3d", "flat", 0.4, 30.0
    scene.cursor.location = (1.0, 2.0, 0.0)
    return strip, camera, arm


def test_insert_params_from_a_movie_strip_camera_and_action(clean_scene, movie: Path, tmp_path: Path) -> None:
    scene = clean_scene
    strip, camera, arm = movie_scene(scene, movie, tmp_path)
    exchange = tmp_path / "backend-data" / "inputs"
    exchange.mkdir(parents=True)
    prepared = footage_export.prepare(scene, scene.avatar_studio.footage, exchange)
    stage(prepared)
    params = prepared.params
    typed = kinds.parse("footage.insert", params)

    # The shot: footage frames 2-5 of the movie, staged inside the exchange folder (same bytes).
    video = Path(typed.video)
    assert video.is_relative_to(exchange) and video.suffix == ".mp4"
    assert video.read_bytes() == movie.read_bytes()
    assert (typed.frame_start, typed.frames, typed.fps) == (2, 4, 24.0)
    assert prepared.meta == {META_STRIP: strip.name, META_FRAME_ONE: 10, META_INDEX0: 0, META_CHANNEL: 1}

    # The camera: one frame per footage frame used, sized as the footage, exactly protocol.cameras'.
    path = cameras.CameraPath.from_payload(params[INSERT.camera])
    expected = direct_camera_path(scene, camera, 11, 14, W, 48)
    assert (path.width, path.height, len(path.K), path.frame_start) == (W, 48, 4, 2)  # footage frame 2
    for name in ("K", "R", "t"):
        np.testing.assert_allclose(getattr(path, name), getattr(expected, name), atol=1e-12)
    assert not np.allclose(path.t[0], path.t[-1])  # the keyed camera moves

    # The motion: the avatar armature's action over scene frames 11-14, as the SMPL-X export makes it.
    motion = params[INSERT.motion]
    reference = scene_export.export_smplx_motion(scene, arm, 11, 14)
    assert motion[POSE.frame_start] == 2 and motion[POSE.global_orient].shape == (4, 3)
    for field in (POSE.global_orient, POSE.body_pose, POSE.transl):
        np.testing.assert_allclose(motion[field], reference[field], atol=1e-9)
    assert isinstance(typed.motion, dict)

    # The avatar: the job's downloaded arrays written back as the folder avatar.from_views makes.
    avatar = Path(typed.avatar)
    assert avatar.is_relative_to(exchange)
    result = synthetic_avatar()
    with np.load(avatar / "avatar_arrays.npz", allow_pickle=False) as arrays:
        for name in ("vertices", "faces", "uvs", "texture", "weights", "parents", "joints_rest"):
            np.testing.assert_array_equal(arrays[name], result[name])
    assert (avatar / "avatar.json").is_file()

    # Where: the 3D cursor (Blender (1, 2, 0)) in the protocol's Y-up world; the rest as set.
    assert typed.place.tolist() == [1.0, 0.0, -2.0]
    assert (typed.heading, typed.route, typed.lighting) == (30.0, "3d", "flat")
    assert typed.shadow == pytest.approx(0.4, abs=1e-6)  # a float32 property
    assert typed.depth is None and typed.depth_estimator is False


def test_image_strips_a_run_of_their_folder_or_a_renumbered_copy(clean_scene, tmp_path: Path) -> None:
    scene = clean_scene
    exchange = tmp_path / "inputs"
    frames = write_plate(exchange / "plate", frames=6)  # inside the input roots: sent in place
    (exchange / "plate" / "notes.png").write_bytes(b"")  # no number: not a frame for the backend
    editor = scene.sequence_editor_create()
    run_strip = editor.strips.new_image(name="Run", filepath=str(frames[1]), channel=2, frame_start=20)
    for frame in frames[2:]:
        run_strip.elements.append(frame.name)
    scene.frame_start, scene.frame_end = 1, 100
    keyed_camera(scene, 20, 24)
    settings = scene.avatar_studio.footage
    settings.strip_name = run_strip.name
    settings.avatar_source, settings.avatar_dir = footage_settings.AVATAR_FOLDER, "/backend/avatars/a"
    settings.motion, settings.depth_source = "walk", footage_settings.DEPTH_ESTIMATOR
    prepared = footage_export.prepare(scene, settings, exchange)
    typed = kinds.parse("footage.insert", prepared.params)
    assert typed.video == str(exchange / "plate") and not prepared.staging.copies
    # Folder image 2 is the strip's first: footage frames 2-6, footage frame 1 at scene frame 19.
    assert (typed.frame_start, typed.frames) == (2, 5) and prepared.meta[META_FRAME_ONE] == 19
    assert typed.motion == "walk" and typed.depth_estimator is True
    assert typed.avatar == "/backend/avatars/a"

    # Frames 1, 3, 5 of a folder outside the roots: a copy numbered 1-3 in strip order.
    outside = write_plate(tmp_path / "elsewhere", frames=6)
    gappy = editor.strips.new_image(name="Gappy", filepath=str(outside[0]), channel=5, frame_start=40)
    for frame in (outside[2], outside[4]):
        gappy.elements.append(frame.name)
    settings.strip_name = gappy.name
    prepared = footage_export.prepare(scene, settings, exchange)
    stage(prepared)
    typed = kinds.parse("footage.insert", prepared.params)
    copied = sorted(Path(typed.video).iterdir())
    assert [p.name for p in copied] == ["000001.png", "000002.png", "000003.png"]
    for copy, source in zip(copied, (outside[0], outside[2], outside[4]), strict=True):
        assert copy.read_bytes() == source.read_bytes()
    assert (typed.frame_start, typed.frames) == (1, 3)
    assert prepared.meta[META_FRAME_ONE] == 40 and prepared.meta[META_INDEX0] == 0


def test_what_cannot_be_sent_is_said(clean_scene, movie: Path, tmp_path: Path) -> None:
    scene = clean_scene
    movie_scene(scene, movie, tmp_path)
    settings = scene.avatar_studio.footage
    # A remote backend: this machine's avatar result cannot reach it.
    with pytest.raises(footage_export.FootageExportError, match="local backend"):
        footage_export.prepare(scene, settings, None)
    # ... a folder on the backend can, and the movie goes as its path (inside its input roots).
    settings.avatar_source, settings.avatar_dir = footage_settings.AVATAR_FOLDER, "/srv/avatars/a"
    prepared = footage_export.prepare(scene, settings, None)
    assert kinds.parse("footage.insert", prepared.params).video == str(movie)
    # Decompose needs no avatar, motion or place.
    decompose = footage_export.prepare(scene, settings, None, "footage.decompose")
    assert INSERT.avatar not in decompose.params
    kinds.parse("footage.decompose", decompose.params)
    # The render aspect is not the footage's: the camera would not line up.
    scene.render.resolution_y = W
    with pytest.raises(footage_export.FootageExportError, match="render size"):
        footage_export.prepare(scene, settings, None)
    scene.render.resolution_y = 48
    settings.strip_name = "nothing"
    with pytest.raises(footage_export.FootageExportError, match="pick the footage strip"):
        footage_export.prepare(scene, settings, None)
    settings.strip_name = "Shot"
    scene.frame_start, scene.frame_end = 100, 120
    with pytest.raises(footage_export.FootageExportError, match="no frames inside"):
        footage_export.prepare(scene, settings, None)


def test_staging_is_bounded_and_stepped(clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exchange = tmp_path / "inputs"
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * footage_export.COPY_STEP_BYTES // 2))
    staging = footage_export.new_staging(exchange, paths_on_backend=False)
    monkeypatch.setattr(os, "link", lambda *_: (_ for _ in ()).throw(OSError("cross-device")))
    staging.backend_path(big, "video.mp4")
    steps = list(staging.steps())
    assert len(steps) == 2 and (staging.folder / "video.mp4").read_bytes() == big.read_bytes()
    monkeypatch.setattr(footage_export, "STAGE_MAX_BYTES", 1000)
    with pytest.raises(footage_export.FootageExportError, match="--input-root"):
        footage_export.new_staging(exchange, paths_on_backend=False).backend_path(big, "video.mp4")
    assert footage_export.new_staging(exchange, paths_on_backend=True).backend_path(big, "v") == str(big)


class CheckingLayout:
    """Records what a panel draws and checks every property it names exists on its data."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def prop(self, data: object, name: str, **_kw: object) -> None:
        assert name in data.bl_rna.properties, name
        self.log.append(("prop", name))

    def prop_search(self, data: object, name: str, search_data: object, search_name: str,
                    **_kw: object) -> None:
        assert name in data.bl_rna.properties and hasattr(search_data, search_name), (name, search_name)
        self.log.append(("prop", name))

    def label(self, text: str = "", **_kw: object) -> None:
        self.log.append(("label", text))

    def operator(self, idname: str, **_kw: object) -> object:
        self.log.append(("operator", idname))
        return types.SimpleNamespace()

    def row(self, **_kw: object) -> CheckingLayout:
        return CheckingLayout(self.log)

    column = box = row


def test_the_panel_draws_its_settings(clean_scene, movie: Path, tmp_path: Path) -> None:
    from blender_addon.footage_panel import AVS_PT_footage

    scene = clean_scene
    movie_scene(scene, movie, tmp_path)
    settings = scene.avatar_studio.footage
    drawn: list[tuple[str, str]] = []
    for motion, depth, avatar in ((footage_settings.MOTION_ACTION, "PATH", footage_settings.AVATAR_OBJECT),
                                  (footage_settings.MOTION_FILE, "NONE", footage_settings.AVATAR_FOLDER)):
        settings.motion, settings.depth_source, settings.avatar_source = motion, depth, avatar
        AVS_PT_footage.draw(types.SimpleNamespace(layout=CheckingLayout(drawn)), bpy.context)
    props = {name for what, name in drawn if what == "prop"}
    assert {"strip_name", "avatar_object", "avatar_dir", "motion_armature", "motion_path", "camera",
            "depth_path", "route", "shadow", "lighting", "heading"} <= props
    assert ("label", "Needs a backend with footage.insert") in drawn  # not connected in this test


def test_staging_runs_in_timer_steps_and_cancels(clean_scene, movie: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_addon.operators import footage as footage_ops

    scene = clean_scene
    movie_scene(scene, movie, tmp_path)
    monkeypatch.setattr(footage_ops, "inputs_folder", lambda _bridge: tmp_path / "inputs")
    prepared = footage_ops.start(bpy.context, "footage.insert")
    assert footage_ops.pending() == 1 and prepared.staging.folder.parent == tmp_path / "inputs"
    assert footage_ops.pump_staging(budget_s=0.0) == footage_ops.STAGING_INTERVAL_S  # one step per call
    assert footage_ops.progress["message"] == "staging footage files: linked 1/2"  # movie, avatar.json
    assert bpy.ops.avatar_studio.footage_cancel() == {"FINISHED"}
    assert footage_ops.pending() == 0 and not prepared.staging.folder.exists()
    assert footage_ops.pump_staging() is None  # nothing left: the timer unregisters
    # Not connected: the staged job is not submitted, and the panel says why.
    footage_ops.start(bpy.context, "footage.insert")
    while footage_ops.pump_staging() is not None:
        pass
    assert footage_ops.progress["message"] == "footage.insert not submitted: not connected"
    assert len(scene.avatar_studio.jobs) == 1  # only the avatar job
