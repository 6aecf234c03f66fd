"""Render one sampled clip with all its ground truth into a folder (layout: docs/clips.md).

Per camera, one :func:`backend.render.passes.render_passes` call draws every person at once (their
meshes concatenated, bodies and avatars alike; a per-face table gives the person), frames in
chunks; the geometry passes come from it. RGB (and scene depth, flow) are computed from its
triangle ids and barycentrics by :mod:`backend.clips.shade` in the encoder threads, beside the next
chunk's rasterisation, with the clip's look (:mod:`backend.clips.appearance`). Amodal masks
rasterise each person alone (only when there are several people: with one, the amodal mask is the
modal one). Keypoints are projected here in float64 from the stored cameras and
3D joints, so the stored 2D points are exactly the stored 3D points seen through the stored K, R, t;
their visibility comes from the depth test against the rendered depth.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from numpy.lib.format import open_memmap

from backend.body.loading import load_body_model
from backend.body.model import BodyModel
from backend.clips.appearance import Look, sample_look
from backend.clips.coco import COCO17_FROM_SMPLX, clip_fragment, write_json
from backend.clips.half import to_float16
from backend.clips.png import write_rgb_png
from backend.clips.sample import ClipPlan, person_pelvis, pose_person, transform_root
from backend.clips.scene import (
    SHADOW_SIZE,
    LightCamera,
    LookArrays,
    PeopleMesh,
    contact_spheres,
    light_camera,
    look_arrays,
    people_mesh,
)
from backend.clips.shade import flow_frame, ground_base, instance_from_face_person, shade_frame
from backend.clips.spec import AppearanceSpec
from backend.clips.video import open_video
from backend.clips.video import send_frame as _send_frame
from backend.preview.pipeline import KEYPOINT_NAMES
from backend.render.api import Rasterizer, get_rasterizer
from backend.render.bands import default_threads
from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes
from backend.render.threads import torch_threads
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
    posed = plan.posed or [pose_person(b, p.params, p.avatar)
                           for b, p in zip(bodies, plan.people, strict=True)]
    people = people_mesh(plan, bodies, posed)
    verts = people.verts  # (F, V, 3)
    faces = torch.from_numpy(people.faces)
    joints3d = np.stack([k for _, k in posed], axis=1)  # (F,P,127,3) float32
    labels = torch.from_numpy(people.labels)
    wanted = set(passes)
    shaded = bool({"rgb", "scene_depth"} & wanted)
    render_names = ["face_id", "depth"] + (["normal_cam"] if {"normal", "rgb"} & wanted else []) \
        + (["part"] if "part" in wanted else [])
    person_of_joint = np.repeat(np.arange(P), len(KEYPOINT_NAMES))
    pelvis = [person_pelvis(b, p) for b, p in zip(bodies, plan.people, strict=True)]
    look = plan.look or sample_look(AppearanceSpec(), np.random.default_rng(0))
    arrays = look_arrays(look, W, H) if shaded else None
    light = light_camera(look.key_dir, np.asarray(plan.info.get("scene_centre", verts[0].mean(0).tolist())),
                         float(plan.info.get("scene_radius", 1.0)))
    spheres, boxes = contact_spheres(joints3d)
    verts_np = verts.numpy()

    instance_all: dict[str, np.ndarray] = {}
    coco_all: dict[str, np.ndarray] = {}
    bbox_all: dict[str, np.ndarray] = {}
    pending: list[Future[Any]] = []
    # Half the threads render, half shade and encode PNGs, cast normals and so on: two stages of a
    # pipeline, each on its own cores, instead of both fighting for all of them (on 2 cores: 52 -> 6x fps).
    encoders = max(1, threads // 2)
    render_threads = max(1, threads - encoders)
    with ThreadPoolExecutor(max_workers=encoders) as pool, ThreadPoolExecutor(max_workers=1) as video_pool, \
            torch.no_grad(), torch_threads(1):
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
            scene_depth = _pass_array(cam_dir, wanted, "scene_depth", (F, H, W), np.float32)
            flow = _pass_array(cam_dir, wanted, "flow", (F, H, W, 2), np.float32)
            video = open_video(cam_dir / "rgb.mp4", W, H, plan.fps) if "mp4" in wanted else None
            # A fixed camera sees the same ground every frame: its terms are computed once.
            fixed = all(np.array_equal(a, a[:1].repeat(F, 0)) for a in (cam.K, cam.R, cam.t))
            fixed_ground = (ground_terms(cam.K[0], cam.R[0], cam.t[0], arrays, look, light, plan.far, W, H)
                            if shaded and fixed and arrays is not None else None)
            for lo in range(0, F, CHUNK):
                hi = min(F, lo + CHUNK)
                cams = CameraBatch(cam.K[lo:hi], cam.R[lo:hi], cam.t[lo:hi], W, H, plan.near, plan.far)
                mesh = Mesh(verts=verts[lo:hi], faces=faces, part_labels=labels)
                out = render_passes(mesh, cams, passes=render_names, rasterizer=rasterizer,
                                    threads=render_threads)
                tri = out.raster.tri_id.numpy()
                instance_from_face_person(tri, people.face_person, instance[lo:hi])
                depth[lo:hi] = np.nan_to_num(out.depth.numpy(), copy=False, posinf=0.0)
                if normal is not None:  # the float16 cast runs beside the next render (numba: numpy's
                    # cast took ~2.5 ms a frame, this ~0.4 ms; bit-identical)
                    pending.append(pool.submit(to_float16, out.normal_cam.numpy(), normal[lo:hi]))
                if part is not None:
                    part[lo:hi] = out.part.numpy()
                if amodal is not None:
                    if P == 1:
                        amodal[lo:hi, 0] = instance[lo:hi] == 1
                    else:
                        clip = cams.clip(verts[lo:hi])
                        for p in range(P):
                            alone = clip[:, people.v_off[p]:people.v_off[p + 1]]
                            raster = rasterizer.rasterize(alone, torch.from_numpy(people.person_faces(p)),
                                                          cams.resolution)
                            amodal[lo:hi, p] = raster.mask.numpy()
                bary = out.raster.bary.numpy()
                if shaded:
                    assert arrays is not None
                    shadows = None
                    if look.shadows and "rgb" in wanted:
                        # In the render stage: measured idle on 2 cores, the encoder stage (shading,
                        # PNG, normals' cast) is the longer one; with the shadow maps there too, 51
                        # frames/s, here 66-74.
                        shadows = shadow_maps(verts[lo:hi], faces, light, rasterizer)
                    rgb = np.empty((hi - lo, H, W, 3) if "rgb" in wanted else (hi - lo, 0, 0, 3), np.uint8)
                    ncam = (out.normal_cam.numpy() if out.normal_cam is not None
                            else np.zeros((hi - lo, 0, 0, 3), np.float32))
                    for f in range(hi - lo):
                        g = lo + f
                        job = pool.submit(
                            _shade_and_write, tri[f], bary[f], out.raster.depth[f].numpy(), ncam[f], cam.K[g],
                            cam.R[g], cam.t[g], people, arrays, look, shadows, f, light, spheres[g], boxes[g],
                            plan.far, fixed_ground, rgb[f],
                            scene_depth[g] if scene_depth is not None else np.zeros((0, 0), np.float32),
                            cam_dir / "rgb" / f"{g:06d}.png" if "rgb" in wanted else None)
                        pending.append(job)
                        if video is not None:
                            pending.append(video_pool.submit(_send_frame, video, job, rgb[f]))
                if flow is not None:
                    for f in range(hi - lo):
                        g = lo + f
                        if g + 1 < F:
                            pending.append(pool.submit(
                                flow_frame, tri[f], bary[f], people.faces, verts_np[g], verts_np[g + 1],
                                cam.K[g], cam.R[g], cam.t[g], cam.K[g + 1], cam.R[g + 1], cam.t[g + 1],
                                look.ground, plan.far, flow[g]))
                        else:
                            flow[g] = 0.0  # no next frame: the last frame's flow is zero
                on_frames(hi - lo)
            if video is not None:
                pending.append(video_pool.submit(video.close))
            # Ground truth that does not need pixels beyond the depth test.
            kp3d = joints3d.reshape(F, P * len(KEYPOINT_NAMES), 3)
            xy, z = project(kp3d, cam.K, cam.R, cam.t)
            for job in pending:  # the normals must be in place before they are saved
                job.result()
            pending.clear()
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
            if "overlay" in wanted:  # needs the annotations: drawn once the camera's frames are done
                (cam_dir / "overlay").mkdir()
                for job in [pool.submit(write_overlay, cam_dir / "rgb" / f"{f:06d}.png", instance[f], coco[f],
                                        bbox[f], cam_dir / "overlay" / f"{f:06d}.png") for f in range(F)]:
                    job.result()
            np.savez(cam_dir / "annotations.npz", **annotations)
            np.savez(cam_dir / "camera.npz", K=cam.K, R=cam.R, t=cam.t,
                     size=np.array([W, H]), near_far=np.array([plan.near, plan.far]))
            # No msync: the pages reach the disk when the kernel writes them back (a flush here
            # cost 2 ms a frame); the clip becomes visible only through the rename anyway.
            instance_all[cam.name], coco_all[cam.name], bbox_all[cam.name] = instance, coco, bbox

    params = {k: np.stack([p.params[k] for p in plan.people])
              for k in (*PER_FRAME_FIELDS, "betas", "expression")}
    np.savez(out_dir / "people.npz", **params, joints=joints3d, pelvis=np.stack(pelvis))
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


@dataclass
class GroundTerms:
    """:func:`backend.clips.shade.ground_base`'s output for one camera pose."""

    Kinv: np.ndarray
    C: np.ndarray
    amb: np.ndarray
    key: np.ndarray
    bg: np.ndarray
    depth: np.ndarray
    xz: np.ndarray
    luv: np.ndarray
    lit: np.ndarray  # (H,W,3) uint8: ground and background without shadows or contact darkening


