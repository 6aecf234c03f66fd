"""One place that builds body models for the pipelines and jobs, cached per process.

A body model (licensed SMPL-X file or generated stand-in) takes seconds to build; a worker process
keeps the last few. The preview pipeline and the ``body.mesh`` job both load through here, so
neither reaches into the other to get a body.
"""

from __future__ import annotations

import functools
from pathlib import Path

from backend.body.model import BodyModel, BodyModelConfig


@functools.lru_cache(maxsize=4)
def load_body_model(gender: str = "neutral", model_path: str | None = None) -> BodyModel:
    """The body model for ``gender`` (from ``model_path``, else the stand-in), built once per process."""
    return BodyModel(BodyModelConfig(model_path=Path(model_path) if model_path else None, gender=gender))
