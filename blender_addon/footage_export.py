"""What the Footage panel sends: the shot, the avatar, its motion, the camera per footage frame,
depth, and where the files the backend reads come from (``footage.insert`` / ``footage.decompose``,
contracts in ``protocol/kinds_footage.py``).

- **The shot** (:func:`footage_from_strip`, :func:`footage_from_clip`): a movie strip, an image
  strip or a Movie Clip; its file or folder, the footage frames used (the strip's visible part,
  within the scene's frame range when asked), fps and size. Footage frame ``n`` (1-based, the
  numbering of the result files) sits at scene frame ``frame_one + n - 1``.
- **Paths**: the backend opens paths only inside its input roots (``serve --input-root``; a local
  backend always has ``<data-dir>/inputs``, the *exchange folder*). A file outside them is staged
  for a local backend: hard-linked into ``<exchange>/footage-<stamp>/`` when the file system allows
  it, else copied in 8 MiB steps (:meth:`Staging.steps`), at most :data:`STAGE_MAX_BYTES` in all.
  A remote backend (or *Paths Inside Input Roots*) gets the paths as they are.
- **The avatar**: a folder on the backend, or an avatar imported from an avatar job of this scene,
  whose downloaded result arrays are written back as ``avatar_arrays.npz`` (+ ``avatar.json``,
  ``avatar.glb``) in the staging folder: the folder ``avatar.from_views`` writes.
- **Camera** per footage frame: ``scene_export.export_camera_paths`` (the Clips panel's export,
  ``protocol.cameras`` math) at the footage's size; the render aspect must be the footage's.
- **Motion**: a procedural name, a file, or an SMPL-X armature's action exported by
  ``scene_export.export_smplx_motion`` over the scene frames of the footage frames used.
  In a footage job a payload's ``frame_start`` (camera path, SMPL-X motion) is the footage frame
  of its first entry, the numbering of the result files.

Every param name is the contract's (``kinds.names(KIND).<param>``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import axes, scene_export
from .footage_settings import (
    AVATAR_FOLDER,
    DEPTH_ESTIMATOR,
    DEPTH_PATH,
    MOTION_ACTION,
    MOTION_FILE,
    SOURCE_CLIP,
)
from .importers.footage import META_CHANNEL, META_FRAME_ONE, META_INDEX0, META_STRIP
from .importers.preview import strip_start
from .wire import footage_contract_module, kinds_module

kinds = kinds_module()
footage_kinds = footage_contract_module()
INSERT = kinds.names("footage.insert")
DECOMPOSE = kinds.names("footage.decompose")
AVATAR_ARRAYS = kinds.result_names("avatar.from_views")
POSE = kinds.names(kinds.SMPLX_POSE)
FOOTAGE_KINDS = ("footage.insert", "footage.decompose")

# Staged copies for a local backend: at most this much is copied (hard links cost nothing and do
# not count), in steps of COPY_STEP_BYTES so no timer call holds Blender for long.
STAGE_MAX_BYTES = 2 << 30
COPY_STEP_BYTES = 8 << 20
# The arrays an avatar folder's avatar_arrays.npz holds (backend/clips/avatars.py reads them).
AVATAR_ARRAY_NAMES = ("vertices", "faces", "uvs", "texture", "weights", "parents", "joints_rest",
                      "part_labels", "normals")
AVATAR_FILES = ("avatar.json", "avatar.glb")
AVATAR_KINDS = ("avatar.from_views", "avatar.from_text", "avatar.from_image")



class FootageExportError(ValueError):
    """The panel's settings cannot be sent as they are; the message says what to change."""


@dataclass
class Footage:
    """A shot as the backend will read it, and where it sits on the timeline."""

    path: Path  # the movie file or the image folder, on this machine
    is_dir: bool
    frame_one: int  # scene frame of footage frame 1
    first: int  # first footage frame used, 1-based
    frames: int  # frames used
    fps: float
    width: int
    height: int
    strip_name: str = ""
    channel: int = 0
    images: list[Path] = field(default_factory=list)  # an image strip's frames, in order
    index0: int = 0  # the strip's first image is the folder's image index0 + 1

    @property
    def scene_start(self) -> int:
        return self.frame_one + self.first - 1

    @property
    def scene_end(self) -> int:
        return self.scene_start + self.frames - 1


def numbered_files(folder: Path) -> list[Path]:
    """The footage images of ``folder`` in the backend's order (backend/footage/source.py
    ``numbered_files``): by the last run of digits of the stem; files without a number are not frames."""
    found = []
    for path in folder.iterdir():
        if path.suffix.lower() in footage_kinds.FOOTAGE_IMAGE_SUFFIXES and path.is_file():
            digits = re.findall(r"\d+", path.stem)
            if digits:
                found.append((int(digits[-1]), path.name, path))
    return [p for _, _, p in sorted(found)]


