"""Loading SMPL-X model files never unpickles what it was not told to (issue 9 item 1).

The body comes from the server's ``smplx`` model role; an ``.npz`` is read with
``allow_pickle=False`` (object fields smplx does not need are skipped, needed ones refused); a
``.pkl`` is used only when ``models.toml`` names the file itself.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel, BodyModelConfig, BodyParams, read_smplx_npz
from backend.body.standin import ensure_standin


class _Plant:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return tmp_path / "SENTINEL"


def _licensed_copy(standin_npz: dict[str, np.ndarray], folder: Path, **extra: Any) -> Path:
    """A 'licensed' SMPLX_NEUTRAL.npz: the stand-in's arrays plus ``extra`` fields."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "SMPLX_NEUTRAL.npz"
    np.savez(path, **standin_npz, **extra)
    return path


def test_object_fields_smplx_does_not_read_are_skipped(
    standin_npz: dict[str, np.ndarray], standin_root: Path, tmp_path: Path, sentinel: Path
) -> None:
    evil = np.array([_Plant(sentinel)], dtype=object)
    path = _licensed_copy(standin_npz, tmp_path / "licensed", part2num=evil, joint2num=evil)
    arrays = read_smplx_npz(path)
    assert "part2num" not in arrays and arrays["v_template"].shape == (10475, 3)
    model = BodyModel(BodyModelConfig(model_path=path, data_dir=standin_root))
    assert not model.is_standin and model.model_file == path
    reference = BodyModel(BodyModelConfig(data_dir=standin_root, use_registry=False))
    p = BodyParams.zeros(1)
    torch.testing.assert_close(model(p).vertices, reference(p).vertices)
    assert not sentinel.exists()


def test_a_needed_object_field_is_refused_not_unpickled(
    standin_npz: dict[str, np.ndarray], tmp_path: Path, sentinel: Path
) -> None:
    fields = {k: v for k, v in standin_npz.items() if k != "J_regressor"}
    path = _licensed_copy(fields, tmp_path / "bad", J_regressor=np.array([_Plant(sentinel)], dtype=object))
    with pytest.raises(ValueError, match="'J_regressor' is a pickled object array"):
        BodyModel(BodyModelConfig(model_path=path))
    assert not sentinel.exists()


def test_a_pkl_needs_the_servers_config_naming_it(
    standin_root: Path, tmp_path: Path, sentinel: Path, monkeypatch: Any
) -> None:
    pkl = tmp_path / "smplx" / "SMPLX_NEUTRAL.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps(_Plant(sentinel)))
    with pytest.raises(ValueError, match=r"\.pkl model file is a pickle"):
        BodyModel(BodyModelConfig(model_path=pkl))
    # A models.toml naming the folder: a folder is searched for .npz only -> the stand-in.
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(standin_root / "body", data / "body")  # the cached stand-in
    (data / "models.toml").write_text(f'[models.smplx]\npath = "{pkl.parent}"\n')
    assert BodyModel(BodyModelConfig(data_dir=data)).is_standin
    assert not sentinel.exists()
    # Naming the .pkl itself is the operator's explicit choice: then it is loaded (and runs).
    (data / "models.toml").write_text(f'[models.smplx]\npath = "{pkl}"\n')
    with pytest.raises(Exception):  # noqa: B017 - our planted "model" is no model at all
        BodyModel(BodyModelConfig(data_dir=data))
    assert sentinel.exists()


def test_every_job_body_comes_from_the_smplx_role(
    standin_npz: dict[str, np.ndarray], standin_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    licensed = _licensed_copy(standin_npz, tmp_path / "smplx-folder")
    (data / "models.toml").write_text(f'[models.smplx]\npath = "{licensed.parent}"\n')
    model = BodyModel(BodyModelConfig(data_dir=data))
    assert not model.is_standin and model.model_file == licensed
    with pytest.raises(ValueError, match="unknown gender"):
        BodyModel(BodyModelConfig(data_dir=data, gender="../../x"))
    assert ensure_standin("neutral", standin_root).is_file()
