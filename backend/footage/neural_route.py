"""``footage.insert`` with ``route="neural"``: MIMO's decoder (:mod:`backend.mimo`) on the shot's
layers, with the geometry the 3D route knows as its conditions.

What the decoder is given, all from what the job already holds: the scene layer (the plate, or it
with people removed), MIMO's occlusion layer computed exactly from the plate's depth against the
posed avatar (:func:`geometry_frames`: the scene's pixels in front of the character and their
matte), the posed avatar's vertices and faces with the shot's camera (the structured motion code),
and an identity image: a front render of the avatar in its bind pose (:func:`identity_image`).

The files are the 3D route's: ``composite`` is the decoder's frame; ``character`` is that frame
inside the avatar's visible coverage (the decoder draws the person where the motion code puts
them; their alpha is the geometry's); ``shadow`` is empty (the decoder paints shading itself,
there is no separate shadow layer); ``occlusion`` is the matte given to the decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.clips.avatars import AvatarPerson
from backend.footage.avatar_motion import PosedAvatar
from backend.footage.composite import Layers
from backend.footage.insert import InsertOutcome, ShotLayers, check_inputs
from backend.footage.lighting import flat_sh
from backend.footage.render_layer import appearance, character_frame
from backend.footage.source import FootageError, ShotCamera
from backend.footage.write import InsertWriter
from backend.render.api import Rasterizer, get_rasterizer

IDENTITY_SIZE = 256  # pixels of the identity render (the CLIP encoder resizes to its own input)
PROCESS_SIDE = 512  # the decoder works at most at this many pixels on the long side (SD 1.5's)


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def identity_image(avatar: AvatarPerson, rasterizer: Rasterizer, size: int = IDENTITY_SIZE) -> np.ndarray:
    """(size, size, 3) uint8: the avatar's bind pose seen from the front (it faces +z), framed to
    its height, unlit albedo over white."""
    v = avatar.vertices.astype(np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2.0
    height = float(hi[1] - lo[1]) * 1.1
    f = 2.5 * size  # a long lens: little perspective
    distance = f * height / size
    K = np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])
    # Camera on +z looking down -z, y down in the image (OpenCV): rows are the camera's axes.
    R = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    eye = centre + np.array([0.0, 0.0, distance])
    t = -R @ eye
    look = appearance(avatar.faces, avatar.uvs, avatar.texture)
    char = character_frame([avatar.vertices.astype(np.float32)], look, K, R, t, size, size, 2, flat_sh(),
                           None, None, rasterizer)
    out = np.ones((size, size, 3), np.float32)
    if char is not None:
        x0, y0, x1, y1 = char.window
        out[y0:y1, x0:x1] = char.premult + (1.0 - char.alpha[..., None]) * out[y0:y1, x0:x1]
    return _u8(out)


def geometry_frames(layers: ShotLayers, camera: ShotCamera, posed: PosedAvatar, avatar: AvatarPerson,
                    antialias: int, rasterizer: Rasterizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame the character's visible alpha, its coverage before occlusion, and MIMO's
    occlusion matte (coverage hidden by the scene), each (F, H, W) float32 in [0, 1]."""
    look = appearance(avatar.faces, avatar.uvs, avatar.texture)
    F, H, W = layers.scene.shape[:3]
    alpha, cover = np.zeros((F, H, W), np.float32), np.zeros((F, H, W), np.float32)
    for i in range(F):
        depth = layers.depth[i] if layers.depth is not None else None
        occ = layers.occluders[i] if layers.occluders is not None else None
        char = character_frame([posed.vertices[i]], look, camera.K[i], camera.R[i], camera.t[i], W, H,
                               antialias, flat_sh(), depth, occ, rasterizer)
        if char is not None:
            x0, y0, x1, y1 = char.window
            alpha[i, y0:y1, x0:x1] = char.alpha
            cover[i, y0:y1, x0:x1] = char.cover
    return alpha, cover, np.clip(cover - alpha, 0.0, 1.0)


