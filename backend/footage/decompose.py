"""A shot lifted into MIMO's layers (issue 13, item 2; docs/footage.md "Layers"): the people already
in it (user masks, or the ``person-segmentation`` role), their pixels (RGBA), the scene with them
removed and filled (:mod:`backend.footage.inpaint`, or the ``inpainting`` role for what no frame
shows), and the scene's depth (given, or the ``depth-estimator`` role aligned to the camera's ground
plane, :mod:`backend.footage.estimate`).

:func:`decompose` takes arrays (a :class:`Footage`, a :class:`ShotCamera`, depth and masks already
read by :mod:`backend.footage.source`), so it is tested without files; :func:`write_template`
writes the layers as the template folder of the ``footage.decompose`` contract
(``protocol/kinds_footage.py``: ``video/ masks/ human/ scene/`` numbered PNGs, ``depth/`` npy,
``config.json``), numbered by the footage frame each belongs to.

The depth of the layers is the **scene's** (the scene layer's): where people were removed it is the
background's depth, propagated from the other frames with the colours, else continued from the
nearest pixel around; so an inserted character is occluded by the scene, never by a removed person.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.footage.inpaint import recover_background
from backend.footage.source import Footage, FootageError, ShotCamera
from protocol.kinds_footage import FOOTAGE_DECOMPOSE_LAYERS, FOOTAGE_INPAINT

Progress = Callable[[float, str, str], None]  # (fraction, message, stage)

INPAINT_STEPS = 20  # denoising steps of the inpainting role
INPAINT_SEED = 0


@dataclass(frozen=True)
class Layers:
    scene: np.ndarray  # (F, H, W, 3) uint8: people removed and filled
    person: np.ndarray  # (F, H, W) float32 [0, 1]: the people's soft mask
    human: np.ndarray  # (F, H, W, 4) uint8: the people's pixels, RGBA (straight alpha)
    depth: np.ndarray | None  # (F, H, W) float32 metres of the scene layer, +inf = nothing
    depth_source: str  # "given" | "estimator" | "none"
    people: str  # "masks" | "segmentation" | "none"
    removed_pixels: int
    propagated_fraction: float
    method: str = "none"  # how removed pixels were propagated (backend.footage.inpaint.Fill.method)
    timings_s: dict[str, float] = field(default_factory=dict)


def _check_array(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != shape:
        raise FootageError(f"{name}: shape {list(value.shape)}, the footage needs {list(shape)}")
    if value.dtype.kind not in "fiub":
        raise FootageError(f"{name}: must be numbers, got {value.dtype}")
    return value


def decompose(footage: Footage, camera: ShotCamera | None, *, depth: np.ndarray | None = None,
              person_masks: np.ndarray | None = None, segment: bool = False,
              depth_estimator: bool = False, inpaint: str = "propagate", models: Any = None,
              progress: Progress | None = None, cancelled: Callable[[], None] | None = None) -> Layers:
    """The layers of ``footage`` (see the module docstring). ``depth`` (F, H, W) metres (+inf =
    nothing) or ``depth_estimator``; ``person_masks`` (F, H, W) in [0, 1] or ``segment``;
    ``inpaint``: ``"propagate"`` (other frames, then biharmonic) or ``"model"`` (other frames, then
    the ``inpainting`` role). ``models``: a :class:`ModelRegistry` (default: this process's).
    Roles that are missing raise :class:`ModelMissingError` before any frame is processed."""
    n, h, w = len(footage), footage.height, footage.width
    if inpaint not in FOOTAGE_INPAINT:
        raise FootageError(f"inpaint: one of {FOOTAGE_INPAINT}, got {inpaint!r}")
    if depth is not None and depth_estimator:
        raise FootageError("depth and depth_estimator exclude each other")
    if person_masks is not None and segment:
        raise FootageError("person_masks and segment exclude each other")
    if camera is not None and len(camera.K) != n:
        raise FootageError(f"camera: {len(camera.K)} frames, the footage {n}")
    if depth_estimator and camera is None:
        raise FootageError("depth_estimator: needs the shot's camera (its ground plane scales the depth)")
    if depth is not None:
        depth = _check_array("depth", depth, (n, h, w)).astype(np.float32)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf).astype(np.float32)
    if person_masks is not None:
        person_masks = np.clip(_check_array("person_masks", person_masks, (n, h, w)), 0, 1).astype(np.float32)

    def report(lo: float, hi: float, stage: str) -> Callable[[float, str], None]:
        return lambda x, msg: progress(lo + (hi - lo) * x, msg, stage) if progress is not None else None

    # Every model the options need is loaded first: a missing role fails before any work.
    registry = models
    segmenter = estimator = pipe = None
    if segment or depth_estimator or inpaint == "model":
        from backend.models.load_footage import (
            load_depth_estimator,
            load_inpainting,
            load_person_segmentation,
        )
        from backend.models.registry import ModelRegistry

        registry = registry if registry is not None else ModelRegistry.load()
        if segment:
            segmenter = load_person_segmentation(registry=registry)
        if depth_estimator:
            estimator = load_depth_estimator(registry=registry)
        if inpaint == "model":
            pipe = load_inpainting(registry=registry)
    timings: dict[str, float] = {}
    frames = footage.frames

    start = time.perf_counter()
    if segmenter is not None:
        from backend.footage.estimate import segment_people

        person = segment_people(segmenter, frames, progress=report(0.0, 0.2, "segment"), cancelled=cancelled)
        people = "segmentation"
    elif person_masks is not None:
        person, people = person_masks, "masks"
    else:
        person, people = np.zeros((n, h, w), np.float32), "none"
    timings["people"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    depth_source = "given" if depth is not None else "none"
    if estimator is not None:
        from backend.footage.estimate import AlignmentError, estimate_depth
        from backend.footage.inpaint import removal_mask

        assert camera is not None
        try:
            depth = estimate_depth(estimator, frames, camera.K, camera.R, camera.t, kind=estimator.kind,
                                   exclude=removal_mask(person), progress=report(0.2, 0.4, "depth"),
                                   cancelled=cancelled)
        except AlignmentError as exc:
            raise FootageError(str(exc)) from None
        depth_source = "estimator"
    timings["depth"] = round(time.perf_counter() - start, 3)

    fill = None
    if pipe is not None:
        from backend.models.load_footage import inpaint_image

        def fill(f: int, image: np.ndarray, holes: np.ndarray) -> np.ndarray:
            return inpaint_image(pipe, image, holes, seed=INPAINT_SEED + f, steps=INPAINT_STEPS)

    start = time.perf_counter()
    result = recover_background(
        frames, person, K=None if camera is None else camera.K, R=None if camera is None else camera.R,
        t=None if camera is None else camera.t, depth=depth, fill=fill,
        progress=report(0.4, 1.0, "inpaint"), cancelled=cancelled,
    )
    timings["inpaint"] = round(time.perf_counter() - start, 3)
    alpha = np.clip(np.rint(person * 255.0), 0, 255).astype(np.uint8)
    human = np.concatenate([frames, alpha[..., None]], -1)
    human[alpha == 0, :3] = 0  # straight alpha: no colour where there is no person
    return Layers(
        scene=result.frames, person=person, human=human, depth=result.depth, depth_source=depth_source,
        people=people, removed_pixels=result.removed_pixels,
        propagated_fraction=round(result.propagated_fraction, 6), method=result.method, timings_s=timings,
    )


def _png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path, compress_level=1)
    return path


def write_template(folder: str | Path, footage: Footage, camera: ShotCamera | None, layers: Layers,
                   config: dict[str, Any]) -> dict[str, Path]:
    """Write the template folder (the contract's names, module docstring) and return
    ``{relative name: path}``. ``masks/`` and ``human/`` only when there are people, ``depth/`` only
    when depth is known. ``config`` is merged into ``config.json`` (e.g. the job's params)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    layer_frames = {"video": footage.frames, "scene": layers.scene}
    if layers.people != "none":
        layer_frames["masks"] = np.clip(np.rint(layers.person * 255.0), 0, 255).astype(np.uint8)
        layer_frames["human"] = layers.human
    for layer in FOOTAGE_DECOMPOSE_LAYERS:
        if layer not in layer_frames:
            continue
        (folder / layer).mkdir(exist_ok=True)
        for i, number in enumerate(footage.numbers):
            name = f"{layer}/{number:06d}.png"
            files[name] = _png(folder / name, layer_frames[layer][i])
    if layers.depth is not None:
        (folder / "depth").mkdir(exist_ok=True)
        for i, number in enumerate(footage.numbers):
            name = f"depth/{number:06d}.npy"
            np.save(folder / name, layers.depth[i].astype(np.float32), allow_pickle=False)
            files[name] = folder / name
    description = {
        "format": "avatar-studio footage template 1 (MIMO-like layers; docs/footage.md)",
        "frames": len(footage), "frame_numbers": list(footage.numbers),
        "width": footage.width, "height": footage.height, "fps": footage.fps,
        "layers": [k for k in FOOTAGE_DECOMPOSE_LAYERS if k in layer_frames]
        + (["depth"] if layers.depth is not None else []),
        "depth_source": layers.depth_source, "depth_units": "metres along the optical axis, inf = nothing",
        "people": layers.people, "removed_pixels": layers.removed_pixels,
        "propagated_fraction": layers.propagated_fraction, "propagation": layers.method,
        "camera": None if camera is None else {
            "convention": "OpenCV world-to-camera, pixels; world Y up (docs/protocol.md)",
            "K": camera.K.tolist(), "R": camera.R.tolist(), "t": camera.t.tolist(), "static": camera.static,
        },
        **config,
    }
    (folder / "config.json").write_text(json.dumps(description, indent=1, allow_nan=False, default=str),
                                        encoding="utf-8")
    files["config.json"] = folder / "config.json"
    return files
