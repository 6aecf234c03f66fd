"""UV layout of the sculpted mesh: semantic components, their bone-axis cylinders, the packed atlas.

Components come from the transferred body-part labels; each cylinder's axis runs between two joints
of the body at the mesh's pose (pelvis->neck for the torso, shoulder->wrist for an arm, ...), and the
seam side is the body's back (soles for the feet), found from the hip and spine joints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.avatar.rig.part_labels import face_labels
from backend.avatar.texture.atlas import Atlas, AtlasConfig, pack_charts
from backend.avatar.texture.uv_unwrap import COMPONENT_PARTS, ComponentAxis, UnwrapConfig, unwrap_components

# (start joint, end joint, seam) per component; seam "back" or "down".
_AXES: dict[str, tuple[str, str, str]] = {
    "head": ("neck", "head", "back"),
    "torso": ("pelvis", "neck", "back"),
    "arm_l": ("left_shoulder", "left_wrist", "back"),
    "arm_r": ("right_shoulder", "right_wrist", "back"),
    "hand_l": ("left_wrist", "left_middle1", "back"),
    "hand_r": ("right_wrist", "right_middle1", "back"),
    "leg_l": ("left_hip", "left_ankle", "back"),
    "leg_r": ("right_hip", "right_ankle", "back"),
    "foot_l": ("left_ankle", "left_foot", "down"),
    "foot_r": ("right_ankle", "right_foot", "down"),
}


@dataclass
class UVConfig:
    unwrap: UnwrapConfig = field(default_factory=UnwrapConfig)
    atlas: AtlasConfig = field(default_factory=AtlasConfig)


def body_frame(body: BodyMesh) -> tuple[np.ndarray, np.ndarray]:
    """(up, forward) unit vectors of the body from its joints."""
    j = {n: body.joints[i] for i, n in enumerate(body.joint_names)}
    left = j["left_hip"] - j["right_hip"]
    up = j["neck"] - j["pelvis"]
    up = up / np.linalg.norm(up)
    fwd = np.cross(left, up)
    return up, fwd / np.linalg.norm(fwd)


def component_axes(body: BodyMesh) -> dict[str, ComponentAxis]:
    j = {n: body.joints[i] for i, n in enumerate(body.joint_names)}
    up, fwd = body_frame(body)
    axes = {}
    for comp, (a, b, seam) in _AXES.items():
        axes[comp] = ComponentAxis(origin=j[a], axis=j[b] - j[a], seam=-fwd if seam == "back" else -up)
    return axes


def vertex_components(vertex_parts: np.ndarray, part_names: list[str]) -> tuple[np.ndarray, list[str]]:
    names = list(COMPONENT_PARTS)
    lut = np.full(len(part_names), -1)
    for ci, comp in enumerate(names):
        for p in COMPONENT_PARTS[comp]:
            if p in part_names:
                lut[part_names.index(p)] = ci
    comp = lut[vertex_parts]
    if (comp < 0).any():
        missing = sorted({part_names[p] for p in vertex_parts[comp < 0]})
        raise ValueError(f"body parts without a UV component: {missing}")
    return comp, names


def make_uv_layout(
    vertices: np.ndarray, faces: np.ndarray, vertex_parts: np.ndarray, body: BodyMesh, config: UVConfig
) -> Atlas:
    comp_v, names = vertex_components(vertex_parts, body.part_names)
    comp_f = face_labels(comp_v, faces)
    charts = unwrap_components(vertices, faces, comp_f, names, component_axes(body), config.unwrap)
    return pack_charts(charts, len(faces), config.atlas)
