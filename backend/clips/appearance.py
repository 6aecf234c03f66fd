"""A clip's look, sampled from its seed: environment light (SH), key light, ground, background.

Everything is drawn from one generator in a fixed order (:func:`sample_look`), so a clip's look
depends only on the spec and the clip index. The sampled :class:`Look` holds small parameters
(written to ``clip.json``); the images it implies (ground texture, background) are made from them
at render time, deterministically.

Lighting model (``docs/clips.md``, "Appearance"): the environment is 2nd-order real spherical
harmonics, 9 coefficients per colour channel, of its radiance; a Lambertian surface of albedo a
and normal n receives ``a * (E(n) / pi + key * max(0, n . l) * shadow)`` where ``E`` is the SH
irradiance (Ramamoorthi and Hanrahan 2001: the radiance coefficients times pi, 2 pi / 3, pi / 4 per
band). :class:`Look` stores ``E / pi``'s coefficients (``sh``), so the shader evaluates 9 basis
functions. An equirectangular image maps row 0 to straight up (+Y) and column c to the azimuth
phi = 2 pi (c + 0.5) / W, direction (sin(theta) cos(phi), cos(theta), sin(theta) sin(phi)).
Images are used as stored (no colour management): 8-bit values / 255, 16-bit / 65535, float as is.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from backend.clips.spec_appearance import IMAGE_SUFFIXES, AppearanceSpec
from backend.clips.spec_fields import SpecError

BAND = np.array([1.0] + [2.0 / 3.0] * 3 + [0.25] * 5)  # A_l / pi per coefficient
GROUND_TEXTURE_SIZE = 128
GROUND_FADE_M = (20.0, 60.0)  # the ground blends into the background between these camera depths
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])


def sh_basis(dirs: np.ndarray) -> np.ndarray:
    """The 9 real SH basis functions (N,9) at unit directions (N,3); order (0,0), (1,-1..1), (2,-2..2)
    with the world's y as the polar axis: y, z, x for band 1."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    return np.stack([
        np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3.0 * z * z - 1.0), 1.092548 * x * z,
        0.546274 * (x * x - y * y)], axis=-1)


def equirect_directions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (H,W,3) of an equirectangular image's pixel centres and their solid angles (H,W)."""
    theta = math.pi * (np.arange(height) + 0.5) / height
    phi = 2.0 * math.pi * (np.arange(width) + 0.5) / width
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    dirs = np.stack(np.broadcast_arrays(st * np.cos(phi)[None], ct, st * np.sin(phi)[None]), axis=-1)
    solid = np.broadcast_to(st * (math.pi / height) * (2.0 * math.pi / width), (height, width))
    return dirs, solid


def project_equirect(image: np.ndarray) -> np.ndarray:
    """Radiance SH coefficients (9,3) of an equirectangular (H,W,3) image (float, linear radiance)."""
    image = np.asarray(image, dtype=np.float64)
    dirs, solid = equirect_directions(image.shape[0], image.shape[1])
    basis = sh_basis(dirs) * solid[..., None]  # (H,W,9)
    return np.einsum("hwk,hwc->kc", basis, image[..., :3])


def irradiance_coefficients(radiance_sh: np.ndarray) -> np.ndarray:
    """Coefficients (9,3) of E(n) / pi: what a white Lambertian surface of normal n reflects."""
    return radiance_sh * BAND[:, None]


