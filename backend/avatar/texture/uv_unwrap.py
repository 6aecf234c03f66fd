"""Semantic cylindrical UV unwrapping (En3D's SMPL-guided part unwrap).

The mesh is split into semantic components from its per-vertex body-part labels (head, torso,
arms, hands, legs, feet). Each component is projected onto a cylinder around its bone axis:
``u`` = arc length around the axis (angle x mean radius, so texel density is even), ``v`` = height
along the axis, both in metres. The seam (angle +-pi) is placed on the side named by the
component's ``seam`` direction: the back for head, torso and legs, the underside for arms, the sole
for feet. Faces that straddle the seam get their corners on the far side shifted by one turn, which
splits them off the other edge of the chart instead of stretching across it.

Where a cylinder projection folds (fingers around the hand axis, armpits, the crotch under a skirt),
the folded faces (reversed UV winding, or hidden behind another face of the same chart in UV space)
are moved to a residual set that :mod:`xatlas` unwraps into small extra charts, so no two faces
share texels. ``method="xatlas"`` unwraps the whole mesh with xatlas instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.mesh.adjacency import face_components
from backend.mesh.normals import face_areas

# Semantic components: name -> body parts (backend.body.joints.PART_NAMES) in it.
COMPONENT_PARTS: dict[str, tuple[str, ...]] = {
    "head": ("head",),
    "torso": ("torso", "neck"),  # the neck folds under the chin: it unwraps with the torso
    "arm_l": ("upper_arm_l", "lower_arm_l"),
    "arm_r": ("upper_arm_r", "lower_arm_r"),
    "hand_l": ("hand_l",),
    "hand_r": ("hand_r",),
    "leg_l": ("upper_leg_l", "lower_leg_l"),
    "leg_r": ("upper_leg_r", "lower_leg_r"),
    "foot_l": ("foot_l",),
    "foot_r": ("foot_r",),
}


@dataclass
class ComponentAxis:
    """Cylinder of one component: a point on the axis, the axis direction and the seam side."""

    origin: np.ndarray
    axis: np.ndarray
    seam: np.ndarray  # direction (from the axis) where the seam goes; made orthogonal to axis


@dataclass
class Chart:
    """Faces of one chart and their per-corner UVs in metres (before packing)."""

    name: str
    faces: np.ndarray  # (n,) face indices into the mesh
    uv: np.ndarray  # (n,3,2)


@dataclass
class UnwrapConfig:
    method: str = "cylinder"  # "cylinder" | "xatlas"
    residual_max_fraction: float = 0.5  # above this the cylinder failed: xatlas takes the whole component
    min_uv_area_ratio: float = 0.05  # faces whose UV area shrinks below this * 3D area count as folded
    extra: dict[str, float] = field(default_factory=dict)


def _frame(ax: ComponentAxis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = ax.axis / np.linalg.norm(ax.axis)
    s = ax.seam - (ax.seam @ a) * a
    if np.linalg.norm(s) < 1e-6:  # seam direction parallel to the axis: pick any perpendicular
        s = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
    s = s / np.linalg.norm(s)
    return a, s, np.cross(a, s)


def cylinder_uv(vertices: np.ndarray, faces: np.ndarray, ax: ComponentAxis) -> np.ndarray:
    """Per-corner cylinder UVs (n,3,2) in metres for the given faces; seam at angle pi = seam side."""
    a, s, c = _frame(ax)
    d = vertices[faces] - ax.origin  # (n,3,3)
    h = d @ a
    # Angle 0 faces away from the seam, +-pi is the seam itself.
    theta = np.arctan2(d @ c, -(d @ s))
    # Straddling faces: corners more than half a turn apart are shifted to the chart's far edge.
    span = theta.max(1) - theta.min(1)
    wrap = span > np.pi
    theta = np.where(wrap[:, None] & (theta < 0), theta + 2 * np.pi, theta)
    radial = d - h[..., None] * a
    radius = float(np.median(np.linalg.norm(radial, axis=-1))) if len(faces) else 1.0
    return np.stack([theta * max(radius, 1e-3), h], -1)


def uv_signed_area(uv: np.ndarray) -> np.ndarray:
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def occluded_in_uv(uv: np.ndarray, depth: np.ndarray, resolution: int = 1024) -> np.ndarray:
    """Faces (bool) that overlap another face of the same chart in UV space and lose to it.

    ``depth`` is per corner; smaller wins (callers pass minus the radius: the outer layer of a fold
    keeps the chart). Two passes: removing the losers can uncover nothing new, but faces that only
    overlapped a loser are re-checked so no face is moved needlessly.
    """
    from backend.avatar.texture.uv_raster import overlap_losers

    lo = uv.reshape(-1, 2).min(0)
    size = float((uv.reshape(-1, 2).max(0) - lo).max()) + 1e-9
    norm = (uv - lo) / size
    out = overlap_losers(norm, depth, resolution)
    keep = np.nonzero(~out)[0]
    if len(keep):
        out[keep[overlap_losers(norm[keep], depth[keep], resolution)]] = True
    return out


def unwrap_components(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_component: np.ndarray,
    component_names: list[str],
    axes: dict[str, ComponentAxis],
    config: UnwrapConfig,
) -> list[Chart]:
    """Charts covering every face exactly once."""
    if config.method == "xatlas":
        return xatlas_charts(vertices, faces, np.arange(len(faces)), "xatlas")
    if config.method != "cylinder":
        raise ValueError(f"unknown unwrap method {config.method!r} (expected 'cylinder' or 'xatlas')")
    charts: list[Chart] = []
    residual: list[np.ndarray] = []
    area3d = face_areas(vertices, faces)
    for ci, name in enumerate(component_names):
        fidx = np.nonzero(face_component == ci)[0]
        if len(fidx) == 0:
            continue
        uv = cylinder_uv(vertices, faces[fidx], axes[name])
        area = uv_signed_area(uv)
        # The projection's winding is fixed by the frame: outward-facing surface maps to one sign.
        sign = np.sign(area.sum()) or 1.0
        ok = (area * sign) > config.min_uv_area_ratio * area3d[fidx]
        if ok.any():
            ax = axes[name]
            a = ax.axis / np.linalg.norm(ax.axis)
            d = vertices[faces[fidx[ok]]] - ax.origin
            radius = np.linalg.norm(d - (d @ a)[..., None] * a, axis=-1)
            hidden = occluded_in_uv(uv[ok], -radius)
            ok[np.nonzero(ok)[0][hidden]] = False
        if (~ok).mean() > config.residual_max_fraction:
            residual.append(fidx)
            continue
        if sign < 0:  # mirror so every chart has the same (counter-clockwise) winding
            uv = uv * np.array([-1.0, 1.0])
        charts.append(Chart(name, fidx[ok], uv[ok]))
        if (~ok).any():
            residual.append(fidx[~ok])
    if residual:
        charts += xatlas_charts(vertices, faces, np.concatenate(residual), "residual")
    return charts


def xatlas_charts(vertices: np.ndarray, faces: np.ndarray, fidx: np.ndarray, name: str) -> list[Chart]:
    """Unwrap a face subset with xatlas; each xatlas chart becomes one of ours, in metres."""
    import xatlas

    sub_faces = faces[fidx]
    used, local = np.unique(sub_faces, return_inverse=True)
    local = local.reshape(-1, 3).astype(np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices[used].astype(np.float32), local)
    atlas.generate()
    _vmapping, indices, uvs = atlas.get_mesh(0)
    uv_c = uvs[indices].astype(np.float64)  # (n,3,2) in xatlas's [0,1] atlas
    # xatlas keeps the face order; scale its atlas to metres with the 3D/UV area ratio.
    a3 = face_areas(vertices, sub_faces).sum()
    a2 = np.abs(uv_signed_area(uv_c)).sum()
    uv_c *= np.sqrt(a3 / max(a2, 1e-20))
    # xatlas splits vertices at chart borders: connected faces over its output vertices are its charts.
    _count, labels = face_components(indices)
    out = []
    for c in np.unique(labels):
        m = labels == c
        out.append(Chart(f"{name}{int(c)}", fidx[m], uv_c[m]))
    return out
