"""What the clip renderer draws besides the cameras: the people as one mesh, the key light's shadow
camera, the contact spheres, and the look's arrays (ground texture, background) for the shader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.body.model import BodyModel
from backend.clips.appearance import GROUND_FADE_M, Look
from backend.clips.sample import ClipPlan
from backend.preview.pipeline import KEYPOINT_NAMES
from protocol.cameras import look_at

SHADOW_SIZE = 384  # shadow map side (texels); the map covers the people's bounding sphere
# Contact occluders: spheres at these keypoints, radius in metres (feet touch the ground).
CONTACT_SPHERES = {"left_ankle": 0.06, "right_ankle": 0.06, "left_foot": 0.05, "right_foot": 0.05,
                   "left_heel": 0.04, "right_heel": 0.04, "left_big_toe": 0.035, "right_big_toe": 0.035,
                   "left_knee": 0.08, "right_knee": 0.08}


@dataclass
class PeopleMesh:
    """Every person of a clip concatenated (person p's vertices from ``v_off[p]``, faces from
    ``f_off[p]``), with what the shader needs per face and vertex."""

    verts: torch.Tensor  # (F,V,3) float32 world
    faces: np.ndarray  # (Fc,3) int64, global vertex indices
    labels: np.ndarray  # (V,) int64 part labels
    colors: np.ndarray  # (V,3) float32 (zeros for textured people)
    uvs: np.ndarray  # (V,2) float32 (zeros for vertex-coloured people)
    face_person: np.ndarray  # (Fc,) int32
    person_tex: np.ndarray  # (P,) int64: texture index or -1 (vertex colours)
    tex: np.ndarray  # (N,3) float32: all textures, flat, one after the other
    tex_off: np.ndarray  # (T,) int64
    tex_w: np.ndarray  # (T,) int64
    tex_h: np.ndarray  # (T,) int64
    v_off: np.ndarray  # (P+1,)
    f_off: np.ndarray  # (P+1,)

    def person_faces(self, p: int) -> np.ndarray:
        """Person p's faces with indices local to its own vertices."""
        return self.faces[self.f_off[p]:self.f_off[p + 1]] - self.v_off[p]


def people_mesh(plan: ClipPlan, bodies: list[BodyModel],
                posed: list[tuple[np.ndarray, np.ndarray]]) -> PeopleMesh:
    faces, labels, colors, uvs, textures = [], [], [], [], []
    person_tex, face_person = [], []
    v_off, f_off = [0], [0]
    for p, (person, body, (v, _)) in enumerate(zip(plan.people, bodies, posed, strict=True)):
        n = v.shape[1]
        if person.avatar is not None:
            av = person.avatar
            f, lab = av.faces, av.part_labels
            colors.append(np.zeros((n, 3), np.float32))
            uvs.append(av.uvs)
            person_tex.append(len(textures))
            textures.append(av.texture)
        else:
            f, lab = np.asarray(body.faces, dtype=np.int64), body.part_labels().astype(np.int64)
            colors.append(person.colors)
            uvs.append(np.zeros((n, 2), np.float32))
            person_tex.append(-1)
        faces.append(f + v_off[-1])
        labels.append(lab)
        face_person.append(np.full(len(f), p, dtype=np.int32))
        v_off.append(v_off[-1] + n)
        f_off.append(f_off[-1] + len(f))
    sizes = [t.shape[0] * t.shape[1] for t in textures]
    return PeopleMesh(
        verts=torch.from_numpy(np.concatenate([v for v, _ in posed], axis=1)),
        faces=np.ascontiguousarray(np.concatenate(faces), dtype=np.int64),
        labels=np.concatenate(labels), colors=np.ascontiguousarray(np.concatenate(colors), dtype=np.float32),
        uvs=np.ascontiguousarray(np.concatenate(uvs), dtype=np.float32),
        face_person=np.concatenate(face_person), person_tex=np.asarray(person_tex, dtype=np.int64),
        tex=(np.ascontiguousarray(np.concatenate([t.reshape(-1, 3) for t in textures]), dtype=np.float32)
             if textures else np.zeros((1, 3), np.float32)),
        tex_off=np.asarray(np.cumsum([0, *sizes])[:-1] if sizes else [0], dtype=np.int64),
        tex_w=np.asarray([t.shape[1] for t in textures] or [1], dtype=np.int64),
        tex_h=np.asarray([t.shape[0] for t in textures] or [1], dtype=np.int64),
        v_off=np.asarray(v_off), f_off=np.asarray(f_off))


