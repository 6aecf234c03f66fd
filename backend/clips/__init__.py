"""Synthetic multi-view clips with exact ground truth (issue 11): spec, sampling, rendering,
writers, reader and checks. ``docs/clips.md`` documents the layout and every field."""

from backend.clips.read import Clip, read_clip
from backend.clips.spec import ClipSpec, SpecError, load_spec

__all__ = ["Clip", "ClipSpec", "SpecError", "load_spec", "read_clip"]
