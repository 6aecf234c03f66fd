"""Frame windows over a long video and the weights that blend them at the seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.mimo.windows import blend, blend_weights, frame_windows


def test_windows_of_four_with_overlap_two_over_seven_frames() -> None:
    windows = frame_windows(7, 4, 2)
    assert [list(w) for w in windows] == [[0, 1, 2, 3], [2, 3, 4, 5], [3, 4, 5, 6]]
    assert frame_windows(3, 4, 2) == [range(3)]  # shorter than a window: one window
    assert [list(w) for w in frame_windows(8, 4, 0)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="overlap"):
        frame_windows(7, 4, 4)
    with pytest.raises(ValueError, match="frame"):
        frame_windows(0, 4, 2)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
@pytest.mark.parametrize(
    ("frames", "window", "overlap"), [(7, 4, 2), (16, 16, 4), (40, 16, 4), (9, 3, 1), (8, 4, 0), (23, 5, 4)]
)
def test_blend_weights_sum_to_one_per_frame(frames: int, window: int, overlap: int, shape: str) -> None:
    windows = frame_windows(frames, window, overlap)
    weights = blend_weights(frames, windows, overlap, shape)
    assert weights.shape == (len(windows), frames)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert (weights >= 0).all()
    for k, w in enumerate(windows):  # zero outside its window, positive inside
        outside = np.ones(frames, bool)
        outside[w.start : w.stop] = False
        assert (weights[k, outside] == 0).all() and (weights[k, w.start : w.stop] > 0).all()


def test_blending_at_the_seams() -> None:
    frames, windows = 7, frame_windows(7, 4, 2)
    weights = blend_weights(frames, windows, 2, "linear")
    # Frames covered by one window keep that window's prediction exactly.
    outs = [torch.full((1, 2, 4, 3, 3), float(k + 1)) for k in range(len(windows))]
    mixed = blend(outs, windows, torch.as_tensor(weights))
    assert mixed.shape == (1, 2, 7, 3, 3)
    assert (mixed[:, :, :2] == 1.0).all()  # frames 0, 1: only the first window
    # In the overlap the first window fades out, the later ones fade in (monotone across the seam).
    per_frame = mixed[0, 0, :, 0, 0].numpy()
    np.testing.assert_allclose(per_frame, weights.T @ np.arange(1.0, 4.0), rtol=1e-6)
    assert np.all(np.diff(per_frame) >= 0) and per_frame[-1] > 2.5
    assert weights[0, 3] < weights[0, 2] < 1.0  # the first window's last frames count less and less
    # A signal the windows agree on comes out unchanged (the weights are a partition of unity).
    signal = torch.arange(frames, dtype=torch.float64).view(1, 1, frames, 1, 1) ** 2
    agreed = [signal[:, :, w.start : w.stop] for w in windows]
    torch.testing.assert_close(blend(agreed, windows, torch.as_tensor(weights)), signal, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="covers"):
        blend([o[:, :, :3] for o in outs], windows, torch.as_tensor(weights))
