"""Keep the body's hand geometry where the tet grid cannot resolve a hand.

A hand is ~2.5 cm thick with fingers ~1.5 cm wide; at grid 64 the cells are ~2.9 cm, so the sculpt
can only make a mitten about a cell thick (measured: 1.7-2x the true thickness) and the texture
then takes the colours of whatever lies behind the mitten's extra volume in the views (a skirt,
trousers). Views that cannot resolve the hand cannot correct the body's hand either, so where the
grid is too coarse the sculpted surface near each hand is moved onto the body's hand: every
sculpt vertex within ``reach`` of the body's hand surface goes to its closest point there, fully
past the wrist and blended to nothing over ``blend`` of the hand's length up the forearm (so the
wrist stays continuous). Only vertex positions change: the mesh stays watertight, with the same
faces. Only vertices whose closest body point is on the hand move (a skirt beside a hand keeps
its own shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.mesh.closest import MeshQuery

HAND_PARTS = {"left": "hand_l", "right": "hand_r"}


@dataclass
class HandConfig:
    mode: str = "auto"  # "auto": when cells exceed max_cell_m | "body" (always) | "sculpt" (never)
    max_cell_m: float = 0.012  # a grid finer than this resolves a hand (about half its thickness)
    # Vertices closest to the body's hand and within this many cells of it are moved (the blob around
    # a hand reaches 1.2-2 cells out: at 0.8 a 1.44x-thick shell was left on one hand).
    reach_cells: float = 2.5
    min_reach_m: float = 0.015
    blend: float = 0.3  # fraction of the hand's length over which the weight ramps up from the wrist


def hand_frames(body: BodyMesh) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per hand: wrist position, unit wrist->fingertip axis, hand length (m)."""
    ji = {n: i for i, n in enumerate(body.joint_names)}
    out = {}
    for side, part in HAND_PARTS.items():
        if part not in body.part_names or f"{side}_wrist" not in ji:
            continue
        wrist = np.asarray(body.joints[ji[f"{side}_wrist"]], float)
        pts = body.vertices[body.part_labels == body.part_names.index(part)]
        if len(pts) == 0:
            continue
        tip = pts[np.argmax(np.linalg.norm(pts - wrist, axis=1))]
        length = float(np.linalg.norm(tip - wrist))
        out[side] = (wrist, (tip - wrist) / max(length, 1e-9), length)
    return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def keep_body_hands(
    vertices: np.ndarray, faces: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> tuple[np.ndarray, dict[str, int]]:
    """Vertices with the hands moved onto the body's hands (module docstring); and how many moved
    per hand. Returns the input unchanged when the mode says the grid resolves hands."""
    out, moved, _ = keep_body_hands_weighted(vertices, faces, body, cell_size, config)
    return out, moved


def keep_body_hands_weighted(
    vertices: np.ndarray, faces: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """:func:`keep_body_hands` plus each vertex's weight (V,) in [0, 1]: how far it was moved onto
    the body's hand (1: wholly). The surface refinement (refine.py) leaves those vertices where the
    body put them, so the hands rule holds after it too."""
    weight = np.zeros(len(vertices))
    if config.mode == "sculpt" or (config.mode == "auto" and cell_size <= config.max_cell_m):
        return vertices, {}, weight
    if config.mode not in ("auto", "body"):
        raise ValueError(f"hand mode must be auto|body|sculpt, got {config.mode!r}")
    out = np.array(vertices, dtype=np.float64, copy=True)
    reach = max(config.min_reach_m, config.reach_cells * cell_size)
    moved: dict[str, int] = {}
    whole_body = MeshQuery(body.vertices, body.faces)
    for side, (wrist, axis, length) in hand_frames(body).items():
        part = body.part_names.index(HAND_PARTS[side])
        hand_v = body.part_labels == part
        hand_f = body.faces[hand_v[body.faces].all(1)]
        if len(hand_f) == 0:
            continue
        t = (vertices - wrist) @ axis
        dist = np.linalg.norm(vertices - wrist, axis=1)
        near = (t > -config.blend * length) & (dist < 1.5 * length + reach)
        idx = np.nonzero(near)[0]
        if len(idx) == 0:
            continue
        # Only vertices whose closest body point is on this hand: a skirt or thigh beside the hand
        # is closer to its own body part and stays where the views put it.
        whole = whole_body.closest(vertices[idx])
        corner = body.faces[whole.face, np.argmax(whole.bary, axis=1)]
        idx = idx[body.part_labels[corner] == part]
        if len(idx) == 0:
            continue
        q = MeshQuery(body.vertices, hand_f).closest(vertices[idx])
        w = _smoothstep((t[idx] + config.blend * length) / max(config.blend * length, 1e-9))
        w = w * (1 - _smoothstep((q.distance - 0.5 * reach) / (0.5 * reach)))
        out[idx] += w[:, None] * (q.point - vertices[idx])
        weight[idx] = np.maximum(weight[idx], w)
        moved[side] = int((w > 0.5).sum())
    return out, moved, weight
