"""Where generated body data is cached (never committed: the stand-in npz files are ~100 MB)."""

from __future__ import annotations

from pathlib import Path

from protocol.connection import default_data_dir as data_dir  # $AVATAR_STUDIO_DATA_DIR or the default


def standin_dir(root: Path | None = None) -> Path:
    """Folder laid out the way ``smplx.create(folder, model_type="smplx")`` expects:
    ``<root>/body/smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz``; pass ``<root>/body`` to smplx."""
    return (root if root is not None else data_dir()) / "body"