def _handles(strip: bpy.types.Strip) -> tuple[int, int]:
    """The visible part of a strip, [first, end) in scene frames (Blender 5 names, else 4.x)."""
    if hasattr(strip, "left_handle"):
        return int(strip.left_handle), int(strip.right_handle)
    return int(strip.frame_final_start), int(strip.frame_final_end)


def _content_length(strip: bpy.types.Strip) -> int:
    return int(strip.content_duration if hasattr(strip, "content_duration") else strip.frame_duration)


def _movie_info(path: Path) -> tuple[int, int, float, int]:
    """(width, height, fps, frames) of a movie file, read by Blender's own decoder."""
    try:
        clip = bpy.data.movieclips.load(str(path))
    except RuntimeError as exc:
        raise FootageExportError(f"cannot open the footage {path}: {exc}") from None
    try:
        width, height = (int(v) for v in clip.size)
        return width, height, float(clip.fps), int(clip.frame_duration)
    finally:
        bpy.data.movieclips.remove(clip)


def _image_size(path: Path) -> tuple[int, int]:
    image = bpy.data.images.load(str(path))
    try:
        width, height = (int(v) for v in image.size)
    finally:
        bpy.data.images.remove(image)
    if width == 0 or height == 0:
        raise FootageExportError(f"cannot read the footage image {path}")
    return width, height


def _used_range(scene: bpy.types.Scene, lo: int, hi: int, use_scene_range: bool,
                what: str) -> tuple[int, int]:
    """[lo, hi) scene frames within the scene range when asked; an error when empty or too long."""
    if use_scene_range:
        lo, hi = max(lo, scene.frame_start), min(hi, scene.frame_end + 1)
    if hi <= lo:
        raise FootageExportError(f"{what} has no frames inside the scene's frame range "
                                 f"{scene.frame_start}-{scene.frame_end}")
    if hi - lo > footage_kinds.FOOTAGE_MAX_FRAMES:
        raise FootageExportError(f"{what}: {hi - lo} frames; a footage job takes at most "
                                 f"{footage_kinds.FOOTAGE_MAX_FRAMES} (narrow the scene's frame range)")
    return lo, hi


def footage_from_strip(scene: bpy.types.Scene, strip: bpy.types.Strip,
                       use_scene_range: bool = True) -> Footage:
    """The shot of a movie or image strip: the visible part of its content (within the scene's
    frame range with ``use_scene_range``)."""
    content = int(strip_start(strip))
    left, right = _handles(strip)
    lo, hi = max(left, content), min(right, content + _content_length(strip))
    lo, hi = _used_range(scene, lo, hi, use_scene_range, f"strip {strip.name}")
    fps = scene.render.fps / scene.render.fps_base
    if strip.type == "MOVIE":
        path = Path(bpy.path.abspath(strip.filepath))
        if not path.is_file():
            raise FootageExportError(f"strip {strip.name}: {path} is not a file")
        if path.suffix.lower() not in footage_kinds.FOOTAGE_VIDEO_SUFFIXES:
            raise FootageExportError(f"strip {strip.name}: {path.suffix} is not a footage container "
                                     f"({', '.join(footage_kinds.FOOTAGE_VIDEO_SUFFIXES)})")
        width, height, fps, _ = _movie_info(path)
        return Footage(path, False, content, lo - content + 1, hi - lo, fps, width, height,
                       strip.name, strip.channel)
    if strip.type == "IMAGE":
        folder = Path(bpy.path.abspath(strip.directory))
        images = [folder / e.filename for e in strip.elements]
        if not images or any(p.suffix.lower() not in footage_kinds.FOOTAGE_IMAGE_SUFFIXES for p in images):
            raise FootageExportError(f"strip {strip.name}: footage images must be "
                                     f"{'/'.join(footage_kinds.FOOTAGE_IMAGE_SUFFIXES)}")
        missing = [p.name for p in images if not p.is_file()]
        if missing:
            raise FootageExportError(f"strip {strip.name}: missing frames {missing[:3]}")
        width, height = _image_size(images[0])
        ordered = numbered_files(folder)
        # The backend numbers the folder's images itself: usable in place only when the strip's
        # frames are a run of that order; else a copy holds exactly the strip's frames.
        index0 = next((i for i, p in enumerate(ordered) if p == images[0]), -1)
        if index0 < 0 or ordered[index0:index0 + len(images)] != images:
            index0 = -1
        return Footage(folder, True, content - max(index0, 0), lo - content + 1 + max(index0, 0), hi - lo,
                       fps, width, height, strip.name, strip.channel, images, index0)
    raise FootageExportError(f"strip {strip.name} is a {strip.type.lower()} strip; "
                             "pick a movie or image strip")


