"""``get_rasterizer("auto")`` takes a GPU backend only after its start-up self-check passes.

Fake "GPU" backends registered for the test: one that is the reference itself (passes), one whose
image rows come out upside down (the classic OpenGL-vs-image row order slip), one that cannot
start. Only the passing one may be chosen; the others leave ``auto`` on the CPU with a warning
that names the backend and the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch

from backend.render import api
from backend.render.api import (
    Raster,
    RasterizerFallbackWarning,
    auto_choice,
    get_rasterizer,
    register_backend,
)
from backend.render.selfcheck import RESOLUTION, self_check, self_check_scene
from backend.render.torch_ref import TorchRefRasterizer


class CountingReference:
    """Passes: the CPU reference itself, counting its calls."""

    name = "fake_gpu_good"
    calls = 0

    def __init__(self) -> None:
        self._ref = TorchRefRasterizer()

    def rasterize(self, verts_clip: torch.Tensor, faces: torch.Tensor, resolution: tuple[int, int]) -> Raster:
        type(self).calls += 1
        return self._ref.rasterize(verts_clip, faces, resolution)


class UpsideDown:
    """Fails: right triangles, rows in the wrong order."""

    name = "fake_gpu_flipped"

    def rasterize(self, verts_clip: torch.Tensor, faces: torch.Tensor, resolution: tuple[int, int]) -> Raster:
        r = TorchRefRasterizer().rasterize(verts_clip, faces, resolution)
        return Raster(tri_id=r.tri_id.flip(1), bary=r.bary.flip(1), depth=r.depth.flip(1))


def cannot_start() -> UpsideDown:
    raise OSError("libcuda.so.1: cannot open shared object file")


@pytest.fixture
def only_fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registry without the real GPU backends, so the result does not depend on this machine."""
    registry = {name: spec for name, spec in api._REGISTRY.items() if not spec.gpu}
    monkeypatch.setattr(api, "_REGISTRY", registry)
    api.clear_cache()
    yield
    api.clear_cache()


def test_a_fake_gpu_that_fails_the_self_check_is_not_chosen(only_fakes: None) -> None:
    register_backend("fake_gpu_flipped", UpsideDown, lambda: True, gpu=True)
    with pytest.warns(RasterizerFallbackWarning, match=r"fake_gpu_flipped failed the self-check: \d+ of"):
        rast = get_rasterizer("auto")
    assert rast.name == "cpu"
    choice = auto_choice()
    assert choice.name == "cpu" and choice.reasons["fake_gpu_flipped"].startswith("failed the self-check")
    # Named explicitly it still runs (a user may insist), only ``auto`` refuses it.
    assert get_rasterizer("fake_gpu_flipped").name == "fake_gpu_flipped"


def test_a_fake_gpu_that_passes_is_chosen_once_per_process(only_fakes: None) -> None:
    CountingReference.calls = 0
    register_backend("fake_gpu_flipped", UpsideDown, lambda: True, gpu=True)
    register_backend("fake_gpu_good", CountingReference, lambda: True, gpu=True)
    with pytest.warns(RasterizerFallbackWarning, match="fake_gpu_flipped"):  # tried first, refused
        first = get_rasterizer("auto")
    assert first.name == "fake_gpu_good"
    assert auto_choice().reasons == {
        "fake_gpu_flipped": auto_choice().reasons["fake_gpu_flipped"],
        "fake_gpu_good": "passed the self-check",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second check, no second warning
        assert get_rasterizer("auto") is first
    assert CountingReference.calls == 1


def test_a_gpu_backend_that_cannot_start_leaves_auto_on_the_cpu(only_fakes: None) -> None:
    register_backend("fake_gpu_broken", cannot_start, lambda: True, gpu=True)
    with pytest.warns(RasterizerFallbackWarning, match="fake_gpu_broken could not start: OSError: libcuda"):
        assert get_rasterizer("auto").name == "cpu"


def test_unavailable_gpu_backends_are_skipped_without_a_warning(only_fakes: None) -> None:
    register_backend("fake_gpu_absent", CountingReference, lambda: False, gpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_rasterizer("auto").name == "cpu"
    assert auto_choice().reasons == {"fake_gpu_absent": "not available (needs CUDA and its package)"}


def test_the_self_check_catches_what_it_is_for() -> None:
    """The real CPU backend passes; a transposed image, out-of-range ids and a broken depth test fail."""
    assert self_check(get_rasterizer("cpu")) is None
    verts, faces = self_check_scene()
    ref = TorchRefRasterizer().rasterize(verts, faces, RESOLUTION)
    assert (ref.tri_id >= 0).float().mean() > 0.4 and ref.tri_id.unique().numel() > 40  # not trivial

    class Fixed:
        name = "fixed"

        def __init__(self, tri_id: torch.Tensor) -> None:
            self.tri_id = tri_id

        def rasterize(self, *_: object) -> Raster:
            return Raster(tri_id=self.tri_id, bary=torch.zeros(*self.tri_id.shape, 2),
                          depth=torch.zeros(self.tri_id.shape))

    assert "shape" in self_check(Fixed(ref.tri_id.transpose(1, 2)))
    bad_ids = ref.tri_id.clone()
    bad_ids[0, 0, 0] = faces.shape[0]
    assert "outside" in self_check(Fixed(bad_ids))

    # Painter's order instead of a depth test: the last triangle drawn wins wherever triangles overlap.
    class NoDepthTest:
        name = "no_depth_test"

        def rasterize(self, verts_clip: torch.Tensor, f: torch.Tensor, resolution: tuple[int, int]) -> Raster:
            ids = torch.full((verts_clip.shape[0], *resolution), -1, dtype=torch.int64)
            for k in range(f.shape[0]):
                one = TorchRefRasterizer().rasterize(verts_clip, f[k : k + 1], resolution).tri_id
                ids[one >= 0] = k
            return Raster(tri_id=ids, bary=torch.zeros(*ids.shape, 2), depth=torch.zeros(ids.shape))

    assert "see another triangle" in self_check(NoDepthTest())
