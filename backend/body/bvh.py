"""BVH out and in for the SMPL-X skeleton (for tools that take BVH rather than AMASS npz).

SMPL-X bones have no rest orientation (every joint frame is parallel to the world in the rest
pose), which is exactly BVH's model: a joint's local transform is translate(OFFSET) @ R, with R
from its three rotation channels. So each joint's axis-angle maps to Euler angles one to one.
Conventions written and read here:

- joint names are SMPL-X's (``pelvis``, ``left_hip``, ...), the hierarchy is the SMPL-X tree;
- units are centimetres by default (``scale=100`` from metres), axes are SMPL-X's (Y up);
- rotation channels are ``Zrotation Xrotation Yrotation`` (R = Rz @ Rx @ Ry), in degrees;
- the root's OFFSET is the rest pelvis position and its position channels are the *world*
  position of the pelvis, so ``transl = position - OFFSET``.

Reading accepts files written this way (joint names must be SMPL-X's; missing joints stay at
rest); it does not retarget other skeletons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .joints import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS
from .motion import Motion

EULER_ORDER = "ZXY"
ROT_CHANNELS = "Zrotation Xrotation Yrotation"


class BVHError(ValueError):
    """The BVH text could not be parsed into the SMPL-X skeleton."""


def _children(joint: int) -> list[int]:
    return [c for c, p in enumerate(PARENTS) if p == joint]


def save_bvh(motion: Motion, path: str | Path, rest_joints: np.ndarray, scale: float = 100.0) -> Path:
    """Write ``motion`` over the skeleton ``rest_joints`` (55, 3) in metres (e.g. from
    ``BodyModel.rest_joints(betas)``)."""
    rest = np.asarray(rest_joints, dtype=np.float64) * scale
    lines = ["HIERARCHY"]

    def emit(joint: int, depth: int) -> None:
        pad = "  " * depth
        parent = PARENTS[joint]
        offset = rest[joint] - (rest[parent] if parent >= 0 else 0.0)
        lines.append(f"{pad}{'ROOT' if parent < 0 else 'JOINT'} {JOINT_NAMES[joint]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        if parent < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {ROT_CHANNELS}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {ROT_CHANNELS}")
        kids = _children(joint)
        for child in kids:
            emit(child, depth + 1)
        if not kids:
            # end sites continue the bone a little, so viewers draw the last segment
            tip = 0.5 * offset if parent >= 0 else np.array([0.0, 10.0, 0.0])
            lines.append(f"{pad}  End Site")
            lines.append(pad + "  {")
            lines.append(f"{pad}    OFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}")
            lines.append(pad + "  }")
        lines.append(pad + "}")

    emit(0, 0)
    pose = motion.full_pose()  # (F, 55, 3)
    euler = (
        Rotation.from_rotvec(pose.reshape(-1, 3))
        .as_euler(EULER_ORDER, degrees=True)
        .reshape(-1, NUM_JOINTS, 3)
    )
    root_position = rest[0] + motion.transl * scale
    order = _depth_first()
    lines += ["MOTION", f"Frames: {motion.n_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    for f in range(motion.n_frames):
        values = list(root_position[f])
        for j in order:
            values += list(euler[f, j])
        lines.append(" ".join(f"{x:.6f}" for x in values))
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def _depth_first() -> list[int]:
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in _children(j):
            visit(c)

    visit(0)
    return order


def load_bvh(
    path: str | Path | None = None, scale: float = 100.0, gender: str = "neutral", *, text: str | None = None
) -> tuple[Motion, np.ndarray]:
    """Read a BVH written with the conventions above: (motion, rest joints (55, 3) in metres).
    ``text``: the file's content, already read (the jobs read through their confinement check)."""
    tokens = (Path(path).read_text() if text is None else text).split()
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise BVHError("unexpected end of file")
        pos += 1
        return tokens[pos - 1]

    if take() != "HIERARCHY":
        raise BVHError("missing HIERARCHY")
    rest = np.zeros((NUM_JOINTS, 3))
    channels: list[tuple[str, list[str]]] = []  # (joint name or "", channel names) in file order
    stack: list[np.ndarray] = []
    name = ""
    while True:
        tok = take()
        if tok in ("ROOT", "JOINT"):
            name = take()
        elif tok == "End":
            take()  # "Site"
            name = ""
        elif tok == "{":
            stack.append(np.zeros(3))
        elif tok == "OFFSET":
            offset = np.array([float(take()) for _ in range(3)])
            origin = stack[-2] if len(stack) >= 2 else np.zeros(3)
            stack[-1] = origin + offset
            if name in JOINT_INDEX:
                rest[JOINT_INDEX[name]] = stack[-1]
        elif tok == "CHANNELS":
            count = int(take())
            channels.append((name, [take() for _ in range(count)]))
        elif tok == "}":
            stack.pop()
            if not stack:
                break
        else:
            raise BVHError(f"unexpected token {tok!r} in hierarchy")
    if take() != "MOTION":
        raise BVHError("missing MOTION")
    take()  # "Frames:"
    n_frames = int(take())
    take(), take()  # "Frame", "Time:"
    frame_time = float(take())
    width = sum(len(c) for _, c in channels)
    data = np.array([float(t) for t in tokens[pos : pos + n_frames * width]])
    if data.size != n_frames * width:
        raise BVHError(f"expected {n_frames} x {width} values, found {data.size}")
    data = data.reshape(n_frames, width)
    pose = np.zeros((n_frames, NUM_JOINTS, 3))
    transl = np.zeros((n_frames, 3))
    col = 0
    for joint_name, names in channels:
        block = data[:, col : col + len(names)]
        col += len(names)
        if joint_name not in JOINT_INDEX:
            continue
        j = JOINT_INDEX[joint_name]
        rot_names = [n for n in names if n.endswith("rotation")]
        angles = block[:, [names.index(n) for n in rot_names]]
        order = "".join(n[0].upper() for n in rot_names)
        pose[:, j] = Rotation.from_euler(order, angles, degrees=True).as_rotvec()
        if j == 0:
            position = block[:, [names.index(f"{a}position") for a in "XYZ"]]
            transl = (position - rest[0]) / scale
    motion = Motion.from_full_pose(pose, transl, 1.0 / frame_time, gender=gender)
    return motion, rest / scale
