"""Insert an avatar into a shot: the exact 3D compositing route (the neural route, on the same
layers: :mod:`backend.footage.neural_route`).

:func:`insert_3d` takes what the shot was lifted into (:class:`ShotLayers`: the scene layer to
composite over, the scene's depth, occluder mattes) rather than reading files itself, so the same
route runs on the plate as shot (the default: scene = the plate, depth = the given depth) and on
the output of ``footage.decompose`` (a person removed, estimated depth). Per frame: the posed
avatar's layer (:mod:`.render_layer`: lit, anti-aliased, occluded, motion-blurred), its shadow on
the ground (:mod:`.shadow`), the over operator (:mod:`.composite`), the files (:mod:`.write`).
Progress and cancel are plain callables, so the job, the CLI and the bench drive the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.clips.avatars import AvatarPerson
from backend.footage.avatar_motion import PosedAvatar
from backend.footage.composite import composite_frame
from backend.footage.lighting import dominant_direction, fit_plate_sh, flat_sh
from backend.footage.render_layer import appearance, blur_poses, character_frame
from backend.footage.shadow import shadow_frame
from backend.footage.source import FootageError, ShotCamera
from backend.footage.write import InsertWriter
from backend.render.api import Rasterizer, get_rasterizer

Progress = Callable[[float, str], None]
Check = Callable[[], None]


@dataclass(frozen=True)
class InsertConfig:
    """The route's knobs (the job's params of the same names; protocol/kinds_footage.py)."""

    place: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heading: float = 0.0
    lighting: str = "plate"  # plate | sh | flat
    sh: np.ndarray | None = None  # (9, 3) for lighting "sh"
    shadow: float = 0.6
    motion_blur: int = 0
    antialias: int = 2
    mp4: bool = True


@dataclass(frozen=True)
class ShotLayers:
    """What the character is composited into, per frame used."""

    scene: np.ndarray  # (F, H, W, 3) uint8: the scene layer (the plate, or it with people removed)
    depth: np.ndarray | None = None  # (F, H, W) float32 metres, +inf where nothing is
    occluders: np.ndarray | None = None  # (F, H, W) float32 in [0, 1]: in front of everything
    plate: np.ndarray | None = None  # (F, H, W, 3) uint8 the shot as is (lighting fit); default scene


@dataclass
class InsertOutcome:
    sh: np.ndarray  # (9, 3) float32, the lighting used
    lighting: dict[str, Any]
    character_pixels: np.ndarray  # (F,) int32
    occluded_pixels: np.ndarray  # (F,) int32
    visible_fraction: float
    files: dict[str, Path]
    timings_s: dict[str, float] = field(default_factory=dict)


def choose_lighting(config: InsertConfig, layers: ShotLayers, camera: ShotCamera,
                    ground_y: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The SH irradiance the character is lit by, and how it was found."""
    if config.lighting == "flat":
        return flat_sh(), {"mode": "flat"}
    if config.lighting == "sh":
        if config.sh is None:
            raise FootageError("lighting: 'sh' needs the sh coefficients (9 x 3)")
        return np.asarray(config.sh, np.float32), {"mode": "sh"}
    if config.lighting != "plate":
        raise FootageError(f"lighting: unknown mode {config.lighting!r}")
    plate = layers.plate if layers.plate is not None else layers.scene
    sh, info = fit_plate_sh(plate, layers.depth, camera.K, camera.R, camera.t, ground_y)
    return sh, {"mode": "plate", **info}


def check_inputs(layers: ShotLayers, camera: ShotCamera, posed: PosedAvatar) -> None:
    """Everything sized as the scene layer (F, H, W) before any frame is written."""
    F, H, W = layers.scene.shape[:3]
    checks = (("depth", layers.depth, (F, H, W)), ("occluder_masks", layers.occluders, (F, H, W)),
              ("plate", layers.plate, (F, H, W, 3)))
    for name, array, shape in checks:
        if array is not None and array.shape != shape:
            raise FootageError(f"{name}: shape {list(array.shape)}, the scene layer needs {list(shape)}")
    if len(camera.K) != F or len(posed.vertices) != F:
        raise FootageError(f"{len(camera.K)} cameras and {len(posed.vertices)} poses for {F} frames")


def insert_3d(layers: ShotLayers, camera: ShotCamera, posed: PosedAvatar, avatar: AvatarPerson,
              config: InsertConfig, out_dir: Path, numbers: Sequence[int], fps: float,
              progress: Progress = lambda f, m: None, cancelled: Check = lambda: None,
              rasterizer: Rasterizer | None = None) -> InsertOutcome:
    """Composite the posed avatar into every frame and write the files into ``out_dir`` (module
    doc). Raises :class:`FootageError` on inconsistent inputs before anything is written."""
    check_inputs(layers, camera, posed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sh, light_info = choose_lighting(config, layers, camera, posed.ground_y)
    light_dir, directionality = dominant_direction(sh)
    light_info.update(direction=light_dir.round(4).tolist(), directionality=round(directionality, 4))
    timings["lighting"] = time.perf_counter() - start
    rasterizer = rasterizer or get_rasterizer("auto")
    look = appearance(avatar.faces, avatar.uvs, avatar.texture)
    F, H, W = layers.scene.shape[:3]
    s = int(config.antialias)
    char_px = np.zeros(F, np.int32)
    occl_px = np.zeros(F, np.int32)
    seen, covered = 0.0, 0.0
    writer = InsertWriter(out_dir, W, H, fps, config.mp4)
    render_s = 0.0
    try:
        for i in range(F):
            cancelled()
            t0 = time.perf_counter()
            poses = blur_poses(posed.vertices, i, config.motion_blur)
            K, R, t = camera.K[i], camera.R[i], camera.t[i]
            depth = layers.depth[i] if layers.depth is not None else None
            occluders = layers.occluders[i] if layers.occluders is not None else None
            char = character_frame(poses, look, K, R, t, W, H, s, sh, depth, occluders, rasterizer)
            shade = shadow_frame(poses, look.faces, light_dir, posed.ground_y, K, R, t, W, H, depth,
                                 float(config.shadow), rasterizer)
            frame = composite_frame(layers.scene[i], char, shade)
            render_s += time.perf_counter() - t0
            if char is not None:
                char_px[i] = int((char.cover >= 0.5).sum())
                occl_px[i] = int(((char.cover - char.alpha) >= 0.5).sum())
                seen += float(char.alpha.sum())
                covered += float(char.cover.sum())
            writer.write(int(numbers[i]), frame)
            progress((i + 1) / F, f"frame {numbers[i]} ({i + 1}/{F})")
        writer.close()
    except BaseException:
        writer.close()
        raise
    timings["render_composite"] = render_s
    timings["total"] = time.perf_counter() - start
    return InsertOutcome(sh, light_info, char_px, occl_px, seen / covered if covered > 0 else 0.0,
                         writer.files, timings)
