"""Render passes on analytic meshes: values, conventions, joints visibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from meshes import uv_sphere

from backend.mesh.normals import vertex_normals
from backend.render.camera import CameraBatch
from backend.render.passes import ALL_PASSES, Mesh, render_passes
from protocol.cameras import intrinsics_from_fov, look_at

W, H = 48, 40


def _camera(eye: tuple[float, float, float] = (0.0, 0.0, 4.0), n: int = 1) -> CameraBatch:
    R, t = look_at(eye, (0.0, 0.0, 0.0))
    K = intrinsics_from_fov(40.0, W, H)
    return CameraBatch(np.repeat(K[None], n, 0), np.repeat(R[None], n, 0), np.repeat(t[None], n, 0),
                       W, H, 0.1, 20.0)


def _sphere_mesh() -> Mesh:
    verts, faces = uv_sphere(16, 24, radius=1.0)
    # Spherical UVs per vertex; labels: upper hemisphere 1, lower 2.
    uv = np.column_stack([0.5 + np.arctan2(verts[:, 2], verts[:, 0]) / (2 * np.pi),
                          0.5 + np.arcsin(np.clip(verts[:, 1], -1, 1)) / np.pi])
    return Mesh(
        verts=torch.as_tensor(verts, dtype=torch.float32), faces=torch.as_tensor(faces),
        uv=torch.as_tensor(uv, dtype=torch.float32),
        texture=torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0)),
        part_labels=torch.as_tensor(np.where(verts[:, 1] >= 0, 1, 2)),
    )


def test_all_passes_shapes_and_values() -> None:
    mesh = _sphere_mesh()
    joints = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.5], [5.0, 0.0, 0.0]])
    out = render_passes(mesh, _camera(), joints=joints, visibility_tolerance=1.2)
    m = out.raster.mask[0]
    assert 0.2 < m.float().mean() < 0.9
    assert out.rgb.shape == (1, H, W, 3) and out.alpha.shape == (1, H, W)
    assert torch.equal(out.alpha[0] > 0.5, m)
    assert (out.rgb[0][~m] == 0).all() and (out.rgb[0][m].sum(-1) > 0).all()
    assert torch.isinf(out.depth[0][~m]).all()
    assert out.depth[0][m].min() > 2.99 and out.depth[0][m].max() < 4.0
    n_cam = out.normal_cam[0][m]
    assert torch.allclose(n_cam.norm(dim=-1), torch.ones(1), atol=1e-4)
    assert (n_cam[:, 2] < 0.05).all(), "visible normals face the camera (OpenCV -z)"
    centre = out.normal_cam[0, H // 2, W // 2]
    assert torch.allclose(centre, torch.tensor([0.0, 0.0, -1.0]), atol=0.1)
    # world normal == R^T camera normal
    cams = _camera()
    assert torch.allclose(out.normal_world[0][m], n_cam @ cams.R[0], atol=1e-5)
    assert out.uv.shape == (1, H, W, 2) and (out.uv[0][m] >= 0).all() and (out.uv[0][m] <= 1).all()
    assert torch.equal(out.face_id, out.raster.tri_id)
    assert set(out.part[0][m].unique().tolist()) == {1, 2} and (out.part[0][~m] == -1).all()
    top_label = out.part[0, : H // 2][m[: H // 2]]
    assert (top_label == 1).float().mean() > 0.9, "image top shows the upper (y up) hemisphere"
    vis = out.joints_visible[0].tolist()
    assert vis == [True, True, False], "centre within tolerance, front point visible, far-off point outside"
    assert torch.allclose(out.joints_2d[0, 0], torch.tensor([W / 2, H / 2]), atol=1e-4)


def test_joint_behind_the_surface_is_occluded() -> None:
    mesh = _sphere_mesh()
    joints = torch.tensor([[0.0, 0.0, -1.5], [0.0, 0.0, 0.0]])
    out = render_passes(mesh, _camera(), passes=["joints"], joints=joints, visibility_tolerance=0.3)
    assert out.joints_visible[0].tolist() == [False, False]
    assert out.rgb is None and out.depth is None


def test_texture_orientation_v_up() -> None:
    # A quad in the z=0 plane facing the camera, uv (0,0) at its bottom-left (world y down).
    verts = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tex = torch.zeros(8, 8, 3)
    tex[:4, :, 0] = 1.0  # top rows of the texture image red = v near 1
    tex[4:, :, 2] = 1.0  # bottom rows blue = v near 0
    tex[:, :4, 1] = 1.0  # left half green (u near 0)
    mesh = Mesh(verts=verts, faces=torch.tensor([[0, 1, 2], [0, 2, 3]]), uv=uv, texture=tex)
    out = render_passes(mesh, _camera((0.0, 0.0, 2.0)), passes=["rgb"], shading="none")
    rgb = out.rgb[0]
    assert rgb[H // 2 - 6, W // 2 + 6].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-4)
    assert rgb[H // 2 + 6, W // 2 + 6].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-4)
    assert rgb[H // 2 - 6, W // 2 - 6].tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-4)


def test_face_varying_uv_equals_per_vertex_uv() -> None:
    mesh = _sphere_mesh()
    fv = Mesh(verts=mesh.verts, faces=mesh.faces, uv=mesh.uv, uv_faces=mesh.faces, texture=mesh.texture)
    a = render_passes(mesh, _camera(), passes=["rgb", "uv"])
    b = render_passes(fv, _camera(), passes=["rgb", "uv"])
    assert torch.allclose(a.uv, b.uv, atol=1e-6) and torch.allclose(a.rgb, b.rgb, atol=1e-6)


def test_vertex_colours_and_batch_of_cameras() -> None:
    mesh = _sphere_mesh()
    colours = torch.zeros(mesh.verts.shape[0], 3)
    colours[:, 1] = 1.0
    mesh = Mesh(verts=mesh.verts, faces=mesh.faces, vertex_colors=colours)
    R0, t0 = look_at((0.0, 0.0, 4.0), (0, 0, 0))
    R1, t1 = look_at((4.0, 0.0, 0.0), (0, 0, 0))
    K = intrinsics_from_fov(40.0, W, H)
    cams = CameraBatch(np.stack([K, K]), np.stack([R0, R1]), np.stack([t0, t1]), W, H, 0.1, 20.0)
    out = render_passes(mesh, cams, passes=["rgb"], shading="none", background=(1.0, 0.0, 0.0))
    assert out.rgb.shape == (2, H, W, 3)
    m = out.raster.mask
    assert torch.allclose(out.rgb[m], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    assert torch.allclose(out.rgb[~m], torch.tensor([1.0, 0.0, 0.0]))


def test_smooth_edges_give_fractional_alpha_and_gradients() -> None:
    mesh = _sphere_mesh()
    verts = mesh.verts.clone().requires_grad_(True)
    out = render_passes(Mesh(verts=verts, faces=mesh.faces), _camera(), passes=["rgb", "alpha"],
                        smooth_edges=True)
    frac = (out.alpha > 0.01) & (out.alpha < 0.99)
    assert frac.sum() > 10
    out.alpha.sum().backward()
    assert verts.grad is not None and verts.grad.abs().sum() > 0


def test_vertex_normals_point_outward() -> None:
    verts, faces = uv_sphere(8, 12)
    v = torch.as_tensor(verts, dtype=torch.float32)[None]
    n = vertex_normals(v, torch.as_tensor(faces))
    assert (n[0] * v[0]).sum(-1).min() > 0.9


def test_unknown_pass_rejected() -> None:
    with pytest.raises(ValueError, match="unknown passes"):
        render_passes(_sphere_mesh(), _camera(), passes=["rgb", "albedo"])
    assert "joints" in ALL_PASSES


@pytest.mark.parametrize("variant", ["texture", "vertex_colors", "base_color_flat"])
def test_fused_cpu_path_equals_torch_path(variant: str) -> None:
    mesh = _sphere_mesh()
    if variant == "vertex_colors":
        mesh = Mesh(verts=mesh.verts, faces=mesh.faces, vertex_colors=torch.rand(mesh.verts.shape[0], 3),
                    part_labels=mesh.part_labels)
    elif variant == "base_color_flat":
        mesh = Mesh(verts=mesh.verts, faces=mesh.faces, uv=mesh.uv, uv_faces=mesh.faces)
    R0, t0 = look_at((0.3, 0.5, 4.0), (0, 0, 0))
    R1, t1 = look_at((3.0, -1.0, 2.0), (0, 0, 0))
    K = intrinsics_from_fov(40.0, W, H)
    cams = CameraBatch(np.stack([K, K]), np.stack([R0, R1]), np.stack([t0, t1]), W, H, 0.1, 20.0)
    shading = "none" if variant == "base_color_flat" else "lambert"
    kwargs = dict(passes=ALL_PASSES, shading=shading, background=(0.2, 0.3, 0.4))
    fused = render_passes(mesh, cams, fused=True, **kwargs)
    plain = render_passes(mesh, cams, fused=False, **kwargs)
    for name in ("rgb", "normal_cam", "normal_world", "uv", "alpha"):
        a, b = getattr(fused, name), getattr(plain, name)
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, atol=2e-4), f"{name}: max diff {(a - b).abs().max()}"
    assert torch.equal(fused.depth, plain.depth) and torch.equal(fused.face_id, plain.face_id)
    assert (fused.part != plain.part).float().mean() < 0.005
    with pytest.raises(ValueError, match="fused"):
        render_passes(mesh, cams, fused=True, smooth_edges=True)


def test_fused_path_computes_only_requested_passes() -> None:
    mesh = _sphere_mesh()
    cams = _camera()
    full = render_passes(mesh, cams, passes=ALL_PASSES, background=(0.1, 0.2, 0.3), fused=True)
    for subset in (["rgb"], ["alpha", "part"], ["normal_world", "uv", "depth"]):
        some = render_passes(mesh, cams, passes=subset, background=(0.1, 0.2, 0.3), fused=True)
        for name in ("rgb", "alpha", "depth", "normal_cam", "normal_world", "uv", "face_id", "part"):
            if name in subset:
                assert torch.equal(getattr(some, name), getattr(full, name)), name
            else:
                assert getattr(some, name) is None, name
    assert torch.allclose(full.rgb[~full.raster.mask], torch.tensor([0.1, 0.2, 0.3]))


def test_fused_passes_with_another_rasterizer_equal_the_numba_ones() -> None:
    # The fused path rasterises with any backend and shades afterwards in bands (torch_ref here);
    # with the numba backend it shades inside the raster bands. Same images either way.
    from backend.render import get_rasterizer

    mesh, cams = _sphere_mesh(), _camera()
    numba_out = render_passes(mesh, cams, rasterizer=get_rasterizer("cpu"), fused=True, threads=2)
    ref_out = render_passes(mesh, cams, rasterizer=get_rasterizer("torch_ref"), fused=True, threads=2)
    same = numba_out.face_id == ref_out.face_id
    assert same.float().mean() > 0.999
    for name in ("rgb", "normal_cam", "uv", "alpha"):
        a, b = getattr(numba_out, name)[same], getattr(ref_out, name)[same]
        assert torch.allclose(a, b, atol=1e-5), name


def test_joints_for_another_number_of_images_are_refused() -> None:
    from backend.render.passes import project_joints

    cams = _camera()
    depth = torch.full((len(cams), H, W), float("inf"))
    joints = torch.zeros(len(cams) + 2, 4, 3)
    with pytest.raises(ValueError, match="joints for"):
        project_joints(joints, cams, depth, 0.15)
    xy, z, visible = project_joints(joints[:1], cams, depth, 0.15)
    assert xy.shape == (len(cams), 4, 2) and z.shape == visible.shape == (len(cams), 4)
