"""Sample one clip of a spec: people (body, shape, look, motion, place) and cameras, from its seed.

Everything random comes from one ``numpy.random.Generator`` seeded by
:func:`backend.clips.spec.clip_seed`, drawn in a fixed order, so the same spec and clip index give
the same clip on any machine and with any number of workers.

People stand on the ground plane (y = 0: each body is lifted so its lowest vertex over the clip
touches it) and never overlap: each person's footprint is, per frame, a circle around its pelvis
(radius: the farthest vertex from the pelvis seen from above over the whole clip); positions and
headings are rejection-sampled until every pair of circles stays apart in every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backend.body.joints import JOINT_NAMES, PART_NAMES
from backend.body.loading import load_body_model
from backend.body.model import BodyModel, BodyParams
from backend.body.motion import Motion, resample
from backend.body.procedural import load_motion
from backend.clips.appearance import Look, sample_look
from backend.clips.avatars import AvatarPerson, load_avatar_person, pose_avatar
from backend.clips.spec import CameraSpec, ClipSpec, SpecError, clip_id, clip_seed
from backend.render.threads import torch_threads
from protocol.cameras import look_at
from protocol.rotations import aa_to_matrix, matrix_to_aa
from protocol.smplx import PER_FRAME_FIELDS

PLACEMENT_TRIES = 400
LOOK_STREAM = 1 << 20  # spawn key of the look's random stream under the clip's seed


class PlacementError(SpecError):
    """The people of a clip cannot be placed in the spec's area without overlapping."""


@dataclass
class Person:
    """One person of a clip: SMPL-X parameters in the world frame (float32) and a look."""

    gender: str
    params: dict[str, np.ndarray]  # PER_FRAME_FIELDS (F, w) + betas (B,) + expression (E,)
    colors: np.ndarray  # (V,3) float32 vertex colours in [0, 1]; (0,3) for an avatar (textured)
    motion: dict[str, Any]  # source, start, mirrored, speed, yaw_deg, position
    avatar: AvatarPerson | None = None  # an avatar posed by LBS instead of the SMPL-X body mesh


@dataclass
class Camera:
    name: str
    kind: str
    K: np.ndarray  # (F,3,3)
    R: np.ndarray  # (F,3,3)
    t: np.ndarray  # (F,3)


@dataclass
class ClipPlan:
    index: int
    clip_id: str
    seed: list[int]  # the SeedSequence's entropy and spawn key, as written to the manifest
    people: list[Person]
    cameras: list[Camera]
    frames: int
    width: int
    height: int
    fps: float
    near: float
    far: float
    look: Look | None = None  # None: the render's plain look (vertex colours, flat background)
    info: dict[str, Any] = field(default_factory=dict)
    # Per person, the posed vertices (F,V,3) and 127 keypoints (F,127,3) in the world, float32: the
    # body posed before placement, moved by the same rigid map as the root parameters (equal to
    # re-posing the stored parameters to ~1e-6 m; saves a second pass through the body model).
    posed: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


# --- posing ------------------------------------------------------------------------------------


def body_params(params: dict[str, np.ndarray], model: BodyModel) -> BodyParams:
    return BodyParams.from_arrays(params, num_betas=model.num_betas, num_expression=model.num_expression)


