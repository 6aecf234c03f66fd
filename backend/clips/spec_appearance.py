"""The ``appearance`` part of the clip spec (lighting, ground, shadows, backgrounds); sampled per
clip by ``backend.clips.appearance``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .spec_fields import SpecError, known_keys, number_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".hdr", ".exr")


@dataclass(frozen=True)
class AppearanceSpec:
    """How a clip looks (sampled per clip; ``backend.clips.appearance``): an environment as 2nd-order
    spherical harmonics (random skies, or the equirectangular image ``environment``) scaled so that
    a white upward-facing surface receives ``ambient``; a directional key light of ``key_intensity``
    at ``key_elevation_deg`` above the horizon (random azimuth) with a black-body colour of
    ``key_temperature_k``; the ground plane y = 0 (``ground``) with the image ``ground_texture`` or a
    procedural one repeated every ``ground_tile_m`` metres; shadows of the key light (``shadows``)
    and a contact darkening of strength ``contact`` under the people; a background from the image
    folder ``backgrounds`` (random crop) or procedural."""

    environment: str | None = None
    ambient: tuple[float, float] = (0.35, 0.75)
    key_intensity: tuple[float, float] = (0.5, 1.1)
    key_elevation_deg: tuple[float, float] = (25.0, 70.0)
    key_temperature_k: tuple[float, float] = (3500.0, 7500.0)
    ground: bool = True
    ground_texture: str | None = None
    ground_tile_m: tuple[float, float] = (0.4, 1.6)
    shadows: bool = True
    contact: float = 0.8
    backgrounds: str | None = None

    @classmethod
    def parse(cls, data: Any, name: str = "appearance") -> AppearanceSpec:
        d = known_keys(data, cls, name)
        for key in ("ground", "shadows"):
            if not isinstance(d.get(key, True), bool):
                raise SpecError(f"{name}.{key}: true or false, got {d[key]!r}")
        for key in ("environment", "ground_texture", "backgrounds"):
            if d.get(key) is not None and not (isinstance(d[key], str) and d[key]):
                raise SpecError(f"{name}.{key}: a path or null, got {d[key]!r}")
        return cls(
            environment=d.get("environment"),
            ambient=number_range(d.get("ambient", [0.35, 0.75]), f"{name}.ambient", 0.0, 100.0),
            key_intensity=number_range(d.get("key_intensity", [0.5, 1.1]), f"{name}.key_intensity",
                                       0.0, 100.0),
            key_elevation_deg=number_range(d.get("key_elevation_deg", [25.0, 70.0]),
                                           f"{name}.key_elevation_deg", 1.0, 90.0),
            key_temperature_k=number_range(d.get("key_temperature_k", [3500.0, 7500.0]),
                                     f"{name}.key_temperature_k", 1000.0, 40000.0),
            ground=d.get("ground", True),
            ground_texture=d.get("ground_texture"),
            ground_tile_m=number_range(d.get("ground_tile_m", [0.4, 1.6]), f"{name}.ground_tile_m",
                                       0.01, 1000.0),
            shadows=d.get("shadows", True),
            contact=number_range(d.get("contact", 0.8), f"{name}.contact", 0.0, 1.0)[0],
            backgrounds=d.get("backgrounds"),
        )

    def resolve(self, base_dir: Path | None) -> AppearanceSpec:
        """Paths made absolute and checked: the images exist, the folder holds images."""

        def absolute(value: str) -> Path:
            path = Path(value).expanduser()
            return (base_dir / path if not path.is_absolute() and base_dir is not None else path).resolve()

        out: dict[str, Any] = {}
        for key in ("environment", "ground_texture"):
            value = getattr(self, key)
            if value is not None:
                path = absolute(value)
                if not path.is_file():
                    raise SpecError(f"appearance.{key}: image not found: {path}")
                from backend.clips.appearance import load_image

                try:  # one image each: read now, so a bad file fails before anything is written
                    load_image(path)
                except SpecError as exc:
                    raise SpecError(f"appearance.{key}: {exc}") from None
                out[key] = str(path)
        if self.backgrounds is not None:
            folder = absolute(self.backgrounds)
            if not folder.is_dir() or not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
                raise SpecError(f"appearance.backgrounds: not a folder of images: {folder}")
            out["backgrounds"] = str(folder)
        return AppearanceSpec(**{**asdict(self), **out})
