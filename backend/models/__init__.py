"""Learned weights by role: the registry (:mod:`.registry`, light, no torch), the loaders
(:mod:`.load`), downloads (:mod:`.download`) and tiny test models (:mod:`.tiny`); docs/models.md."""

from .registry import (
    ROLES,
    ModelConfigError,
    ModelLoadError,
    ModelMissingError,
    ModelRegistry,
    load_registry,
    require,
)

__all__ = [
    "ROLES",
    "ModelConfigError",
    "ModelLoadError",
    "ModelMissingError",
    "ModelRegistry",
    "load_registry",
    "require",
]
