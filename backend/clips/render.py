"""Render one sampled clip with all its ground truth into a folder (layout: docs/clips.md).

Per camera, one :func:`backend.render.passes.render_passes` call draws every person at once (their
meshes concatenated; a face id divided by the body's face count is the person id), frames in
chunks. Amodal masks rasterise each person alone (only when there are several people: with one, the
amodal mask is the modal one). Keypoints are projected here in float64 from the stored cameras and
3D joints, so the stored 2D points are exactly the stored 3D points seen through the stored K, R, t;
their visibility comes from the depth test against the rendered depth.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.body.loading import load_body_model
from backend.body.model import BodyModel
from backend.clips.coco import COCO17_FROM_SMPLX, clip_fragment, write_json
from backend.clips.sample import ClipPlan, pose, rest_pelvis, transform_root
from backend.preview.pipeline import KEYPOINT_NAMES, torch_threads
from backend.render.api import Rasterizer, get_rasterizer
from backend.render.bands import default_threads
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes
from protocol.smplx import PER_FRAME_FIELDS

BACKGROUND = (0.32, 0.34, 0.38)
VISIBILITY_TOLERANCE = 0.15  # metres a joint may lie behind the surface seen at its pixel (limb thickness)
CHUNK = 8  # frames rendered per call


def _write_png(path: Path, image: np.ndarray) -> None:
    # zlib level 1: 2-3x faster than the default for a few % more bytes; zlib releases the GIL,
    # so the encoding of one frame overlaps the rendering of the next.
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def _bbox(masks: np.ndarray) -> np.ndarray:
    """(N,4) x, y, w, h (pixels, top-left corner origin) of (N,H,W) masks; zeros when empty."""
    out = np.zeros((masks.shape[0], 4), dtype=np.float32)
    rows, cols = masks.any(2), masks.any(1)
    for i in range(masks.shape[0]):
        if rows[i].any():
            y = np.flatnonzero(rows[i])
            x = np.flatnonzero(cols[i])
            out[i] = (x[0], y[0], x[-1] + 1 - x[0], y[-1] + 1 - y[0])
    return out


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (F,N,2) (pixel centres at +0.5) and camera z (F,N) of world points (F,N,3), float64."""
    cam = np.einsum("fij,fnj->fni", R, np.asarray(points, dtype=np.float64)) + t[:, None]
    homog = np.einsum("fij,fnj->fni", K, cam)
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return homog[..., :2] / z[..., None], z


def keypoint_visibility(xy: np.ndarray, z: np.ndarray, depth: np.ndarray, instance: np.ndarray,
                        person: np.ndarray, near: float) -> np.ndarray:
    """COCO visibility (F,N) uint8: 2 = seen (in the image, in front of the camera, on its own
    person's modal mask and at most VISIBILITY_TOLERANCE behind the depth there), 1 = in the image
    but hidden, 0 = outside the image or behind the camera."""
    F, H, W = depth.shape
    inside = (z > near) & np.isfinite(xy).all(-1) & (xy[..., 0] >= 0) & (xy[..., 0] < W) \
        & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    ix = np.clip(np.floor(np.nan_to_num(xy[..., 0])), 0, W - 1).astype(np.int64)
    iy = np.clip(np.floor(np.nan_to_num(xy[..., 1])), 0, H - 1).astype(np.int64)
    frame = np.arange(F)[:, None]
    seen = (inside & (instance[frame, iy, ix] == person[None] + 1)
            & (z - depth[frame, iy, ix] <= VISIBILITY_TOLERANCE))
    return np.where(seen, 2, np.where(inside, 1, 0)).astype(np.uint8)


