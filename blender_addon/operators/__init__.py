"""Operators: one per user action, each gated by ``poll()``; failures are reported in the info area."""

from __future__ import annotations

from . import avatar_generate, avatar_random, body, clips, connection, footage, from_selected, jobs
from .avatar_invert import CLASSES as INVERT_CLASSES

CLASSES = (*connection.CLASSES, *body.CLASSES, *jobs.CLASSES, *clips.CLASSES, *avatar_generate.CLASSES,
           *from_selected.CLASSES, *footage.CLASSES, *avatar_random.CLASSES, *INVERT_CLASSES)
