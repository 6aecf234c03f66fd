"""Avatars from noise: a trained run's EMA generator, a seed and a truncation -> multi-view renders
around the body, a mesh extracted from the density, and a views folder the avatar pipeline reads.

- :func:`load_run` reads ``RUN/checkpoint.pt`` (``weights_only=True``) and ``RUN/config.json`` and
  rebuilds the EMA generator; the body template is the stand-in / ``smplx`` role of ``gender``
  (the skinning weights and patch masks come from the checkpoint's buffers).
- :func:`mean_w` is ``w_avg`` recomputed from the mapping network over many z for the conditioning
  camera the avatar is drawn with (the mapping is camera-conditioned, as EG3D's: its running
  ``w_avg`` mixes the training cameras, so truncation uses the mean of the camera it renders for).
- :func:`sample_avatar` draws ``w = w_avg + psi (w(z) - w_avg)`` once (z from ``seed``, conditioned on
  the front camera, EG3D's fixed conditioning for generation) and renders that one ``w`` from K
  ring cameras around the body in an A-pose; ``psi = 0`` gives the mean avatar.
- :func:`extract_mesh` samples the density on a grid over the canonical (rest) body and runs
  ``skimage.measure.marching_cubes``; :func:`pose_mesh` carries it to the rendered pose by forward
  LBS with the nearest rest vertex's weights (the inverse of the generator's warp).
- :func:`views_from_sample` writes the renders as a views folder (RGBA with the silhouette as alpha,
  world-space normal maps of the density (:mod:`.normals`), cameras, the body's SMPL-X parameters),
  upsampled to ``size``: the avatar pipeline sculpts (its normal term included), textures and rigs
  from it like from any views (``backend/avatar/pipeline.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.threedgm.body import BodyTemplate, PosedBody
from backend.threedgm.config import TrainConfig
from backend.threedgm.dataset import camera_vector
from backend.threedgm.generator import BodyBatch, Generator
from backend.threedgm.normals import fill_normals, generator_normals, resize_normals
from backend.threedgm.train import CHECKPOINT, CONFIG
from backend.threedgm.triplane import sample_triplane
from backend.threedgm.warp import blend_inverse, nearest_vertex


class CheckpointError(ValueError):
    """The folder is not a trained 3DGM run (the message says why)."""


@dataclass
class LoadedRun:
    G: Generator
    template: BodyTemplate
    config: TrainConfig
    step: int
    folder: Path


def a_pose_params() -> dict[str, Any]:
    """The neutral body in an A-pose (arms ~57 degrees down), protocol SMPL-X fields, one frame."""
    body_pose = [0.0] * 63
    body_pose[15 * 3 + 2] = -1.0  # left shoulder (joint 16), about z
    body_pose[16 * 3 + 2] = 1.0  # right shoulder
    return {"gender": "neutral", "global_orient": [0.0, 0.0, 0.0], "body_pose": body_pose,
            "transl": [0.0, 0.0, 0.0], "betas": [0.0] * 10}


def load_run(run: str | Path, device: str | torch.device = "cpu", gender: str = "neutral") -> LoadedRun:
    """The EMA generator of a run folder ``3dgm train`` wrote."""
    from backend.body.loading import load_body_model

    folder = Path(run)
    path = folder / CHECKPOINT
    if not path.is_file() or not (folder / CONFIG).is_file():
        raise CheckpointError(f"{folder} is not a 3DGM run (no {CHECKPOINT} / {CONFIG}; train one with "
                              "`avatar-studio 3dgm train`)")
    try:
        # a hostile or broken file fails in many ways inside the (restricted) unpickler
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable 3DGM checkpoint ({type(exc).__name__})") from None
    try:
        config = TrainConfig.from_json(state["config"])
        template = BodyTemplate(load_body_model(gender), config.generator.warp_vertices)
        G = Generator(config.generator, template.weights, template.part_labels, template.part_names)
        G.load_state_dict(state["G_ema"])
    except (KeyError, TypeError, RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable 3DGM checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    G = G.to(device).eval().requires_grad_(False)
    return LoadedRun(G, template, config, int(state.get("step", 0)), folder)


def pose_body(template: BodyTemplate, params: dict[str, Any]) -> PosedBody:
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in params.items() if k != "gender"}
    return template.pose(arrays)


def ring_cameras(body: PosedBody, views: int, size: int, fov_y_deg: float = 40.0, margin: float = 0.85
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``views`` cameras (K, R, t at ``size`` pixels) on a ring around the body, the first in front
    (+z), each framing the whole body about as the training crops do (its box fills ``margin``);
    the framing of backend/generate/conditions.py's ``framed_ring`` (not imported: layering)."""
    from protocol.cameras import multiview_ring

    verts = body.verts.numpy()
    lo, hi = verts.min(0), verts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    tan = np.tan(np.radians(fov_y_deg) / 2)
    half_xz = float(np.hypot(half[0], half[2]))
    radius = max(half[1] / tan, half_xz / tan) / margin + half_xz
    path = multiview_ring(views, radius=float(radius), elevations_deg=(0.0,), target=centre,
                          fov_y_deg=fov_y_deg, width=size, height=size, near=0.05, far=float(4 * radius + 10),
                          azimuth_start_deg=0.0)
    out = []
    for i in range(views):
        frame = path.frame(i)
        out.append((np.asarray(frame.K, np.float32), np.asarray(frame.R, np.float32),
                    np.asarray(frame.t, np.float32)))
    return out