def ground_terms(K: np.ndarray, R: np.ndarray, t: np.ndarray, arrays: LookArrays, look: Look,
                 light: LightCamera, far: float, width: int, height: int) -> GroundTerms:
    Kinv, C = np.linalg.inv(K), -R.T @ t
    rgb = (height, width, 3)
    g = GroundTerms(Kinv, C, np.empty(rgb, np.float32), np.empty(rgb, np.float32), np.empty(rgb, np.float32),
                    np.empty((height, width), np.float32), np.zeros((height, width, 2), np.float32),
                    np.zeros(rgb, np.float32), np.empty(rgb, np.uint8))
    ground_base(Kinv, R, C, float(K[1, 1]), arrays.sh, arrays.key_dir, arrays.key_rgb, look.ground,
                arrays.ground, arrays.ground_mean, arrays.ground_rot, arrays.ground_off, look.ground_tile_m,
                arrays.fade[0], arrays.fade[1], far, light.R, light.t, light.focal, float(light.K[0, 2]),
                1.5 * light.texel_m, arrays.background, g.amb, g.key, g.bg, g.depth, g.xz, g.luv)
    # The shader's own arithmetic with no shadow and no contact: bg + (amb * 1 + key * 1), rounded.
    lit = (g.bg.astype(np.float64) + (g.amb.astype(np.float64) + g.key.astype(np.float64))) * 255.0 + 0.5
    g.lit[...] = np.clip(lit, 0.0, 255.0).astype(np.uint8)
    return g


