"""Per-view colour correction and robust fusion (backend/avatar/texture/colour.py): known per-view
gains/offsets are recovered, and one view with another colour is down-weighted."""

from __future__ import annotations

import numpy as np
import torch

from backend.avatar.texture.colour import ColourConfig, fuse_colours


def _observations(n_views: int = 6, per_view: int = 6000, seed: int = 0):
    """Every view sees random points of one smooth texture (each point seen by several views)."""
    rng = np.random.default_rng(seed)
    uv = rng.random((per_view, 2))

    def albedo(p: np.ndarray) -> np.ndarray:
        return np.stack(
            [0.2 + 0.6 * p[:, 0], 0.3 + 0.4 * np.sin(3 * p[:, 1]) ** 2, 0.8 - 0.5 * p[:, 0] * p[:, 1]], 1
        )

    uvs, rgbs, views = [], [], []
    for k in range(n_views):
        jitter = uv + rng.normal(0, 0.002, uv.shape)  # a little misregistration per view
        uvs.append(np.clip(jitter, 0, 1 - 1e-6))
        rgbs.append(albedo(uv))
        views.append(np.full(per_view, k))
    return rng, np.concatenate(uvs), np.concatenate(rgbs), np.concatenate(views), albedo(uv)


def test_colour_correction_recovers_known_gain_and_offset() -> None:
    rng, uv, rgb, view, _ = _observations()
    gain = rng.uniform(0.8, 1.2, (6, 3))
    offset = rng.uniform(-0.05, 0.05, (6, 3))
    gain[0], offset[0] = 1.0, 0.0
    shifted = rgb * gain[view] + offset[view]  # stays inside [0,1] for these ranges
    assert shifted.min() >= 0 and shifted.max() <= 1
    fusion = fuse_colours(torch.as_tensor(uv), torch.as_tensor(shifted, dtype=torch.float32),
                          torch.ones(len(uv)), torch.as_tensor(view), 6, 256,
                          ColourConfig(rounds=4, ridge=1e-4))
    # The fit maps every view onto the consensus: corrections are the inverse shifts up to one
    # common affine map (fixed so that the mean correction is the identity).
    eff_gain = fusion.gain * gain  # (V,3): a_k g_k must be the same for every view
    eff_off = fusion.gain * offset + fusion.offset
    assert np.abs(eff_gain - eff_gain.mean(0)).max() < 0.02, eff_gain
    assert np.abs(eff_off - eff_off.mean(0)).max() < 0.01, eff_off
    # The corrected colours agree with each other far better than the raw ones.
    raw_spread = np.abs(shifted.reshape(6, -1, 3) - shifted.reshape(6, -1, 3).mean(0)).mean()
    cor = fusion.rgb.numpy().reshape(6, -1, 3)
    assert np.abs(cor - cor.mean(0)).mean() < 0.15 * raw_spread


def test_an_inconsistent_view_is_down_weighted() -> None:
    _, uv, rgb, view, _ = _observations()
    bad = rgb.copy()
    sel = (view == 3) & (uv[:, 0] < 0.6)  # most of view 3 shows another colour
    bad[sel] = bad[sel][:, [1, 2, 0]]
    fusion = fuse_colours(torch.as_tensor(uv), torch.as_tensor(bad, dtype=torch.float32),
                          torch.ones(len(uv)), torch.as_tensor(view), 6, 256, ColourConfig())
    others = np.delete(fusion.view_weight, 3)
    assert fusion.view_weight[3] < 0.5 * others.min(), fusion.view_weight
    w = fusion.weight.numpy()
    assert w[sel].mean() < 0.2 * w[view != 3].mean()
    # Fusing with the weights gives back the true colour where view 3 disagreed; a plain mean does
    # not (the observations are the same points in every view, in order).
    pts = np.arange(6000)[(uv[:6000, 0] < 0.6)][:500]
    stack = fusion.rgb.numpy().reshape(6, -1, 3)[:, pts]
    wk = w.reshape(6, -1)[:, pts]
    fused = (stack * wk[..., None]).sum(0) / wk.sum(0)[:, None]
    plain = bad.reshape(6, -1, 3)[:, pts].mean(0)
    truth = rgb.reshape(6, -1, 3)[0, pts]
    assert np.abs(fused - truth).mean() < 0.3 * np.abs(plain - truth).mean()


def test_a_mesh_no_view_sees_is_a_clear_error() -> None:
    """A collapsed sculpt (every vertex at one point) covers no pixel: one error that says so."""
    import pytest

    from backend.avatar.eval.synthetic import look_at_camera
    from backend.avatar.io.views import View
    from backend.avatar.texture.optimise import TextureConfig, optimise_texture

    cam = look_at_camera(np.array([0.0, 0.0, 3.0]), np.zeros(3), 32, 32, 40.0)
    rgba = np.ones((32, 32, 4), np.float32)
    vertices = np.zeros((4, 3))
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]])
    with pytest.raises(ValueError, match="no pixel of the 1 training views sees the mesh"):
        optimise_texture(vertices, faces, uvs, [View("v0", cam, rgba)], TextureConfig(texture_size=16))


def test_a_distrusted_view_paints_only_what_no_other_view_sees() -> None:
    """A view the geometry distrusts (prior 0.2: its silhouette was warped) gets no weight where the
    others see the surface, and keeps its weight where it alone does (else holes)."""
    _, uv, rgb, view, _ = _observations()
    alone = (view == 3) & (uv[:, 0] > 0.8)
    others_there = (view != 3) & (uv[:, 0] > 0.75)
    keep = ~others_there  # nobody but view 3 sees u > 0.75 (with a margin for the coarse texels)
    uv_t, rgb_t, view_t = uv[keep], rgb[keep], view[keep]
    prior = np.ones(6)
    prior[3] = 0.2
    fusion = fuse_colours(torch.as_tensor(uv_t), torch.as_tensor(rgb_t, dtype=torch.float32),
                          torch.ones(len(uv_t)), torch.as_tensor(view_t), 6, 256, ColourConfig(), prior)
    w = fusion.weight.numpy()
    mine_alone = alone[keep]
    mine_shared = (view_t == 3) & (uv_t[:, 0] < 0.7)
    assert fusion.view_weight[3] < 0.3 and np.delete(fusion.view_weight, 3).min() > 0.8, fusion.view_weight
    # (a few jittered points land in a coarse texel no other view's point reached: those stay)
    assert (w[mine_shared] == 0).mean() > 0.98
    assert w[mine_alone].min() > 0.05
    # with the same prior but the rule off, the shared pixels keep a weight: the rule does the work
    lax = fuse_colours(torch.as_tensor(uv_t), torch.as_tensor(rgb_t, dtype=torch.float32),
                       torch.ones(len(uv_t)), torch.as_tensor(view_t), 6, 256,
                       ColourConfig(exclude_below=0.0), prior)
    assert lax.weight.numpy()[mine_shared].min() > 0.05
