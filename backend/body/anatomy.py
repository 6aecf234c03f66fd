"""The stand-in body's design: rest-pose skeleton and the primitives that flesh it out.

All numbers are metres in SMPL-X's frame (Y up, the body faces +z, its left is +x), T-pose with
arms almost horizontal, palms down, soles at y = FLOOR_Y and the pelvis joint a little below the
origin, close to where SMPL-X puts them. Proportions follow common anthropometric ratios for a
1.72 m adult; only the left side is written, the right side is its mirror image (x -> -x).
"""

from __future__ import annotations

import numpy as np

from .joints import JOINT_INDEX, NUM_JOINTS
from .sdf import Ellipsoid, Primitive, RoundBox, RoundCone

FLOOR_Y = -1.18
HEAD_TOP_Y = 0.54

Vec = tuple[float, float, float]

# Finger layout relative to the wrist, for the left hand: knuckle offset, pointing direction,
# three segment lengths (proximal, middle, distal) and radius at base / tip.
_FINGER_LAYOUT: dict[str, tuple[Vec, Vec, tuple[float, float, float], float, float]] = {
    "index": ((0.088, -0.004, 0.028), (1.0, -0.02, 0.16), (0.042, 0.026, 0.022), 0.0088, 0.0074),
    "middle": ((0.092, -0.004, 0.006), (1.0, -0.02, 0.02), (0.047, 0.029, 0.024), 0.0092, 0.0076),
    "ring": ((0.088, -0.004, -0.016), (1.0, -0.02, -0.13), (0.043, 0.027, 0.023), 0.0085, 0.0071),
    "pinky": ((0.080, -0.005, -0.036), (1.0, -0.02, -0.30), (0.033, 0.021, 0.020), 0.0075, 0.0062),
    "thumb": ((0.022, -0.012, 0.030), (0.62, -0.22, 0.75), (0.040, 0.033, 0.028), 0.0115, 0.0090),
}
_FINGER_TIP_CAP = 0.004  # the last segment ends this far before the fingertip surface

# Left-side and centre joints of the rest skeleton (the right side is mirrored).
_JOINTS_LEFT_AND_CENTRE: dict[str, Vec] = {
    "pelvis": (0.0, -0.26, 0.0),
    "left_hip": (0.085, -0.35, 0.0),
    "spine1": (0.0, -0.14, -0.015),
    "left_knee": (0.10, -0.72, 0.01),
    "spine2": (0.0, -0.02, -0.01),
    "left_ankle": (0.11, -1.10, -0.03),
    "spine3": (0.0, 0.07, 0.0),
    "left_foot": (0.12, -1.16, 0.10),
    "neck": (0.0, 0.245, -0.02),
    "left_collar": (0.075, 0.175, -0.01),
    "head": (0.0, 0.345, 0.0),
    "left_shoulder": (0.18, 0.20, -0.02),
    "left_elbow": (0.45, 0.185, -0.03),
    "left_wrist": (0.70, 0.17, -0.02),
    "jaw": (0.0, 0.355, 0.02),
    "left_eye_smplhf": (0.031, 0.425, 0.072),
}


def _mirror(v: Vec) -> Vec:
    return (-v[0], v[1], v[2])


def _unit(v: Vec) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def finger_chain(side: str, finger: str) -> list[np.ndarray]:
    """The three joint positions and the fingertip of one finger (4 points)."""
    offset, direction, lengths, _, _ = _FINGER_LAYOUT[finger]
    wrist = np.asarray(_JOINTS_LEFT_AND_CENTRE["left_wrist"])
    points = [wrist + np.asarray(offset)]
    d = _unit(direction)
    for length in lengths:
        points.append(points[-1] + d * length)
    if side == "right":
        points = [p * np.array([-1.0, 1.0, 1.0]) for p in points]
    return points


def rest_joints() -> np.ndarray:
    """(55, 3) rest-pose joint positions of the stand-in skeleton."""
    joints = np.zeros((NUM_JOINTS, 3))
    for name, pos in _JOINTS_LEFT_AND_CENTRE.items():
        joints[JOINT_INDEX[name]] = pos
        if name.startswith("left_"):
            joints[JOINT_INDEX["right_" + name.removeprefix("left_")]] = _mirror(pos)
    for side in ("left", "right"):
        for finger in _FINGER_LAYOUT:
            chain = finger_chain(side, finger)
            for k in range(3):
                joints[JOINT_INDEX[f"{side}_{finger}{k + 1}"]] = chain[k]
    return joints


