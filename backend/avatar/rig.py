"""Rigging: SMPL-X skinning weights and joint tree transferred to the sculpted mesh.

Weights are the body's weights interpolated barycentrically at each vertex's closest body point,
then smoothed over the new mesh (clothing far from the skin gets a blend instead of a crease) and
finally restricted to the bones of the vertex's own body part: any joint that influences no body
vertex of that part is zeroed. That restriction is what stops smoothing (and a skirt spanning both
thighs) from bleeding one leg's or arm's bones into another limb. Rows are renormalised to sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix

from backend.avatar.body_mesh import BodyMesh
from backend.avatar.mesh_query import ClosestPoints


@dataclass
class RigConfig:
    smooth_iterations: int = 10
    smooth_alpha: float = 0.5
    allowed_threshold: float = 0.05  # a joint is one of a part's bones if it weighs >= this on it


@dataclass
class Rig:
    weights: np.ndarray  # (V,J) rows sum to 1
    joints: np.ndarray  # (J,3) joint positions matching the mesh's pose
    parents: np.ndarray  # (J,)
    joint_names: list[str]


def allowed_joints(body: BodyMesh, threshold: float) -> np.ndarray:
    """(P,J) bool: joints that influence each body part."""
    n_parts = len(body.part_names)
    allowed = np.zeros((n_parts, body.weights.shape[1]), bool)
    for p in range(n_parts):
        sel = body.part_labels == p
        if sel.any():
            allowed[p] = body.weights[sel].max(0) >= threshold
    return allowed


def mesh_adjacency(n: int, faces: np.ndarray) -> coo_matrix:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))


def transfer_weights(
    body: BodyMesh, faces: np.ndarray, cp: ClosestPoints, labels: np.ndarray, config: RigConfig
) -> np.ndarray:
    corner_w = body.weights[body.faces[cp.face]]  # (V,3,J)
    w = (cp.bary[:, :, None] * corner_w).sum(1)
    mask = allowed_joints(body, config.allowed_threshold)[labels]
    adj = mesh_adjacency(len(w), faces).tocsr()
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(1)).ravel()[:, None]
    for _ in range(config.smooth_iterations):
        w = (1 - config.smooth_alpha) * w + config.smooth_alpha * (adj @ w) / np.maximum(deg, 1)
        w = w * mask
    w = w * mask
    s = w.sum(1, keepdims=True)
    # A vertex whose part's bones got no weight at all falls back to the unsmoothed transfer.
    fallback = (cp.bary[:, :, None] * corner_w).sum(1)
    w = np.where(s > 1e-8, w / np.maximum(s, 1e-12), fallback / fallback.sum(1, keepdims=True))
    return w


def rig_mesh(
    body: BodyMesh, faces: np.ndarray, cp: ClosestPoints, labels: np.ndarray, config: RigConfig
) -> Rig:
    return Rig(
        weights=transfer_weights(body, faces, cp, labels, config),
        joints=body.joints.copy(),
        parents=body.parents.copy(),
        joint_names=list(body.joint_names),
    )


def pose_vertices(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning with (J,4,4) transforms (rest -> posed), for tests and previews."""
    per_vertex = np.einsum("vj,jab->vab", weights, transforms)
    return np.einsum("vab,vb->va", per_vertex[:, :3, :3], vertices) + per_vertex[:, :3, 3]
