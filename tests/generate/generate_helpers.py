"""Constants the generate tests share (a module of its own: ``from conftest import ...`` would pick
whichever tests/*/conftest.py was imported first when several test folders run together)."""

from __future__ import annotations

SIZE = 64  # view side in pixels: the tiny VAE downsamples by 8, as SD's (8x8 latents)

A_POSE = {"gender": "neutral", "betas": [0.5, -0.3], "global_orient": [0.0, 0.0, 0.0],
          "body_pose": [0.0] * 63, "transl": [0.0, 0.0, 0.0]}
A_POSE["body_pose"][15 * 3 + 2] = -1.0  # left shoulder down (joint 16 -> body_pose index 15)
A_POSE["body_pose"][16 * 3 + 2] = 1.0  # right shoulder down
