"""Shared fixtures: the stand-in body is generated once per test session into a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.body.model import BodyModel, BodyModelConfig
from backend.body.standin import ensure_standin


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avatar-studio-data")
    ensure_standin("neutral", root)
    return root


@pytest.fixture(scope="session")
def standin_npz(standin_root: Path) -> dict[str, np.ndarray]:
    with np.load(ensure_standin("neutral", standin_root)) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def body_model(standin_root: Path) -> BodyModel:
    return BodyModel(BodyModelConfig(data_dir=standin_root))


@pytest.fixture(scope="session")
def winding_numbers():  # type: ignore[no-untyped-def]
    """The function below, as a fixture (test folders here are not packages)."""
    return _winding_numbers


def _winding_numbers(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Generalised winding number of each point w.r.t. a closed triangle mesh (1 inside, 0 outside)."""
    out = np.zeros(len(points))
    for i, p in enumerate(points):
        a, b, c = (vertices[faces[:, k]] - p for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
        den += np.einsum("ij,ij->i", c, a) * lb
        out[i] = np.arctan2(det, den).sum() / (2 * np.pi)
    return out
