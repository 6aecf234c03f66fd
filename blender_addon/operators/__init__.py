"""Operators: one per user action, each gated by ``poll()``; failures are reported in the info area."""

from __future__ import annotations

from . import body, clips, connection, from_selected, jobs

CLASSES = (*connection.CLASSES, *body.CLASSES, *jobs.CLASSES, *clips.CLASSES, *from_selected.CLASSES)
