"""Reference attention (Animate Anyone / MIMO's ``ReferenceAttentionControl``) as diffusers attention
processors.

The reference UNet runs once on the identity image's latents; each spatial self-attention
(``...attentions.N.transformer_blocks.M.attn1``) stores its input in a shared bank ("write"). The
denoising UNet's self-attention of the same name attends over its own tokens *and* the stored
reference tokens ("read"): keys and values come from ``cat([frame tokens, reference tokens])``, the
queries from the frame only. The two UNets have the same block layout, so the processor names match;
the temporal layers' attention (``motion_modules``) is left alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Bank = dict[str, torch.Tensor]


def spatial_self_attention_names(model: Any) -> list[str]:
    """Processor names of the spatial self-attentions (not cross-attention, not temporal)."""
    return [
        n
        for n in model.attn_processors
        if ".attentions." in n and n.endswith("attn1.processor") and "motion_modules" not in n
    ]


class ReferenceAttnProcessor:
    """Self-attention that writes its input to, or reads extra keys/values from, a shared bank."""

    def __init__(self, bank: Bank, name: str, mode: str) -> None:
        if mode not in ("write", "read"):
            raise ValueError(f"mode must be write or read, got {mode!r}")
        self.bank, self.name, self.mode = bank, name, mode

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if hidden_states.dim() != 3:
            raise ValueError(
                f"reference attention expects (B, tokens, C) inputs, got {tuple(hidden_states.shape)}"
            )
        context = hidden_states
        if self.mode == "write":
            self.bank[self.name] = hidden_states
        elif self.name in self.bank:
            ref = self.bank[self.name]
            if hidden_states.shape[0] % ref.shape[0]:
                raise ValueError(
                    f"batch {hidden_states.shape[0]} is not a multiple of the reference's {ref.shape[0]}"
                )
            # (B, N, C) reference per video -> one copy per frame of that video ((B*F) rows, video-major)
            ref = ref.repeat_interleave(hidden_states.shape[0] // ref.shape[0], dim=0).to(hidden_states.dtype)
            context = torch.cat([hidden_states, ref], dim=1)
        batch, tokens, _ = hidden_states.shape
        heads = attn.heads
        q = attn.to_q(hidden_states)
        k = attn.to_k(context)
        v = attn.to_v(context)
        head_dim = q.shape[-1] // heads
        q, k, v = (x.view(batch, -1, heads, head_dim).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install(model: Any, bank: Bank, mode: str) -> list[str]:
    """Put :class:`ReferenceAttnProcessor` on ``model``'s spatial self-attentions; returns their names."""
    names = spatial_self_attention_names(model)
    processors = dict(model.attn_processors)
    for name in names:
        processors[name] = ReferenceAttnProcessor(bank, name, mode)
    model.set_attn_processor(processors)
    return names
