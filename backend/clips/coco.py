"""COCO person-keypoints annotations: the 17 COCO keypoints from SMPL-X's, RLE masks, the dataset JSON.

Each clip writes its own fragment (``coco.json``: images and annotations with clip-local ids) while
it renders, so masks are encoded once, where they are in memory; the driver merges the fragments
into the dataset's ``coco_person_keypoints.json`` with global ids in clip order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from backend.preview.pipeline import KEYPOINT_NAMES

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO17_SKELETON: list[list[int]] = [  # 1-based, as in the COCO file
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
    [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
# Where each COCO keypoint is in the 127 SMPL-X keypoints (eyes, ears and nose are smplx's vertex
# keypoints on the surface; shoulders, hips etc. are joints, inside the body).
COCO17_FROM_SMPLX = np.array([KEYPOINT_NAMES.index(n) for n in COCO17_NAMES])

CATEGORY = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17_NAMES),
            "skeleton": COCO17_SKELETON}


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a (H,W) mask: run lengths in column-major order, starting with
    a (possibly empty) run of zeros; ``pycocotools.mask.frPyObjects`` reads it."""
    flat = np.asarray(mask, dtype=bool).reshape(mask.shape).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode` (uncompressed counts)."""
    h, w = rle["size"]
    values = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for count in rle["counts"]:
        values[pos:pos + count] = value
        pos += count
        value = not value
    return values.reshape(w, h).T


def clip_fragment(clip_id: str, cameras: list[str], frames: int, width: int, height: int,
                  instance: dict[str, np.ndarray], coco17: dict[str, np.ndarray],
                  bbox: dict[str, np.ndarray]) -> dict[str, Any]:
    """Images and annotations of one clip (ids local to it; ``file_name`` relative to the dataset).

    ``instance[cam]`` (F,H,W) uint8 person ids (0 background); ``coco17[cam]`` (F,P,17,3) x, y, v;
    ``bbox[cam]`` (F,P,4) x, y, w, h. A person gets an annotation in an image where it has at least
    one visible pixel.
    """
    images, annotations = [], []
    for cam in cameras:
        for f in range(frames):
            image_id = len(images) + 1
            images.append({"id": image_id, "width": width, "height": height,
                           "file_name": f"clips/{clip_id}/{cam}/rgb/{f:06d}.png",
                           "clip": clip_id, "camera": cam, "frame": f})
            for p in range(coco17[cam].shape[1]):
                mask = instance[cam][f] == p + 1
                area = int(mask.sum())
                if area == 0:
                    continue
                kp = coco17[cam][f, p]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "person": p, "area": area, "bbox": [float(v) for v in bbox[cam][f, p]],
                    "segmentation": rle_encode(mask),
                    "keypoints": [float(v) if k % 3 != 2 else int(v) for k, v in enumerate(kp.reshape(-1))],
                    "num_keypoints": int((kp[:, 2] > 0).sum()),
                })
    return {"images": images, "annotations": annotations}


def merge_fragments(fragments: Iterable[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """One COCO file from clip fragments, renumbering image and annotation ids in order."""
    images, annotations = [], []
    for fragment in fragments:
        remap = {}
        for image in fragment["images"]:
            remap[image["id"]] = len(images) + 1
            images.append({**image, "id": len(images) + 1})
        for ann in fragment["annotations"]:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": remap[ann["image_id"]]})
    return {"info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": [CATEGORY]}


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, separators=(",", ":"), allow_nan=False), encoding="utf-8")
