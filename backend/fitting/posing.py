"""The body's forward pass for a subset of its vertices, for the optimisation loop.

The same computation as ``BodyModel`` (shape blend shapes, joint regression, pose correctives,
linear blend skinning: smplx's building blocks on the model's own buffers), but the correctives
and the skinning, which dominate its cost, run only for the vertices a term needs: every third
vertex for the coarse silhouette terms, all of them for the fine ones, the keypoint vertices for
the keypoint term. ``tests/fitting`` checks it against ``BodyModel`` to float precision.
"""

from __future__ import annotations

import numpy as np
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues

from backend.body.joints import EXTRA_VERTEX_IDS, NUM_JOINTS
from backend.body.model import BodyModel


class SubsetPoser:
    """Posed joints, 127 keypoints and the vertices ``index`` of a body, differentiable."""

    def __init__(self, model: BodyModel, index: np.ndarray) -> None:
        m = model.smplx
        self.model = model
        dev = m.v_template.device
        self.index = torch.as_tensor(index, dtype=torch.long, device=dev)
        self.extra = torch.tensor(list(EXTRA_VERTEX_IDS.values()), dtype=torch.long, device=dev)
        lmk_faces = m.faces_tensor[m.lmk_faces_idx]  # (51,3) vertex ids
        self.lmk_vertices = lmk_faces.reshape(-1)
        self.lmk_bary = m.lmk_bary_coords  # (51,3)
        # One gather list: the subset, the 21 keypoint vertices, the 153 landmark corners.
        self.all = torch.cat([self.index, self.extra, self.lmk_vertices])
        n = len(self.all)
        self.posedirs = m.posedirs.reshape(-1, m.v_template.shape[0], 3)[:, self.all].reshape(-1, n * 3)
        self.weights = m.lbs_weights[self.all]
        self.num_betas = model.num_betas

    def __call__(self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor,
                 transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(subset vertices (N,3), joints (55,3), keypoints (127,3)); hands, jaw, eyes at rest."""
        m = self.model.smplx
        dtype = m.v_template.dtype
        shaped = m.v_template + m.shapedirs[..., : self.num_betas] @ betas.to(dtype)  # (V,3)
        joints_rest = m.J_regressor @ shaped
        pose = torch.zeros(NUM_JOINTS, 3, dtype=dtype, device=shaped.device)
        pose = torch.cat([global_orient.reshape(1, 3), body_pose.reshape(21, 3), pose[22:]], dim=0)
        pose = pose + m.pose_mean.reshape(NUM_JOINTS, 3)
        rot = batch_rodrigues(pose)  # (55,3,3)
        feature = (rot[1:] - torch.eye(3, dtype=dtype, device=rot.device)).reshape(1, -1)
        v = shaped[self.all] + (feature @ self.posedirs).reshape(-1, 3)
        joints, rel = batch_rigid_transform(rot[None], joints_rest[None], m.parents, dtype=dtype)
        skin = (self.weights @ rel[0].reshape(NUM_JOINTS, 16)).reshape(-1, 4, 4)
        posed = (skin[:, :3, :3] @ v[:, :, None])[..., 0] + skin[:, :3, 3] + transl.reshape(1, 3)
        n, e = len(self.index), len(self.extra)
        landmarks = (posed[n + e:].reshape(-1, 3, 3) * self.lmk_bary[..., None]).sum(1)
        joints = joints[0] + transl.reshape(1, 3)
        return posed[:n], joints, torch.cat([joints, posed[n:n + e], landmarks])
