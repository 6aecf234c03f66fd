"""A torch Dataset over a clips dataset (``clips render``; layout: docs/clips.md).

One item per (clip, camera, frame, person) where the person is seen (modal mask area > 0):

- ``image`` (3,S,S) float in [-1,1]: the person's pixels over a flat background (``background``),
  cropped to a square around the person's box (grown by ``margin``) and resized to S;
- ``mask`` (1,S,S) float in [0,1]: the person's modal mask, same crop;
- ``K`` (3,3) of the crop at size S (the crop is a pixel shift and a scale of K), ``R`` (3,3), ``t`` (3,);
- ``cond`` (16,): the camera as the networks see it: camera-to-world rotation (9), camera centre
  minus the body root (3, metres: invariant to where the person stands), fx, fy, cx, cy / S (4);
- the posed body (:class:`backend.threedgm.body.PosedBody`): ``verts`` (Nv,3), ``transforms``
  (55,3,4), ``rest_verts`` (Nv,3), ``root`` (3,); and ``params``: the frame's SMPL-X fields.

Another person in front is not removed from the image (the mask says what is this person's): use
single-person clips (``--people 1``) for training, as En3D's renders are. Decoded items stay in
memory when they all fit in :data:`CACHE_BYTES` (``cache=None``); larger datasets are read per item
(the 4 most recent clips' arrays are kept).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from backend.body.loading import load_body_model
from backend.clips.read import Clip, read_clip
from backend.threedgm.body import PARAM_KEYS, BodyTemplate

COND_DIM = 16
CACHE_BYTES = 2 << 30  # decoded items kept in memory by default up to this size (tiny datasets)


class DatasetError(ValueError):
    """The folder is not a usable clips dataset (the message says why)."""


def camera_vector(
    K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, root: torch.Tensor, size: int
) -> torch.Tensor:
    """(…,16) conditioning vector of cameras K, R, t (…,3,3 / …,3) for a body at ``root``."""
    Rt = R.transpose(-1, -2)
    centre = -(Rt @ t[..., None])[..., 0]
    intr = torch.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], dim=-1) / size
    return torch.cat([Rt.flatten(-2), centre - root, intr], dim=-1)


def crop_box(bbox: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Integer square x0, y0, side around an x, y, w, h box, grown by ``margin`` of its long side."""
    x, y, w, h = (float(v) for v in bbox)
    side = max(int(np.ceil(max(w, h) * (1 + 2 * margin))), 2)
    cx, cy = x + w / 2, y + h / 2
    return int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2)), side


def crop_resize(array: torch.Tensor, x0: int, y0: int, side: int, size: int, fill: float) -> torch.Tensor:
    """(C,side,side) -> (C,size,size): the square window of (C,H,W) ``array`` (padded with ``fill``
    outside the image), area-resampled."""
    C, H, W = array.shape
    out = torch.full((C, side, side), fill, dtype=array.dtype)
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + side, W), min(y0 + side, H)
    if xe > xs and ye > ys:
        out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = array[:, ys:ye, xs:xe]
    return F.interpolate(out[None], size=(size, size), mode="area")[0]


