"""Per-frame SMPL-X poses (or joint transforms) -> a Blender action on an SMPL-X armature.

Keys are written straight into F-curves (no operator, no per-key Python call into keyframe_insert),
one key per frame, linear interpolation, so frame N of the action is exactly frame N of the input.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from .. import axes, rig_math, smplx_rig
from .arrays import ResultFormatError
from .steps import Steps, run

KEYS_PER_STEP = 4000  # keyframes written per step (foreach_set: ~1 ms per few thousand)
_LINEAR = 1  # index of 'LINEAR' in Keyframe.interpolation's enum (CONSTANT, LINEAR, BEZIER, ...)


def bone_joint_map(arm_obj: bpy.types.Object) -> dict[int, bpy.types.Bone]:
    """SMPL-X joint index -> bone, from the bones' ``smplx_joint`` property, else their names."""
    mapping: dict[int, bpy.types.Bone] = {}
    for bone in arm_obj.data.bones:
        index = bone.get(smplx_rig.JOINT_PROPERTY)
        if index is None and bone.name in smplx_rig.JOINT_NAMES:
            index = smplx_rig.JOINT_NAMES.index(bone.name)
        if index is not None:
            mapping[int(index)] = bone
    return mapping


def rest_rotations(bones: list[bpy.types.Bone]) -> np.ndarray:
    """(J, 3, 3) rest rotations in armature space (bone.matrix_local without its translation)."""
    return np.array([np.array(bone.matrix_local.to_3x3()) for bone in bones], dtype=np.float64)


def local_rotations_from_pose(pose: np.ndarray, joints: int) -> np.ndarray:
    """(T, J*3) or (T, J, 3) axis-angle, or (T, J, 3, 3) matrices -> (T, J, 3, 3)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim == 4 and pose.shape[-2:] == (3, 3):
        return pose
    if pose.ndim == 2 and pose.shape[1] % 3 == 0:
        pose = pose.reshape(pose.shape[0], -1, 3)
    if pose.ndim != 3 or pose.shape[-1] != 3 or pose.shape[1] != joints:
        raise ResultFormatError(f"pose must be (frames, {joints}*3) axis-angle, got shape {pose.shape}")
    return rig_math.aa_to_matrix(pose)


def _continuous(quaternions: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive keys take the short way (q and -q are the same rotation)."""
    q = quaternions.copy()
    for frame in range(1, q.shape[0]):
        flip = np.sum(q[frame] * q[frame - 1], axis=-1) < 0
        q[frame, flip] *= -1
    return q


def _new_fcurve(
    action: bpy.types.Action, arm_obj: bpy.types.Object, path: str, index: int, group: str
) -> bpy.types.FCurve:
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+: slotted actions
        return action.fcurve_ensure_for_datablock(arm_obj, path, index=index, group_name=group)
    return action.fcurves.new(path, index=index, action_group=group)  # Blender 4.2/4.3


def _write_keys(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    points.foreach_set("co", np.stack([frames, values], axis=1).astype(np.float32).ravel())
    points.foreach_set("interpolation", np.full(len(frames), _LINEAR, dtype=np.int32))
    fcurve.update()


def apply_pose_action(arm_obj: bpy.types.Object, pose: np.ndarray, transl: np.ndarray | None,
                      **options: Any) -> bpy.types.Action:
    """Key the whole action in one go; see :func:`apply_pose_action_steps`."""
    return run(apply_pose_action_steps(arm_obj, pose, transl, **options))


def apply_pose_action_steps(
    arm_obj: bpy.types.Object,
    pose: np.ndarray,
    transl: np.ndarray | None,
    *,
    frame_start: int = 1,
    name: str = "SMPLX Motion",
) -> Steps[bpy.types.Action]:
    """In steps (a few bones each): key every SMPL-X joint of ``arm_obj`` from ``pose`` (local
    rotations, protocol frame) and the root from ``transl`` (protocol metres), frames
    ``frame_start ..``; returns the new action."""
    joint_bones = bone_joint_map(arm_obj)
    count = max(joint_bones) + 1 if joint_bones else 0
    local = local_rotations_from_pose(pose, count)
    frames_count = local.shape[0]
    present = sorted(joint_bones)
    bones = [joint_bones[j] for j in present]
    basis = rig_math.smplx_to_basis(local[:, present], rest_rotations(bones), axes.BLENDER_FROM_PROTOCOL)
    quats = _continuous(rig_math.matrix_to_quaternion(basis))
    frames = np.arange(frames_count, dtype=np.float64) + frame_start
    yield "motion (rotations)"

    action = bpy.data.actions.new(name)
    arm_obj.animation_data_create()
    arm_obj.animation_data.action = action
    keys_written = 0
    for column, bone in enumerate(bones):
        arm_obj.pose.bones[bone.name].rotation_mode = "QUATERNION"
        path = f'pose.bones["{bone.name}"].rotation_quaternion'
        for component in range(4):
            _write_keys(
                _new_fcurve(action, arm_obj, path, component, bone.name), frames, quats[:, column, component]
            )
        keys_written += 4 * frames_count
        if keys_written >= KEYS_PER_STEP:
            keys_written = 0
            yield f"motion ({column + 1}/{len(bones)} bones)"
    if transl is not None and 0 in joint_bones:
        transl = np.asarray(transl, dtype=np.float64).reshape(-1, 3)
        if transl.shape[0] != frames_count:
            raise ResultFormatError(f"transl has {transl.shape[0]} frames, pose has {frames_count}")
        root = joint_bones[0]
        # A root bone's location key is in its rest frame: offset (armature space) = B_root @ loc.
        location = axes.to_blender(transl) @ np.linalg.inv(rest_rotations([root])[0]).T
        path = f'pose.bones["{root.name}"].location'
        for component in range(3):
            _write_keys(
                _new_fcurve(action, arm_obj, path, component, root.name), frames, location[:, component]
            )
    return action


def apply_joint_transforms_action(arm_obj: bpy.types.Object, transforms: np.ndarray, parents: np.ndarray,
                                  **options: Any) -> bpy.types.Action:
    """The action in one go; see :func:`apply_joint_transforms_action_steps`."""
    return run(apply_joint_transforms_action_steps(arm_obj, transforms, parents, **options))


def apply_joint_transforms_action_steps(
    arm_obj: bpy.types.Object,
    transforms: np.ndarray,
    parents: np.ndarray,
    *,
    rest_root: np.ndarray,
    frame_start: int = 1,
    name: str = "SMPLX Motion",
) -> Steps[bpy.types.Action]:
    """Per-frame joint world transforms (T, J, 4, 4) in the protocol frame -> an action.

    As ``body.mesh`` returns them: each joint's frame is parallel to the world axes in the rest
    pose; posed, its rotation is the rotation accumulated down the chain and its translation the
    posed joint position. ``rest_root``: the rest pelvis (protocol), which the root turns about, so
    SMPL-X's ``transl`` is the posed pelvis minus the rest pelvis.
    """
    transforms = np.asarray(transforms, dtype=np.float64)
    if transforms.ndim != 4 or transforms.shape[-2:] != (4, 4):
        raise ResultFormatError(f"joint transforms must be (frames, joints, 4, 4), got {transforms.shape}")
    local = rig_math.world_to_local(transforms[..., :3, :3], parents)
    transl = transforms[:, 0, :3, 3] - np.asarray(rest_root, dtype=np.float64)
    return (yield from apply_pose_action_steps(arm_obj, local, transl, frame_start=frame_start, name=name))