def dynamic_box(K: np.ndarray, R: np.ndarray, t: np.ndarray, contact_box: np.ndarray, centre: np.ndarray,
                radius: float, key_dir: np.ndarray, near: float, width: int, height: int) -> np.ndarray:
    """The image box (x0, x1, y0, y1) of the ground the people can darken: their contact box and the
    ground under their bounding sphere seen from the key light (plus the filter's reach)."""
    up = max(float(key_dir[1]), 1e-3)
    foot = np.asarray(centre, np.float64) - np.asarray(key_dir, np.float64) * (centre[1] / up)
    # A sphere point q shades q - key * q_y / key_y: within radius * (1 + |key_xz| / key_y) of foot.
    reach = radius * (1.0 + float(np.hypot(key_dir[0], key_dir[2])) / up) + 0.1
    corners = [(contact_box[i], contact_box[2 + j]) for i in (0, 1) for j in (0, 1)]
    corners += [(foot[0] + a * reach, foot[2] + b * reach) for a in (-1, 1) for b in (-1, 1)]
    points = np.array([[x, 0.0, z] for x, z in corners])
    cam = points @ R.T + t
    if not np.isfinite(cam).all() or (cam[:, 2] <= near).any():
        return np.array([0, width - 1, 0, height - 1], np.int64)  # a corner behind the camera: all
    pix = cam @ K.T
    xy = pix[:, :2] / pix[:, 2:]
    lo, hi = np.floor(xy.min(0)).astype(np.int64) - 1, np.ceil(xy.max(0)).astype(np.int64) + 1
    return np.array([max(lo[0], 0), min(hi[0], width - 1), max(lo[1], 0), min(hi[1], height - 1)], np.int64)


