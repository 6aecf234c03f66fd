"""Implicit body -> triangle mesh with an exact vertex count.

Marching cubes gives a dense, watertight, genus-0 surface; quadric decimation brings it just under
the vertex budget; the left half is kept, padded and mirrored (symmetry.py) so the body is exactly
symmetric, and splitting the longest edges one at a time lands on the exact count. On a closed
genus-0 surface every edge split adds one vertex and two faces, so the face count follows
(F = 2V - 4) and stays exactly what SMPL-X's topology needs. A final tangential relaxation evens
out the triangles without leaving the implicit surface or folding any triangle.
"""

from __future__ import annotations

from collections.abc import Callable

import fast_simplification
import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from backend.mesh.adjacency import mesh_edges, vertex_adjacency, vertex_degree
from backend.mesh.normals import face_normals

from .sdf import Grid, Primitive, evaluate_union
from .symmetry import SymmetryError, boundary_edges, check_half, cut_left_half, mirror_and_weld, symmetrize


class SurfaceError(RuntimeError):
    """The implicit surface did not mesh into a single closed genus-0 component."""


def _largest_component(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    parts = mesh.split(only_watertight=False)
    return max(parts, key=lambda m: len(m.vertices))


def _check_sphere_like(mesh: trimesh.Trimesh, what: str) -> None:
    if not mesh.is_watertight or mesh.euler_number != 2:
        raise SurfaceError(
            f"{what}: expected a closed genus-0 surface, got watertight={mesh.is_watertight} "
            f"euler={mesh.euler_number}"
        )


EdgeFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]
DetailWeight = Callable[[np.ndarray], np.ndarray]


def split_longest_edges(
    vertices: np.ndarray,
    faces: np.ndarray,
    count: int,
    allowed: EdgeFilter | None = None,
    detail: DetailWeight | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the currently longest edge ``count`` times (midpoint split, orientation kept).

    ``allowed(vertices, edges)`` may restrict which (E, 2) edges are candidates; ``detail(points)``
    scales edge lengths by where their midpoints are, so regions that need finer triangles get the
    splits first. An edge with one face (a rim edge of an open mesh) or two faces can be split.
    """
    v = [*vertices]
    f = faces.copy()
    for _ in range(count):
        vv = np.asarray(v)
        edges = mesh_edges(f)
        lengths = np.linalg.norm(vv[edges[:, 0]] - vv[edges[:, 1]], axis=1)
        if detail is not None:
            lengths = lengths * detail(0.5 * (vv[edges[:, 0]] + vv[edges[:, 1]]))
        if allowed is not None:
            lengths[~allowed(vv, edges)] = -1.0
        if lengths.max() < 0:
            raise SurfaceError("no edge may be split")
        a, b = edges[int(lengths.argmax())]
        new = len(v)
        v.append(0.5 * (vv[a] + vv[b]))
        idx = np.nonzero(((f == a).any(axis=1)) & ((f == b).any(axis=1)))[0]
        if len(idx) not in (1, 2):
            raise SurfaceError(f"edge ({a},{b}) is shared by {len(idx)} faces")
        added = []
        for fi in idx:
            tri = [int(x) for x in f[fi]]
            # rotate so that the triangle reads (p, q, c) with {p, q} = {a, b}
            while {tri[0], tri[1]} != {a, b}:
                tri = tri[1:] + tri[:1]
            p, q, c = tri
            f[fi] = (p, new, c)
            added.append((new, q, c))
        f = np.concatenate([f, np.asarray(added, dtype=f.dtype)])
    return np.asarray(v), f


def _min_angles(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smallest corner angle (radians) of each triangle."""
    a, b, c = (v[faces[:, k]] for k in range(3))
    ab, bc, ca = b - a, c - b, a - c

    def angle(u: np.ndarray, w: np.ndarray) -> np.ndarray:
        cos = (u * w).sum(axis=1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1), 1e-30)
        return np.arccos(np.clip(cos, -1.0, 1.0))

    return np.minimum(np.minimum(angle(ab, -ca), angle(bc, -ab)), angle(ca, -bc))


