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


def body_from_params(smplx_params: dict[str, Any]) -> BodyMesh:
    """Posed body for protocol SMPL-X parameters (one frame; missing fields default to zero)."""
    import torch

    from backend.body import BodyModel  # owned by the body helper
    from backend.body.joints import JOINT_NAMES, PART_NAMES, parents_array

    gender = str(smplx_params.get("gender", "neutral"))
    model = BodyModel(gender=gender) if _accepts_gender(BodyModel) else BodyModel()
    kwargs: dict[str, torch.Tensor] = {}
    for key in (
        "betas",
        "expression",
        "global_orient",
        "body_pose",
        "left_hand_pose",
        "right_hand_pose",
        "jaw_pose",
        "leye_pose",
        "reye_pose",
        "transl",
    ):
        if key in smplx_params and smplx_params[key] is not None:
            arr = np.asarray(smplx_params[key], dtype=np.float32)
            kwargs[key] = torch.as_tensor(arr.reshape(1, -1))
    out = model.forward(**kwargs)
    verts = _np(out.vertices)[0].astype(np.float64)
    joints = _np(out.joints)[0, : len(JOINT_NAMES)].astype(np.float64)
    rest = None
    if hasattr(model, "rest_joints"):
        rest = np.asarray(model.rest_joints(kwargs.get("betas")), dtype=np.float64)
    transforms = getattr(out, "joint_transforms", None)
    return BodyMesh(
        vertices=verts,
        faces=np.asarray(model.faces, dtype=np.int64),
        joints=joints,
        parents=parents_array(),
        joint_names=list(JOINT_NAMES),
        weights=np.asarray(model.weights, dtype=np.float64),
        part_labels=np.asarray(model.part_labels, dtype=np.int64),
        part_names=list(PART_NAMES),
        joint_transforms=None if transforms is None else _np(transforms)[0].astype(np.float64),
        rest_joints=rest,
    )


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _accepts_gender(cls: type) -> bool:
    import inspect

    try:
        return "gender" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
