"""Rotations in plain numpy (no scipy: Blender's Python does not ship it), for both sides.

Axis-angle (rotation vectors), rotation matrices and unit quaternions ``(w, x, y, z)``, plus the
per-joint slerp used to resample motions. The add-on's rig math and the AMASS reader
(``protocol/amass.py``) both use these, so a motion reads the same in Blender and in the backend.
"""

from __future__ import annotations

import numpy as np


def aa_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle -> (..., 3, 3) rotation matrices (float64)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    safe = np.where(angle > 1e-12, angle, 1.0)
    axis = aa / safe
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape((*aa.shape[:-1], 3, 3))
    s = np.sin(angle)[..., None]
    c = np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3), skew.shape)
    rot = eye + s * skew + (1.0 - c) * (skew @ skew)
    return np.where((angle > 1e-12)[..., None], rot, eye)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = np.asarray(matrix, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Shepperd's method: pick the largest of 4w^2, 4x^2, 4y^2, 4z^2 for numerical stability.
    candidates = np.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        axis=-1,
    )
    choice = np.argmax(candidates, axis=-1)
    root = np.sqrt(np.maximum(np.take_along_axis(candidates, choice[..., None], axis=-1)[..., 0], 1e-300))
    q = np.empty((*m.shape[:-2], 4))
    half = 0.5 / root
    options = [
        (
            0.5 * root,
            (m[..., 2, 1] - m[..., 1, 2]) * half,
            (m[..., 0, 2] - m[..., 2, 0]) * half,
            (m[..., 1, 0] - m[..., 0, 1]) * half,
        ),
        (
            (m[..., 2, 1] - m[..., 1, 2]) * half,
            0.5 * root,
            (m[..., 0, 1] + m[..., 1, 0]) * half,
            (m[..., 0, 2] + m[..., 2, 0]) * half,
        ),
        (
            (m[..., 0, 2] - m[..., 2, 0]) * half,
            (m[..., 0, 1] + m[..., 1, 0]) * half,
            0.5 * root,
            (m[..., 1, 2] + m[..., 2, 1]) * half,
        ),
        (
            (m[..., 1, 0] - m[..., 0, 1]) * half,
            (m[..., 0, 2] + m[..., 2, 0]) * half,
            (m[..., 1, 2] + m[..., 2, 1]) * half,
            0.5 * root,
        ),
    ]
    for index, (w, x, y, z) in enumerate(options):
        mask = choice == index
        q[mask] = np.stack([w, x, y, z], axis=-1)[mask]
    q *= np.where(q[..., :1] < 0, -1.0, 1.0)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def matrix_to_aa(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) axis-angle with angle in [0, pi] (via the quaternion: stable near pi)."""
    return quaternion_to_aa(matrix_to_quaternion(matrix))


def aa_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 4) unit quaternions (w, x, y, z)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    # sin(a/2)/a -> 1/2 as a -> 0 (Taylor: 1/2 - a^2/48), so tiny rotations keep their direction.
    big = angle > 1e-8
    scale = np.where(big, np.sin(0.5 * angle) / np.where(big, angle, 1.0), 0.5 - angle**2 / 48)
    return np.concatenate([np.cos(0.5 * angle), aa * scale], axis=-1)


def quaternion_to_aa(quaternion: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), any sign or norm -> (..., 3) axis-angle, angle in [0, pi]."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    vec = q[..., 1:]
    sin_half = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    return np.where(sin_half > 1e-12, vec / np.where(sin_half > 1e-12, sin_half, 1.0) * angle, 2.0 * vec)


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) along the shortest arc.

    ``alpha`` broadcasts against ``q0[..., :1]``; 0 gives ``q0``, 1 gives ``q1`` (or ``-q1``).
    Near-equal quaternions fall back to a normalised lerp (the slerp weights divide by sin(theta)).
    """
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)
    dot = (q0 * q1).sum(axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the short way round
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-6
    safe = np.where(small, 1.0, sin)
    w0 = np.where(small, 1.0 - a, np.sin((1.0 - a) * theta) / safe)
    w1 = np.where(small, a, np.sin(a * theta) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)
