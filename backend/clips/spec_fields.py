"""Field checks shared by the clip spec's parts: every failure is a :class:`SpecError` naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any


class SpecError(ValueError):
    """A clip spec that cannot be rendered; the message names the field."""


def number_range(value: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    """A ``[min, max]`` pair (or one number, meaning a fixed value) of finite floats in [lo, hi]."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise SpecError(f"{name}: expected a number or [min, max], got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < lo or b > hi:
        raise SpecError(f"{name}: need {lo} <= min <= max <= {hi}, got [{a}, {b}]")
    return a, b


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise SpecError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def known_keys(data: Any, cls: type, name: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise SpecError(f"{name}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{name}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dict(data)
