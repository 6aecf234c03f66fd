"""Synthetic test characters made in code: ground truth for tests and the benchmark.

A character is the (stand-in) SMPL-X body at some shape in an A-pose, plus clothing-like volumes
(a flared skirt: a closed elliptic frustum fitted around the hips; hair: an ellipsoid cap behind and
above the head, leaving the face free) and a procedural albedo (skin, a striped top on the torso and
upper arms, a plaid skirt, streaked hair, dark shoes). It is rendered from known cameras into the
views format: RGBA (2x supersampled, so edges are anti-aliased like a real render), world-space
normal maps and the SMPL-X parameters of the body, with separate training and held-out views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.avatar.io.views import View, ViewSet, write_views
from backend.mesh.adjacency import diffuse, vertex_adjacency
from backend.mesh.closest import MeshQuery
from backend.mesh.normals import vertex_normals
from protocol.cameras import CameraFrame

# A few body shapes (first betas): average, tall and slim, short and broad.
SHAPE_PRESETS: dict[str, list[float]] = {
    "average": [0.0] * 10,
    "tall": [1.5, -0.8, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    "broad": [-0.8, 1.2, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
}

COMPONENT_BODY, COMPONENT_SKIRT, COMPONENT_HAIR = 0, 1, 2


@dataclass
class SyntheticConfig:
    shape: str = "average"
    a_pose_degrees: float = 45.0  # arms lowered from the T-pose by this angle (En3D renders A-poses)
    skirt: bool = True
    hair: bool = True
    resolution: int = 512
    train_views: int = 8
    test_views: int = 4
    supersample: int = 2
    focal_factor: float = 1.5  # focal length in image widths
    distance: float = 2.9  # metres from the body's centre
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rasterizer: str = "auto"


@dataclass
class Character:
    vertices: np.ndarray
    faces: np.ndarray
    component: np.ndarray  # (V,) COMPONENT_*
    part: np.ndarray  # (V,) body part label (-1 for clothing)
    shirt: np.ndarray  # (V,) smooth 0..1 weight of the top garment on the body
    body: BodyMesh
    skirt_rings: dict[str, Any] = field(default_factory=dict)
    hair_ellipsoid: tuple[np.ndarray, np.ndarray] | None = None  # centre, radii

    def visible_surface_filter(self) -> Callable[[np.ndarray], np.ndarray]:
        """Keep-mask for GT surface samples: drop those buried inside another closed part."""
        body_q = MeshQuery(self.body.vertices, self.body.faces)

        def keep(points: np.ndarray) -> np.ndarray:
            inside_other = np.zeros(len(points), bool)
            if self.skirt_rings:
                inside_other |= _inside_skirt(points, self.skirt_rings, shrink=0.002)
            if self.hair_ellipsoid is not None:
                c, r = self.hair_ellipsoid
                inside_other |= (((points - c) / (r - 0.002)) ** 2).sum(1) < 1
            # Points on the skirt or hair that are inside the body are also hidden.
            inside_body = body_q.signed_distance(points) < -0.002
            return ~(inside_other | inside_body)

        return keep


def a_pose_params(betas: list[float], degrees: float) -> dict[str, Any]:
    """SMPL-X parameters: given betas, arms lowered by ``degrees`` about the body's forward axis."""
    from backend.body.joints import JOINT_INDEX

    body_pose = np.zeros(63)
    a = np.radians(degrees)
    # The left arm points to +x: lowering it is a rotation of -a about +z; the right arm mirrors.
    body_pose[(JOINT_INDEX["left_shoulder"] - 1) * 3 + 2] = -a
    body_pose[(JOINT_INDEX["right_shoulder"] - 1) * 3 + 2] = a
    return {
        "gender": "neutral",
        "betas": list(betas),
        "expression": [0.0] * 10,
        "global_orient": [0.0, 0.0, 0.0],
        "body_pose": body_pose.tolist(),
        "transl": [0.0, 0.0, 0.0],
    }


def _ellipse_ring(cx: float, cz: float, rx: float, rz: float, y: float, n: int) -> np.ndarray:
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(th), np.full(n, y), cz + rz * np.sin(th)], 1)


