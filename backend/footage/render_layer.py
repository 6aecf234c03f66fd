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

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from backend.footage.lighting import Y00, Y1, Y2A, Y20, Y22
from backend.footage.occlusion import CONTINUOUS, TIE
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
    # float32: a box to a pixel's precision needs no more, and 10k vertices x poses cost ~1 ms.
    cam = points.reshape(-1, 3) @ R.T.astype(np.float32) + t.astype(np.float32)
    z = cam[:, 2]
    front = z > NEAR
    if not front.any():
        return None
    if not front.all():
        return (0, 0, width, height)
    uv = (cam @ K.T.astype(np.float32))[:, :2] / z[:, None]
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
                  window: tuple[int, int, int, int], s: int,
                  rasterizer: Rasterizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo (h*s, w*s, 3), world normals (h*s, w*s, 3) and depth (+inf outside) of the avatar's
    subsamples in ``window``."""
    w, h = (window[2] - window[0]) * s, (window[3] - window[1]) * s
    cams = CameraBatch(window_camera(K, window, s)[None], R[None], t[None], w, h, NEAR, FAR)
    mesh = Mesh(verts=torch.from_numpy(np.ascontiguousarray(verts, np.float32)), faces=look.faces,
                uv=look.uv, texture=look.texture)
    with torch.no_grad():
        out = render_passes(mesh, cams, passes=("rgb", "depth", "normal_world"), shading="none",
                            rasterizer=rasterizer)
    return out.rgb[0].numpy(), out.normal_world[0].numpy(), out.depth[0].numpy()


@numba.njit(cache=True, nogil=True)
def resolve_window(albedo: np.ndarray, normal: np.ndarray, depth: np.ndarray, sh: np.ndarray, s: int,
                   plate_depth: np.ndarray, occluders: np.ndarray, wx0: int, wy0: int,
                   premult: np.ndarray, alpha: np.ndarray, cover: np.ndarray) -> None:
    """Shade, occlude and box-filter one rasterisation's subsamples into the window's pixels
    (accumulated: the caller divides by subsamples x poses). Per subsample: ``albedo * max(E(n), 0)``
    (:func:`backend.footage.lighting.irradiance`), hidden by the plate as
    :func:`backend.footage.occlusion.scene_in_front` says (its numpy reference; a test compares
    them) and by the bilinear occluder matte. ``plate_depth`` / ``occluders`` of shape (0, 0):
    none. One pass over the subsamples instead of ~20 numpy passes over full-size temporaries."""
    hs, ws = depth.shape
    H, W = plate_depth.shape
    Ho, Wo = occluders.shape
    for i in range(hs):
        py = i // s
        qy = wy0 + (i + 0.5) / s - 0.5
        fy = math.floor(qy)
        ay = qy - fy
        y0 = min(max(fy, 0), max(H, Ho) - 1)
        y1 = min(max(fy + 1, 0), max(H, Ho) - 1)
        for j in range(ws):
            d = depth[i, j]
            if not d < np.inf:
                continue
            px = j // s
            cover[py, px] += 1.0
            visible = 1.0
            if H > 0 or Ho > 0:
                qx = wx0 + (j + 0.5) / s - 0.5
                fx = math.floor(qx)
                ax = qx - fx
                x0 = min(max(fx, 0), max(W, Wo) - 1)
                x1 = min(max(fx + 1, 0), max(W, Wo) - 1)
                w00 = (1.0 - ax) * (1.0 - ay)
                w01 = ax * (1.0 - ay)
                w10 = (1.0 - ax) * ay
                w11 = ax * ay
                if H > 0:
                    d00 = plate_depth[y0, x0]
                    d01 = plate_depth[y0, x1]
                    d10 = plate_depth[y1, x0]
                    d11 = plate_depth[y1, x1]
                    lo = min(min(d00, d01), min(d10, d11))
                    hi = max(max(d00, d01), max(d10, d11))
                    limit = d * (1.0 - TIE)
                    if hi < np.inf and hi <= lo * (1.0 + CONTINUOUS):
                        smooth = w00 * d00 + w01 * d01 + w10 * d10 + w11 * d11
                        hidden = 1.0 if smooth < limit else 0.0
                    else:
                        hidden = (w00 * (d00 < limit) + w01 * (d01 < limit) + w10 * (d10 < limit)
                                  + w11 * (d11 < limit))
                    visible *= 1.0 - hidden
                if Ho > 0:
                    visible *= 1.0 - (w00 * occluders[y0, x0] + w01 * occluders[y0, x1]
                                      + w10 * occluders[y1, x0] + w11 * occluders[y1, x1])
            if visible <= 0.0:
                continue
            alpha[py, px] += visible
            nx = normal[i, j, 0]
            ny = normal[i, j, 1]
            nz = normal[i, j, 2]
            for c in range(3):
                e = (sh[0, c] * Y00 + sh[1, c] * Y1 * ny + sh[2, c] * Y1 * nz + sh[3, c] * Y1 * nx
                     + sh[4, c] * Y2A * nx * ny + sh[5, c] * Y2A * ny * nz
                     + sh[6, c] * Y20 * (3.0 * nz * nz - 1.0) + sh[7, c] * Y2A * nx * nz
                     + sh[8, c] * Y22 * (nx * nx - ny * ny))
                premult[py, px, c] += albedo[i, j, c] * max(e, 0.0) * visible


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
    window = window_of(poses[0] if len(poses) == 1 else np.stack(poses), K, R, t, width, height)
    if window is None:
        return None
    h, w = window[3] - window[1], window[2] - window[0]
    premult = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    cover = np.zeros((h, w), np.float32)
    none = np.zeros((0, 0), np.float32)
    depth_in = none if plate_depth is None else np.ascontiguousarray(plate_depth, np.float32)
    occ_in = none if occluders is None else np.ascontiguousarray(occluders, np.float32)
    sh32 = np.ascontiguousarray(sh, np.float32)
    for verts in poses:
        albedo, normal, depth = render_window(verts, look, K, R, t, window, s, rasterizer)
        resolve_window(albedo, normal, depth, sh32, s, depth_in, occ_in, window[0], window[1],
                       premult, alpha, cover)
    norm = np.float32(1.0 / (len(poses) * s * s))
    return CharacterFrame(window, premult * norm, alpha * norm, cover * norm)