def neural_config(params: Any, frames: int, width: int, height: int) -> Any:
    """The decoder's settings from the job's params: the window never longer than the shot, the
    overlap shorter than the window, the long side at most :data:`PROCESS_SIDE`."""
    from backend.mimo.config import NeuralConfig

    window = max(1, min(int(params.window), frames))
    overlap = min(int(params.overlap), window - 1)
    if float(params.guidance) < 1.0:
        raise FootageError(f"guidance: the neural route needs >= 1.0 (1.0 = off), got {params.guidance}")
    side = max(64, min(PROCESS_SIDE, max(width, height)))
    return NeuralConfig(steps=int(params.steps), seed=int(params.seed), window=window, overlap=overlap,
                        guidance=float(params.guidance), size=side)


def insert_neural_route(layers: ShotLayers, camera: ShotCamera, posed: PosedAvatar, avatar: AvatarPerson,
                        params: Any, out_dir: Path, numbers: Sequence[int], fps: float,
                        progress: Callable[[float, str], None], cancelled: Callable[[], None],
                        models: Any = None, rasterizer: Rasterizer | None = None) -> InsertOutcome:
    """Run the decoder over the shot and write the 3D route's files (module doc). ``cancelled``
    raises to stop (the job's ``check_cancelled``); ``models``: a registry or loaded
    ``MimoModels`` (default: the registry of this process, ``--models`` / models.toml)."""
    import time

    from backend.mimo.pipeline import insert_neural
    from backend.models.registry import ModelRegistry

    check_inputs(layers, camera, posed)
    start = time.perf_counter()
    F, H, W = layers.scene.shape[:3]
    config = neural_config(params, F, W, H)
    rasterizer = rasterizer or get_rasterizer("auto")
    alpha, cover, matte = geometry_frames(layers, camera, posed, avatar, int(params.antialias), rasterizer)
    occlusion_rgb = _u8(layers.scene.astype(np.float32) / 255.0 * matte[..., None])
    identity = identity_image(avatar, rasterizer)
    geometry_s = time.perf_counter() - start
    progress(0.05, "geometry and identity ready")

    def poll() -> bool:
        cancelled()  # raises JobCancelled when the job is cancelled
        return False

    frames = insert_neural(layers.scene, occlusion_rgb, matte, posed.vertices, avatar.faces.astype(np.int32),
                           camera.K, camera.R, camera.t, identity, config,
                           models if models is not None else ModelRegistry.load(),
                           progress=lambda f, m: progress(0.05 + 0.85 * f, m), cancelled=poll)
    decode_s = time.perf_counter() - start - geometry_s
    writer = InsertWriter(out_dir, W, H, fps, bool(params.mp4))
    try:
        for i in range(F):
            cancelled()
            character = np.concatenate([frames[i], _u8(alpha[i])[..., None]], axis=-1)
            character[alpha[i] <= 0.0, :3] = 0
            writer.write(int(numbers[i]), Layers(frames[i], character, np.zeros((H, W), np.uint8),
                                                  _u8(matte[i])))
            progress(0.9 + 0.1 * (i + 1) / F, f"frame {numbers[i]} written ({i + 1}/{F})")
    finally:
        writer.close()
    covered = float(cover.sum())
    return InsertOutcome(
        sh=np.zeros((9, 3), np.float32),
        lighting={"mode": "neural", "steps": config.steps, "window": config.window,
                  "overlap": config.overlap, "size": config.size, "seed": config.seed},
        character_pixels=(cover >= 0.5).sum(axis=(1, 2)).astype(np.int32),
        occluded_pixels=(matte >= 0.5).sum(axis=(1, 2)).astype(np.int32),
        visible_fraction=float(alpha.sum()) / covered if covered > 0 else 0.0,
        files=writer.files,
        timings_s={"geometry": geometry_s, "decode": decode_s, "total": time.perf_counter() - start},
    )