def footage_from_clip(scene: bpy.types.Scene, clip: bpy.types.MovieClip,
                      use_scene_range: bool = True) -> Footage:
    """The shot of a Movie Clip (a movie file): it plays from ``clip.frame_start``; its
    ``frame_offset`` shifts which file frame shows there."""
    path = Path(bpy.path.abspath(clip.filepath))
    if clip.source != "MOVIE" or not path.is_file():
        raise FootageExportError(f"clip {clip.name}: only movie-file clips (pick its image strip instead)")
    frame_one = int(clip.frame_start) - int(clip.frame_offset)
    lo, hi = _used_range(scene, max(int(clip.frame_start), frame_one), frame_one + int(clip.frame_duration),
                         use_scene_range, f"clip {clip.name}")
    width, height = (int(v) for v in clip.size)
    return Footage(path, False, frame_one, lo - frame_one + 1, hi - lo, float(clip.fps), width, height)


def find_footage(scene: bpy.types.Scene, settings: Any) -> Footage:
    if settings.source == SOURCE_CLIP:
        if settings.clip is None:
            raise FootageExportError("pick a Movie Clip")
        return footage_from_clip(scene, settings.clip, settings.use_scene_range)
    editor = scene.sequence_editor
    strip = editor.strips_all.get(settings.strip_name) if editor is not None and settings.strip_name else None
    if strip is None:
        raise FootageExportError("pick the footage strip (a movie or image strip of the sequencer)")
    return footage_from_strip(scene, strip, settings.use_scene_range)


# ------------------------------------------------------------------------------------------ staging


@dataclass
class Staging:
    """Files to place inside the backend's input roots before the submit, then done in steps."""

    folder: Path | None  # <exchange>/footage-<stamp>, or None: paths go as they are
    roots: tuple[Path, ...] = ()
    copies: list[tuple[Path, Path]] = field(default_factory=list)
    writes: list[tuple[Path, Any]] = field(default_factory=list)  # (dst, callable writing it)
    copied_bytes: int = 0

    def backend_path(self, local: Path, name: str) -> str:
        """Where the backend reads ``local``: itself when inside the roots (or nothing is staged),
        else ``<staging>/<name>`` (planned here, done by :meth:`steps`)."""
        if self.folder is None or _inside(local, self.roots):
            return str(local)
        target = self.folder / name
        if local.is_dir():
            files = sorted(p for p in local.iterdir() if p.is_file())
            self.copies += [(p, target / p.name) for p in files]
        else:
            self.copies.append((local, target))
        self._check_size()
        return str(target)

    def stage_frames(self, images: list[Path], name: str) -> str:
        """An image strip's frames, renumbered 000001.. in strip order (footage frame n = image n)."""
        assert self.folder is not None
        target = self.folder / name
        self.copies += [(p, target / f"{i:06d}{p.suffix.lower()}") for i, p in enumerate(images, start=1)]
        self._check_size()
        return str(target)

    def _check_size(self) -> None:
        total = sum(src.stat().st_size for src, _ in self.copies)
        if total > STAGE_MAX_BYTES:
            raise FootageExportError(
                f"{total / 2**30:.1f} GiB to place inside the backend's input roots, over the "
                f"{STAGE_MAX_BYTES / 2**30:.0f} GiB the add-on copies: start the backend with "
                "--input-root on the footage's folder and tick Paths Inside Input Roots")

    def steps(self) -> Iterator[str]:
        """Link or copy each file (a copy 8 MiB per step), then the written files."""
        for index, (src, dst) in enumerate(self.copies):
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)  # same file system: instant, no bytes copied
                yield f"linked {index + 1}/{len(self.copies)}"
                continue
            except OSError:
                pass
            partial = dst.with_name(dst.name + ".part")
            with open(src, "rb") as reader, open(partial, "wb") as writer:
                while chunk := reader.read(COPY_STEP_BYTES):
                    writer.write(chunk)
                    self.copied_bytes += len(chunk)
                    yield f"copied {self.copied_bytes >> 20} MiB"
            shutil.copystat(src, partial)
            partial.replace(dst)
        for dst, write in self.writes:
            dst.parent.mkdir(parents=True, exist_ok=True)
            write(dst)
            yield f"wrote {dst.name}"


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def new_staging(exchange: Path | None, paths_on_backend: bool) -> Staging:
    """``exchange``: the local backend's ``<data-dir>/inputs`` (None for a remote backend)."""
    if exchange is None or paths_on_backend:
        return Staging(None)
    stamp = f"footage-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    return Staging(exchange / stamp, (exchange,))


