"""Every block of the 3DGM on the tiny config: shapes, gradients, and values where they are known."""

from __future__ import annotations

import math

import pytest
import torch

from backend.threedgm.config import TINY
from backend.threedgm.dataset import collate
from backend.threedgm.discriminator import Discriminator, r1_penalty
from backend.threedgm.generator import BodyBatch, Generator, SuperResolution
from backend.threedgm.patches import compose, part_boxes, project
from backend.threedgm.triplane import (
    Decoder,
    MappingNetwork,
    ModulatedConv,
    SynthesisNetwork,
    sample_triplane,
)
from backend.threedgm.volume import composite, ray_grid, sample_depths

G_CFG = TINY.generator


def _all_have_grad(module: torch.nn.Module) -> list[str]:
    return [
        n
        for n, p in module.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]


def test_mapping_network_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    net = MappingNetwork(G_CFG.z_dim, 16, G_CFG.w_dim, G_CFG.mapping_layers)
    w = net(torch.randn(3, G_CFG.z_dim), torch.randn(3, 16))
    assert w.shape == (3, G_CFG.w_dim) and torch.isfinite(w).all()
    w.square().mean().backward()
    assert _all_have_grad(net) == []
    # the camera conditions w
    z = torch.randn(1, G_CFG.z_dim)
    assert not torch.allclose(net(z, torch.zeros(1, 16)), net(z, torch.ones(1, 16)))


def test_modulated_conv_demodulation_ignores_style_scale() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv(4, 5, 8, activation=False)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 8)
    out = conv(x, w)
    assert out.shape == (2, 5, 6, 6)
    with torch.no_grad():  # scaling every style by 3 scales the weights by 3: demodulation undoes it
        conv.affine.weight.mul_(3)
        conv.affine.bias.mul_(3)
    torch.testing.assert_close(conv(x, w), out, rtol=1e-4, atol=1e-5)


def test_synthesis_network_planes_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    net = SynthesisNetwork(G_CFG.w_dim, G_CFG.synthesis_channels, G_CFG.plane_res, G_CFG.plane_channels)
    planes = net(torch.randn(2, G_CFG.w_dim))
    assert planes.shape == (2, 3, G_CFG.plane_channels, G_CFG.plane_res, G_CFG.plane_res)
    planes.square().mean().backward()
    assert _all_have_grad(net) == []
    with pytest.raises(ValueError, match="power of two"):
        SynthesisNetwork(8, 8, 24, 4)


def test_sample_triplane_reads_each_plane_at_its_two_coordinates() -> None:
    R = 16
    ramp = (torch.arange(R) + 0.5) / R * 2 - 1  # texel centres in [-1,1] (align_corners=False)
    planes = torch.zeros(1, 3, 2, R, R)
    planes[0, 0, 0] = ramp[None, :]  # xy plane, channel 0 = x
    planes[0, 1, 1] = ramp[:, None]  # xz plane, channel 1 = z (rows = second coordinate)
    planes[0, 2, 0] = ramp[:, None]  # zy plane, channel 0 = y
    pts = torch.tensor([[[0.3, -0.2, 0.5], [-0.6, 0.4, -0.1]]])
    feats = sample_triplane(planes, pts)
    expect = torch.stack([(pts[..., 0] + pts[..., 1]) / 3, pts[..., 2] / 3], dim=-1)
    torch.testing.assert_close(feats, expect, rtol=0, atol=1e-5)
    assert sample_triplane(planes, torch.full((1, 1, 3), 3.0)).abs().max() == 0  # outside the box: empty


def test_decoder_outputs_density_and_features_in_range() -> None:
    torch.manual_seed(0)
    dec = Decoder(G_CFG.plane_channels, G_CFG.decoder_hidden, G_CFG.feature_dim)
    raw, feats = dec(torch.randn(2, 7, G_CFG.plane_channels))
    assert raw.shape == (2, 7) and feats.shape == (2, 7, G_CFG.feature_dim)
    assert feats.min() >= -0.001 and feats.max() <= 1.001