def render_clip(plan: ClipPlan, out_dir: Path, passes: tuple[str, ...], *, model: BodyModel | None = None,
                rasterizer: Rasterizer | None = None, threads: int | None = None,
                on_frames: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Write clip ``plan`` into ``out_dir`` (created; must not exist). Returns its manifest entry."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True)
    rasterizer = rasterizer or get_rasterizer("auto")
    threads = threads or default_threads()
    P, F, H, W = len(plan.people), plan.frames, plan.height, plan.width
    bodies = [model if model is not None and p.gender == "neutral" else load_body_model(p.gender)
              for p in plan.people]
    faces_one = torch.as_tensor(bodies[0].faces)
    n_faces, n_verts = faces_one.shape[0], bodies[0].faces.max() + 1
    posed = [pose(b, p.params) for b, p in zip(bodies, plan.people, strict=True)]
    verts = torch.from_numpy(np.concatenate([v for v, _ in posed], axis=1))  # (F, P*V, 3)
    joints3d = np.stack([k for _, k in posed], axis=1)  # (F,P,127,3) float32
    faces = torch.cat([faces_one + p * n_verts for p in range(P)])
    labels = torch.as_tensor(np.concatenate([b.part_labels().astype(np.int64) for b in bodies]))
    colors = torch.as_tensor(np.concatenate([p.colors for p in plan.people]))
    wanted = set(passes)
    render_names = ["face_id", "depth"] + (["rgb"] if "rgb" in wanted else []) \
        + (["normal_cam"] if "normal" in wanted else []) + (["part"] if "part" in wanted else [])
    person_of_joint = np.repeat(np.arange(P), len(KEYPOINT_NAMES))
    pelvis = [rest_pelvis(b, p.params["betas"]) for b, p in zip(bodies, plan.people, strict=True)]

    instance_all: dict[str, np.ndarray] = {}
    coco_all: dict[str, np.ndarray] = {}
    bbox_all: dict[str, np.ndarray] = {}
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, torch.no_grad(), torch_threads(1):
        for cam in plan.cameras:
            cam_dir = out_dir / cam.name
            (cam_dir / "rgb").mkdir(parents=True) if "rgb" in wanted else cam_dir.mkdir(parents=True)
            depth = np.zeros((F, H, W), dtype=np.float32)
            instance = np.zeros((F, H, W), dtype=np.uint8)
            normal = np.zeros((F, H, W, 3), dtype=np.float16) if "normal" in wanted else None
            part = np.full((F, H, W), -1, dtype=np.int8) if "part" in wanted else None
            amodal = np.zeros((F, P, H, W), dtype=bool) if "amodal" in wanted else None
            for lo in range(0, F, CHUNK):
                hi = min(F, lo + CHUNK)
                cams = CameraBatch(cam.K[lo:hi], cam.R[lo:hi], cam.t[lo:hi], W, H, plan.near, plan.far)
                mesh = Mesh(verts=verts[lo:hi], faces=faces, vertex_colors=colors, part_labels=labels)
                out = render_passes(mesh, cams, passes=render_names, rasterizer=rasterizer,
                                    background=BACKGROUND, threads=threads)
                face_id = out.face_id.numpy()
                instance[lo:hi] = np.where(face_id >= 0, face_id // n_faces + 1, 0)
                d = out.depth.numpy()
                depth[lo:hi] = np.where(np.isfinite(d), d, 0.0)
                if normal is not None:
                    normal[lo:hi] = out.normal_cam.numpy()
                if part is not None:
                    part[lo:hi] = out.part.numpy()
                if amodal is not None:
                    if P == 1:
                        amodal[lo:hi, 0] = instance[lo:hi] == 1
                    else:
                        clip = cams.clip(verts[lo:hi])
                        for p in range(P):
                            alone = clip[:, p * n_verts:(p + 1) * n_verts]
                            raster = rasterizer.rasterize(alone, faces_one, cams.resolution)
                            amodal[lo:hi, p] = raster.mask.numpy()
                if "rgb" in wanted:
                    rgb = (np.clip(out.rgb.numpy(), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
                    for f in range(hi - lo):
                        pending.append(pool.submit(_write_png, cam_dir / "rgb" / f"{lo + f:06d}.png", rgb[f]))
                on_frames(hi - lo)
            # Ground truth that does not need pixels beyond the depth test.
            kp3d = joints3d.reshape(F, P * len(KEYPOINT_NAMES), 3)
            xy, z = project(kp3d, cam.K, cam.R, cam.t)
            vis = keypoint_visibility(xy, z, depth_for_test(depth), instance, person_of_joint, plan.near)
            xy = xy.reshape(F, P, -1, 2)
            vis = vis.reshape(F, P, -1)
            coco = np.concatenate([xy[:, :, COCO17_FROM_SMPLX], vis[:, :, COCO17_FROM_SMPLX, None]], axis=-1)
            coco[coco[..., 2] == 0, :2] = 0.0  # COCO: unlabelled points are (0, 0, 0)
            modal = instance[:, None] == np.arange(1, P + 1)[None, :, None, None]  # (F,P,H,W)
            bbox = _bbox(modal.reshape(F * P, H, W)).reshape(F, P, 4)
            annotations: dict[str, np.ndarray] = {
                "keypoints": xy.astype(np.float64), "visibility": vis, "coco17": coco.astype(np.float64),
                "bbox": bbox, "area": modal.sum((2, 3)).astype(np.int64),
                "joints_cam": (np.einsum("fij,fpnj->fpni", cam.R, joints3d.astype(np.float64))
                               + cam.t[:, None, None]),
            }
            if amodal is not None:
                annotations["bbox_amodal"] = _bbox(amodal.reshape(F * P, H, W)).reshape(F, P, 4)
                annotations["area_amodal"] = amodal.sum((2, 3)).astype(np.int64)
            orient_cam, transl_cam = [], []
            for p, person in enumerate(plan.people):
                o, tr = transform_root(person.params["global_orient"], person.params["transl"], pelvis[p],
                                       cam.R, cam.t)
                orient_cam.append(o)
                transl_cam.append(tr)
            annotations["global_orient_cam"] = np.stack(orient_cam, 1)
            annotations["transl_cam"] = np.stack(transl_cam, 1)
            np.savez(cam_dir / "annotations.npz", **annotations)
            np.savez(cam_dir / "camera.npz", K=cam.K, R=cam.R, t=cam.t,
                     size=np.array([W, H]), near_far=np.array([plan.near, plan.far]))
            if "depth" in wanted:
                np.save(cam_dir / "depth.npy", depth)
            if "instance" in wanted:
                np.save(cam_dir / "instance.npy", instance)
            if normal is not None:
                np.save(cam_dir / "normal.npy", normal)
            if part is not None:
                np.save(cam_dir / "part.npy", part)
            if amodal is not None:
                np.save(cam_dir / "amodal.npy", amodal)
            instance_all[cam.name], coco_all[cam.name], bbox_all[cam.name] = instance, coco, bbox
        for job in pending:
            job.result()

    people = {k: np.stack([p.params[k] for p in plan.people])
              for k in (*PER_FRAME_FIELDS, "betas", "expression")}
    np.savez(out_dir / "people.npz", **people, joints=joints3d, pelvis=np.stack(pelvis))
    cameras = [c.name for c in plan.cameras]
    fragment = clip_fragment(plan.clip_id, cameras, F, W, H, instance_all, coco_all, bbox_all)
    write_json(out_dir / "coco.json", fragment)
    entry = {
        "id": plan.clip_id, "index": plan.index, "seed": plan.seed, "frames": F, "fps": plan.fps,
        "width": W, "height": H, "near": plan.near, "far": plan.far, "passes": list(passes),
        "body_model": "stand-in" if bodies[0].is_standin else "smplx",
        "people": [{"gender": p.gender, **p.motion} for p in plan.people],
        "cameras": [{"name": c.name, "kind": c.kind} for c in plan.cameras],
        **plan.info,
    }
    write_json(out_dir / "clip.json", entry)
    return entry


def depth_for_test(depth: np.ndarray) -> np.ndarray:
    """Depth with the background at +inf again (stored as 0), for the occlusion test."""
    return np.where(depth > 0, depth, np.inf)