def fingertip(side: str, finger: str) -> np.ndarray:
    """Where the fingertip surface is (end of the distal segment plus its radius)."""
    chain = finger_chain(side, finger)
    tip_radius = _FINGER_LAYOUT[finger][4]
    d = chain[3] - chain[2]
    # the distal capsule stops _FINGER_TIP_CAP short of chain[3] and is capped by its tip radius
    return chain[3] + d / np.linalg.norm(d) * (tip_radius - _FINGER_TIP_CAP)


def _side_primitives(side: str) -> list[Primitive]:
    s = 1.0 if side == "left" else -1.0

    def m(v: Vec) -> Vec:
        return (s * v[0], v[1], v[2])

    def j(name: str) -> int:
        return JOINT_INDEX[f"{side}_{name}"]

    J = {k: v for k, v in _JOINTS_LEFT_AND_CENTRE.items()}
    prims: list[Primitive] = [
        # legs
        RoundCone(j("hip"), 0.03, a=m((0.095, -0.35, -0.005)), b=m(J["left_knee"]), ra=0.082, rb=0.056),
        Ellipsoid(j("hip"), 0.03, center=m((0.102, -0.49, 0.01)), radii=(0.07, 0.15, 0.08)),
        Ellipsoid(j("knee"), 0.03, center=m((0.10, -0.72, 0.018)), radii=(0.05, 0.055, 0.05)),
        RoundCone(j("knee"), 0.03, a=m(J["left_knee"]), b=m(J["left_ankle"]), ra=0.05, rb=0.034),
        Ellipsoid(j("knee"), 0.04, center=m((0.103, -0.84, -0.028)), radii=(0.05, 0.12, 0.052)),
        # foot: ankle bone carries heel and midfoot, the "foot" joint carries the toes
        Ellipsoid(j("ankle"), 0.03, center=m((0.113, -1.128, 0.025)), radii=(0.043, 0.052, 0.105)),
        Ellipsoid(j("ankle"), 0.025, center=m((0.11, -1.142, -0.05)), radii=(0.034, 0.038, 0.038)),
        Ellipsoid(j("foot"), 0.02, center=m((0.118, -1.158, 0.135)), radii=(0.047, 0.022, 0.055)),
        # shoulder and arm
        Ellipsoid(j("shoulder"), 0.04, center=m((0.185, 0.205, -0.02)), radii=(0.065, 0.055, 0.058)),
        RoundCone(j("shoulder"), 0.03, a=m(J["left_shoulder"]), b=m(J["left_elbow"]), ra=0.047, rb=0.037),
        Ellipsoid(j("shoulder"), 0.03, center=m((0.31, 0.19, -0.02)), radii=(0.11, 0.045, 0.046)),
        RoundCone(j("elbow"), 0.025, a=m(J["left_elbow"]), b=m(J["left_wrist"]), ra=0.037, rb=0.025),
        Ellipsoid(j("elbow"), 0.03, center=m((0.53, 0.182, -0.028)), radii=(0.085, 0.04, 0.043)),
        Ellipsoid(j("wrist"), 0.015, center=m((0.70, 0.17, -0.02)), radii=(0.02, 0.018, 0.03)),
        # palm (a flat rounded box) and the thenar pad at the thumb's root
        RoundBox(
            j("wrist"), 0.015, center=m((0.745, 0.166, -0.005)), half=(0.045, 0.014, 0.041), rounding=0.013
        ),
        Ellipsoid(j("thumb1"), 0.012, center=m((0.728, 0.158, 0.012)), radii=(0.026, 0.014, 0.018)),
    ]
    for finger, (_, _, _, r0, r1) in _FINGER_LAYOUT.items():
        chain = finger_chain(side, finger)
        radii = np.linspace(r0, r1, 4)
        for k in range(3):
            end = chain[k + 1]
            if k == 2:  # stop short so the rounded tip lands on fingertip()
                d = chain[3] - chain[2]
                end = chain[3] - d / np.linalg.norm(d) * _FINGER_TIP_CAP
            prims.append(
                RoundCone(
                    j(f"{finger}{k + 1}"),
                    0.012 if k == 0 else 0.004,
                    a=tuple(chain[k]),
                    b=tuple(end),
                    ra=float(radii[k]),
                    rb=float(radii[k + 1]),
                )
            )
    # collar / trapezius from the neck base to the shoulder
    prims.insert(
        0,
        RoundCone(
            j("collar"), 0.04, a=m((0.02, 0.215, -0.035)), b=m((0.16, 0.215, -0.025)), ra=0.055, rb=0.05
        ),
    )
    # buttock
    prims.insert(
        0,
        Ellipsoid(
            JOINT_INDEX["pelvis"], 0.05, center=m((0.062, -0.345, -0.056)), radii=(0.072, 0.088, 0.072)
        ),
    )
    # ear
    prims.append(
        Ellipsoid(JOINT_INDEX["head"], 0.008, center=m((0.077, 0.42, -0.012)), radii=(0.012, 0.031, 0.019))
    )
    # cheek
    prims.append(
        Ellipsoid(JOINT_INDEX["head"], 0.02, center=m((0.038, 0.39, 0.05)), radii=(0.032, 0.032, 0.04))
    )
    return prims


