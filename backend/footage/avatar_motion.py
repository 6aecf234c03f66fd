"""The avatar posed for each footage frame: a motion placed on the shot's ground plane, or a track.

A motion (procedural, AMASS, BVH, SMPL-X payload: :func:`backend.jobs.body.load_motion`) is
resampled to the footage's rate and held at its last frame when shorter than the shot. It is then
placed: turned by ``heading`` degrees about the up axis through its first root position, moved so
its root starts above ``(place[0], place[2])``, and lifted so the feet stand on the ground plane
``y = place[1]`` (the median over frames of the lowest vertex: the stance foot of a walk, the
landing of a jump; a motion's own ground is not trusted, procedural ones hang the body from the
origin). A track (replacement mode) is the SMPL-X world track of a person in the shot, used as
given (it already stands where that person stands), indexed by footage frame like the camera.

Posing is :func:`backend.clips.avatars.pose_avatar` (LBS with the avatar's own weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from backend.body.motion import Motion, resample
from backend.clips.avatars import AvatarPerson, pose_avatar


@dataclass(frozen=True)
class PosedAvatar:
    """The avatar for each footage frame used (world metres, Y up)."""

    vertices: np.ndarray  # (F, N, 3) float32
    joints: np.ndarray  # (F, 55, 3) float32
    root: np.ndarray  # (F, 3) float32, the pelvis
    faces: np.ndarray  # (T, 3) int64
    ground_y: float  # the ground plane the character stands on


def fit_to_frames(motion: Motion, n_frames: int, fps: float) -> Motion:
    """``motion`` at ``fps`` with exactly ``n_frames`` frames (its last frame held when shorter)."""
    if abs(motion.fps - fps) > 1e-9:
        motion = resample(motion, fps)
    if motion.n_frames >= n_frames:
        return motion.frames(0, n_frames)
    index = np.minimum(np.arange(n_frames), motion.n_frames - 1)
    pose, transl = motion.full_pose()[index], motion.transl[index]
    return Motion.from_full_pose(pose, transl, fps, betas=motion.betas, gender=motion.gender)


def placed_pose(full_pose: np.ndarray, transl: np.ndarray, rest_pelvis: np.ndarray,
                place: Sequence[float], heading_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``(full_pose, transl)`` of the motion turned by ``heading_deg`` about +Y through its first
    root position and moved so that root is above ``place`` (x, z; the height is set by the caller).

    SMPL-X turns the body about the rest pelvis J0 and adds ``transl``: a vertex is
    ``R_go (v - J0) + J0 + transl``, its root ``p = J0 + transl``. Turning the whole body by ``Ry``
    about ``p(0)`` and moving ``p(0)`` to ``target``: ``R_go' = Ry R_go``,
    ``transl' = Ry (p - p(0)) + target - J0``."""
    pose = np.array(full_pose, np.float64, copy=True)
    Ry = Rotation.from_rotvec([0.0, np.radians(heading_deg), 0.0])
    pose[:, 0] = (Ry * Rotation.from_rotvec(pose[:, 0])).as_rotvec()
    root = np.asarray(transl, np.float64) + rest_pelvis
    target = np.array([place[0], root[0, 1], place[2]])
    return pose, Ry.apply(root - root[0]) + target - rest_pelvis


def track_for_frames(track: Mapping[str, Any], numbers: Sequence[int]) -> Motion:
    """The SMPL-X track's entries for the footage frames ``numbers``: one entry per footage frame
    from ``track["frame_start"]`` (default: the first frame used), covering every frame used."""
    from backend.footage.source import FootageError

    try:
        motion = Motion.from_payload(dict(track))
    except ValueError as exc:
        raise FootageError(f"track: {exc}") from None
    first = int(track.get("frame_start") or numbers[0])
    index = np.asarray(numbers) - first
    if index[0] < 0 or index[-1] >= motion.n_frames:
        raise FootageError(f"track: covers footage frames {first}-{first + motion.n_frames - 1}, the job "
                           f"uses {numbers[0]}-{numbers[-1]}")
    full, transl = motion.full_pose()[index], motion.transl[index]
    return Motion.from_full_pose(full, transl, motion.fps, betas=motion.betas, gender=motion.gender)


def pose_for_footage(avatar: AvatarPerson, motion: Motion, *, place: Sequence[float] | None,
                     heading_deg: float = 0.0) -> PosedAvatar:
    """The avatar posed by ``motion`` (one frame per footage frame). ``place`` None: the motion is a
    track, used as given (its ground is the lowest point it reaches, for the shadow)."""
    full, transl = motion.full_pose(), motion.transl
    if place is not None:
        full, transl = placed_pose(full, transl, avatar.joints_rest[0], place, heading_deg)
    verts, joints = pose_avatar(avatar, full, transl)
    lowest = float(np.median(verts[..., 1].min(axis=1)))
    if place is not None:
        lift = float(place[1]) - lowest
        verts[..., 1] += lift
        joints[..., 1] += lift
        ground = float(place[1])
    else:
        ground = lowest
    return PosedAvatar(verts.astype(np.float32), joints.astype(np.float32),
                       joints[:, 0].astype(np.float32), avatar.faces, ground)
