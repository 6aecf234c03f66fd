"""Views with exact ground truth for measuring the fit: a known body rendered by our rasterizer from
cameras around it, with masks and (optionally) its keypoints projected and jittered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.body.loading import load_body_model
from backend.body.model import BodyModel, BodyParams
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes

from .inputs import FitView
from .keypoints import layout_index
from .silhouette import project


@dataclass
class Truth:
    params: dict[str, Any]
    vertices: np.ndarray  # (V,3)
    joints: np.ndarray  # (55,3)
    keypoints: np.ndarray  # (127,3)


def look_at(eye: np.ndarray, target: np.ndarray, focal: float, size: int) -> tuple[np.ndarray, ...]:
    """K, R, t of an OpenCV camera at ``eye`` looking at ``target``, world +Y up in the image."""
    f = (target - eye) / np.linalg.norm(target - eye)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    R = np.stack([r, np.cross(f, r), f])
    K = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return K, R, -R @ eye


def ring_cameras(centre: np.ndarray, n: int, size: int, distance: float = 3.2,
                 elevations: tuple[float, ...] = (5.0, 25.0),
                 fov_fill: float = 1.2) -> list[tuple[np.ndarray, ...]]:
    """``n`` cameras evenly around ``centre``, alternating ``elevations`` (degrees); the focal
    length frames a ~``2 * fov_fill`` m tall person at ``distance``."""
    focal = size * distance / (2.0 * fov_fill)
    cams = []
    for k in range(n):
        az, el = 2 * np.pi * k / n + 0.3, np.radians(elevations[k % len(elevations)])
        eye = centre + distance * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        cams.append(look_at(eye, centre, focal, size))
    return cams


def pose_body(params: dict[str, Any], model: BodyModel | None = None) -> Truth:
    model = model or load_body_model(str(params.get("gender", "neutral")))
    bp = BodyParams.from_arrays({k: v for k, v in params.items() if k != "gender"}, n_frames=1,
                                num_betas=model.num_betas, num_expression=model.num_expression)
    with torch.no_grad():
        out = model(bp)
    kp = torch.cat([out.joints, out.extra_joints, out.landmarks], dim=1)[0]
    return Truth(params, out.vertices[0].double().numpy(), out.joints[0].double().numpy(),
                 kp.double().numpy())


def render_views(truth: Truth, n_views: int = 8, size: int = 160, layout: str | None = None,
                 keypoint_noise_px: float = 0.0, seed: int = 0,
                 model: BodyModel | None = None) -> list[FitView]:
    """Masks (and keypoints in ``layout`` with Gaussian pixel noise) of ``truth`` from a camera ring.

    Keypoints are projected whether or not a body part hides them (a detector sees through
    clothing and guesses hidden joints too), with confidence 1.
    """
    model = model or load_body_model(str(truth.params.get("gender", "neutral")))
    centre = (truth.vertices.min(0) + truth.vertices.max(0)) / 2
    cams = ring_cameras(centre, n_views, size)
    K, R, t = (np.stack([c[i] for c in cams]) for i in range(3))
    batch = CameraBatch(K, R, t, size, size, 0.05, 50.0)
    with torch.no_grad():
        mesh = Mesh(verts=torch.as_tensor(truth.vertices, dtype=torch.float32), faces=model.faces_tensor)
        alpha = render_passes(mesh, batch, passes=("alpha",)).alpha
    assert alpha is not None
    masks = alpha.numpy()
    keypoints: list[np.ndarray | None] = [None] * n_views
    if layout is not None:
        pts = torch.as_tensor(truth.keypoints[layout_index(layout)], dtype=torch.float64)
        xy = project(pts, *(torch.as_tensor(a, dtype=torch.float64) for a in (K, R, t))).numpy()
        rng = np.random.default_rng(seed)
        xy = xy + rng.normal(0.0, keypoint_noise_px, xy.shape)
        keypoints = [np.concatenate([k, np.ones((len(k), 1))], axis=1) for k in xy]
    return [FitView(K[i], R[i], t[i], masks[i], keypoints[i], f"view{i:02d}") for i in range(n_views)]


def render_photo(truth: Truth, size: int = 128, fov_y_deg: float = 40.0, layout: str | None = None,
                 keypoint_noise_px: float = 0.0, seed: int = 0,
                 model: BodyModel | None = None) -> tuple[np.ndarray, np.ndarray | None, tuple]:
    """``truth`` as one "photo" from :func:`backend.fitting.photo.photo_camera` (the body must stand
    in front of it, at negative z): (mask (S,S), keypoints (N,3) or None, (K, R, t))."""
    from .photo import photo_camera

    model = model or load_body_model(str(truth.params.get("gender", "neutral")))
    K, R, t = photo_camera(size, fov_y_deg)
    batch = CameraBatch(K[None], R[None], t[None], size, size, 0.05, 50.0)
    with torch.no_grad():
        mesh = Mesh(verts=torch.as_tensor(truth.vertices, dtype=torch.float32), faces=model.faces_tensor)
        alpha = render_passes(mesh, batch, passes=("alpha",)).alpha
    assert alpha is not None
    keypoints = None
    if layout is not None:
        pts = torch.as_tensor(truth.keypoints[layout_index(layout)], dtype=torch.float64)
        xy = project(pts, *(torch.as_tensor(a[None], dtype=torch.float64) for a in (K, R, t)))[0].numpy()
        xy = xy + np.random.default_rng(seed).normal(0.0, keypoint_noise_px, xy.shape)
        keypoints = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
    return alpha[0].numpy(), keypoints, (K, R, t)
