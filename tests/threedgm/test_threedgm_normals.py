"""Normal maps of the 3DGM's density: analytic spheres (through the plain volume renderer and
through the whole generator with its warp), the sampled views' normals the avatar pipeline reads,
and ground-truth pairs from a clips dataset with the normal pass that ``avatar-studio eval`` scores."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backend.avatar.geometry.sculpt import SculptConfig, resolve_normal_source
from backend.avatar.io.views import read_views
from backend.threedgm.config import TINY
from backend.threedgm.generator import BodyBatch, Generator
from backend.threedgm.normals import field_normals, generator_normals, to_camera
from backend.threedgm.volume import ray_grid

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
K = torch.tensor([[[80.0, 0, 32], [0, 80, 32], [0, 0, 1]]])


def _analytic(R: torch.Tensor, t: torch.Tensor, centre: torch.Tensor, radius: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ray of the SIZE² grid: hit (M,), the sphere's outward normal at the first hit (M,3), the
    ray direction (M,3) and the ray's closest distance to the centre (M,)."""
    o, d = ray_grid(K, R, t, torch.tensor([[0.0, 0, SIZE, SIZE]]), SIZE)
    oc = o[0] - centre
    b = (oc * d[0]).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    depth = -b - disc.clamp(min=0).sqrt()
    normal = (o[0] + d[0] * depth[:, None] - centre) / radius
    return disc > 0, normal, d[0], ((oc * oc).sum(-1) - b * b).clamp(min=0).sqrt()


def _angles(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((pred * truth).sum(-1).clamp(-1, 1)))


def _check_sphere(normals: torch.Tensor, sphere: tuple[torch.Tensor, ...], radius: float, mean_max: float,
                  front_max: float) -> None:
    hit, truth, dirs, closest = sphere
    n = normals[0].permute(1, 2, 0).reshape(-1, 3)
    has = n.norm(dim=-1) > 0
    # every ray that meets the sphere has a normal, no ray that misses it by more than its soft edge has
    assert bool(has[hit].all())
    assert float(torch.cat([closest[has & ~hit], torch.zeros(1)]).max()) < radius + 0.03
    torch.testing.assert_close(n[has].norm(dim=-1), torch.ones(int(has.sum())), atol=1e-4, rtol=0)
    errors = _angles(n[hit], truth[hit])
    front = (-(truth[hit] * dirs[hit]).sum(-1)) > 0.5  # not grazing (< 60 degrees from the ray)
    assert float(errors.mean()) < mean_max, float(errors.mean())
    assert float(errors[front].max()) < front_max, float(errors[front].max())


def test_normals_of_an_analytic_sphere_match_its_radial_normals() -> None:
    centre, radius = torch.tensor([0.1, 0.2, -0.1]), 0.5

    def density(p: torch.Tensor) -> torch.Tensor:  # a sphere with a ~1 cm soft edge, 300 /m inside
        return 300 * torch.sigmoid((radius - (p - centre).norm(dim=-1)) / 0.003)

    R = torch.eye(3)[None]
    t = (torch.tensor([0.0, 0.0, 3.0]) - centre)[None]
    nm = field_normals(density, K, R, t, centre, 0.8, 64, SIZE, SIZE)
    sphere = _analytic(R, t, centre, radius)
    hit, _, dirs, _ = sphere
    _check_sphere(nm.normals, sphere, radius, mean_max=4.0, front_max=5.0)
    # the expected depth of the opaque part is the sphere's surface (within a sample spacing)
    depth = nm.depth[0, 0].reshape(-1)
    o = -(R[0].T @ t[0])
    surface = (o + dirs * depth[:, None] - centre).norm(dim=-1)
    assert float((surface[hit] - radius).abs().median()) < 0.02


R0 = 0.4  # the triplane sphere's radius (m)


