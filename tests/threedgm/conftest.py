"""One tiny rendered clips dataset for the 3DGM tests: 2 clips x 2 frames x 4 ring cameras of one
person at 64x64 (16 items), rendered once per session by the clips library (``clips render``'s
call), and the 3DGM Dataset over it at 32x32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """One intra-op thread for every 3DGM test: on a shared 2-core box two threads contend and run
    several times slower; results do not depend on it (each run of a test uses one setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture(scope="session")
def tiny_run(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained for 20 steps (one checkpoint): what sampling, inversion and the jobs load."""
    from dataclasses import replace

    import torch

    from backend.threedgm.config import TINY
    from backend.threedgm.train import Trainer

    out = tmp_path_factory.mktemp("threedgm-run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(data, out, replace(TINY, checkpoint_every=1000)).train(20)
    finally:
        torch.set_num_threads(threads)
    return out
