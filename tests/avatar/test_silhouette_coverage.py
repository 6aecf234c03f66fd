"""``render_views.silhouette_coverage`` (``antialias`` of the mask): unbiased coverage and silhouette
gradients on fine meshes; ``edge_twins`` on a closed mesh."""

import math

import numpy as np
import torch

from backend.avatar.eval.synthetic import look_at_camera
from backend.avatar.geometry.marching_tets import marching_tets
from backend.avatar.geometry.tetgrid import make_tet_grid
from backend.avatar.render_views import camera_clip, silhouette_coverage
from backend.render import get_rasterizer
from backend.render.edges import edge_twins


def _sphere(radius: float = 0.7, cells: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = make_tet_grid(np.array([-1, -1, -1.0]), np.array([1, 1, 1.0]), cells)
    v = torch.as_tensor(g.vertices, dtype=torch.float32)
    mv, mf = marching_tets(v, v.norm(dim=1) - radius, torch.as_tensor(g.tets))
    return mv.detach(), mf


def test_edge_twins_of_a_closed_mesh_are_symmetric() -> None:
    _, f = _sphere(cells=12)
    twins = edge_twins(f)
    assert (twins >= 0).all()
    for k in range(3):
        across = twins[:, k]
        assert ((twins[across] == torch.arange(len(f))[:, None]).any(1)).all()


def test_coverage_of_pixel_sized_triangles_is_the_projected_area() -> None:
    # Triangles ~1.5 px across, as a grid-64 sculpt rendered at 128 px: the coverage must still sum
    # to the disc's area (stopping at the first edge crossed came out ~10 % low), and moving the
    # outline out by dr pixels must add ~perimeter * dr.
    v, f = _sphere()
    size, distance, focal = 48, 5.0, 120.0
    cam = look_at_camera(np.array([0.0, 0.0, distance]), np.zeros(3), size, size, focal)
    scale = torch.tensor(1.0, requires_grad=True)
    clip = camera_clip(v * scale, cam)
    r = get_rasterizer("cpu").rasterize(clip, f.int(), (size, size))
    cover = silhouette_coverage(r, clip, f)
    # a sphere's perspective outline is a circle of radius f * R / sqrt(d^2 - R^2)
    radius_px = focal * 0.7 / math.sqrt(distance**2 - 0.7**2)
    area = math.pi * radius_px**2
    # (the marching-tets polygon lies a little inside the sphere: ~1 % less area)
    assert abs(float(cover.detach().sum()) - area) < 0.025 * area
    assert float(cover.detach().min()) >= 0 and float(cover.detach().max()) <= 1
    cover.sum().backward()
    d_area_d_radius_px = float(scale.grad) / radius_px  # the outline grows ~ linearly with the scale
    # The outline's grazing triangles are slivers: a walk crosses up to ~20 of them before the
    # silhouette (a walk limited to 6 found it for 20 % of the pairs, and the gradient was ~0.2x).
    perimeter = 2 * math.pi * radius_px
    assert 0.9 * perimeter < d_area_d_radius_px < 1.15 * perimeter
