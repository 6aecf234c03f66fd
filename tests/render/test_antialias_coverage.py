"""``antialias`` on fine meshes (triangles about a pixel in size): unbiased coverage at outlines and
at occlusion edges inside the image, hard colours inside surfaces, batched images, gradients.

Stopping at the first edge of the nearer pixel's own triangle (the earlier op) fails these: that
edge is usually interior on such meshes, which took ~10 % of the coverage away and blended colours
across interior edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import Delaunay
from torch.autograd import gradcheck

from backend.render import antialias, get_rasterizer, interpolate
from backend.render.edges import edge_twins

SIZE = 40  # image is SIZE x SIZE pixels
CENTRE = (19.37, 20.21)  # generic: no pixel centre on the outline's vertices
RADIUS = 13.3
N_OUTLINE = 96  # outline polygon vertices: edges ~0.9 px


def _fine_disc(spacing: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """Disc mesh in pixel units: (V,2) points, (F,3) faces; triangles ~``spacing`` px across.

    The outline is a regular N_OUTLINE-gon on the circle; the inside is a jittered grid, so the
    Delaunay triangulation's boundary is exactly that polygon.
    """
    rng = np.random.default_rng(3)
    angle = 2 * np.pi * (np.arange(N_OUTLINE) + 0.21) / N_OUTLINE
    outline = np.stack([np.cos(angle), np.sin(angle)], 1) * RADIUS
    g = np.arange(-RADIUS, RADIUS + spacing, spacing)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + rng.uniform(-0.2, 0.2, (g.size**2, 2))
    inside = grid[np.linalg.norm(grid, axis=1) < RADIUS - 0.6 * spacing]
    points = np.concatenate([outline, inside]) + np.asarray(CENTRE)
    faces = Delaunay(points).simplices.astype(np.int64)
    # Delaunay leaves windings mixed; a mesh surface is wound consistently (a flip reads as a fold)
    d1, d2 = points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]]
    flipped = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] < 0
    faces[flipped] = faces[flipped][:, ::-1]
    return points, faces


def _outline_area() -> float:
    return 0.5 * N_OUTLINE * RADIUS**2 * math.sin(2 * math.pi / N_OUTLINE)


def _clip(points_px: torch.Tensor, depth: torch.Tensor | float) -> torch.Tensor:
    """Clip positions (V,4) of pixel positions at camera depth ``depth`` (w), perspective-free."""
    x = points_px[:, 0] / SIZE * 2 - 1
    y = 1 - points_px[:, 1] / SIZE * 2
    w = torch.as_tensor(depth, dtype=points_px.dtype).expand_as(x)
    return torch.stack([x * w, y * w, torch.zeros_like(x), w], 1)


def _backdrop(depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A square covering the whole image at ``depth``: clip (4,4) and faces (2,3)."""
    corners = torch.tensor([[-2.0, -2.0], [SIZE + 2, -2.0], [SIZE + 2, SIZE + 2], [-2.0, SIZE + 2]],
                           dtype=torch.float64)
    return _clip(corners, depth), torch.tensor([[0, 1, 2], [0, 2, 3]])


def _coverage(clip: torch.Tensor, faces: torch.Tensor, **kw: object) -> torch.Tensor:
    r = get_rasterizer("cpu").rasterize(clip, faces, (SIZE, SIZE))
    ones = torch.ones(clip.shape[-2], 1, dtype=clip.dtype)
    return antialias(interpolate(ones, r, faces), r, clip, faces, **kw)


def test_fine_disc_coverage_is_its_area() -> None:
    points, faces = _fine_disc()
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor(CENTRE, dtype=torch.float64)
    pts = (torch.as_tensor(points) - centre) * scale + centre
    cover = _coverage(_clip(pts, 2.0), torch.as_tensor(faces))
    area = _outline_area()
    assert abs(float(cover.detach().sum()) - area) < 0.01 * area
    assert float(cover.detach().min()) >= 0 and float(cover.detach().max()) <= 1
    cover.sum().backward()
    # d area / d scale = 2 area (blending each edge across both pixel pair directions doubled
    # it on slanted edges, and a single pair almost parallel to its edge added ~0.6 of it).
    assert abs(float(scale.grad) - 2 * area) < 0.05 * 2 * area


def test_walk_uses_given_twins_and_hop_limit() -> None:
    points, faces_np = _fine_disc()
    faces = torch.as_tensor(faces_np)
    clip = _clip(torch.as_tensor(points), 2.0)
    default = _coverage(clip, faces)
    assert torch.equal(_coverage(clip, faces, twins=edge_twins(faces)), default)
    # A walk that may not leave the first triangle misses crossings far from the covered pixel's
    # centre, which are mostly those past the midpoint that add coverage to the outside pixel: the
    # sum drops (the first-edge bias, in part).
    short = _coverage(clip, faces, max_hops=1)
    assert float(short.sum()) < float(default.sum()) - 0.01 * _outline_area()


