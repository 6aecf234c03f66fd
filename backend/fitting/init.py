"""The starting point of a fit: where the body stands, how tall it is and which way it faces.

Geometry only, from the camera rays: the person's centre is the point nearest to the rays through
every mask's centroid; the head top and the soles are the points nearest to the rays through the
masks' top and bottom pixels (the same body points seen from every side, to a few cm); with 2D
keypoints, each keypoint seen in two views or more is triangulated (DLT) and the torso's points
give the facing direction by a rigid alignment (Kabsch) of the model's torso keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .inputs import FitView


def camera_ray(view: FitView, pixel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin, unit direction) in the world of the ray through ``pixel`` (x, y)."""
    origin = -view.R.T @ view.t
    d = view.R.T @ np.linalg.solve(view.K, np.array([pixel[0], pixel[1], 1.0]))
    return origin, d / np.linalg.norm(d)


def nearest_point_to_rays(origins: np.ndarray, directions: np.ndarray,
                          weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares point closest to N rays (N,3) (needs two non-parallel rays)."""
    w = np.ones(len(origins)) if weights is None else weights
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d, wi in zip(origins, directions, w, strict=True):
        P = wi * (np.eye(3) - np.outer(d, d))
        A += P
        b += P @ o
    return np.linalg.lstsq(A, b, rcond=None)[0]


def mask_anchor_points(views: Sequence[FitView]) -> dict[str, np.ndarray]:
    """World points ``centre``, ``top`` and ``bottom`` triangulated from the masks' centroids and
    their top- and bottom-most pixels (at the centroid's column band)."""
    rays: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"centre": [], "top": [], "bottom": []}
    for v in views:
        m = v.mask > 0.5
        ys, xs = np.nonzero(m)
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
        rays["centre"].append(camera_ray(v, np.array([cx, cy])))
        rays["top"].append(camera_ray(v, np.array([cx, ys.min()])))
        rays["bottom"].append(camera_ray(v, np.array([cx, ys.max() + 1.0])))
    return {k: nearest_point_to_rays(np.array([o for o, _ in r]), np.array([d for _, d in r]))
            for k, r in rays.items()}


def triangulate_keypoints(views: Sequence[FitView], min_conf: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(N,3) world points and (N,) bool "triangulated" (seen with ``min_conf`` in >= 2 views), DLT."""
    kps = [v.keypoints for v in views if v.keypoints is not None]
    cams = [v for v in views if v.keypoints is not None]
    n = len(kps[0]) if kps else 0
    points = np.zeros((n, 3))
    ok = np.zeros(n, dtype=bool)
    for j in range(n):
        rows = []
        for v, kp in zip(cams, kps, strict=True):
            x, y, c = kp[j]
            if c < min_conf:
                continue
            P = v.K @ np.concatenate([v.R, v.t[:, None]], axis=1)
            rows += [c * (x * P[2] - P[0]), c * (y * P[2] - P[1])]
        if len(rows) >= 4:
            _, _, vt = np.linalg.svd(np.array(rows))
            X = vt[-1]
            if abs(X[3]) > 1e-9:
                points[j], ok[j] = X[:3] / X[3], True
    return points, ok


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation T minimising |R source + T - target|^2 (N >= 3 points)."""
    cs, ct = source.mean(0), target.mean(0)
    H = (source - cs).T @ (target - ct)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, ct - R @ cs
