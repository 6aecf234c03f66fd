"""Small helpers to read job result arrays under the names their kind's contract declares
(``protocol/kinds.py``): importers spell no array name, so a renamed array fails here, loudly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..wire import kinds_module

BODY_RESULT = kinds_module().result_names("body.mesh")
AVATAR_RESULT = kinds_module().result_names("avatar.from_views")


class ResultFormatError(ValueError):
    """A job result lacks an array the importer needs, or has the wrong shape."""


def pick(arrays: Mapping[str, Any], *names: str, required: bool = True) -> np.ndarray | None:
    for name in names:
        if name in arrays and arrays[name] is not None:
            return np.asarray(arrays[name])
    if required:
        raise ResultFormatError(
            f"the result has none of the arrays {', '.join(names)} "
            f"(it has: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    return None


def check_shape(array: np.ndarray, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    if array.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, array.shape, strict=True)
    ):
        raise ResultFormatError(f"{what}: expected shape {shape}, got {array.shape}")
    return array
