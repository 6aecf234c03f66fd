"""The same AMASS files load to the same frames in Blender and on the backend (issue 10: one AMASS
reader in numpy, ``protocol/amass.py``, used by both sides).

The backend side runs in its own environment (``.venv``, a subprocess): it writes AMASS files of
the three layouts (SMPL-X, SMPL+H, plain SMPL) with plain numpy in AMASS's key layouts
(tests/body/test_amass.py's writer), loads them with ``backend.body.motion`` and resamples them
from 60 to 24 fps (2.5 source frames per output frame: slerp, not a nearest frame). This side loads
the same files through the add-on (``blender_addon.motion_io``, Blender's numpy, no scipy) and,
through the *Load AMASS Motion* operator, deforms a rig whose Blender mesh must equal SMPL-X
skinning driven by the backend's frames.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import REPO_ROOT, backend_python  # noqa: E402
from test_addon_rig import C, evaluated_vertices, smplx_lbs, synthetic_body  # noqa: E402

from blender_addon import motion_io, props, rig_math  # noqa: E402
from blender_addon.importers.body_mesh import import_body_mesh  # noqa: E402
from blender_addon.wire import messages  # noqa: E402

LAYOUTS = ("smplx", "smplh", "smpl")
SOURCE_FPS, TARGET_FPS, FRAMES = 60.0, 24.0, 31  # 0.5 s -> 13 frames at 24 fps
BODY_SEED = 5

BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np

    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    frames, fps, target = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    sys.path[:0] = [str(repo), str(repo / "tests" / "body")]
    from test_amass import write_layout

    from backend.body.motion import load_amass, resample

    pelvis = np.array([float(v) for v in sys.argv[6:9]])
    results = {}
    for seed, layout in enumerate(("smplx", "smplh", "smpl")):
        path = out / f"{layout}.npz"
        write_layout(path, layout, n=frames, fps=fps, seed=seed)
        motion = resample(load_amass(path, rest_pelvis=pelvis), target)
        results[f"{layout}_pose"] = motion.full_pose()
        results[f"{layout}_transl"] = motion.transl
        results[f"{layout}_fps"] = np.array(motion.fps)
        assert "torch" not in sys.modules  # the reader is numpy only on this side too
    np.savez(out / "backend.npz", **results)
    """
)


@pytest.fixture(scope="module")
def backend_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """AMASS files written by the backend's environment and the frames its reader made of them."""
    out = tmp_path_factory.mktemp("amass")
    pelvis = synthetic_body(seed=BODY_SEED)["joints_rest"][0]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    numbers = [FRAMES, SOURCE_FPS, TARGET_FPS, *pelvis.tolist()]
    result = subprocess.run(
        [backend_python(), "-c", BACKEND_SCRIPT, str(REPO_ROOT), str(out), *map(repr, numbers)],
        cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out / "backend.npz") as data:
        return out, {key: data[key] for key in data.files}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_addon_and_backend_read_the_same_frames(backend_frames, layout: str) -> None:
    folder, backend = backend_frames
    pelvis = synthetic_body(seed=BODY_SEED)["joints_rest"][0]
    loaded = motion_io.load_amass(folder / f"{layout}.npz", rest_pelvis=pelvis)
    motion = motion_io.resample(loaded, TARGET_FPS)
    assert motion.source_model == layout and sys.modules.get("scipy") is None
    assert motion.n_frames == len(backend[f"{layout}_pose"]) == 13
    assert motion.fps == float(backend[f"{layout}_fps"]) == TARGET_FPS
    np.testing.assert_allclose(
        rig_math.aa_to_matrix(motion.pose), rig_math.aa_to_matrix(backend[f"{layout}_pose"]), atol=1e-12
    )
    np.testing.assert_allclose(motion.transl, backend[f"{layout}_transl"], atol=1e-12)


@pytest.mark.parametrize("layout", ["smpl", "smplh"])
def test_load_amass_operator_plays_the_backends_frames(clean_scene, backend_frames, layout: str) -> None:
    """Plain SMPL used to be refused by the add-on, and its nearest-frame resampling differed from
    the backend's slerp; now Blender's deformed mesh is SMPL-X skinning of the backend's frames."""
    folder, backend = backend_frames
    body = synthetic_body(seed=BODY_SEED)
    arm_obj, mesh_obj = import_body_mesh(body, {}, name="Amass")
    scene = clean_scene
    scene.render.fps, scene.render.fps_base = int(TARGET_FPS), 1.0
    scene.frame_current = 1
    bpy.context.view_layer.objects.active = arm_obj
    assert bpy.ops.avatar_studio.load_amass(filepath=str(folder / f"{layout}.npz")) == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (1, 13)
    for index in (1, 6, 12):  # source frames 2.5, 15 and 30: in between and on a source frame
        scene.frame_set(1 + index)
        expected = smplx_lbs(
            body["rest_vertices"],
            body["joints_rest"],
            body["weights"].astype(np.float64),
            backend[f"{layout}_pose"][index],
            backend[f"{layout}_transl"][index],
        )
        np.testing.assert_allclose(evaluated_vertices(mesh_obj), expected @ C.T, atol=2e-5)


def test_addon_job_states_are_the_protocols(avatar_addon) -> None:
    assert props.TERMINAL_STATES is messages.TERMINAL_STATES
    assert set(messages.JOB_STATES) <= {item[0] for item in props.JOB_STATE_ITEMS}
