"""``BodyModel``: SMPL-X (licensed file or the generated stand-in) through the ``smplx`` package.

Parameters follow the protocol's SMPL-X payload (docs/protocol.md): per frame ``global_orient``
(F,3), ``body_pose`` (F,63), ``left_hand_pose``/``right_hand_pose`` (F,45) full axis-angle,
``jaw_pose``/``leye_pose``/``reye_pose`` (F,3), ``transl`` (F,3); per sequence ``betas`` (B,) and
``expression`` (E,). Hand poses are absolute (flat hand = zeros, ``flat_hand_mean=True``), as in
AMASS. Units are metres, world Y up.

The forward pass is smplx's own linear blend skinning (``smplx.lbs`` building blocks, same
buffers), extended to also return each joint's world transform, which the add-on needs for bones.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import smplx
import torch
from scipy.spatial import cKDTree
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints

from protocol.smplx import PER_FRAME_FIELDS

from .joints import EXTRA_VERTEX_IDS, JOINT_NAMES, NUM_JOINTS, PART_NAMES
from .parts import part_labels
from .standin import ensure_standin

# What smplx's SMPLX class reads from a model file. Other fields of the licensed releases
# (e.g. ``part2num``, ``joint2num``: dicts stored as pickled object arrays) are left out.
SMPLX_FIELDS = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights",
    "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
)  # fmt: skip
SMPLX_REQUIRED = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights",
                  "lmk_faces_idx", "lmk_bary_coords", "hands_componentsl", "hands_componentsr",
                  "hands_meanl", "hands_meanr")  # fmt: skip


def read_smplx_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays smplx needs from an SMPL-X ``.npz``, read with ``allow_pickle=False``.

    Object arrays are never unpickled: the ones smplx does not read are skipped; a needed one
    (e.g. a sparse ``J_regressor`` stored as an object) is refused with a clear error.
    """
    out: dict[str, np.ndarray] = {}
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable npz ({exc})") from exc
    with data:
        for key in SMPLX_FIELDS:
            if key not in data.files:
                continue
            try:
                value = data[key]
            except ValueError:  # an object array: would need unpickling
                raise ValueError(
                    f"{path}: field {key!r} is a pickled object array; convert the model to plain "
                    "arrays (e.g. the official SMPL-X .npz release)"
                ) from None
            out[key] = np.asarray(value)
    missing = [k for k in SMPLX_REQUIRED if k not in out]
    if missing:
        raise ValueError(f"{path}: not an SMPL-X model file (missing {', '.join(missing)})")
    return out


def _registry_model_file(gender: str, data_dir: Path | None) -> tuple[Path, bool] | None:
    """The ``smplx`` role's file for ``gender`` (and whether it is a pickle), or None."""
    from backend.models.registry import ModelRegistry, smplx_model_file

    found = ModelRegistry.load(data_dir).resolve("smplx")
    return smplx_model_file(found.location, gender) if found.location is not None else None


POSE_WIDTHS = PER_FRAME_FIELDS  # the SMPL-X payload layout (protocol/smplx.py)


@dataclass(frozen=True)
class BodyModelConfig:
    """Which body to load.

    ``model_path=None`` (what every job uses): the licensed SMPL-X file of the ``smplx`` role in
    ``<data-dir>/models.toml`` when configured (backend/models/registry.py), else the generated
    stand-in (cached under ``data_dir``, default the project data dir). ``use_registry=False``
    skips the registry (the stand-in, for tests). An explicit ``model_path`` (trusted local callers
    only, never job params) is a licensed ``SMPLX_*.npz`` or a folder holding one.

    An ``.npz`` is read with ``allow_pickle=False``; a ``.pkl`` runs code when loaded, so it is
    accepted only with ``allow_pickle=True``, which only the registry sets, when ``models.toml``
    names the ``.pkl`` file itself.
    """

    model_path: Path | None = None
    gender: str = "neutral"
    num_betas: int = 10
    num_expression: int = 10
    flat_hand_mean: bool = True
    data_dir: Path | None = None
    use_registry: bool = True
    allow_pickle: bool = False


