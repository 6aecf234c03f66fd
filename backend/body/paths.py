"""Where generated body data is cached (never committed: the stand-in npz files are ~100 MB)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "AVATAR_STUDIO_DATA_DIR"


def data_dir() -> Path:
    """``$AVATAR_STUDIO_DATA_DIR`` or ``~/.local/share/avatar-studio``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "avatar-studio"


def standin_dir(root: Path | None = None) -> Path:
    """Folder laid out the way ``smplx.create(folder, model_type="smplx")`` expects:
    ``<root>/body/smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz``; pass ``<root>/body`` to smplx."""
    return (root if root is not None else data_dir()) / "body"
