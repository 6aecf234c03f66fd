"""Shape and expression directions of the stand-in, designed by hand (not learned).

Each direction is a displacement field in metres per unit coefficient, written as a function of the
rest position and of the skinning weights (which say which limb a point belongs to, so fields stay
smooth across joints exactly where the skinning blends). Conventions, also in docs/body.md:

shape (betas)                                   expression
 0  height: NEGATIVE is taller (as in SMPL-X)     0  mouth open (chin and lower lip down)
 1  weight / overall girth                         1  smile (mouth corners up and out)
 2  shoulder width                                 2  frown (mouth corners down)
 3  leg length                                     3  brows raised
 4  hip width                                      4  brows furrowed
 5  chest depth                                    5  squint (cheeks and lower lids up)
 6  arm length                                     6  cheeks puffed
 7  head size                                      7  lips pucker
 8  belly                                          8  nose wrinkle
 9  limb muscularity                               9  mouth to the left (+x)
10  torso length                                  10  mouth to the right (-x)
11  neck length
The remaining shape (to 300) and expression (to 100) directions are zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .joints import JOINT_INDEX, NUM_JOINTS, PARENTS

NUM_SHAPE_DIRS = 300
NUM_EXPRESSION_DIRS = 100


@dataclass(frozen=True)
class BodyPoints:
    """Points with their skinning weights and the skeleton they hang from."""

    positions: np.ndarray  # (N, 3)
    weights: np.ndarray  # (N, 55)
    joints: np.ndarray  # (55, 3)
    bone_ends: np.ndarray  # (55, 3): where each joint's bone ends (its main child or a tip)
    floor_y: float  # height of the soles, where leg-length changes are anchored

    def weight_of(self, *names: str) -> np.ndarray:
        return self.weights[:, [JOINT_INDEX[n] for n in names]].sum(axis=1)

    def side_weight(self, side: str, *bases: str) -> np.ndarray:
        names = [
            n
            for n in JOINT_INDEX
            if n.startswith(side + "_") and n.removeprefix(side + "_").rstrip("123") in bases
        ]
        return self.weights[:, [JOINT_INDEX[n] for n in names]].sum(axis=1)

    def radial(self) -> np.ndarray:
        """Offset of each point from its bones' axes, blended by skinning weight."""
        a, b = self.joints, self.bone_ends
        ab = b - a
        length2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
        rel = self.positions[:, None, :] - a[None]  # (N, 55, 3)
        t = np.clip((rel * ab[None]).sum(-1) / length2[None], 0.0, 1.0)
        offset = rel - t[..., None] * ab[None]
        return (self.weights[..., None] * offset).sum(axis=1)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(p: np.ndarray, center: tuple[float, float, float], sigma: float) -> np.ndarray:
    d2 = ((p - np.asarray(center)) ** 2).sum(axis=1)
    return np.exp(-0.5 * d2 / sigma**2)


