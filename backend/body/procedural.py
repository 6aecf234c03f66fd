"""Procedural motions generated in code, for demos and tests: A-pose, T-pose, walk, turn, wave.

Angles follow SMPL-X's rest frame (Y up, body faces +z, left is +x): each joint's axis-angle is in
its parent's frame, which in the rest pose is the world frame. Useful signs:
- a leg swings forward (foot towards +z) with a negative rotation about x at the hip; a knee bends
  (shin backwards) with a positive one;
- the left arm (along +x) goes down with a negative rotation about z at the shoulder, the right
  arm (along -x) with a positive one.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from .joints import JOINT_INDEX, NUM_JOINTS
from .motion import Motion

ARMS_DOWN_A = np.radians(45.0)  # A-pose: arms 45 degrees below horizontal
ARMS_DOWN_RELAXED = np.radians(72.0)


def _motion(pose: np.ndarray, transl: np.ndarray, fps: float) -> Motion:
    return Motion.from_full_pose(pose, transl, fps)


def _blank(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return np.zeros((n_frames, NUM_JOINTS, 3)), np.zeros((n_frames, 3))


def _set(pose: np.ndarray, joint: str, rotvec: np.ndarray) -> None:
    pose[:, JOINT_INDEX[joint]] = rotvec


def _about(axis: str, angle: np.ndarray | float) -> np.ndarray:
    """(F, 3) rotation vectors of ``angle`` (radians, scalar or per frame) about a world axis."""
    a = np.atleast_1d(np.asarray(angle, dtype=np.float64))
    out = np.zeros((len(a), 3))
    out[:, "xyz".index(axis)] = a
    return out


def _compose(*rotvecs: np.ndarray) -> np.ndarray:
    """Rotation vectors of R_1 @ R_2 @ ... (the last one is applied first)."""
    rot = Rotation.from_rotvec(rotvecs[0])
    for r in rotvecs[1:]:
        rot = rot * Rotation.from_rotvec(r)
    return rot.as_rotvec()


def _arms_down(pose: np.ndarray, angle: float) -> None:
    _set(pose, "left_shoulder", _about("z", -angle))
    _set(pose, "right_shoulder", _about("z", angle))


def t_pose(n_frames: int = 1, fps: float = 30.0) -> Motion:
    """SMPL-X's rest pose: all rotations zero."""
    pose, transl = _blank(n_frames)
    return _motion(pose, transl, fps)


def a_pose(n_frames: int = 1, fps: float = 30.0) -> Motion:
    """Arms 45 degrees down, everything else at rest."""
    pose, transl = _blank(n_frames)
    _arms_down(pose, ARMS_DOWN_A)
    return _motion(pose, transl, fps)


def walk(n_frames: int = 60, fps: float = 30.0, cycle_s: float = 1.1, speed: float = 1.2) -> Motion:
    """Walk forward (+z) at ``speed`` m/s; one gait cycle (two steps) every ``cycle_s`` seconds.

    Legs swing in antiphase, knees bend mostly during the swing, arms swing against the legs, the
    pelvis bobs twice per cycle and the torso counter-rotates a little.
    """
    pose, transl = _blank(n_frames)
    t = np.arange(n_frames) / fps
    phase = 2 * np.pi * t / cycle_s
    thigh = np.radians(25.0)
    for side, shift in (("left", 0.0), ("right", np.pi)):
        p = phase + shift
        _set(pose, f"{side}_hip", _about("x", -thigh * np.sin(p)))
        # knee flexes while the leg swings forward (sin rising), nearly straight at heel strike
        bend = np.radians(5.0) + np.radians(55.0) * np.clip(np.cos(p - 0.5), 0, None) ** 2
        _set(pose, f"{side}_knee", _about("x", bend))
        _set(pose, f"{side}_ankle", _about("x", np.radians(10.0) * np.sin(p + 0.6)))
        arm_sign = -1.0 if side == "left" else 1.0
        swing = _about("x", np.radians(18.0) * np.sin(p))  # opposite to this side's leg
        down = _about("z", arm_sign * ARMS_DOWN_RELAXED) * np.ones((n_frames, 1))
        _set(pose, f"{side}_shoulder", _compose(swing, down))
        # elbows slightly bent, forearms forward
        _set(pose, f"{side}_elbow", _about("y", arm_sign * np.radians(15.0)) * np.ones((n_frames, 1)))
    _set(pose, "spine2", _about("y", np.radians(4.0) * np.sin(phase)))
    transl[:, 2] = speed * t
    transl[:, 1] = 0.012 * np.cos(2 * phase)
    return _motion(pose, transl, fps)


def turn(n_frames: int = 90, fps: float = 30.0, turns: float = 1.0) -> Motion:
    """Turn in place about the vertical axis: the root yaws from 0 to ``turns`` x 360 degrees
    (first and last frame included), with small alternating steps."""
    pose, transl = _blank(n_frames)
    u = np.linspace(0.0, 1.0, n_frames)
    yaw = 2 * np.pi * turns * u
    pose[:, 0] = _about("y", yaw)
    steps = 4 * max(turns, 0.25)
    lift = np.radians(20.0) * np.clip(np.sin(2 * np.pi * steps * u), 0, None)
    lift_r = np.radians(20.0) * np.clip(-np.sin(2 * np.pi * steps * u), 0, None)
    for side, amount in (("left", lift), ("right", lift_r)):
        _set(pose, f"{side}_hip", _about("x", -amount))
        _set(pose, f"{side}_knee", _about("x", 2 * amount))
    _arms_down(pose, ARMS_DOWN_RELAXED)
    return _motion(pose, transl, fps)


