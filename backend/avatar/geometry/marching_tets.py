"""Marching tetrahedra: a watertight triangle mesh from an SDF sampled at tet-grid vertices.

Differentiable with respect to the vertex positions and the SDF values (the surface vertex on a
crossing edge is the linear zero of the SDF along it), which is what DMTet optimises through.
Convention: SDF < 0 inside. Crossing edges are deduplicated globally, so neighbouring tets share
surface vertices and the mesh is closed wherever the surface does not leave the grid.
"""

from __future__ import annotations

import itertools

import torch

# Local edges of a tet, as pairs of local vertex indices.
_TET_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _edge_index(a: int, b: int) -> int:
    return _TET_EDGES.index((min(a, b), max(a, b)))


def _build_case_table() -> torch.Tensor:
    """(16, 2, 3) local edge indices per occupancy case (bit i = vertex i inside); -1 = no triangle.

    Orientation is not encoded here; it is fixed per triangle at run time from the inside->outside
    direction, which makes the table independent of each tet's handedness.
    """
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    for case in range(16):
        inside = [v for v in range(4) if case >> v & 1]
        outside = [v for v in range(4) if not case >> v & 1]
        if len(inside) in (1, 3):
            lone = inside[0] if len(inside) == 1 else outside[0]
            others = [v for v in range(4) if v != lone]
            table[case, 0] = torch.tensor([_edge_index(lone, o) for o in others])
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            ac, ad, bd, bc = (_edge_index(*p) for p in ((a, c), (a, d), (b, d), (b, c)))
            table[case, 0] = torch.tensor([ac, ad, bd])
            table[case, 1] = torch.tensor([ac, bd, bc])
    return table


_CASE_TABLE = _build_case_table()
_EDGE_PAIRS = torch.tensor(list(itertools.chain.from_iterable(_TET_EDGES)), dtype=torch.long).view(6, 2)


def marching_tets(
    vertices: torch.Tensor, sdf: torch.Tensor, tets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the zero level set.

    vertices (V,3) float, sdf (V,) float, tets (T,4) long -> (mesh vertices (M,3), faces (F,3) long),
    faces wound counter-clockwise seen from outside (normals point out of the SDF<0 region).
    """
    device = vertices.device
    tets = tets.to(device)
    with torch.no_grad():
        inside = sdf < 0
        occ = inside[tets]  # (T,4)
        n_in = occ.sum(1)
        tets = tets[(n_in > 0) & (n_in < 4)]
        if tets.shape[0] == 0:
            return vertices.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long, device=device)
        occ = inside[tets]
        case = (occ.long() * torch.tensor([1, 2, 4, 8], device=device)).sum(1)

        # All 6 edges of each surviving tet as global vertex pairs; keep crossing ones, deduplicated.
        edge_verts = tets[:, _EDGE_PAIRS.to(device)]  # (T,6,2)
        lo = torch.minimum(edge_verts[..., 0], edge_verts[..., 1])
        hi = torch.maximum(edge_verts[..., 0], edge_verts[..., 1])
        crossing = inside[lo] != inside[hi]
        key = lo * vertices.shape[0] + hi
        unique_keys, inverse = torch.unique(key[crossing], return_inverse=True)
        local_to_surface = torch.full_like(key, -1)
        local_to_surface[crossing] = inverse
        ua = unique_keys // vertices.shape[0]
        ub = unique_keys % vertices.shape[0]

        tri_edges = _CASE_TABLE.to(device)[case]  # (T,2,3)
        valid = tri_edges[:, :, 0] >= 0
        tet_idx = torch.arange(tets.shape[0], device=device)[:, None].expand(-1, 2)[valid]
        tri_edges = tri_edges[valid]  # (F,3)
        faces = torch.gather(local_to_surface[tet_idx], 1, tri_edges)

    # Differentiable part: zero crossing on each unique edge.
    sa, sb = sdf[ua], sdf[ub]
    denom = sb - sa
    wa = (sb / denom).unsqueeze(1)
    surf = vertices[ua] * wa + vertices[ub] * (1 - wa)

    with torch.no_grad():
        # Orient each triangle so its normal points from the tet's inside vertices to its outside ones.
        tv = vertices[tets[tet_idx]]  # (F,4,3)
        w_in = occ[tet_idx].float().unsqueeze(-1)
        outward = (tv * (1 - w_in)).sum(1) / (1 - w_in).sum(1) - (tv * w_in).sum(1) / w_in.sum(1)
        p = surf[faces]
        normal = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        flip = (normal * outward).sum(1) < 0
        faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return surf, faces
