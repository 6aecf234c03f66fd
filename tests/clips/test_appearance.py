"""The clip look: SH lighting values, shadows and contact darkening on the ground, backgrounds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.clips.appearance import (
    ambient_at,
    irradiance_coefficients,
    kelvin_rgb,
    project_equirect,
    sample_look,
    sh_basis,
)
from backend.clips.dataset import render_dataset
from backend.clips.read import read_clip
from backend.clips.render import project
from backend.clips.sample import plan_clip
from backend.clips.spec import AppearanceSpec, ClipSpec, SpecError


def _sphere(n: int = 500, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_constant_environment_gives_constant_irradiance() -> None:
    sh = project_equirect(np.full((64, 128, 3), [0.7, 0.5, 0.2]))
    assert np.abs(sh[1:]).max() < 1e-3  # only the constant band
    ambient = ambient_at(irradiance_coefficients(sh), _sphere())
    # E(n) / pi of a constant radiance L is L, for every normal.
    np.testing.assert_allclose(ambient, np.broadcast_to([0.7, 0.5, 0.2], ambient.shape), atol=2e-3)


def test_sh_projection_reproduces_a_band_limited_environment() -> None:
    """An environment made of the 9 basis functions projects back onto its coefficients."""
    coeffs = np.random.default_rng(1).normal(size=(9, 3))
    from backend.clips.appearance import equirect_directions

    dirs, _ = equirect_directions(128, 256)
    image = sh_basis(dirs) @ coeffs
    np.testing.assert_allclose(project_equirect(image), coeffs, atol=2e-3)


def test_sky_above_lights_upward_normals_more() -> None:
    image = np.zeros((32, 64, 3))
    image[:16] = 1.0  # the upper hemisphere only
    amb = ambient_at(irradiance_coefficients(project_equirect(image)),
                     np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    # Exact irradiance / pi: 1 (up), 0.5 (sideways), 0 (down); 2nd-order SH is within ~0.1 of it.
    assert amb[0, 0] == pytest.approx(1.0, abs=0.1)
    assert amb[1, 0] == pytest.approx(0.5, abs=0.02)
    assert amb[2, 0] == pytest.approx(0.0, abs=0.1)


def test_kelvin_colours_go_from_warm_to_cold() -> None:
    warm, day, cold = kelvin_rgb(3000), kelvin_rgb(6600), kelvin_rgb(12000)
    assert warm[0] > warm[2] and cold[2] > cold[0]
    assert abs(day[0] - day[2]) < 0.1
    for c in (warm, day, cold):
        assert float(c @ [0.2126, 0.7152, 0.0722]) == pytest.approx(1.0)


def test_look_is_deterministic_per_clip_and_varies_between_clips() -> None:
    spec = ClipSpec.parse({"clips": 3, "frames": 2, "seed": 4})
    a, b = plan_clip(spec, 0).look, plan_clip(spec, 0).look
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.sh, b.sh)
    assert a.info == b.info
    looks = [plan_clip(spec, i).look for i in range(3)]
    assert len({json.dumps(lk.info["key"], sort_keys=True) for lk in looks if lk is not None}) == 3
    # Same look draws from the same generator state (the look's own stream).
    again = sample_look(AppearanceSpec(), np.random.default_rng(0))
    assert sample_look(AppearanceSpec(), np.random.default_rng(0)).info == again.info


def test_bad_appearance_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"appearance\.environment"):
        ClipSpec.parse({"appearance": {"environment": "nope.hdr"}}, base_dir=tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(SpecError, match=r"appearance\.ground_texture: .*notes\.png"):
        ClipSpec.parse({"appearance": {"ground_texture": "notes.png"}}, base_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match=r"appearance\.backgrounds"):
        ClipSpec.parse({"appearance": {"backgrounds": "empty"}}, base_dir=tmp_path)
    with pytest.raises(SpecError, match="appearance: unknown field"):
        ClipSpec.parse({"appearance": {"sun": 1}})
    with pytest.raises(SpecError, match=r"appearance\.key_elevation_deg"):
        ClipSpec.parse({"appearance": {"key_elevation_deg": [0, 95]}})
    with pytest.raises(SpecError, match="mp4"):
        ClipSpec.parse({"passes": ["depth", "mp4"]})


def _solid_png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


def test_background_image_shows_in_uncovered_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "bg"
    folder.mkdir()
    _solid_png(folder / "a.png", (200, 30, 60))
    spec = ClipSpec.parse({"frames": 1, "width": 64, "height": 48, "seed": 2, "cameras": ["ring:1"],
                           "passes": ["rgb", "instance", "scene_depth"],
                           "appearance": {"backgrounds": "bg", "ground": False}}, base_dir=tmp_path)
    render_dataset(spec, tmp_path / "ds")
    cam = read_clip(tmp_path / "ds", 0).cameras["cam_00"]
    assert cam.rgb is not None and cam.instance is not None
    free = cam.instance[0] == 0
    assert free.sum() > 1000 and (cam.instance[0] > 0).any()
    np.testing.assert_array_equal(np.unique(cam.rgb[0][free].reshape(-1, 3), axis=0), [[200, 30, 60]])
    scene = np.load(tmp_path / "ds/clips/000000/cam_00/scene_depth.npy")
    assert (scene[0][free] == 0).all()  # no ground: nothing behind the people


@pytest.fixture(scope="module")
def lit_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One standing person seen from above, a grey ground, a key light at 40 degrees."""
    root = tmp_path_factory.mktemp("lit")
    _solid_png(root / "grey.png", (128, 128, 128), (8, 8))
    env = np.full((16, 32, 3), 255, np.uint8)
    Image.fromarray(env).save(root / "white.png")
    spec = ClipSpec.parse({
        "frames": 1, "width": 160, "height": 120, "seed": 7, "motion": {"sources": ["a-pose"]},
        "cameras": [{"kind": "ring", "count": 2, "height": [3.0, 3.0], "distance": [2.2, 2.2]}],
        "passes": ["rgb", "depth", "instance", "scene_depth"],
        "appearance": {"environment": "white.png", "ambient": 0.3, "key_intensity": 1.0,
                       "key_elevation_deg": 40, "key_temperature_k": 6600, "ground_texture": "grey.png",
                       "contact": 0.0}}, base_dir=root)
    render_dataset(spec, root / "ds")
    return root / "ds"


