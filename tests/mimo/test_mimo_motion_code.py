"""The structured motion code: codes on the vertices, rasterised per frame, gradients back to them."""

from __future__ import annotations

import numpy as np
import torch

from backend.mimo import motion_code
from backend.mimo.pipeline import processing_size


def _rasterized(shot):  # type: ignore[no-untyped-def]
    """The shot's 48x64 frames at the 64-pixel processing size: the size, the body's raster, faces."""
    size = processing_size(48, 64, 64)
    raster = motion_code.rasterize_body(
        shot.posed_vertices,
        shot.faces,
        motion_code.scale_intrinsics(shot.K, (48, 64), size),
        shot.R,
        shot.t,
        size,
    )
    return size, raster, torch.as_tensor(shot.faces, dtype=torch.int64)


def test_code_maps_hold_the_codes_on_the_body_and_zero_elsewhere(shot) -> None:  # type: ignore[no-untyped-def]
    size, raster, faces = _rasterized(shot)
    constant = torch.tensor([[1.0, -2.0, 0.5]]).expand(shot.posed_vertices.shape[1], 3)
    maps = motion_code.code_maps(constant, raster, faces)
    assert maps.shape == (7, 3, *size)
    covered = raster.mask.unsqueeze(1).expand_as(maps)
    assert 200 < int(raster.mask[0].sum()) < size[0] * size[1] // 2  # the body is in view, not all of it
    # barycentrics sum to one: a constant code comes back exactly on the body, zeros elsewhere
    on_body = maps.permute(0, 2, 3, 1)[raster.mask].numpy()
    np.testing.assert_allclose(on_body, np.broadcast_to([1.0, -2.0, 0.5], on_body.shape), atol=1e-5)
    assert (maps[~covered] == 0).all()
    # the arm rises over the clip: the maps move with the pose
    assert not torch.equal(raster.mask[0], raster.mask[-1])
    # a window of frames gives the same maps as the whole clip sliced
    torch.testing.assert_close(motion_code.code_maps(constant, raster, faces, frames=slice(2, 5)), maps[2:5])


def test_motion_code_gradients_reach_the_per_vertex_codes(shot, loaded_models) -> None:  # type: ignore[no-untyped-def]
    net = loaded_models.net
    size, raster, faces = _rasterized(shot)
    codes = net.pose_guider.vertex_codes.detach().clone().requires_grad_(True)
    maps = motion_code.code_maps(codes, raster, faces, frames=slice(0, 4))
    latent = (size[0] // 8, size[1] // 8)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 13, 4, *latent), generator=generator)
    embeds = torch.randn((1, 1, 32), generator=generator)
    net.write_reference(torch.randn((1, 4, *latent), generator=generator), embeds)
    out = net(sample, torch.tensor([500]), embeds, maps)
    out.square().mean().backward()
    grad = codes.grad.abs().sum(dim=1)
    seen = torch.zeros(codes.shape[0], dtype=torch.bool)
    seen[faces[raster.tri_id[:4][raster.mask[:4]]].unique()] = True
    assert int((grad > 0).sum()) > 100  # the loss reaches many codes ...
    assert (grad[~seen] == 0).all()  # ... and only those of triangles seen in the window's frames
    assert (grad > 0).sum() <= seen.sum()