def wave(n_frames: int = 60, fps: float = 30.0, waves_per_s: float = 1.5) -> Motion:
    """Right hand raised beside the head, forearm waving side to side; left arm relaxed."""
    pose, transl = _blank(n_frames)
    t = np.arange(n_frames) / fps
    _set(pose, "left_shoulder", _about("z", -ARMS_DOWN_RELAXED))
    _set(pose, "right_shoulder", _about("z", -np.radians(15.0)) * np.ones((n_frames, 1)))
    # elbow bent 90 degrees so the forearm points up, swinging +-25 degrees in the frontal plane
    swing = np.radians(25.0) * np.sin(2 * np.pi * waves_per_s * t)
    _set(pose, "right_elbow", _about("z", -np.radians(90.0) + swing))
    _set(pose, "right_wrist", _about("z", 0.5 * swing))
    return _motion(pose, transl, fps)


PROCEDURAL_MOTIONS: dict[str, Callable[..., Motion]] = {
    "t_pose": t_pose,
    "a_pose": a_pose,
    "walk": walk,
    "turn": turn,
    "wave": wave,
}

DEFAULT_FRAMES = {"t_pose": 1, "a_pose": 1, "walk": 66, "turn": 90, "wave": 60}


def procedural_motion(name: str, n_frames: int | None = None, fps: float = 30.0) -> Motion:
    """Look a procedural motion up by name (``walk``, ``turn``, ``wave``, ``a-pose``/``apose``,
    ``t-pose``...), as the CLI's ``--motion NAME`` does."""
    key = name.strip().lower().replace("-", "_")
    key = {"apose": "a_pose", "tpose": "t_pose"}.get(key, key)
    if key not in PROCEDURAL_MOTIONS:
        known = ", ".join(n.replace("_", "-") for n in PROCEDURAL_MOTIONS)
        raise KeyError(f"unknown motion {name!r}; known: {known}")
    return PROCEDURAL_MOTIONS[key](n_frames if n_frames is not None else DEFAULT_FRAMES[key], fps)


def load_motion(spec: Any = None, fps: float | None = None, n_frames: int | None = None) -> Motion:
    """The one place a motion spec becomes a :class:`Motion` (the jobs and ``--motion SPEC``).

    ``spec``: a procedural motion name (None: ``a-pose``); an AMASS ``.npz`` or ``.bvh`` file, as a
    path or as an object with ``name`` and ``read_bytes()`` (the jobs' confined files: the bytes
    are read once, through the confinement check); an AMASS payload (``poses``, ``trans``...); or
    an SMPL-X parameter payload (``global_orient``...). ``fps`` resamples a file or payload (and
    sets a procedural motion's rate); ``n_frames`` applies to procedural motions only.
    Errors: ``KeyError`` (unknown name), ``FileNotFoundError``, ``MotionFormatError``/``BVHError``
    (both ``ValueError``).
    """
    from .motion import Motion, MotionFormatError, load_amass, resample

    if spec is None:
        spec = "a-pose"
    if isinstance(spec, str) and not spec.lower().endswith((".npz", ".bvh")):
        return procedural_motion(spec, n_frames=n_frames, fps=fps if fps is not None else 30.0)
    if isinstance(spec, Mapping):
        if "poses" in spec:  # AMASS arrays sent inline: through the one AMASS reader
            buffer = io.BytesIO()
            np.savez(buffer, **{k: np.asarray(v) for k, v in spec.items()})
            buffer.seek(0)
            motion = load_amass(buffer)
        elif "global_orient" in spec:
            motion = Motion.from_payload(dict(spec))
        else:
            raise MotionFormatError("a motion payload needs AMASS 'poses'/'trans' or SMPL-X 'global_orient'")
    else:
        motion = _load_motion_file(spec)
    return resample(motion, float(fps)) if fps is not None and float(fps) != motion.fps else motion


def _load_motion_file(source: Any) -> Motion:
    from .bvh import BVHError, load_bvh
    from .motion import MotionFormatError, load_amass

    name = str(getattr(source, "name", source))
    if hasattr(source, "read_bytes") and not isinstance(source, str | os.PathLike):
        data = source.read_bytes()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"motion file not found: {path}")
        data = path.read_bytes()
    if name.lower().endswith(".bvh"):
        try:
            return load_bvh(text=data.decode("utf-8"))[0]
        except UnicodeDecodeError as exc:
            raise BVHError(f"{name}: not a text file") from exc
    if not name.lower().endswith(".npz"):
        raise MotionFormatError(f"{name}: a motion file is an AMASS .npz or a .bvh")
    try:
        return load_amass(io.BytesIO(data))
    except MotionFormatError as exc:  # name the client's file, not an in-memory buffer
        reason = re.sub(r"^<_io.BytesIO object at 0x[0-9a-f]+>: ", "", str(exc))
        raise MotionFormatError(f"{name}: {reason}") from None
