"""The body the generator is warped by: a fixed vertex subset of the SMPL-X body, its skinning
weights and part labels, and per item the posed subset plus the rest -> posed joint transforms.

The warp searches the nearest body vertex of every ray sample, so it works on a farthest-point
subset (``warp_vertices`` of the 10,475) that covers the whole surface, hands and head included;
``base`` uses every vertex. The transforms include ``transl``: ``x_posed = Σ_j w_j (R_j x_rest + b_j)``
with ``b_j = p_j - R_j r_j`` (posed joint p, rest joint r), i.e. LBS without pose correctives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.body.model import BodyModel, BodyParams
from protocol.smplx import PER_FRAME_FIELDS

PARAM_KEYS = tuple(PER_FRAME_FIELDS)  # a frame's pose arrays, transl included (the SMPL-X payload's)


def farthest_point_subset(points: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` points chosen greedily farthest from those chosen (start: index 0)."""
    n = len(points)
    if count >= n:
        return np.arange(n)
    chosen = np.zeros(count, dtype=np.int64)
    dist = np.full(n, np.inf)
    for i in range(1, count):
        dist = np.minimum(dist, ((points - points[chosen[i - 1]]) ** 2).sum(1))
        chosen[i] = int(np.argmax(dist))
    return np.sort(chosen)


@dataclass
class PosedBody:
    verts: torch.Tensor  # (Nv, 3) posed subset, world
    transforms: torch.Tensor  # (55, 3, 4) rest -> posed (world), transl included
    rest_verts: torch.Tensor  # (Nv, 3) the subset at rest (these betas): the canonical body
    root: torch.Tensor  # (3,) posed pelvis, world


class BodyTemplate:
    """The body model's subset for the warp; poses items (no autograd: data, not parameters)."""

    def __init__(self, model: BodyModel, warp_vertices: int) -> None:
        self.model = model
        template = model.rest_vertices().detach().cpu().numpy()
        self.index = farthest_point_subset(template, warp_vertices)
        self.weights = model.skinning_weights.detach().float().cpu()[torch.from_numpy(self.index)]  # (Nv,55)
        self.part_names = tuple(model.part_names)
        self.part_labels = torch.from_numpy(np.asarray(model.part_labels())[self.index].astype(np.int64))

    def part_mask(self, group: str) -> torch.Tensor:
        """(Nv,) bool: the subset vertices of the part ``group`` (a part name of the body model)."""
        if group not in self.part_names:
            raise ValueError(f"unknown body part {group!r} for a patch; parts: {', '.join(self.part_names)}")
        return self.part_labels == self.part_names.index(group)

    @torch.no_grad()
    def pose(self, params: dict[str, Any]) -> PosedBody:
        """Pose one frame: ``params`` holds per-frame (w,) arrays of :data:`PARAM_KEYS` and ``betas``."""
        p = BodyParams.from_arrays(
            {
                k: np.asarray(v, dtype=np.float32)[None] if k != "betas" else v
                for k, v in params.items()
                if k in (*PARAM_KEYS, "betas")
            },
            n_frames=1,
        )
        out = self.model(p)
        idx = torch.from_numpy(self.index)
        rot = out.transforms[0, :, :3, :3].float()
        posed_joints = out.joints[0, :55].float()
        rest_joints = out.rest_joints.float()
        bias = posed_joints - (rot @ rest_joints[..., None])[..., 0]
        transforms = torch.cat([rot, bias[..., None]], dim=-1)
        return PosedBody(
            out.vertices[0, idx].float(), transforms, out.rest_vertices[idx].float(), posed_joints[0].clone()
        )