def ambient_at(coefficients: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """E(n) / pi (N,3) at unit normals (N,3) (the shader's ambient term, in numpy)."""
    return sh_basis(np.asarray(normals, dtype=np.float64)) @ coefficients


def load_image(path: str | Path) -> np.ndarray:
    """(H,W,3) float32 of an image file, values as stored (8-bit / 255, 16-bit / 65535, float as is).

    Pillow reads the usual formats; imageio the HDR ones (.hdr, .exr), when it has a plugin for them.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".hdr", ".exr"):
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    data = np.asarray(img)
                    if img.mode != "F":  # 16-bit gray (Pillow may say "I" for it)
                        data = np.clip(data, 0, 65535).astype(np.uint16)
                else:
                    data = np.asarray(img.convert("RGB"))
    except Exception as exc:  # readers raise many kinds for unreadable files
        raise SpecError(f"{path}: cannot read the image: {exc}") from None
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[2] < 1 or min(data.shape[:2]) < 1:
        raise SpecError(f"{path}: not an image (shape {data.shape})")
    if data.shape[2] < 3:
        data = np.repeat(data[..., :1], 3, axis=-1)
    scale = 255.0 if data.dtype == np.uint8 else 65535.0 if data.dtype == np.uint16 else 1.0
    return np.ascontiguousarray(data[..., :3].astype(np.float32) / np.float32(scale))


@lru_cache(maxsize=8)
def _environment_sh(path: str) -> np.ndarray:
    return project_equirect(np.maximum(load_image(path), 0.0))


def kelvin_rgb(kelvin: float) -> np.ndarray:
    """The colour of a black body at ``kelvin`` (Tanner Helland's fit), scaled to luminance 1."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = (99.4708025861 * math.log(t) - 161.1195681661 if t <= 66
         else 288.1221695283 * (t - 60) ** -0.0755148492)
    b = 255.0 if t >= 66 else 0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307
    rgb = np.clip(np.array([r, g, b]), 0.0, 255.0) / 255.0
    return rgb / float(rgb @ LUMINANCE)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def random_sky(rng: np.random.Generator, height: int = 32, width: int = 64) -> np.ndarray:
    """An equirectangular environment (H,W,3): a sky over a ground colour with a few bright patches
    (windows, sun glow), so that the ambient light has a direction and a colour."""
    dirs, _ = equirect_directions(height, width)
    up = dirs[..., 1:2]
    zenith = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.6), rng.uniform(0.5, 1.0))
    horizon = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.3), rng.uniform(0.6, 1.0))
    ground = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.5))
    sky = np.where(up > 0, horizon + (zenith - horizon) * np.sqrt(np.clip(up, 0, 1)), ground + 0 * up)
    for _ in range(int(rng.integers(0, 4))):
        centre = rng.normal(size=3)
        centre /= np.linalg.norm(centre)
        sharp = rng.uniform(4.0, 30.0)
        glow = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.4), rng.uniform(0.5, 3.0))
        sky = sky + glow * np.exp(sharp * (dirs @ centre - 1.0))[..., None]
    return sky


