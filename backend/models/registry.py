"""One registry of the learned weights the pipelines use, by *role*.

A role (``base-diffusion``, ``pose-estimator``) names what a pipeline needs, not which checkpoint
provides it. A ``models.toml`` maps a role to a local ``path`` and/or a Hugging Face ``hub_id``
(+ ``revision``); a role absent from the file uses the default hub id below. The file is
``<data-dir>/models.toml``, or the one named by ``--models FILE`` (any command; the CLI puts it in
``$AVATAR_STUDIO_MODELS``, which the server's job workers inherit). Example::

    [models.base-diffusion]
    path = "/data/weights/sd15"            # a local folder wins over the hub id

    [models.controlnet-openpose]
    hub_id = "lllyasviel/control_v11p_sd15_openpose"
    revision = "main"

    [models.smplx]
    path = "/data/smplx"            # folder holding SMPLX_NEUTRAL.npz (licensed, see smpl-x.is.tue.mpg.de)
    # path = "/data/smplx/SMPLX_NEUTRAL.pkl"   # a .pkl is used only when named like this (it is a pickle)

Relative paths are relative to the file. Resolution never touches the network: a configured
``path`` that exists, else the Hugging Face cache (``huggingface_hub`` with
``local_files_only=True`` when installed, else the documented cache layout ``$HF_HUB_CACHE`` /
``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``, ``models--ORG--NAME/snapshots/<commit>``).
Downloading is the user's explicit step, ``avatar-studio models download ROLE``
(:mod:`backend.models.download`); ``avatar-studio models make-tiny DIR`` writes tiny random models
in the real formats and a ``models.toml`` naming them (:mod:`backend.models.tiny`, for tests).

Roles and who reads them (each loads through :mod:`backend.models.load`; docs/models.md):

- ``base-diffusion``, ``controlnet-openpose|depth|normal``, ``vae``: ``load_controlnet_pipeline``,
  the multi-view synthesis of ``backend/generate/`` (``vae`` is an optional override of the base
  folder's own VAE: used when present or configured).
- ``clip``: ``load_clip`` (open_clip), identity-consistency metrics of generated views.
- ``normal-estimator``: ``load_normal_estimator`` (Marigold normals), the sculpt stage
  (``backend/avatar/geometry/sculpt.py``) for views without normal maps.
- ``pose-estimator``: ``load_pose_estimator`` (ViTPose), 2D keypoints for body fitting.
- ``mimo-denoising-unet``, ``mimo-reference-unet``, ``mimo-motion-module``, ``mimo-pose-guider``,
  ``mimo-image-encoder``: ``load_mimo_models``, the neural insertion route (``backend/mimo/``).
- ``person-segmentation``, ``depth-estimator``, ``inpainting``: ``load_person_segmentation``,
  ``load_depth_estimator``, ``load_inpainting`` (:mod:`backend.models.load_footage`), the footage
  decomposition (``backend/footage/decompose.py``).
- ``inception``, ``lpips``: ``load_inception`` (FID/KID/IS) and ``load_lpips`` (LPIPS,
  :mod:`backend.models.load_metrics`), read by ``avatar-studio eval`` and bench/footage.py.
- ``smplx``: the licensed body every body job uses (``backend/body/model.py``), else the stand-in.

This module stays light (no torch): the server imports it for ``system.info``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import default_data_dir

CONFIG_NAME = "models.toml"


MODELS_FILE_ENV = "AVATAR_STUDIO_MODELS"  # a models.toml used instead of <data-dir>/models.toml

# What `models download` fetches of a repo: the weights the loaders read, in safetensors, without
# the full-checkpoint files, fp16/non-EMA variants and safety checker a hub repo may also hold.
_DIFFUSERS_PIPELINE_FILES = (
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
_DIFFUSERS_MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


@dataclass(frozen=True)
class ModelRole:
    name: str
    description: str
    default_hub_id: str | None  # None: not downloadable (licensed), a local path is required
    consumer: str = ""  # which pipeline reads it (docs, `models list`)
    loader: str = ""  # the function of backend.models.load that loads it
    files: tuple[str, ...] = ()  # allow_patterns for `models download` (empty: the whole repo)
    license: str = ""
    optional: bool = False  # a pipeline works without it (unless models.toml configures it)
    manual: str = ""  # how to get it by hand when it is not on the hub ({config}: the models.toml path)


INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
# LPIPS backbones: torchvision's ImageNet files, the ones lpips.LPIPS would download (first found wins).
LPIPS_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_URL = f"https://download.pytorch.org/models/{LPIPS_FILES['alex']}"

# Only roles some code loads (backend/models/load.py) and a test exercises: a role nothing consumes
# would be reported as "present" or "missing" for no effect.
ROLES: dict[str, ModelRole] = {
    r.name: r
    for r in [
        ModelRole(
            "base-diffusion",
            "Stable Diffusion 1.5 in diffusers format (unet, vae, text_encoder, tokenizer, scheduler)",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "multi-view synthesis (backend/generate)",
            "load_controlnet_pipeline",
            _DIFFUSERS_PIPELINE_FILES,
            "CreativeML OpenRAIL-M",
        ),
        ModelRole(
            "controlnet-openpose",
            "ControlNet 1.1 conditioned on OpenPose skeleton images (SD 1.5)",
            "lllyasviel/control_v11p_sd15_openpose",
            "multi-view synthesis (backend/generate)",
            "load_controlnet_pipeline",
            _DIFFUSERS_MODEL_FILES,
            "OpenRAIL",
        ),
        ModelRole(
            "controlnet-depth",
            "ControlNet 1.1 conditioned on depth images (SD 1.5)",
            "lllyasviel/control_v11f1p_sd15_depth",
            "multi-view synthesis (backend/generate)",
            "load_controlnet_pipeline",
            _DIFFUSERS_MODEL_FILES,
            "OpenRAIL",
        ),
        ModelRole(
            "controlnet-normal",
            "ControlNet 1.1 conditioned on normal maps (BAE convention, SD 1.5)",
            "lllyasviel/control_v11p_sd15_normalbae",
            "multi-view synthesis (backend/generate)",
            "load_controlnet_pipeline",
            _DIFFUSERS_MODEL_FILES,
            "OpenRAIL",
        ),
        ModelRole(
            "vae",
            "optional VAE replacing the base model's own (sharper decodes)",
            "stabilityai/sd-vae-ft-mse",
            "multi-view synthesis (backend/generate)",
            "load_controlnet_pipeline",
            _DIFFUSERS_MODEL_FILES,
            "MIT",
            optional=True,
        ),
        ModelRole(
            "clip",
            "open_clip image/text model (identity consistency of generated views)",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            "view consistency metrics",
            "load_clip",
            ("open_clip_config.json", "open_clip_model.safetensors"),
            "MIT",
        ),
        ModelRole(
            "normal-estimator",
            "monocular surface-normal estimator, Marigold normals (views without normal maps)",
            "prs-eth/marigold-normals-v1-1",
            "sculpt stage (backend/avatar/geometry/sculpt.py)",
            "load_normal_estimator",
            _DIFFUSERS_PIPELINE_FILES,
            "Apache-2.0 (code), RAIL++-M (weights)",
        ),
        ModelRole(
            "pose-estimator",
            "2D human keypoints, ViTPose (COCO 17 keypoints)",
            "usyd-community/vitpose-base-simple",
            "body fitting (backend/fitting)",
            "load_pose_estimator",
            ("config.json", "preprocessor_config.json", "model.safetensors"),
            "Apache-2.0",
        ),
        # The neural insertion route (backend/mimo, docs/mimo.md). MIMO's authors publish their four
        # .pth files in one repo; each role resolves to it, backend/models/mimo.py maps the layout.
        *[
            ModelRole(
                name,
                description,
                "menyifang/MIMO",
                "neural insertion route (backend/mimo)",
                loader,
                (file, "stable-diffusion-v1-5/unet/config.json"),
                "MIMO authors' terms (github.com/menyifang/MIMO)",
            )
            for name, description, loader, file in [
                ("mimo-denoising-unet", "MIMO's denoising UNet (SD 1.5 UNet, scene/occlusion inputs)",
                 "load_mimo_unet", "denoising_unet.pth"),
                ("mimo-reference-unet", "MIMO's reference UNet (identity features by reference attention)",
                 "load_mimo_unet", "reference_unet.pth"),
                ("mimo-motion-module", "AnimateDiff temporal layers of MIMO's UNet (MotionAdapter)",
                 "load_motion_adapter", "motion_module.pth"),
                ("mimo-pose-guider", "MIMO's motion code: per-vertex latent codes + pose guider",
                 "load_pose_guider", "pose_guider.pth"),
            ]
        ],
        ModelRole(
            "mimo-image-encoder",
            "CLIP ViT-L/14 image encoder, open_clip format (identity embedding of the neural route)",
            "timm/vit_large_patch14_clip_224.openai",
            "neural insertion route (backend/mimo)",
            "load_clip",
            ("open_clip_config.json", "open_clip_model.safetensors"),
            "MIT",
        ),
        ModelRole(
            "person-segmentation",
            "semantic segmentation keeping the person class, UperNet-ConvNeXt on ADE20K (people in footage)",
            "openmmlab/upernet-convnext-tiny",
            "footage decomposition (backend/footage/decompose.py)",
            "load_person_segmentation",
            ("config.json", "preprocessor_config.json", "model.safetensors"),
            "MIT",
        ),
        ModelRole(
            "depth-estimator",
            "monocular depth, Depth Anything V2 (relative; scaled to the shot camera's ground plane)",
            "depth-anything/Depth-Anything-V2-Small-hf",
            "footage decomposition (backend/footage/estimate.py)",
            "load_depth_estimator",
            ("config.json", "preprocessor_config.json", "model.safetensors"),
            "Apache-2.0",
        ),
        ModelRole(
            "inpainting",
            "Stable Diffusion 1.5 inpainting in diffusers format (fills what no footage frame shows)",
            "stable-diffusion-v1-5/stable-diffusion-inpainting",
            "footage decomposition, inpaint=model (backend/footage/decompose.py)",
            "load_inpainting",
            _DIFFUSERS_PIPELINE_FILES,
            "CreativeML OpenRAIL-M",
        ),
        ModelRole(
            "inception",
            "InceptionV3 feature extractor of FID/KID (torch-fidelity's TF-FID port, one .pth file)",
            None,
            "FID/KID metrics (backend/threedgm/metrics.py)",
            "load_inception",
            (INCEPTION_FILE,),
            "Apache-2.0 (torch-fidelity); weights converted from TF FID's Inception",
            manual=f"download {INCEPTION_URL} (torch-fidelity's release file, not on the Hugging Face hub: "
            "`models download` cannot fetch it) into a folder and set [models.inception] "
            'path = "/that/folder" in {config}',
        ),
        ModelRole(
            "lpips",
            "LPIPS backbone: torchvision's ImageNet AlexNet (or VGG16) .pth (linear layers ship in `lpips`)",
            None,
            "PSNR/SSIM/LPIPS of `avatar-studio eval` and bench/footage.py (backend/metrics)",
            "load_lpips",
            tuple(LPIPS_FILES.values()),
            "BSD-2-Clause (lpips); torchvision's weights: BSD-3-Clause",
            manual=f"download {LPIPS_URL} (torchvision's AlexNet, not on the Hugging Face hub: "
            "`models download` cannot fetch it; a torch cache ~/.cache/torch/hub/checkpoints holding it "
            'works as the folder) into a folder and set [models.lpips] path = "/that/folder" in {config}',
        ),
        ModelRole(
            "smplx",
            "SMPL-X body model files (licensed; every body job uses them, else a generated stand-in)",
            None,
            "every body job (backend/body/model.py)",
            "backend.body.model",
            (),
            "SMPL-X license, non-commercial (smpl-x.is.tue.mpg.de)",
        ),
    ]
}

SMPLX_GENDERS = ("neutral", "male", "female")


class ModelConfigError(ValueError):
    """``models.toml`` is not valid TOML or has fields of the wrong type."""


class ModelMissingError(LookupError):
    """A job needs weights that are not on this machine. The message says how to provide them."""

    def __init__(self, role: str, model: str, how_to: str) -> None:
        self.role = role
        self.model = model
        self.how_to = how_to
        super().__init__(f"model for role {role!r} ({model}) is not available: {how_to}")


class ModelLoadError(ModelMissingError):
    """The role's files are on this machine but do not load (truncated, wrong folder, wrong format)."""

    def __init__(
        self, role: str, model: str, location: Path, config_path: Path, cause: BaseException
    ) -> None:
        self.location = location
        detail = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
        super().__init__(
            role,
            model,
            f"the files at {location} could not be loaded ({type(cause).__name__}: {detail}); "
            f"run `avatar-studio models download {role}` again, or fix [models.{role}] path in {config_path}",
        )