@dataclass
class BodyParams:
    """SMPL-X parameters for F frames (torch tensors), in the protocol payload layout."""

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    left_hand_pose: torch.Tensor
    right_hand_pose: torch.Tensor
    jaw_pose: torch.Tensor
    leye_pose: torch.Tensor
    reye_pose: torch.Tensor
    transl: torch.Tensor
    betas: torch.Tensor  # (B,)
    expression: torch.Tensor  # (E,)

    @property
    def n_frames(self) -> int:
        return int(self.global_orient.shape[0])

    @classmethod
    def zeros(cls, n_frames: int = 1, num_betas: int = 10, num_expression: int = 10) -> BodyParams:
        return cls.from_arrays({}, n_frames=n_frames, num_betas=num_betas, num_expression=num_expression)

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, Any],
        n_frames: int | None = None,
        num_betas: int = 10,
        num_expression: int = 10,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> BodyParams:
        """Build from a payload-like mapping (numpy or torch); missing entries are zeros.

        Per-frame arrays may also be given as a single (width,) vector (broadcast to all frames).
        """

        def tensor(x: Any) -> torch.Tensor:
            t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
            return t.to(device=device, dtype=dtype)

        if n_frames is None:
            counts = {
                tensor(arrays[k]).reshape(-1, w).shape[0]
                for k, w in POSE_WIDTHS.items()
                if arrays.get(k) is not None
            }
            n_frames = max(counts) if counts else 1
        values: dict[str, torch.Tensor] = {}
        for key, width in POSE_WIDTHS.items():
            if key in arrays and arrays[key] is not None:
                t = tensor(arrays[key]).reshape(-1, width)
                if t.shape[0] == 1 and n_frames > 1:
                    t = t.expand(n_frames, width)
                if t.shape[0] != n_frames:
                    raise ValueError(f"{key} has {t.shape[0]} frames, expected {n_frames}")
                values[key] = t
            else:
                values[key] = torch.zeros(n_frames, width, dtype=dtype, device=device)
        for key, size in (("betas", num_betas), ("expression", num_expression)):
            given = arrays.get(key)
            vec = torch.zeros(size, dtype=dtype, device=device)
            if given is not None:
                g = tensor(given).reshape(-1)[:size]
                vec[: g.shape[0]] = g
            values[key] = vec
        return cls(**values)

    def to(self, device: torch.device | str) -> BodyParams:
        return BodyParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def full_pose(self) -> torch.Tensor:
        """(F, 55, 3) axis-angle in joint order (root, body, jaw, eyes, left hand, right hand)."""
        parts = [
            self.global_orient,
            self.body_pose,
            self.jaw_pose,
            self.leye_pose,
            self.reye_pose,
            self.left_hand_pose,
            self.right_hand_pose,
        ]
        return torch.cat([p.reshape(self.n_frames, -1) for p in parts], dim=1).reshape(-1, NUM_JOINTS, 3)


@dataclass
class BodyOutput:
    """Posed body for F frames (world frame, transl applied)."""

    vertices: torch.Tensor  # (F, V, 3)
    joints: torch.Tensor  # (F, 55, 3)
    transforms: torch.Tensor  # (F, 55, 4, 4) world transform of each joint (see joint_transforms doc)
    extra_joints: torch.Tensor  # (F, 21, 3) smplx's vertex keypoints (nose, eyes, ears, toes, tips)
    landmarks: torch.Tensor  # (F, 51, 3) static face landmarks
    rest_vertices: torch.Tensor = field(repr=False)  # (V, 3) at these betas/expression, unposed
    rest_joints: torch.Tensor = field(repr=False)  # (55, 3)


