"""Condition images of a posed SMPL-X body seen by K cameras, for ControlNet.

For each camera: the OpenPose skeleton image (our renderer, ``backend.preview.openpose``, drawn
as ControlNet-openpose was trained), a depth image (inverse depth as MiDaS gives it, near bright,
background black), a normal image, the body's silhouette and its world normals (the stand-in
normals and the mask seed of the generated views), plus the camera path itself and a view label
(front / side / back) from the camera's azimuth relative to the way the body faces.

Normal images follow the colours ControlNet's normal models show (the MiDaS-normal and
normal-BAE preprocessors of ControlNet 1.1): red = pointing left in the image, green = up,
blue = towards the viewer, ``rgb = (n + 1) / 2``. That is OpenCV camera axes negated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.body.loading import load_body_model
from backend.body.model import BodyParams
from backend.preview.openpose import draw_openpose, keypoints_from_joints
from backend.preview.pipeline import KEYPOINT_NAMES
from backend.render.api import get_rasterizer
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes
from backend.render.threads import torch_threads
from protocol.cameras import CameraPath, multiview_ring

CONDITION_KINDS = ("pose", "depth", "normal")
# |azimuth| <= FRONT_DEG is a front view, >= BACK_DEG a back view, between them a side view
# (the split DreamFusion-style view-dependent prompts use).
FRONT_DEG = 45.0
BACK_DEG = 135.0
# Inverse depth of the body spans [DEPTH_FLOOR, 1] so its far side stays apart from the black
# background (MiDaS-normalised depth images put the farthest scene point at 0; here that is the
# empty background).
DEPTH_FLOOR = 0.2


def view_label(azimuth_deg: float, front_deg: float = FRONT_DEG, back_deg: float = BACK_DEG) -> str:
    """"front", "side" or "back" for a camera at ``azimuth_deg`` from the body's facing direction."""
    a = abs((float(azimuth_deg) + 180.0) % 360.0 - 180.0)
    return "front" if a <= front_deg else "back" if a >= back_deg else "side"


