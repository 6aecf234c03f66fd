"""Masks of generated views and the views folder that ``avatar --views`` reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from generate_helpers import SIZE
from scipy import ndimage

from backend.avatar.io.views import read_views
from backend.generate.masks import refine_mask
from backend.generate.multiview import generate_views
from backend.generate.to_views import NORMALS_STANDIN, generated_view_set, write_generated_views


def _scene(h: int = 64, w: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A white image with a person: the body's silhouette grown by 3 px of clothes, part of the
    shirt near-white, and a coloured blob far off the person."""
    yy, xx = np.mgrid[:h, :w]
    body = ((yy - 32) / 20) ** 2 + ((xx - 32) / 8) ** 2 <= 1
    person = ndimage.binary_dilation(body, iterations=3)
    image = np.ones((h, w, 3), np.float32)
    image[person] = (0.6, 0.2, 0.2)
    image[body & (yy < 30)] = (0.95, 0.95, 0.93)  # a white shirt over the body: kept by the core
    image[2:8, 2:8] = (0.1, 0.5, 0.1)  # a stray object in the background
    return image, body, person


def test_mask_from_the_silhouette_refined_by_colour() -> None:
    image, body, person = _scene()
    mask = refine_mask(image, body)
    iou = (mask & person).sum() / (mask | person).sum()
    assert iou > 0.97, iou
    assert not mask[2:8, 2:8].any()
    # The body's silhouette alone misses the clothes.
    assert (body & person).sum() / (body | person).sum() < 0.8
    assert not refine_mask(image, np.zeros_like(body)).any()
    with pytest.raises(ValueError, match="differ in size"):
        refine_mask(image, body[:10])


def test_generated_views_load_with_the_avatar_reader(tmp_path, tiny_pipe, conditions4) -> None:
    out = generate_views(tiny_pipe, conditions4, "a knight", seed=0, steps=2)
    path = write_generated_views(tmp_path / "views", out.images, conditions4, info=out.info)
    views = read_views(path.parent)
    assert [v.name for v in views.views] == conditions4.names
    assert views.smplx == json.loads(json.dumps(conditions4.smplx)) and len(views.smplx["body_pose"]) == 63
    assert views.has_normals and views.extra["generated"]["normals"] == NORMALS_STANDIN
    assert views.extra["generated"]["seed"] == 0 and views.extra["generated"]["labels"][2] == "back"
    for i, view in enumerate(views.views):
        np.testing.assert_allclose(view.camera.K, conditions4.cameras.K[i])
        np.testing.assert_allclose(view.camera.R, conditions4.cameras.R[i], atol=1e-12)
        assert view.rgba.shape == (SIZE, SIZE, 4)
        np.testing.assert_allclose(view.rgba[..., :3], out.images[i], atol=0.5 / 255 + 1e-6)
        # The mask covers the body (the random model's pixels may or may not add to it).
        assert view.mask[conditions4.mask[i]].mean() > 0.9
        # Stand-in normals: the body's where it is, unit inside the mask.
        on = view.mask & conditions4.mask[i]
        assert (np.einsum("pc,pc->p", view.normal[on], conditions4.normal_world[i][on]) > 0.98).all()


def test_masks_and_normals_can_be_given_or_left_out(conditions4) -> None:
    images = np.full((4, SIZE, SIZE, 3), 255, np.uint8)
    masks = conditions4.mask.copy()
    views = generated_view_set(images, conditions4, masks=masks, normals="none")
    assert all(v.normal is None for v in views.views) and not views.has_normals
    assert all(np.array_equal(v.mask, m) for v, m in zip(views.views, masks, strict=True))
    with pytest.raises(ValueError, match="need"):
        generated_view_set(images[:2], conditions4)
    with pytest.raises(ValueError, match="normals"):
        generated_view_set(images, conditions4, normals="marigold")
