"""The body the views were made from, as this stage needs it (one posed SMPL-X mesh).

``body_from_params`` runs the body model (backend.body: the licensed SMPL-X when configured, else the
stand-in) for the views' SMPL-X parameters and returns the posed mesh, the joints *at that shape and
pose*, the skinning weights and per-vertex part labels, plus what un-posing needs: the per-joint
skinning transforms (rest -> views' pose), the rest joints and vertices at the fitted shape (zero
pose) and the pose-corrective offsets the body applied before skinning. With those,
``posed = LBS(rest_vertices + pose_offsets, joint_transforms)`` exactly (``tests/avatar``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class BodyMesh:
    vertices: np.ndarray  # (V,3) posed, world (Y up, metres)
    faces: np.ndarray  # (F,3)
    joints: np.ndarray  # (J,3) posed joint positions
    parents: np.ndarray  # (J,) -1 root
    joint_names: list[str]
    weights: np.ndarray  # (V,J) linear-blend skinning weights, rows sum to 1
    part_labels: np.ndarray  # (V,) index into part_names
    part_names: list[str]
    joint_transforms: np.ndarray | None = None  # (J,4,4) rest->posed rigid transforms (for unposing)
    rest_joints: np.ndarray | None = None  # (J,3) joints at the same shape in the zero pose
    rest_vertices: np.ndarray | None = None  # (V,3) at the same shape in the zero pose, no transl
    # (V,3) pose correctives (SMPL-X pose blend shapes) at the views' pose, in the rest frame: added
    # to the rest vertices *before* skinning, so un-posing subtracts them after inverse skinning.
    pose_offsets: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def body_from_params(smplx_params: dict[str, Any]) -> BodyMesh:
    """Posed body for protocol SMPL-X parameters (one frame; missing fields default to zero).
    The body is the ``smplx`` model role's (models.toml), else the stand-in."""
    import torch

    from backend.body import BodyModelConfig, BodyParams

    gender = str(smplx_params.get("gender", "neutral"))
    config = BodyModelConfig(gender=gender)
    model = _cached_model(config)
    arrays = {k: v for k, v in smplx_params.items() if k != "gender" and v is not None}
    params = BodyParams.from_arrays(
        arrays, n_frames=1, num_betas=model.num_betas, num_expression=model.num_expression
    )
    with torch.no_grad():
        out = model(params)
        pose_offsets = _pose_offsets(model, params)
    world = out.transforms[0].double().numpy()
    rest_joints = out.rest_joints.double().numpy()
    # Skinning transform of joint j: its posed world frame times the inverse of its rest frame (a
    # pure translation to the rest joint: SMPL-X bones carry no rest orientation).
    skin = world.copy()
    skin[:, :3, 3] = world[:, :3, 3] - np.einsum("jab,jb->ja", world[:, :3, :3], rest_joints)
    return BodyMesh(
        vertices=out.vertices[0].double().numpy(),
        faces=model.faces,
        joints=out.joints[0].double().numpy(),
        parents=model.parents,
        joint_names=list(model.joint_names),
        weights=model.skinning_weights.detach().double().numpy(),
        part_labels=model.part_labels().astype(np.int64),
        part_names=list(model.part_names),
        joint_transforms=skin,
        rest_joints=rest_joints,
        rest_vertices=out.rest_vertices.double().numpy(),
        pose_offsets=pose_offsets,
        extra={"standin": model.is_standin},
    )


def _pose_offsets(model: Any, params: Any) -> np.ndarray:
    """(V,3) the pose-blend-shape offsets ``BodyModel`` adds for frame 0 of ``params``.

    The same computation as ``BodyModel._pose`` (pose feature = R_j - I of every non-root joint
    times ``posedirs``); recomputed here because the model does not return it. Zero for a model
    without pose correctives.
    """
    import torch
    from smplx.lbs import batch_rodrigues

    m = model.smplx
    dtype = m.v_template.dtype
    pose = params.full_pose()[:1].to(dtype) + m.pose_mean.reshape(1, -1, 3)
    rot = batch_rodrigues(pose.reshape(-1, 3)).reshape(1, -1, 3, 3)
    feature = (rot[:, 1:] - torch.eye(3, dtype=dtype)).reshape(1, -1)
    return (feature @ m.posedirs).reshape(-1, 3).double().numpy()


_MODELS: dict[Any, Any] = {}


def _cached_model(config: Any) -> Any:
    from backend.body import BodyModel

    if config not in _MODELS:
        _MODELS[config] = BodyModel(config)
    return _MODELS[config]