def body_facing(joints: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Unit vector (3,) in the ground plane the body faces: across its hips and shoulders x up.

    SMPL-X's left side is +x and the body faces +z at rest; (left - right) x up = forward.
    """
    index = {n: i for i, n in enumerate(names)}
    lateral = (joints[index["left_hip"]] - joints[index["right_hip"]]
               + joints[index["left_shoulder"]] - joints[index["right_shoulder"]])
    forward = np.cross(lateral, np.array([0.0, 1.0, 0.0]))
    forward[1] = 0.0
    norm = np.linalg.norm(forward)
    return forward / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])


def camera_azimuths(cameras: CameraPath, centre: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """(K,) signed azimuth in degrees of each camera centre around ``centre``, 0 = where the body faces,
    positive towards the body's left (counter-clockwise seen from above, as ``orbit_path``)."""
    out = []
    base = np.degrees(np.arctan2(facing[0], facing[2]))
    for i in range(len(cameras)):
        c = -cameras.R[i].T @ cameras.t[i] - centre
        az = np.degrees(np.arctan2(c[0], c[2])) - base
        out.append((az + 180.0) % 360.0 - 180.0)
    return np.asarray(out)


@dataclass
class BodyConditions:
    """Per-view condition images (K views) and what the views format needs from the body."""

    cameras: CameraPath
    names: list[str]
    labels: list[str]  # front / side / back
    azimuth_deg: np.ndarray  # (K,)
    pose: np.ndarray  # (K,H,W,3) uint8 OpenPose drawing
    depth: np.ndarray  # (K,H,W,3) uint8 inverse depth (grey)
    normal: np.ndarray  # (K,H,W,3) uint8 ControlNet normal colours
    mask: np.ndarray  # (K,H,W) bool body silhouette
    normal_world: np.ndarray  # (K,H,W,3) float32 unit world normals on the body, 0 elsewhere
    smplx: dict[str, Any]  # protocol SMPL-X parameters, one frame (what the views manifest stores)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def images(self, kind: str) -> list[Image.Image]:
        """The K condition images of ``kind`` ("pose", "depth", "normal") as RGB PIL images."""
        if kind not in CONDITION_KINDS:
            raise ValueError(f"unknown condition {kind!r}; known: {', '.join(CONDITION_KINDS)}")
        return [Image.fromarray(a, "RGB") for a in getattr(self, kind)]


def framed_ring(n_views: int, vertices: np.ndarray, facing: np.ndarray, *, width: int, height: int,
                elevation_deg: float = 0.0, fov_y_deg: float = 40.0, margin: float = 0.85) -> CameraPath:
    """``n_views`` cameras on a ring around the body, the first one in front of it, each framing the
    whole body (its box fills ``margin`` of the tighter image direction from any azimuth)."""
    lo, hi = vertices.min(0), vertices.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    tan_v = np.tan(np.radians(fov_y_deg) / 2)
    tan_h = tan_v * width / height
    half_xz = float(np.hypot(half[0], half[2]))
    radius = max(half[1] / tan_v, half_xz / tan_h) / margin + half_xz
    # Rounded: a facing a hair off +z must not start the ring at 359.9999 degrees (named az360).
    start = round(float(np.degrees(np.arctan2(facing[0], facing[2]))), 2) % 360.0
    return multiview_ring(n_views, radius=float(radius), elevations_deg=(elevation_deg,), target=centre,
                          fov_y_deg=fov_y_deg, width=width, height=height, near=0.05,
                          far=float(4 * radius + 10), azimuth_start_deg=start)


def _payload(smplx: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in smplx.items():
        if key == "gender":
            out[key] = str(value)
        elif value is not None and not isinstance(value, str):
            out[key] = np.asarray(value, dtype=np.float64).reshape(-1).tolist()
    out.setdefault("gender", "neutral")
    return out


def control_normal_image(normal_cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 in ControlNet's normal colours from OpenCV-camera normals; background black."""
    rgb = (-normal_cam + 1.0) * 0.5
    return np.where(mask[..., None], np.clip(np.round(rgb * 255), 0, 255), 0).astype(np.uint8)


def anchored_ring(n_views: int, vertices: np.ndarray, anchor: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                  width: int, height: int, name: str = "photo", **ring: Any) -> CameraPath:
    """View 0 is the ``anchor`` camera (K, R, t: a photo's, the body fitted in front of it); the
    other ``n_views - 1`` are :func:`framed_ring`'s, starting from the anchor's azimuth around the
    body (so they are spread evenly around from the photo, whichever way the person turned)."""
    K, R, t = (np.asarray(a, dtype=np.float64) for a in anchor)
    lo, hi = vertices.min(0), vertices.max(0)
    toward = -R.T @ t - (lo + hi) / 2
    toward[1] = 0.0
    norm = np.linalg.norm(toward)
    toward = toward / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])
    path = framed_ring(n_views, vertices, toward, width=width, height=height, **ring)
    path.K[0], path.R[0], path.t[0] = K, R, t
    names = list(path.names) if path.names else [f"view{i:02d}" for i in range(n_views)]
    names[0] = name
    # Far enough for the anchor too (a photo may be taken from farther than the ring's radius).
    far = max(path.far, 4 * float(np.linalg.norm(-R.T @ t - (lo + hi) / 2)) + 10)
    return CameraPath(path.K, path.R, path.t, width, height, path.near, far, names=names)


def body_conditions(smplx: Mapping[str, Any], cameras: CameraPath | int = 8, *, width: int = 512,
                    height: int = 512, elevation_deg: float = 0.0, fov_y_deg: float = 40.0,
                    rasterizer: str = "auto", hands: bool = True, face: bool = True,
                    model_path: str | Path | None = None,
                    anchor_camera: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> BodyConditions:
    """Render the conditions of the body posed by ``smplx`` (protocol parameters, one frame).

    ``cameras`` is a camera path (its own image size wins) or a number of views on a ring around
    the body, starting in front of it, or with ``anchor_camera`` (K, R, t at ``width`` x
    ``height``) starting with that camera (:func:`anchored_ring`).
    """
    params = _payload(smplx)
    model = load_body_model(params["gender"], str(model_path) if model_path else None)
    arrays = {k: v for k, v in params.items() if k != "gender"}
    body_params = BodyParams.from_arrays(arrays, n_frames=1, num_betas=model.num_betas,
                                         num_expression=model.num_expression)
    with torch.no_grad():
        body = model(body_params)
    verts = body.vertices[0]
    joints = body.joints[0].double().numpy()
    facing = body_facing(joints, tuple(model.joint_names))
    if isinstance(cameras, int):
        if cameras <= 0:
            raise ValueError("the number of views must be positive")
        if anchor_camera is not None:
            cameras = anchored_ring(cameras, verts.double().numpy(), anchor_camera, width=width,
                                    height=height, elevation_deg=elevation_deg, fov_y_deg=fov_y_deg)
        else:
            cameras = framed_ring(cameras, verts.double().numpy(), facing, width=width, height=height,
                                  elevation_deg=elevation_deg, fov_y_deg=fov_y_deg)
    width, height = cameras.width, cameras.height
    n = len(cameras)
    names = list(cameras.names) if cameras.names else [f"view{i:02d}" for i in range(n)]
    vnp = verts.double().numpy()
    centre = (vnp.min(0) + vnp.max(0)) / 2
    azimuths = camera_azimuths(cameras, centre, facing)
    keypoints = torch.cat([body.joints, body.extra_joints, body.landmarks], dim=1)[0]
    mesh = Mesh(verts=verts, faces=torch.as_tensor(model.faces))
    raster = get_rasterizer(rasterizer)

    pose = np.zeros((n, height, width, 3), np.uint8)
    depth_img = np.zeros((n, height, width, 3), np.uint8)
    normal_img = np.zeros((n, height, width, 3), np.uint8)
    masks = np.zeros((n, height, width), bool)
    normal_world = np.zeros((n, height, width, 3), np.float32)
    # One inverse-depth range for all views (from the vertices' depths), so views agree.
    z = np.stack([vnp @ cameras.R[i][2] + cameras.t[i][2] for i in range(n)])
    inv_lo, inv_hi = 1.0 / max(float(z.max()), 1e-6), 1.0 / max(float(z.min()), cameras.near)
    for i in range(n):
        with torch.no_grad(), torch_threads(1):
            out = render_passes(mesh, CameraBatch.from_path(cameras, [i]),
                                passes=["alpha", "depth", "normal_cam", "normal_world", "joints"],
                                joints=keypoints, rasterizer=raster)
        mask = out.raster.mask[0].numpy().astype(bool)
        masks[i] = mask
        kp = keypoints_from_joints(out.joints_2d[0].numpy(), out.joints_visible[0].numpy(), KEYPOINT_NAMES)
        pose[i] = draw_openpose(kp, width, height, hands=hands, face=face)
        d = out.depth[0].numpy()
        inv = np.where(mask, 1.0 / np.where(mask, d, 1.0), 0.0)
        t = np.clip((inv - inv_lo) / max(inv_hi - inv_lo, 1e-12), 0.0, 1.0)
        grey = np.where(mask, DEPTH_FLOOR + (1.0 - DEPTH_FLOOR) * t, 0.0)
        depth_img[i] = np.round(grey * 255).astype(np.uint8)[..., None]
        normal_img[i] = control_normal_image(out.normal_cam[0].numpy(), mask)
        normal_world[i] = np.where(mask[..., None], out.normal_world[0].numpy(), 0.0)
    labels = [view_label(a) for a in azimuths]
    return BodyConditions(
        cameras=cameras, names=names, labels=labels, azimuth_deg=azimuths, pose=pose, depth=depth_img,
        normal=normal_img, mask=masks, normal_world=normal_world, smplx=params,
        info={"body": "stand-in" if model.is_standin else "licensed", "rasterizer": raster.name,
              "facing": facing.tolist()},
    )
