"""Gradients of interpolate / texture / antialias against finite differences (float64 gradcheck)."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from backend.render import antialias, get_rasterizer, interpolate, texture

RES = (9, 11)
FACES = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 2]], dtype=torch.int32)


def _clip_verts() -> torch.Tensor:
    # Generic positions (no pixel centre within 1e-3 of an edge) with varied w: perspective matters.
    return torch.tensor(
        [[-0.83, -0.71, 0.1, 1.0], [0.97, -0.93, 0.3, 1.3], [1.05, 1.31, 0.5, 1.6],
         [-0.77, 0.69, 0.2, 1.1], [1.9, -0.2, 0.4, 1.45]],
        dtype=torch.float64,
    )


def test_interpolate_grad_wrt_attributes(backend_name: str) -> None:
    r = get_rasterizer(backend_name).rasterize(_clip_verts(), FACES, RES)
    attr = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a: interpolate(a, r, FACES), (attr,))


def test_interpolate_grad_wrt_positions(backend_name: str) -> None:
    rast = get_rasterizer(backend_name)
    attr = torch.randn(5, 2, dtype=torch.float64)
    clip = _clip_verts().requires_grad_(True)

    def render(pos: torch.Tensor) -> torch.Tensor:
        r = rast.rasterize(pos, FACES, RES)
        return torch.cat([interpolate(attr, r, FACES), r.depth.nan_to_num(posinf=0.0).unsqueeze(-1)], -1)

    base = rast.rasterize(clip, FACES, RES)
    assert base.mask.sum() > 20 and base.bary.requires_grad
    assert gradcheck(render, (clip,), eps=1e-6, atol=1e-5)


def test_texture_grad_wrt_texture_and_uv() -> None:
    tex = torch.randn(1, 5, 6, 3, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(1, 4, 3, 2, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert gradcheck(lambda t, c: texture(t, c), (tex, uv))
    assert gradcheck(lambda t, c: texture(t, c, filter="nearest"), (tex, uv.detach()))


def test_textured_render_grad_wrt_positions_and_texture(backend_name: str) -> None:
    rast = get_rasterizer(backend_name)
    uv_attr = torch.rand(5, 2, dtype=torch.float64)
    tex = torch.randn(7, 8, 3, dtype=torch.float64, requires_grad=True)
    clip = _clip_verts().requires_grad_(True)

    def render(pos: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        r = rast.rasterize(pos, FACES, RES)
        return texture(image, interpolate(uv_attr, r, FACES)) * r.mask.unsqueeze(-1)

    assert gradcheck(render, (clip, tex), eps=1e-6, atol=1e-5)


def test_antialias_grad_matches_finite_differences(backend_name: str) -> None:
    rast = get_rasterizer(backend_name)
    colours = torch.rand(5, 3, dtype=torch.float64)
    clip = _clip_verts().requires_grad_(True)

    def render(pos: torch.Tensor) -> torch.Tensor:
        r = rast.rasterize(pos, FACES, RES)
        return antialias(interpolate(colours, r, FACES), r, pos, FACES)

    assert gradcheck(render, (clip,), eps=1e-6, atol=1e-5)


def test_antialias_silhouette_gradient_is_edge_length() -> None:
    # A square covering columns ~[8.3, 24.3) px; moving its right edge by d pixels adds ~rows * d of
    # coverage, which the hard mask cannot see but the antialiased one must.
    height, width = 20, 32
    x_left, x_right, y_top, y_bottom = 8.3, 24.3, 4.2, 15.6

    def ndc_x(px: float) -> float:
        return px / width * 2 - 1

    def ndc_y(py: float) -> float:
        return 1 - py / height * 2

    clip = torch.tensor(
        [[ndc_x(x_left), ndc_y(y_top), 0, 1], [ndc_x(x_right), ndc_y(y_top), 0, 1],
         [ndc_x(x_right), ndc_y(y_bottom), 0, 1], [ndc_x(x_left), ndc_y(y_bottom), 0, 1]],
        dtype=torch.float64, requires_grad=True,
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    r = get_rasterizer("cpu").rasterize(clip, faces, (height, width))
    ones = torch.ones(4, 1, dtype=torch.float64)
    coverage = antialias(interpolate(ones, r, faces), r, clip, faces)
    area = (x_right - x_left) * (y_bottom - y_top)
    assert abs(float(coverage.detach().sum()) - area) < 0.05 * area, "antialiased coverage ~ true area"
    coverage.sum().backward()
    d_dpx = clip.grad[[1, 2], 0].sum() * (2 / width)  # d coverage / d (right edge x in pixels)
    rows = sum(1 for y in range(height) if y_top <= y + 0.5 < y_bottom)
    # Tolerance of one row: at a corner, a pixel pair may exit through the quad's diagonal instead of
    # the true silhouette edge (a known approximation of pairwise antialiasing, as in nvdiffrast).
    assert abs(float(d_dpx) - rows) < 1.0
    d_left = clip.grad[[0, 3], 0].sum() * (2 / width)
    assert abs(float(d_left) + rows) < 1.0, "moving the left edge right shrinks the coverage"
    assert float(clip.grad[:, 1].abs().max()) > 0, "top/bottom edges get vertical gradients"
