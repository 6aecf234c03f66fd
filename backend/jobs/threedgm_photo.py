"""``avatar.from_image_inversion``'s ``image``: a photo made into the one-view views set PTI inverts.

A photo has neither a camera nor a body, and the inversion renders through both. They come from
avatar.from_image's body fit (:func:`backend.jobs.photo_body.photo_body`): the photo squared at
:data:`PHOTO_SIDE`, its mask (the alpha, else the background colour's complement), the SMPL-X body
fitted to the silhouette (and keypoints when found) in the assumed ``photo_fov`` camera. The job
then crops around the mask exactly as it does for a views folder.

The photo is hostile input: at most :data:`MAX_PHOTO_BYTES` read, at most :data:`MAX_PHOTO_PIXELS`
decoded (PIL only warns below twice its own bomb limit), anything PIL cannot read is one
``JobInputError`` naming ``params.image``.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError

PHOTO_SIDE = 512  # the squared photo: the fit works at 192 px, the crop is resized to out_res (<= 512)
MAX_PHOTO_BYTES = 256 << 20
MAX_PHOTO_PIXELS = 64_000_000  # decoded RGBA: 256 MB; a 48 MP phone photo passes
FIT_SPAN = (0.0, 0.05)  # the job's fraction the fit takes (before the inversion's 0.05)


def read_photo(image: Any) -> np.ndarray:
    """(H,W,3) uint8, or (H,W,4) when the photo has transparency; the size is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        if hasattr(image, "read_bytes") and hasattr(image, "roots"):  # a ConfinedFile
            data = image.read_bytes(limit=MAX_PHOTO_BYTES)
        else:
            path = Path(image)
            if path.stat().st_size > MAX_PHOTO_BYTES:
                raise JobInputError(f"params.image: larger than {MAX_PHOTO_BYTES >> 20} MiB")
            data = path.read_bytes()
    except JobInputError:
        raise
    except ValueError as exc:  # a ParamError (too big, gone since submit): it names the field
        raise JobInputError(str(exc)) from None
    except OSError as exc:
        raise JobInputError(f"params.image: {exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            if w * h > MAX_PHOTO_PIXELS:
                raise JobInputError(f"params.image: {w}x{h} is over {MAX_PHOTO_PIXELS} pixels")
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return np.asarray(im.convert("RGBA" if alpha else "RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise JobInputError(f"params.image: not a readable image ({exc})") from None


def photo_views(p: Any, ctx: JobContext) -> Any:
    """A :class:`ViewSet` of one view named ``photo``: the squared photo (alpha = its mask), the
    camera the body was fitted in, the fitted SMPL-X; ``record`` of the fit in ``extra``."""
    from backend.avatar.io.views import View, ViewSet
    from backend.jobs.photo_body import PHOTO_VIEW, photo_body
    from protocol.cameras import CameraFrame

    photo = read_photo(p.image)
    lo, hi = FIT_SPAN

    def progress(fraction: float, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message, stage="fit")

    # photo_body reads avatar.from_image's params: the body is always fitted here.
    fit = SimpleNamespace(body=None, fit_body=True, image=p.image, keypoints=None, pose_estimator=True,
                          photo_fov=p.photo_fov)
    found = photo_body(photo, fit, PHOTO_SIDE, progress)
    assert found.mask is not None and found.body is not None and found.camera is not None  # fitted
    K, R, t = found.camera
    rgba = np.concatenate([found.rgb.astype(np.float32) / 255.0,
                           found.mask.astype(np.float32)[..., None]], -1)
    camera = CameraFrame(K, R, t, PHOTO_SIDE, PHOTO_SIDE, near=0.05, far=100.0)
    record = {k: v for k, v in found.record.items() if k != "smplx"}
    return ViewSet([View(PHOTO_VIEW, camera, rgba)], smplx=found.body, extra={"body_fit": record})