def pose(model: BodyModel, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Posed vertices (F,V,3) and the 127 keypoints (F,127,3) (smplx's joint output order)."""
    with torch.no_grad(), torch_threads(1):
        out = model(body_params(params, model))
        keypoints = torch.cat([out.joints, out.extra_joints, out.landmarks], dim=1)
    return out.vertices.numpy(), keypoints.numpy()


def pose_person(model: BodyModel, params: dict[str, np.ndarray],
                avatar: AvatarPerson | None) -> tuple[np.ndarray, np.ndarray]:
    """Posed vertices (F,V,3) and 127 keypoints (F,127,3) of a person, float32.

    For an avatar, its own mesh posed by LBS with its weights and rest joints; the 55 skeleton
    keypoints are its posed joints, the 72 surface keypoints (smplx's vertex keypoints and face
    landmarks) those of the SMPL-X body of ``params`` (the body the avatar was built on).
    """
    verts, keypoints = pose(model, params)
    if avatar is None:
        return verts, keypoints
    full = body_params(params, model).full_pose().numpy()
    av_verts, av_joints = pose_avatar(avatar, full, params["transl"])
    keypoints = keypoints.copy()
    keypoints[:, :av_joints.shape[1]] = av_joints
    return av_verts.astype(np.float32), keypoints


def rest_pelvis(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """The root joint at rest for these betas: SMPL-X rotates ``global_orient`` about it."""
    with torch.no_grad():
        return model.rest_joints(torch.as_tensor(betas, dtype=torch.float32))[0].numpy().astype(np.float64)


def person_pelvis(model: BodyModel, person: Person) -> np.ndarray:
    """The point ``global_orient`` turns about: the avatar's rest root joint (LBS) or SMPL-X's."""
    if person.avatar is not None:
        return person.avatar.joints_rest[0].astype(np.float64)
    return rest_pelvis(model, person.params["betas"])


def transform_root(global_orient: np.ndarray, transl: np.ndarray, pelvis: np.ndarray,
                   R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root parameters of the same body moved rigidly by x -> R x + t (per frame R (F,3,3) or (3,3)).

    A posed point is ``G (v - j0) + j0 + transl`` with ``G`` the root rotation and ``j0`` the rest
    pelvis; so the moved body has root rotation ``R G`` and ``transl' = R (j0 + transl) + t - j0``.
    The same formula gives the camera-frame parameters pose estimators train on (R, t of a camera).
    """
    G = aa_to_matrix(np.asarray(global_orient, dtype=np.float64))
    R = np.broadcast_to(np.asarray(R, dtype=np.float64), G.shape)
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), transl.shape)
    orient = matrix_to_aa(R @ G)
    moved = np.einsum("fij,fj->fi", R, pelvis + np.asarray(transl, dtype=np.float64)) + t - pelvis
    return orient, moved


# --- motion ------------------------------------------------------------------------------------


def mirror_joint_index() -> np.ndarray:
    index = np.arange(len(JOINT_NAMES))
    for j, name in enumerate(JOINT_NAMES):
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if name.startswith(a) and b + name[len(a):] in JOINT_NAMES:
                index[j] = JOINT_NAMES.index(b + name[len(a):])
    return index


def mirror_motion(motion: Motion) -> Motion:
    """The motion reflected through the x = 0 plane: left and right joints swap, each rotation
    (x, y, z) becomes (x, -y, -z), the translation's x flips."""
    pose_ = motion.full_pose()[:, mirror_joint_index()] * np.array([1.0, -1.0, -1.0])
    transl = motion.transl * np.array([-1.0, 1.0, 1.0])
    return Motion.from_full_pose(pose_, transl, motion.fps, betas=motion.betas, expression=motion.expression,
                                 gender=motion.gender, source_model=motion.source_model)


def sample_motion(source: str, frames: int, fps: float, speed: float, mirror: bool,
                  rng: np.random.Generator) -> tuple[Motion, int]:
    """``frames`` frames of ``source`` at ``fps``, played ``speed`` times as fast, from a random start."""
    is_file = source.lower().endswith((".npz", ".bvh"))
    needed = math.ceil((frames + 1) * speed) + 1
    base = load_motion(source, fps=fps) if is_file else load_motion(source, fps=fps, n_frames=2 * needed)
    motion = resample(base, fps / speed) if speed != 1.0 and base.n_frames > 1 else base
    start = int(rng.integers(0, motion.n_frames - frames + 1)) if motion.n_frames > frames else 0
    index = np.minimum(np.arange(start, start + frames), motion.n_frames - 1)  # short: hold the end
    motion = Motion.from_full_pose(motion.full_pose()[index], motion.transl[index], fps, betas=motion.betas,
                                   expression=motion.expression, gender=motion.gender,
                                   source_model=motion.source_model)
    if mirror:
        motion = mirror_motion(motion)
    # Start where the person is placed: remove the window's horizontal offset.
    motion.transl = motion.transl - motion.transl[0] * np.array([1.0, 0.0, 1.0])
    return motion, start


# --- look --------------------------------------------------------------------------------------

SKIN_TONES = np.array([(0.96, 0.80, 0.69), (0.91, 0.72, 0.58), (0.78, 0.58, 0.44), (0.60, 0.42, 0.30),
                       (0.42, 0.29, 0.20), (0.30, 0.20, 0.14)])
_SKIN = ("head", "neck", "hand_l", "hand_r")
_TOP = ("torso", "upper_arm_l", "upper_arm_r")
_SLEEVE = ("lower_arm_l", "lower_arm_r")
_BOTTOM = ("upper_leg_l", "lower_leg_l", "upper_leg_r", "lower_leg_r")
_SHOES = ("foot_l", "foot_r")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h, s, v))


def sample_colors(rest_vertices: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Procedural clothing as vertex colours: skin tone, a top (striped or plain, long or short
    sleeves), trousers, shoes; so that people differ in every clip."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    top = _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95))
    stripe = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.6, 1.0))
    bottom = _hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.7))
    shoes = np.full(3, rng.uniform(0.05, 0.3))
    long_sleeves = rng.random() < 0.5
    striped = rng.random() < 0.5
    period = rng.uniform(0.04, 0.12)
    part_color = {}
    for name in PART_NAMES:
        part_color[name] = (skin if name in _SKIN or (name in _SLEEVE and not long_sleeves)
                            else top if name in _TOP + _SLEEVE else bottom if name in _BOTTOM else shoes)
    colors = np.stack([part_color[PART_NAMES[int(k)]] for k in labels])
    if striped:
        is_top = np.isin(labels, [PART_NAMES.index(n) for n in _TOP])
        band = np.floor(rest_vertices[:, 1] / period).astype(np.int64) % 2 == 1
        colors[is_top & band] = stripe
    return np.clip(colors, 0.0, 1.0).astype(np.float32)


