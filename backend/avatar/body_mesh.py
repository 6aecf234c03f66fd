"""The body the views were made from, as this stage needs it (one posed SMPL-X mesh).

``body_from_params`` runs the body model (backend.body: the licensed SMPL-X when configured, else the
stand-in) for the views' SMPL-X parameters and returns the posed mesh, the joints *at that shape and
pose*, the skinning weights and per-vertex part labels.
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
    extra: dict[str, Any] = field(default_factory=dict)


def body_from_params(smplx_params: dict[str, Any], model_path: str | None = None) -> BodyMesh:
    """Posed body for protocol SMPL-X parameters (one frame; missing fields default to zero)."""
    from pathlib import Path

    import torch

    from backend.body import BodyModelConfig, BodyParams

    gender = str(smplx_params.get("gender", "neutral"))
    config = BodyModelConfig(model_path=Path(model_path) if model_path else None, gender=gender)
    model = _cached_model(config)
    arrays = {k: v for k, v in smplx_params.items() if k != "gender" and v is not None}
    params = BodyParams.from_arrays(
        arrays, n_frames=1, num_betas=model.num_betas, num_expression=model.num_expression
    )
    with torch.no_grad():
        out = model(params)
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
        extra={"standin": config.is_standin},
    )


_MODELS: dict[Any, Any] = {}


def _cached_model(config: Any) -> Any:
    from backend.body import BodyModel

    if config not in _MODELS:
        _MODELS[config] = BodyModel(config)
    return _MODELS[config]
