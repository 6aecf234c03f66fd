"""The sliding-window cross-frame attention processor: what it attends to, that it reduces to plain
self-attention on identical views, that it mixes different views, and that its memory is linear in K."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from backend.generate.attention import (
    CrossFrameAttnProcessor,
    cross_frame_attention,
    install_cross_frame_attention,
    self_attention_modules,
    window_frames,
)
from backend.generate.meter import PeakBytes


def test_window_frames_hold_anchor_self_and_previous_views() -> None:
    frames = window_frames(6, window=1, anchor=0)
    assert frames.shape == (6, 3)
    assert frames.tolist() == [[0, 4, 5], [0, 1, 5], [0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]
    for i, row in enumerate(window_frames(7, window=2, anchor=3).tolist()):
        assert len(set(row)) == 4 and 3 in row and i in row
    # A window covering every view: each view sees all of them.
    assert window_frames(4, window=5).tolist() == [[0, 1, 2, 3]] * 4
    assert window_frames(1).tolist() == [[0]]
    with pytest.raises(ValueError):
        window_frames(4, anchor=4)
    with pytest.raises(ValueError):
        window_frames(4, window=-1)


def _attention(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def reference(attn: Attention, x: torch.Tensor, views: int, frames: torch.Tensor) -> torch.Tensor:
    """Cross-frame attention written out: per sample, softmax over its window's tokens."""
    groups, tokens = x.shape[0] // views, x.shape[1]
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    heads, d = attn.heads, q.shape[-1] // attn.heads
    out = torch.zeros_like(q)
    for g in range(groups):
        for i in range(views):
            b = g * views + i
            keys = torch.cat([k[g * views + j] for j in frames[i]], 0).view(-1, heads, d).transpose(0, 1)
            vals = torch.cat([v[g * views + j] for j in frames[i]], 0).view(-1, heads, d).transpose(0, 1)
            qh = q[b].view(tokens, heads, d).transpose(0, 1)
            w = torch.softmax(qh @ keys.transpose(1, 2) / d**0.5, -1)
            out[b] = (w @ vals).transpose(0, 1).reshape(tokens, heads * d)
    return attn.to_out[0](out)


@pytest.mark.parametrize(("views", "window", "anchor", "chunk"),
                         [(5, 1, 0, None), (6, 2, 3, 2), (3, 4, 1, 1)])
def test_processor_matches_the_attention_written_out(views: int, window: int, anchor: int,
                                                     chunk: int | None) -> None:
    attn = _attention()
    x = torch.randn(2 * views, 12, 16)  # two groups (classifier-free guidance halves)
    with torch.no_grad():
        got = CrossFrameAttnProcessor(views, window, anchor, chunk)(attn, x)
        want = reference(attn, x, views, window_frames(views, window, anchor))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_each_view_reads_only_its_window_and_its_own_guidance_half() -> None:
    attn, views = _attention(1), 6
    proc = CrossFrameAttnProcessor(views, window=1, anchor=0)  # view 3 sees {0, 2, 3}
    x = torch.randn(2 * views, 10, 16)
    with torch.no_grad():
        base = proc(attn, x)
        outside = x.clone()
        outside[5] += 1.0  # view 5 of the first half: not in view 3's window
        inside = x.clone()
        inside[2] += 1.0  # view 2: view 3's previous view
        moved_outside, moved_inside = proc(attn, outside), proc(attn, inside)
    assert torch.equal(moved_outside[3], base[3])
    assert (moved_inside[3] - base[3]).abs().max() > 1e-3
    # The guidance halves never mix: the second half is untouched by changes to the first.
    assert torch.equal(moved_outside[views:], base[views:])
    assert torch.equal(moved_inside[views:], base[views:])


def _unet_inputs(unet: torch.nn.Module, views: int, same: bool) -> dict:
    g = torch.Generator().manual_seed(3)
    size = unet.config.sample_size
    one = torch.randn(1, 4, size, size, generator=g)
    latents = one.expand(views, -1, -1, -1) if same else torch.randn(views, 4, size, size, generator=g)
    text = torch.randn(2, 1, 7, unet.config.cross_attention_dim, generator=g)
    text = torch.cat([text[0].expand(views, -1, -1), text[1].expand(views, -1, -1)])
    return {"sample": torch.cat([latents, latents]), "timestep": torch.tensor(500),
            "encoder_hidden_states": text}


@pytest.mark.parametrize("window", [1, 8])
def test_equals_plain_self_attention_when_every_view_is_the_same(tiny_pipe, window: int) -> None:
    unet, views = tiny_pipe.unet, 4
    inputs = _unet_inputs(unet, views, same=True)
    with torch.no_grad():
        plain = unet(**inputs).sample
        with cross_frame_attention(unet, views, window=window):
            cross = unet(**inputs).sample
    torch.testing.assert_close(cross, plain, atol=1e-5, rtol=1e-4)


def test_mixes_different_views(tiny_pipe) -> None:
    unet, views = tiny_pipe.unet, 4
    inputs = _unet_inputs(unet, views, same=False)
    with torch.no_grad():
        independent = unet(**inputs).sample
        with cross_frame_attention(unet, views, window=1):
            cross = unet(**inputs).sample
    per_view = (cross - independent).abs().flatten(1).amax(1)
    assert (per_view > 1e-3).all(), per_view


def test_installs_on_self_attention_only_and_removes(tiny_pipe) -> None:
    unet = tiny_pipe.unet
    before = dict(unet.attn_processors)
    handle = install_cross_frame_attention(unet, num_views=4)
    during = unet.attn_processors
    names = {f"{n}.processor" for n, _ in self_attention_modules(unet)}
    assert names and all(".attn1." in n for n in names)
    for name, proc in during.items():
        assert isinstance(proc, CrossFrameAttnProcessor) == (name in names), name
        if name not in names:
            assert proc is before[name]
    handle.remove()
    assert all(unet.attn_processors[n] is p for n, p in before.items())


def test_batch_must_hold_whole_view_sets() -> None:
    with pytest.raises(ValueError, match="4-view"):
        CrossFrameAttnProcessor(4)(_attention(), torch.randn(6, 5, 16))


def _peak(views: int, window: int, tokens: int = 256) -> int:
    attn = _attention(2)
    x = torch.randn(2 * views, tokens, 16)
    proc = CrossFrameAttnProcessor(views, window)
    with torch.no_grad(), PeakBytes() as meter:
        proc(attn, x)
    return meter.peak


def test_memory_per_view_does_not_grow_with_the_number_of_views() -> None:
    small, large = _peak(4, 1), _peak(16, 1)
    assert large / 16 <= 1.05 * small / 4, (small, large)
    # The meter sees quadratic growth where there is some: every view attending to all views.
    full_small, full_large = _peak(4, 16), _peak(16, 16)
    assert full_large / 16 >= 2.5 * full_small / 4, (full_small, full_large)
    # And a windowed view costs a small multiple of a plain self-attention view.
    x = torch.randn(2 * 16, 256, 16)
    with torch.no_grad(), PeakBytes() as plain:
        AttnProcessor2_0()(_attention(2), x)
    assert large <= 3 * plain.peak, (large, plain.peak)
