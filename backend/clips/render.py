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

import numba
import numpy as np
import torch
from numpy.lib.format import open_memmap

from backend.body.loading import load_body_model
from backend.body.model import BodyModel
from backend.clips.coco import COCO17_FROM_SMPLX, clip_fragment, write_json
from backend.clips.png import write_rgb_png
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


def _pass_array(folder: Path, wanted: set[str], name: str, shape: tuple[int, ...], dtype: type,
                keep: bool = False) -> Any:
    """``<name>.npy`` memory-mapped for writing if the pass is wanted, else an array (``keep``) or None."""
    if name in wanted:
        return open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
    return np.zeros(shape, dtype=dtype) if keep else None


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
    posed = plan.posed or [pose(b, p.params) for b, p in zip(bodies, plan.people, strict=True)]
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
    # Half the threads render, half encode PNGs, cast normals and so on: two stages of a pipeline,
    # each on its own cores, instead of both fighting for all of them (on 2 cores: 52 -> 6x fps).
    encoders = max(1, threads // 2)
    render_threads = max(1, threads - encoders)
    with ThreadPoolExecutor(max_workers=encoders) as pool, torch.no_grad(), torch_threads(1):
        for cam in plan.cameras:
            cam_dir = out_dir / cam.name
            (cam_dir / "rgb").mkdir(parents=True) if "rgb" in wanted else cam_dir.mkdir(parents=True)
            # The passes are written straight into their .npy files (memory-mapped): no copy and no
            # serial write at the end; the kernel writes the pages back behind the render.
            depth = _pass_array(cam_dir, wanted, "depth", (F, H, W), np.float32, keep=True)
            instance = _pass_array(cam_dir, wanted, "instance", (F, H, W), np.uint8, keep=True)
            normal = _pass_array(cam_dir, wanted, "normal", (F, H, W, 3), np.float16)
            part = _pass_array(cam_dir, wanted, "part", (F, H, W), np.int8)
            amodal = _pass_array(cam_dir, wanted, "amodal", (F, P, H, W), np.bool_)
            for lo in range(0, F, CHUNK):
                hi = min(F, lo + CHUNK)
                cams = CameraBatch(cam.K[lo:hi], cam.R[lo:hi], cam.t[lo:hi], W, H, plan.near, plan.far)
                mesh = Mesh(verts=verts[lo:hi], faces=faces, vertex_colors=colors, part_labels=labels)
                out = render_passes(mesh, cams, passes=render_names, rasterizer=rasterizer,
                                    background=BACKGROUND, threads=render_threads)
                instance_from_faces(out.face_id.numpy(), n_faces, instance[lo:hi])
                depth[lo:hi] = np.nan_to_num(out.depth.numpy(), copy=False, posinf=0.0)
                if normal is not None:  # the float16 cast (~2.5 ms a frame) runs beside the next render
                    pending.append(pool.submit(np.copyto, normal[lo:hi], out.normal_cam.numpy(),
                                               casting="same_kind"))
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
                    rgb = out.rgb.numpy()
                    for f in range(hi - lo):
                        pending.append(pool.submit(write_rgb_png, cam_dir / "rgb" / f"{lo + f:06d}.png",
                                                   rgb[f]))
                on_frames(hi - lo)
            # Ground truth that does not need pixels beyond the depth test.
            kp3d = joints3d.reshape(F, P * len(KEYPOINT_NAMES), 3)
            xy, z = project(kp3d, cam.K, cam.R, cam.t)
            for job in pending:  # the normals must be in place before they are saved
                job.result()
            vis = keypoint_visibility(xy, z, depth, instance, person_of_joint, plan.near)
            xy = xy.reshape(F, P, -1, 2)
            vis = vis.reshape(F, P, -1)
            coco = np.concatenate([xy[:, :, COCO17_FROM_SMPLX], vis[:, :, COCO17_FROM_SMPLX, None]], axis=-1)
            coco[coco[..., 2] == 0, :2] = 0.0  # COCO: unlabelled points are (0, 0, 0)
            bbox, area = np.zeros((F, P, 4), np.float32), np.zeros((F, P), np.int64)
            label_boxes(instance, P, bbox, area)
            annotations: dict[str, np.ndarray] = {
                "keypoints": xy.astype(np.float64), "visibility": vis, "coco17": coco.astype(np.float64),
                "bbox": bbox, "area": area,
                "joints_cam": (np.einsum("fij,fpnj->fpni", cam.R, joints3d.astype(np.float64))
                               + cam.t[:, None, None]),
            }
            if amodal is not None:
                box_a, area_a = np.zeros((F * P, 1, 4), np.float32), np.zeros((F * P, 1), np.int64)
                label_boxes(amodal.reshape(F * P, H, W).view(np.uint8), 1, box_a, area_a)
                annotations["bbox_amodal"] = box_a.reshape(F, P, 4)
                annotations["area_amodal"] = area_a.reshape(F, P)
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
            # No msync: the pages reach the disk when the kernel writes them back (a flush here
            # cost 2 ms a frame); the clip becomes visible only through the rename anyway.
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


@numba.njit(cache=True, nogil=True)
def instance_from_faces(face_id: np.ndarray, n_faces: int, out: np.ndarray) -> None:
    """Person id + 1 (0 background) of each pixel from the rendered face ids (bodies concatenated)."""
    flat_in, flat_out = face_id.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = 0 if flat_in[i] < 0 else flat_in[i] // n_faces + 1


@numba.njit(cache=True, nogil=True)
def label_boxes(labels: np.ndarray, n_labels: int, box: np.ndarray, area: np.ndarray) -> None:
    """Per image and label 1..n: pixel count and box x, y, w, h (pixels, zeros when absent), one pass.

    numpy needed a compare, two ``any`` reductions and a sum per person over every frame (~3 ms a
    512x512 frame); this reads each pixel once.
    """
    for b in range(labels.shape[0]):
        lo_x = np.full(n_labels, labels.shape[2])
        lo_y = np.full(n_labels, labels.shape[1])
        hi_x = np.full(n_labels, -1)
        hi_y = np.full(n_labels, -1)
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                k = labels[b, y, x]
                if k == 0 or k > n_labels:
                    continue
                k -= 1
                area[b, k] += 1
                lo_x[k] = min(lo_x[k], x)
                hi_x[k] = max(hi_x[k], x)
                lo_y[k] = min(lo_y[k], y)
                hi_y[k] = max(hi_y[k], y)
        for k in range(n_labels):
            if hi_x[k] >= 0:
                box[b, k, 0] = lo_x[k]
                box[b, k, 1] = lo_y[k]
                box[b, k, 2] = hi_x[k] + 1 - lo_x[k]
                box[b, k, 3] = hi_y[k] + 1 - lo_y[k]