def shadow_maps(verts: torch.Tensor, faces: torch.Tensor, light: LightCamera,
                rasterizer: Rasterizer) -> np.ndarray:
    """The key light's depth maps (B,S,S) of the people: one depth-only raster per frame, one thread
    (a rasterizer's default of every core fought the other stage's threads)."""
    n = len(verts)
    cams = CameraBatch(np.tile(light.K, (n, 1, 1)), np.tile(light.R, (n, 1, 1)), np.tile(light.t, (n, 1)),
                       SHADOW_SIZE, SHADOW_SIZE, light.near, light.far)
    with torch.no_grad():
        return render_passes(Mesh(verts=verts, faces=faces), cams, passes=["depth"], rasterizer=rasterizer,
                             threads=1).depth.numpy()


def _shade_and_write(tri: np.ndarray, bary: np.ndarray, depth: np.ndarray, ncam: np.ndarray, K: np.ndarray,
                     R: np.ndarray, t: np.ndarray, people: PeopleMesh, arrays: LookArrays, look: Look,
                     shadows: np.ndarray | None, index: int, light: LightCamera, spheres: np.ndarray,
                     box: np.ndarray, far: float,
                     ground: GroundTerms | None, rgb: np.ndarray, scene_depth: np.ndarray,
                     png: Path | None) -> None:
    """Shade one frame (an encoder thread) and write its PNG; ``shadows``: the chunk's shadow maps
    (frame ``index``); ``ground`` None: a moving camera's ground terms, computed here."""
    H, W = tri.shape
    shadow = shadows[index] if shadows is not None else np.zeros((0, 0), np.float32)
    if ground is None:
        ground = ground_terms(K, R, t, arrays, look, light, far, W, H)
    if rgb.size:
        np.copyto(rgb, ground.lit)
    dynamic = (dynamic_box(K, R, t, box, light.centre, light.radius, arrays.key_dir, 1e-3, W, H)
               if look.contact > 0.0 or look.shadows else np.array([0, -1, 0, -1], np.int64))
    shade_frame(tri, bary, depth, ncam, R, people.faces, people.face_person, people.person_tex, people.colors,
                people.uvs, people.tex, people.tex_off, people.tex_w, people.tex_h, arrays.sh, arrays.key_dir,
                arrays.key_rgb, shadow, light.R, light.t, light.focal, float(light.K[0, 2]),
                2.0 * light.texel_m, 1.5 * light.texel_m, spheres, look.contact, box, ground.Kinv, ground.C,
                ground.amb, ground.key, ground.bg, ground.depth, ground.xz, ground.luv, dynamic, rgb,
                scene_depth)
    if png is not None:
        write_rgb_png(png, rgb)


def write_overlay(rgb_png: Path, instance: np.ndarray, coco17: np.ndarray, bbox: np.ndarray,
                  out: Path) -> None:
    """The ``overlay`` pass of one frame: ``clips vis``'s drawing (masks tinted, boxes, COCO
    keypoints; :func:`backend.clips.vis.draw_frame`) over the frame's RGB PNG, read back."""
    from PIL import Image

    from backend.clips.vis import draw_frame

    with Image.open(rgb_png) as image:
        rgb = np.asarray(image.convert("RGB"))
    write_rgb_png(out, np.asarray(draw_frame(rgb, np.asarray(instance), coco17, bbox)))


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
