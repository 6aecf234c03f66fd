"""Keep the body's hand geometry where the tet grid cannot resolve a hand.

A hand is ~2.5 cm thick with fingers ~1.5 cm wide; at grid 64 the cells are ~2.9 cm, so the sculpt
can only make a mitten about a cell thick (measured: 1.7-2x the true thickness) and the texture
then takes the colours of whatever lies behind the mitten's extra volume in the views (a skirt,
trousers). Views that cannot resolve the hand cannot correct the body's hand either, so where the
grid is too coarse the body's hand is kept.

Two ways, the second built on the first:

- :func:`keep_body_hands_weighted` (projection): every sculpt vertex within ``reach`` of the body's
  hand surface goes to its closest point there, fully past the wrist and blended to nothing over
  ``blend`` of the hand's length up the forearm. Only vertices whose closest body point is on the
  hand move (a skirt beside a hand keeps its own shape); the faces are unchanged, so the mesh stays
  watertight, but the mitten keeps its topology: its faces span the gaps between the fingers as
  webs, surface where the views show background (14-20 % of the held-out error inside the masks
  on the bench, docs/benchmarks.md).
- :func:`replace_body_hands` (what the pipeline uses): the projection, then the sculpt's faces of
  the hand region (a corner the projection moved fully: past the wrist, within reach) are removed
  and the body's own hand faces added, with a stub of the body's forearm reaching a cell past the
  sculpt's cut rim, so the two surfaces overlap there and no gap opens between them at any view.
  The result is a union of components, open at the cut rim and at the stub's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.mesh.closest import MeshQuery

HAND_PARTS = {"left": "hand_l", "right": "hand_r"}
FOREARM_PARTS = {"left": "lower_arm_l", "right": "lower_arm_r"}


@dataclass
class HandConfig:
    mode: str = "auto"  # "auto": when cells exceed max_cell_m | "body" (always) | "sculpt" (never)
    max_cell_m: float = 0.012  # a grid finer than this resolves a hand (about half its thickness)
    # Vertices closest to the body's hand and within this many cells of it are moved (the blob around
    # a hand reaches 1.2-2 cells out: at 0.8 a 1.44x-thick shell was left on one hand).
    reach_cells: float = 2.5
    min_reach_m: float = 0.015
    blend: float = 0.3  # fraction of the hand's length over which the weight ramps up from the wrist
    # replace_body_hands: how far (cells) the body's forearm stub reaches under the sculpt past its
    # cut rim; at least one cell, so the rim's faces (a cell long) lie over the stub.
    overlap_cells: float = 1.5


@dataclass
class HandSwap:
    """:func:`replace_body_hands`' mesh: the sculpt's kept faces first, then the body's hand faces."""

    vertices: np.ndarray  # (N,3)
    faces: np.ndarray  # (F,3)
    weight: np.ndarray  # (N,) 1 for the body's vertices, the projection's blend weight elsewhere
    from_body: np.ndarray  # (N,) bool: the vertex is a body vertex (hand or forearm stub)
    moved: dict[str, int]  # per hand: sculpt vertices the projection moved (weight > 0.5)
    removed_faces: dict[str, int]  # per hand: the sculpt's faces replaced
    body_faces: dict[str, int]  # per hand: the body's faces added (hand + forearm stub)


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


def _grid_resolves_hands(cell_size: float, config: HandConfig) -> bool:
    if config.mode not in ("auto", "body", "sculpt"):
        raise ValueError(f"hand mode must be auto|body|sculpt, got {config.mode!r}")
    return config.mode == "sculpt" or (config.mode == "auto" and cell_size <= config.max_cell_m)


@dataclass
class _HandMove:
    side: str
    idx: np.ndarray  # sculpt vertices whose closest body point is on this hand, near it
    weight: np.ndarray  # (len(idx),) blend weight of the move
    target: np.ndarray  # (len(idx),3) closest point on the body's hand
    t: np.ndarray  # (V,) every sculpt vertex's position along the wrist->tip axis (m)


