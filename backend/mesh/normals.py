"""Face and vertex normals of triangle meshes (counter-clockwise winding = outward), numpy or torch.

One formula for every caller: a face's normal is the cross product of two edges (its length is twice
the area), a vertex's normal the unit sum of its faces' (area-weighted). ``vertex_normals`` keeps the
array type it is given: numpy in float64 (closest-point signs, exports, the stand-in body), torch in
the input dtype and differentiable, batched or not (render passes, sculpting and texturing losses).
The no-gradient CPU render computes the same sum inside its numba kernel
(``backend.render.cpu_shade.vertex_normals_into``, tested against this one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np

if TYPE_CHECKING:
    import torch

    ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def face_normals(vertices: np.ndarray, faces: np.ndarray, unit: bool = True) -> np.ndarray:
    """(F,3) face normals; ``unit=False`` keeps their length, twice the face area."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if not unit:
        return n
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) triangle areas."""
    return 0.5 * np.linalg.norm(face_normals(vertices, faces, unit=False), axis=1)


@overload
def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray: ...
@overload
def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor | np.ndarray) -> torch.Tensor: ...


def vertex_normals(vertices, faces):  # type: ignore[no-untyped-def]
    """Area-weighted unit vertex normals of (V,3) or, for torch, (B,V,3) vertices.

    numpy in gives float64 numpy out; a torch tensor gives a tensor of its dtype and device, with
    gradients. A vertex on no face gets a zero normal.
    """
    if isinstance(vertices, np.ndarray):
        v = vertices.astype(np.float64, copy=False)
        f = np.asarray(faces, dtype=np.int64)
        fn = face_normals(v, f, unit=False)
        vn = np.zeros_like(v)
        for k in range(3):
            np.add.at(vn, f[:, k], fn)
        return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    return _vertex_normals_torch(vertices, faces)


def _vertex_normals_torch(verts: torch.Tensor, faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    single = verts.dim() == 2
    batch_verts = verts.unsqueeze(0) if single else verts
    faces = torch.as_tensor(faces, device=verts.device).to(torch.int64)
    batch, n_verts = batch_verts.shape[0], batch_verts.shape[1]
    tri = batch_verts[:, faces]  # (B,F,3,3)
    face_n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # |n| = 2 area
    # One scatter over all (batch, corner) rows instead of three batched index_adds.
    offsets = n_verts * torch.arange(batch, device=verts.device).view(-1, 1, 1)
    target = (faces.unsqueeze(0) + offsets).reshape(-1)
    source = face_n.unsqueeze(2).expand(-1, -1, 3, -1).reshape(-1, 3)
    normals = torch.zeros(batch * n_verts, 3, dtype=verts.dtype, device=verts.device)
    normals = normals.index_add(0, target, source)
    out = F.normalize(normals.reshape(batch, n_verts, 3), dim=-1, eps=1e-12)
    return out[0] if single else out
