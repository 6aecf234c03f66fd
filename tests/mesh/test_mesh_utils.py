"""backend.mesh: the one home of normals, adjacency, closest points and surface samples.

Each function is checked against a value known in closed form (a cube, a tetrahedron, a triangle),
and the copies that must agree with it (torch batched/unbatched, the numba render kernel) against it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.mesh.adjacency import diffuse, face_components, mesh_edges, vertex_adjacency, vertex_degree
from backend.mesh.closest import MeshQuery, closest_on_triangles
from backend.mesh.normals import face_areas, face_normals, vertex_normals
from backend.mesh.sampling import sample_surface


def cube() -> tuple[np.ndarray, np.ndarray]:
    """Unit cube centred at the origin, 12 outward (counter-clockwise) triangles."""
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return v, np.asarray(f, dtype=np.int64)


def test_cube_normals_point_outward_along_the_diagonals() -> None:
    v, f = cube()
    fn = face_normals(v, f)
    centres = v[f].mean(1)
    assert np.allclose(np.abs(fn).sum(1), 1.0)  # axis-aligned unit normals
    assert ((fn * centres).sum(1) > 0).all()  # outward
    assert np.allclose(face_areas(v, f), 0.5)
    vn = vertex_normals(v, f)
    # Every corner touches three faces; the two triangles per face split its area unevenly per
    # corner, but the sum always points out of the cube, along +-x/y/z mixed by area.
    assert np.allclose(np.linalg.norm(vn, axis=1), 1.0)
    assert ((vn * v) > 0).all()


def test_numpy_and_torch_normals_agree_batched_or_not() -> None:
    rng = np.random.default_rng(0)
    v, f = cube()
    v = v + 0.05 * rng.standard_normal(v.shape)
    ref = vertex_normals(v, f)
    t = torch.as_tensor(v, dtype=torch.float64, device="cpu").requires_grad_(True)
    single = vertex_normals(t, torch.as_tensor(f))
    batched = vertex_normals(torch.stack([t, 2 * t]), f)
    assert single.shape == (8, 3) and batched.shape == (2, 8, 3)
    assert np.allclose(single.detach().numpy(), ref, atol=1e-12)
    assert np.allclose(batched[0].detach().numpy(), ref, atol=1e-12)
    assert np.allclose(batched[1].detach().numpy(), ref, atol=1e-12)  # scale does not turn normals
    single.sum().backward()  # differentiable
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_render_kernel_normals_equal_the_shared_ones() -> None:
    """The numba no-gradient copy in the render core is the fast path on purpose: it must agree."""
    from backend.render.cpu_shade import vertex_normals_into

    rng = np.random.default_rng(1)
    v, f = cube()
    verts = np.stack([v, v + 0.1 * rng.standard_normal(v.shape)]).astype(np.float32)
    out = np.empty_like(verts)
    vertex_normals_into(verts, f.astype(np.int32), out)
    for b in range(2):
        assert np.allclose(out[b], vertex_normals(verts[b].astype(np.float64), f), atol=1e-5)


def test_vertex_adjacency_is_symmetric_zero_one_and_ignores_duplicates() -> None:
    tet = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    a = vertex_adjacency(np.concatenate([tet, tet[:, ::-1]]), 5)  # both windings, twice each edge
    dense = a.toarray()
    assert (dense == dense.T).all() and set(np.unique(dense)) == {0.0, 1.0}
    assert dense[:4, :4].sum() == 12 and np.diag(dense).sum() == 0  # K4: every pair, no loops
    assert list(vertex_degree(a)) == [3, 3, 3, 3, 1]  # isolated vertex 4 counts as 1 (no division by 0)
    assert mesh_edges(tet).shape == (12, 2)


def test_diffuse_keeps_constants_and_smooths_a_spike() -> None:
    v, f = cube()
    adj = vertex_adjacency(f, len(v))
    assert np.allclose(diffuse(np.full(8, 3.0), adj, 10), 3.0)
    spike = np.zeros(8)
    spike[0] = 1.0
    once = diffuse(spike, adj, 1, rate=0.5)
    assert once.shape == (8,) and once[0] == pytest.approx(0.5)
    assert once[7] == 0.0  # the opposite corner is not a neighbour
    two_columns = diffuse(np.stack([spike, 1 - spike], 1), adj, 3)
    assert two_columns.shape == (8, 2) and np.allclose(two_columns.sum(1), 1.0)


def test_closest_points_and_signed_distance_on_a_cube() -> None:
    v, f = cube()
    q = MeshQuery(v, f)
    points = np.array([[0.0, 0.0, 1.5], [0.0, 0.0, 0.3], [1.5, 1.5, 1.5], [0.6, 0.0, 0.0]])
    cp = q.closest(points)
    assert np.allclose(cp.distance, [1.0, 0.2, np.sqrt(3.0), 0.1])
    assert np.allclose(cp.point[2], [0.5, 0.5, 0.5])
    assert np.allclose(q.signed_distance(points), [1.0, -0.2, np.sqrt(3.0), 0.1])
    bary = closest_on_triangles(np.array([2.0, 2.0, 0.0]), *np.eye(3)[[0, 1, 2]])
    assert np.allclose(bary.sum(), 1.0) and (bary >= 0).all()


def test_surface_samples_lie_on_the_surface_and_repeat_with_the_seed() -> None:
    v, f = cube()
    a, fa = sample_surface(v, f, 500, np.random.default_rng(3))
    b, fb = sample_surface(v, f, 500, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(fa, fb)
    assert np.allclose(MeshQuery(v, f).closest(a).distance, 0.0, atol=1e-12)
    assert np.allclose(np.abs(a).max(1), 0.5)  # every sample on a face of the cube


def test_face_components_are_numbered_by_their_first_face() -> None:
    _, f = cube()
    far = f + 8  # a second cube, same faces on new vertices
    faces = np.concatenate([far[:4], f, far[4:]])  # the second cube's faces come first
    n, labels = face_components(faces)
    assert n == 2
    assert (labels[:4] == 0).all() and (labels[4:16] == 1).all() and (labels[16:] == 0).all()
    assert face_components(np.zeros((0, 3), dtype=np.int64))[0] == 0
