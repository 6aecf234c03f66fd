"""Contracts of the 3DGM avatar kinds (issue 14; docs/threedgm.md): ``avatar.from_noise`` draws an
avatar from a trained 3DGM run (seed, truncation), ``avatar.from_image_inversion`` reconstructs
one from a single view by pivotal tuning inversion (PTI). Both render K views on a ring around the
body, extract a mesh from the density, then run the avatar.from_views pipeline (sculpt, texture,
rig) on those views: the result is avatar.from_views' plus the 3DGM files. :mod:`protocol.kinds`
adds these contracts to ``KINDS``.
"""

from __future__ import annotations

from dataclasses import replace

from .kind_types import REQUIRED, Enum, Float, Int, JobContract, Param, PathParam, Result, Str
from .payloads import PHOTO_FILE

# The avatar.from_views params that are not its input (views / synthetic): the stage knobs.
_FROM_VIEWS_INPUTS = ("views", "synthetic")


def _common(from_views: JobContract) -> tuple[Param, ...]:
    return (
        Param("checkpoint", PathParam("dir"), REQUIRED,
              "a run folder `avatar-studio 3dgm train` wrote (checkpoint.pt + config.json), inside "
              "the input roots; its EMA generator is used"),
        Param("views", Int(1, 32), 8, "views rendered on a ring around the body, the first in front"),
        Param("size", Int(32, 1024), 256,
              "view side in pixels the renders are upsampled to for the avatar pipeline"),
        Param("mesh_resolution", Int(16, 256), 64, "marching-cubes grid side over the canonical body"),
        Param("init_shape", Enum(("density", "body")), "density",
              "the sculpting's starting shape: the density's marching-cubes mesh, or the SMPL-X body"),
        *(_knob(p) for p in from_views.params if p.name not in _FROM_VIEWS_INPUTS),
    )


def _knob(p: Param) -> Param:
    # The renders carry the density's normal maps (backend/threedgm/normals.py), but a young model's
    # are near random (a 400-step tiny run: 80 deg mean error) and their loss collapsed a tiny
    # model's sculpt: mask-only by default, the normal maps on request ("views").
    if p.name == "normals":
        return replace(p, default="none",
                       help="normal supervision; 'views' uses the density's normal maps the 3DGM renders "
                            "carry (worth it once `backend.metrics.threedgm_normals` shows them accurate)")
    return p


def _result(from_views: JobContract) -> Result:
    return Result(
        data=(*from_views.result.data,
              ("threedgm", "run, checkpoint step, seed / truncation or inversion PSNR, mesh size, seconds"),
              ("sample_folder", '"sample": the artifacts under it are the 3DGM sample folder')),
        arrays=from_views.result.arrays,
        files=(*from_views.result.files,
               ("sample/views/views.json, sample/views/rgba/<name>.png",
                "the rendered views (docs/avatar.md)"),
               ("sample/mesh.obj", "the density's marching-cubes mesh, posed as the views"),
               ("sample/mesh_canonical.obj", "the same in the canonical (rest) body"),
               ("sample/sample.json", "settings and numbers")),
    )


def threedgm_contracts(from_views: JobContract) -> list[JobContract]:
    noise = JobContract(
        "avatar.from_noise",
        "A random avatar from a trained 3DGM run (docs/threedgm.md): w drawn from the seed and "
        "truncated towards the mean avatar, rendered on a ring, a mesh from the density, then the "
        "avatar.from_views pipeline (sculpt, texture, rig).",
        (
            *_common(from_views)[:1],
            Param("seed", Int(0, 2**53 - 1), 0, "same seed and checkpoint, same avatar"),
            Param("truncation", Float(0.0, 2.0), 0.7,
                  "psi: w = w_avg + psi (w - w_avg); 0 = the mean avatar"),
            *_common(from_views)[1:],
        ),
        _result(from_views),
    )
    inversion = JobContract(
        "avatar.from_image_inversion",
        "An avatar reconstructed from one view by pivotal tuning inversion of a trained 3DGM run "
        "(latent optimisation, then generator tuning around the pivot; docs/threedgm.md), rendered "
        "on a ring, then the avatar.from_views pipeline.",
        (
            *_common(from_views)[:1],
            Param("target", PathParam("dir"), None,
                  "a views folder (docs/avatar.md) with the image: RGBA (alpha = the person's mask), "
                  "its camera and the body's SMPL-X parameters, e.g. a front render of our clips; "
                  "give target or image"),
            Param("target_view", Str(128), None, "the view of target inverted (default: the first)"),
            # A photo has no camera nor body: both come from avatar.from_image's body fit.
            Param("image", PHOTO_FILE, None,
                  "a photo instead of target (alpha = the mask, else the mask from its background): "
                  "the body is fitted to it in the photo_fov camera (with <stem>.keypoints.json beside it "
                  "when there is one, else the pose-estimator role when present, else the silhouette)"),
            Param("photo_fov", Float(5.0, 120.0), 40.0, "image: its vertical field of view, degrees"),
            Param("w_steps", Int(0, 10_000), 200, "latent optimisation steps"),
            Param("tune_steps", Int(0, 10_000), 200, "pivotal tuning steps"),
            *_common(from_views)[1:],
        ),
        _result(from_views),
    )
    return [noise, inversion]
