"""OpenPose-style pose conditioning images from SMPL-X joints.

The images follow what ControlNet-openpose was trained on (the ``draw_bodypose`` /
``draw_handpose`` / ``draw_facepose`` drawings of ControlNet 1.1 / controlnet_aux): COCO-18 body
keypoints, 17 limbs drawn as filled ellipses of half-width 4 px at 60% of their colour, keypoints as
radius-4 discs in full colour, on black. Hands: 20 bones as 2-px lines in HSV-rainbow colours with
blue radius-4 keypoints; face: white radius-3 dots. Drawing uses Pillow (a dependency already)
instead of OpenCV, which the backend does not otherwise need.

Keypoints that the caller marks invisible (outside the image or occluded according to the depth
pass, see :func:`backend.render.passes.project_joints`) are dropped, with the limbs touching them.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COCO18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
# Limb order and colours of ControlNet-openpose (0-based keypoint indices). Only the first 17 limbs
# are drawn, as in the reference drawing (the last two, shoulder-ear, are defined but skipped).
COCO18_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
DRAWN_LIMBS = 17
COCO18_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
# Per finger: wrist -> base, then along the finger (OpenPose hand order, thumb first).
HAND_EDGES: tuple[tuple[int, int], ...] = tuple(
    (0 if k == 0 else 4 * finger + k, 4 * finger + k + 1) for finger in range(5) for k in range(4)
)
STICK_HALF_WIDTH = 4
BODY_POINT_RADIUS = 4
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def hand_names(side: str) -> tuple[str, ...]:
    """OpenPose hand order (wrist, then 4 points per finger from the base) as SMPL-X joint names."""
    names = [f"{side}_wrist"]
    for finger in _FINGERS:
        names += [f"{side}_{finger}1", f"{side}_{finger}2", f"{side}_{finger}3", f"{side}_{finger}"]
    return tuple(names)


@dataclass
class PoseKeypoints:
    """Pixel keypoints (x, y with pixel centres at +0.5) and visibility per group."""

    body: np.ndarray  # (18,2)
    body_visible: np.ndarray  # (18,) bool
    left_hand: np.ndarray | None = None  # (21,2)
    left_hand_visible: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    right_hand_visible: np.ndarray | None = None
    face: np.ndarray | None = None  # (N,2) SMPL-X face landmarks
    face_visible: np.ndarray | None = None


def _face_names(names: Sequence[str]) -> list[str]:
    start = names.index("right_eye_brow1") if "right_eye_brow1" in names else len(names)
    return list(names[start:])


def keypoints_from_joints(xy: np.ndarray, visible: np.ndarray, names: Sequence[str]) -> PoseKeypoints:
    """Select OpenPose keypoints from projected SMPL-X joints ``xy`` (J,2) named by ``names``.

    ``names`` is ``smplx.joint_names.JOINT_NAMES[:J]`` for smplx output (55 joints, then extra
    vertices nose/eyes/ears/toes/fingertips, then face landmarks). The OpenPose neck is the
    shoulders' midpoint, as in COCO annotations.
    """
    xy = np.asarray(xy, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    index = {name: i for i, name in enumerate(names)}

    def pick(wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        if not all(n in index for n in wanted):
            return None
        ids = [index[n] for n in wanted]
        return xy[ids], visible[ids]

    body_xy = np.zeros((18, 2))
    body_vis = np.zeros(18, dtype=bool)
    for k, name in enumerate(COCO18_NAMES):
        if name == "neck":
            ls, rs = index["left_shoulder"], index["right_shoulder"]
            body_xy[k] = 0.5 * (xy[ls] + xy[rs])
            body_vis[k] = visible[ls] or visible[rs]
        elif name in index:
            body_xy[k], body_vis[k] = xy[index[name]], visible[index[name]]
    result = PoseKeypoints(body_xy, body_vis)
    left, right = pick(hand_names("left")), pick(hand_names("right"))
    if left is not None:
        result.left_hand, result.left_hand_visible = left
    if right is not None:
        result.right_hand, result.right_hand_visible = right
    face = _face_names(names)
    if face:
        result.face, result.face_visible = pick(face)  # type: ignore[misc]
    return result


def _ellipse_polygon(a: np.ndarray, b: np.ndarray, half_width: float,
                     n: int = 36) -> list[tuple[float, float]]:
    centre = 0.5 * (a + b)
    d = b - a
    half_length = 0.5 * float(np.hypot(*d))
    angle = float(np.arctan2(d[1], d[0]))
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    local = np.stack([half_length * np.cos(theta), half_width * np.sin(theta)], axis=1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [tuple(p) for p in (local @ rot.T + centre)]


def _disc(draw: ImageDraw.ImageDraw, p: np.ndarray, radius: int, color: tuple[int, int, int]) -> None:
    x, y = float(p[0]), float(p[1])
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)


def draw_openpose(kp: PoseKeypoints, width: int, height: int, *, hands: bool = True,
                  face: bool = True) -> np.ndarray:
    """The pose image (H,W,3) uint8 RGB on black."""
    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    # Our keypoints put pixel centres at +0.5; drawing coordinates are pixel indices.
    body = kp.body - 0.5
    for i, (a, b) in enumerate(COCO18_LIMBS[:DRAWN_LIMBS]):
        if kp.body_visible[a] and kp.body_visible[b]:
            color = tuple(int(c * 0.6) for c in COCO18_COLORS[i])
            draw.polygon(_ellipse_polygon(body[a], body[b], STICK_HALF_WIDTH), fill=color)
    for k in range(18):
        if kp.body_visible[k]:
            _disc(draw, body[k], BODY_POINT_RADIUS, COCO18_COLORS[k])
    if hands:
        for pts, vis in ((kp.left_hand, kp.left_hand_visible), (kp.right_hand, kp.right_hand_visible)):
            if pts is None or vis is None:
                continue
            pts = pts - 0.5
            for e, (a, b) in enumerate(HAND_EDGES):
                if vis[a] and vis[b]:
                    rgb = colorsys.hsv_to_rgb(e / len(HAND_EDGES), 1.0, 1.0)
                    draw.line([tuple(pts[a]), tuple(pts[b])], fill=tuple(int(c * 255) for c in rgb), width=2)
            for k in range(len(pts)):
                if vis[k]:
                    _disc(draw, pts[k], HAND_POINT_RADIUS, (0, 0, 255))
    if face and kp.face is not None and kp.face_visible is not None:
        for p, v in zip(kp.face - 0.5, kp.face_visible, strict=True):
            if v:
                _disc(draw, p, FACE_POINT_RADIUS, (255, 255, 255))
    return np.asarray(image)
