"""``clips vis``: masks, boxes and COCO keypoints over the RGB frames of one clip.

A contact sheet (PNG): rows are cameras, columns frames (at most ``columns``, evenly spread). An
overlay video (mp4): every frame, the cameras tiled in a grid. Each person has one colour: its
modal mask is tinted, its box drawn, its skeleton drawn between keypoints that are labelled;
visible keypoints (v = 2) are filled discs, hidden ones (v = 1) rings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.clips.coco import COCO17_SKELETON
from backend.clips.read import Clip, read_clip
from backend.preview.video import write_mp4

PERSON_COLORS = np.array([(230, 60, 60), (60, 160, 240), (80, 210, 90), (240, 200, 40)], dtype=np.float32)


def draw_frame(rgb: np.ndarray, instance: np.ndarray | None, coco17: np.ndarray,
               bbox: np.ndarray) -> Image.Image:
    image = rgb.astype(np.float32)
    if instance is not None:
        for p in range(coco17.shape[0]):
            m = instance == p + 1
            image[m] = 0.6 * image[m] + 0.4 * PERSON_COLORS[p % 4]
    out = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for p in range(coco17.shape[0]):
        color = tuple(int(c) for c in PERSON_COLORS[p % 4])
        x, y, w, h = bbox[p]
        if w > 0:
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=color)
        kp = coco17[p]
        for a, b in COCO17_SKELETON:
            if kp[a - 1, 2] > 0 and kp[b - 1, 2] > 0:
                draw.line([tuple(kp[a - 1, :2]), tuple(kp[b - 1, :2])], fill=color, width=1)
        for x_, y_, v in kp:
            if v > 0:
                r = 2
                draw.ellipse([x_ - r, y_ - r, x_ + r, y_ + r], fill=color if v == 2 else None,
                             outline=(255, 255, 255))
    return out


def _tile(clip: Clip, camera: str, frame: int) -> Image.Image:
    cam = clip.cameras[camera]
    W, H = clip.info["width"], clip.info["height"]
    rgb = cam.rgb[frame] if cam.rgb is not None else np.zeros((H, W, 3), np.uint8)
    return draw_frame(rgb, None if cam.instance is None else np.asarray(cam.instance[frame]),
                      cam.annotations["coco17"][frame], cam.annotations["bbox"][frame])


def contact_sheet(dataset: str | Path, clip_id: str, out: str | Path, columns: int = 6) -> Path:
    clip = read_clip(dataset, clip_id)
    F, W, H = clip.info["frames"], clip.info["width"], clip.info["height"]
    frames = sorted(set(np.linspace(0, F - 1, min(columns, F)).round().astype(int).tolist()))
    sheet = Image.new("RGB", (W * len(frames), H * len(clip.cameras)))
    for row, camera in enumerate(clip.cameras):
        for col, f in enumerate(frames):
            sheet.paste(_tile(clip, camera, f), (col * W, row * H))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def overlay_video(dataset: str | Path, clip_id: str, out: str | Path) -> Path:
    """Every frame of the clip with its overlays, the cameras tiled row-major in a near-square grid."""
    clip = read_clip(dataset, clip_id)
    F, W, H = clip.info["frames"], clip.info["width"], clip.info["height"]
    names = list(clip.cameras)
    columns = int(np.ceil(np.sqrt(len(names))))
    rows = int(np.ceil(len(names) / columns))

    def frames():  # one frame in memory at a time
        for f in range(F):
            grid = Image.new("RGB", (W * columns, H * rows))
            for i, camera in enumerate(names):
                grid.paste(_tile(clip, camera, f), ((i % columns) * W, (i // columns) * H))
            yield np.asarray(grid)

    return write_mp4(Path(out), frames(), fps=float(clip.info.get("fps", 30.0)))