def test_occluding_disc_over_a_covered_backdrop() -> None:
    # A fine disc (colour 1 + a ramp) in front of a backdrop covering every pixel (colour 0): the
    # image sum of the disc's share is its area, and pixels away from the disc's outline keep their
    # interpolated colours exactly (interior pairs are on one continuous surface).
    points, disc_faces = _fine_disc()
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor(CENTRE, dtype=torch.float64)
    pts = (torch.as_tensor(points) - centre) * scale + centre
    back_clip, back_faces = _backdrop(5.0)
    clip = torch.cat([_clip(pts, 2.0), back_clip])
    faces = torch.cat([torch.as_tensor(disc_faces), back_faces + len(points)])
    is_disc = torch.cat([torch.ones(len(points)), torch.zeros(4)]).double()
    ramp = torch.cat([torch.as_tensor(points[:, 0]) / SIZE, torch.zeros(4)])
    attrs = torch.stack([is_disc, is_disc + ramp], 1)
    r = get_rasterizer("cpu").rasterize(clip, faces, (SIZE, SIZE))
    assert bool(r.mask.all()), "the backdrop covers every pixel"
    hard = interpolate(attrs, r, faces)
    soft = antialias(hard, r, clip, faces)
    area = _outline_area()
    assert abs(float(soft[..., 0].detach().sum()) - area) < 0.01 * area
    on_disc = r.tri_id[0] < len(disc_faces)
    near_outline = _dilate(on_disc) & _dilate(~on_disc)
    away = ~near_outline
    assert away.sum() > 0.9 * SIZE * SIZE - 4 * math.pi * RADIUS
    assert torch.equal(soft[0][away].detach(), hard[0][away].detach())
    soft[..., 0].sum().backward()
    assert abs(float(scale.grad) - 2 * area) < 0.05 * 2 * area


def test_backdrop_in_front_hides_the_disc_outline() -> None:
    # The same scene with the backdrop nearer than the disc: the disc is hidden and nothing blends.
    points, disc_faces = _fine_disc()
    back_clip, back_faces = _backdrop(1.0)
    clip = torch.cat([_clip(torch.as_tensor(points), 2.0), back_clip])
    faces = torch.cat([torch.as_tensor(disc_faces), back_faces + len(points)])
    colours = torch.rand(len(clip), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = get_rasterizer("cpu").rasterize(clip, faces, (SIZE, SIZE))
    hard = interpolate(colours, r, faces)
    assert torch.equal(antialias(hard, r, clip, faces), hard)


def test_batched_images_match_single_ones() -> None:
    points, faces_np = _fine_disc()
    faces = torch.as_tensor(faces_np)
    pts = torch.as_tensor(points)
    shifted = pts + torch.tensor([3.3, -2.1], dtype=torch.float64)
    clips = torch.stack([_clip(pts, 2.0), _clip(shifted, 3.0)])
    colours = torch.rand(len(pts), 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rast = get_rasterizer("cpu")
    r = rast.rasterize(clips, faces, (SIZE, SIZE))
    batched = antialias(interpolate(colours, r, faces), r, clips, faces)
    for i in range(2):
        ri = rast.rasterize(clips[i], faces, (SIZE, SIZE))
        single = antialias(interpolate(colours, ri, faces), ri, clips[i], faces)
        torch.testing.assert_close(batched[i], single[0])


def test_skipping_equal_colour_pairs_changes_nothing() -> None:
    # Without a colour gradient the op skips pairs of equal colours (a mask's interior); values and
    # position gradients must be those of the full computation.
    points, faces_np = _fine_disc()
    faces = torch.as_tensor(faces_np)
    clip = _clip(torch.as_tensor(points), 2.0).requires_grad_(True)
    r = get_rasterizer("cpu").rasterize(clip.detach(), faces, (SIZE, SIZE))
    mask = r.mask.unsqueeze(-1).double()
    skipped = antialias(mask, r, clip, faces)
    (grad_skipped,) = torch.autograd.grad(skipped.square().sum(), clip)
    full = antialias(mask.clone().requires_grad_(True), r, clip, faces)
    (grad_full,) = torch.autograd.grad(full.square().sum(), clip)
    assert torch.equal(skipped, full)
    torch.testing.assert_close(grad_skipped, grad_full)
    assert float(grad_full.abs().sum()) > 0


def test_occlusion_grad_matches_finite_differences() -> None:
    # A triangle in front of a quad at another depth, small image, float64: the gradient through
    # the occlusion edges (and the quad's outline) w.r.t. all positions matches finite differences.
    res = (10, 12)
    pos = torch.tensor(
        [[-0.93, -0.87, 0.1, 3.0], [0.91, -0.83, 0.1, 3.0], [0.89, 0.79, 0.1, 3.0], [-0.81, 0.93, 0.1, 3.0],
         [-0.47, -0.53, 0.0, 1.3], [0.63, -0.21, 0.0, 1.5], [-0.11, 0.57, 0.0, 1.4]],
        dtype=torch.float64, requires_grad=True,
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    colours = torch.rand(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rast = get_rasterizer("cpu")

    def render(p: torch.Tensor) -> torch.Tensor:
        r = rast.rasterize(p, faces, res)
        return antialias(interpolate(colours, r, faces), r, p, faces)

    r = rast.rasterize(pos.detach(), faces, res)
    assert bool((r.tri_id == 2).any()) and bool((r.tri_id == 0).any() | (r.tri_id == 1).any())
    assert gradcheck(render, (pos,), eps=1e-6, atol=1e-5)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """Mask grown by one pixel in the four axis directions (the pairs antialiasing looks at)."""
    out = mask.clone()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out