def flip_slivers(
    vertices: np.ndarray, faces: np.ndarray, below_deg: float = 12.0, max_bend_deg: float = 15.0
) -> np.ndarray:
    """Flip the longest edge of thin triangles where that makes both triangles fatter.

    Only edges between two nearly coplanar triangles are flipped (the shape does not change) and
    rim edges of an open mesh are left alone. Vertex count and orientation are kept.
    """
    f = faces.copy()
    cos_bend = np.cos(np.radians(max_bend_deg))
    for _ in range(3):
        angles = _min_angles(vertices, f)
        owner: dict[tuple[int, int], list[int]] = {}
        for fi, tri in enumerate(f.tolist()):
            for k in range(3):
                owner.setdefault((min(tri[k], tri[(k + 1) % 3]), max(tri[k], tri[(k + 1) % 3])), []).append(
                    fi
                )
        touched: set[int] = set()
        flips = 0
        for fi in np.argsort(angles):
            if angles[fi] >= np.radians(below_deg):
                break
            if fi in touched:
                continue
            tri = [int(x) for x in f[fi]]
            lengths = [np.linalg.norm(vertices[tri[k]] - vertices[tri[(k + 1) % 3]]) for k in range(3)]
            k = int(np.argmax(lengths))
            a, b, c = tri[k], tri[(k + 1) % 3], tri[(k + 2) % 3]
            across = [g for g in owner.get((min(a, b), max(a, b)), []) if g != fi]
            if len(across) != 1 or across[0] in touched:
                continue
            g = across[0]
            d = next(int(x) for x in f[g] if x not in (a, b))
            if (min(c, d), max(c, d)) in owner:
                continue  # the flipped edge already exists elsewhere
            old = np.array([[a, b, c], [b, a, d]])
            new = np.array([[a, d, c], [d, b, c]])
            n_old, n_new = face_normals(vertices, old), face_normals(vertices, new)
            if (n_old[0] @ n_old[1]) < cos_bend or (n_new @ n_old[0]).min() < cos_bend:
                continue
            if _min_angles(vertices, new).min() <= _min_angles(vertices, old).min():
                continue
            f[fi], f[g] = new
            touched.update((int(fi), g))
            flips += 1
        if flips == 0:
            break
    return f


