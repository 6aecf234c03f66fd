"""Where the add-on gets the ``protocol`` package from.

The installed extension carries a vendored copy as its own subpackage (``<addon>.protocol``, put
there by ``avatar-studio addon build``), so it never clashes with another ``protocol`` module in
Blender's Python. A development checkout has no vendored copy and imports the repository's
top-level ``protocol`` (tests put the repository root on ``sys.path``). Every other add-on module
imports the protocol through here and nowhere else.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _load(submodule: str = "") -> ModuleType:
    suffix = f".{submodule}" if submodule else ""
    try:
        return importlib.import_module(f"{__package__}.protocol{suffix}")
    except ModuleNotFoundError as exc:
        # Only fall back when the vendored package itself is missing, not when something inside
        # it failed to import (that error must surface).
        if exc.name not in (f"{__package__}.protocol", f"{__package__}.protocol{suffix}"):
            raise
    return importlib.import_module(f"protocol{suffix}")


protocol = _load()
messages = _load("messages")
smplx = _load("smplx")  # the SMPL-X joint tree the payloads are ordered by
axes = _load("axes")  # Z-up (Blender, AMASS) <-> the protocol's Y-up world
rotations = _load("rotations")
amass = _load("amass")  # the AMASS reader the backend uses too
artifact_names = _load("artifact_names")


def client_module() -> ModuleType:
    """``protocol.client`` (imported lazily: it needs pyzmq, which the wheels provide)."""
    return _load("client")


def cameras_module() -> ModuleType:
    """``protocol.cameras``: the one place of the Blender <-> protocol convention math."""
    return _load("cameras")


def kinds_module() -> ModuleType:
    """``protocol.kinds``: the job contracts the add-on builds params from."""
    return _load("kinds")
def footage_contract_module() -> ModuleType:
    """``protocol.kinds_footage``: the footage kinds' constants (routes, layers, suffixes, limits)."""
    return _load("kinds_footage")


def transfers_module() -> ModuleType:
    """``protocol.transfers``: the stepped, ranged, hash-checked artifact downloads."""
    return _load("transfers")