def _centre_primitives() -> list[Primitive]:
    pelvis, spine1, spine2, spine3 = (JOINT_INDEX[n] for n in ("pelvis", "spine1", "spine2", "spine3"))
    neck, head, jaw = JOINT_INDEX["neck"], JOINT_INDEX["head"], JOINT_INDEX["jaw"]
    return [
        Ellipsoid(pelvis, 0.05, center=(0.0, -0.28, -0.005), radii=(0.165, 0.115, 0.105)),
        Ellipsoid(spine1, 0.06, center=(0.0, -0.14, 0.012), radii=(0.132, 0.105, 0.095)),
        Ellipsoid(spine2, 0.06, center=(0.0, -0.03, 0.0), radii=(0.128, 0.12, 0.09)),
        Ellipsoid(spine3, 0.06, center=(0.0, 0.10, -0.005), radii=(0.158, 0.13, 0.1)),
        # pectorals and shoulder blades give the chest its front and back relief
        Ellipsoid(spine3, 0.04, center=(0.07, 0.105, 0.04), radii=(0.07, 0.055, 0.05)),
        Ellipsoid(spine3, 0.04, center=(-0.07, 0.105, 0.04), radii=(0.07, 0.055, 0.05)),
        Ellipsoid(spine3, 0.04, center=(0.075, 0.12, -0.05), radii=(0.075, 0.085, 0.055)),
        Ellipsoid(spine3, 0.04, center=(-0.075, 0.12, -0.05), radii=(0.075, 0.085, 0.055)),
        RoundCone(neck, 0.035, a=(0.0, 0.215, -0.025), b=(0.0, 0.36, -0.01), ra=0.056, rb=0.05),
        # head: cranium, face, jaw/chin, brow, nose, lips
        Ellipsoid(head, 0.03, center=(0.0, 0.445, -0.012), radii=(0.077, 0.097, 0.096)),
        Ellipsoid(head, 0.025, center=(0.0, 0.405, 0.02), radii=(0.068, 0.085, 0.078)),
        Ellipsoid(jaw, 0.03, center=(0.0, 0.345, 0.03), radii=(0.054, 0.042, 0.058)),
        RoundCone(head, 0.012, a=(-0.042, 0.447, 0.083), b=(0.042, 0.447, 0.083), ra=0.011, rb=0.011),
        RoundCone(head, 0.01, a=(0.0, 0.433, 0.09), b=(0.0, 0.399, 0.11), ra=0.007, rb=0.011),
        Ellipsoid(head, 0.008, center=(0.0, 0.394, 0.101), radii=(0.018, 0.01, 0.012)),
        Ellipsoid(jaw, 0.015, center=(0.0, 0.322, 0.068), radii=(0.026, 0.02, 0.024)),
        Ellipsoid(head, 0.006, center=(0.0, 0.368, 0.092), radii=(0.024, 0.007, 0.009)),
        Ellipsoid(jaw, 0.006, center=(0.0, 0.352, 0.089), radii=(0.022, 0.007, 0.009)),
    ]


def eye_socket_primitives() -> list[Primitive]:
    """Hollows in the face where the eyeball caps sit (carved with a soft edge)."""
    head = JOINT_INDEX["head"]
    return [
        Ellipsoid(head, 0.012, center=(s * 0.032, 0.425, 0.095), radii=(0.017, 0.012, 0.014), subtract=True)
        for s in (1.0, -1.0)
    ]


def body_primitives() -> list[Primitive]:
    """All primitives in union order (torso first so limbs blend onto it)."""
    return [
        *_centre_primitives(),
        *_side_primitives("left"),
        *_side_primitives("right"),
        *eye_socket_primitives(),
    ]


def eye_centers() -> np.ndarray:
    """(2, 3) eyeball centres, left (+x) first."""
    left = np.asarray(_JOINTS_LEFT_AND_CENTRE["left_eye_smplhf"])
    return np.stack([left, left * np.array([-1.0, 1.0, 1.0])])


def detail_weight(points: np.ndarray) -> np.ndarray:
    """Where the mesh needs finer triangles than curvature alone asks for: the hands (palms are
    flat but their skinning weights change quickly between fingers) and the face."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    hands = np.clip((np.abs(x) - 0.64) / 0.06, 0.0, 1.0)
    face = np.clip((y - 0.3) / 0.04, 0.0, 1.0) * np.clip((z - 0.0) / 0.05, 0.0, 1.0)
    return 1.0 + 1.2 * hands + 0.8 * face
