"""Sliding-window cross-frame self-attention for generating K consistent views in one batch.

A plain Stable Diffusion UNet denoises every image of a batch independently: K views of one body
come out as K different people. Cross-frame attention (Text2Video-Zero, En3D's multi-view stage,
marching-waifu-x) lets each view's self-attention read the keys and values of other views, so
appearance propagates between them. Attending to *all* K views costs O(K^2) memory and time; here
each view attends only to a window of frames: the anchor view (which fixes the identity, and in
image-guided generation holds the user's photo), its ``window`` previous views on the camera ring
(the neighbours it must agree with) and itself. Memory is O(K * (window + 2)).

Layout of the batch: ``G`` groups of ``K`` consecutive samples, one sample per view. With
classifier-free guidance the pipeline stacks the unconditional and the conditional batch, so
G = 2 and each half attends only within itself: the two halves are different predictions and
must not mix.

Cross-attention layers (``attn2``, text tokens) are not touched: :func:`install_cross_frame_attention`
sets this processor on self-attention modules only and gives back a handle that restores the
previous processors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


def window_frames(num_views: int, window: int = 1, anchor: int = 0) -> torch.Tensor:
    """(K, S) view indices each view attends to, S = min(K, window + 2), every row distinct.

    Row ``i`` holds the anchor, ``i`` itself and the nearest views before ``i`` on the ring
    (wrapping around: the views of a camera ring are cyclic), skipping the anchor and ``i`` so
    that every row has S different views. With ``window >= K - 2`` every view sees all views.
    """
    if num_views <= 0:
        raise ValueError(f"num_views must be positive, got {num_views}")
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    if not 0 <= anchor < num_views:
        raise ValueError(f"anchor {anchor} is not a view index (0..{num_views - 1})")
    size = min(num_views, window + 2)
    rows = []
    for i in range(num_views):
        chosen = [anchor] if anchor == i else [anchor, i]
        step = 1
        while len(chosen) < size:
            j = (i - step) % num_views
            if j not in chosen:
                chosen.append(j)
            step += 1
        rows.append(sorted(chosen))
    return torch.tensor(rows, dtype=torch.long)


class CrossFrameAttnProcessor:
    """A diffusers attention processor (the ``AttnProcessor2_0`` interface) for self-attention
    across a sliding window of views; cross-attention calls go to plain ``AttnProcessor2_0``.

    ``view_chunk`` computes that many views at a time (attention slicing over views): peak memory
    O(view_chunk * (window + 2)) instead of O(K * (window + 2)).
    """

    def __init__(self, num_views: int, window: int = 1, anchor: int = 0, view_chunk: int | None = None):
        self.num_views = int(num_views)
        self.window = int(window)
        self.anchor = int(anchor)
        self.frames = window_frames(self.num_views, self.window, self.anchor)
        if view_chunk is not None and view_chunk <= 0:
            raise ValueError("view_chunk must be positive")
        self.view_chunk = view_chunk
        self._plain = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None:  # cross-attention (text): unchanged
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None:
            # SD's self-attention never has one; a per-token mask has no meaning across views.
            raise NotImplementedError("cross-frame self-attention takes no attention mask")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        views = self.num_views
        if batch % views:
            raise ValueError(f"batch of {batch} is not a whole number of {views}-view sets")
        groups = batch // views
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        heads = attn.heads
        inner = key.shape[-1]
        head_dim = inner // heads
        # (G, K, N, heads, d): views of the projections, no copy. Gathering a window below copies
        # the keys/values once; everything else stays a view.
        query = query.view(groups, views, tokens, heads, head_dim)
        key = key.view(groups, views, tokens, heads, head_dim)
        value = value.view(groups, views, tokens, heads, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        frames = self.frames.to(hidden_states.device)
        size = frames.shape[1]
        chunk = self.view_chunk or views
        out = torch.empty_like(query)
        for start in range(0, views, chunk):
            stop = min(start + chunk, views)
            idx = frames[start:stop]  # (c, S)
            c = stop - start
            # Each view's window, the S frames' tokens side by side: (G*c, heads, S*N, d).
            k = key[:, idx].reshape(groups * c, size * tokens, heads, head_dim).transpose(1, 2)
            v = value[:, idx].reshape(groups * c, size * tokens, heads, head_dim).transpose(1, 2)
            q = query[:, start:stop].reshape(groups * c, tokens, heads, head_dim).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
            out[:, start:stop] = o.transpose(1, 2).reshape(groups, c, tokens, heads, head_dim)
            del k, v, q, o

        hidden_states = out.reshape(batch, tokens, heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def self_attention_modules(model: torch.nn.Module) -> list[tuple[str, Attention]]:
    """The self-attention modules of a UNet (``attn1`` of each transformer block), by name."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, Attention) and not module.is_cross_attention
            and name.rsplit(".", 1)[-1] == "attn1"]


@dataclass
class CrossFrameHandle:
    """What :func:`install_cross_frame_attention` changed; ``remove()`` puts it back."""

    processor: CrossFrameAttnProcessor
    previous: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, Attention] = field(default_factory=dict)

    def remove(self) -> None:
        for name, module in self.modules.items():
            module.set_processor(self.previous[name])
        self.modules.clear()
        self.previous.clear()

    def __enter__(self) -> CrossFrameHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def install_cross_frame_attention(unet: torch.nn.Module, num_views: int, window: int = 1, anchor: int = 0,
                                  view_chunk: int | None = None) -> CrossFrameHandle:
    """Set :class:`CrossFrameAttnProcessor` on every self-attention (``attn1``) module of ``unet``."""
    processor = CrossFrameAttnProcessor(num_views, window, anchor, view_chunk)
    handle = CrossFrameHandle(processor)
    targets = self_attention_modules(unet)
    if not targets:
        raise ValueError("the model has no self-attention (attn1) modules")
    for name, module in targets:
        handle.previous[name] = module.processor
        handle.modules[name] = module
        module.set_processor(processor)
    return handle


@contextmanager
def cross_frame_attention(unet: torch.nn.Module, num_views: int, window: int = 1, anchor: int = 0,
                          view_chunk: int | None = None) -> Iterator[CrossFrameHandle]:
    """:func:`install_cross_frame_attention` for the duration of a ``with`` block."""
    handle = install_cross_frame_attention(unet, num_views, window, anchor, view_chunk)
    try:
        yield handle
    finally:
        handle.remove()
