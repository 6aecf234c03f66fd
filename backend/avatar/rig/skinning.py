"""Rigging: SMPL-X skinning weights and joint tree transferred to the sculpted mesh.

Weights are the body's weights interpolated barycentrically at each vertex's closest body point,
then smoothed over the new mesh (clothing far from the skin gets a blend instead of a crease) and
finally restricted to the bones of the vertex's own body part: any joint that influences no body
vertex of that part is zeroed. That restriction is what stops smoothing (and a skirt spanning both
thighs) from bleeding one leg's or arm's bones into another limb. Rows are renormalised to sum to 1.

The sculpted mesh is in the views' pose (the synthetic characters stand in an A-pose), but SMPL-X /
AMASS motions are rotations relative to SMPL-X's zero pose (a T-pose). ``canonical_pose`` therefore
un-poses the mesh with inverse linear blend skinning (the avatar's own weights and the body's
per-joint transforms for the views' pose) and removes the body's pose correctives, so the avatar is
bound in the zero pose at the body's rest joints, exactly like the body: a SMPL-X pose vector then
drives both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.mesh.adjacency import diffuse, vertex_adjacency
from backend.mesh.closest import ClosestPoints


@dataclass
class RigConfig:
    smooth_iterations: int = 10
    smooth_alpha: float = 0.5
    allowed_threshold: float = 0.05  # a joint is one of a part's bones if it weighs >= this on it


@dataclass
class Rig:
    weights: np.ndarray  # (V,J) rows sum to 1
    joints: np.ndarray  # (J,3) joint positions matching the mesh's pose (the views' pose)
    parents: np.ndarray  # (J,)
    joint_names: list[str]


@dataclass
class CanonicalPose:
    """The rigged mesh brought to SMPL-X's zero pose (the bind pose of the exported avatar)."""

    vertices: np.ndarray  # (V,3) rest positions: zero pose, body's rest frame (no transl)
    joints: np.ndarray  # (J,3) the body's rest joints at the fitted betas
    transforms: np.ndarray  # (J,4,4) rest -> views' pose skinning transforms (re-poses vertices)
    pose_offsets: np.ndarray  # (V,3) pose correctives removed (rest frame; re-add before LBS)


def allowed_joints(body: BodyMesh, threshold: float) -> np.ndarray:
    """(P,J) bool: joints that influence each body part."""
    n_parts = len(body.part_names)
    allowed = np.zeros((n_parts, body.weights.shape[1]), bool)
    for p in range(n_parts):
        sel = body.part_labels == p
        if sel.any():
            allowed[p] = body.weights[sel].max(0) >= threshold
    return allowed


def transfer_weights(
    body: BodyMesh, faces: np.ndarray, cp: ClosestPoints, labels: np.ndarray, config: RigConfig
) -> np.ndarray:
    corner_w = body.weights[body.faces[cp.face]]  # (V,3,J)
    w = (cp.bary[:, :, None] * corner_w).sum(1)
    mask = allowed_joints(body, config.allowed_threshold)[labels]
    adj = vertex_adjacency(faces, len(w))
    for _ in range(config.smooth_iterations):
        # One diffusion step at a time: the mask keeps each vertex on its part's bones between steps.
        w = diffuse(w, adj, 1, config.smooth_alpha) * mask
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


def unpose_vertices(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Inverse linear blend skinning: the rest positions that ``pose_vertices`` maps to ``vertices``.

    Each vertex's blended matrix ``sum_j w_j T_j`` is inverted on its own (exact for LBS, since
    the blend depends only on the weights, not on the position). A blend of strongly different
    rotations can be near-singular (a vertex weighted half to each side of a joint bent ~180 deg);
    such vertices fall back to their strongest joint's rigid transform instead of exploding.
    """
    per_vertex = np.einsum("vj,jab->vab", weights, transforms)
    a, t = per_vertex[:, :3, :3], per_vertex[:, :3, 3]
    det = np.linalg.det(a)
    bad = np.abs(det) < 1e-3
    if bad.any():
        strongest = transforms[np.argmax(weights[bad], axis=1)]
        a[bad], t[bad] = strongest[:, :3, :3], strongest[:, :3, 3]
    return np.linalg.solve(a, (vertices - t)[..., None])[..., 0]


def corrective_offsets(body: BodyMesh, cp: ClosestPoints) -> np.ndarray:
    """(V,3) the body's pose-corrective offsets interpolated at each vertex's closest body point.

    Clothing and hair follow the skin underneath, so they carry the same corrective bulge; zero
    when the body has no pose correctives.
    """
    if body.pose_offsets is None:
        return np.zeros((len(cp.face), 3))
    return (cp.bary[:, :, None] * body.pose_offsets[body.faces[cp.face]]).sum(1)


def canonical_pose(
    body: BodyMesh, vertices: np.ndarray, weights: np.ndarray, cp: ClosestPoints
) -> CanonicalPose:
    """Un-pose a mesh rigged in the views' pose to SMPL-X's zero pose (see the module docstring).

    The body posed ``rest + offsets`` by LBS, so the inverse is inverse LBS then minus the
    offsets; re-posing the result with ``pose_vertices(rest + pose_offsets, weights, transforms)``
    gives ``vertices`` back exactly, and plain LBS (no correctives, as glTF/Blender skin) within
    the correctives' size (millimetres on the stand-in's A-pose shoulders).
    """
    if body.joint_transforms is None or body.rest_joints is None:
        raise ValueError("the body has no joint transforms / rest joints: make it with body_from_params")
    offsets = corrective_offsets(body, cp)
    rest = unpose_vertices(vertices, weights, body.joint_transforms) - offsets
    return CanonicalPose(
        vertices=rest,
        joints=body.rest_joints.copy(),
        transforms=body.joint_transforms.copy(),
        pose_offsets=offsets,
    )
