"""Body preview pipeline: pose the SMPL-X body with a motion, render it through a camera path,
write PNG sequences per pass (+ an mp4). Used by the ``body.preview`` job and ``avatar-studio
preview``; knows nothing about sockets.

Frame i shows motion frame ``min(i, M - 1)`` through camera ``i % C``: a static pose with
``orbit:N`` is a turntable, a motion with one camera is a fixed shot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from smplx.joint_names import JOINT_NAMES as SMPLX_OUTPUT_NAMES

from backend.body.loading import load_body_model
from backend.body.motion import Motion
from backend.preview.openpose import draw_openpose, keypoints_from_joints
from backend.preview.video import (
    depth_to_uint16,
    frame_name,
    normals_to_uint8,
    to_uint8,
    write_mp4,
    write_png,
)
from backend.render.api import get_rasterizer
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes
from backend.render.threads import torch_threads
from protocol.cameras import CameraPath, orbit_path

PREVIEW_PASSES = ("rgb", "mask", "depth", "normal", "pose")
# 55 joints, 21 vertex keypoints, 51 face landmarks: the order of smplx's own joint output.
KEYPOINT_NAMES: tuple[str, ...] = tuple(SMPLX_OUTPUT_NAMES[:127])

# One colour per body part (PART_NAMES order), left/right sides in related hues.
PART_COLORS = np.array([
    (0.93, 0.80, 0.62), (0.85, 0.72, 0.55), (0.55, 0.62, 0.80),
    (0.85, 0.45, 0.40), (0.95, 0.60, 0.45), (0.98, 0.80, 0.55),
    (0.40, 0.60, 0.85), (0.45, 0.75, 0.90), (0.60, 0.88, 0.95),
    (0.60, 0.45, 0.75), (0.75, 0.55, 0.85), (0.88, 0.70, 0.92),
    (0.35, 0.70, 0.50), (0.45, 0.82, 0.55), (0.65, 0.92, 0.65),
], dtype=np.float32)


@dataclass
class PreviewConfig:
    """What to render. ``cameras`` is a CameraPath or ``"orbit:N"`` (framed on the posed body)."""

    motion: Motion
    cameras: CameraPath | str = "orbit:8"
    width: int = 512
    height: int = 512
    frames: int | None = None
    passes: tuple[str, ...] = PREVIEW_PASSES
    betas: np.ndarray | None = None
    gender: str = "neutral"
    model_path: Path | None = None
    color: str = "parts"  # "parts" or "grey"
    hands: bool = True
    face: bool = True
    mp4: bool = True
    rasterizer: str = "auto"
    elevation_deg: float = 10.0
    fov_y_deg: float = 40.0

    def __post_init__(self) -> None:
        unknown = set(self.passes) - set(PREVIEW_PASSES)
        if unknown:
            raise ValueError(f"unknown preview passes {sorted(unknown)}; known: {', '.join(PREVIEW_PASSES)}")
        if self.width <= 0 or self.height <= 0 or self.width * self.height > 4096 * 4096:
            raise ValueError(f"bad image size {self.width}x{self.height}")
        if self.frames is not None and self.frames <= 0:
            raise ValueError("frames must be positive")
        if self.color not in ("parts", "grey"):
            raise ValueError("color must be 'parts' or 'grey'")


@dataclass
class PreviewResult:
    files: dict[str, Path]
    n_frames: int
    fps: float
    cameras: CameraPath  # one camera per rendered frame
    depth_range: tuple[float, float]
    joints_2d: np.ndarray  # (F,127,2) pixels
    joints_visible: np.ndarray  # (F,127) bool
    info: dict[str, object] = field(default_factory=dict)




def _camera_count(cameras: CameraPath | str) -> int:
    if isinstance(cameras, CameraPath):
        return len(cameras)
    try:
        return max(int(cameras.split(":", 1)[1]), 1)
    except (IndexError, ValueError):
        raise ValueError(f"bad camera spec {cameras!r}; expected orbit:N") from None


def frame_cameras(cameras: CameraPath | str, vertices: np.ndarray, config: PreviewConfig,
                  n_frames: int) -> CameraPath:
    """Resolve ``orbit:N`` around the posed body and expand to one camera per output frame."""
    if isinstance(cameras, str):
        if not cameras.startswith("orbit:"):
            raise ValueError(f"camera spec must be 'orbit:N' or a camera path, got {cameras!r}")
        try:
            n_views = int(cameras.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad camera spec {cameras!r}; expected orbit:N") from None
        if n_views <= 0:
            raise ValueError("orbit:N needs N > 0")
        lo, hi = vertices.reshape(-1, 3).min(0), vertices.reshape(-1, 3).max(0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        # Distance at which the box fills ~85% of the frame in its tighter direction, seen from any
        # azimuth (horizontal half-extent up to the xz diagonal), plus the box's depth.
        tan_v = np.tan(np.radians(config.fov_y_deg) / 2)
        tan_h = tan_v * config.width / config.height
        half_xz = float(np.hypot(half[0], half[2]))
        radius = max(half[1] / tan_v, half_xz / tan_h) / 0.85 + half_xz
        cameras = orbit_path(n_views, radius=float(radius), elevation_deg=config.elevation_deg,
                             target=centre, fov_y_deg=config.fov_y_deg, width=config.width,
                             height=config.height, near=0.05, far=float(4 * radius + 10),
                             fps=config.motion.fps)
    if (cameras.width, cameras.height) != (config.width, config.height):
        # A camera path carries its own image size; it wins over the requested one.
        config.width, config.height = cameras.width, cameras.height
    index = np.arange(n_frames) % len(cameras)
    names = [cameras.names[i] for i in index] if cameras.names else None
    return CameraPath(cameras.K[index], cameras.R[index], cameras.t[index], cameras.width, cameras.height,
                      cameras.near, cameras.far, cameras.frame_start, cameras.fps, names)


def render_preview(config: PreviewConfig, out_dir: Path, *,
                   progress: Callable[[float, str], None] = lambda f, m: None,
                   check_cancelled: Callable[[], None] = lambda: None) -> PreviewResult:
    """Render every frame and write ``<pass>/NNNN.png`` (+ ``rgb.mp4``) under ``out_dir``."""
    out_dir = Path(out_dir)
    model = load_body_model(config.gender, str(config.model_path) if config.model_path else None)
    motion = config.motion
    n_frames = config.frames or max(motion.n_frames, _camera_count(config.cameras))
    used = motion.frames(0, min(n_frames, motion.n_frames))
    betas = config.betas if config.betas is not None else used.betas
    params = used.to_params(num_betas=model.num_betas, num_expression=model.num_expression)
    params.betas = torch.zeros(model.num_betas)
    given = torch.as_tensor(np.asarray(betas, dtype=np.float32).reshape(-1)[: model.num_betas])
    params.betas[: given.shape[0]] = given
    progress(0.02, "posing body")
    with torch.no_grad():
        body = model(params)
    verts_all = body.vertices.numpy()
    keypoints_all = torch.cat([body.joints, body.extra_joints, body.landmarks], dim=1)
    cameras = frame_cameras(config.cameras, verts_all, config, n_frames)
    motion_index = np.minimum(np.arange(n_frames), used.n_frames - 1)

    # One depth range for the whole sequence, from the vertices (rendered depths are convex
    # combinations of vertex depths, so they always fall inside it).
    depth_lo, depth_hi = np.inf, -np.inf
    for i in range(n_frames):
        z = verts_all[motion_index[i]] @ cameras.R[i][2] + cameras.t[i][2]
        depth_lo, depth_hi = min(depth_lo, float(z.min())), max(depth_hi, float(z.max()))
    depth_range = (max(depth_lo, cameras.near), depth_hi)

    faces = torch.as_tensor(model.faces)
    labels = torch.as_tensor(model.part_labels().astype(np.int64))
    colors = None
    if config.color == "parts":
        colors = torch.as_tensor(PART_COLORS[labels.numpy() % len(PART_COLORS)])
    rasterizer = get_rasterizer(config.rasterizer)
    wanted = set(config.passes)
    render_pass_names = ["rgb", "alpha", "depth", "normal_cam", "joints"]
    files: dict[str, Path] = {}
    rgb_frames: list[np.ndarray] = []
    joints_2d = np.zeros((n_frames, len(KEYPOINT_NAMES), 2), dtype=np.float32)
    joints_visible = np.zeros((n_frames, len(KEYPOINT_NAMES)), dtype=bool)
    for i in range(n_frames):
        check_cancelled()
        m = int(motion_index[i])
        cams = CameraBatch.from_path(cameras, [i])
        mesh = Mesh(verts=body.vertices[m], faces=faces, vertex_colors=colors, part_labels=labels)
        with torch.no_grad(), torch_threads(1):
            out = render_passes(mesh, cams, passes=render_pass_names, joints=keypoints_all[m],
                                rasterizer=rasterizer, background=(0.0, 0.0, 0.0))
        mask = out.raster.mask[0].numpy()
        joints_2d[i] = out.joints_2d[0].numpy()
        joints_visible[i] = out.joints_visible[0].numpy()
        name = frame_name(i, start=1)
        images: dict[str, np.ndarray] = {}
        rgb = to_uint8(out.rgb[0].numpy())
        if "rgb" in wanted:
            images["rgb"] = rgb
            rgb_frames.append(rgb)
        if "mask" in wanted:
            images["mask"] = (mask * 255).astype(np.uint8)
        if "depth" in wanted:
            images["depth"] = depth_to_uint16(out.depth[0].numpy(), depth_range)[0]
        if "normal" in wanted:
            images["normal"] = normals_to_uint8(out.normal_cam[0].numpy(), mask)
        if "pose" in wanted:
            kp = keypoints_from_joints(joints_2d[i], joints_visible[i], KEYPOINT_NAMES)
            images["pose"] = draw_openpose(kp, cameras.width, cameras.height, hands=config.hands,
                                           face=config.face)
        for pass_name, image in images.items():
            files[f"{pass_name}/{name}"] = write_png(out_dir / pass_name / name, image)
        progress(0.05 + 0.9 * (i + 1) / n_frames, f"frame {i + 1}/{n_frames}")
    if config.mp4 and rgb_frames:
        check_cancelled()
        progress(0.96, "encoding rgb.mp4")
        files["rgb.mp4"] = write_mp4(out_dir / "rgb.mp4", rgb_frames, fps=motion.fps)
    progress(1.0, "done")
    return PreviewResult(
        files=files, n_frames=n_frames, fps=motion.fps, cameras=cameras, depth_range=depth_range,
        joints_2d=joints_2d, joints_visible=joints_visible,
        info={"model": "stand-in" if model.is_standin else "licensed",
              "rasterizer": rasterizer.name},
    )
