"""SMPL-X body model (licensed file or generated stand-in), body parts and motion.

Public API::

    from backend.body import BodyModel, BodyModelConfig, BodyParams
    model = BodyModel()                            # stand-in, generated and cached on first use
    out = model(BodyParams.from_arrays(payload))   # vertices (F,10475,3), joints (F,55,3), ...

    from backend.body.motion import Motion, load_amass, save_amass, resample
    from backend.body.procedural import procedural_motion, load_motion

The torch-based names are imported lazily, so ``backend.body.motion`` and friends stay usable (and
quick to import) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .joints import JOINT_NAMES, PARENTS, PART_NAMES

if TYPE_CHECKING:
    from .model import BodyModel, BodyModelConfig, BodyOutput, BodyParams

_LAZY = {"BodyModel", "BodyModelConfig", "BodyOutput", "BodyParams"}

__all__ = [
    "JOINT_NAMES",
    "PARENTS",
    "PART_NAMES",
    "BodyModel",
    "BodyModelConfig",
    "BodyOutput",
    "BodyParams",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
