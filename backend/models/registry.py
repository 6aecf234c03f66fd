"""One registry of the learned weights the pipelines use, by *role*.

A role (``smplx``, ``normal-estimator``) names what a pipeline needs, not
which checkpoint provides it. ``<data-dir>/models.toml`` maps a role to a local ``path`` and/or a
Hugging Face ``hub_id`` (+ ``revision``); a role absent from the file uses the default hub id below.
Example::

    [models.normal-estimator]
    path = "/data/weights/marigold-normals"   # a local folder wins over the hub id

    [models.smplx]
    path = "/data/smplx"            # folder holding SMPLX_NEUTRAL.npz (licensed, see smpl-x.is.tue.mpg.de)
    # path = "/data/smplx/SMPLX_NEUTRAL.pkl"   # a .pkl is used only when named like this (it is a pickle)

Resolution never touches the network: a configured ``path`` that exists, else the Hugging Face
cache (``huggingface_hub`` with ``local_files_only=True`` when installed, else the documented cache
layout ``$HF_HUB_CACHE`` / ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``,
``models--ORG--NAME/snapshots/<commit>``). Downloading is the user's explicit step (the how-to
line says which command). ``models make-tiny`` (tiny random models for tests) comes with a later
issue.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import default_data_dir

CONFIG_NAME = "models.toml"


@dataclass(frozen=True)
class ModelRole:
    name: str
    description: str
    default_hub_id: str | None  # None: not downloadable (licensed), a local path is required


# Only roles some code reads. Roles for the generative pipelines (diffusion, ControlNet, VAE, CLIP,
# depth, MIMO) come back with the code that loads them: a role nothing consumes would be reported
# as "present" or "missing" for no effect.
ROLES: dict[str, ModelRole] = {
    r.name: r
    for r in [
        ModelRole(
            "smplx",
            "SMPL-X body model files (licensed; every body job uses them, else a generated stand-in)",
            None,
        ),
        ModelRole(
            "normal-estimator",
            "monocular surface-normal estimator (avatar.from_views without normal maps)",
            "prs-eth/marigold-normals-v1-1",
        ),
    ]
}

SMPLX_GENDERS = ("neutral", "male", "female")


class ModelConfigError(ValueError):
    """``models.toml`` is not valid TOML or has fields of the wrong type."""


class ModelMissingError(LookupError):
    """A job needs weights that are not on this machine. The message says how to provide them."""

    def __init__(self, role: str, model: str, how_to: str) -> None:
        self.role = role
        self.model = model
        self.how_to = how_to
        super().__init__(f"model for role {role!r} ({model}) is not available: {how_to}")


@dataclass(frozen=True)
class ModelSpec:
    role: str
    path: Path | None = None
    hub_id: str | None = None
    revision: str = "main"

    @property
    def label(self) -> str:
        if self.hub_id:
            return self.hub_id if self.revision == "main" else f"{self.hub_id}@{self.revision}"
        return str(self.path) if self.path else "(not configured)"


@dataclass(frozen=True)
class Resolution:
    spec: ModelSpec
    location: Path | None  # where the weights are, when present
    source: str | None  # "path" | "hf-cache" | None
    how_to: str

    @property
    def present(self) -> bool:
        return self.location is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.spec.role,
            "description": ROLES[self.spec.role].description,
            "present": self.present,
            "source": self.source,
            "location": str(self.location) if self.location else None,
            "hub_id": self.spec.hub_id,
            "revision": self.spec.revision,
            "path": str(self.spec.path) if self.spec.path else None,
            "how_to": self.how_to,
        }


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def find_in_hf_cache(hub_id: str, revision: str = "main", cache_dir: Path | None = None) -> Path | None:
    """The local snapshot folder of ``hub_id`` at ``revision``, or None. Never downloads."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        snapshot_download = None
    if snapshot_download is not None:
        try:
            return Path(
                snapshot_download(hub_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
            )
        except Exception:  # LocalEntryNotFoundError and friends: not in the cache
            return None
    repo = (cache_dir or hf_cache_dir()) / f"models--{hub_id.replace('/', '--')}"
    commit = revision if _COMMIT_RE.match(revision) else None
    if commit is None:
        ref = repo / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else None
    snapshot = repo / "snapshots" / commit if commit else None
    return snapshot if snapshot is not None and snapshot.is_dir() and any(snapshot.iterdir()) else None


def smplx_model_file(location: Path, gender: str) -> tuple[Path, bool] | None:
    """The SMPL-X file for ``gender`` under a configured ``smplx`` location: ``(file, is_pickle)``.

    A folder is searched for ``SMPLX_<GENDER>.npz`` (itself, then its ``smplx/``), never for
    ``.pkl``: a pickle runs code when loaded, so it is used only when ``models.toml`` names the
    ``.pkl`` file itself (the operator's explicit choice; docs/security.md). A named file is used
    for every gender.
    """
    if location.is_file():
        suffix = location.suffix.lower()
        if suffix not in (".npz", ".pkl"):
            return None
        return location, suffix == ".pkl"
    name = f"SMPLX_{gender.upper()}.npz"
    for folder in (location, location / "smplx"):
        if (folder / name).is_file():
            return folder / name, False
    return None


def _smplx_present(path: Path) -> bool:
    return any(smplx_model_file(path, g) is not None for g in SMPLX_GENDERS)


def how_to_provide(spec: ModelSpec, config_path: Path) -> str:
    if spec.role == "smplx":
        return (
            f"download SMPL-X (licensed) from https://smpl-x.is.tue.mpg.de and set "
            f'[models.smplx] path = "/folder/with/SMPLX_NEUTRAL.npz" in {config_path}'
        )
    if spec.hub_id:
        return (
            f"run `huggingface-cli download {spec.hub_id}` (pip install huggingface-hub), or set "
            f'[models.{spec.role}] path = "/local/folder" in {config_path}'
        )
    return f"set [models.{spec.role}] path or hub_id in {config_path}"


class ModelRegistry:
    def __init__(
        self, specs: Mapping[str, ModelSpec], config_path: Path, hf_cache: Path | None = None
    ) -> None:
        self.specs = dict(specs)
        self.config_path = config_path
        self.hf_cache = hf_cache

    @classmethod
    def load(cls, data_dir: Path | str | None = None, hf_cache: Path | None = None) -> ModelRegistry:
        """Read ``<data-dir>/models.toml`` (missing file: every role on its default)."""
        config_path = Path(data_dir if data_dir is not None else default_data_dir()) / CONFIG_NAME
        table: dict[str, Any] = {}
        if config_path.is_file():
            try:
                table = tomllib.loads(config_path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ModelConfigError(f"{config_path}: {exc}") from exc
        models = table.get("models", {})
        if not isinstance(models, dict):
            raise ModelConfigError(f"{config_path}: [models] must be a table")
        unknown = set(models) - set(ROLES)
        if unknown:
            raise ModelConfigError(
                f"{config_path}: unknown model roles {sorted(unknown)}; known: {sorted(ROLES)}"
            )
        specs = {name: cls._spec(name, models.get(name, {}), config_path) for name in ROLES}
        return cls(specs, config_path, hf_cache)

    @staticmethod
    def _spec(role: str, entry: object, config_path: Path) -> ModelSpec:
        if not isinstance(entry, dict):
            raise ModelConfigError(f"{config_path}: [models.{role}] must be a table")
        for key in ("path", "hub_id", "revision"):
            if key in entry and not isinstance(entry[key], str):
                raise ModelConfigError(f"{config_path}: models.{role}.{key} must be a string")
        path = Path(entry["path"]).expanduser() if entry.get("path") else None
        if path is not None and not path.is_absolute():
            path = config_path.parent / path  # relative paths are relative to the config file
        hub_id = entry.get("hub_id", ROLES[role].default_hub_id if path is None else None)
        return ModelSpec(role, path, hub_id or None, entry.get("revision", "main"))

    def resolve(self, role: str) -> Resolution:
        if role not in self.specs:
            raise KeyError(f"unknown model role {role!r}; known: {', '.join(sorted(self.specs))}")
        spec = self.specs[role]
        how_to = how_to_provide(spec, self.config_path)
        usable_path = spec.path is not None and spec.path.exists()
        if usable_path and (role != "smplx" or _smplx_present(spec.path)):  # type: ignore[arg-type]
            return Resolution(spec, spec.path, "path", how_to)
        if spec.hub_id:
            snapshot = find_in_hf_cache(spec.hub_id, spec.revision, self.hf_cache)
            if snapshot is not None:
                return Resolution(spec, snapshot, "hf-cache", how_to)
        return Resolution(spec, None, None, how_to)

    def check(self) -> list[Resolution]:
        return [self.resolve(role) for role in self.specs]

    def require(self, role: str) -> Path:
        """The local folder/file for ``role``, or :class:`ModelMissingError` saying how to get it."""
        found = self.resolve(role)
        if found.location is None:
            raise ModelMissingError(role, found.spec.label, found.how_to)
        return found.location


def load_registry(data_dir: Path | str | None = None) -> ModelRegistry:
    return ModelRegistry.load(data_dir)


def require(role: str, data_dir: Path | str | None = None) -> Path:
    """Shortcut for jobs: ``require("normal-estimator")`` with the data dir of this process."""
    return ModelRegistry.load(data_dir).require(role)
