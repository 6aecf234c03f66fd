"""One clip of a ``clips.render`` dataset (docs/clips.md) -> animated Blender cameras + VSE strips.

Each camera folder of the clip (``cam_00/``...) becomes a Blender camera whose per-frame K, R, t
(``camera.npz``) are keyed on the object (location, quaternion) and on its data (lens, shifts),
converted by the one Blender <-> protocol camera conversion
(:func:`protocol.cameras.blender_camera_from_opencv`); its ``rgb/`` frames become one image strip
(``importers/preview.py``'s strip code), RGB of the first camera unmuted; a clip rendered with
the ``overlay`` pass also gets its GT overlay frames as a (muted) strip above the RGB strips.
Frame ``f`` of the clip is scene frame ``frame_start + f``. The people (SMPL-X parameters in
``people.npz``) cannot be posed without the backend: :func:`people_payloads` gives their SMPL-X
pose payloads, which the dispatch sends as ``body.mesh`` jobs whose results (the body importer's)
come back animated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..wire import cameras_module, kinds_module, rotations, smplx
from .action import _continuous, _new_fcurve, _write_keys
from .preview import PREVIEW_STAGES, import_preview_steps
from .steps import Steps, run

CLIP_STAGES = ("cameras", *PREVIEW_STAGES)
CAMERA_FILE = "camera.npz"
FRAMES_PER_STEP = 250
# camera.npz's arrays (docs/clips.md "camera.npz"): a file's fields, not job params.
CAMERA_KEYS = ("K", "R", "t", "size", "near_far")
PEOPLE_FILE = "people.npz"
# Image passes that become strips (docs/clips.md): the RGB, and the ground truth drawn over it
# (pass ``overlay``: masks, boxes, COCO keypoints), a strip above the RGB strips (PASS_ORDER).
CLIP_STRIP_PASSES = ("rgb", "overlay")
# clip.json's fields (docs/clips.md), not job params: the people's entries, their gender, the rate.
CLIP_PEOPLE, CLIP_GENDER, CLIP_FPS = "people", "gender", "fps"


@dataclass
class LoadedClip:
    clip_id: str
    cameras: list[bpy.types.Object]
    strips: list[bpy.types.Strip]
    frames: int

    @property
    def summary(self) -> str:
        return (f"clip {self.clip_id}: {len(self.cameras)} camera(s), {self.frames} frames, "
                f"{len(self.strips)} strip(s)")


def clip_folder(dataset: Path, clip: str | int) -> Path:
    """``<dataset>/clips/<id>``; ``clip`` an id (``"000003"``) or an index (3)."""
    clip_id = f"{int(clip):06d}" if isinstance(clip, int) or str(clip).isdigit() else str(clip)
    folder = Path(dataset) / "clips" / clip_id
    if not (folder / "clip.json").is_file():
        raise ValueError(f"{folder} is not a finished clip of a clips dataset (no clip.json)")
    return folder


def _camera_arrays(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, float, float]:
    with np.load(folder / CAMERA_FILE, allow_pickle=False) as z:
        K, R, t, size, near_far = (np.asarray(z[k], dtype=np.float64) for k in CAMERA_KEYS)
    (width, height), (near, far) = size.astype(int).tolist(), near_far.tolist()
    if K.ndim != 3 or K.shape[1:] != (3, 3) or R.shape != K.shape or t.shape != (K.shape[0], 3):
        raise ValueError(f"{folder / CAMERA_FILE}: K, R, t must be (F,3,3), (F,3,3), (F,3)")
    return K, R, t, width, height, near, far


def _key_camera(obj: bpy.types.Object, fields: list, frames: np.ndarray) -> None:
    """Key the object's location/quaternion and the data's lens and shifts, one key per frame."""
    matrices = np.stack([f.matrix_world for f in fields])
    location = matrices[:, :3, 3]
    quats = _continuous(rotations.matrix_to_quaternion(matrices[:, None, :3, :3]))[:, 0]
    obj.rotation_mode = "QUATERNION"
    for name, values in (("location", location), ("rotation_quaternion", quats)):
        for index in range(values.shape[1]):
            _write_keys(_new_fcurve(obj.animation_data.action, obj, name, index, "Camera"), frames,
                        values[:, index])
    data = obj.data
    for name in ("lens", "shift_x", "shift_y"):
        values = np.array([getattr(f, name) for f in fields])
        _write_keys(_new_fcurve(data.animation_data.action, data, name, 0, "Lens"), frames, values)


def _make_camera(name: str, collection: bpy.types.Collection) -> bpy.types.Object:
    old = bpy.data.objects.get(name)
    if old is not None and old.type == "CAMERA":  # a re-import replaces it
        bpy.data.objects.remove(old)
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    for block in (obj, data):
        block.animation_data_create()
        block.animation_data.action = bpy.data.actions.new(f"{name} {'Lens' if block is data else 'Path'}")
    return obj


def camera_from_path(scene: bpy.types.Scene, path: Any, name: str, frame_start: int = 1) -> bpy.types.Object:
    """A protocol ``CameraPath`` (e.g. a shot's solved camera as JSON) as a Blender camera keyed
    once per frame from ``frame_start``, made the scene's camera at the path's render size."""
    cams = cameras_module()
    fields = [cams.blender_camera_from_opencv(path.K[f], path.R[f], path.t[f], path.width, path.height,
                                              path.near, path.far) for f in range(len(path.K))]
    obj = _make_camera(name, scene.collection)
    first = fields[0]
    obj.data.sensor_fit = "HORIZONTAL"
    obj.data.sensor_width, obj.data.sensor_height = first.sensor_width, first.sensor_height
    obj.data.clip_start, obj.data.clip_end = path.near, path.far
    _key_camera(obj, fields, np.arange(len(fields), dtype=np.float64) + frame_start)
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = path.width, path.height, 100
    render.pixel_aspect_x, render.pixel_aspect_y = first.pixel_aspect_x, first.pixel_aspect_y
    scene.camera = obj
    return obj


def load_clip(dataset: Path, clip: str | int, **options: object) -> LoadedClip:
    """The whole clip in one go (scripts, tests); see :func:`load_clip_steps`."""
    return run(load_clip_steps(dataset, clip, **options))  # type: ignore[arg-type]


def load_clip_steps(dataset: Path, clip: str | int, *, scene: bpy.types.Scene,
                    frame_start: int = 1) -> Steps[LoadedClip]:
    """In steps (a camera, then a strip, each): the clip's cameras as animated Blender cameras in
    a collection "AVS Clip <id>", and their RGB frames as strips; sets the scene's render size and
    frame range to the clip's. Returns what was made."""
    cams = cameras_module()
    folder = clip_folder(Path(dataset), clip)
    clip_id = folder.name
    camera_dirs = sorted(d for d in folder.iterdir() if (d / CAMERA_FILE).is_file())
    if not camera_dirs:
        raise ValueError(f"{folder} holds no camera folders")
    name = f"AVS Clip {clip_id}"
    collection = bpy.data.collections.get(name) or bpy.data.collections.new(name)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    objects, frames_count, rgb = [], 0, {}
    for cam_dir in camera_dirs:
        K, R, t, width, height, near, far = _camera_arrays(cam_dir)
        fields = []
        for f in range(K.shape[0]):
            fields.append(cams.blender_camera_from_opencv(K[f], R[f], t[f], width, height, near, far))
            if (f + 1) % FRAMES_PER_STEP == 0:  # ~30 us a frame: long clips convert across pumps
                yield "cameras"
        obj = _make_camera(f"{clip_id} {cam_dir.name}", collection)
        first = fields[0]
        data = obj.data
        data.sensor_fit = "HORIZONTAL"
        data.sensor_width, data.sensor_height = first.sensor_width, first.sensor_height
        data.clip_start, data.clip_end = near, far
        frames = np.arange(K.shape[0], dtype=np.float64) + frame_start
        _key_camera(obj, fields, frames)
        render = scene.render
        render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
        render.pixel_aspect_x, render.pixel_aspect_y = first.pixel_aspect_x, first.pixel_aspect_y
        objects.append(obj)
        frames_count = max(frames_count, K.shape[0])
        for image_pass in CLIP_STRIP_PASSES:  # the RGB, and the GT overlay when written
            for png in sorted((cam_dir / image_pass).glob("*.png")):
                rgb[f"{cam_dir.name}/{image_pass}/{png.name}"] = png
        yield "cameras"
    scene.camera = objects[0]
    scene.frame_start, scene.frame_end = frame_start, frame_start + frames_count - 1
    strips = []
    if rgb:
        strips = yield from import_preview_steps(rgb, scene=scene, job_id=f"c{clip_id}",
                                                 frame_start=frame_start, label=f"clip {clip_id}")
    return LoadedClip(clip_id, objects, strips, frames_count)


def people_payloads(dataset: Path, clip: str | int, frame_start: int = 1) -> list[dict]:
    """Per person of the clip, an SMPL-X pose payload (``protocol.kinds.SMPLX_POSE``) of its world
    motion (``people.npz``), starting at scene frame ``frame_start``."""
    kinds = kinds_module()
    pose = kinds.names(kinds.SMPLX_POSE)
    folder = clip_folder(Path(dataset), clip)
    info = json.loads((folder / "clip.json").read_text(encoding="utf-8"))
    people = info.get(CLIP_PEOPLE) if isinstance(info.get(CLIP_PEOPLE), list) else []
    payloads = []
    with np.load(folder / PEOPLE_FILE, allow_pickle=False) as z:
        arrays = {name: np.asarray(z[name], dtype=np.float32) for name in (*smplx.PER_FRAME_FIELDS,
                                                                           pose.betas, pose.expression)}
    for person in range(arrays[pose.global_orient].shape[0]):
        payload = {name: values[person] for name, values in arrays.items()}
        entry = people[person] if person < len(people) and isinstance(people[person], dict) else {}
        gender = entry.get(CLIP_GENDER)
        payload[pose.gender] = gender if gender in ("neutral", "male", "female") else "neutral"
        payload[pose.fps] = float(info.get(CLIP_FPS, 30.0))
        payload[pose.frame_start] = int(frame_start)
        payloads.append(payload)
    return payloads