def project_to_level_set(points: np.ndarray, field_: np.ndarray, grid: Grid, steps: int = 3) -> np.ndarray:
    """Move points onto the zero level set along the field's gradient (Newton steps)."""
    p = points.copy()
    h = grid.spacing

    def sample(x: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(field_, ((x - grid.origin) / h).T, order=1, mode="nearest")

    for _ in range(steps):
        d = sample(p)
        # central differences of the interpolated field, only at the points that need them
        g = np.stack([(sample(p + h * e) - sample(p - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
        norm2 = np.maximum((g * g).sum(axis=1), 1e-8)
        p -= (d / norm2)[:, None] * g
    return p


def relax(
    vertices: np.ndarray,
    faces: np.ndarray,
    field_: np.ndarray,
    grid: Grid,
    iterations: int,
    mirror: np.ndarray | None = None,
) -> np.ndarray:
    """Tangential Laplacian smoothing, re-projected onto the implicit surface after each step.

    Evens out the long thin triangles quadric decimation leaves, without changing the shape.
    """
    a = vertex_adjacency(faces, len(vertices))
    degree = vertex_degree(a)
    v = vertices.copy()
    initial = face_normals(vertices, faces)
    for _ in range(iterations):
        normals = trimesh.Trimesh(v, faces, process=False).vertex_normals
        delta = (a @ v) / degree[:, None] - v
        delta -= (delta * normals).sum(axis=1, keepdims=True) * normals
        moved = project_to_level_set(v + 0.5 * delta, field_, grid, steps=2)
        if mirror is not None:
            moved = symmetrize(moved, mirror)
        v = _undo_folds(v, moved, faces, initial)
    return v


def _undo_folds(
    before: np.ndarray, after: np.ndarray, faces: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Keep ``before`` positions for the vertices of any face that smoothing turned away from its
    ``reference`` normal (the unsmoothed mesh's), so relaxation never folds the surface.

    Both inputs are mirror-symmetric when symmetry is wanted, so the set of faces put back is too.
    """
    out = after.copy()
    for _ in range(10):
        folded = (face_normals(out, faces) * reference).sum(axis=1) < 0.3
        if not folded.any():
            break
        stuck = np.unique(faces[folded])
        out[stuck] = before[stuck]
    return out


def implicit_field(primitives: list[Primitive], spacing: float) -> tuple[np.ndarray, Grid]:
    """Sample the union on a grid that is mirror-symmetric in x with a sample plane at x = 0."""
    lo = np.min([p.bounds()[0] for p in primitives if not p.subtract], axis=0)
    hi = np.max([p.bounds()[1] for p in primitives if not p.subtract], axis=0)
    grid = Grid.around(lo, hi, spacing, margin=4 * spacing)
    half_x = int(np.ceil((max(abs(lo[0]), abs(hi[0])) + 4 * spacing) / spacing))
    origin = grid.origin.copy()
    origin[0] = -half_x * spacing
    # Off-round y/z sample planes: flat primitive faces at round coordinates (the palm) would
    # otherwise lie exactly on a sample plane and marching cubes would emit sliver triangles.
    origin[1:] += np.array([0.37, 0.21]) * spacing
    grid = Grid(origin=origin, spacing=spacing, shape=(2 * half_x + 1, grid.shape[1], grid.shape[2]))
    return evaluate_union(primitives, grid), grid


def decimate(dense: trimesh.Trimesh, target_faces: int) -> trimesh.Trimesh:
    """Quadric decimation that keeps the surface a closed genus-0 sphere."""
    # Fast quadric decimation occasionally pinches two sheets together at its default
    # aggressiveness; gentler settings are tried until the result is still a sphere.
    for aggressiveness in (3.0, 2.0, 1.0, 5.0):
        v, f = fast_simplification.simplify(
            np.asarray(dense.vertices, np.float64),
            np.asarray(dense.faces, np.int32),
            target_count=target_faces,
            agg=aggressiveness,
        )
        candidate = trimesh.Trimesh(v, f, process=False)
        if candidate.is_watertight and candidate.euler_number == 2:
            return candidate
    raise SurfaceError("quadric decimation did not keep the surface closed and genus 0")


def _mirror_symmetric(
    coarse: trimesh.Trimesh, n_vertices: int, snap: float, detail: DetailWeight | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left half of ``coarse``, padded to the vertex budget, mirrored and welded."""
    half_v, half_f = cut_left_half(np.asarray(coarse.vertices), np.asarray(coarse.faces), snap)
    check_half(half_v, half_f)
    seam = int((half_v[:, 0] == 0.0).sum())
    missing = n_vertices - (2 * (len(half_v) - seam) + seam)
    if missing < 0:
        raise SymmetryError(f"the mirrored mesh has {n_vertices - missing} vertices, budget {n_vertices}")
    if missing % 2:
        # a rim split adds one vertex on the midplane: the only way to change the parity
        rim = {tuple(sorted(e)) for e in boundary_edges(half_f).tolist()}

        def on_rim(_: np.ndarray, edges: np.ndarray) -> np.ndarray:
            return np.array([tuple(sorted(e)) in rim for e in edges.tolist()])

        half_v, half_f = split_longest_edges(half_v, half_f, 1, on_rim)
    # every other split adds a vertex off the plane, i.e. a mirrored pair in the full mesh
    half_v, half_f = split_longest_edges(
        half_v, half_f, missing // 2, lambda vv, e: (vv[e[:, 0], 0] > 0) | (vv[e[:, 1], 0] > 0), detail
    )
    return mirror_and_weld(half_v, flip_slivers(half_v, half_f))


def mesh_implicit(
    primitives: list[Primitive],
    n_vertices: int,
    spacing: float = 0.003,
    relax_iterations: int = 10,
    symmetric: bool = True,
    detail: DetailWeight | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the smooth union of ``primitives`` into exactly ``n_vertices`` (faces = 2V - 4).

    With ``symmetric`` (and mirror-symmetric primitives) the right half is the exact mirror of the
    left; should the midplane cut fail, the unsymmetric mesh is used instead. ``detail(points)``
    (> 1 where finer triangles are wanted, e.g. hands and face) steers where the vertices that
    decimation left over are spent.
    """
    field_, grid = implicit_field(primitives, spacing)
    # A tiny iso offset keeps marching cubes off exact-zero samples (flat faces on grid planes).
    verts, faces, _, _ = marching_cubes(field_, level=1e-7, spacing=(spacing,) * 3)
    dense = _largest_component(verts + grid.origin, faces)
    _check_sphere_like(dense, "marching cubes")

    mirror = None
    # The left half of a decimated body holds roughly, not exactly, half its vertices: aim lower
    # and lower until the mirrored mesh fits the budget (the rest is made up by edge splits).
    for margin in (700, 900, 1200) if symmetric else ():
        try:
            coarse = decimate(dense, 2 * (n_vertices - margin) - 4)
            v, f, mirror = _mirror_symmetric(coarse, n_vertices, 0.6 * spacing, detail)
            _check_sphere_like(trimesh.Trimesh(v, f, process=False), "mirrored surface")
            break
        except (SymmetryError, SurfaceError):
            mirror = None
    if mirror is None:
        # Decimate a little below the budget, then split edges up to the exact count.
        coarse = decimate(dense, 2 * (n_vertices - 60) - 4)
        missing = n_vertices - len(coarse.vertices)
        if missing < 0:
            raise SurfaceError(f"decimation left {len(coarse.vertices)} vertices, budget {n_vertices}")
        v, f = split_longest_edges(
            np.asarray(coarse.vertices), np.asarray(coarse.faces), missing, None, detail
        )
        f = flip_slivers(v, f)
    v = relax(v, f, field_, grid, relax_iterations, mirror)
    result = trimesh.Trimesh(v, f, process=False)
    _check_sphere_like(result, "final surface")
    return v, f.astype(np.int64)
