"""The normal pass's float16 conversion is numpy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from backend.clips.half import to_float16


def test_float16_matches_numpy_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    edge = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519, 65520, 1e9, 6e-8, 3e-8, 2.98e-8,
                     5.96e-8, 6.1e-5, 6.104e-5, 1.0009765625, 1.00048828125, 1.000732421875,
                     -0.99951171875], np.float32)
    values = np.concatenate([edge, rng.normal(size=100_000).astype(np.float32),
                             (rng.normal(size=20_000) * 1e-5).astype(np.float32),
                             rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
                             .view(np.float32)])
    finite_or_inf = values[~np.isnan(values)]
    out = np.empty(finite_or_inf.shape, np.float16)
    to_float16(finite_or_inf, out)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out.view(np.uint16), finite_or_inf.astype(np.float16).view(np.uint16))
    nan = np.empty(3, np.float16)
    to_float16(np.array([np.nan, -np.nan, 1.0], np.float32), nan)
    assert np.isnan(nan[:2]).all() and nan[2] == 1.0


def test_float16_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="float16"):
        to_float16(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float16))
