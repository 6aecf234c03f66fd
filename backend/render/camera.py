"""OpenCV cameras (protocol convention) to the rasterizer's clip space, in torch.

Camera space is OpenCV: x right, y down, z forward (metres). Clip space is OpenGL-like with y *up*:
NDC x = -1 is the left image edge, y = +1 the top edge, z in [-1, 1] maps [near, far], and
w = camera z, so the rasterizer's depth (interpolated w) is metric camera depth. A pixel centre
(x + 0.5, y + 0.5) in OpenCV pixels is NDC (2 (x + 0.5) / W - 1, 1 - 2 (y + 0.5) / H).
"""

from __future__ import annotations

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


def opencv_to_clip(K: ArrayLike, width: int, height: int, near: float, far: float) -> Tensor:
    """(4,4) (or (B,4,4) for batched K) matrix mapping OpenCV camera points [x, y, z, 1] to clip."""
    K = _as_tensor(K)
    batched = K.dim() == 3
    K = K.reshape(-1, 3, 3)
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    fx, skew, cx = K[:, 0, 0], K[:, 0, 1], K[:, 0, 2]
    fy, cy = K[:, 1, 1], K[:, 1, 2]
    proj = torch.zeros(K.shape[0], 4, 4, dtype=K.dtype, device=K.device)
    proj[:, 0, 0] = 2.0 * fx / width
    proj[:, 0, 1] = 2.0 * skew / width
    proj[:, 0, 2] = 2.0 * cx / width - 1.0
    # Image y grows downwards, NDC y upwards: negate the row.
    proj[:, 1, 1] = -2.0 * fy / height
    proj[:, 1, 2] = 1.0 - 2.0 * cy / height
    proj[:, 2, 2] = (far + near) / (far - near)
    proj[:, 2, 3] = -2.0 * far * near / (far - near)
    proj[:, 3, 2] = 1.0
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
        """Clip positions (B,V,4) of world points (B,V,3) or (V,3) (then shared by all cameras)."""
        verts = verts_world.to(self.K.dtype) if verts_world.dtype != torch.float64 else verts_world
        if verts.dim() == 2:
            verts = verts.unsqueeze(0).expand(len(self), -1, -1)
        return world_to_clip(verts, self.K, self.R, self.t, self.width, self.height, self.near, self.far)