# ------------------------------------------------------------------------------------------ avatar


def avatar_armature(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    if obj is not None and obj.type == "MESH" and obj.parent is not None:
        return obj.parent
    return obj


def avatar_job(scene: bpy.types.Scene, obj: bpy.types.Object) -> Any:
    """The avatar job item whose result was imported as ``obj`` (its armature or mesh)."""
    arm = avatar_armature(obj)
    names = {obj.name, arm.name if arm is not None else ""}
    return next((i for i in reversed(scene.avatar_studio.jobs)
                 if i.kind in AVATAR_KINDS and i.target in names and i.result_dir), None)


def _write_avatar_folder(result_dir: Path) -> Any:
    def write(npz: Path) -> None:
        arrays = {}
        for name in AVATAR_ARRAY_NAMES:
            path = result_dir / f"{getattr(AVATAR_ARRAYS, name)}.npy"
            if path.is_file():
                arrays[name] = np.load(path, allow_pickle=False)
        missing = [n for n in AVATAR_ARRAY_NAMES[:7] if n not in arrays]
        if missing:
            raise FootageExportError(f"the avatar result in {result_dir} lacks {', '.join(missing)}")
        np.savez(npz, **arrays)
    return write


def avatar_backend_dir(scene: bpy.types.Scene, settings: Any, staging: Staging) -> str:
    """The avatar folder as the backend reads it."""
    if settings.avatar_source == AVATAR_FOLDER:
        if not settings.avatar_dir.strip():
            raise FootageExportError("set the avatar folder (on the backend)")
        return settings.avatar_dir.strip()
    obj = settings.avatar_object
    if obj is None:
        raise FootageExportError("pick the avatar (an armature or mesh imported from an avatar job)")
    item = avatar_job(scene, obj)
    if item is None:
        raise FootageExportError(f"{obj.name} was not imported from an avatar job of this scene: "
                                 "pick a Folder on Backend instead")
    result_dir = Path(item.result_dir)
    if (result_dir / "avatar_arrays.npz").is_file():  # a CLI avatar folder: send it whole
        return staging.backend_path(result_dir, "avatar")
    if staging.folder is None:
        raise FootageExportError("the avatar's result is on this machine only: it is staged for a local "
                                 "backend (untick Paths Inside Input Roots), or pick a Folder on Backend")
    target = staging.folder / "avatar"
    staging.writes.append((target / "avatar_arrays.npz", _write_avatar_folder(result_dir)))
    for name in AVATAR_FILES:
        if (result_dir / name).is_file():
            staging.copies.append((result_dir / name, target / name))
    if not (result_dir / "avatar.json").is_file():
        staging.writes.append((target / "avatar.json", lambda p: p.write_text(json.dumps({}))))
    staging._check_size()
    return str(target)


# ------------------------------------------------------------------------------------------ params


def camera_for(scene: bpy.types.Scene, settings: Any) -> bpy.types.Object:
    camera = settings.camera or scene.camera
    if camera is None:
        raise FootageExportError("no camera: set the scene camera (solved or keyed) or pick one")
    return camera


def footage_camera_path(scene: bpy.types.Scene, camera: bpy.types.Object, footage: Footage) -> Any:
    """One CameraPath frame per footage frame used, sized as the footage (the Clips panel's export)."""
    path = scene_export.export_camera_paths(scene, [camera], footage.scene_start, footage.scene_end,
                                            width=footage.width)[0]
    # A footage job counts a camera path's frames in footage frames (backend/footage/source.py
    # shot_camera): its first entry is footage frame ``first``, not a scene frame.
    path = dataclasses.replace(path, frame_start=footage.first)
    if (path.width, path.height) != (footage.width, footage.height):
        render = scene.render
        raise FootageExportError(
            f"the render size {render.resolution_x}x{render.resolution_y} has another aspect than the "
            f"footage's {footage.width}x{footage.height}: set the render resolution to the footage's")
    return path


def motion_param(scene: bpy.types.Scene, settings: Any, footage: Footage, staging: Staging) -> Any:
    if settings.motion == MOTION_FILE:
        local = Path(bpy.path.abspath(settings.motion_path)) if settings.motion_path else None
        if local is None:
            raise FootageExportError("set the motion file (AMASS .npz or .bvh)")
        if staging.folder is not None and not local.is_file():
            raise FootageExportError(f"the motion file {local} does not exist")
        return staging.backend_path(local, f"motion{local.suffix.lower()}")
    if settings.motion == MOTION_ACTION:
        arm = settings.motion_armature or avatar_armature(settings.avatar_object)
        if not scene_export.is_smplx_armature(arm):
            raise FootageExportError("the motion's armature is not an SMPL-X armature (55 joints)")
        motion = scene_export.export_smplx_motion(scene, arm, footage.scene_start, footage.scene_end)
        motion[POSE.frame_start] = footage.first  # footage frames, as the camera path's
        return motion
    return settings.motion


def place_param(scene: bpy.types.Scene, settings: Any) -> list[float]:
    """The root's start in the protocol's world (Y up): the 3D cursor or the given point."""
    where = scene.cursor.location if settings.place_from_cursor else settings.place
    return [float(v) for v in axes.to_protocol(np.array(where, dtype=np.float64))]


def shot_params(names: Any, footage: Footage, video: str, camera_path: Any | None) -> dict[str, Any]:
    """The params both footage kinds share (their names are the same contract params)."""
    params: dict[str, Any] = {
        names.video: video,
        names.frame_start: footage.first,
        names.frames: footage.frames,
        names.fps: footage.fps,
    }
    if camera_path is not None:
        params[names.camera] = camera_path.to_payload()
    return params


def video_param(footage: Footage, staging: Staging) -> str:
    """The footage path as the backend reads it. An image strip whose folder must be staged is
    copied as exactly its frames, renumbered 000001.. in strip order (footage frame n = its image
    n); the numbering of ``footage`` follows."""
    if not footage.is_dir:
        return staging.backend_path(footage.path, f"video{footage.path.suffix.lower()}")
    if staging.folder is not None and not _inside(footage.path, staging.roots):
        shift = max(footage.index0, 0)
        footage.frame_one, footage.first = footage.frame_one + shift, footage.first - shift
        footage.index0 = 0
        return staging.stage_frames(footage.images, "video")
    if footage.index0 < 0:
        raise FootageExportError(
            f"the strip's frames are not a numbered run of {footage.path} (the backend reads the "
            "folder's numbered images in order): give it a folder holding exactly the strip's frames")
    return str(footage.path)


def depth_params(names: Any, settings: Any, staging: Staging) -> dict[str, Any]:
    if settings.depth_source == DEPTH_ESTIMATOR:
        return {names.depth_estimator: True}
    if settings.depth_source == DEPTH_PATH:
        if not settings.depth_path:
            raise FootageExportError("set the depth path (.npy or a folder of .npy/.exr)")
        local = Path(bpy.path.abspath(settings.depth_path))
        name = "depth" if local.is_dir() else f"depth{local.suffix.lower()}"
        return {names.depth: staging.backend_path(local, name)}
    return {}


@dataclass
class Prepared:
    """A footage job ready to submit once :attr:`staging` has run."""

    kind: str
    params: dict[str, Any]
    meta: dict[str, Any]
    staging: Staging
    footage: Footage


def prepare(scene: bpy.types.Scene, settings: Any, exchange: Path | None,
            kind: str = "footage.insert") -> Prepared:
    """The params and meta of the Footage panel's job, validated against the contract; the files
    the backend needs outside its roots are planned in ``prepared.staging`` (run its steps first)."""
    footage = find_footage(scene, settings)
    staging = new_staging(exchange, settings.paths_on_backend)
    with_camera = kind == "footage.insert" or scene.camera is not None or settings.camera is not None
    camera = camera_for(scene, settings) if with_camera else None
    camera_path = footage_camera_path(scene, camera, footage) if camera is not None else None
    names = INSERT if kind == "footage.insert" else DECOMPOSE
    video = video_param(footage, staging)
    params = shot_params(names, footage, video, camera_path)
    params.update(depth_params(names, settings, staging))
    if kind == "footage.insert":
        params.update({
            INSERT.avatar: avatar_backend_dir(scene, settings, staging),
            INSERT.motion: motion_param(scene, settings, footage, staging),
            INSERT.place: place_param(scene, settings),
            INSERT.heading: float(settings.heading),
            INSERT.route: settings.route,
            INSERT.lighting: settings.lighting,
            INSERT.shadow: float(settings.shadow),
        })
    kinds.validate(kind, params)
    meta = {META_STRIP: footage.strip_name, META_FRAME_ONE: footage.frame_one,
            META_INDEX0: footage.index0, META_CHANNEL: footage.channel}
    return Prepared(kind, params, meta, staging, footage)