class SphereDecoder(nn.Module):
    """Channel 0 of the planes holds u² + v² (their mean is 2|c|²/3), channel 1 is 1 inside the box:
    a sharp sphere of radius R0 around the canonical centre, empty outside the box."""

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = 3000.0 * (R0**2 * f[..., 1] - 1.5 * f[..., 0]) - 1000.0 * (1 - f[..., 1])
        return raw, torch.zeros(*f.shape[:-1], TINY.generator.feature_dim)


def _rotation(axis: tuple[float, float, float], degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    x, y, z = torch.nn.functional.normalize(torch.tensor(axis), dim=0).tolist()
    k = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0.0]])
    return torch.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


@pytest.mark.parametrize(("samples", "importance", "mean_max"), [(64, 0, 3.0), (16, 32, 3.0), (16, 0, 6.0)])
def test_generator_normals_of_a_triplane_sphere_carry_the_warp(samples: int, importance: int,
                                                               mean_max: float) -> None:
    cfg = replace(TINY.generator, shell=100.0, patches=(), plane_res=64, samples=samples,
                  samples_importance=importance, ray_half_depth=0.6)
    nv = 64
    weights = torch.zeros(nv, 55)
    weights[:, 0], weights[:, 3] = 0.7, 0.3
    G = Generator(cfg, weights, torch.zeros(nv, dtype=torch.long), ("body",)).requires_grad_(False)
    G.decoder = SphereDecoder()
    texel = (torch.arange(64) + 0.5) / 64 * 2 - 1
    planes = torch.zeros(1, 3, cfg.plane_channels, 64, 64)
    planes[0, :, 0] = texel[None, :] ** 2 + texel[:, None] ** 2
    planes[0, :, 1] = 1.0
    # every joint moves rigidly (70 degrees about a tilted axis and shifted): a wrong warp Jacobian
    # would turn the normals by that rotation, the sphere's silhouette would not change
    rigid, shift = _rotation((0.0, 0.6, 0.8), 70.0), torch.tensor([0.3, 1.0, -0.5])
    transforms = torch.cat([rigid, shift[:, None]], 1)[None, None].expand(1, 55, 3, 4).contiguous()
    centre = rigid @ G.centre + shift
    on_sphere = torch.randn(nv, 3, generator=torch.Generator().manual_seed(0))
    verts = centre + R0 * torch.nn.functional.normalize(on_sphere, dim=-1)
    body = BodyBatch(verts[None], transforms, centre[None])
    R = torch.eye(3)[None]
    t = (torch.tensor([0.0, 0.0, 2.5]) - centre)[None]
    nm = generator_normals(G, planes, K, R, t, body, SIZE, box=torch.tensor([[0.0, 0, SIZE, SIZE]]))
    sphere = _analytic(R, t, centre, R0)
    hit = sphere[0]
    _check_sphere(nm.normals, sphere, R0, mean_max=mean_max, front_max=2 * mean_max)
    # camera axes: the visible surface faces the camera (n_z < 0 in OpenCV axes)
    cam = to_camera(nm.normals, R)[0, 2].reshape(-1)
    assert bool((cam[hit] < 0.05).all())


# ---- sampled views and evaluation against the clips' ground truth ------------------------------------
@pytest.fixture(scope="module")
def run(tiny_run: Path):
    from backend.threedgm.sample import load_run

    return load_run(tiny_run)


def test_sampled_views_carry_normals_the_avatar_pipeline_reads(run, tmp_path: Path) -> None:
    from backend.threedgm.sample import sample_avatar, views_from_sample

    s = sample_avatar(run, seed=3, views=2)
    size = run.G.cfg.out_res
    assert s.normals is not None and s.normals.shape == (2, 3, size, size)
    views = read_views(views_from_sample(s, tmp_path / "views", size=128))
    assert views.has_normals and resolve_normal_source(views.views, SculptConfig()) == "views"
    for view, (_, R, _) in zip(views.views, s.cameras, strict=True):
        inside = view.mask
        assert inside.sum() > 20
        n = view.normal[inside]
        # unit vectors (the PNG's 8 bits) wherever the silhouette is, facing the camera on the whole
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-3)
        facing = (n @ R.T)[:, 2]  # camera axes: towards the camera is -z
        assert float(np.mean(facing < 0)) > 0.6, float(np.mean(facing < 0))
    # no normals asked: none written, the pipeline falls back as before
    plain = sample_avatar(run, seed=3, views=1, normal_res=0)
    assert plain.normals is None
    assert not read_views(views_from_sample(plain, tmp_path / "plain", size=32)).has_normals