def _inside_skirt(points: np.ndarray, rings: dict[str, Any], shrink: float = 0.0) -> np.ndarray:
    ys, rx, rz, cx, cz = rings["y"], rings["rx"], rings["rz"], rings["cx"], rings["cz"]
    y = points[:, 1]
    inside_y = (y <= ys[0] - shrink) & (y >= ys[-1] + shrink)
    # ys decreases downwards: interpolate radii at each point's height.
    ax = np.interp(-y, -ys, rx) - shrink
    az = np.interp(-y, -ys, rz) - shrink
    return inside_y & (((points[:, 0] - cx) / ax) ** 2 + ((points[:, 2] - cz) / az) ** 2 < 1)


def make_skirt(
    body: BodyMesh, levels: int = 24, around: int = 96
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A closed, flared elliptic frustum from the waist to above the knees, containing the hips."""
    names = body.part_names
    ji = {n: i for i, n in enumerate(body.joint_names)}
    pelvis, knee = (
        body.joints[ji["pelvis"]],
        (body.joints[ji["left_knee"]] + body.joints[ji["right_knee"]]) / 2,
    )
    y_top, y_bot = pelvis[1] + 0.10, knee[1] + 0.12
    keep_parts = [names.index(p) for p in ("torso", "upper_leg_l", "upper_leg_r") if p in names]
    core = body.vertices[np.isin(body.part_labels, keep_parts)]
    cx, cz = float(pelvis[0]), float(np.median(core[np.abs(core[:, 1] - y_top) < 0.05, 2]))
    ys = np.linspace(y_top, y_bot, levels)
    t = np.linspace(0, 1, levels)
    rx = np.empty(levels)
    rz = np.empty(levels)
    for k, y in enumerate(ys):
        slab = core[np.abs(core[:, 1] - y) < 0.02]
        rx[k] = np.abs(slab[:, 0] - cx).max() + 0.015
        rz[k] = np.abs(slab[:, 2] - cz).max() + 0.015
        # The bounding ellipse of the slab (scale until every slab point is inside).
        s = np.sqrt((((slab[:, 0] - cx) / rx[k]) ** 2 + ((slab[:, 2] - cz) / rz[k]) ** 2).max())
        rx[k] *= max(s, 1.0) * 1.02
        rz[k] *= max(s, 1.0) * 1.02
    # Monotone flare: never narrower than the top ring grown linearly by 8 cm towards the hem.
    rx = np.maximum.accumulate(np.maximum(rx, rx[0] + 0.08 * t))
    rz = np.maximum.accumulate(np.maximum(rz, rz[0] + 0.06 * t))
    rings = np.concatenate([_ellipse_ring(cx, cz, rx[k], rz[k], ys[k], around) for k in range(levels)])
    top_c = np.array([[cx, y_top, cz]])
    bot_c = np.array([[cx, y_bot, cz]])
    verts = np.concatenate([rings, top_c, bot_c])
    faces = []
    for k in range(levels - 1):
        for i in range(around):
            a, b = k * around + i, k * around + (i + 1) % around
            c, d = a + around, b + around
            faces += [[a, b, d], [a, d, c]]
    top, bot = len(rings), len(rings) + 1
    last = (levels - 1) * around
    for i in range(around):
        faces.append([top, (i + 1) % around, i])
        faces.append([bot, last + i, last + (i + 1) % around])
    f = np.asarray(faces, np.int64)
    f = _orient_outward(verts, f)
    return verts, f, {"y": ys, "rx": rx, "rz": rz, "cx": cx, "cz": cz}


def make_hair(
    body: BodyMesh, rings: int = 24, around: int = 48
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An ellipsoid cap over the back and top of the head (the face stays visible)."""
    head_parts = [body.part_names.index("head")]
    head = body.vertices[np.isin(body.part_labels, head_parts)]
    lo, hi = head.min(0), head.max(0)
    c_head, r_head = (lo + hi) / 2, (hi - lo) / 2
    centre = c_head + np.array([0.0, 0.035, -0.03])
    radii = r_head * np.array([1.12, 0.95, 1.1]) + 0.005
    phi = np.linspace(0, np.pi, rings + 1)[1:-1]
    th = np.linspace(0, 2 * np.pi, around, endpoint=False)
    P, T = np.meshgrid(phi, th, indexing="ij")
    unit = np.stack([np.sin(P) * np.cos(T), np.cos(P), np.sin(P) * np.sin(T)], -1).reshape(-1, 3)
    verts = np.concatenate([unit, [[0, 1, 0], [0, -1, 0]]]) * radii + centre
    faces = []
    for k in range(rings - 2):
        for i in range(around):
            a, b = k * around + i, k * around + (i + 1) % around
            faces += [[a, b, b + around], [a, b + around, a + around]]
    n_top, n_bot = len(unit), len(unit) + 1
    last = (rings - 2) * around
    for i in range(around):
        faces.append([n_top, (i + 1) % around, i])
        faces.append([n_bot, last + i, last + (i + 1) % around])
    return verts, _orient_outward(verts, np.asarray(faces, np.int64)), centre, radii


def _orient_outward(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Flip all faces if the signed volume is negative (closed meshes)."""
    tri = v[f]
    vol = np.einsum("ij,ij->i", np.cross(tri[:, 0], tri[:, 1]), tri[:, 2]).sum()
    return f if vol > 0 else f[:, ::-1].copy()


def make_character(body: BodyMesh, config: SyntheticConfig) -> Character:
    parts = body.part_names
    shirt_parts = [parts.index(p) for p in ("torso", "upper_arm_l", "upper_arm_r") if p in parts]
    shirt_mask = np.isin(body.part_labels, shirt_parts).astype(float)
    shirt = diffuse(shirt_mask, vertex_adjacency(body.faces, len(body.vertices)), 6)
    vs, fs, comps, part, sh = (
        [body.vertices],
        [body.faces],
        [np.zeros(len(body.vertices), int)],
        [body.part_labels],
        [shirt],
    )
    offset = len(body.vertices)
    rings: dict[str, Any] = {}
    hair_e = None
    if config.skirt:
        v, f, rings = make_skirt(body)
        vs.append(v), fs.append(f + offset), comps.append(np.full(len(v), COMPONENT_SKIRT))
        part.append(np.full(len(v), -1)), sh.append(np.zeros(len(v)))
        offset += len(v)
    if config.hair:
        v, f, c, r = make_hair(body)
        hair_e = (c, r)
        vs.append(v), fs.append(f + offset), comps.append(np.full(len(v), COMPONENT_HAIR))
        part.append(np.full(len(v), -1)), sh.append(np.zeros(len(v)))
        offset += len(v)
    return Character(
        vertices=np.concatenate(vs),
        faces=np.concatenate(fs),
        component=np.concatenate(comps),
        part=np.concatenate(part),
        shirt=np.concatenate(sh),
        body=body,
        skirt_rings=rings,
        hair_ellipsoid=hair_e,
    )


def albedo(
    points: np.ndarray,
    component: np.ndarray,
    part: np.ndarray,
    shirt: np.ndarray,
    part_names: list[str],
    skirt_centre: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Procedural colour (N,3) in [0,1]: smooth patterns (a few cm) a 1024 texture can hold."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    skin = np.stack([0.86 + 0.03 * np.sin(7 * y), 0.66 + 0.02 * np.sin(5 * x), 0.55 + 0.0 * z], 1)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * y / 0.09)
    top = np.stack([0.15 + 0.55 * stripes, 0.30 + 0.35 * stripes, 0.65 + 0.2 * stripes], 1)
    w = np.clip((shirt - 0.35) / 0.3, 0, 1)[:, None]
    col = skin * (1 - w) + top * w
    feet = [part_names.index(p) for p in ("foot_l", "foot_r") if p in part_names]
    col[np.isin(part, feet) & (component == COMPONENT_BODY)] = (0.12, 0.10, 0.09)
    ang = np.arctan2(z - skirt_centre[1], x - skirt_centre[0])
    plaid = 0.5 + 0.25 * np.sin(10 * ang) + 0.25 * np.sin(2 * np.pi * y / 0.07)
    skirt_col = np.stack([0.55 + 0.35 * plaid, 0.12 + 0.15 * plaid, 0.15 + 0.1 * plaid], 1)
    hair_col = np.stack([0.26 + 0.06 * np.sin(40 * ang), 0.16 + 0.04 * np.sin(40 * ang), 0.08 + 0 * y], 1)
    col = np.where((component == COMPONENT_SKIRT)[:, None], skirt_col, col)
    col = np.where((component == COMPONENT_HAIR)[:, None], hair_col, col)
    return np.clip(col, 0, 1)


def look_at_camera(eye: np.ndarray, target: np.ndarray, width: int, height: int, focal: float) -> CameraFrame:
    """OpenCV camera at ``eye`` looking at ``target`` with world +Y up."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    R = np.stack([r, d, f])
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    return CameraFrame(K=K, R=R, t=-R @ eye, width=width, height=height, near=0.1, far=20.0)


def orbit_cameras(centre: np.ndarray, config: SyntheticConfig) -> tuple[list[CameraFrame], list[CameraFrame]]:
    """Training views evenly around the body at 5 deg elevation; held-out views in between, 15 deg up."""
    res, focal = config.resolution, config.focal_factor * config.resolution

    def ring(n: int, phase: float, elev: float) -> list[CameraFrame]:
        cams = []
        for k in range(n):
            az = np.radians(phase + 360.0 * k / n)
            el = np.radians(elev)
            eye = centre + config.distance * np.array(
                [np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)]
            )
            cams.append(look_at_camera(eye, centre, res, res, focal))
        return cams

    return ring(config.train_views, 0.0, 5.0), ring(config.test_views, 360.0 / config.train_views / 2, 15.0)


def render_character(
    char: Character, cam: CameraFrame, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,4) RGBA albedo over the background colour and (H,W,3) unit world normals (0 outside)."""
    import torch

    from backend.avatar.render_views import camera_clip, resize_image
    from backend.render import get_rasterizer, interpolate

    ss = config.supersample
    v = torch.as_tensor(char.vertices, dtype=torch.float32)
    f = torch.as_tensor(char.faces)
    clip = camera_clip(v, cam, ss)
    h, w = cam.height * ss, cam.width * ss
    r = get_rasterizer(config.rasterizer).rasterize(clip, f.int(), resolution=(h, w))
    vn = torch.as_tensor(vertex_normals(char.vertices, char.faces), dtype=torch.float32)
    pos_n = interpolate(torch.cat([v, vn], 1), r, f)[0].numpy()
    mask = r.mask[0].numpy()
    tri = r.tri_id[0].numpy()
    bary = r.bary[0].numpy()
    b = np.concatenate([1 - bary.sum(-1, keepdims=True), bary], -1)
    corner = np.argmax(b[mask], -1)
    vid = char.faces[tri[mask], corner]  # the nearest corner carries the discrete labels
    rgb = np.zeros((h, w, 3))
    rgb[:] = config.background
    shirt_w = (b[mask] * char.shirt[char.faces[tri[mask]]]).sum(-1)
    rgb[mask] = albedo(
        pos_n[mask, :3],
        char.component[vid],
        char.part[vid],
        shirt_w,
        char.body.part_names,
        (char.skirt_rings.get("cx", 0.0), char.skirt_rings.get("cz", 0.0)),
    )
    normal = np.zeros((h, w, 3))
    n = pos_n[mask, 3:]
    normal[mask] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    rgba = np.concatenate([rgb, mask[..., None].astype(float)], -1)
    size = (cam.height, cam.width)
    rgba = resize_image(rgba.astype(np.float32), size)
    normal = resize_image(normal.astype(np.float32), size)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    return rgba, normal


def make_synthetic(
    config: SyntheticConfig, out_dir: str | Path | None = None, body: BodyMesh | None = None
) -> tuple[ViewSet, Character]:
    """Build a character, render its training and held-out views; write them if ``out_dir`` is given."""
    from backend.avatar.body_mesh import body_from_params

    params = a_pose_params(SHAPE_PRESETS[config.shape], config.a_pose_degrees)
    if body is None:
        body = body_from_params(params)
    char = make_character(body, config)
    centre = (char.vertices.min(0) + char.vertices.max(0)) / 2
    train, test = orbit_cameras(centre, config)
    views = []
    for split, cams in (("train", train), ("test", test)):
        for k, cam in enumerate(cams):
            rgba, normal = render_character(char, cam, config)
            views.append(View(name=f"{split}{k:02d}", camera=cam, rgba=rgba, normal=normal, split=split))
    vs = ViewSet(
        views=views,
        smplx=params,
        extra={"synthetic": {"shape": config.shape, "skirt": config.skirt, "hair": config.hair}},
    )
    if out_dir is not None:
        write_views(out_dir, vs)
    return vs, char