def test_rays_go_through_pixel_centres_of_their_box() -> None:
    K = torch.tensor([[[40.0, 0, 15.0], [0, 42.0, 17.0], [0, 0, 1]]])
    angle = 0.4
    R = torch.tensor(
        [[[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]]
    )
    t = torch.tensor([[0.1, -0.2, 3.0]])
    box = torch.tensor([[4.0, 6.0, 8.0, 8.0]])
    origins, dirs = ray_grid(K, R, t, box, 4)
    assert origins.shape == dirs.shape == (1, 16, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(1, 16))
    pix = project(origins + 2.5 * dirs, K, R, t)
    c = torch.arange(4) * 2.0 + 1.0  # pixel centres of a 4-ray grid over 8 pixels
    expect = torch.stack(torch.meshgrid(6.0 + c, 4.0 + c, indexing="ij")[::-1], dim=-1).reshape(1, 16, 2)
    torch.testing.assert_close(pix, expect, rtol=0, atol=1e-4)
    # depths span the body's sphere around its root, in order; strata centres without a generator
    root = torch.tensor([[0.0, 0.0, 0.0]])
    d = sample_depths(origins, root, 1.0, 5)
    dist = origins[0, 0].norm()
    torch.testing.assert_close(d[0, 0], dist - 1 + (torch.arange(5) + 0.5) / 5 * 2)
    jittered = sample_depths(origins, root, 1.0, 5, torch.Generator().manual_seed(0))
    assert (jittered.diff(dim=-1) > 0).all() and not torch.equal(jittered, d)


def test_composite_matches_the_closed_form() -> None:
    depths = torch.tensor([[[1.0, 1.5, 2.0]]])
    sigma = torch.tensor([[[0.0, 2.0, 0.5]]])
    feats = torch.tensor([[[[1.0], [2.0], [3.0]]]])
    out, acc, depth = composite(sigma, feats, depths)
    a1 = 1 - math.exp(-2.0 * 0.5)
    a2 = 1 - math.exp(-0.5 * 0.5)
    w = [0.0, a1, (1 - a1) * a2]
    assert acc.item() == pytest.approx(sum(w), abs=1e-6)
    assert out.item() == pytest.approx(2 * w[1] + 3 * w[2], abs=1e-6)
    assert depth.item() == pytest.approx(1.5 * w[1] + 2.0 * w[2], abs=1e-6)
    _, empty, _ = composite(torch.zeros(1, 1, 3), feats, depths)
    assert empty.item() == 0


def test_compose_pastes_inside_the_box_only_and_is_consistent() -> None:
    torch.manual_seed(0)
    full = torch.rand(2, 3, 16, 16)
    box = torch.tensor([[4.0, 2.0, 8.0, 8.0], [0.0, 8.0, 8.0, 8.0]])
    # a patch that is exactly the box's content (same resolution) composes back to the same image
    same = torch.stack([full[0, :, 2:10, 4:12], full[1, :, 8:16, 0:8]])
    torch.testing.assert_close(compose(full, same, box), full, rtol=0, atol=1e-6)
    patch = torch.zeros(2, 3, 4, 4, requires_grad=True)
    out = compose(full, patch, box)
    outside = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    outside[0, :, 2:10, 4:12] = False
    outside[1, :, 8:16, 0:8] = False
    assert torch.equal(out.masked_select(outside), full.masked_select(outside))
    assert out[0, :, 6, 8].abs().max() == 0  # the box's centre is the patch's
    out.sum().backward()
    assert patch.grad is not None and patch.grad.abs().sum() > 0


def test_part_boxes_hold_the_part(data) -> None:
    b = collate([data[i] for i in range(4)])
    head = data.template.part_mask("head")
    boxes = part_boxes(b["verts"][:, head], b["K"], b["R"], b["t"], 32)
    pix = project(b["verts"][:, head], b["K"], b["R"], b["t"])
    inside = (pix >= boxes[:, None, :2] - 1e-4) & (pix <= boxes[:, None, :2] + boxes[:, None, 2:] + 1e-4)
    assert inside.all() and (boxes[:, 2] < 32).all() and (boxes[:, 2] == boxes[:, 3]).all()
    with pytest.raises(ValueError, match="unknown body part"):
        data.template.part_mask("tail")


def test_discriminator_shapes_conditioning_and_r1() -> None:
    torch.manual_seed(0)
    d = Discriminator(3, 32, TINY.discriminator)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    c = torch.randn(2, 16)
    s = d(x, c)
    assert s.shape == (2,)
    assert not torch.allclose(d(x, c), d(x, c + 1))  # projection on the camera embedding
    s.sum().backward()
    assert _all_have_grad(d) == []
    # R1 of a linear critic D(x) = <a, x> is |a|^2 for every sample
    a = torch.randn(1, 3, 4, 4)
    y = torch.randn(5, 3, 4, 4, requires_grad=True)
    assert r1_penalty((y * a).flatten(1).sum(1), [y]).item() == pytest.approx(
        a.square().sum().item(), rel=1e-5
    )
    with pytest.raises(ValueError):
        Discriminator(1, 24, TINY.discriminator)


def test_superresolution_checks_sizes() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="power of 2"):
        SuperResolution(replace(G_CFG, out_res=40))


def test_generator_end_to_end_shapes_and_gradients(data) -> None:
    torch.manual_seed(0)
    t = data.template
    G = Generator(G_CFG, t.weights, t.part_labels, t.part_names)
    b = collate([data[i] for i in range(2)])
    body = BodyBatch(b["verts"], b["transforms"], b["root"])
    z = torch.randn(2, G_CFG.z_dim)
    out = G(z, b["cond"], b["K"], b["R"], b["t"], body, generator=torch.Generator().manual_seed(1))
    S, r = G_CFG.out_res, G_CFG.volume_res
    assert out["image"].shape == (2, 3, S, S) and out["mask"].shape == (2, 1, S, S)
    assert out["raw"].shape == (2, 3, r, r) and out["depth"].shape == (2, 1, r, r)
    assert out["boxes"].shape == (2, len(G_CFG.patches), 4)
    assert out["mask"].min() >= 0 and out["mask"].max() <= 1
    # the opacity lies on the body: inside its mask more than outside
    m = b["mask"] > 0.5
    assert out["mask"][m].mean() > 2 * out["mask"][~m].mean()
    (out["image"].square().mean() + out["mask"].mean()).backward()
    assert _all_have_grad(G) == []
    # evaluation (no generator: strata centres) is deterministic
    with torch.no_grad():
        a = G(z, b["cond"], b["K"], b["R"], b["t"], body)["image"]
        c = G(z, b["cond"], b["K"], b["R"], b["t"], body)["image"]
    assert torch.equal(a, c)
    with pytest.raises(ValueError, match="not a body part"):
        from dataclasses import replace

        Generator(replace(G_CFG, patches=(("wing", 8),)), t.weights, t.part_labels, t.part_names)
