"""The footage roles (person-segmentation, depth-estimator, inpainting) load from ``make_tiny``
models through the real loaders and run inside decompose(); the depth estimator's output is aligned
to the camera's ground plane; a missing role is one clear error before any frame is processed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decompose_plate import make_plate

from backend.footage.decompose import decompose
from backend.footage.estimate import AlignmentError, align_to_ground, estimate_depth
from backend.footage.inpaint import ground_depth
from backend.footage.source import Footage, FootageError, ShotCamera
from backend.models import load
from backend.models.load_footage import DepthEstimator, PersonSegmenter, person_label_ids
from backend.models.registry import ROLES, ModelMissingError, ModelRegistry

FOOTAGE_ROLES = ("person-segmentation", "depth-estimator", "inpainting")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def registry(tiny_models: Path, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.load(models_file=tiny_models, hf_cache=tmp_path / "empty-hf-cache")


@pytest.fixture
def empty_registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache")


def _shot(n: int = 3, **kw) -> tuple[Footage, ShotCamera, object]:
    plate = make_plate(n=n, **kw)
    return (Footage(plate.frames, tuple(range(1, n + 1)), 24.0, "images"),
            ShotCamera(plate.K, plate.R, plate.t), plate)


def test_roles_are_registered_with_loaders() -> None:
    for role in FOOTAGE_ROLES:
        assert role in ROLES and role in load.LOADERS and ROLES[role].default_hub_id


def test_tiny_segmentation_gives_a_person_mask_of_the_frames_size(registry: ModelRegistry) -> None:
    seg = load.LOADERS["person-segmentation"](registry=registry, device="cpu")
    assert isinstance(seg, PersonSegmenter) and seg.person_ids == [12]  # ADE20K's "person"
    assert type(seg.model).__name__ == "UperNetForSemanticSegmentation"
    footage, camera, plate = _shot()
    layers = decompose(footage, camera, segment=True, models=registry)
    assert layers.people == "segmentation"
    assert layers.person.shape == plate.mask.shape and layers.person.dtype == np.float32
    assert layers.person.min() >= 0.0 and layers.person.max() <= 1.0
    assert layers.human.shape == (*plate.mask.shape, 4)


def test_person_labels_are_found_by_name() -> None:
    assert person_label_ids({0: "wall", 12: "person;individual;someone", 3: "Rider"}) == [3, 12]
    assert person_label_ids({0: "background", 1: "car"}) == []


def test_tiny_depth_estimator_runs_and_is_aligned(registry: ModelRegistry) -> None:
    est = load.LOADERS["depth-estimator"](registry=registry, device="cpu")
    assert isinstance(est, DepthEstimator) and est.kind == "relative"
    assert type(est.model).__name__ == "DepthAnythingForDepthEstimation"
    footage, camera, plate = _shot()
    raw = est(plate.frames[0])
    assert raw.shape == plate.frames.shape[1:3] and raw.dtype == np.float32
    # The seeded random model's map does not describe the scene: the fit through the ground plane
    # gives a negative scale (farther would be nearer), which is refused, not written.
    with pytest.raises(FootageError, match=r"depth_estimator \(frame 1\): the prediction does not fit"):
        decompose(footage, camera, depth_estimator=True, models=registry)


def test_decompose_with_the_depth_estimator_aligns_to_the_ground(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decompose path of the role with a model that predicts what Depth Anything would: the
    plate's inverse depth (the person included) up to a scale and shift of its own."""
    from backend.models import load_footage

    footage, camera, plate = _shot(n=3, pan=1.0, yaw_deg=8.0)

    def model(rgb: np.ndarray) -> np.ndarray:
        f = next(i for i in range(len(plate.frames)) if np.array_equal(plate.frames[i], rgb))
        return (20.0 / plate.depth[f] + 0.3).astype(np.float32)  # 1/inf = 0: the sky

    estimator = DepthEstimator(None, None, None, "relative")
    monkeypatch.setattr(DepthEstimator, "__call__", lambda self, rgb: model(rgb))
    monkeypatch.setattr(load_footage, "load_depth_estimator", lambda **kw: estimator)
    layers = decompose(footage, camera, depth_estimator=True, person_masks=plate.mask)
    assert layers.depth_source == "estimator" and layers.depth.dtype == np.float32
    seen = np.isfinite(plate.background_depth) & (plate.mask == 0)
    rel = np.abs(layers.depth[seen] - plate.background_depth[seen]) / plate.background_depth[seen]
    assert np.median(rel) < 0.01 and np.percentile(rel, 95) < 0.03
    person = plate.mask > 0.5  # the scene depth behind the removed person, not the person's
    assert np.median(layers.depth[person] / plate.depth[person]) > 1.2