class ClipsDataset(Dataset):
    def __init__(
        self,
        root: str | Path,
        size: int,
        warp_vertices: int,
        *,
        margin: float = 0.1,
        background: float = 1.0,
        cache: bool | None = None,
    ) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise DatasetError(
                f"{self.root} is not a clips dataset (no manifest.json; make one with "
                "`avatar-studio clips render`)"
            )
        try:
            self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
            passes = self.manifest["spec"].get("passes", [])
            clips = self.manifest["clips"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{manifest} is not a clips manifest ({type(exc).__name__}: {exc})") from None
        if "rgb" not in passes or "instance" not in passes:
            raise DatasetError(
                f"{self.root}: the dataset needs the rgb and instance passes (it has {passes})"
            )
        if not clips:
            raise DatasetError(f"{self.root}: the dataset has no clips")
        self.size, self.margin, self.background, self.cache = size, margin, background, cache
        genders = {p.get("gender", "neutral") for c in self.manifest["clips"] for p in c["people"]}
        self.templates = {g: BodyTemplate(load_body_model(g), warp_vertices) for g in sorted(genders)}
        self.items: list[tuple[str, str, int, int]] = []
        for entry in self.manifest["clips"]:
            folder = self.root / "clips" / entry["id"]
            for cam in entry["cameras"]:
                with np.load(folder / cam["name"] / "annotations.npz") as ann:
                    area = ann["area"]  # (F,P)
                for f, p in zip(*np.nonzero(area > 0), strict=True):
                    self.items.append((entry["id"], cam["name"], int(f), int(p)))
        if not self.items:
            raise DatasetError(f"{self.root}: no person is seen in any frame")
        if cache is None:  # keep decoded items in memory when they all fit in CACHE_BYTES
            per_item = 4 * (4 * size * size + 2 * warp_vertices * 3 + 55 * 12 + 64)
            cache = len(self.items) * per_item <= CACHE_BYTES
        self.cache = cache
        self._cache: dict[int, dict[str, Any]] = {}
        self._read = lru_cache(maxsize=4)(self._read_clip)

    @property
    def template(self) -> BodyTemplate:
        """The template of the dataset's first gender (the generator's skinning weights)."""
        return next(iter(self.templates.values()))

    def _read_clip(self, clip_id: str) -> Clip:
        return read_clip(self.root, clip_id)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.cache and index in self._cache:
            return self._cache[index]
        item = self._load(index)
        if self.cache:
            self._cache[index] = item
        return item

    def _load(self, index: int) -> dict[str, Any]:
        clip_id, cam_name, f, p = self.items[index]
        clip = self._read(clip_id)
        cam = clip.cameras[cam_name]
        gender = clip.info["people"][p].get("gender", "neutral")
        params = {k: clip.people[k][p, f] for k in PARAM_KEYS}
        params["betas"] = clip.people["betas"][p]
        body = self.templates[gender].pose(params)
        x0, y0, side = crop_box(cam.annotations["bbox"][f, p], self.margin)
        S = self.size
        mask = torch.from_numpy((np.asarray(cam.instance[f]) == p + 1).astype(np.float32))[None]
        rgb = torch.from_numpy(np.asarray(cam.rgb[f]).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
        rgb = rgb * mask + self.background * (1 - mask)
        image = crop_resize(rgb, x0, y0, side, S, self.background)
        mask_c = crop_resize(mask, x0, y0, side, S, 0.0)
        K = torch.from_numpy(np.asarray(cam.K[f], dtype=np.float64)).clone()
        s = S / side
        K[0, 0] *= s
        K[1, 1] *= s
        K[0, 2] = (K[0, 2] - x0) * s
        K[1, 2] = (K[1, 2] - y0) * s
        R = torch.from_numpy(np.asarray(cam.R[f], dtype=np.float64))
        t = torch.from_numpy(np.asarray(cam.t[f], dtype=np.float64))
        K, R, t = K.float(), R.float(), t.float()
        return {
            "image": image,
            "mask": mask_c,
            "K": K,
            "R": R,
            "t": t,
            "cond": camera_vector(K, R, t, body.root, S),
            "verts": body.verts,
            "transforms": body.transforms,
            "rest_verts": body.rest_verts,
            "root": body.root,
            "params": {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in params.items()},
            "index": index,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items (``params`` stays a dict of stacked tensors)."""
    out: dict[str, Any] = {}
    for key in items[0]:
        if key == "params":
            out[key] = {k: torch.stack([it[key][k] for it in items]) for k in items[0][key]}
        elif key == "index":
            out[key] = torch.tensor([it[key] for it in items])
        else:
            out[key] = torch.stack([it[key] for it in items])
    return out
