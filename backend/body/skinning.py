"""Skinning weights for the stand-in: bone ownership from the primitives, blended across joints.

Each surface vertex belongs to the bone of the primitive it lies on. It then shares weight with the
neighbouring bones in the tree (parent and children) by how much farther they are:
``w_k ∝ exp(-(d_k² - d_own²) / (2 σ²))`` with d the distance to each bone *segment*. On a limb this
ratio depends only on how far along the limb the vertex is from the joint (d_k² - d_own² = s²), so
the blend is centred on the joint and ``σ`` (a fraction of the limb's radius at that joint) sets
its width: wide at the hips and spine, narrow on the fingers, like a hand-painted rig. A few steps
of graph diffusion then remove the seams between differently owned regions (armpit, groin), and
every vertex keeps its four strongest bones.
"""

from __future__ import annotations

import numpy as np

from backend.mesh.adjacency import diffuse, vertex_adjacency

from .joints import JOINT_INDEX, NUM_JOINTS, PARENTS

BLEND_WIDTH = 0.55  # sigma as a fraction of the limb radius at the joint
EYE_JOINTS = (JOINT_INDEX["left_eye_smplhf"], JOINT_INDEX["right_eye_smplhf"])


def keep_strongest(weights: np.ndarray, k: int = 4, floor: float = 1e-3) -> np.ndarray:
    """Zero all but the ``k`` largest weights per row (and tiny ones), then renormalise to 1."""
    w = np.zeros_like(weights)
    top = np.argpartition(weights, -k, axis=1)[:, -k:] if weights.shape[1] > k else None
    if top is None:
        w[:] = weights
    else:
        rows = np.arange(len(weights))[:, None]
        w[rows, top] = weights[rows, top]  # exactly k, even when weights tie
    w[w < floor] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def segment_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(N, B) distance from each point to each segment [starts[b], ends[b]]."""
    ab = ends - starts
    length2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    rel = points[:, None, :] - starts[None]
    t = np.clip((rel * ab[None]).sum(-1) / length2[None], 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * ab[None], axis=-1)


def tree_neighbours(joint: int) -> list[int]:
    """The joint's own bone, its parent's and its children's (eyeballs excluded)."""
    out = [joint]
    if PARENTS[joint] >= 0:
        out.append(PARENTS[joint])
    out += [c for c, p in enumerate(PARENTS) if p == joint]
    return [j for j in out if j not in EYE_JOINTS or j == joint]


def body_skinning_weights(
    vertices: np.ndarray,
    faces: np.ndarray,
    owner_bone: np.ndarray,
    joints: np.ndarray,
    bone_ends: np.ndarray,
    smoothing_steps: int = 4,
) -> np.ndarray:
    """(V, 55) weights for a body surface whose vertices are owned by ``owner_bone``."""
    n = len(vertices)
    dist = segment_distances(vertices, joints, bone_ends)  # (V, 55)
    # limb radius at each joint: how far the nearest surface point is
    radius = np.linalg.norm(vertices[None] - joints[:, None], axis=-1).min(axis=1)
    weights = np.zeros((n, NUM_JOINTS))
    for bone in np.unique(owner_bone):
        rows = np.nonzero(owner_bone == bone)[0]
        neighbours = tree_neighbours(int(bone))
        own = dist[rows, bone][:, None]
        scores = []
        for k in neighbours:
            shared_joint = bone if k == PARENTS[bone] else k  # the joint between the two bones
            sigma = BLEND_WIDTH * max(radius[shared_joint], 1e-3)
            scores.append(-(dist[rows, k][:, None] ** 2 - own**2) / (2 * sigma**2))
        logits = np.clip(np.concatenate(scores, axis=1), -30.0, 30.0)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights[np.ix_(rows, neighbours)] = w / w.sum(axis=1, keepdims=True)
    smooth = diffuse(weights, vertex_adjacency(faces, n), smoothing_steps)
    return keep_strongest(smooth)
