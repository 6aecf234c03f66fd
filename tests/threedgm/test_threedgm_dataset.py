"""The 3DGM Dataset over a rendered clips dataset: crops, cameras, bodies, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.threedgm.dataset import ClipsDataset, DatasetError, camera_vector, collate
from backend.threedgm.patches import project


def test_items_have_the_documented_shapes(data) -> None:
    assert len(data) == 16  # 2 clips x 4 cameras x 2 frames x 1 person, all seen
    item = data[3]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert item["K"].shape == (3, 3) and item["R"].shape == (3, 3) and item["t"].shape == (3,)
    assert item["cond"].shape == (16,) and item["verts"].shape == (512, 3)
    assert item["transforms"].shape == (55, 3, 4)
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert 0.02 < item["mask"].mean() < 0.6
    # background pixels are the flat background
    bg = item["mask"][0] == 0
    torch.testing.assert_close(item["image"][:, bg], torch.ones_like(item["image"][:, bg]))
    batch = collate([data[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["params"]["body_pose"].shape == (3, 63)


def test_cropped_camera_sees_the_posed_body_on_the_mask(data) -> None:
    for i in (0, 5, 10, 15):
        item = data[i]
        pix = project(item["verts"][None], item["K"][None], item["R"][None], item["t"][None])[0]
        ij = pix.floor().long().clamp(0, 31)
        on_mask = item["mask"][0, ij[:, 1], ij[:, 0]] > 0
        assert on_mask.float().mean() > 0.9, i
        # the conditioning vector: camera centre relative to the body root
        centre = -item["R"].T @ item["t"]
        torch.testing.assert_close(item["cond"][9:12], centre - item["root"])
        torch.testing.assert_close(
            camera_vector(item["K"], item["R"], item["t"], item["root"], 32), item["cond"]
        )


def test_not_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a clips dataset"):
        ClipsDataset(tmp_path, 32, 64)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a clips manifest"):
        ClipsDataset(tmp_path, 32, 64)
    (tmp_path / "manifest.json").write_text('{"spec": {"passes": ["depth"]}, "clips": []}')
    with pytest.raises(DatasetError, match="rgb and instance"):
        ClipsDataset(tmp_path, 32, 64)
    (tmp_path / "manifest.json").write_text('{"spec": [], "clips": 3}')
    with pytest.raises(DatasetError, match="not a clips manifest"):
        ClipsDataset(tmp_path, 32, 64)


def test_small_datasets_are_cached(data) -> None:
    assert data.cache is True and data[2] is data[2]
