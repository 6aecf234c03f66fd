"""Typed configuration of the neural route: what the footage job passes to :func:`insert_neural`."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULERS = ("ddim", "dpm++")
BLENDS = ("linear", "cosine")


class NeuralCancelled(Exception):
    """``cancelled()`` returned True between two denoising steps; nothing was returned."""


@dataclass(frozen=True)
class NeuralConfig:
    """Inference settings. ``size``: frames are processed at this many pixels on the long side
    (rounded to a multiple of 8), the result is resized back to the footage's size. ``window`` frames
    are denoised together (the motion modules' context), consecutive windows share ``overlap``
    frames, blended at the seams with ``blend`` ramps. ``guidance``: classifier-free guidance on the
    identity (1.0 = off). ``device``/``dtype``: None = CUDA in float16 when present, else CPU float32.
    """

    steps: int = 25
    seed: int = 0
    window: int = 16
    overlap: int = 4
    guidance: float = 3.5
    scheduler: str = "ddim"
    size: int = 512
    blend: str = "linear"
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in 1..1000, got {self.steps}")
        if self.window < 1:
            raise ValueError(f"window must be at least 1 frame, got {self.window}")
        if not 0 <= self.overlap < self.window:
            raise ValueError(f"overlap must be in 0..window-1 ({self.window - 1}), got {self.overlap}")
        if not self.guidance >= 1.0:
            raise ValueError(f"guidance must be >= 1.0 (1.0 = no guidance), got {self.guidance}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if not 64 <= self.size <= 4096:
            raise ValueError(f"size must be in 64..4096 pixels, got {self.size}")
