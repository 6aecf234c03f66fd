"""Pose correctives baked as shape keys, so Blender's armature deformation reproduces the backend's
posed body exactly at the frames it posed.

SMPL-X adds pose-dependent offsets (``posedirs``) to the rest mesh before skinning; Blender's
armature modifier only does the skinning. From a ``body.mesh`` result (rest vertices, skinning
weights, per-frame joint transforms and posed vertices) the missing part of each frame is::

    posed = T_v @ (rest_v + d_v)     =>     d_v = inverse(T_v[:3, :3]) @ (posed_v - T_v @ rest_v)

with ``T_v`` the vertex's blended skinning matrix. ``d`` is a rest-space offset, i.e. a shape key
(shape keys act before modifiers). One key per frame, its value keyed 1 at that frame and 0 at
the neighbouring ones (linear in between). A body without correctives (all offsets ~0) gets none.
This is a bake: it matches the posed frames; a changed animation needs another "Pose on Backend".
"""

from __future__ import annotations

import bpy
import numpy as np

from .. import axes
from .steps import Steps, run

VERTICES_PER_STEP = 1500  # ~1 ms of offsets per step for a 55-joint body
KEY_PREFIX = "AVS corrective "
NEGLIGIBLE_M = 1e-6  # offsets below this (metres) are float noise, not correctives


def corrective_offsets(
    rest: np.ndarray, joints: np.ndarray, weights: np.ndarray, transforms: np.ndarray, posed: np.ndarray
) -> np.ndarray:
    """(F, V, 3) rest-space offsets (protocol frame) that skinning alone is missing."""
    return run(corrective_offsets_steps(rest, joints, weights, transforms, posed))


def corrective_offsets_steps(
    rest: np.ndarray,
    joints: np.ndarray,
    weights: np.ndarray,
    transforms: np.ndarray,
    posed: np.ndarray,
    vertices_per_step: int = VERTICES_PER_STEP,
) -> Steps[np.ndarray]:
    """:func:`corrective_offsets` a block of vertices of one frame per step (a whole SMPL-X
    frame is ~7 ms of numpy)."""
    rest = np.asarray(rest, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    g = np.asarray(transforms, dtype=np.float64)
    rot = g[..., :3, :3]  # (F, J, 3, 3)
    # Skinning matrices: rotate about the rest joint, then move it to the posed joint.
    trans = g[..., :3, 3] - np.einsum("fjab,jb->fja", rot, np.asarray(joints, dtype=np.float64))
    offsets = np.empty((g.shape[0], *rest.shape))
    yield "correctives (skinning matrices)"
    for frame in range(g.shape[0]):
        for start in range(0, len(rest), vertices_per_step):
            block = slice(start, start + vertices_per_step)
            blended_rot = np.einsum("vj,jab->vab", weights[block], rot[frame])
            blended_trans = weights[block] @ trans[frame]
            skinned = np.einsum("vab,vb->va", blended_rot, rest[block]) + blended_trans
            residual = np.asarray(posed[frame][block], dtype=np.float64) - skinned
            offsets[frame, block] = np.linalg.solve(blended_rot, residual[..., None])[..., 0]
            yield f"correctives (frame {frame + 1}/{g.shape[0]})"
    return offsets


def clear_correctives(mesh_obj: bpy.types.Object) -> None:
    keys = mesh_obj.data.shape_keys
    if keys is None:
        return
    for block in [k for k in keys.key_blocks if k.name.startswith(KEY_PREFIX)]:
        mesh_obj.shape_key_remove(block)


def bake_correctives(mesh_obj: bpy.types.Object, offsets: np.ndarray, frame_start: int) -> int:
    """Replace the mesh's baked correctives with ``offsets`` (F, V, 3, protocol frame); returns the
    number of shape keys made (0 when the body has no correctives)."""
    return run(bake_correctives_steps(mesh_obj, offsets, frame_start))


def bake_correctives_steps(mesh_obj: bpy.types.Object, offsets: np.ndarray, frame_start: int) -> Steps[int]:
    """:func:`bake_correctives`, one shape key per step."""
    clear_correctives(mesh_obj)
    if offsets.size == 0 or np.abs(offsets).max() < NEGLIGIBLE_M:
        return 0
    mesh = mesh_obj.data
    if mesh.shape_keys is None:
        yield "correctives (basis)"
        mesh_obj.shape_key_add(name="Basis", from_mix=False)
    basis = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.shape_keys.key_blocks[0].data.foreach_get("co", basis)
    basis = basis.reshape(-1, 3).astype(np.float64)
    count = offsets.shape[0]
    yield "correctives (basis)"
    for index in range(count):
        frame = frame_start + index
        block = mesh_obj.shape_key_add(name=f"{KEY_PREFIX}{frame}", from_mix=False)
        block.data.foreach_set("co", (basis + axes.to_blender(offsets[index])).astype(np.float32).ravel())
        for key_frame, value in ((frame - 1, 0.0), (frame, 1.0), (frame + 1, 0.0)):
            block.value = value
            block.keyframe_insert("value", frame=key_frame)
        block.value = 0.0
        yield f"correctives (key {index + 1}/{count})"
    return count


def bake_from_result(mesh_obj: bpy.types.Object, arrays: dict, frame_start: int) -> int:
    """Bake the correctives of a posed ``body.mesh`` result onto ``mesh_obj`` (same vertex order)."""
    return run(bake_from_result_steps(mesh_obj, arrays, frame_start))


def bake_from_result_steps(mesh_obj: bpy.types.Object, arrays: dict, frame_start: int) -> Steps[int]:
    """:func:`bake_from_result` in steps (offsets by blocks of vertices, then a key per step)."""
    from .arrays import BODY_RESULT, pick

    rest = pick(arrays, BODY_RESULT.rest_vertices)
    posed = pick(arrays, BODY_RESULT.posed_vertices, required=False)
    transforms = pick(arrays, BODY_RESULT.joint_transforms, required=False)
    if posed is None or transforms is None or len(mesh_obj.data.vertices) != len(rest):
        return 0
    joints = pick(arrays, BODY_RESULT.joints_rest)
    weights = pick(arrays, BODY_RESULT.weights)
    offsets = yield from corrective_offsets_steps(rest, joints, weights, transforms, posed)
    return (yield from bake_correctives_steps(mesh_obj, offsets, frame_start))
