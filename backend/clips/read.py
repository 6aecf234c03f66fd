"""Read a rendered clip back as arrays: :func:`read_clip` (layout: docs/clips.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class CameraData:
    """One camera of a clip. Arrays absent from the clip's passes are None."""

    name: str
    K: np.ndarray  # (F,3,3) pixels, OpenCV
    R: np.ndarray  # (F,3,3) world -> camera
    t: np.ndarray  # (F,3)
    annotations: dict[str, np.ndarray]  # keypoints, visibility, coco17, bbox, area, joints_cam, *_cam ...
    rgb: np.ndarray | None = None  # (F,H,W,3) uint8
    depth: np.ndarray | None = None  # (F,H,W) float32 metres, 0 = background
    normal: np.ndarray | None = None  # (F,H,W,3) float16 camera axes, 0 = background
    instance: np.ndarray | None = None  # (F,H,W) uint8, 0 background, p + 1 person p
    amodal: np.ndarray | None = None  # (F,P,H,W) bool
    part: np.ndarray | None = None  # (F,H,W) int8, -1 background
    scene_depth: np.ndarray | None = None  # (F,H,W) float32 people and ground, 0 elsewhere
    flow: np.ndarray | None = None  # (F,H,W,2) float32 forward flow in pixels, last frame 0


@dataclass
class Clip:
    id: str
    info: dict[str, Any]  # the clip's manifest entry (clip.json)
    people: dict[str, np.ndarray]  # SMPL-X params (P,F,w) world frame, betas (P,B), joints (F,P,127,3)
    cameras: dict[str, CameraData] = field(default_factory=dict)


def clip_dir(dataset: str | Path, clip_id: str | int) -> Path:
    cid = f"{clip_id:06d}" if isinstance(clip_id, int) else str(clip_id)
    folder = Path(dataset) / "clips" / cid
    if not (folder / "clip.json").is_file():
        raise FileNotFoundError(f"no complete clip {cid!r} in {dataset}")
    return folder


def read_clip(dataset: str | Path, clip_id: str | int, *, images: bool = True) -> Clip:
    """Every array of clip ``clip_id`` (its id string or index) of the dataset at ``dataset``.

    ``images=False`` skips the RGB PNGs (the other passes are memory-mapped .npy files anyway).
    """
    folder = clip_dir(dataset, clip_id)
    info = json.loads((folder / "clip.json").read_text(encoding="utf-8"))
    with np.load(folder / "people.npz") as data:
        people = {k: data[k] for k in data.files}
    clip = Clip(info["id"], info, people)
    for cam in info["cameras"]:
        sub = folder / cam["name"]
        with np.load(sub / "camera.npz") as data:
            K, R, t = data["K"], data["R"], data["t"]
        with np.load(sub / "annotations.npz") as data:
            annotations = {k: data[k] for k in data.files}
        c = CameraData(cam["name"], K, R, t, annotations)
        for name in ("depth", "normal", "instance", "amodal", "part", "scene_depth", "flow"):
            if (sub / f"{name}.npy").is_file():
                setattr(c, name, np.load(sub / f"{name}.npy", mmap_mode="r"))
        if images and (sub / "rgb").is_dir():
            c.rgb = np.stack([np.asarray(Image.open(sub / "rgb" / f"{f:06d}.png").convert("RGB"))
                              for f in range(info["frames"])])
        clip.cameras[c.name] = c
    return clip