# --- placement ---------------------------------------------------------------------------------


def _footprint(verts: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-frame pelvis (x, z) (F,2) and the radius of a circle round it holding the body, all frames."""
    centre = keypoints[:, 0, [0, 2]]
    radius = float(np.linalg.norm(verts[:, :, [0, 2]] - centre[:, None], axis=-1).max())
    return centre, radius


def _yaw(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def place_people(footprints: list[tuple[np.ndarray, float]], area: float, margin: float,
                 rng: np.random.Generator) -> list[tuple[float, np.ndarray]]:
    """(yaw, (x, z) offset) per person such that no two footprints meet in any frame."""
    placed: list[tuple[np.ndarray, float]] = []
    out: list[tuple[float, np.ndarray]] = []
    for n, (centre, radius) in enumerate(footprints):
        for _ in range(PLACEMENT_TRIES):
            yaw = float(rng.uniform(0.0, 2 * math.pi))
            offset = rng.uniform(-area / 2, area / 2, size=2)
            R = _yaw(yaw)[np.ix_([0, 2], [0, 2])]
            moved = centre @ R.T + offset
            if all(np.linalg.norm(moved - other, axis=1).min() >= radius + r + margin for other, r in placed):
                placed.append((moved, radius))
                out.append((yaw, offset))
                break
        else:
            raise PlacementError(
                f"people: cannot place person {n + 1} of {len(footprints)} without overlapping the others "
                f"in a {area:g} m square ({PLACEMENT_TRIES} tries); raise people.area or lower people.count")
    return out


# --- cameras -----------------------------------------------------------------------------------


def _intrinsics(spec: ClipSpec, rig: CameraSpec, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    fov_y = float(rng.uniform(*rig.fov_deg))
    f = 0.5 * spec.height / math.tan(math.radians(fov_y) / 2)
    jitter = rng.uniform(-rig.principal_jitter, rig.principal_jitter, size=2)
    K = np.array([[f, 0.0, spec.width / 2 + jitter[0] * spec.width],
                  [0.0, f, spec.height / 2 + jitter[1] * spec.height], [0.0, 0.0, 1.0]])
    fov_min = 2 * math.atan(min(spec.width, spec.height) / (2 * f))  # the tighter direction
    return K, fov_min


def _smooth_walk(rng: np.random.Generator, frames: int, scale: float) -> np.ndarray:
    """(F,3) smooth random walk: Gaussian steps, box-filtered twice, scaled to ``scale`` metres RMS."""
    steps = rng.normal(size=(frames + 16, 3)).cumsum(0)
    kernel = np.ones(8) / 8
    for _ in range(2):
        steps = np.stack([np.convolve(steps[:, k], kernel, mode="same") for k in range(3)], 1)
    walk = steps[8:8 + frames] - steps[8:8 + frames].mean(0)
    rms = float(np.sqrt((walk ** 2).mean())) or 1.0
    return walk * (scale / rms)


def sample_cameras(spec: ClipSpec, centre: np.ndarray, radius: float,
                   rng: np.random.Generator) -> list[Camera]:
    """Every rig's cameras, aimed at the people's bounding sphere (centre, radius) so it fits."""
    F = spec.frames
    phase = np.linspace(0.0, 1.0, F) if F > 1 else np.zeros(1)
    cameras: list[Camera] = []
    for rig in spec.cameras:
        if rig.path is not None:  # an explicit camera (e.g. from Blender): nothing sampled, no draw
            K, R, t = (np.asarray(rig.path[k], dtype=np.float64) for k in ("K", "R", "t"))
            cameras.append(Camera(f"cam_{len(cameras):02d}", rig.kind, K, R, t))
            continue
        azimuth0 = float(rng.uniform(0.0, 2 * math.pi))
        for i in range(rig.count):
            K, fov = _intrinsics(spec, rig, rng)
            distance = radius / math.sin(fov / 2) * float(rng.uniform(*rig.distance))
            height = float(rng.uniform(*rig.height))
            azimuth = azimuth0 + 2 * math.pi * i / rig.count
            if rig.kind != "ring":
                azimuth = float(rng.uniform(0.0, 2 * math.pi))
            rise = height - centre[1]
            ground = math.sqrt(max(distance ** 2 - rise ** 2, (0.3 * distance) ** 2))
            az = np.full(F, azimuth)
            scale = np.ones(F)
            target = np.tile(centre, (F, 1))
            shake = np.zeros((F, 3))
            if rig.kind == "orbit":
                sweep = math.radians(float(rng.uniform(*rig.sweep_deg))) * (1 if rng.random() < 0.5 else -1)
                az = azimuth + sweep * phase
            elif rig.kind == "dolly":
                scale = 1.0 + (float(rng.uniform(*rig.dolly)) - 1.0) * phase
            elif rig.kind == "handheld":
                shake = _smooth_walk(rng, F, rig.shake)
                target = target + _smooth_walk(rng, F, rig.shake)
            eye = np.stack([centre[0] + ground * scale * np.sin(az), centre[1] + rise * scale,
                            centre[2] + ground * scale * np.cos(az)], 1) + shake
            R = np.empty((F, 3, 3))
            t = np.empty((F, 3))
            for f in range(F):
                R[f], t[f] = look_at(eye[f], target[f])
            cameras.append(Camera(f"cam_{len(cameras):02d}", rig.kind, np.tile(K, (F, 1, 1)), R, t))
    return cameras


# --- the clip ----------------------------------------------------------------------------------


def sampled_people(spec: ClipSpec, model: BodyModel | None, rng: np.random.Generator
                   ) -> tuple[list[Person], list[tuple[np.ndarray, np.ndarray]]]:
    """The spec's sampled people (body or avatar, shape, look, motion), placed on the ground apart;
    with their posed vertices and keypoints in the world."""
    lo, hi = spec.people.count
    n_people = int(rng.integers(lo, hi + 1))
    F = spec.frames
    people: list[Person] = []
    posed: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(n_people):
        gender = str(spec.people.genders[int(rng.integers(len(spec.people.genders)))])
        avatar = None
        if spec.people.avatars:  # drawn only then: specs without avatars sample as before
            pick = int(rng.integers(len(spec.people.avatars)))
            if rng.random() < spec.people.avatar_probability:
                avatar = load_avatar_person(spec.people.avatars[pick])
                gender = avatar.gender
        body = model if model is not None and gender == "neutral" else load_body_model(gender)
        betas = (rng.normal(size=body.num_betas) * spec.people.betas_std).astype(np.float32)
        if avatar is not None:
            betas = np.zeros(body.num_betas, dtype=np.float32)
            if avatar.betas is not None:
                n = min(len(avatar.betas), body.num_betas)
                betas[:n] = avatar.betas[:n]
        source = spec.motion.sources[int(rng.integers(len(spec.motion.sources)))]
        speed = float(rng.uniform(*spec.motion.speed))
        mirrored = bool(rng.random() < spec.motion.mirror)
        motion, start = sample_motion(source, F, spec.fps, speed, mirrored, rng)
        params = {k: getattr(motion, k).astype(np.float32) for k in PER_FRAME_FIELDS}
        params["betas"] = betas
        params["expression"] = np.zeros(body.num_expression, dtype=np.float32)
        with torch.no_grad():
            rest = body.rest_vertices(torch.as_tensor(betas), None).numpy()
        colors = sample_colors(rest, body.part_labels(), rng)
        info = {"source": source, "start": start, "mirrored": mirrored, "speed": speed}
        if avatar is not None:
            colors = np.zeros((0, 3), dtype=np.float32)
            info["avatar"] = avatar.path
        people.append(Person(gender, params, colors, info, avatar))
        posed.append(pose_person(body, params, avatar))
    footprints = [_footprint(v, k) for v, k in posed]
    places = place_people(footprints, spec.people.area, spec.people.margin, rng)
    placed = []
    for person, (verts, keypoints), (yaw, offset) in zip(people, posed, places, strict=True):
        body = model if model is not None and person.gender == "neutral" else load_body_model(person.gender)
        pelvis = person_pelvis(body, person)
        R = _yaw(yaw)
        moved = verts @ R.T
        lift = -float(moved[..., 1].min())
        t = np.array([offset[0], lift, offset[1]])
        orient, transl = transform_root(person.params["global_orient"], person.params["transl"], pelvis, R, t)
        person.params["global_orient"] = orient.astype(np.float32)
        person.params["transl"] = transl.astype(np.float32)
        person.motion.update(yaw_deg=math.degrees(yaw), position=[float(offset[0]), float(offset[1])])
        placed.append(((moved + t).astype(np.float32), (keypoints @ R.T + t).astype(np.float32)))
    return people, placed


def _fit(values: list[float], n: int) -> np.ndarray:
    """Coefficients padded with zeros / truncated to the model's count (as body.mesh does)."""
    out = np.zeros(n, dtype=np.float32)
    given = np.asarray(values, dtype=np.float32)[:n]
    out[:len(given)] = given
    return out


def explicit_people(spec: ClipSpec, model: BodyModel | None, rng: np.random.Generator
                    ) -> tuple[list[Person], list[tuple[np.ndarray, np.ndarray]]]:
    """The spec's explicit people (``people.explicit``): posed and placed exactly as given (no
    motion window, no mirror, no re-placement, no lift to the ground); only the look is drawn."""
    people: list[Person] = []
    posed: list[tuple[np.ndarray, np.ndarray]] = []
    for i, entry in enumerate(spec.people.explicit):
        gender = str(entry["gender"])
        body = model if model is not None and gender == "neutral" else load_body_model(gender)
        params = {k: np.asarray(entry[k], dtype=np.float32) for k in PER_FRAME_FIELDS}
        params["betas"] = _fit(entry["betas"], body.num_betas)
        params["expression"] = _fit(entry["expression"], body.num_expression)
        with torch.no_grad():
            rest = body.rest_vertices(torch.as_tensor(params["betas"]), None).numpy()
        colors = sample_colors(rest, body.part_labels(), rng)
        people.append(Person(gender, params, colors, {"source": "explicit", "explicit": i}))
        verts, keypoints = pose_person(body, params, None)
        posed.append((verts.astype(np.float32), keypoints.astype(np.float32)))
    return people, posed


def plan_clip(spec: ClipSpec, index: int, model: BodyModel | None = None) -> ClipPlan:
    """Sample clip ``index`` of ``spec`` (deterministic). Raises :class:`PlacementError`."""
    seq = clip_seed(spec.seed, index)
    rng = np.random.default_rng(seq)
    F = spec.frames
    if spec.people.explicit:
        people, placed = explicit_people(spec, model, rng)
    else:
        people, placed = sampled_people(spec, model, rng)
    allv = np.concatenate([v.reshape(-1, 3) for v, _ in placed])
    lo_, hi_ = allv.min(0), allv.max(0)
    centre = (lo_ + hi_) / 2
    radius = float(np.linalg.norm(allv - centre, axis=1).max())
    cameras = sample_cameras(spec, centre, radius, rng)
    # The look has a stream of its own (a child of the clip's seed), so adding appearance options
    # never changes the people and cameras a seed gives.
    look = sample_look(spec.appearance, np.random.default_rng(
        np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, LOOK_STREAM))))
    return ClipPlan(index=index, clip_id=clip_id(index), seed=[int(spec.seed), index], people=people,
                    cameras=cameras, frames=F, width=spec.width, height=spec.height, fps=spec.fps,
                    near=spec.near, far=spec.far, look=look,
                    info={"scene_centre": centre.tolist(), "scene_radius": radius, "appearance": look.info},
                    posed=placed)
