"""A known body (a walking pose, turned 29 degrees, non-zero betas) rendered by our rasterizer
from 8 cameras around it at 128 px, and the short stage schedule the tests fit with."""

from __future__ import annotations

import numpy as np
import pytest

# Ground-truth shape; the fit's betas are compared with it.
TRUE_BETAS = [0.8, -0.6, 0.5, 0.3, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="session")
def quick_stages():
    """Fewer iterations than DEFAULT_STAGES (20/40/50/10 instead of 30/60/80/20): test time."""
    from backend.fitting import Stage

    free = ("global_orient", "transl", "body_pose", "betas")
    return (Stage("orient", free[:2], 20, 0.25, 0.03, 1.0, keypoint_sigma=0.5),
            Stage("pose", free[:3], 40, 0.5, 0.03, 0.3, keypoint_sigma=0.3),
            Stage("shape", free, 50, 1.0, 0.02, 0.05),
            Stage("refine", free, 10, 1.0, 0.005, 0.01, raster=True))


@pytest.fixture(scope="session")
def truth():
    from backend.body.procedural import procedural_motion
    from backend.fitting.synthetic import pose_body

    body_pose = np.asarray(procedural_motion("walk").body_pose)[10]
    params = {"gender": "neutral", "betas": TRUE_BETAS, "global_orient": [0.0, 0.5, 0.0],
              "body_pose": body_pose.tolist(), "transl": [0.1, 0.0, -0.2]}
    return pose_body(params)