@pytest.fixture(scope="module")
def normals_data(tmp_path_factory: pytest.TempPathFactory):
    """One clip, one frame, 2 cameras at 64x64 with the normal pass, read at the tiny size."""
    from backend.clips.dataset import render_dataset
    from backend.clips.spec import ClipSpec
    from backend.threedgm.dataset import ClipsDataset

    out = tmp_path_factory.mktemp("threedgm-normals") / "ds"
    spec = {"clips": 1, "frames": 1, "width": 64, "height": 64, "seed": 2, "people": {"count": [1, 1]},
            "motion": {"sources": ["walk"]}, "cameras": ["ring:2"], "passes": ["rgb", "instance", "normal"]}
    render_dataset(ClipSpec.parse(spec), out)
    return ClipsDataset(out, TINY.generator.out_res, TINY.generator.warp_vertices)


def test_ground_truth_normals_are_cropped_with_the_image(normals_data) -> None:
    from backend.metrics.threedgm_normals import ground_truth_normals

    for i in range(len(normals_data)):
        n, keep = ground_truth_normals(normals_data, i)
        mask = normals_data[i]["mask"][0] > 0.5
        iou = float((keep & mask).sum() / (keep | mask).sum())
        assert iou > 0.9, iou
        np.testing.assert_allclose(n[:, keep].norm(dim=0).numpy(), 1.0, atol=1e-3)
        assert float((n[2, keep] < 0).float().mean()) > 0.9  # camera axes: the visible surface faces it


def test_normal_sets_are_scored_by_the_eval_command(run, normals_data, tmp_path: Path) -> None:
    from backend.metrics.threedgm_normals import main, write_normal_sets

    dirs = write_normal_sets(run.G, normals_data, tmp_path / "n", count=4)
    assert sorted(p.name for p in dirs["pred"].iterdir()) == sorted(p.name for p in dirs["gt"].iterdir())
    env = {**os.environ, "AVATAR_STUDIO_DATA_DIR": str(tmp_path / "data")}
    env.pop("AVATAR_STUDIO_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "backend", "eval", "--normals", str(dirs["pred"]),
                           str(dirs["gt"]), "--json"], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)["normals"]
    assert scores["images"] == len(normals_data) and scores["pixels"] > 50
    assert 0 < scores["mean_deg"] < 120 and 0 <= scores["within_30"] <= 100
    # the ground truth against itself: 0 degrees (the pairs line up by name)
    proc = subprocess.run([sys.executable, "-m", "backend", "eval", "--normals", str(dirs["gt"]),
                           str(dirs["gt"]), "--json"], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=600)
    assert json.loads(proc.stdout)["normals"]["mean_deg"] < 0.1
    # the module's own entry: writes and scores in one go
    assert main(["--run", str(run.folder), "--data", str(normals_data.root), "--out", str(tmp_path / "m"),
                 "--count", "2"]) == 0


def test_a_dataset_without_normals_is_a_clear_error(run, data, tmp_path: Path, capsys) -> None:
    from backend.metrics.threedgm_normals import NormalDataError, main, write_normal_sets

    with pytest.raises(NormalDataError, match="normal pass"):
        write_normal_sets(run.G, data, tmp_path / "n", count=2)
    assert main(["--run", str(run.folder), "--data", str(data.root), "--out", str(tmp_path / "m")]) == 2
    assert "normal pass" in capsys.readouterr().err
