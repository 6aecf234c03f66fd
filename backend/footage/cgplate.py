"""CG plates with known ground truth, for the footage tests and ``bench/footage.py``.

A small scene: a ground plane of coloured tiles, a pillar (a box) between the camera and the path
the character walks, and an empty sky. It is rendered by our rasterizer through one camera per
frame, twice: without the avatar (the plate, with its depth: what a user would shoot) and with it
(the truth: the scene and the avatar in one z-buffer, subsample by subsample). Both use the same
shading as the 3D route (``albedo * max(E(n), 0)`` with the plate's SH) and the same supersampling,
so an exact insertion reproduces the truth up to the plate's depth being known only at pixel
centres (occluder edges) and the character's own rounding.

The avatar is the body model itself made into an avatar folder (its rest mesh, skinning weights
and joints; UVs from height and angle around the body; a striped texture so misplacement shows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.footage.avatar_motion import PosedAvatar, fit_to_frames, pose_for_footage
from backend.footage.lighting import irradiance
from backend.footage.render_layer import FAR, NEAR, appearance, render_window
from backend.render.api import get_rasterizer
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes
from protocol.cameras import intrinsics_from_fov, look_at

SKY = (0.55, 0.65, 0.80)
PILLAR_COLOUR = (0.70, 0.35, 0.20)
TILE_COLOURS = ((0.42, 0.42, 0.40), (0.52, 0.50, 0.46))
# A key light from above-left-front plus sky: the plate's lighting (irradiance SH, RGB).
DEFAULT_SH = np.array([[2.6, 2.6, 2.7], [0.55, 0.55, 0.6], [0.35, 0.35, 0.3], [-0.3, -0.3, -0.25],
                       [0.0, 0.0, 0.0], [0.05, 0.05, 0.05], [-0.1, -0.1, -0.1], [0.0, 0.0, 0.0],
                       [0.05, 0.05, 0.05]], np.float32)


def write_body_avatar(folder: Path) -> Path:
    """An avatar folder (``avatar_arrays.npz`` + ``avatar.json``) made of the body model."""
    from backend.body.loading import load_body_model

    body = load_body_model("neutral")
    with torch.no_grad():
        betas = torch.zeros(body.num_betas)
        verts = body.rest_vertices(betas, None).numpy().reshape(-1, 3)
        joints = body.rest_joints(betas).numpy()
    height = (verts[:, 1] - verts[:, 1].min()) / np.ptp(verts[:, 1])
    angle = np.arctan2(verts[:, 0], verts[:, 2]) / (2 * np.pi) + 0.5
    uvs = np.stack([angle, height], 1).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    texture = np.stack([0.25 + 0.5 * (yy // 8 % 2), 0.3 + 0.4 * (xx // 8 % 2),
                        0.6 - 0.3 * (yy // 16 % 2)], -1)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "avatar_arrays.npz", vertices=verts.astype(np.float32),
                        faces=np.asarray(body.faces, np.int32), uvs=uvs,
                        texture=(texture * 255).round().astype(np.uint8),
                        weights=body.skinning_weights.numpy().astype(np.float32),
                        parents=np.asarray(body.parents, np.int32), joints_rest=joints.astype(np.float32),
                        part_labels=body.part_labels().astype(np.int32))
    (folder / "avatar.json").write_text(json.dumps({"vertices": len(verts), "bind_pose": "smplx_zero"}))
    return folder


def box_mesh(centre: tuple[float, float, float], size: tuple[float, float, float],
             colour: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box with its own vertices per face (flat normals): (verts, faces, colours)."""
    c, h = np.asarray(centre, np.float64), np.asarray(size, np.float64) / 2
    verts, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [a for a in range(3) if a != axis]
            quad = []
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign, a, b
                quad.append(c + p * h)
            base = len(verts)
            verts += quad
            normal_ok = np.cross(quad[1] - quad[0], quad[2] - quad[0])[axis] * sign > 0
            tri = [[0, 1, 2], [0, 2, 3]] if normal_ok else [[0, 2, 1], [0, 3, 2]]
            faces += [[base + i for i in t] for t in tri]
    colours = np.tile(np.asarray(colour, np.float32), (len(verts), 1))
    return np.asarray(verts, np.float32), np.asarray(faces, np.int64), colours


