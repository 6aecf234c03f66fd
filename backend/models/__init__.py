"""Learned weights by role (see :mod:`backend.models.registry`)."""

from .registry import ROLES, ModelMissingError, ModelRegistry, load_registry, require

__all__ = ["ROLES", "ModelMissingError", "ModelRegistry", "load_registry", "require"]
