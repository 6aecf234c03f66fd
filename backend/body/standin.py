"""Generate the stand-in SMPL-X body, in the exact npz format ``smplx`` loads unchanged.

This is NOT the SMPL-X model: it is a hand-designed body (see anatomy.py) with SMPL-X's vertex and
face counts, skeleton, keypoint vertex indices and file layout, so that every code path written for
SMPL-X runs without the licensed files. Drop a licensed ``SMPLX_*.npz`` in by path to get the real
thing. Generation is deterministic and takes a few seconds; the result is cached in the data dir.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from . import anatomy
from .blendshapes import BodyPoints, bone_ends, build_directions
from .correctives import joint_bulge_posedirs
from .eyes import CAP_VERTICES, eye_cap, mirrored_cap
from .joints import (
    EXTRA_VERTEX_IDS,
    JOINT_INDEX,
    NUM_FACES,
    NUM_JOINTS,
    NUM_VERTICES,
    kintree_table,
)
from .landmarks import (
    choose_keypoint_vertices,
    contour_targets,
    project_to_faces,
    renumber_for_keypoints,
    static_face_landmark_targets,
    yaw_bin_angles,
)
from .paths import standin_dir
from .regressor import build_regressor
from .sdf import nearest_primitive
from .skinning import body_skinning_weights
from .surface import mesh_implicit

# Bump whenever the generated data changes, so cached files are rebuilt.
STANDIN_VERSION = 20  # 20: landmark barycentrics from exact closest points
GENDERS = ("neutral", "male", "female")

NUM_BODY_VERTICES = NUM_VERTICES - 2 * CAP_VERTICES  # 9383, eyeballs follow as in SMPL-X
LEFT_EYE_START = NUM_BODY_VERTICES
RIGHT_EYE_START = NUM_BODY_VERTICES + CAP_VERTICES
EYEBALL_RADIUS = 0.0125
EYE_CAP_HALF_ANGLE = np.radians(75.0)

# Fixed shape coefficients that turn the neutral body into the male / female stand-ins.
GENDER_BETAS: dict[str, dict[int, float]] = {
    "neutral": {},
    "male": {0: -0.7, 2: 1.0, 4: -0.6, 9: 0.8, 7: 0.2},
    "female": {0: 0.9, 1: -0.3, 2: -1.2, 4: 1.1, 5: 0.6, 7: -0.3, 9: -0.8},
}


def _bone_tips(joints: np.ndarray) -> dict[int, np.ndarray]:
    """Bone end points where the first child is not the natural continuation (or none exists)."""
    j = JOINT_INDEX
    tips = {
        j["pelvis"]: joints[j["spine1"]],
        j["head"]: np.array([0.0, anatomy.HEAD_TOP_Y - 0.05, 0.0]),
        j["jaw"]: np.array([0.0, 0.315, 0.075]),
        j["left_eye_smplhf"]: joints[j["left_eye_smplhf"]] + np.array([0.0, 0.0, 0.01]),
        j["right_eye_smplhf"]: joints[j["right_eye_smplhf"]] + np.array([0.0, 0.0, 0.01]),
        j["left_wrist"]: joints[j["left_middle1"]],
        j["right_wrist"]: joints[j["right_middle1"]],
        j["left_foot"]: joints[j["left_foot"]] + np.array([0.0, 0.0, 0.08]),
        j["right_foot"]: joints[j["right_foot"]] + np.array([0.0, 0.0, 0.08]),
    }
    for side in ("left", "right"):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tips[j[f"{side}_{finger}3"]] = anatomy.fingertip(side, finger)
    return tips


def _hand_pca(side: str) -> tuple[np.ndarray, np.ndarray]:
    """(45, 45) orthonormal hand pose basis and a relaxed mean hand (axis-angle, 15 joints).

    Component 0 curls all fingers (about the palm's side axis), 1 spreads them, the rest complete
    an orthonormal basis. The mean is a light curl, like SMPL-X's non-flat mean hand.
    """
    sign = -1.0 if side == "left" else 1.0  # curling towards the palm (-y) is -z on the left
    curl = np.zeros((15, 3))
    curl[:, 2] = sign
    curl[12:, :] = [0.0, sign * 0.5, 0.0]  # thumb joints (last three) fold across the palm
    spread = np.zeros((15, 3))
    # hand joints come as index, middle, pinky, ring, thumb (3 each); the pinky spreads most
    spread[:, 1] = np.repeat([1.0, 0.0, -1.0, -0.5, 0.0], 3) * sign
    seed = np.random.default_rng(7 if side == "left" else 8).normal(size=(45, 43))
    columns = np.concatenate([curl.reshape(45, 1), spread.reshape(45, 1), seed], axis=1)
    q, r = np.linalg.qr(columns)
    basis = (q * np.sign(np.diag(r))).T  # rows; row 0 points along +curl, row 1 along +spread
    mean = 0.15 * curl.reshape(45)
    return basis, mean


def _eye_caps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left cap (vertices, faces) and its mirror image, pupils at smplx's eye keypoint indices."""
    pupil_l = EXTRA_VERTEX_IDS["leye"] - LEFT_EYE_START
    pupil_r = EXTRA_VERTEX_IDS["reye"] - RIGHT_EYE_START
    cap_l_v, cap_l_f = eye_cap(anatomy.eye_centers()[0], EYEBALL_RADIUS, EYE_CAP_HALF_ANGLE, pupil_l)
    cap_r_v, cap_r_f = mirrored_cap(cap_l_v, cap_l_f, pupil_l, pupil_r)
    return cap_l_v, cap_l_f, cap_r_v, cap_r_f


def _eyeball_groups(joints: np.ndarray, ends: np.ndarray) -> list[tuple[np.ndarray, BodyPoints]]:
    """Each eyeball's vertex range with its centre, so shape changes move it rigidly."""
    groups = []
    for start, eye_joint, centre in (
        (LEFT_EYE_START, "left_eye_smplhf", anatomy.eye_centers()[0]),
        (RIGHT_EYE_START, "right_eye_smplhf", anatomy.eye_centers()[1]),
    ):
        w = np.zeros((1, NUM_JOINTS))
        w[0, JOINT_INDEX[eye_joint]] = 1.0
        centre_point = BodyPoints(centre[None], w, joints, ends, anatomy.FLOOR_Y)
        groups.append((np.arange(start, start + CAP_VERTICES), centre_point))
    return groups


def _posedirs(vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Joint-bulge pose correctives on the body (the eyeballs stay rigid)."""
    body = trimesh.Trimesh(vertices[:NUM_BODY_VERTICES], faces[faces.max(axis=1) < NUM_BODY_VERTICES],
                           process=False)  # fmt: skip
    normals = np.zeros_like(vertices)
    normals[:NUM_BODY_VERTICES] = body.vertex_normals
    radius = np.linalg.norm(vertices[None, :NUM_BODY_VERTICES] - joints[:, None], axis=-1).min(axis=1)
    movable = np.arange(len(vertices)) < NUM_BODY_VERTICES
    return joint_bulge_posedirs(vertices, normals, joints, radius, movable)


def build_neutral() -> dict[str, np.ndarray]:
    """All arrays of the neutral stand-in, keyed as in an SMPL-X npz."""
    prims = anatomy.body_primitives()
    body_v, body_f = mesh_implicit(prims, NUM_BODY_VERTICES, detail=anatomy.detail_weight)
    body_v, body_f = renumber_for_keypoints(body_v, body_f, choose_keypoint_vertices(body_v))
    owner = np.array([prims[i].bone for i in nearest_primitive(prims, body_v)])
    joints = anatomy.rest_joints()
    ends = bone_ends(joints, _bone_tips(joints))

    cap_l_v, cap_l_f, cap_r_v, cap_r_f = _eye_caps()
    vertices = np.concatenate([body_v, cap_l_v, cap_r_v])
    faces = np.concatenate([body_f, cap_l_f + LEFT_EYE_START, cap_r_f + RIGHT_EYE_START])
    if vertices.shape != (NUM_VERTICES, 3) or faces.shape != (NUM_FACES, 3):
        raise RuntimeError(f"stand-in has {len(vertices)} vertices / {len(faces)} faces")

    weights = np.zeros((NUM_VERTICES, NUM_JOINTS))
    weights[:NUM_BODY_VERTICES] = body_skinning_weights(body_v, body_f, owner, joints, ends)
    weights[LEFT_EYE_START:RIGHT_EYE_START, JOINT_INDEX["left_eye_smplhf"]] = 1.0
    weights[RIGHT_EYE_START:, JOINT_INDEX["right_eye_smplhf"]] = 1.0

    regressor = build_regressor(vertices, weights, joints)
    body = BodyPoints(vertices, weights, joints, ends, anatomy.FLOOR_Y)
    shapedirs, exprdirs = build_directions(body, _eyeball_groups(joints, ends))

    head_w = weights[:, [JOINT_INDEX["head"], JOINT_INDEX["jaw"]]].sum(axis=1)
    face_region = (head_w > 0.5) & (vertices[:, 2] > 0.02)
    face_region[NUM_BODY_VERTICES:] = False
    lmk_faces, lmk_bary = project_to_faces(vertices, faces, static_face_landmark_targets(), face_region)
    contour = [project_to_faces(vertices, faces, contour_targets(a), face_region) for a in yaw_bin_angles()]

    hands_l, mean_l = _hand_pca("left")
    hands_r, mean_r = _hand_pca("right")
    return {
        "v_template": vertices,
        "f": faces.astype(np.uint32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree_table(),
        "shapedirs": np.concatenate([shapedirs, exprdirs], axis=2).astype(np.float32),
        "posedirs": _posedirs(vertices, faces, joints).astype(np.float32),
        "hands_componentsl": hands_l,
        "hands_componentsr": hands_r,
        "hands_meanl": mean_l,
        "hands_meanr": mean_r,
        "lmk_faces_idx": lmk_faces,
        "lmk_bary_coords": lmk_bary,
        # one 17-point jaw contour per head-yaw bin, as smplx's use_face_contour expects
        "dynamic_lmk_faces_idx": np.stack([c[0] for c in contour]),
        "dynamic_lmk_bary_coords": np.stack([c[1] for c in contour]),
        "standin_version": np.array(STANDIN_VERSION),
        "standin_note": np.array("avatar-studio stand-in body, not the licensed SMPL-X model"),
    }


def for_gender(neutral: dict[str, np.ndarray], gender: str) -> dict[str, np.ndarray]:
    """The male / female stand-ins: the neutral body moved along fixed shape directions."""
    out = dict(neutral)
    offset = np.zeros_like(neutral["v_template"])
    for k, c in GENDER_BETAS[gender].items():
        offset += c * neutral["shapedirs"][:, :, k].astype(np.float64)
    out["v_template"] = neutral["v_template"] + offset
    out["gender"] = np.array(gender)
    return out


def model_file(gender: str, root: Path | None = None) -> Path:
    return standin_dir(root) / "smplx" / f"SMPLX_{gender.upper()}.npz"


def _is_current(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with np.load(path) as data:
            return int(data["standin_version"]) == STANDIN_VERSION
    except (OSError, KeyError, ValueError):
        return False


def ensure_standin(gender: str = "neutral", root: Path | None = None) -> Path:
    """Path of the cached stand-in npz for ``gender``, generating all genders if needed.

    Safe under concurrency: one process generates (file lock), files appear atomically.
    """
    gender = gender.lower()
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; expected one of {GENDERS}")
    target = model_file(gender, root)
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".standin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(target):
            return target
        neutral = build_neutral()
        for g in GENDERS:
            data = for_gender(neutral, g)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.tmp")
            os.close(fd)
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **data)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary shared data
            os.replace(tmp, model_file(g, root))
    return target
