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

from .wire import rotations

# Axis-angle, matrix and quaternion conversions live in the protocol (shared with the backend).
aa_to_matrix = rotations.aa_to_matrix
matrix_to_quaternion = rotations.matrix_to_quaternion
matrix_to_aa = rotations.matrix_to_aa

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
