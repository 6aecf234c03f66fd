"""Training clips for the neural route from a ``clips.render`` dataset (docs/clips.md), whose layers are
known exactly: per camera and person, the target frames, the scene layer, the occlusion layer, the
posed SMPL-X vertices, the camera and an identity image.

- target: the rendered RGB frames;
- person: the person's amodal mask (``amodal.npy``: where the body is, occluded or not);
- occlusion layer: the pixels of other people covering the person (``instance`` says who is in
  front), alpha 1 there, their RGB as the layer;
- scene layer: the frames with the person's amodal region (dilated by a pixel) filled with grey (a
  rendered clip has no clean plate; MIMO's training inpaints the person away instead), occluders
  kept on top;
- identity: the frame where the person is most visible, the person's visible pixels on white,
  cropped to their box (MIMO's reference: a segmented frame of the same video).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from backend.body.loading import load_body_model
from backend.clips.read import read_clip
from backend.clips.sample import pose
from protocol.smplx import PER_FRAME_FIELDS

# A person's SMPL-X params in a clip's people.npz: the payload's per-frame fields, betas, expression.
PARAMS = (*PER_FRAME_FIELDS, "betas", "expression")
GREY = 127


@dataclass
class ClipLayers:
    """One person seen by one camera of one clip: everything :func:`insert_neural` takes + the target."""

    name: str  # "<clip>/<camera>/person<p>"
    target: np.ndarray  # (F,H,W,3) uint8
    scene: np.ndarray  # (F,H,W,3) uint8
    occlusion_rgb: np.ndarray  # (F,H,W,3) uint8
    occlusion_alpha: np.ndarray  # (F,H,W) float32 in {0, 1}
    posed_vertices: np.ndarray  # (F,V,3) float32 world
    faces: np.ndarray  # (T,3) int64
    K: np.ndarray  # (F,3,3)
    R: np.ndarray
    t: np.ndarray
    identity: np.ndarray  # (h,w,3) uint8


def identity_crop(rgb: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The visible person on white, cropped to their box (square, padded with white)."""
    f = int(np.argmax(visible.reshape(len(visible), -1).sum(1)))
    mask = visible[f]
    if not mask.any():
        raise ValueError("the person is not visible in any frame")
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[..., None], rgb[f], 255)[y0:y1, x0:x1]
    side = max(crop.shape[:2], default=1)
    out = np.full((side, side, 3), 255, np.uint8)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    out[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return out


def clip_layers(
    dataset: str | Path, clip_id: str | int, camera: str | None = None, person: int = 0
) -> ClipLayers:
    """The layers of ``person`` seen by ``camera`` (default: the clip's first) of one clip."""
    clip = read_clip(dataset, clip_id)
    cam = clip.cameras[camera or next(iter(clip.cameras))]
    if cam.rgb is None or cam.instance is None or cam.amodal is None:
        raise ValueError(f"clip {clip.id} camera {cam.name} lacks the rgb, instance or amodal pass")
    people = clip.info["people"]
    if not 0 <= person < len(people):
        raise ValueError(f"clip {clip.id} has {len(people)} people, no person {person}")
    rgb = np.asarray(cam.rgb)
    instance = np.asarray(cam.instance)
    body = np.asarray(cam.amodal[:, person])  # (F,H,W) bool: the whole body, seen or not
    occluder = body & (instance > 0) & (instance != person + 1)
    region = np.stack([binary_dilation(m, iterations=1) for m in body]) & ~occluder
    scene = np.where(region[..., None], np.uint8(GREY), rgb).astype(np.uint8)
    model = load_body_model(people[person].get("gender", "neutral"))
    verts, _ = pose(model, {k: clip.people[k][person] for k in PARAMS if k in clip.people})
    return ClipLayers(
        name=f"{clip.id}/{cam.name}/person{person}",
        target=rgb,
        scene=scene,
        occlusion_rgb=np.where(occluder[..., None], rgb, 0).astype(np.uint8),
        occlusion_alpha=occluder.astype(np.float32),
        posed_vertices=verts.astype(np.float32),
        faces=np.asarray(model.faces, dtype=np.int64),
        K=np.asarray(cam.K),
        R=np.asarray(cam.R),
        t=np.asarray(cam.t),
        identity=identity_crop(rgb, instance == person + 1),
    )


def dataset_layers(dataset: str | Path, person: int = 0) -> list[ClipLayers]:
    """:func:`clip_layers` of ``person`` for every clip and camera of a dataset (sorted)."""
    clips = sorted(p.name for p in (Path(dataset) / "clips").iterdir() if (p / "clip.json").is_file())
    if not clips:
        raise ValueError(f"{dataset} holds no complete clip")
    out = []
    for cid in clips:
        cams = sorted(
            p.name for p in (Path(dataset) / "clips" / cid).iterdir() if (p / "camera.npz").is_file()
        )
        out += [clip_layers(dataset, cid, cam, person) for cam in cams]
    return out
