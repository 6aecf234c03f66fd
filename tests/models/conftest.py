"""One set of tiny models (``make_tiny``) for the whole session: built in seconds, a few MB."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.models.registry import ModelRegistry


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``models.toml`` written by ``make_tiny`` (its folder holds every tiny model)."""
    from backend.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def tiny_registry(tiny_models: Path, tmp_path: Path) -> ModelRegistry:
    # An empty HF cache: a role the file did not name would be missing, not found elsewhere.
    return ModelRegistry.load(models_file=tiny_models, hf_cache=tmp_path / "empty-hf-cache")


@pytest.fixture(autouse=True)
def _no_models_file_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cli.main([... --models FILE ...])`` sets $AVATAR_STUDIO_MODELS in this process (for its
    workers): start each test without it and drop what a test set (setenv records the absence)."""
    from backend.models.registry import MODELS_FILE_ENV

    monkeypatch.setenv(MODELS_FILE_ENV, "")
    monkeypatch.delenv(MODELS_FILE_ENV)
