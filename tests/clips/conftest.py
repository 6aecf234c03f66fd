"""A small rendered dataset shared by the clip tests (two people, two ring cameras, four frames)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.clips.dataset import render_dataset
from backend.clips.spec import ClipSpec

SMALL = {"clips": 2, "frames": 4, "width": 96, "height": 72, "seed": 3,
         "people": {"count": [2, 2], "area": 3.0}, "motion": {"sources": ["walk", "wave"]},
         "cameras": ["ring:2", "orbit:1"]}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clips") / "ds"
    render_dataset(ClipSpec.parse(SMALL), out)
    return out