def _plane_scene(h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A plane-only scene (the ground y = 0, the sky above the horizon) and its true depth."""
    plate = make_plate(n=1, h=h, w=w)
    K, R, t = plate.K[0], plate.R[0], plate.t[0]
    return K, R, t, ground_depth(K, R, t, h, w)


def test_relative_prediction_is_aligned_to_the_ground_plane() -> None:
    K, R, t, truth = _plane_scene()
    ground = np.isfinite(truth)
    rng = np.random.default_rng(0)
    # What Depth Anything predicts: inverse depth up to an unknown scale and shift, a little noise.
    inverse = np.where(ground, 1.0 / np.where(ground, truth, 1.0), 0.0)
    pred = inverse * 37.0 * (1 + 0.01 * rng.standard_normal(inverse.shape)) + 2.5
    clutter = np.zeros_like(ground)
    clutter[40:50, 20:35] = True  # something standing on the floor: much nearer than the floor
    pred[clutter] *= 2.0
    aligned = align_to_ground(pred.astype(np.float32), K, R, t)
    with np.errstate(invalid="ignore"):  # inf - inf in the sky
        rel = np.abs(aligned - truth) / truth
    assert np.median(rel[ground & ~clutter]) < 0.02 and np.percentile(rel[ground & ~clutter], 95) < 0.05
    # the sky stays far (its disparity, the shift 2.5, is beyond every ground pixel's)
    assert (aligned[~ground] > truth[ground].max()).all()


def test_metric_prediction_is_scaled() -> None:
    K, R, t, truth = _plane_scene()
    ground = np.isfinite(truth)
    pred = np.where(ground, truth, 500.0) * 0.4
    aligned = align_to_ground(pred.astype(np.float32), K, R, t, kind="metric")
    np.testing.assert_allclose(aligned[ground], truth[ground], rtol=1e-4)


def test_estimate_depth_aligns_each_frame() -> None:
    _, camera, plate = _shot(n=3, pan=1.0, yaw_deg=10.0)
    scale = iter([3.0, 5.0, 8.0])  # a relative model's scale drifts from frame to frame

    def fake(rgb: np.ndarray) -> np.ndarray:  # the plate's true inverse depth, rescaled
        f = next(i for i in range(3) if np.array_equal(plate.frames[i], rgb))
        inv = 1.0 / plate.background_depth[f]
        return (inv * next(scale) + 0.1).astype(np.float32)

    depth = estimate_depth(fake, plate.frames, camera.K, camera.R, camera.t)
    seen = np.isfinite(plate.background_depth)
    rel = np.abs(depth[seen] - plate.background_depth[seen]) / plate.background_depth[seen]
    # the floor fits, the wall above it follows from the same fit (the trimmed fit drops the wall
    # pixels whose rays would meet the floor behind it)
    assert np.median(rel) < 0.01 and np.percentile(rel, 95) < 0.02
    assert np.isinf(depth[~seen]).all()  # the sky: zero disparity after the shift


def test_no_ground_in_view_cannot_be_aligned() -> None:
    from protocol.cameras import look_at

    K, _, _, truth = _plane_scene()
    R_up, t_up = look_at((0, 1.5, -4), (0, 5, 0))  # looking up into the sky
    with pytest.raises(AlignmentError, match="ground plane y = 0 is not in view"):
        align_to_ground(np.ones(truth.shape, np.float32), K, R_up, t_up)


def test_tiny_inpainting_fills_only_never_seen_pixels(registry: ModelRegistry,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.footage import decompose as module
    from backend.footage.inpaint import removal_mask

    pipe = load.LOADERS["inpainting"](registry=registry, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline" and pipe.unet.config.in_channels == 9
    monkeypatch.setattr(module, "INPAINT_STEPS", 2)  # a tiny random model: steps only cost time
    footage, camera, plate = _shot(n=2, walk=(-0.1, 0.1))  # the person's middle is never seen
    a = decompose(footage, camera, person_masks=plate.mask, inpaint="model", models=registry)
    b = decompose(footage, camera, person_masks=plate.mask, inpaint="propagate")
    assert a.propagated_fraction == b.propagated_fraction < 1.0
    kept = ~removal_mask(plate.mask)
    assert np.array_equal(a.scene[kept], plate.frames[kept])  # only removed pixels change
    differ = (a.scene != b.scene).any(-1)
    never_seen = round(a.removed_pixels * (1 - a.propagated_fraction))
    # The model filled the never-seen pixels (not biharmonic); the propagated ones are the same.
    assert 0 < differ.sum() <= never_seen and not differ[kept].any()
    again = decompose(footage, camera, person_masks=plate.mask, inpaint="model", models=registry)
    assert np.array_equal(again.scene, a.scene)  # seeded


@pytest.mark.parametrize("option, role", [({"segment": True}, "person-segmentation"),
                                          ({"depth_estimator": True}, "depth-estimator"),
                                          ({"inpaint": "model"}, "inpainting")])
def test_missing_role_is_one_error_before_any_work(empty_registry: ModelRegistry, option: dict,
                                                   role: str) -> None:
    footage, camera, plate = _shot(n=2)
    events = []
    with pytest.raises(ModelMissingError) as err:
        masks = None if "segment" in option else plate.mask
        decompose(footage, camera, models=empty_registry, person_masks=masks,
                  progress=lambda *a: events.append(a), **option)
    assert err.value.role == role and ROLES[role].default_hub_id in str(err.value)
    assert f"`avatar-studio models download {role}`" in str(err.value) and "\n" not in str(err.value)
    assert events == []  # nothing was processed