def _batch(cams: list[tuple[np.ndarray, np.ndarray, np.ndarray]], body: PosedBody, size: int,
           device: torch.device) -> tuple[torch.Tensor, ...]:
    K = torch.from_numpy(np.stack([c[0] for c in cams])).to(device)
    R = torch.from_numpy(np.stack([c[1] for c in cams])).to(device)
    t = torch.from_numpy(np.stack([c[2] for c in cams])).to(device)
    cond = camera_vector(K, R, t, body.root.to(device), size)
    return K, R, t, cond


def body_batch(body: PosedBody, n: int, device: torch.device) -> BodyBatch:
    return BodyBatch(body.verts[None].expand(n, -1, -1).to(device),
                     body.transforms[None].expand(n, -1, -1, -1).to(device),
                     body.root[None].expand(n, -1).to(device))


@torch.no_grad()
def mean_w(G: Generator, cond: torch.Tensor, samples: int = 10_000, seed: int = 123) -> torch.Tensor:
    """(w_dim,) mean of ``mapping(z, cond)`` over ``samples`` z (a fixed seed: deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((samples, G.cfg.z_dim), generator=gen).to(cond.device)
    ws = [G.mapping(chunk, cond[None].expand(len(chunk), -1)) for chunk in z.split(2048)]
    return torch.cat(ws).mean(0)


@dataclass
class Sample:
    w: torch.Tensor  # (1, w_dim)
    images: torch.Tensor  # (K,3,S,S) in [-1,1]
    masks: torch.Tensor  # (K,1,S,S) in [0,1]
    cameras: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # K, R, t at S = out_res
    body: PosedBody
    params: dict[str, Any]  # the body's protocol SMPL-X fields
    # (K,3,N,N) world-space unit normals of the density (backend/threedgm/normals.py), 0 off the body
    normals: torch.Tensor | None = None


# rays whose opacity reaches this get a normal in the sampled views: lower than the silhouette's 0.5,
# so every pixel of the (thresholded, upsampled) silhouette has a surface direction
VIEW_NORMAL_OPACITY = 0.1


@torch.no_grad()
def sample_avatar(run: LoadedRun, seed: int, truncation: float = 0.7, views: int = 8,
                  params: dict[str, Any] | None = None, w: torch.Tensor | None = None,
                  normal_res: int | None = None) -> Sample:
    """One avatar (``w`` given, or drawn from ``seed``) rendered from ``views`` ring cameras, with
    its normal maps (``normal_res`` rays a side, default the output size; 0: none)."""
    G = run.G
    device = next(G.parameters()).device
    params = params or a_pose_params()
    body = pose_body(run.template, params)
    size = G.cfg.out_res
    cams = ring_cameras(body, views, size)
    K, R, t, cond = _batch(cams, body, size, device)
    if w is None:
        z = torch.randn((1, G.cfg.z_dim), generator=torch.Generator().manual_seed(int(seed))).to(device)
        w = G.mapping(z, cond[:1])
        w_avg = mean_w(G, cond[0])
        w = w_avg + truncation * (w - w_avg)
    bodies = body_batch(body, views, device)
    out = G.synthesize(w.expand(views, -1), K, R, t, bodies)
    normals = None
    res = size if normal_res is None else int(normal_res)
    if res > 0:
        normals = generator_normals(G, out["planes"], K, R, t, bodies, res,
                                    min_opacity=VIEW_NORMAL_OPACITY).normals.float().cpu()
    return Sample(w, out["image"].float().cpu(), out["mask"].float().cpu(), cams, body, params, normals)


# ---- the mesh ---------------------------------------------------------------------------------------
@torch.no_grad()
def canonical_density(G: Generator, w: torch.Tensor, rest_verts: torch.Tensor, points: torch.Tensor,
                      chunk: int = 32768) -> torch.Tensor:
    """(N,) density at canonical points (N,3): the generator's field with the rest body as the posed
    body (the warp is then the identity; the shell fade measures the distance to the rest body)."""
    device = next(G.parameters()).device
    planes = G.synthesis(w.to(device))
    verts = rest_verts[None].to(device)
    out = []
    for s in range(0, len(points), chunk):
        p = points[None, s : s + chunk].to(device)
        _, dist = nearest_vertex(p, verts)
        raw, _ = G.decoder(sample_triplane(planes, (p - G.centre) / G.cfg.canonical_half))
        shell = torch.sigmoid((G.cfg.shell - dist) / (0.25 * G.cfg.shell))
        out.append((F.softplus(raw) * 10.0 * shell)[0].float().cpu())
    return torch.cat(out)


@dataclass
class Mesh:
    vertices: np.ndarray  # (V,3) float32 metres
    faces: np.ndarray  # (F,3) int32
    level: float  # the density iso-level used (1/m)


def extract_mesh(G: Generator, w: torch.Tensor, rest_verts: torch.Tensor, resolution: int = 64,
                 level: float | None = None, margin: float = 0.1) -> Mesh:
    """Marching cubes (skimage) of the canonical density on a ``resolution``³ grid over the rest
    body's box grown by ``margin`` m. ``level`` (1/m) defaults to the density at which one grid
    cell is half opaque (``ln 2 / cell``), clamped inside the field's range so a weak tiny model
    still gives a surface."""
    from skimage.measure import marching_cubes

    lo = rest_verts.min(0).values - margin
    hi = rest_verts.max(0).values + margin
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sigma = canonical_density(G, w, rest_verts, grid).reshape(resolution, resolution, resolution).numpy()
    spacing = ((hi - lo) / (resolution - 1)).numpy()
    if level is None:
        level = float(np.log(2.0) / spacing.min())
        lo_s, hi_s = float(sigma.min()), float(sigma.max())
        if not lo_s < level < hi_s:
            level = lo_s + 0.5 * (hi_s - lo_s)
    verts, faces, _, _ = marching_cubes(sigma, level=level, spacing=tuple(float(s) for s in spacing))
    # skimage winds the faces with normals towards lower values (inward for a density); reversed,
    # they face outward as every mesh here does (the sculpting's inside test depends on it)
    faces = np.ascontiguousarray(faces[:, ::-1])
    return Mesh((verts + lo.numpy()).astype(np.float32), faces.astype(np.int32), float(level))


def pose_mesh(mesh: Mesh, body: PosedBody, template: BodyTemplate) -> np.ndarray:
    """(V,3) the canonical mesh's vertices carried to ``body``'s pose: forward LBS with the weights
    of each vertex's nearest rest-body vertex (what the generator's inverse warp undoes)."""
    verts = torch.from_numpy(mesh.vertices)[None]
    idx, _ = nearest_vertex(verts, body.rest_verts[None])
    inv = blend_inverse(template.weights, body.transforms[None])[0]  # (Nv,3,4) posed -> rest
    rot = torch.linalg.inv(inv[:, :, :3])
    fwd = torch.cat([rot, -(rot @ inv[:, :, 3:])], -1)[idx[0]]  # rest -> posed per vertex
    return ((fwd[:, :, :3] @ verts[0, :, :, None])[..., 0] + fwd[:, :, 3]).numpy().astype(np.float32)


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    path = Path(path)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- the views folder -------------------------------------------------------------------------------
def views_from_sample(sample: Sample, folder: str | Path, size: int = 256, info: dict[str, Any] | None = None
                      ) -> Path:
    """Write the renders as a views folder at ``size`` pixels (bilinear upsampling of the out_res
    renders; K scaled to match); the alpha is the silhouette thresholded at 0.5. Returns the folder."""
    from backend.avatar.io.views import View, ViewSet, write_views
    from protocol.cameras import CameraFrame

    folder = Path(folder)
    images = F.interpolate(sample.images, size=(size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(sample.masks, size=(size, size), mode="bilinear", align_corners=False)
    # world-space normal maps (the views format's frame), filled past their edge (4 of their own
    # pixels) so the upsampled silhouette never holds a pixel without a direction
    normals = None
    if sample.normals is not None:
        grow = 4 * max(1, round(size / sample.normals.shape[-1]))
        normals = fill_normals(resize_normals(sample.normals, size), grow)
    scale = size / sample.images.shape[-1]
    views = []
    for i, (K, R, t) in enumerate(sample.cameras):
        Ks = K.astype(np.float64).copy()
        Ks[:2] *= scale
        rgb = ((images[i].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
        # the silhouette thresholded at half opacity: the pipeline reads alpha > 0.5 as the mask and
        # takes texture only where alpha is ~1, and a young generator's opacity rarely reaches 1
        alpha = (masks[i, 0].numpy() > 0.5).astype(np.float32)
        rgba = np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32)
        camera = CameraFrame.from_payload({"K": Ks.tolist(), "R": R.astype(np.float64).tolist(),
                                           "t": t.astype(np.float64).tolist(), "width": size,
                                           "height": size, "near": 0.05, "far": 100.0})
        views.append(View(name=f"view{i:02d}", camera=camera, rgba=rgba))
        if normals is not None:
            views[-1].normal = np.ascontiguousarray(normals[i].permute(1, 2, 0).numpy(), dtype=np.float32)
    params = {k: (np.asarray(v).tolist() if not isinstance(v, str) else v) for k, v in sample.params.items()}
    write_views(folder, ViewSet(views=views, smplx=params, extra={"threedgm": info or {}}))
    return folder


def write_sample(sample: Sample, run: LoadedRun, out: str | Path, size: int = 256, mesh_resolution: int = 64,
                 info: dict[str, Any] | None = None, mesh: Mesh | None = None) -> dict[str, Path]:
    """views/ (the views folder), mesh_canonical.obj and mesh.obj (in the views' pose), sample.json;
    ``mesh``: the canonical mesh when already extracted."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    views = views_from_sample(sample, out / "views", size, info)
    if mesh is None:
        mesh = extract_mesh(run.G, sample.w, sample.body.rest_verts, mesh_resolution)
    files = {
        "views": views,
        "mesh_canonical.obj": write_obj(out / "mesh_canonical.obj", mesh.vertices, mesh.faces),
        "mesh.obj": write_obj(out / "mesh.obj", pose_mesh(mesh, sample.body, run.template), mesh.faces),
    }
    summary = {**(info or {}), "mesh_vertices": len(mesh.vertices), "mesh_faces": len(mesh.faces),
               "mesh_level": mesh.level, "checkpoint_step": run.step}
    files["sample.json"] = out / "sample.json"
    files["sample.json"].write_text(json.dumps(summary, indent=1))
    return files