def _x_dir(p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    out[:, 0] = np.sign(p[:, 0])
    return out


def _axis(p: np.ndarray, k: int, values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    out[:, k] = values
    return out


ARM = ("shoulder", "elbow", "wrist", "index", "middle", "ring", "pinky", "thumb")
HAND = ("wrist", "index", "middle", "ring", "pinky", "thumb")
LEG = ("hip", "knee", "ankle", "foot")


def _both(b: BodyPoints, *bases: str) -> np.ndarray:
    return b.side_weight("left", *bases) + b.side_weight("right", *bases)


def shape_fields(b: BodyPoints) -> list[Callable[[], np.ndarray]]:
    p, J = b.positions, b.joints
    pelvis = J[JOINT_INDEX["pelvis"]]
    hip_y = float(J[JOINT_INDEX["left_hip"], 1])
    floor_y = b.floor_y
    neck_y, head_y = float(J[JOINT_INDEX["neck"], 1]), float(J[JOINT_INDEX["head"], 1])
    shoulder_x = float(J[JOINT_INDEX["left_shoulder"], 0])
    torso = b.weight_of("pelvis", "spine1", "spine2", "spine3")
    head = b.weight_of("head", "jaw", "left_eye_smplhf", "right_eye_smplhf")
    front = _smoothstep(0.0, 0.06, p[:, 2])
    # Thigh girth fades out towards the groin so it does not bulge the pelvis into "shorts".
    hip_fade = _smoothstep(-0.02, 0.22, hip_y - p[:, 1])
    limbs = _both(b, "shoulder", "elbow", "knee") + _both(b, "hip") * hip_fade
    # The torso grows horizontally away from the vertical body axis (its spine bones are vertical,
    # but distance-to-segment would also push the shoulders and groin up and down).
    horizontal = p * np.array([1.0, 0.0, 1.0]) - np.array([0.0, 0.0, float(pelvis[2])])

    def height() -> np.ndarray:
        return -0.045 * (p - pelvis)

    def girth() -> np.ndarray:
        limb_like = 0.7 * limbs + 0.5 * b.weight_of("neck", "left_collar", "right_collar")
        return 0.15 * (torso[:, None] * horizontal + limb_like[:, None] * b.radial())

    def shoulders() -> np.ndarray:
        # arms move out rigidly; the upper torso follows, fading towards the midline and the waist
        # (position-based ramps keep the field smooth where the arm's weights end)
        arm = _both(b, *ARM)
        # proportional to |x| near the midline: a lateral scaling, so no point crosses x = 0
        ramp = np.clip(np.abs(p[:, 0]) / 0.14, 0.0, 1.0) * _smoothstep(-0.05, 0.15, p[:, 1])
        keep = 1.0 - head - b.weight_of("neck")  # the neck keeps its width
        return 0.025 * _x_dir(p) * (arm + (1.0 - arm) * ramp * keep)[:, None]

    def legs() -> np.ndarray:
        ramp = np.clip((hip_y - p[:, 1]) / (hip_y - floor_y), 0.0, 1.0)
        return _axis(p, 1, -0.06 * ramp * np.minimum(_both(b, *LEG) + b.weight_of("pelvis"), 1.0))

    def hips() -> np.ndarray:
        # legs move out rigidly; the pelvis widens, fading out upwards to the waist
        leg = _both(b, *LEG)
        ramp = np.clip(np.abs(p[:, 0]) / 0.14, 0.0, 1.0) * (1.0 - _smoothstep(-0.3, -0.06, p[:, 1]))
        return 0.02 * _x_dir(p) * (leg + (1.0 - leg) * ramp * (1.0 - _both(b, *ARM)))[:, None]

    def chest() -> np.ndarray:
        band = b.weight_of("spine3", "spine2") * front * _gauss(p, (0.0, 0.09, 0.1), 0.09)
        return _axis(p, 2, 0.03 * band)

    def arms() -> np.ndarray:
        ramp = np.clip((np.abs(p[:, 0]) - shoulder_x) / 0.52, 0.0, 1.0)
        hand = _both(b, *HAND)
        amount = np.maximum(ramp * _both(b, *ARM), hand)
        return 0.05 * _x_dir(p) * amount[:, None]

    def head_size() -> np.ndarray:
        centre = J[JOINT_INDEX["head"]] + np.array([0.0, 0.08, 0.0])
        return 0.07 * (p - centre) * head[:, None]

    def belly() -> np.ndarray:
        return _axis(p, 2, 0.045 * torso * front * _gauss(p, (0.0, -0.13, 0.1), 0.09))

    def muscles() -> np.ndarray:
        return 0.2 * b.radial() * limbs[:, None]

    def torso_length() -> np.ndarray:
        ramp = np.clip((p[:, 1] - pelvis[1]) / (neck_y - pelvis[1]), 0.0, 1.0)
        return _axis(p, 1, 0.045 * ramp * (1.0 - _both(b, *LEG)))

    def neck() -> np.ndarray:
        ramp = np.clip((p[:, 1] - neck_y) / (head_y - neck_y), 0.0, 1.0)
        return _axis(p, 1, 0.02 * ramp * (head + b.weight_of("neck")))

    return [height, girth, shoulders, legs, hips, chest, arms, head_size, belly, muscles, torso_length, neck]


def expression_fields(b: BodyPoints) -> list[Callable[[], np.ndarray]]:
    p = b.positions
    face = b.weight_of("head", "jaw") * _smoothstep(0.04, 0.08, p[:, 2])
    mouth_y, brow_y = 0.36, 0.447

    def pair(x: float, y: float, z: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        return _gauss(p, (x, y, z), sigma) * face, _gauss(p, (-x, y, z), sigma) * face

    def mouth_open() -> np.ndarray:
        return _axis(p, 1, -0.012 * face * _gauss(p, (0.0, 0.335, 0.085), 0.03) * (p[:, 1] < mouth_y + 0.004))

    def smile() -> np.ndarray:
        left, right = pair(0.026, mouth_y, 0.085, 0.014)
        d = np.zeros_like(p)
        d[:, 0] = 0.005 * (left - right)
        d[:, 1] = 0.005 * (left + right)
        d[:, 2] = -0.002 * (left + right)
        return d

    def frown() -> np.ndarray:
        left, right = pair(0.026, mouth_y - 0.004, 0.085, 0.014)
        return _axis(p, 1, -0.005 * (left + right))

    def brows_up() -> np.ndarray:
        left, right = pair(0.03, brow_y, 0.085, 0.02)
        return _axis(p, 1, 0.006 * (left + right))

    def brows_furrow() -> np.ndarray:
        left, right = pair(0.015, brow_y - 0.003, 0.09, 0.014)
        d = np.zeros_like(p)
        d[:, 0] = -0.004 * (left - right)
        d[:, 1] = -0.004 * (left + right)
        return d

    def squint() -> np.ndarray:
        left, right = pair(0.035, 0.405, 0.085, 0.016)
        d = np.zeros_like(p)
        d[:, 1] = 0.004 * (left + right)
        d[:, 2] = 0.002 * (left + right)
        return d

    def puff() -> np.ndarray:
        left, right = pair(0.042, 0.37, 0.07, 0.02)
        d = np.zeros_like(p)
        d[:, 0] = 0.007 * (left - right)
        d[:, 2] = 0.003 * (left + right)
        return d

    def pucker() -> np.ndarray:
        lips = face * _gauss(p, (0.0, mouth_y, 0.09), 0.016)
        d = np.zeros_like(p)
        d[:, 2] = 0.007 * lips
        d[:, 0] = -0.25 * p[:, 0] * lips
        return d

    def nose_wrinkle() -> np.ndarray:
        return _axis(p, 1, 0.004 * face * _gauss(p, (0.0, 0.395, 0.112), 0.016))

    def mouth_side(sign: float) -> Callable[[], np.ndarray]:
        return lambda: _axis(p, 0, sign * 0.006 * face * _gauss(p, (0.0, mouth_y, 0.09), 0.018))

    return [
        mouth_open,
        smile,
        frown,
        brows_up,
        brows_furrow,
        squint,
        puff,
        pucker,
        nose_wrinkle,
        mouth_side(1.0),
        mouth_side(-1.0),
    ]


def bone_ends(joints: np.ndarray, tips: dict[int, np.ndarray]) -> np.ndarray:
    """Where each joint's bone ends: its first child, or ``tips[j]`` for leaves / branch points."""
    ends = joints.copy()
    for j in range(NUM_JOINTS - 1, -1, -1):
        children = [c for c, parent in enumerate(PARENTS) if parent == j]
        if children:
            ends[j] = joints[children[0]]
    for j, tip in tips.items():
        ends[j] = tip
    return ends


def build_directions(
    body: BodyPoints, rigid_groups: list[tuple[np.ndarray, BodyPoints]]
) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3, 300) shape and (V, 3, 100) expression directions.

    ``rigid_groups`` lists vertex index sets (the eyeballs) that move as one, each with the single
    point (its centre) whose displacement they take, so shape changes never deform an eyeball.
    """
    n = len(body.positions)
    shape = np.zeros((n, 3, NUM_SHAPE_DIRS), dtype=np.float64)
    expr = np.zeros((n, 3, NUM_EXPRESSION_DIRS), dtype=np.float64)
    for k, field_ in enumerate(shape_fields(body)):
        shape[:, :, k] = field_()
    for k, field_ in enumerate(expression_fields(body)):
        expr[:, :, k] = field_()
    for indices, centre in rigid_groups:
        for k, field_ in enumerate(shape_fields(centre)):
            shape[indices, :, k] = field_()[0]
        expr[indices] = 0.0
    return shape, expr
