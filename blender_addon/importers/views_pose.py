"""Put an imported avatar back in the pose of its views (``avatar.from_views`` ``pose_transforms``).

The avatar importer builds the avatar in its canonical bind pose, standing on the ground. "Avatar
from Selected" wants it where the selected character stands, in its pose: the result's skinning
transforms (rest -> views' pose, protocol frame) become one keyed frame of joint world transforms
(``T_world = [R | t + R j_rest]``) and the armature object goes back to the origin (the keyed root
translation places it). Pose correctives (``pose_offsets``) are not applied: the armature's pose
alone is a few millimetres off the backend's ``vertices_posed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .action import apply_joint_transforms_action_steps
from .steps import Steps

ARRAYS_FILE = "avatar_arrays.npz"


def _arrays(arrays: Mapping[str, Any], files: Mapping[str, Path]) -> Mapping[str, Any]:
    if "pose_transforms" in arrays:
        return arrays
    if ARRAYS_FILE in files:
        with np.load(files[ARRAYS_FILE]) as npz:
            return {k: npz[k] for k in ("pose_transforms", "joints_rest", "parents") if k in npz.files}
    return {}


def pose_to_views_steps(arm_obj: bpy.types.Object, arrays: Mapping[str, Any], files: Mapping[str, Path],
                        frame: int) -> Steps[bool]:
    """Key the views' pose on ``arm_obj`` at ``frame``; False when the result has no pose."""
    found = _arrays(arrays, files)
    if not {"pose_transforms", "joints_rest", "parents"} <= set(found):
        return False
    skin = np.asarray(found["pose_transforms"], dtype=np.float64)
    joints = np.asarray(found["joints_rest"], dtype=np.float64)
    world = skin.copy()
    world[:, :3, 3] += np.einsum("jab,jb->ja", skin[:, :3, :3], joints)
    arm_obj.location = (0.0, 0.0, 0.0)
    yield from apply_joint_transforms_action_steps(
        arm_obj, world[None], np.asarray(found["parents"]), rest_root=joints[0], frame_start=frame,
        name=f"{arm_obj.name} Views Pose",
    )
    return True