def _hand_moves(
    vertices: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> Iterator[_HandMove]:
    """Per hand, the projection's moves (module docstring)."""
    reach = max(config.min_reach_m, config.reach_cells * cell_size)
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
        yield _HandMove(side, idx, w, q.point, t)


def _project(vertices: np.ndarray, moves: list[_HandMove]) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """The projection applied: moved vertices, the count per hand moved past half way, and each
    vertex's weight (V,)."""
    out = vertices.copy()
    weight = np.zeros(len(vertices))
    moved: dict[str, int] = {}
    for m in moves:
        out[m.idx] += m.weight[:, None] * (m.target - vertices[m.idx])
        weight[m.idx] = np.maximum(weight[m.idx], m.weight)
        moved[m.side] = int((m.weight > 0.5).sum())
    return out, moved, weight


def keep_body_hands(
    vertices: np.ndarray, faces: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> tuple[np.ndarray, dict[str, int]]:
    """Vertices with the hands moved onto the body's hands (the projection, module docstring); and
    how many moved per hand. Returns the input unchanged when the mode says the grid resolves hands."""
    out, moved, _ = keep_body_hands_weighted(vertices, faces, body, cell_size, config)
    return out, moved


def keep_body_hands_weighted(
    vertices: np.ndarray, faces: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """:func:`keep_body_hands` plus each vertex's weight (V,) in [0, 1]: how far it was moved onto
    the body's hand (1: wholly). The surface refinement (refine.py) leaves those vertices where the
    body put them, so the hands rule holds after it too."""
    if _grid_resolves_hands(cell_size, config):
        return vertices, {}, np.zeros(len(vertices))
    v = np.asarray(vertices, dtype=np.float64)
    return _project(v, list(_hand_moves(v, body, cell_size, config)))


def replace_body_hands(
    vertices: np.ndarray, faces: np.ndarray, body: BodyMesh, cell_size: float, config: HandConfig
) -> HandSwap:
    """The sculpt with its hands replaced by the body's hand meshes (module docstring).

    Per hand whose region the projection reached: the sculpt's faces with a corner past the wrist
    (the projection's axial weight 1) and moved at all (within ``reach`` of the body's hand) are
    removed, so no mitten face can span a finger gap; the body's faces of that hand are added, plus
    the faces of its forearm from ``overlap_cells`` cells before the lowest vertex of the cut rim on
    (the stub the rim lies over: the sculpt's forearm is the views' and may be fatter or thinner than
    the body's, and either way one of the two surfaces covers the other at the rim). The remaining
    sculpt vertices keep the projection's moves and weights; the body's vertices get weight 1, so
    the surface refinement leaves them where the body put them. Vertices no face uses are dropped.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if _grid_resolves_hands(cell_size, config):
        return HandSwap(v, f, np.zeros(len(v)), np.zeros(len(v), bool), {}, {}, {})
    moves = list(_hand_moves(v, body, cell_size, config))
    out, moved, weight = _project(v, moves)
    keep_face = np.ones(len(f), bool)
    body_face = np.zeros(len(body.faces), bool)
    removed: dict[str, int] = {}
    added: dict[str, int] = {}
    frames = hand_frames(body)
    for m in moves:
        cut = np.zeros(len(v), bool)
        cut[m.idx[(m.t[m.idx] >= 0) & (m.weight > 0)]] = True
        drop = cut[f].any(1) & keep_face
        if not drop.any():
            continue  # no sculpted hand here (the views lost it): nothing to replace
        keep_face &= ~drop
        rim = np.zeros(len(v), bool)
        rim[f[drop].ravel()] = True
        rim &= ~cut  # the kept corners of the removed faces: the cut's rim
        wrist, axis, length = frames[m.side]
        lowest = float(m.t[rim].min()) if rim.any() else 0.0
        start = max(min(lowest, 0.0) - config.overlap_cells * cell_size, -length)
        t_body = (body.vertices - wrist) @ axis
        hand = body.part_labels == body.part_names.index(HAND_PARTS[m.side])
        stub = np.zeros(len(body.vertices), bool)
        if FOREARM_PARTS[m.side] in body.part_names:
            stub = (body.part_labels == body.part_names.index(FOREARM_PARTS[m.side])) & (t_body > start)
        mine = (hand | stub)[body.faces].all(1)
        body_face |= mine
        removed[m.side] = int(drop.sum())
        added[m.side] = int(mine.sum())
    if not added:
        return HandSwap(out, f, weight, np.zeros(len(v), bool), moved, removed, added)
    kept = f[keep_face]
    used = np.zeros(len(v), bool)
    used[kept.ravel()] = True
    new_index = np.cumsum(used) - 1
    bf = np.asarray(body.faces, dtype=np.int64)[body_face]
    body_used = np.zeros(len(body.vertices), bool)
    body_used[bf.ravel()] = True
    body_index = np.cumsum(body_used) - 1 + int(used.sum())
    n_body = int(body_used.sum())
    return HandSwap(
        vertices=np.concatenate([out[used], np.asarray(body.vertices, dtype=np.float64)[body_used]]),
        faces=np.concatenate([new_index[kept], body_index[bf]]),
        weight=np.concatenate([weight[used], np.ones(n_body)]),
        from_body=np.concatenate([np.zeros(int(used.sum()), bool), np.ones(n_body, bool)]),
        moved=moved,
        removed_faces=removed,
        body_faces=added,
    )
