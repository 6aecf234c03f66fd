"""Inverse linear blend skinning: posed (world) points -> the canonical (rest) body.

Each point takes the skinning weights of its nearest posed body vertex (AvatarGen / En3D style),
blends the joints' rest -> posed transforms with them and applies the inverse. Blending happens per
vertex first (Nv transforms, inverted once) and is gathered per point, so the cost per point is
one nearest-vertex search (:mod:`.knn`: brute force for small bodies, a k-d tree for the full
SMPL-X mesh) and one 3x4 product. The distance to that vertex comes back too: the
density fades beyond a shell around the body (:mod:`.generator`).
"""

from __future__ import annotations

import torch

from backend.threedgm.knn import nearest_vertex

__all__ = ["blend_inverse", "inverse_lbs", "nearest_vertex"]


def blend_inverse(weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """(B,Nv,3,4) inverse of Σ_j w_vj T_j per vertex; weights (Nv,J), transforms (B,J,3,4)."""
    B, J = transforms.shape[:2]
    blended = (weights @ transforms.reshape(B, J, 12)).reshape(B, -1, 3, 4)
    rot_inv = torch.linalg.inv(blended[..., :3])
    return torch.cat([rot_inv, -(rot_inv @ blended[..., 3:])], dim=-1)


def inverse_lbs(
    points: torch.Tensor,
    verts: torch.Tensor,
    weights: torch.Tensor,
    transforms: torch.Tensor,
    differentiable_distance: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical points (B,N,3) and distance to the body (B,N) of posed points (B,N,3).

    The search is not differentiable (the nearest index is piecewise constant); the canonical points
    are (through the gathered transform). ``differentiable_distance`` recomputes the distance from
    the found vertex so it carries a gradient to the points too (surface normals of the density
    need it: the shell fade is part of the density); off, the search's own distance is returned
    (training: the points are data, no gradient reaches them anyway).
    """
    idx, dist = nearest_vertex(points, verts)
    if differentiable_distance:
        nearest = torch.gather(verts, 1, idx[..., None].expand(-1, -1, 3))
        dist = (points - nearest.to(points)).norm(dim=-1)
    inv = blend_inverse(weights.to(transforms), transforms)  # (B,Nv,3,4)
    per_point = torch.gather(inv, 1, idx[..., None, None].expand(-1, -1, 3, 4))  # (B,N,3,4)
    canon = (per_point[..., :3] @ points[..., None])[..., 0] + per_point[..., 3]
    return canon, dist
