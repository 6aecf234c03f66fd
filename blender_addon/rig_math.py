"""Rotation and rig-space math in plain numpy (no bpy), shared by the exporter and the importers.

Blender poses a bone with its local ``matrix_basis`` expressed in the bone's *rest* frame ``B_j``
(the rotation part of ``bone.matrix_local``, armature space). SMPL-X poses a joint with a rotation
``R_j`` relative to its parent, expressed in the model frame (Y up). With ``C`` the rotation that
takes protocol (Y-up) coordinates to Blender (Z-up) coordinates, both produce the same skinning
transform when::

    B_j @ Basis_j @ inv(B_j) == C @ R_j @ C.T       (armature space, one joint, parents equal)

so ``Basis_j = inv(B_j) @ C @ R_j @ C.T @ B_j`` and ``R_j = C.T @ B_j @ Basis_j @ inv(B_j) @ C``
(``inv(B_j)`` is ``B_j.T`` up to float32 noise; the inverse is what Blender deforms with). This holds
for any bone roll or direction, so bones may point at their children like a hand-made rig.
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
    q = matrix_to_quaternion(matrix)
    vec = q[..., 1:]
    sin_half = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    return np.where(sin_half > 1e-12, vec / np.where(sin_half > 1e-12, sin_half, 1.0) * angle, 2.0 * vec)


def smplx_to_basis(local_rot: np.ndarray, rest_rot: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """SMPL-X local rotations (..., J, 3, 3) -> Blender ``matrix_basis`` rotations (..., J, 3, 3).

    ``rest_rot`` (J, 3, 3): bone rest rotations in armature space; ``axes``: protocol -> Blender.
    """
    b = np.asarray(rest_rot, dtype=np.float64)
    # The inverse, not the transpose: Blender's float32 rest matrices of bones pointing near -Y are
    # measurably non-orthogonal, and Blender deforms with the true inverse.
    return np.linalg.inv(b) @ axes @ local_rot @ axes.T @ b


def basis_to_smplx(basis_rot: np.ndarray, rest_rot: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`smplx_to_basis`."""
    b = np.asarray(rest_rot, dtype=np.float64)
    return axes.T @ b @ basis_rot @ np.linalg.inv(b) @ axes


def world_to_local(world_rot: np.ndarray, parents: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """Per-joint world (model-frame) rotations (..., J, 3, 3) -> rotations relative to the parent."""
    world = np.asarray(world_rot, dtype=np.float64)
    local = world.copy()
    for joint, parent in enumerate(parents):
        if parent >= 0:
            local[..., joint, :, :] = np.swapaxes(world[..., parent, :, :], -1, -2) @ world[..., joint, :, :]
    return local
