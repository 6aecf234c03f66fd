"""OpenCV cameras (protocol convention) to the rasterizer's clip space, in torch.

Camera space is OpenCV: x right, y down, z forward (metres). Clip space is OpenGL-like with y *up*:
NDC x = -1 is the left image edge, y = +1 the top edge, z in [-1, 1] maps [near, far], and
w = camera z, so the rasterizer's depth (interpolated w) is metric camera depth. A pixel centre
(x + 0.5, y + 0.5) in OpenCV pixels is NDC (2 (x + 0.5) / W - 1, 1 - 2 (y + 0.5) / H).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _as_tensor(value: ArrayLike, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
    tensor = torch.as_tensor(value, device=device)
    if dtype is not None:
        tensor = tensor.to(dtype)
    elif not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


def _fill_projection(proj: Any, K: Any, width: int, height: int, near: float, far: float) -> None:
    """Write the OpenCV-to-clip rows into zeroed (B,4,4) ``proj`` from (B,3,3) ``K``. Plain index
    assignments, so the same code fills a torch tensor (autograd through K) or a numpy array (the
    no-gradient clip path)."""
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    proj[:, 0, 0] = 2.0 * K[:, 0, 0] / width
    proj[:, 0, 1] = 2.0 * K[:, 0, 1] / width
    proj[:, 0, 2] = 2.0 * K[:, 0, 2] / width - 1.0
    # Image y grows downwards, NDC y upwards: negate the row.
    proj[:, 1, 1] = -2.0 * K[:, 1, 1] / height
    proj[:, 1, 2] = 1.0 - 2.0 * K[:, 1, 2] / height
    proj[:, 2, 2] = (far + near) / (far - near)
    proj[:, 2, 3] = -2.0 * far * near / (far - near)
    proj[:, 3, 2] = 1.0


def opencv_to_clip(K: ArrayLike, width: int, height: int, near: float, far: float) -> Tensor:
    """(4,4) (or (B,4,4) for batched K) matrix mapping OpenCV camera points [x, y, z, 1] to clip."""
    K = _as_tensor(K)
    batched = K.dim() == 3
    K = K.reshape(-1, 3, 3)
    proj = torch.zeros(K.shape[0], 4, 4, dtype=K.dtype, device=K.device)
    _fill_projection(proj, K, width, height, near, far)
    return proj if batched else proj[0]


def world_to_camera(verts_world: Tensor, R: ArrayLike, t: ArrayLike) -> Tensor:
    """X_cam = R X_world + t for (B,V,3) or (V,3) points; R (3,3)|(B,3,3), t (3,)|(B,3)."""
    verts = verts_world if verts_world.dim() == 3 else verts_world.unsqueeze(0)
    R = _as_tensor(R, verts.dtype, verts.device).reshape(-1, 3, 3)
    t = _as_tensor(t, verts.dtype, verts.device).reshape(-1, 1, 3)
    return verts @ R.transpose(1, 2) + t


def world_to_clip(verts_world: Tensor, K: ArrayLike, R: ArrayLike, t: ArrayLike, width: int, height: int,
                  near: float, far: float) -> Tensor:
    """Clip-space positions (B,V,4) of world points; batch from the points or from K/R/t."""
    cam = world_to_camera(verts_world, R, t)
    proj = opencv_to_clip(_as_tensor(K, cam.dtype, cam.device), width, height, near, far).reshape(-1, 4, 4)
    ones = torch.ones_like(cam[..., :1])
    return torch.cat((cam, ones), dim=-1) @ proj.transpose(1, 2)


def project_points(points_world: Tensor, K: ArrayLike, R: ArrayLike, t: ArrayLike) -> tuple[Tensor, Tensor]:
    """OpenCV pixel coordinates (B,N,2) (pixel centres at +0.5) and camera depth (B,N) of points."""
    cam = world_to_camera(points_world, R, t)
    K = _as_tensor(K, cam.dtype, cam.device).reshape(-1, 3, 3)
    homog = cam @ K.transpose(1, 2)
    depth = cam[..., 2]
    return homog[..., :2] / depth.unsqueeze(-1), depth


class CameraBatch:
    """B OpenCV cameras sharing an image size and clip range, as torch tensors (float32)."""

    def __init__(self, K: ArrayLike, R: ArrayLike, t: ArrayLike, width: int, height: int, near: float,
                 far: float, device: torch.device | str = "cpu") -> None:
        self.K = _as_tensor(K, torch.float32, device).reshape(-1, 3, 3)
        self.R = _as_tensor(R, torch.float32, device).reshape(-1, 3, 3)
        self.t = _as_tensor(t, torch.float32, device).reshape(-1, 3)
        if not len(self.K) == len(self.R) == len(self.t):
            raise ValueError("K, R, t batch sizes differ")
        self.width, self.height, self.near, self.far = int(width), int(height), float(near), float(far)

    @classmethod
    def from_path(cls, path: object, frames: slice | list[int] | None = None,
                  device: torch.device | str = "cpu") -> CameraBatch:
        """From a ``protocol.cameras.CameraPath`` (any object with its fields), optionally some frames."""
        index = slice(None) if frames is None else frames
        return cls(np.asarray(path.K)[index], np.asarray(path.R)[index], np.asarray(path.t)[index],  # type: ignore[attr-defined]
                   path.width, path.height, path.near, path.far, device)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.K)

    @property
    def resolution(self) -> tuple[int, int]:
        return self.height, self.width

    def clip(self, verts_world: Tensor) -> Tensor:
        """Clip positions (B,V,4) of world points (B,V,3) or (V,3) (then shared by all cameras).

        One batched affine map (projection times [R|t]) instead of the camera-space step,
        homogeneous padding and projection of :func:`world_to_clip` (five passes over the points).
        Differentiable w.r.t. the points and the camera tensors when they require grad; otherwise,
        on the CPU, computed in numpy (float64, rounded to the points' dtype): small torch ops wake
        torch's thread pool, whose spinning threads then take the core from the renderer's own
        helper thread (measured: the CPU render went from ~4 to ~8 ms per frame).
        """
        verts = verts_world.to(self.K.dtype) if verts_world.dtype != torch.float64 else verts_world
        needs_grad = torch.is_grad_enabled() and any(
            x.requires_grad for x in (verts, self.K, self.R, self.t))
        if verts.device.type == "cpu" and not needs_grad:
            return torch.from_numpy(self._clip_numpy(verts.numpy()))
        proj = opencv_to_clip(self.K, self.width, self.height, self.near, self.far).to(verts.dtype)
        rigid = torch.cat((self.R, self.t.unsqueeze(2)), dim=2).to(verts.dtype)  # (B,3,4)
        full = proj[:, :, :3] @ rigid  # (B,4,4): the projection's last column multiplies w = 1
        full = full + torch.nn.functional.pad(proj[:, :, 3:], (3, 0))
        # (V,3) or (B,V,3) points against (B,3,4): matmul broadcasts the batch either way (and
        # measured 2x faster than addmm/baddbmm for this shape).
        return verts @ full[:, :, :3].transpose(1, 2) + full[:, :, 3].unsqueeze(1)

    def _clip_numpy(self, verts: np.ndarray) -> np.ndarray:
        proj = np.zeros((len(self), 4, 4))
        _fill_projection(proj, self.K.detach().numpy().astype(np.float64), self.width, self.height,
                         self.near, self.far)
        rigid = np.zeros((len(self), 4, 4))
        rigid[:, :3, :3] = self.R.detach().numpy()
        rigid[:, :3, 3] = self.t.detach().numpy()
        rigid[:, 3, 3] = 1.0
        points = verts if verts.ndim == 3 else verts[None]
        out = np.empty((max(len(self), points.shape[0]), points.shape[1], 4), dtype=verts.dtype)
        _affine_points(np.ascontiguousarray(points), np.ascontiguousarray(proj @ rigid), out)
        return out


@numba.njit(cache=True, nogil=True)
def _affine_points(points: np.ndarray, matrices: np.ndarray, out: np.ndarray) -> None:
    """out[b, v] = matrices[b] @ [points[b or 0, v], 1], accumulated in float64.

    numba rather than numpy: numpy's matmul with an inner size of 3 took ~0.15 ms for the body's
    10k vertices (a tenth of a rendered frame); this loop takes ~0.02 ms.
    """
    for b in range(out.shape[0]):
        pb = b if points.shape[0] > 1 else 0
        mb = b if matrices.shape[0] > 1 else 0
        m = matrices[mb]
        for v in range(points.shape[1]):
            x = np.float64(points[pb, v, 0])
            y = np.float64(points[pb, v, 1])
            z = np.float64(points[pb, v, 2])
            for r in range(4):
                out[b, v, r] = m[r, 0] * x + m[r, 1] * y + m[r, 2] * z + m[r, 3]
