"""Eyeball caps: two small open discs bent onto spheres, sitting in the eye sockets.

SMPL-X stores its eyeballs as separate components after the body vertices (left eye first). The
stand-in does the same with spherical caps whose rim is left open: with a closed genus-0 body, two
discs of 546 vertices and a 17-edge rim each make the totals come out at exactly 10475 vertices and
20908 faces (a disc triangulation has F = 2V - rim - 2 faces).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

CAP_VERTICES = 546
CAP_RIM = 17


def disc_triangulation(n_vertices: int, n_rim: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in the unit disc (index 0 at the centre) and a Delaunay triangulation of them.

    The rim is a regular ``n_rim``-gon; interior points follow a sunflower spiral, which is evenly
    spread and deterministic.
    """
    n_inner = n_vertices - n_rim
    k = np.arange(n_inner)
    radius = 0.93 * np.sqrt(k / max(n_inner - 1, 1))
    angle = k * np.pi * (3.0 - np.sqrt(5.0))
    inner = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    t = 2 * np.pi * np.arange(n_rim) / n_rim
    rim = np.stack([np.cos(t), np.sin(t)], axis=1)
    points = np.concatenate([inner, rim])
    faces = Delaunay(points).simplices.astype(np.int64)
    # make every triangle counter-clockwise in the disc plane (normal towards +z of the disc)
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    faces[cross < 0] = faces[cross < 0][:, [0, 2, 1]]
    expected = 2 * n_vertices - n_rim - 2
    if len(faces) != expected:
        raise RuntimeError(f"disc triangulation has {len(faces)} faces, expected {expected}")
    return points, faces


def eye_cap(
    center: np.ndarray, radius: float, half_angle: float, pupil_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """A spherical cap around +z (looking forward) with its pole vertex at ``pupil_index``."""
    points, faces = disc_triangulation(CAP_VERTICES, CAP_RIM)
    # move the pole (point 0) to the requested index so smplx's eye keypoint lands on the pupil
    order = np.arange(CAP_VERTICES)
    order[[0, pupil_index]] = order[[pupil_index, 0]]
    inverse = np.argsort(order)
    points = points[order]
    faces = inverse[faces]
    polar = np.linalg.norm(points, axis=1) * half_angle
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    direction = np.stack(
        [np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], axis=1
    )
    return np.asarray(center) + radius * direction, faces


def mirrored_cap(
    vertices: np.ndarray, faces: np.ndarray, pupil_index: int, new_pupil_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """The other eye: the cap reflected through x = 0, its pole moved to ``new_pupil_index``.

    Reflecting (rather than building a second cap) keeps the two eyes exact mirror images.
    """
    order = np.arange(len(vertices))
    order[[pupil_index, new_pupil_index]] = order[[new_pupil_index, pupil_index]]
    inverse = np.argsort(order)
    reflected = vertices[order] * np.array([-1.0, 1.0, 1.0])
    return reflected, inverse[faces][:, ::-1]  # reflection flips the winding
