"""Avatars made by ``avatar.from_views`` as people of a clip: load a folder, pose it by LBS.

A folder written by ``avatar-studio avatar --out DIR`` (``backend.avatar.pipeline.write_outputs``)
holds ``avatar_arrays.npz`` (vertices in SMPL-X's zero pose, faces, uvs, texture, per-vertex
skinning weights over the 55 SMPL-X joints, parents, rest joints, part labels) and ``avatar.json``.
The avatar is posed by linear blend skinning with its own weights and rest joints, driven by the
same SMPL-X pose vector as the body it was built on (the bind pose is SMPL-X's zero pose, so a
SMPL-X / AMASS pose drives it as it drives the body; no pose correctives). The SMPL-X parameters
written as ground truth for such a person are those of that body: ``betas`` from ``avatar.json``
(key ``betas``, or ``smplx.betas``) when present, else zeros; ``gender`` likewise, else neutral.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from protocol.rotations import aa_to_matrix

NUM_JOINTS = 55
ARRAYS = "avatar_arrays.npz"
SUMMARY = "avatar.json"


class AvatarError(ValueError):
    """A folder that is not a usable avatar; the message says what is wrong."""


@dataclass(frozen=True)
class AvatarPerson:
    """An avatar ready to pose and render (arrays are read-only, shared between clips)."""

    path: str
    vertices: np.ndarray  # (N,3) float32, bind pose (SMPL-X zero pose, no translation)
    faces: np.ndarray  # (F,3) int64
    uvs: np.ndarray  # (N,2) float32, v = 0 at the texture's bottom row
    texture: np.ndarray  # (S,S,3) float32 in [0, 1], row 0 = top
    weights: np.ndarray  # (N,55) float32, rows sum to 1
    parents: np.ndarray  # (55,) int64, -1 for the root
    joints_rest: np.ndarray  # (55,3) float64
    part_labels: np.ndarray  # (N,) int64 into backend.body.joints.PART_NAMES
    betas: np.ndarray | None  # of the body it was built on, when avatar.json says
    gender: str


def _array(data: np.lib.npyio.NpzFile, key: str, folder: Path) -> np.ndarray:
    if key not in data.files:
        raise AvatarError(f"{folder}: {ARRAYS} has no {key!r}")
    return data[key]


def load_avatar_person(folder: str | Path) -> AvatarPerson:
    """The avatar in ``folder`` (``avatar_arrays.npz`` + ``avatar.json``), checked; cached per path."""
    return _load(str(Path(folder).expanduser().resolve()))


@lru_cache(maxsize=32)
def _load(folder_name: str) -> AvatarPerson:
    folder = Path(folder_name)
    if not (folder / ARRAYS).is_file():
        raise AvatarError(f"{folder}: no {ARRAYS} (an avatar folder is what "
                          "`avatar-studio avatar --out DIR` writes)")
    summary: dict = {}
    if (folder / SUMMARY).is_file():
        try:
            summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AvatarError(f"{folder / SUMMARY}: not JSON: {exc}") from None
        if not isinstance(summary, dict):
            raise AvatarError(f"{folder / SUMMARY}: expected an object")
    try:
        with np.load(folder / ARRAYS, allow_pickle=False) as data:
            arrays = {k: _array(data, k, folder) for k in
                      ("vertices", "faces", "uvs", "texture", "weights", "parents", "joints_rest")}
            labels = data["part_labels"] if "part_labels" in data.files else None
    except (OSError, ValueError) as exc:
        raise AvatarError(f"{folder / ARRAYS}: {exc}") from None
    v, f, uv, tex = arrays["vertices"], arrays["faces"], arrays["uvs"], arrays["texture"]
    w, parents, joints = arrays["weights"], arrays["parents"], arrays["joints_rest"]
    n = len(v)
    problems = []
    if v.ndim != 2 or v.shape[1] != 3 or n == 0 or not np.isfinite(v).all():
        problems.append(f"vertices {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min(initial=0) < 0 or f.max(initial=0) >= n:
        problems.append(f"faces {f.shape} (indices in [0, {n}))")
    if uv.shape != (n, 2) or not np.isfinite(uv).all():
        problems.append(f"uvs {uv.shape}")
    if tex.ndim != 3 or tex.shape[2] < 3 or min(tex.shape[:2]) < 1:
        problems.append(f"texture {tex.shape}")
    if w.shape != (n, NUM_JOINTS) or not np.isfinite(w).all():
        problems.append(f"weights {w.shape} (need ({n}, {NUM_JOINTS}))")
    if parents.shape != (NUM_JOINTS,) or any(not -1 <= int(p) < j for j, p in enumerate(parents)):
        problems.append(f"parents {parents.shape} (a parent precedes its child)")
    if joints.shape != (NUM_JOINTS, 3):
        problems.append(f"joints_rest {joints.shape}")
    if labels is not None and labels.shape != (n,):
        problems.append(f"part_labels {labels.shape}")
    if problems:
        raise AvatarError(f"{folder / ARRAYS}: bad arrays: {', '.join(problems)}")
    texture = tex[..., :3].astype(np.float32)
    if tex.dtype == np.uint8:
        texture /= 255.0
    betas = summary.get("betas")
    if betas is None and isinstance(summary.get("smplx"), dict):
        betas = summary["smplx"].get("betas")
    gender = summary.get("gender", "neutral")
    if gender not in ("neutral", "male", "female"):
        gender = "neutral"
    out = AvatarPerson(
        path=str(folder), vertices=v.astype(np.float32), faces=f.astype(np.int64), uvs=uv.astype(np.float32),
        texture=np.clip(texture, 0.0, 1.0), weights=w.astype(np.float32), parents=parents.astype(np.int64),
        joints_rest=joints.astype(np.float64),
        part_labels=(labels.astype(np.int64) if labels is not None else np.zeros(n, dtype=np.int64)),
        betas=None if betas is None else np.asarray(betas, dtype=np.float32).reshape(-1),
        gender=gender)
    for a in (out.vertices, out.faces, out.uvs, out.texture, out.weights, out.parents, out.joints_rest,
              out.part_labels):
        a.flags.writeable = False
    return out


def skinning_transforms(full_pose: np.ndarray, joints_rest: np.ndarray, parents: np.ndarray,
                        transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and joint the LBS transforms (F,55,3,4) and the posed joints (F,55,3).

    SMPL-X's convention: joint j's world transform is its parent's times a rotation about the rest
    joint; the root turns about the rest pelvis and ``transl`` is added last.
    """
    F = full_pose.shape[0]
    rot = aa_to_matrix(full_pose.reshape(F, NUM_JOINTS, 3).astype(np.float64))  # (F,55,3,3)
    G_rot = np.empty((F, NUM_JOINTS, 3, 3))
    G_pos = np.empty((F, NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        p = int(parents[j])
        if p < 0:
            G_rot[:, j] = rot[:, j]
            G_pos[:, j] = joints_rest[j] + transl
        else:
            G_rot[:, j] = G_rot[:, p] @ rot[:, j]
            G_pos[:, j] = np.einsum("fij,j->fi", G_rot[:, p], joints_rest[j] - joints_rest[p]) + G_pos[:, p]
    A = np.empty((F, NUM_JOINTS, 3, 4))
    A[..., :3] = G_rot
    A[..., 3] = G_pos - np.einsum("fjik,jk->fji", G_rot, joints_rest)
    return A, G_pos


def pose_avatar(avatar: AvatarPerson, full_pose: np.ndarray,
                transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posed vertices (F,N,3) and joints (F,55,3), float64, of a (F,55,3) axis-angle pose, (F,3) transl."""
    A, joints = skinning_transforms(full_pose, avatar.joints_rest, avatar.parents,
                                    np.asarray(transl, np.float64))
    # (N,55) @ (F,55,12) through BLAS (einsum's loop took seconds for a 30k-vertex avatar).
    blended = np.matmul(avatar.weights.astype(np.float64), A.reshape(len(A), NUM_JOINTS, 12))
    blended = blended.reshape(len(A), -1, 3, 4)
    v = avatar.vertices.astype(np.float64)
    return np.einsum("fnik,nk->fni", blended[..., :3], v) + blended[..., 3], joints
