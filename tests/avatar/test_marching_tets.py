import numpy as np
import pytest
import torch

from backend.avatar.geometry.marching_tets import marching_tets
from backend.avatar.geometry.tetgrid import make_tet_grid


def _edges_shared_twice(faces: torch.Tensor) -> bool:
    e = torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), dim=1)[0]
    _, counts = torch.unique(e, dim=0, return_counts=True)
    return bool((counts == 2).all())


def test_grid_is_conforming_and_covers_box():
    g = make_tet_grid(np.array([-1.0, -2.0, -0.5]), np.array([1.0, 2.0, 0.5]), 16)
    assert g.shape == (8, 16, 4)
    assert g.tets.shape == (6 * 8 * 16 * 4, 4)
    tv = g.vertices[g.tets]
    vol = (
        np.abs(np.einsum("ij,ij->i", np.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0]), tv[:, 3] - tv[:, 0]))
        / 6
    )
    assert vol.min() > 0
    assert vol.sum() == pytest.approx(2 * 4 * 1, rel=1e-5)  # tets tile the box exactly


def test_sphere_is_closed_outward_and_accurate():
    g = make_tet_grid(np.array([-1, -1, -1.0]), np.array([1, 1, 1.0]), 32)
    v = torch.as_tensor(g.vertices)
    sdf = v.norm(dim=1) - 0.7
    mv, mf = marching_tets(v, sdf, torch.as_tensor(g.tets))
    assert _edges_shared_twice(mf)
    e = torch.unique(torch.sort(torch.cat([mf[:, [0, 1]], mf[:, [1, 2]], mf[:, [2, 0]]]), dim=1)[0], dim=0)
    assert mv.shape[0] - e.shape[0] + mf.shape[0] == 2  # genus 0
    p = mv[mf]
    volume = (torch.linalg.cross(p[:, 0], p[:, 1]) * p[:, 2]).sum() / 6
    assert volume.item() == pytest.approx(4 / 3 * np.pi * 0.7**3, rel=0.02)  # positive: normals point out
    assert (mv.norm(dim=1) - 0.7).abs().max() < 0.01


def test_gradients_reach_sdf_and_positions():
    g = make_tet_grid(np.array([-1, -1, -1.0]), np.array([1, 1, 1.0]), 8)
    v = torch.as_tensor(g.vertices).clone().requires_grad_(True)
    sdf = (v.detach().norm(dim=1) - 0.6).clone().requires_grad_(True)
    mv, _ = marching_tets(v, sdf, torch.as_tensor(g.tets))
    mv.norm(dim=1).sum().backward()
    assert sdf.grad is not None and sdf.grad.abs().sum() > 0
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_empty_when_no_surface():
    g = make_tet_grid(np.array([-1, -1, -1.0]), np.array([1, 1, 1.0]), 4)
    v = torch.as_tensor(g.vertices)
    mv, mf = marching_tets(v, torch.ones(len(v)), torch.as_tensor(g.tets))
    assert mv.shape == (0, 3) and mf.shape == (0, 3)