def ground_mesh(half: float = 8.0, tiles: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiles of the plane y = 0 (own vertices per tile: a crisp checker), facing up."""
    step = 2 * half / tiles
    verts, faces, colours = [], [], []
    for i in range(tiles):
        for j in range(tiles):
            x0, z0 = -half + i * step, -half + j * step
            base = len(verts)
            verts += [(x0, 0, z0), (x0, 0, z0 + step), (x0 + step, 0, z0 + step), (x0 + step, 0, z0)]
            faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
            colours += [TILE_COLOURS[(i + j) % 2]] * 4
    return np.asarray(verts, np.float32), np.asarray(faces, np.int64), np.asarray(colours, np.float32)


def scene_mesh(pillar: tuple[float, float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [ground_mesh()]
    if pillar is not None:
        parts.append(box_mesh((pillar[0], 1.1, pillar[2]), (pillar[1], 2.2, pillar[1]), PILLAR_COLOUR))
    verts, faces, colours, offset = [], [], [], 0
    for v, f, c in parts:
        verts.append(v)
        faces.append(f + offset)
        colours.append(c)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(colours)


@dataclass
class CGPlate:
    plate: np.ndarray  # (F, H, W, 3) uint8: the scene without the avatar
    depth: np.ndarray  # (F, H, W) float32 at pixel centres, +inf on the sky
    truth: np.ndarray  # (F, H, W, 3) uint8: the scene with the avatar
    truth_alpha: np.ndarray  # (F, H, W) float32: the avatar's visible coverage in the truth
    truth_cover: np.ndarray  # (F, H, W) float32: its coverage without the scene
    occluder: np.ndarray  # (F, H, W) float32: the pillar's coverage
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    sh: np.ndarray
    posed: PosedAvatar


def default_camera(frames: int, width: int, height: int, moving: bool = False) -> tuple[np.ndarray, ...]:
    """Looking at the path from the front, slightly above; ``moving``: a slow dolly to the right."""
    K = intrinsics_from_fov(40.0, width, height)
    Ks, Rs, ts = [], [], []
    for i in range(frames):
        shift = 0.02 * i if moving else 0.0
        R, t = look_at((0.4 + shift, 1.4, 4.0), (-0.45 + shift, 0.8, 0.0))
        Ks.append(K)
        Rs.append(R)
        ts.append(t)
    return np.stack(Ks), np.stack(Rs), np.stack(ts)


def _render_scene(verts, faces, colours, K, R, t, W, H, s, sh, rasterizer):
    cams = CameraBatch((np.diag([s, s, 1.0]) @ K)[None], R[None], t[None], W * s, H * s, NEAR, FAR)
    mesh = Mesh(verts=torch.from_numpy(verts), faces=torch.from_numpy(faces),
                vertex_colors=torch.from_numpy(colours))
    with torch.no_grad():
        out = render_passes(mesh, cams, passes=("rgb", "depth", "normal_world"), shading="none",
                            rasterizer=rasterizer)
    depth = out.depth[0].numpy()
    mask = np.isfinite(depth)
    rgb = np.empty((H * s, W * s, 3), np.float32)
    rgb[:] = SKY
    rgb[mask] = out.rgb[0].numpy()[mask] * irradiance(sh, out.normal_world[0].numpy()[mask])
    return rgb, depth


def make_plate(avatar_dir: Path, frames: int = 12, width: int = 256, height: int = 192, *,
               sh: np.ndarray | None = None, place: tuple[float, float, float] = (-0.9, 0.0, 0.0),
               heading: float = 90.0, motion: str = "walk", fps: float = 30.0,
               pillar: tuple[float, float, float] | None = (-0.14, 0.12, 1.6), antialias: int = 2,
               moving_camera: bool = False) -> CGPlate:
    """The plate and its truth (module doc). ``pillar``: (x, side, z) of the box, None for none."""
    from backend.body.procedural import load_motion
    from backend.clips.avatars import load_avatar_person

    avatar = load_avatar_person(avatar_dir)
    sh = np.asarray(DEFAULT_SH if sh is None else sh, np.float32)
    motion_frames = fit_to_frames(load_motion(motion, fps=fps, n_frames=frames), frames, fps)
    posed = pose_for_footage(avatar, motion_frames, place=place, heading_deg=heading)
    K, R, t = default_camera(frames, width, height, moving_camera)
    sv, sf, sc = scene_mesh(pillar)
    rasterizer = get_rasterizer("auto")
    look = appearance(avatar.faces, avatar.uvs, avatar.texture)
    s = antialias
    out = {k: [] for k in ("plate", "depth", "truth", "alpha", "cover", "occluder")}
    for i in range(frames):
        scene_rgb, scene_d = _render_scene(sv, sf, sc, K[i], R[i], t[i], width, height, s, sh, rasterizer)
        _, depth1 = _render_scene(sv, sf, sc, K[i], R[i], t[i], width, height, 1, sh, rasterizer)
        albedo, normal, char_d = render_window(posed.vertices[i], look, K[i], R[i], t[i],
                                               (0, 0, width, height), s, rasterizer)
        char_mask = np.isfinite(char_d)
        char_rgb = albedo * irradiance(sh, normal)
        front = char_mask & (char_d < scene_d)
        truth = np.where(front[..., None], char_rgb, scene_rgb)
        # The pillar's coverage: the scene's triangles past the ground's are the pillar's.
        ground_d = _ground_depth(K[i], R[i], t[i], width, height, s)
        pillar_px = np.isfinite(scene_d) & (scene_d < ground_d - 1e-3)

        def down(a, _s=s):
            a = np.asarray(a, np.float32)
            return a.reshape(height, _s, width, _s, *a.shape[2:]).mean(axis=(1, 3))

        out["plate"].append(_u8(down(scene_rgb)))
        out["truth"].append(_u8(down(truth)))
        out["depth"].append(depth1.astype(np.float32))
        out["alpha"].append(down(front))
        out["cover"].append(down(char_mask))
        out["occluder"].append(down(pillar_px))
    return CGPlate(np.stack(out["plate"]), np.stack(out["depth"]), np.stack(out["truth"]),
                   np.stack(out["alpha"]), np.stack(out["cover"]), np.stack(out["occluder"]),
                   K, R, t, sh, posed)


def _ground_depth(K, R, t, W, H, s):
    from backend.footage.shadow import ground_depth

    Ks = np.diag([s, s, 1.0]) @ K
    return ground_depth(Ks, R, t, 0.0, (0, 0, W * s, H * s))


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_plate(plate: CGPlate, folder: Path, fps: float = 30.0) -> dict[str, Path]:
    """The plate as a user would hand it over: numbered PNGs, depth.npy (F, H, W), camera.json
    (a CameraPath, one entry per frame); depth/ holds the same depth as one .npy per frame."""
    from PIL import Image

    from protocol.cameras import CameraPath

    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "plate"
    video.mkdir(exist_ok=True)
    for i, frame in enumerate(plate.plate):
        Image.fromarray(frame).save(video / f"{i + 1:04d}.png")
    np.save(folder / "depth.npy", plate.depth)
    (folder / "depth").mkdir(exist_ok=True)
    for i, d in enumerate(plate.depth):
        np.save(folder / "depth" / f"{i + 1:04d}.npy", d)
    H, W = plate.plate.shape[1:3]
    path = CameraPath(plate.K, plate.R, plate.t, W, H, NEAR, 100.0, 1, fps)
    (folder / "camera.json").write_text(path.to_json())
    return {"video": video, "depth": folder / "depth.npy", "depth_dir": folder / "depth",
            "camera": folder / "camera.json"}