@dataclass(frozen=True)
class ModelSpec:
    role: str
    path: Path | None = None
    hub_id: str | None = None
    revision: str = "main"
    configured: bool = False  # models.toml has an entry for the role (an optional role then is required)

    @property
    def label(self) -> str:
        if self.hub_id:
            return self.hub_id if self.revision == "main" else f"{self.hub_id}@{self.revision}"
        return str(self.path) if self.path else "(not configured)"


@dataclass(frozen=True)
class Resolution:
    spec: ModelSpec
    location: Path | None  # where the weights are, when present
    source: str | None  # "path" | "hf-cache" | None
    how_to: str

    @property
    def present(self) -> bool:
        return self.location is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.spec.role,
            "description": ROLES[self.spec.role].description,
            "present": self.present,
            "source": self.source,
            "location": str(self.location) if self.location else None,
            "hub_id": self.spec.hub_id,
            "revision": self.spec.revision,
            "path": str(self.spec.path) if self.spec.path else None,
            "how_to": self.how_to,
        }


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def find_in_hf_cache(hub_id: str, revision: str = "main", cache_dir: Path | None = None) -> Path | None:
    """The local snapshot folder of ``hub_id`` at ``revision``, or None. Never downloads."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        snapshot_download = None
    if snapshot_download is not None:
        try:
            return Path(
                snapshot_download(hub_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
            )
        except Exception:  # LocalEntryNotFoundError and friends: not in the cache
            return None
    repo = (cache_dir or hf_cache_dir()) / f"models--{hub_id.replace('/', '--')}"
    commit = revision if _COMMIT_RE.match(revision) else None
    if commit is None:
        ref = repo / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else None
    snapshot = repo / "snapshots" / commit if commit else None
    return snapshot if snapshot is not None and snapshot.is_dir() and any(snapshot.iterdir()) else None


def smplx_model_file(location: Path, gender: str) -> tuple[Path, bool] | None:
    """The SMPL-X file for ``gender`` under a configured ``smplx`` location: ``(file, is_pickle)``.

    A folder is searched for ``SMPLX_<GENDER>.npz`` (itself, then its ``smplx/``), never for
    ``.pkl``: a pickle runs code when loaded, so it is used only when ``models.toml`` names the
    ``.pkl`` file itself (the operator's explicit choice; docs/security.md). A named file is used
    for every gender.
    """
    if location.is_file():
        suffix = location.suffix.lower()
        if suffix not in (".npz", ".pkl"):
            return None
        return location, suffix == ".pkl"
    name = f"SMPLX_{gender.upper()}.npz"
    for folder in (location, location / "smplx"):
        if (folder / name).is_file():
            return folder / name, False
    return None


def _smplx_present(path: Path) -> bool:
    return any(smplx_model_file(path, g) is not None for g in SMPLX_GENDERS)


def download_command(role: str) -> str:
    return f"avatar-studio models download {role}"


def how_to_provide(spec: ModelSpec, config_path: Path) -> str:
    # A configured path that is not there is named first: it is the likely mistake.
    prefix = ""
    if spec.path is not None and not spec.path.exists():
        prefix = f"the configured path {spec.path} does not exist; "
    elif spec.path is not None and spec.role != "smplx" and not spec.path.is_dir():
        prefix = f"the configured path {spec.path} is not a folder; "
    if spec.role == "smplx":
        return prefix + (
            f"download SMPL-X (licensed) from https://smpl-x.is.tue.mpg.de and set "
            f'[models.smplx] path = "/folder/with/SMPLX_NEUTRAL.npz" in {config_path}'
        )
    if ROLES[spec.role].manual and not spec.hub_id:
        return prefix + ROLES[spec.role].manual.format(config=config_path)
    if spec.hub_id:
        return prefix + (
            f"run `{download_command(spec.role)}` (downloads {spec.label} into the Hugging Face "
            f'cache), or set [models.{spec.role}] path = "/local/folder" in {config_path}'
        )
    return prefix + f"set [models.{spec.role}] path or hub_id in {config_path}"


class ModelRegistry:
    def __init__(
        self, specs: Mapping[str, ModelSpec], config_path: Path, hf_cache: Path | None = None
    ) -> None:
        self.specs = dict(specs)
        self.config_path = config_path
        self.hf_cache = hf_cache

    @classmethod
    def load(
        cls,
        data_dir: Path | str | None = None,
        hf_cache: Path | None = None,
        models_file: Path | str | None = None,
    ) -> ModelRegistry:
        """Read ``models_file``, else ``$AVATAR_STUDIO_MODELS``, else ``<data-dir>/models.toml``.

        A missing ``<data-dir>/models.toml`` means every role on its default; a named file that
        does not exist is a :class:`ModelConfigError` (a typo must not silently mean defaults).
        """
        named = models_file if models_file is not None else os.environ.get(MODELS_FILE_ENV) or None
        if named is not None:
            config_path = Path(named).expanduser().absolute()
            if not config_path.is_file():
                raise ModelConfigError(
                    f"models file {config_path} does not exist (--models / ${MODELS_FILE_ENV})"
                )
        else:
            config_path = Path(data_dir if data_dir is not None else default_data_dir()) / CONFIG_NAME
        table: dict[str, Any] = {}
        if config_path.is_file():
            try:
                table = tomllib.loads(config_path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ModelConfigError(f"{config_path}: {exc}") from exc
        models = table.get("models", {})
        if not isinstance(models, dict):
            raise ModelConfigError(f"{config_path}: [models] must be a table")
        unknown = set(models) - set(ROLES)
        if unknown:
            raise ModelConfigError(
                f"{config_path}: unknown model roles {sorted(unknown)}; known: {sorted(ROLES)}"
            )
        specs = {name: cls._spec(name, models.get(name, {}), config_path) for name in ROLES}
        return cls(specs, config_path, hf_cache)

    @staticmethod
    def _spec(role: str, entry: object, config_path: Path) -> ModelSpec:
        if not isinstance(entry, dict):
            raise ModelConfigError(f"{config_path}: [models.{role}] must be a table")
        for key in ("path", "hub_id", "revision"):
            if key in entry and not isinstance(entry[key], str):
                raise ModelConfigError(f"{config_path}: models.{role}.{key} must be a string")
        path = Path(entry["path"]).expanduser() if entry.get("path") else None
        if path is not None and not path.is_absolute():
            path = config_path.parent / path  # relative paths are relative to the config file
        hub_id = entry.get("hub_id", ROLES[role].default_hub_id if path is None else None)
        return ModelSpec(role, path, hub_id or None, entry.get("revision", "main"), configured=bool(entry))

    def resolve(self, role: str) -> Resolution:
        if role not in self.specs:
            raise KeyError(f"unknown model role {role!r}; known: {', '.join(sorted(self.specs))}")
        spec = self.specs[role]
        how_to = how_to_provide(spec, self.config_path)
        # smplx may name a file; every other role is a folder (a from_pretrained layout).
        usable_path = spec.path is not None and (
            spec.path.exists() if role == "smplx" else spec.path.is_dir()
        )
        if usable_path and (role != "smplx" or _smplx_present(spec.path)):  # type: ignore[arg-type]
            return Resolution(spec, spec.path, "path", how_to)
        if spec.hub_id:
            snapshot = find_in_hf_cache(spec.hub_id, spec.revision, self.hf_cache)
            if snapshot is not None:
                return Resolution(spec, snapshot, "hf-cache", how_to)
        return Resolution(spec, None, None, how_to)

    def check(self) -> list[Resolution]:
        return [self.resolve(role) for role in self.specs]

    def require(self, role: str) -> Path:
        """The local folder/file for ``role``, or :class:`ModelMissingError` saying how to get it."""
        found = self.resolve(role)
        if found.location is None:
            raise ModelMissingError(role, found.spec.label, found.how_to)
        return found.location


def load_registry(data_dir: Path | str | None = None, models_file: Path | str | None = None) -> ModelRegistry:
    return ModelRegistry.load(data_dir, models_file=models_file)


def require(role: str, data_dir: Path | str | None = None) -> Path:
    """Shortcut for jobs: ``require("normal-estimator")`` with the data dir (and models file) of
    this process."""
    return ModelRegistry.load(data_dir).require(role)
