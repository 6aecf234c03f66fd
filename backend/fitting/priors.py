"""Pose and shape priors written in code: per-joint angle ranges, the Gaussian pose prior built on
them, the joint-limit penalty and the betas L2.

Each body joint's axis-angle is in its parent's frame, which in SMPL-X's rest pose is the world
frame (Y up, the body faces +z, its left is +x; backend/body/procedural.py lists the signs). The
ranges are anatomical ones, in degrees, read per axis-angle component (a good proxy for the Euler
angles at the moderate angles a fit passes through); they hold the hinges their way:

- knees bend with a positive rotation about x (shin backwards), never the other way;
- the left elbow flexes with a negative rotation about its y (forearm forward), the right with a
  positive one; about z the forearm may only rise (positive z on the left, negative on the right:
  the waving forearm of the procedural ``wave``), never drop below the upper arm's line.

The pose prior is a diagonal Gaussian: mean 0 (SMPL-X's rest pose, where the procedural motions
and AMASS poses are centred for all but the shoulders), standard deviation a quarter of each
range, so a component at its range's edge costs ~4 (two sigmas squared each side). The limit term
is zero inside a range and quadratic outside it. ``tests/fitting`` checks that every frame of our
procedural motions is inside the ranges, so the signs above are the body model's.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.body.joints import JOINT_NAMES

# (x, y, z) ranges in degrees per body joint (joints 1..21, the ``body_pose`` order).
JOINT_RANGES_DEG: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "left_hip": ((-125, 35), (-45, 45), (-25, 70)),
    "right_hip": ((-125, 35), (-45, 45), (-70, 25)),
    "spine1": ((-25, 50), (-30, 30), (-25, 25)),
    "left_knee": ((-5, 150), (-12, 12), (-12, 12)),
    "right_knee": ((-5, 150), (-12, 12), (-12, 12)),
    "spine2": ((-20, 40), (-30, 30), (-25, 25)),
    "left_ankle": ((-40, 50), (-25, 25), (-30, 30)),
    "right_ankle": ((-40, 50), (-25, 25), (-30, 30)),
    "spine3": ((-20, 40), (-30, 30), (-25, 25)),
    "left_foot": ((-30, 30), (-10, 10), (-10, 10)),
    "right_foot": ((-30, 30), (-10, 10), (-10, 10)),
    "neck": ((-40, 50), (-50, 50), (-35, 35)),
    "left_collar": ((-20, 20), (-25, 25), (-20, 35)),
    "right_collar": ((-20, 20), (-25, 25), (-35, 20)),
    "head": ((-35, 40), (-45, 45), (-30, 30)),
    "left_shoulder": ((-100, 100), (-90, 90), (-110, 75)),
    "right_shoulder": ((-100, 100), (-90, 90), (-75, 110)),
    "left_elbow": ((-70, 70), (-150, 8), (-12, 120)),
    "right_elbow": ((-70, 70), (-8, 150), (-120, 12)),
    "left_wrist": ((-70, 70), (-40, 40), (-75, 75)),
    "right_wrist": ((-70, 70), (-40, 40), (-75, 75)),
}
BODY_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[1:22]


def joint_ranges() -> tuple[np.ndarray, np.ndarray]:
    """(63,) lower and upper bounds in radians of the ``body_pose`` components."""
    ranges = np.radians(np.array([JOINT_RANGES_DEG[n] for n in BODY_JOINT_NAMES], dtype=np.float64))
    return ranges[..., 0].reshape(-1), ranges[..., 1].reshape(-1)


class PosePrior(torch.nn.Module):
    """Diagonal Gaussian over ``body_pose`` plus the joint-limit penalty (both per frame, summed)."""

    def __init__(self) -> None:
        super().__init__()
        low, high = joint_ranges()
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32))
        self.register_buffer("sigma", torch.tensor((high - low) / 4.0, dtype=torch.float32))

    def gaussian(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Sum of squared z-scores (mean 0) of the 63 components."""
        return ((body_pose.reshape(-1, 63) / self.sigma) ** 2).sum()

    def limits(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Sum of squared excess (radians^2) beyond each component's range."""
        pose = body_pose.reshape(-1, 63)
        return ((self.low - pose).clamp(min=0) ** 2 + (pose - self.high).clamp(min=0) ** 2).sum()


def shape_prior(betas: torch.Tensor) -> torch.Tensor:
    """L2 of the betas (the shape space is a unit Gaussian)."""
    return (betas**2).sum()
