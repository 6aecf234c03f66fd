"""Put the sculpt back in the body's world frame when the views' cameras are a few pixels off.

Views whose cameras are each turned a pixel or two (generated views, hand-placed cameras) leave
one thing no silhouette can tell: where the whole shape sits. Moving the shape by a few
millimetres moves it by about the same amount in every view, so the sculpt settles wherever the
views' errors average out (measured on the perturbed bench views: 2-3 mm off, 0.3-1 px in views
it never saw). Each view's own error is measured later against the sculpt
(``align_views.py``), so that leftover offset of the whole shape is baked into every camera.

The body does not have that freedom: it is the frame the views were made in (the SMPL-X the
generator was conditioned on, or the parameters the views carry). Where the sculpt follows the
skin closely (face, arms, legs, hands, tight clothing) its surface lies on the body's, so the
translation that best lays those parts of the sculpt onto the body is the offset of the whole
shape. It is found by point-to-plane ICP (a translation only: the views fix the rotation) on the
sculpt vertices within ``max_distance_m`` of the body, with Huber weights; loose clothing
further away takes no part. When too few vertices match, or the answer is larger than any
camera error could cause, the sculpt is left where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.mesh.closest import MeshQuery
from backend.mesh.normals import face_normals


@dataclass(frozen=True)
class BodyGaugeConfig:
    enabled: bool = True
    max_distance_m: float = 0.006  # sculpt vertices this close to the body are "on the skin"
    huber_m: float = 0.002  # residuals beyond this count linearly (tight clothing, cell noise)
    max_shift_m: float = 0.02  # a larger answer means the body does not fit: leave the sculpt
    # Of the sculpt's vertices, this many must lie on the skin once moved, else the body is not this
    # sculpt's (measured: 0.6 on the bench's sculpts, 0.76 on the character itself; 0.13 when it is
    # 6 cm off the body, 0.09 when it is 30 % smaller).
    min_fraction: float = 0.3
    iterations: int = 8
    max_points: int = 20_000  # vertices sampled for the ICP (every n-th)


def body_frame_offset(vertices: np.ndarray, body: BodyMesh,
                      config: BodyGaugeConfig = BodyGaugeConfig()) -> tuple[np.ndarray, int]:
    """The translation (3,) that lays the sculpt's skin-close vertices onto the body, and how many
    vertices it used; zero (and the count) when the rules of the module docstring say no."""
    zero = np.zeros(3)
    if not config.enabled or len(vertices) == 0:
        return zero, 0
    step = max(1, len(vertices) // config.max_points)
    points = np.asarray(vertices, np.float64)[::step]
    query = MeshQuery(body.vertices, body.faces)
    normals = face_normals(np.asarray(body.vertices, np.float64), np.asarray(body.faces))
    shift = zero.copy()
    used = 0
    for _ in range(config.iterations):
        near = query.closest(points + shift)
        keep = near.distance < config.max_distance_m
        used = int(keep.sum())
        if used < 16:
            return zero, used
        n = normals[near.face[keep]]
        residual = ((points[keep] + shift - near.point[keep]) * n).sum(1)  # signed, along the normal
        weight = np.minimum(1.0, config.huber_m / np.maximum(np.abs(residual), 1e-12))
        # Gauss-Newton step of sum w (n . (p + shift + d - q))^2 over d: (sum w n n^T) d = -sum w r n.
        a = (n * weight[:, None]).T @ n
        b = -(n * (weight * residual)[:, None]).sum(0)
        if np.linalg.cond(a) > 1e6:  # the matched skin is flat: a shift along it is undetermined
            return zero, used
        delta = np.linalg.solve(a, b)
        shift += delta
        if np.linalg.norm(delta) < 1e-6:
            break
    used = int((query.closest(points + shift).distance < config.max_distance_m).sum())
    if np.linalg.norm(shift) > config.max_shift_m or used < config.min_fraction * len(points):
        return zero, used
    return shift, used
