"""The over operator: the character layer over the scene layer darkened by the shadow.

``composite = C + (1 - a) * scene * (1 - s)`` with ``C`` the character's colour premultiplied by
its visible coverage ``a`` and ``s`` the shadow's darkening; the character layer is written with
straight alpha (``C / a``, as PNG and Blender's sequencer expect), the occlusion matte is the part
of the character's coverage the scene hides (``cover - a``). Work happens in the windows the
character and its shadow cover; the rest of the frame is the scene's pixels, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.footage.render_layer import CharacterFrame


@dataclass(frozen=True)
class Layers:
    """One frame's outputs, uint8, full frame."""

    composite: np.ndarray  # (H, W, 3)
    character: np.ndarray  # (H, W, 4) straight alpha
    shadow: np.ndarray  # (H, W) darkening
    occlusion: np.ndarray  # (H, W) matte of the scene in front of the character


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def composite_frame(scene: np.ndarray, character: CharacterFrame | None,
                    shadow: tuple[tuple[int, int, int, int], np.ndarray] | None) -> Layers:
    H, W = scene.shape[:2]
    out = scene.copy()
    char_rgba = np.zeros((H, W, 4), np.uint8)
    shadow_u8 = np.zeros((H, W), np.uint8)
    occlusion = np.zeros((H, W), np.uint8)
    if shadow is not None:
        (x0, y0, x1, y1), dark = shadow
        shadow_u8[y0:y1, x0:x1] = _u8(dark)
        out[y0:y1, x0:x1] = _u8(scene[y0:y1, x0:x1].astype(np.float32) / 255.0 * (1.0 - dark[..., None]))
    if character is not None:
        x0, y0, x1, y1 = character.window
        a = character.alpha
        base = out[y0:y1, x0:x1].astype(np.float32) / 255.0
        out[y0:y1, x0:x1] = _u8(character.premult + (1.0 - a[..., None]) * base)
        with np.errstate(invalid="ignore", divide="ignore"):
            straight = np.where(a[..., None] > 0, character.premult / a[..., None], 0.0)
        char_rgba[y0:y1, x0:x1, :3] = _u8(straight)
        char_rgba[y0:y1, x0:x1, 3] = _u8(a)
        occlusion[y0:y1, x0:x1] = _u8(character.cover - a)
    return Layers(out, char_rgba, shadow_u8, occlusion)