@dataclass
class LightCamera:
    """A perspective camera far along the key light's direction, looking at the people: a
    directional light's shadow map (rays within a fraction of a degree of parallel)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    near: float
    far: float
    texel_m: float  # world size of a texel at the people
    centre: np.ndarray  # the people's bounding sphere it frames
    radius: float

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])


def light_camera(key_dir: np.ndarray, centre: np.ndarray, radius: float,
                 size: int = SHADOW_SIZE) -> LightCamera:
    radius = max(radius, 0.05) * 1.05
    distance = max(20.0 * radius, 30.0)
    eye = np.asarray(centre, dtype=np.float64) + np.asarray(key_dir, dtype=np.float64) * distance
    up = (0.0, 0.0, 1.0) if abs(float(key_dir[1])) > 0.999 else (0.0, 1.0, 0.0)
    R, t = look_at(eye, centre, up)
    focal = 0.5 * size / math.tan(math.asin(radius / distance))
    K = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return LightCamera(K, R, t, distance - 2.0 * radius, distance + 2.0 * radius, distance / focal,
                       np.asarray(centre, np.float64), radius)


def contact_spheres(joints3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame the contact occluders (F,M,4) (x, y, z, r) of every person and the box
    (F,4) (x min, x max, z min, z max) of the ground they can darken."""
    names = [n for n in CONTACT_SPHERES if n in KEYPOINT_NAMES]
    index = [KEYPOINT_NAMES.index(n) for n in names]
    radius = np.array([CONTACT_SPHERES[n] for n in names])
    F, P = joints3d.shape[:2]
    centres = joints3d[:, :, index].astype(np.float64).reshape(F, -1, 3)
    r = np.tile(radius, P)
    spheres = np.concatenate([centres, np.broadcast_to(r, (F, len(r)))[..., None]], axis=-1)
    reach = 8.0 * r
    box = np.stack([(centres[..., 0] - reach).min(1), (centres[..., 0] + reach).max(1),
                    (centres[..., 2] - reach).min(1), (centres[..., 2] + reach).max(1)], axis=1)
    return np.ascontiguousarray(spheres), np.ascontiguousarray(box)


@dataclass
class LookArrays:
    """The look's arrays in the shader's layout."""

    sh: np.ndarray
    key_dir: np.ndarray
    key_rgb: np.ndarray
    ground: np.ndarray  # (S,S,3)
    ground_mean: np.ndarray
    ground_rot: np.ndarray  # (2,2)
    ground_off: np.ndarray  # (2,)
    background: np.ndarray  # (H,W,3)
    fade: tuple[float, float]


def look_arrays(look: Look, width: int, height: int) -> LookArrays:
    ground = look.ground_texture()
    c, s = math.cos(look.ground_angle), math.sin(look.ground_angle)
    return LookArrays(
        sh=np.ascontiguousarray(look.sh, dtype=np.float64), key_dir=np.asarray(look.key_dir, np.float64),
        key_rgb=np.asarray(look.key_rgb, np.float64), ground=np.ascontiguousarray(ground, dtype=np.float32),
        ground_mean=ground.reshape(-1, 3).mean(0).astype(np.float64), ground_rot=np.array([[c, -s], [s, c]]),
        ground_off=np.asarray(look.ground_offset, np.float64),
        background=np.ascontiguousarray(look.background_image(width, height), dtype=np.float32),
        fade=GROUND_FADE_M)
