"""SMPL-X body model (licensed file or generated stand-in), body parts and motion.

Public API::

    from backend.body import BodyModel, BodyModelConfig, BodyParams
    model = BodyModel()                      # stand-in, generated and cached on first use
    out = model(BodyParams.from_arrays(payload))   # vertices (F,10475,3), joints (F,55,3), ...

    from backend.body.motion import Motion, load_amass, save_amass, resample
    from backend.body.procedural import procedural_motion
"""

from .joints import JOINT_NAMES, PARENTS, PART_NAMES
from .model import BodyModel, BodyModelConfig, BodyOutput, BodyParams

__all__ = [
    "JOINT_NAMES",
    "PARENTS",
    "PART_NAMES",
    "BodyModel",
    "BodyModelConfig",
    "BodyOutput",
    "BodyParams",
]
