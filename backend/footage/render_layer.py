"""The character layer of one frame: the posed avatar through the shot's camera, lit, anti-aliased,
occluded by the plate, optionally motion-blurred.

Only the character's window is rendered: the box of its projected vertices (plus a margin),
at ``antialias`` x ``antialias`` subsamples per pixel, with the rasterizer of
:mod:`backend.render` (:func:`backend.render.passes.render_passes`, the fused CPU path here) through
the camera's K scaled by the factor and shifted to the window (subsample centres are exactly
where the pixel grid puts them, so the layer is aligned with the plate to the rasterizer's
precision). Each subsample is shaded ``albedo * max(E(n), 0)`` (:mod:`.lighting`), hidden where the
plate is in front (:mod:`.occlusion`), and the subsamples are box-averaged into straight colour and
alpha. Motion blur: the same for ``motion_blur`` sub-frame poses spread over half a frame (a
180-degree shutter) centred on the frame, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.footage.lighting import irradiance
from backend.footage.occlusion import sample_grid, scene_in_front, upsample
from backend.render.api import Rasterizer
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes

NEAR, FAR = 0.01, 1.0e4
MARGIN = 2  # pixels around the projected vertices (the rasterizer covers pixel centres inside)


@dataclass(frozen=True)
class Appearance:
    """The avatar's surface as torch tensors for the renderer (built once per job)."""

    faces: torch.Tensor  # (T,3) int64
    uv: torch.Tensor  # (N,2) float32, v up
    texture: torch.Tensor  # (S,S,3) float32, row 0 = top


@dataclass(frozen=True)
class CharacterFrame:
    """One frame of the character layer inside ``window`` (x0, y0, x1, y1; pixels)."""

    window: tuple[int, int, int, int]
    premult: np.ndarray  # (h, w, 3) float32: colour times alpha
    alpha: np.ndarray  # (h, w) float32: visible coverage
    cover: np.ndarray  # (h, w) float32: coverage before occlusion


def appearance(faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray) -> Appearance:
    # Copies: the avatar's arrays are read-only (shared), torch wants writable memory.
    return Appearance(torch.from_numpy(np.array(faces, np.int64)),
                      torch.from_numpy(np.array(uvs, np.float32)),
                      torch.from_numpy(np.array(texture, np.float32)))


def window_of(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
              margin: int = MARGIN) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1) of world points (..., 3) seen by the camera, clipped to the
    image; the whole image when some are behind the camera and some in front; None when nothing
    is in front of it or the box misses the image."""
    cam = points.reshape(-1, 3).astype(np.float64) @ R.T + t
    z = cam[:, 2]
    front = z > NEAR
    if not front.any():
        return None
    if not front.all():
        return (0, 0, width, height)
    uv = (cam @ K.T)[:, :2] / z[:, None]
    x0, y0 = np.floor(uv.min(0)).astype(int) - margin
    x1, y1 = np.ceil(uv.max(0)).astype(int) + margin
    box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height))
    return box if box[0] < box[2] and box[1] < box[3] else None


def window_camera(K: np.ndarray, window: tuple[int, int, int, int], s: int) -> np.ndarray:
    """K of the subsample grid of a window: scaled by ``s``, principal point moved to its corner."""
    Ks = np.array(K, np.float64, copy=True)
    Ks[:2] *= s
    Ks[0, 2] -= window[0] * s
    Ks[1, 2] -= window[1] * s
    return Ks


def render_window(verts: np.ndarray, look: Appearance, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                  window: tuple[int, int, int, int], s: int, sh: np.ndarray,
                  rasterizer: Rasterizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shaded colour (h*s, w*s, 3), coverage (bool) and depth (+inf outside) of the avatar's
    subsamples in ``window``."""
    w, h = (window[2] - window[0]) * s, (window[3] - window[1]) * s
    cams = CameraBatch(window_camera(K, window, s)[None], R[None], t[None], w, h, NEAR, FAR)
    mesh = Mesh(verts=torch.from_numpy(np.ascontiguousarray(verts, np.float32)), faces=look.faces,
                uv=look.uv, texture=look.texture)
    with torch.no_grad():
        out = render_passes(mesh, cams, passes=("rgb", "depth", "normal_world"), shading="none",
                            rasterizer=rasterizer)
    depth = out.depth[0].numpy()
    mask = np.isfinite(depth)
    rgb = out.rgb[0].numpy()
    shaded = np.zeros_like(rgb)
    shaded[mask] = rgb[mask] * irradiance(sh, out.normal_world[0].numpy()[mask])
    return shaded, mask, depth


def blur_poses(verts: np.ndarray, frame: int, samples: int) -> list[np.ndarray]:
    """The vertices at ``samples`` sub-frame times spread over half a frame around ``frame``
    (linear between neighbouring frames, clamped at the shot's ends); [the frame] without blur."""
    if samples <= 1:
        return [verts[frame]]
    F = len(verts)
    out = []
    for k in range(samples):
        time = frame + ((k + 0.5) / samples - 0.5) * 0.5
        lo = int(np.clip(np.floor(time), 0, F - 1))
        hi = min(lo + 1, F - 1)
        a = float(np.clip(time - lo, 0.0, 1.0)) if hi != lo else 0.0
        out.append(verts[lo] * (1.0 - a) + verts[hi] * a)
    return out


def character_frame(poses: list[np.ndarray], look: Appearance, K: np.ndarray, R: np.ndarray,
                    t: np.ndarray, width: int, height: int, s: int, sh: np.ndarray,
                    plate_depth: np.ndarray | None, occluders: np.ndarray | None,
                    rasterizer: Rasterizer) -> CharacterFrame | None:
    """The character layer of one frame (module doc); None when it is not in the picture."""
    window = window_of(np.stack(poses), K, R, t, width, height)
    if window is None:
        return None
    h, w = window[3] - window[1], window[2] - window[0]
    grid = sample_grid(window, s, height, width) if plate_depth is not None or occluders is not None else None
    hidden_by_mask = upsample(occluders, grid) if occluders is not None and grid is not None else None
    premult = np.zeros((h * s, w * s, 3), np.float32)
    alpha = np.zeros((h * s, w * s), np.float32)
    cover = np.zeros((h * s, w * s), np.float32)
    for verts in poses:
        rgb, mask, depth = render_window(verts, look, K, R, t, window, s, sh, rasterizer)
        visible = mask.astype(np.float32)
        cover += visible
        if plate_depth is not None and grid is not None:
            visible *= 1.0 - scene_in_front(plate_depth, grid, depth)
        if hidden_by_mask is not None:
            visible *= 1.0 - hidden_by_mask
        premult += rgb * visible[..., None]
        alpha += visible
    norm = 1.0 / (len(poses) * s * s)

    def down(a: np.ndarray) -> np.ndarray:
        return (a.reshape(h, s, w, s, *a.shape[2:]).sum(axis=(1, 3)) * norm).astype(np.float32)

    return CharacterFrame(window, down(premult), down(alpha), down(cover))
