"""Start-up self-check of a rasterizer against the CPU reference on a small scene.

``get_rasterizer("auto")`` takes a GPU backend (nvdiffrast, pytorch3d) only when this check passes in
the running process: those backends are written against their documented APIs and cannot be tested
on a machine without CUDA, so a wrong row order, a transposed image, a broken depth test or a
backend that fails to start must cost a warning and a CPU render, not wrong images.

The scene is small (two 52x36 images, 55 triangles) and asymmetric: a bumpy grid in front of a large
triangle, two triangles that cut through each other in depth, different vertices per image. A
backend passes when its triangle ids equal ``torch_ref``'s (the specification) at all but a few
pixels (ties: pixel centres on a shared edge may go either way).
"""

from __future__ import annotations

import torch

from backend.render.api import Rasterizer

RESOLUTION = (36, 52)  # (H, W): not square, so a transposed image cannot pass
MAX_MISMATCH = 0.005  # fraction of pixels allowed to differ (edge ties)
_NEAR, _FAR = 0.5, 10.0


def _clip(points: torch.Tensor) -> torch.Tensor:
    """Camera points (x right, y up, z = depth > 0) to clip space (w = depth, z/w increasing)."""
    a = (_FAR + _NEAR) / (_FAR - _NEAR)
    b = -2.0 * _FAR * _NEAR / (_FAR - _NEAR)
    z = points[..., 2]
    return torch.stack([points[..., 0], points[..., 1], a * z + b, z], -1)


def self_check_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """(2,V,4) float32 clip positions and (F,3) int64 faces of the check scene."""
    n = 5
    s = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    gy, gx = torch.meshgrid(s, s, indexing="ij")
    depth = 2.4 + 0.35 * torch.sin(5.3 * gx + 1.1) * torch.cos(4.1 * gy)  # bumpy, ~2..2.8
    grid = torch.stack([(-0.83 + 1.31 * gx) * depth, (-0.71 + 1.17 * gy) * depth, depth], -1).reshape(-1, 3)
    faces = []
    for r in range(n):
        for c in range(n):
            i = r * (n + 1) + c
            faces += [(i, i + 1, i + n + 2), (i, i + n + 2, i + n + 1)]
    base = grid.shape[0]
    extra = torch.tensor([
        # a large triangle behind everything, partly hidden by the grid
        [-3.9, -3.3, 4.0], [3.7, -2.9, 4.0], [0.3, 3.6, 4.0],
        # two triangles cutting through each other in depth, right of the grid
        [0.55, -0.8, 1.5], [0.95, -0.75, 3.5], [0.75, 0.2, 2.5],
        [0.5, -0.3, 3.3], [1.0, -0.35, 1.7], [0.8, -0.95, 2.6],
    ], dtype=torch.float64)
    extra[3:, :2] *= extra[3:, 2:3]  # those corners were given in NDC; scale them by their depth
    faces += [(base, base + 1, base + 2), (base + 3, base + 4, base + 5), (base + 6, base + 7, base + 8)]
    first = torch.cat([grid, extra])
    second = first.clone()
    second[:, 0] += 0.21 * second[:, 2]  # the whole scene moved right by 0.21 in NDC
    second[base:base + 3, 2] = 2.2  # and the large triangle now in front of part of the grid
    verts = _clip(torch.stack([first, second])).to(torch.float32)
    return verts, torch.tensor(faces, dtype=torch.int64)


def self_check(rasterizer: Rasterizer, reference: Rasterizer | None = None) -> str | None:
    """``None`` when ``rasterizer`` agrees with the CPU reference on the check scene, else why not."""
    if reference is None:
        from backend.render.torch_ref import TorchRefRasterizer

        reference = TorchRefRasterizer()
    verts, faces = self_check_scene()
    expected = reference.rasterize(verts, faces, RESOLUTION).tri_id.cpu()
    try:
        got = rasterizer.rasterize(verts, faces, RESOLUTION).tri_id
    except Exception as exc:  # any failure to run is a failed check, with its message
        return f"rasterize raised {type(exc).__name__}: {exc}"
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return f"triangle ids of shape {shape}, expected {tuple(expected.shape)}"
    got = got.detach().cpu().to(torch.int64)
    if int(got.min()) < -1 or int(got.max()) >= faces.shape[0]:
        return f"triangle ids outside [-1, {faces.shape[0] - 1}]"
    differ = int((got != expected).sum())
    allowed = int(MAX_MISMATCH * expected.numel())
    if differ > allowed:
        return (f"{differ} of {expected.numel()} pixels see another triangle than the CPU reference "
                f"(at most {allowed} may differ)")
    return None