def value_noise(rng: np.random.Generator, size: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Periodic fractal value noise (size, size) in [0, 1]: random grids upsampled bilinearly with
    wrap-around (so a ground texture tiles without seams), octaves halving in amplitude."""
    out = np.zeros((size, size))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2 ** o
        grid = rng.random((cells, cells))
        pos = (np.arange(size) + 0.5) * cells / size - 0.5
        i0 = np.floor(pos).astype(np.int64)
        f = pos - i0
        f = f * f * (3 - 2 * f)  # smoothstep: no creases at the cell borders
        a, b = i0 % cells, (i0 + 1) % cells
        rows = grid[a] * (1 - f)[:, None] + grid[b] * f[:, None]
        layer = rows[:, a] * (1 - f)[None] + rows[:, b] * f[None]
        out += amp * layer
        total += amp
        amp *= 0.5
    return out / total


@dataclass
class Look:
    """One clip's sampled appearance (see the module docstring)."""

    sh: np.ndarray  # (9,3) float32: coefficients of E(n) / pi
    key_dir: np.ndarray  # (3,) unit, world, towards the light
    key_rgb: np.ndarray  # (3,) colour times intensity
    ground: bool
    ground_kind: str  # checker | noise | image
    ground_colors: np.ndarray  # (2,3)
    ground_tile_m: float
    ground_angle: float
    ground_offset: np.ndarray  # (2,) metres
    ground_path: str | None
    background_kind: str  # gradient | noise | solid | image
    background_colors: np.ndarray  # (2,3)
    background_path: str | None
    background_crop: tuple[float, float, float]  # zoom >= 1, centre x, y in [0, 1]
    shadows: bool
    contact: float
    noise_seed: int
    info: dict[str, Any] = field(default_factory=dict)

    def ground_texture(self) -> np.ndarray:
        """(S,S,3) float32 ground albedo, one tile."""
        if self.ground_kind == "image":
            assert self.ground_path is not None
            return load_image(self.ground_path)
        n = GROUND_TEXTURE_SIZE
        if self.ground_kind == "checker":
            cell = (np.arange(n) * 2 // n)
            mix = ((cell[:, None] + cell[None]) % 2).astype(np.float64)
        else:
            mix = value_noise(np.random.default_rng(self.noise_seed), n)
        a, b = self.ground_colors
        return (a + (b - a) * mix[..., None]).astype(np.float32)

    def background_image(self, width: int, height: int) -> np.ndarray:
        """(H,W,3) float32 background for a frame of this size."""
        a, b = self.background_colors
        if self.background_kind == "image":
            from PIL import Image

            assert self.background_path is not None
            data = load_image(self.background_path)
            img_h, img_w = data.shape[:2]
            zoom, cx, cy = self.background_crop
            # The largest window of the frame's aspect inside the image, shrunk by zoom, centred at
            # (cx, cy) of the room left to move in.
            scale = min(img_w / width, img_h / height) / zoom
            win_w, win_h = width * scale, height * scale
            x0, y0 = cx * (img_w - win_w), cy * (img_h - win_h)
            channels = [Image.fromarray(np.ascontiguousarray(data[..., c])).resize(
                (width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + win_w, y0 + win_h))
                for c in range(3)]
            return np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=-1)
        y = (np.arange(height) + 0.5) / height
        if self.background_kind == "solid":
            mix = np.zeros((height, width))
        elif self.background_kind == "gradient":
            mix = np.broadcast_to(y[:, None], (height, width))
        else:
            side = max(width, height)
            noise = value_noise(np.random.default_rng(self.noise_seed + 1), side, octaves=3, base=2)
            mix = noise[:height, :width]
        return (a + (b - a) * mix[..., None]).astype(np.float32)


def _image_files(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def sample_look(spec: AppearanceSpec, rng: np.random.Generator) -> Look:
    """Draw one clip's look (fixed draw order: environment, key, ground, background)."""
    info: dict[str, Any] = {}
    if spec.environment is not None:
        radiance = _environment_sh(spec.environment)
        info["environment"] = spec.environment
    else:
        radiance = project_equirect(random_sky(rng))
        info["environment"] = "random"
    coeffs = irradiance_coefficients(radiance)
    ambient = float(rng.uniform(*spec.ambient))
    up = float(ambient_at(coeffs, np.array([[0.0, 1.0, 0.0]]))[0].mean())
    coeffs = coeffs * (ambient / up) if up > 1e-9 else coeffs
    info["ambient"] = ambient

    elevation = math.radians(float(rng.uniform(*spec.key_elevation_deg)))
    azimuth = float(rng.uniform(0.0, 2.0 * math.pi))
    key_dir = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                        math.cos(elevation) * math.cos(azimuth)])
    intensity = float(rng.uniform(*spec.key_intensity))
    kelvin = float(rng.uniform(*spec.key_temperature_k))
    info["key"] = {"direction": key_dir.tolist(), "elevation_deg": math.degrees(elevation),
                   "azimuth_deg": math.degrees(azimuth), "intensity": intensity, "temperature_k": kelvin}

    procedural = "checker" if rng.random() < 0.5 else "noise"
    ground_kind = "image" if spec.ground_texture is not None else procedural
    hue = rng.random()
    ground_colors = np.stack([_hsv(hue, rng.uniform(0.0, 0.5), rng.uniform(0.2, 0.7)),
                              _hsv(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.0, 0.5),
                                   rng.uniform(0.2, 0.7))])
    tile = float(rng.uniform(*spec.ground_tile_m))
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    offset = rng.uniform(0.0, tile, size=2)
    info["ground"] = ({"kind": ground_kind, "tile_m": tile, "texture": spec.ground_texture} if spec.ground
                      else False)

    background_path = None
    crop = (1.0, 0.5, 0.5)
    if spec.backgrounds is not None:
        files = _image_files(spec.backgrounds)
        if not files:
            raise SpecError(f"appearance.backgrounds: no images left in {spec.backgrounds}")
        background_path = str(files[int(rng.integers(len(files)))])
        crop = (float(rng.uniform(1.0, 1.6)), float(rng.random()), float(rng.random()))
        background_kind = "image"
    else:
        background_kind = ("gradient", "noise", "solid")[int(rng.integers(3))]
    background_colors = np.stack([_hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95))
                                  for _ in range(2)])
    info["background"] = {"kind": background_kind, "file": background_path}
    return Look(sh=coeffs.astype(np.float32), key_dir=key_dir, key_rgb=kelvin_rgb(kelvin) * intensity,
                ground=spec.ground, ground_kind=ground_kind, ground_colors=ground_colors, ground_tile_m=tile,
                ground_angle=angle, ground_offset=offset, ground_path=spec.ground_texture,
                background_kind=background_kind, background_colors=background_colors,
                background_path=background_path, background_crop=crop, shadows=spec.shadows,
                contact=spec.contact, noise_seed=int(rng.integers(2**31)), info=info)
