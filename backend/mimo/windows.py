"""Overlapping frame windows and their blend weights (the long-video scheme of MIMO / Animate Anyone).

A video longer than the motion modules' context is denoised window by window at every step; frames
that two windows share get a weighted mean of the windows' predictions. MIMO averages uniformly; we
ramp each window's weight down towards its inner ends (linear or raised-cosine), so a window's edge
frames, which see context on one side only, count least, and normalise so that every frame's weights
sum to exactly 1 (a frame covered once keeps that window's prediction unchanged).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def frame_windows(frames: int, window: int, overlap: int) -> list[range]:
    """Windows of ``window`` frames stepping by ``window - overlap`` over ``frames`` frames; the last
    one is moved back to end at the last frame (it may then share more than ``overlap`` frames).
    One window of all frames when ``frames <= window``."""
    if frames < 1:
        raise ValueError(f"need at least one frame, got {frames}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in 0..{window - 1}, got {overlap}")
    if frames <= window:
        return [range(frames)]
    stride = window - overlap
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return [range(s, s + window) for s in starts]


def _ramp(position: np.ndarray, length: int, shape: str) -> np.ndarray:
    """Weight of being ``position`` (1-based) frames into a ramp of ``length`` frames: in (0, 1)."""
    x = position / (length + 1)
    return x if shape == "linear" else 0.5 - 0.5 * np.cos(math.pi * x)


def blend_weights(frames: int, windows: list[range], overlap: int, shape: str = "linear") -> np.ndarray:
    """(len(windows), frames) float64 weights: zero outside a window, ramped over ``overlap`` frames
    at each window end that is not the video's end, normalised so that each frame's column sums to 1."""
    if shape not in ("linear", "cosine"):
        raise ValueError(f"blend shape must be linear or cosine, got {shape!r}")
    raw = np.zeros((len(windows), frames))
    for k, w in enumerate(windows):
        n = len(w)
        inside = np.ones(n)
        j = np.arange(n)
        ramp = max(overlap, 1)
        if w.start > 0:  # another window covers the frames before: fade in
            inside = np.minimum(inside, np.where(j < ramp, _ramp(j + 1.0, ramp, shape), 1.0))
        if w.stop < frames:  # fade out towards the next window
            back = n - 1 - j
            inside = np.minimum(inside, np.where(back < ramp, _ramp(back + 1.0, ramp, shape), 1.0))
        raw[k, w.start : w.stop] = inside
    total = raw.sum(axis=0)
    if (total <= 0).any():
        raise ValueError("some frame is covered by no window")
    return raw / total


def blend(
    outputs: list[torch.Tensor], windows: list[range], weights: torch.Tensor, frame_dim: int = 2
) -> torch.Tensor:
    """The whole video's prediction from per-window ones: frame f = sum over windows k of
    ``weights[k, f] * outputs[k][f - start_k]`` (``frame_dim`` indexes frames in each output)."""
    if len(outputs) != len(windows) or weights.shape[0] != len(windows):
        raise ValueError(f"{len(outputs)} outputs, {len(windows)} windows, {weights.shape[0]} weight rows")
    frames = weights.shape[1]
    shape = list(outputs[0].shape)
    shape[frame_dim] = frames
    total = outputs[0].new_zeros(shape)
    for k, (out, w) in enumerate(zip(outputs, windows, strict=True)):
        if out.shape[frame_dim] != len(w):
            raise ValueError(f"window {k} covers {len(w)} frames, its output has {out.shape[frame_dim]}")
        view = [1] * out.dim()
        view[frame_dim] = len(w)
        index = [slice(None)] * out.dim()
        index[frame_dim] = slice(w.start, w.stop)
        total[tuple(index)] += out * weights[k, w.start : w.stop].to(out.dtype).view(view)
    return total
