"""Loader of the ``lpips`` role (LPIPS, Zhang et al. 2018), same rules as :mod:`backend.models.load`:
never the network, a missing role is one :class:`ModelMissingError`, files that do not load a
:class:`ModelLoadError`.

Why the ``lpips`` package (0.1.4, the authors' own code) and not torchmetrics' LPIPS: torchmetrics
vendors the same network and linear weights but builds its backbone through torchvision's download
with no way to hand it a file, and pulls in a large package for one metric; ``lpips`` is small, its
calibrated linear layers ship inside it, and ``pnet_rand=True`` builds the backbone without the
download, so only the ImageNet backbone comes from the role's folder (torchvision's own ``.pth``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.registry import LPIPS_FILES, ModelLoadError, ModelRegistry

# lpips' backbone slices keep torchvision's `features` indices: features.I -> net.sliceK.I.
_SLICES = {
    "alex": [(1, range(0, 2)), (2, range(2, 5)), (3, range(5, 8)), (4, range(8, 10)), (5, range(10, 12))],
    "vgg": [(1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30))],
}


def lpips_weights_file(folder: Path) -> tuple[str, Path]:
    """(net, file) of the first backbone file of :data:`LPIPS_FILES` in ``folder`` (AlexNet first:
    LPIPS' default and the one papers quote)."""
    for net, name in LPIPS_FILES.items():
        if (folder / name).is_file():
            return net, folder / name
    raise FileNotFoundError(f"none of {', '.join(LPIPS_FILES.values())} is in the folder")


def backbone_state(net: str, state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """torchvision's state dict (``features.I.weight``...) -> lpips' (``net.sliceK.I.weight``)."""
    out = {}
    for k, idx in _SLICES[net]:
        for i in idx:
            for p in ("weight", "bias"):
                key = f"features.{i}.{p}"
                if key in state:
                    out[f"net.slice{k}.{i}.{p}"] = state[key]
    return out


@dataclass
class Lpips:
    """``distance(a, b)``: LPIPS per image pair, images (N,3,H,W) float in [0,1] or (H,W,3) arrays."""

    model: Any  # lpips.LPIPS
    net: str
    device: torch.device

    @torch.no_grad()
    def distance(self, a: Any, b: Any, mask: Any = None) -> torch.Tensor:
        """(N,) LPIPS of each pair; with ``mask`` ((N,H,W) or (H,W), bool/float) the spatial map is
        averaged inside the mask (LPIPS' ``spatial`` map, at the input size)."""
        x, y = _as_batch(a), _as_batch(b)
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of one size, got {tuple(x.shape)} and {tuple(y.shape)}")
        dtype = next(self.model.parameters()).dtype
        x, y = x.to(self.device, dtype), y.to(self.device, dtype)
        if mask is None:
            return self.model(x, y, normalize=True).flatten().float().cpu()
        self.model.spatial = True  # LPIPS' own spatial map, each layer upsampled to the input size
        try:
            spatial = self.model(x, y, normalize=True)[:, 0].float().cpu()
        finally:
            self.model.spatial = False
        m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
        m = m.expand_as(spatial) if m.ndim == 2 else m
        return (spatial * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1e-12)


def _as_batch(images: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float()
    if t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)
    if t.ndim == 3:
        t = t[None]
    if t.ndim == 4 and t.shape[1] not in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    t = t[:, :3]
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def build_lpips(net: str = "alex") -> Any:
    """lpips.LPIPS with its shipped linear layers and an untrained backbone (no download)."""
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision the deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, pnet_rand=True, verbose=False)


def load_lpips(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Lpips:
    """The ``lpips`` role: :class:`Lpips` over ``lpips.LPIPS`` (v0.1 linear layers from the package)
    with the backbone read from the role's folder (``weights_only``: tensors, never code), strictly:
    a file missing a layer or of another shape is a ModelLoadError. Float32 (LPIPS is tiny)."""
    from backend.models.load import _loaded, model_path, pick_device

    del dtype  # accepted for the LOADERS signature; LPIPS runs in float32 everywhere
    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    folder = model_path("lpips", registry, download)

    def load() -> Lpips:
        net, file = lpips_weights_file(folder)
        state = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"{file.name} does not hold a state dict")
        model = build_lpips(net)
        wanted = {k for k in model.state_dict() if k.startswith("net.")}
        mapped = backbone_state(net, state)
        if set(mapped) != wanted:
            raise KeyError(f"{file.name} lacks {len(wanted - set(mapped))} backbone tensors of LPIPS-{net}")
        model.load_state_dict(mapped, strict=False)
        return Lpips(model.to(dev).eval(), net, dev)

    try:
        return _loaded("lpips", folder, registry, load)
    except ModelLoadError:
        raise
    except Exception as exc:  # an unpickling refusal (code in the file) names the role too
        label = registry.specs["lpips"].label
        raise ModelLoadError("lpips", label, folder, registry.config_path, exc) from exc


METRICS_LOADERS: dict[str, Any] = {"lpips": load_lpips}
