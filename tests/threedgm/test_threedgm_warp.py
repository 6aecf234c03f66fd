"""Inverse LBS maps the posed stand-in body back to its rest pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.body.loading import load_body_model
from backend.body.model import BodyParams
from backend.threedgm.body import PARAM_KEYS, BodyTemplate, farthest_point_subset
from backend.threedgm.warp import blend_inverse, inverse_lbs, nearest_vertex


@pytest.fixture(scope="module")
def posed(clips_dir):
    from backend.clips.read import read_clip

    model = load_body_model("neutral")
    clip = read_clip(clips_dir, 1, images=False)  # the "wave" clip: arms away from the rest pose
    params = {k: clip.people[k][0, 1] for k in PARAM_KEYS}
    params["betas"] = clip.people["betas"][0]
    template = BodyTemplate(model, 2048)
    body = template.pose(params)
    p = BodyParams.from_arrays({k: (v[None] if k != "betas" else v) for k, v in params.items()}, n_frames=1)
    out = model(p)
    return template, body, out


def test_subset_vertices_warp_back_to_rest_within_the_correctives(posed) -> None:
    template, body, _ = posed
    canon, dist = inverse_lbs(body.verts[None], body.verts[None], template.weights, body.transforms[None])
    err = (canon[0] - body.rest_verts).norm(dim=-1)
    assert dist.max() < 1e-5  # each point is its own nearest vertex
    # what remains is SMPL-X's pose correctives (the warp is LBS without them): millimetres
    assert err.mean() < 0.002 and err.max() < 0.01


def test_whole_posed_body_warps_back_to_rest(posed) -> None:
    template, body, out = posed
    full = out.vertices[0].float()
    canon, dist = inverse_lbs(full[None], body.verts[None], template.weights, body.transforms[None])
    err = (canon[0] - out.rest_vertices.float()).norm(dim=-1)
    assert (full - out.rest_vertices).norm(dim=-1).mean() > 0.5  # the pose moved the body far
    # a vertex borrowing a neighbouring subset vertex's weights: small error, except where two parts
    # touch (fingers, a hand at the hip), the known limit of nearest-vertex inverse LBS
    assert err.mean() < 0.006
    assert (err < 0.02).float().mean() > 0.97
    assert dist.max() < 0.06


def test_inverse_of_forward_lbs_is_exact() -> None:
    torch.manual_seed(0)
    J, V = 5, 40
    weights = torch.softmax(torch.randn(V, J) * 3, dim=1)
    axis = torch.randn(J, 3) * 0.5
    rot = torch.linalg.matrix_exp(
        torch.cross(torch.eye(3)[None].expand(J, 3, 3), axis[:, None].expand(J, 3, 3), dim=-1)
    )
    transforms = torch.cat([rot, torch.randn(J, 3, 1)], dim=-1)[None]
    rest = torch.randn(1, V, 3)
    blended = (weights @ transforms.reshape(1, J, 12)).reshape(1, V, 3, 4)
    posed_pts = (blended[..., :3] @ rest[..., None])[..., 0] + blended[..., 3]
    canon, _ = inverse_lbs(posed_pts, posed_pts, weights, transforms)
    torch.testing.assert_close(canon, rest, rtol=0, atol=1e-4)
    inv = blend_inverse(weights, transforms)
    eye = inv[..., :3] @ blended[..., :3]
    torch.testing.assert_close(eye, torch.eye(3).expand_as(eye), rtol=0, atol=1e-4)


def test_nearest_vertex_chunks_agree() -> None:
    torch.manual_seed(0)
    pts, verts = torch.randn(2, 100, 3), torch.randn(2, 30, 3)
    i1, d1 = nearest_vertex(pts, verts, chunk=7)
    i2, d2 = nearest_vertex(pts, verts, chunk=1000)
    assert torch.equal(i1, i2) and torch.allclose(d1, d2)
    brute = (pts[:, :, None] - verts[:, None]).norm(dim=-1).min(-1)
    assert torch.equal(i1, brute.indices)


def test_farthest_point_subset_covers_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3))
    a = farthest_point_subset(pts, 50)
    assert np.array_equal(a, farthest_point_subset(pts, 50)) and len(np.unique(a)) == 50
    assert np.array_equal(farthest_point_subset(pts, 600), np.arange(500))
