"""One tiny rendered clips dataset for the 3DGM tests: 2 clips x 2 frames x 4 ring cameras of one
person at 64x64 (16 items), rendered once per session by the clips library (``clips render``'s
call), and the 3DGM Dataset over it at 32x32."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.clips.dataset import render_dataset
from backend.clips.spec import ClipSpec

SPEC = {
    "clips": 2,
    "frames": 2,
    "width": 64,
    "height": 64,
    "seed": 1,
    "people": {"count": [1, 1]},
    "motion": {"sources": ["walk", "wave"]},
    "cameras": ["ring:4"],
    "passes": ["rgb", "instance"],
}


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("threedgm-clips") / "ds"
    render_dataset(ClipSpec.parse(SPEC), out)
    return out


@pytest.fixture(scope="session")
def data(clips_dir: Path):
    from backend.threedgm.config import TINY
    from backend.threedgm.dataset import ClipsDataset

    return ClipsDataset(clips_dir, TINY.generator.out_res, TINY.generator.warp_vertices)