class BodyModel(torch.nn.Module):
    """SMPL-X body: shape, pose and skin; device follows ``.to(device)`` (CPU by default)."""

    def __init__(self, config: BodyModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or BodyModelConfig()
        path, self.is_standin, pickled = self._resolve_path(self.config)
        self.model_file = path
        options = {
            "model_type": "smplx", "gender": self.config.gender, "use_pca": False,
            "flat_hand_mean": self.config.flat_hand_mean, "num_betas": self.config.num_betas,
            "num_expression_coeffs": self.config.num_expression, "batch_size": 1,
        }  # fmt: skip
        if pickled:  # named by the server's own models.toml (see BodyModelConfig)
            self.smplx = smplx.create(str(path), ext="pkl", **options)
        elif self.is_standin:  # generated by us into the data dir: plain arrays only
            self.smplx = smplx.create(str(path), ext="npz", **options)
        else:
            with tempfile.TemporaryDirectory(prefix="smplx-") as tmp:
                plain = Path(tmp) / path.name
                np.savez(plain, **read_smplx_npz(path))  # smplx itself loads with allow_pickle=True
                self.smplx = smplx.create(str(plain), ext="npz", **options)
        self.register_buffer(
            "extra_vertex_ids",
            torch.tensor(list(EXTRA_VERTEX_IDS.values()), dtype=torch.long),
            persistent=False,
        )
        self._part_labels: np.ndarray | None = None
        self._mirror: np.ndarray | None = None

    @staticmethod
    def _resolve_path(config: BodyModelConfig) -> tuple[Path, bool, bool]:
        """(file, is the stand-in, is a pickle)."""
        if config.gender not in ("neutral", "male", "female"):  # it becomes part of a file name
            raise ValueError(f"unknown gender {config.gender!r}; expected neutral, male or female")
        if config.model_path is None:
            if config.use_registry:
                licensed = _registry_model_file(config.gender, config.data_dir)
                if licensed is not None:
                    return licensed[0], False, licensed[1]
            return ensure_standin(config.gender, config.data_dir), True, False
        path = Path(config.model_path).expanduser()
        if path.is_dir():
            found = [p for p in (path / f"SMPLX_{config.gender.upper()}.npz",
                                 path / "smplx" / f"SMPLX_{config.gender.upper()}.npz") if p.is_file()]
            if not found:
                raise FileNotFoundError(f"no SMPLX_{config.gender.upper()}.npz in {path}")
            path = found[0]
        if not path.is_file():
            raise FileNotFoundError(f"SMPL-X model not found at {path}")
        if path.suffix.lower() == ".pkl":
            if not config.allow_pickle:
                raise ValueError(
                    f"{path}: a .pkl model file is a pickle (loading it runs code); name it in the "
                    "server's models.toml ([models.smplx] path) or use the .npz release"
                )
            return path, False, True
        return path, False, False

    # ---- static facts ------------------------------------------------------------------------
    @property
    def num_betas(self) -> int:
        return int(self.smplx.num_betas)

    @property
    def num_expression(self) -> int:
        return int(self.smplx.num_expression_coeffs)

    @property
    def faces(self) -> np.ndarray:
        """(20908, 3) int64 triangle indices."""
        return np.asarray(self.smplx.faces, dtype=np.int64)

    @property
    def faces_tensor(self) -> torch.Tensor:
        return self.smplx.faces_tensor

    @property
    def joint_names(self) -> tuple[str, ...]:
        return JOINT_NAMES

    @property
    def parents(self) -> np.ndarray:
        """(55,) int64 parent of each joint, -1 for the root."""
        return self.smplx.parents.detach().cpu().numpy().astype(np.int64)

    @property
    def skinning_weights(self) -> torch.Tensor:
        """(V, 55) linear blend skinning weights (rows sum to 1)."""
        return self.smplx.lbs_weights

    @property
    def part_names(self) -> tuple[str, ...]:
        return PART_NAMES

    def part_labels(self) -> np.ndarray:
        """(V,) int32 index into ``part_names`` for each vertex (from the skinning weights)."""
        if self._part_labels is None:
            self._part_labels = part_labels(self.skinning_weights.detach().cpu().numpy())
        return self._part_labels

    def mirror_vertex_index(self) -> np.ndarray:
        """(V,) index of each vertex's left/right mirror image (x -> -x) in the rest pose.

        Found geometrically (nearest mirrored vertex), so it also works for a licensed model; on
        the stand-in, whose mesh is exactly mirror-symmetric, it is an exact involution.
        """
        if self._mirror is None:
            rest = self.smplx.v_template.detach().cpu().numpy().astype(np.float64)
            _, index = cKDTree(rest).query(rest * np.array([-1.0, 1.0, 1.0]))
            self._mirror = np.asarray(index, dtype=np.int64)
        return self._mirror

    # ---- shape -------------------------------------------------------------------------------
    def _coefficients(self, betas: torch.Tensor | None, expression: torch.Tensor | None) -> torch.Tensor:
        ref = self.smplx.v_template

        def padded(values: torch.Tensor | None, size: int) -> torch.Tensor:
            out = torch.zeros(size, dtype=ref.dtype, device=ref.device)
            if values is None:
                return out
            given = torch.as_tensor(values, dtype=ref.dtype, device=ref.device).reshape(-1)[:size]
            return torch.cat([given, out[given.shape[0] :]])  # keeps autograd through ``values``

        return torch.cat([padded(betas, self.num_betas), padded(expression, self.num_expression)])

    def rest_vertices(
        self, betas: torch.Tensor | None = None, expression: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(V, 3) unposed vertices at ``betas`` (and ``expression``); zeros = the template."""
        coeffs = self._coefficients(betas, expression)[None]
        dirs = torch.cat([self.smplx.shapedirs, self.smplx.expr_dirs], dim=-1)
        return (self.smplx.v_template + blend_shapes(coeffs, dirs))[0]

    def rest_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """(55, 3) rest joint positions at ``betas``."""
        return vertices2joints(self.smplx.J_regressor, self.rest_vertices(betas)[None])[0]

    # ---- pose --------------------------------------------------------------------------------
    def forward(self, params: BodyParams, chunk: int = 64) -> BodyOutput:
        """Pose the body for every frame of ``params`` (processed ``chunk`` frames at a time)."""
        rest = self.rest_vertices(params.betas, params.expression)
        joints_rest = vertices2joints(self.smplx.J_regressor, rest[None])[0]
        outs = [
            self._pose(params, rest, joints_rest, s, min(s + chunk, params.n_frames))
            for s in range(0, params.n_frames, chunk)
        ]
        cat = [torch.cat([o[i] for o in outs]) for i in range(4)]
        verts, joints, transforms = cat[0], cat[1], cat[2]
        landmarks = cat[3]
        return BodyOutput(
            vertices=verts,
            joints=joints,
            transforms=transforms,
            extra_joints=verts[:, self.extra_vertex_ids],
            landmarks=landmarks,
            rest_vertices=rest,
            rest_joints=joints_rest,
        )

    def _pose(
        self, params: BodyParams, rest: torch.Tensor, joints_rest: torch.Tensor, start: int, stop: int
    ) -> tuple[torch.Tensor, ...]:
        m = self.smplx
        n = stop - start
        pose = params.full_pose()[start:stop].to(rest.dtype) + m.pose_mean.reshape(1, NUM_JOINTS, 3)
        rot = batch_rodrigues(pose.reshape(-1, 3)).reshape(n, NUM_JOINTS, 3, 3)
        eye = torch.eye(3, dtype=rest.dtype, device=rest.device)
        pose_feature = (rot[:, 1:] - eye).reshape(n, -1)
        v_posed = rest[None] + (pose_feature @ m.posedirs).reshape(n, -1, 3)
        joints, relative = batch_rigid_transform(
            rot, joints_rest[None].expand(n, -1, -1), m.parents, dtype=rest.dtype
        )
        skin = (m.lbs_weights @ relative.reshape(n, NUM_JOINTS, 16)).reshape(n, -1, 4, 4)
        verts = (skin[..., :3, :3] @ v_posed[..., None])[..., 0] + skin[..., :3, 3]
        transl = params.transl[start:stop].to(rest.dtype)[:, None]
        verts = verts + transl
        joints = joints + transl
        world = relative.clone()
        world[..., :3, 3] = joints
        tri = verts[:, m.faces_tensor[m.lmk_faces_idx]]  # (n, 51, 3, 3)
        landmarks = (tri * m.lmk_bary_coords[None, :, :, None]).sum(dim=2)
        return verts, joints, world, landmarks

    def joint_transforms(self, params: BodyParams) -> torch.Tensor:
        """(F, 55, 4, 4) world transform of each joint.

        Each joint's frame is parallel to the world axes in the rest pose (SMPL-X bones carry no
        rest orientation) and sits at the joint; posed, its rotation is the accumulated rotation
        down the chain and its translation the posed joint position (transl included). A vertex
        bound rigidly to joint j moves as ``T_j @ inv(T_j_rest)`` with ``T_j_rest`` the
        translation to the rest joint (see ``rest_joints``).
        """
        return self.forward(params).transforms

    def posed_mesh(self, params: BodyParams) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, V, 3) posed vertices and (F, 55, 4, 4) joint world transforms."""
        out = self.forward(params)
        return out.vertices, out.transforms
