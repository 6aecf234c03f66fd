"""The views format: a folder with ``views.json`` and per-view RGBA (and optional normal) PNGs.

Layout (documented in docs/avatar.md)::

    views.json        manifest (below)
    rgba/<name>.png   8-bit RGBA; alpha is the person's mask
    normal/<name>.png optional 8-bit RGB normal map: rgb = (n + 1) / 2 with n the unit surface
                      normal in the frame named by ``normal_space`` ("world": Y up; or "camera":
                      OpenCV camera axes x right, y down, z forward); pixels outside the mask ignored

Manifest: ``{"format": "avatar-studio.views", "version": 1, "normal_space": "world",
"smplx": {...protocol SMPL-X parameters, one frame...}, "views": [{"name", "K" (3x3), "R" (3x3),
"t" (3), "width", "height", "near", "far", "image", "normal" | null, "split": "train" | "test"}]}``.
Cameras follow docs/protocol.md section 5: world right-handed Y up in metres, OpenCV cameras with
world-to-camera ``X_cam = R X_world + t`` and pixel centres at +0.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from protocol.cameras import CameraFrame

FORMAT_NAME = "avatar-studio.views"
FORMAT_VERSION = 1


class ViewsFormatError(ValueError):
    """The folder is not a readable views set; the message says what is wrong."""


# Manifests written before ``near`` was stored in each view used this clip distance.
DEFAULT_NEAR = 0.05


@dataclass
class View:
    name: str
    camera: CameraFrame
    rgba: np.ndarray  # (H,W,4) float32 in [0,1]
    normal: np.ndarray | None = None  # (H,W,3) float32 unit vectors in world frame, or None
    split: str = "train"

    @property
    def mask(self) -> np.ndarray:
        return self.rgba[..., 3] > 0.5


@dataclass
class ViewSet:
    views: list[View]
    smplx: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata kept on round trips
    folder: Path | None = None  # where read_views read it (the body fit looks for keypoints.json there)

    def split(self, name: str) -> list[View]:
        return [v for v in self.views if v.split == name]

    @property
    def has_normals(self) -> bool:
        train = self.split("train")
        return bool(train) and all(v.normal is not None for v in train)


def _encode_normal(n: np.ndarray) -> np.ndarray:
    return np.clip(np.round((n * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)


def _decode_normal(img: np.ndarray) -> np.ndarray:
    n = img[..., :3].astype(np.float32) / 255.0 * 2 - 1
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)


def write_views(folder: str | Path, views: ViewSet) -> Path:
    """Write a views folder (world-space normal maps); returns the manifest path."""
    folder = Path(folder)
    (folder / "rgba").mkdir(parents=True, exist_ok=True)
    entries = []
    for v in views.views:
        image_rel = f"rgba/{v.name}.png"
        rgba8 = np.clip(np.round(v.rgba * 255), 0, 255).astype(np.uint8)
        Image.fromarray(rgba8, "RGBA").save(folder / image_rel)
        normal_rel = None
        if v.normal is not None:
            (folder / "normal").mkdir(exist_ok=True)
            normal_rel = f"normal/{v.name}.png"
            Image.fromarray(_encode_normal(v.normal), "RGB").save(folder / normal_rel)
        camera = _jsonable(v.camera.to_payload())
        entries.append({"name": v.name, **camera, "image": image_rel, "normal": normal_rel, "split": v.split})
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "normal_space": "world",
        "smplx": _jsonable(views.smplx),
        "views": entries,
        **({"extra": views.extra} if views.extra else {}),
    }
    path = folder / "views.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def _member(folder: Path, name: object) -> Path:
    """A file named by the manifest: relative and inside the folder (a job reads only there)."""
    rel = Path(str(name))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"image paths must be relative and inside the views folder, got {str(name)[:80]!r}")
    return folder / rel


def read_views(folder: str | Path) -> ViewSet:
    folder = Path(folder)
    path = folder / "views.json"
    if not path.is_file():
        raise ViewsFormatError(f"{folder}: no views.json manifest (see docs/avatar.md for the views format)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ViewsFormatError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT_NAME:
        raise ViewsFormatError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise ViewsFormatError(
            f"{path}: version {manifest['version']} is newer than this reader ({FORMAT_VERSION})"
        )
    space = manifest.get("normal_space", "world")
    if space not in ("world", "camera"):
        raise ViewsFormatError(f"{path}: normal_space must be 'world' or 'camera', got {space!r}")
    views = []
    for i, e in enumerate(manifest.get("views", [])):
        try:
            cam = CameraFrame.from_payload({"near": DEFAULT_NEAR, **e})
            name = str(e.get("name", f"view{i:03d}"))
            img = np.asarray(Image.open(_member(folder, e["image"])).convert("RGBA"), np.float32) / 255.0
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ViewsFormatError(f"{path}: view {i}: {exc}") from exc
        if img.shape[:2] != (cam.height, cam.width):
            raise ViewsFormatError(
                f"{path}: view {name}: image is {img.shape[1]}x{img.shape[0]}, "
                f"camera says {cam.width}x{cam.height}"
            )
        normal = None
        if e.get("normal"):
            try:
                normal_path = _member(folder, e["normal"])
            except ValueError as exc:
                raise ViewsFormatError(f"{path}: view {name}: {exc}") from exc
            normal = _decode_normal(np.asarray(Image.open(normal_path).convert("RGB")))
            if space == "camera":  # camera -> world: n_w = R^T n_c
                normal = normal @ cam.R.astype(np.float32)
        views.append(View(name=name, camera=cam, rgba=img, normal=normal, split=str(e.get("split", "train"))))
    if not views:
        raise ViewsFormatError(f"{path}: no views")
    return ViewSet(views=views, smplx=dict(manifest.get("smplx", {})), extra=dict(manifest.get("extra", {})),
                   folder=folder)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if isinstance(v, np.ndarray | list | tuple) else v) for k, v in d.items()
    }
