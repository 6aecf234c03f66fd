"""Camera paths in the protocol's convention, and the one Blender <-> protocol conversion.

Protocol convention (docs/protocol.md, "Coordinate conventions"): world right-handed, Y up, metres;
cameras OpenCV (x right, y down, looking down +z), world-to-camera ``X_cam = R X_world + t``,
intrinsics K in pixels with pixel (0, 0)'s top-left corner at (0, 0), so its centre is (0.5, 0.5).

Blender: world Z up; a camera object looks down its local -Z with local +Y up in the image; its
intrinsics come from lens (mm), sensor size and fit, shift, render resolution, pixel aspect and
resolution percentage. The formulas below follow Blender's view-plane computation
(``BKE_camera_params_compute_viewplane``): the "view factor" is the number of horizontal pixel
units the sensor spans (``width`` for horizontal fit, ``pixel_aspect * height`` for vertical fit),
and shifts are fractions of that view factor. They are checked against real bpy in
``tests/blender/test_cameras_blender.py``.

Pure numpy: imported by the Blender add-on (no torch, no bpy here; the add-on reads bpy fields and
passes plain numbers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .axes import Y_UP_FROM_Z_UP, Z_UP_FROM_Y_UP, y_up_to_z_up, z_up_to_y_up

SensorFit = Literal["AUTO", "HORIZONTAL", "VERTICAL"]

# Blender's world is Z up: its axes convention is the one in protocol/axes.py.
BLENDER_TO_PROTOCOL = Y_UP_FROM_Z_UP
PROTOCOL_TO_BLENDER = Z_UP_FROM_Y_UP
# Blender camera axes (x right, y up, looking -z)  ->  OpenCV camera axes (x right, y down, +z).
_BLENDER_CAM_TO_OPENCV = np.diag([1.0, -1.0, -1.0])

# Blender world points (...,3) (Z up) to protocol world points (Y up), and back.
blender_to_protocol_points = z_up_to_y_up
protocol_to_blender_points = y_up_to_z_up


@dataclass
class CameraPath:
    """Per-frame pinhole cameras: ``K`` (F,3,3), ``R`` (F,3,3), ``t`` (F,3), shared image size/clip."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    near: float = 0.1
    far: float = 100.0
    frame_start: int = 1
    fps: float = 30.0
    names: list[str] | None = None

    def __post_init__(self) -> None:
        self.K = np.array(self.K, dtype=np.float64).reshape(-1, 3, 3)
        self.R = np.array(self.R, dtype=np.float64).reshape(-1, 3, 3)
        self.t = np.array(self.t, dtype=np.float64).reshape(-1, 3)
        n = len(self.K)
        if len(self.R) != n or len(self.t) != n or n == 0:
            raise ValueError(f"K, R, t must have the same number of frames > 0, got {len(self.K)}, "
                             f"{len(self.R)}, {len(self.t)}")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        self.near, self.far, self.fps = float(self.near), float(self.far), float(self.fps)
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for name, arr in (("K", self.K), ("R", self.R), ("t", self.t)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has non-finite values")
        # Rotations must be proper: the renderer and Blender assume a right-handed rigid camera.
        ortho = np.abs(self.R @ self.R.transpose(0, 2, 1) - np.eye(3)).max()
        if ortho > 1e-6 or (np.linalg.det(self.R) < 0).any():
            raise ValueError(f"R must be rotation matrices (orthonormality error {ortho:.2e})")
        self.frame_start = int(self.frame_start)
        if self.names is not None:
            self.names = [str(s) for s in self.names]
            if len(self.names) != n:
                raise ValueError(f"{len(self.names)} names for {n} frames")

    def __len__(self) -> int:
        return len(self.K)

    def subset(self, index: slice | Sequence[int] | np.ndarray) -> CameraPath:
        """Frames selected by a slice or index list (names follow)."""
        idx = np.arange(len(self))[index]
        names = [self.names[i] for i in idx] if self.names is not None else None
        return CameraPath(self.K[idx], self.R[idx], self.t[idx], self.width, self.height, self.near,
                          self.far, self.frame_start + int(idx[0]) if len(idx) else self.frame_start,
                          self.fps, names)

    def frame(self, index: int) -> CameraFrame:
        """Frame ``index`` as one camera (its name follows)."""
        return CameraFrame.of(self, index)

    def centers(self) -> np.ndarray:
        """Camera centres (F,3) in world coordinates: C = -R^T t."""
        return -np.einsum("fji,fj->fi", self.R, self.t)

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (F,N,2) and camera depth (F,N) of world points (N,3)."""
        cam = np.einsum("fij,nj->fni", self.R, np.asarray(points_world, dtype=np.float64)) + self.t[:, None]
        homog = np.einsum("fij,fnj->fni", self.K, cam)
        return homog[..., :2] / homog[..., 2:3], cam[..., 2]

    def to_payload(self) -> dict[str, Any]:
        """The protocol payload: numpy arrays (sent as buffers) and plain scalars."""
        payload: dict[str, Any] = {
            "K": self.K.copy(), "R": self.R.copy(), "t": self.t.copy(),
            "width": self.width, "height": self.height, "near": self.near, "far": self.far,
            "frame_start": self.frame_start, "fps": self.fps,
        }
        if self.names is not None:
            payload["names"] = list(self.names)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CameraPath:
        """Build from a payload dict (arrays or nested lists, e.g. from JSON); ValueError if invalid."""
        missing = [k for k in ("K", "R", "t", "width", "height") if k not in payload]
        if missing:
            raise ValueError(f"camera path payload lacks {', '.join(missing)}")
        try:
            return cls(
                K=np.asarray(payload["K"], dtype=np.float64), R=np.asarray(payload["R"], dtype=np.float64),
                t=np.asarray(payload["t"], dtype=np.float64), width=payload["width"],
                height=payload["height"], near=payload.get("near", 0.1), far=payload.get("far", 100.0),
                frame_start=payload.get("frame_start", 1), fps=payload.get("fps", 30.0),
                names=payload.get("names"),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid camera path payload: {exc}") from exc

    def to_json(self) -> str:
        payload = self.to_payload()
        for key in ("K", "R", "t"):
            payload[key] = payload[key].tolist()
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str) -> CameraPath:
        return cls.from_payload(json.loads(text))


class CameraFrame:
    """One frame of a :class:`CameraPath`: ``K`` (3,3), ``R`` (3,3) world-to-camera, ``t`` (3,).

    What ``path.frame(i)`` returns: a view of its own one-frame path, so a single camera has
    the path's fields, rules and payload and no convention of its own. Made directly from the
    fields, it is checked as that one-frame path.
    """

    __slots__ = ("_path",)

    def __init__(self, K: Any, R: Any, t: Any, width: int, height: int, near: float = 0.1, far: float = 100.0,
                 name: str | None = None) -> None:
        self._path = CameraPath(K, R, t, width, height, near, far, names=None if name is None else [name])

    @classmethod
    def of(cls, path: CameraPath, index: int) -> CameraFrame:
        """Frame ``index`` of ``path`` (a copy: changing one never changes the other)."""
        frame = cls.__new__(cls)
        frame._path = path.subset([range(len(path))[index]])  # IndexError outside, negative from the end
        return frame

    def as_path(self) -> CameraPath:
        """This camera as a one-frame path (shared, not copied)."""
        return self._path

    K = property(lambda self: self._path.K[0], doc="(3,3) intrinsics in pixels")
    R = property(lambda self: self._path.R[0], doc="(3,3) world-to-camera rotation")
    t = property(lambda self: self._path.t[0], doc="(3,) world-to-camera translation")
    width = property(lambda self: self._path.width)
    height = property(lambda self: self._path.height)
    near = property(lambda self: self._path.near)
    far = property(lambda self: self._path.far)
    name = property(lambda self: self._path.names[0] if self._path.names is not None else None)

    @property
    def centre(self) -> np.ndarray:
        """Camera centre (3,) in world coordinates: C = -R^T t."""
        return -self.R.T @ self.t

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N,2) and camera depth (N,) of world points (N,3)."""
        pixels, depth = self._path.project(points_world)
        return pixels[0], depth[0]

    def to_payload(self) -> dict[str, Any]:
        """One frame's payload fields: ``K`` (3,3), ``R`` (3,3), ``t`` (3,), size and clip range."""
        return {"K": self.K.copy(), "R": self.R.copy(), "t": self.t.copy(), "width": self.width,
                "height": self.height, "near": self.near, "far": self.far}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CameraFrame:
        """From one frame's fields (as :meth:`to_payload`, arrays or nested lists); ValueError if invalid."""
        path = CameraPath.from_payload(payload)
        if len(path) != 1:
            raise ValueError(f"a single camera has one frame, got {len(path)}")
        return CameraFrame.of(path, 0)


# --------------------------------------------------------------------------- Blender cameras


@dataclass
class BlenderCamera:
    """The Blender fields that define a camera's projection, as plain numbers.

    ``matrix_world`` is the camera object's 4x4 world matrix in Blender's Z-up world (scale is
    ignored, as Blender does for projection). Field names match ``bpy`` (``Camera`` data and
    ``RenderSettings``) so the add-on copies them one to one.
    """

    lens: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: SensorFit = "AUTO"
    shift_x: float = 0.0
    shift_y: float = 0.0
    clip_start: float = 0.1
    clip_end: float = 100.0
    resolution_x: int = 1920
    resolution_y: int = 1080
    resolution_percentage: int = 100
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    matrix_world: np.ndarray = field(default_factory=lambda: np.eye(4))

    def image_size(self) -> tuple[int, int]:
        """Rendered (width, height): Blender scales with integer arithmetic."""
        return (self.resolution_x * self.resolution_percentage // 100,
                self.resolution_y * self.resolution_percentage // 100)


def _fit_and_view_factor(cam: BlenderCamera, width: int, height: int) -> tuple[float, float, float]:
    """(sensor size mm, view factor in horizontal pixel units, pixel aspect y/x) as Blender computes."""
    ycor = cam.pixel_aspect_y / cam.pixel_aspect_x
    fit = cam.sensor_fit
    if fit == "AUTO":
        sensor = cam.sensor_width
        fit = "HORIZONTAL" if cam.pixel_aspect_x * width >= cam.pixel_aspect_y * height else "VERTICAL"
    elif fit == "HORIZONTAL":
        sensor = cam.sensor_width
    elif fit == "VERTICAL":
        sensor = cam.sensor_height
    else:
        raise ValueError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {cam.sensor_fit!r}")
    view_factor = float(width) if fit == "HORIZONTAL" else ycor * height
    return sensor, view_factor, ycor


def blender_intrinsics(cam: BlenderCamera) -> np.ndarray:
    """K (3,3) of a Blender perspective camera for its rendered image size."""
    width, height = cam.image_size()
    sensor, view_factor, ycor = _fit_and_view_factor(cam, width, height)
    fx = cam.lens * view_factor / sensor
    # A Blender pixel is ycor times taller than wide, so there are fewer rows per unit height.
    fy = fx / ycor
    cx = 0.5 * width - cam.shift_x * view_factor
    cy = 0.5 * height + cam.shift_y * view_factor / ycor
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def blender_extrinsics(matrix_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) in the protocol convention from a Blender camera's matrix_world."""
    m = np.asarray(matrix_world, dtype=np.float64)
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0, keepdims=True)  # drop object scale
    R = _BLENDER_CAM_TO_OPENCV @ rot.T @ PROTOCOL_TO_BLENDER
    t = -_BLENDER_CAM_TO_OPENCV @ rot.T @ m[:3, 3]
    return R, t


def camera_path_from_blender(cameras: Sequence[BlenderCamera], *, fps: float = 30.0, frame_start: int = 1,
                             names: Sequence[str] | None = None) -> CameraPath:
    """One protocol frame per Blender camera state (e.g. the scene camera at each frame)."""
    if not cameras:
        raise ValueError("no cameras")
    sizes = {c.image_size() for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"all frames must share one image size, got {sorted(sizes)}")
    (width, height), = sizes
    Ks = [blender_intrinsics(c) for c in cameras]
    Rts = [blender_extrinsics(c.matrix_world) for c in cameras]
    return CameraPath(np.stack(Ks), np.stack([r for r, _ in Rts]), np.stack([t for _, t in Rts]),
                      width, height, cameras[0].clip_start, cameras[0].clip_end, frame_start, fps,
                      list(names) if names is not None else None)


def blender_camera_from_opencv(K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
                               near: float = 0.1, far: float = 100.0,
                               sensor_width: float = 36.0) -> BlenderCamera:
    """A Blender camera (horizontal sensor fit) that reproduces K, R, t exactly; skew must be 0.

    Non-square pixels (fx != fy) become Blender's pixel aspect (both values >= 1, as Blender
    requires).
    """
    K = np.asarray(K, dtype=np.float64)
    if abs(K[0, 1]) > 1e-9 * abs(K[0, 0]):
        raise ValueError("Blender cameras have no skew; K[0, 1] must be 0")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    ycor = fx / fy
    pax, pay = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    view_factor = float(width)
    R = np.asarray(R, dtype=np.float64)
    rot = (_BLENDER_CAM_TO_OPENCV @ R @ BLENDER_TO_PROTOCOL).T  # camera-to-world rotation, Blender frame
    centre = PROTOCOL_TO_BLENDER @ (-R.T @ np.asarray(t, dtype=np.float64))
    matrix_world = np.eye(4)
    matrix_world[:3, :3] = rot
    matrix_world[:3, 3] = centre
    return BlenderCamera(
        lens=fx * sensor_width / view_factor,
        sensor_width=sensor_width,
        sensor_height=sensor_width * height * ycor / width,
        sensor_fit="HORIZONTAL",
        shift_x=(0.5 * width - cx) / view_factor,
        shift_y=(cy - 0.5 * height) * ycor / view_factor,
        clip_start=near, clip_end=far,
        resolution_x=int(width), resolution_y=int(height), resolution_percentage=100,
        pixel_aspect_x=pax, pixel_aspect_y=pay, matrix_world=matrix_world,
    )


# --------------------------------------------------------------------------- generators


def look_at(eye: Sequence[float], target: Sequence[float],
            up: Sequence[float] = (0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of an OpenCV camera at ``eye`` looking at ``target`` (Y-up world)."""
    eye_a, target_a, up_a = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target_a - eye_a
    if np.linalg.norm(forward) < 1e-12:
        raise ValueError("eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up_a)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("viewing direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return R, -R @ eye_a


def intrinsics_from_fov(fov_y_deg: float, width: int, height: int) -> np.ndarray:
    """Square-pixel K with the given vertical field of view and the principal point at the centre."""
    if not 0.0 < fov_y_deg < 180.0:
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov_y_deg}")
    f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def orbit_path(n_frames: int, *, radius: float = 3.0, elevation_deg: float = 10.0,
               target: Sequence[float] = (0.0, 0.0, 0.0), fov_y_deg: float = 40.0, width: int = 512,
               height: int = 512, near: float = 0.1, far: float = 100.0, azimuth_start_deg: float = 0.0,
               turns: float = 1.0, fps: float = 30.0, frame_start: int = 1,
               names: Sequence[str] | None = None) -> CameraPath:
    """Cameras on a circle around ``target`` looking at it; azimuth 0 is on +z (the body's front).

    Azimuth grows counter-clockwise seen from above (+z towards +x); ``turns`` full revolutions are
    spread over the frames without repeating the first view at the end.
    """
    if n_frames <= 0:
        raise ValueError("n_frames must be positive")
    if radius <= 0:
        raise ValueError("radius must be positive")
    target_a = np.asarray(target, dtype=np.float64)
    azimuths = np.radians(azimuth_start_deg + 360.0 * turns * np.arange(n_frames) / n_frames)
    elevation = np.radians(elevation_deg)
    K = intrinsics_from_fov(fov_y_deg, width, height)
    Rs, ts = [], []
    for az in azimuths:
        eye = target_a + radius * np.array(
            [np.cos(elevation) * np.sin(az), np.sin(elevation), np.cos(elevation) * np.cos(az)])
        R, t = look_at(eye, target_a)
        Rs.append(R)
        ts.append(t)
    return CameraPath(np.repeat(K[None], n_frames, 0), np.stack(Rs), np.stack(ts), width, height, near, far,
                      frame_start, fps, list(names) if names is not None else None)


def turntable_path(n_frames: int, **kwargs: Any) -> CameraPath:
    """One full revolution over ``n_frames`` (a turntable video); keywords as :func:`orbit_path`."""
    return orbit_path(n_frames, turns=1.0, **kwargs)


def multiview_ring(n_views: int, *, elevations_deg: Sequence[float] = (0.0,), **kwargs: Any) -> CameraPath:
    """``n_views`` evenly spaced azimuths at each elevation, named ``el{e:+03d}_az{a:03d}``."""
    kwargs.pop("turns", None)
    start = float(kwargs.pop("azimuth_start_deg", 0.0))
    paths = []
    for elevation in elevations_deg:
        azimuths = (start + 360.0 * np.arange(n_views) / n_views) % 360.0
        names = [f"el{round(elevation):+03d}_az{round(a):03d}" for a in azimuths]
        paths.append(orbit_path(n_views, elevation_deg=elevation, azimuth_start_deg=start, turns=1.0,
                                names=names, **kwargs))
    first = paths[0]
    return CameraPath(np.concatenate([p.K for p in paths]), np.concatenate([p.R for p in paths]),
                      np.concatenate([p.t for p in paths]), first.width, first.height, first.near, first.far,
                      first.frame_start, first.fps, [n for p in paths for n in (p.names or [])])


def parse_camera_spec(spec: str, **orbit_kwargs: Any) -> CameraPath:
    """``orbit:N`` (a turntable of N frames) or a path to a CameraPath JSON file."""
    if spec.startswith("orbit:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad camera spec {spec!r}; expected orbit:N") from None
        return orbit_path(n, **orbit_kwargs)
    with open(spec, encoding="utf-8") as handle:
        return CameraPath.from_json(handle.read())
