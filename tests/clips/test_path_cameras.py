"""The spec's "path" camera kind: explicit (e.g. Blender) cameras, kept exactly, sampling nothing."""

from __future__ import annotations

import numpy as np
import pytest

from backend.clips.sample import plan_clip
from backend.clips.spec import ClipSpec, SpecError
from protocol.cameras import orbit_path

PATH = orbit_path(3, radius=4.0, width=48, height=32)
BASE = {"frames": 3, "width": 48, "height": 32, "seed": 5}


def test_a_path_camera_is_kept_exactly_and_draws_nothing() -> None:
    with_path = ClipSpec.parse({**BASE, "cameras": ["ring:2", {"kind": "path", "path": PATH.to_payload()}]})
    without = ClipSpec.parse({**BASE, "cameras": ["ring:2"]})
    assert ClipSpec.parse(with_path.to_json_dict()) == with_path  # the JSON round trip (workers, resume)
    a, b = plan_clip(with_path, 0), plan_clip(without, 0)
    assert [c.name for c in a.cameras] == ["cam_00", "cam_01", "cam_02"] and a.cameras[2].kind == "path"
    for key in ("K", "R", "t"):
        np.testing.assert_array_equal(getattr(a.cameras[2], key), getattr(PATH, key))
        for i in range(2):  # the sampled rig is the same with or without the path camera
            np.testing.assert_array_equal(getattr(a.cameras[i], key), getattr(b.cameras[i], key))


@pytest.mark.parametrize("camera, message", [
    ("path:1", "is not KIND:N with KIND one of ring, orbit, handheld, dolly"),
    ({"kind": "path"}, "cameras[0].path: camera path payload lacks K, R, t, width, height"),
    ({"kind": "path", "count": 2, "path": PATH.to_payload()}, "a path camera is"),
    ({"kind": "ring", "path": PATH.to_payload()}, "a path camera is"),
    ({"kind": "path", "path": {**PATH.to_payload(), "R": PATH.R * 2}}, "R must be rotation matrices"),
    ({"kind": "path", "path": orbit_path(4, width=48, height=32).to_payload()},
     "cameras[0].path: 4 frames of 48x32, the spec renders 3 of 48x32"),
])
def test_bad_path_cameras_name_the_field(camera: object, message: str) -> None:
    with pytest.raises(SpecError) as err:
        ClipSpec.parse({**BASE, "cameras": [camera]})
    assert message in str(err.value)