def _pixel(cam, point: np.ndarray) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    xy, _ = project(point[None, None], cam.K[:1], cam.R[:1], cam.t[:1])
    return int(xy[0, 0, 1]), int(xy[0, 0, 0])


def test_shadowed_ground_is_darker_than_lit_ground(lit_clip: Path) -> None:
    clip = read_clip(lit_clip, 0)
    key = np.array(clip.info["appearance"]["key"]["direction"])
    chest = clip.people["joints"][0, 0, 9].astype(np.float64)  # spine3
    # The chest's shadow on y = 0 lies along -key; a point as far on the light's side is lit.
    shadowed = chest - key * (chest[1] / key[1])
    across = np.array([shadowed[0] - chest[0], 0.0, shadowed[2] - chest[2]])
    lit = np.array([chest[0], 0.0, chest[2]]) - across
    seen = 0
    for cam in clip.cameras.values():
        ys, xs = _pixel(cam, shadowed)
        yl, xl = _pixel(cam, lit)
        H, W = cam.instance.shape[1:]
        if not (0 <= ys < H and 0 <= xs < W and 0 <= yl < H and 0 <= xl < W):
            continue
        if cam.instance[0, ys, xs] or cam.instance[0, yl, xl]:
            continue  # a person in front of the ground point
        dark, bright = cam.rgb[0, ys, xs].astype(float), cam.rgb[0, yl, xl].astype(float)
        # Lit: 0.5 * (0.3 + 1.0 * sin 40deg) = 0.47; shadowed: 0.5 * 0.3 = 0.15 (PCF edges aside).
        assert dark.mean() < 0.6 * bright.mean(), (dark, bright)
        assert bright.mean() == pytest.approx(255 * 0.502 * (0.3 + math.sin(math.radians(40))), rel=0.05)
        seen += 1
    assert seen >= 1


def test_bodies_are_shadowed_and_ground_has_scene_depth(lit_clip: Path) -> None:
    clip = read_clip(lit_clip, 0)
    for name, cam in clip.cameras.items():
        scene = np.load(lit_clip / "clips/000000" / name / "scene_depth.npy")
        people = cam.instance[0] > 0
        np.testing.assert_array_equal(scene[0][people], cam.depth[0][people])
        assert (cam.depth[0][~people] == 0).all()  # depth.npy holds the people only
        assert (scene[0][~people] > 0).mean() > 0.3  # cameras look down: mostly ground


def test_contact_darkening_under_the_feet(tmp_path: Path) -> None:
    _solid_png(tmp_path / "grey.png", (200, 200, 200), (8, 8))
    base = {"frames": 1, "width": 160, "height": 120, "seed": 11, "motion": {"sources": ["a-pose"]},
            "cameras": [{"kind": "ring", "count": 2, "height": [2.5, 2.5], "distance": [1.6, 1.6]}],
            "passes": ["rgb", "instance"]}
    look = {"ground_texture": "grey.png", "shadows": False, "key_intensity": 0.0}
    for contact in (0.0, 1.0):
        spec = ClipSpec.parse({**base, "appearance": {**look, "contact": contact}}, base_dir=tmp_path)
        render_dataset(spec, tmp_path / f"c{contact}")
    plain, dark = read_clip(tmp_path / "c0.0", 0), read_clip(tmp_path / "c1.0", 0)
    for name in plain.cameras:
        a, b = plain.cameras[name], dark.cameras[name]
        free = a.instance[0] == 0
        diff = a.rgb[0].astype(int).sum(-1) - b.rgb[0].astype(int).sum(-1)
        assert (diff[free] >= 0).all()  # darkening only
        ankle = plain.people["joints"][0, 0, 7].astype(np.float64)
        y, x = _pixel(a, np.array([ankle[0], 0.0, ankle[2]]))
        box = (slice(max(0, y - 12), y + 12), slice(max(0, x - 12), x + 12))
        near = diff[box][free[box]]
        assert near.size and near.max() > 30  # visibly darker around the foot
        ys, xs = np.nonzero(free)
        far = np.hypot(ys - y, xs - x) > 50
        assert diff[ys[far], xs[far]].max() <= 3  # and not far from it


def test_static_ground_image_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shading only the ground the people can darken (the rest copied from the camera's static
    image) gives the same bytes as shading every pixel."""
    from backend.clips import render

    spec = ClipSpec.parse({"clips": 2, "frames": 3, "width": 80, "height": 64, "seed": 6,
                           "people": {"count": [2, 3], "area": 3.0}, "cameras": ["ring:2", "orbit:1"],
                           "passes": ["rgb"]})
    render_dataset(spec, tmp_path / "fast")
    monkeypatch.setattr(render, "dynamic_box", lambda *a: np.array([0, 79, 0, 63], np.int64))
    render_dataset(spec, tmp_path / "full")
    pngs = sorted((tmp_path / "fast").rglob("*.png"))
    assert len(pngs) == 2 * 3 * 3
    full = [tmp_path / "full" / p.relative_to(tmp_path / "fast") for p in pngs]
    assert [p.read_bytes() for p in pngs] == [p.read_bytes() for p in full]
