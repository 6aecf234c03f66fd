"""The fast CPU backend against the plain-PyTorch reference."""

from __future__ import annotations

import numpy as np
import torch
from meshes import uv_sphere

from backend.render import get_rasterizer, world_to_clip


def _random_soup(n_tri: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping, intersecting, randomly oriented triangles of mixed sizes (heavy overdraw)."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.tensor([0.6, 0.5, 0.5])
    centres = torch.randn(n_tri, 1, 3, generator=g) * spread + torch.tensor([0, 0, 3.0])
    sizes = torch.rand(n_tri, 1, 1, generator=g) * 0.4 + 0.02
    verts = (centres + sizes * torch.randn(n_tri, 3, 3, generator=g)).reshape(-1, 3)
    faces = torch.arange(3 * n_tri, dtype=torch.int32).reshape(n_tri, 3)
    return verts, faces


def _clip(verts: torch.Tensor, width: int, height: int) -> torch.Tensor:
    K = torch.tensor([[0.9 * width, 0.0, width / 2], [0.0, 0.9 * width, height / 2], [0.0, 0.0, 1.0]])
    return world_to_clip(verts, K, torch.eye(3), torch.zeros(3), width, height, 0.5, 10.0)


def _compare(clip: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> None:
    fast = get_rasterizer("cpu").rasterize(clip, faces, (height, width))
    ref = get_rasterizer("torch_ref").rasterize(clip, faces, (height, width))
    differ = fast.tri_id != ref.tri_id
    # Allowed differences are ties only: both triangles cover the pixel at (float32-)equal depth.
    assert differ.float().mean() < 1e-3
    if differ.any():
        assert torch.allclose(fast.depth[differ], ref.depth[differ], rtol=1e-5)
    same = ~differ & ref.mask
    assert torch.allclose(fast.bary[same], ref.bary[same], atol=1e-5)
    assert torch.allclose(fast.depth[same], ref.depth[same], rtol=1e-6)


def test_cpu_equals_reference_on_triangle_soup() -> None:
    for seed, (height, width) in enumerate([(48, 64), (37, 29), (64, 64)]):
        verts, faces = _random_soup(300, seed)
        _compare(_clip(verts, width, height), faces, height, width)


def test_cpu_equals_reference_on_closed_mesh_batch() -> None:
    verts, faces = uv_sphere(16, 24, centre=(0.0, 0.0, 3.0))
    verts = torch.as_tensor(verts, dtype=torch.float32)
    clip = torch.cat([_clip(verts, 64, 48), _clip(verts + torch.tensor([0.4, 0.2, 0.5]), 64, 48)])
    _compare(clip, torch.as_tensor(faces), 48, 64)


def test_fast_path_bary_equals_gradient_path() -> None:
    verts, faces = uv_sphere(8, 12, centre=(0.0, 0.0, 3.0))
    clip = _clip(torch.as_tensor(verts, dtype=torch.float32), 32, 32)
    rast = get_rasterizer("cpu")
    plain = rast.rasterize(clip, torch.as_tensor(faces), (32, 32))
    graded = rast.rasterize(clip.clone().requires_grad_(True), torch.as_tensor(faces), (32, 32))
    assert graded.bary.requires_grad and not plain.bary.requires_grad
    assert torch.equal(plain.tri_id, graded.tri_id)
    np.testing.assert_allclose(plain.bary.numpy(), graded.bary.detach().numpy(), atol=1e-5)
    m = plain.mask
    np.testing.assert_allclose(plain.depth[m].numpy(), graded.depth[m].detach().numpy(), rtol=1e-6)


def test_banded_threads_equal_serial() -> None:
    from backend.render.cpu_numba import NumbaRasterizer

    verts, faces = _random_soup(400, 7)
    clip = torch.cat([_clip(verts, 64, 48), _clip(verts + 0.1, 64, 48)])
    serial = NumbaRasterizer(threads=1).rasterize(clip, faces, (48, 64))
    for threads, per_thread in ((2, 1), (2, 3), (3, 5)):
        rasterizer = NumbaRasterizer(threads=threads, bands_per_thread=per_thread)
        banded = rasterizer.rasterize(clip, faces, (48, 64))
        assert torch.equal(serial.tri_id, banded.tri_id) and torch.equal(serial.bary, banded.bary)
        assert torch.equal(serial.depth, banded.depth) and torch.equal(serial.mask, banded.mask)
    assert serial.mask.any() and (~serial.mask).any()
    assert torch.equal(serial.mask, serial.tri_id >= 0)
