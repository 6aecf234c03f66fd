"""Shadow catcher: the character's shadow on the ground plane, as a darkening layer.

The light is the dominant direction of the SH lighting (:func:`.lighting.dominant_direction`,
straight down for ambient light: a contact shadow under the character). Each vertex is slid along
that direction onto the ground plane ``y = ground_y`` (a planar projection: the mesh flattened
into its shadow), the flattened mesh is rasterised through the shot's camera in the shadow's
window (at pixel resolution: the blur below is wider than a pixel, so supersampling would only
cost time), and its coverage is blurred by a Gaussian whose width is
:data:`PENUMBRA_M` metres at the shadow's distance (soft edges, as an area light gives). The
darkening ``strength * coverage`` applies only where the plate is that ground: the pixel's ray
meets the plane in front of the camera and, when the plate's depth is known, the plate's depth
there is the plane's (within :data:`GROUND_TOLERANCE`): an object in front of the ground (a
pillar) is not darkened, nor is anything above the horizon. The composite multiplies the plate by
``1 - darkening`` under the character.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from backend.footage.lighting import pixel_rays
from backend.footage.render_layer import FAR, NEAR, window_camera, window_of
from backend.render.api import Rasterizer
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes

PENUMBRA_M = 0.04  # the blur's sigma, metres on the ground
GROUND_TOLERANCE = 0.03  # relative depth within which the plate is the ground plane
LIFT = 1e-4  # metres above the plane (the flattened mesh stays on the catcher's side)


def flatten(verts: np.ndarray, light_dir: np.ndarray, ground_y: float) -> np.ndarray:
    """Vertices slid along the light direction onto the plane y = ground_y."""
    height = np.maximum(verts[:, 1:2] - ground_y, 0.0)
    out = verts - height / light_dir[1] * light_dir[None, :]
    out[:, 1] = ground_y + LIFT
    return out.astype(np.float32)


def ground_depth(K: np.ndarray, R: np.ndarray, t: np.ndarray, ground_y: float,
                 window: tuple[int, int, int, int]) -> np.ndarray:
    """Camera z (h, w) where each pixel's ray meets the plane (+inf: it does not, or behind)."""
    ys, xs = np.mgrid[window[1]:window[3], window[0]:window[2]].astype(np.float64)
    rays = pixel_rays(K, R, xs, ys)
    C = -R.T @ t
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (ground_y - C[1]) / rays[..., 1]
    return np.where(np.isfinite(lam) & (lam > 0), lam, np.inf).astype(np.float32)


def shadow_frame(poses: list[np.ndarray], faces: torch.Tensor, light_dir: np.ndarray, ground_y: float,
                 K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
                 plate_depth: np.ndarray | None, strength: float,
                 rasterizer: Rasterizer) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """(window, darkening (h, w) float32 in [0, strength]) of one frame, or None (no shadow seen)."""
    if strength <= 0.0:
        return None
    flat = [flatten(v, light_dir, ground_y) for v in poses]
    C = -R.T @ t
    if C[1] <= ground_y:  # the camera is under the ground: it cannot see the catcher's side
        return None
    cam_z = np.concatenate(flat) @ R[2] + t[2]
    z = float(np.median(cam_z[cam_z > NEAR])) if (cam_z > NEAR).any() else 1.0
    sigma = max(PENUMBRA_M * float(K[0, 0]) / z, 0.75)
    window = window_of(flat[0] if len(flat) == 1 else np.stack(flat), K, R, t, width, height,
                       margin=int(np.ceil(3 * sigma)) + 2)
    if window is None:
        return None
    w, h = window[2] - window[0], window[3] - window[1]
    cams = CameraBatch(window_camera(K, window, 1)[None], R[None], t[None], w, h, NEAR, FAR)
    cover = np.zeros((h, w), np.float32)
    with torch.no_grad():
        for verts in flat:
            out = render_passes(Mesh(verts=torch.from_numpy(verts), faces=faces), cams, passes=("depth",),
                                rasterizer=rasterizer)
            cover += np.isfinite(out.depth[0].numpy())
    soft = gaussian_filter(cover / len(flat), sigma, mode="constant")
    plane = ground_depth(K, R, t, ground_y, window)
    on_ground = np.isfinite(plane)
    if plate_depth is not None:
        plate = plate_depth[window[1]:window[3], window[0]:window[2]]
        with np.errstate(invalid="ignore"):
            on_ground &= np.abs(plate - plane) <= GROUND_TOLERANCE * plane
    return window, (strength * np.clip(soft, 0.0, 1.0) * on_ground).astype(np.float32)
