"""footage.decompose over a real server (sockets, the contract's path hook, a worker process, the
artifact store): the template comes back as the job's artifacts, the camera as arrays; a masks
folder whose file is a symlink out of the input roots is read without it (a clear count error)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from decompose_plate import make_plate
from PIL import Image

from protocol import messages as M
from protocol.client import Client

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "server"))
from server_helpers import ServerProcess  # noqa: E402


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("decompose-server")
    root, outside = base / "root", base / "outside"
    plate = make_plate(n=4, h=48, w=64, focal=60.0)
    for folder in (root / "plate", root / "masks", root / "masks-escape", outside):
        folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(plate.frames[i]).save(root / "plate" / f"{i + 1:04d}.png")
        mask = Image.fromarray((plate.mask[i] * 255).astype(np.uint8))
        mask.save(root / "masks" / f"{i + 1:04d}.png")
        if i < 3:
            mask.save(root / "masks-escape" / f"{i + 1:04d}.png")
    mask.save(outside / "0004.png")
    (root / "masks-escape" / "0004.png").symlink_to(outside / "0004.png")
    return {"base": base, "root": root, "plate": plate}


@pytest.fixture(scope="module")
def server(shot: dict) -> Iterator[ServerProcess]:
    srv = ServerProcess(shot["base"] / "data", "--input-root", str(shot["root"]), workers=1).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with server.client(timeout=30.0) as c:
        yield c


def _camera(plate) -> dict:
    h, w = plate.frames.shape[1:3]
    return {"K": plate.K, "R": plate.R, "t": plate.t, "width": w, "height": h}


def test_decompose_job_over_the_server(client: Client, shot: dict) -> None:
    plate = shot["plate"]
    params = {"video": str(shot["root"] / "plate"), "person_masks": str(shot["root"] / "masks"),
              "camera": _camera(plate)}
    job_id = client.submit("footage.decompose", params)
    fractions = [e.content["fraction"] for e in client.events(job_id, timeout=300)
                 if e.type == M.JOB_PROGRESS]
    view = client.jobs[job_id]
    assert view.state == M.SUCCEEDED, view.error
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert view.data["people"] == "masks" and view.data["frames"] == 4 and view.data["folder"] == "template"
    names = {a["name"] for a in view.artifacts}
    expected = {f"template/{layer}/{k:06d}.png" for layer in ("video", "masks", "human", "scene")
                for k in range(1, 5)} | {"template/config.json", "camera_K", "camera_R", "camera_t"}
    assert names == expected
    np.testing.assert_allclose(client.get_artifact(job_id, "camera_R"), plate.R)
    scene = np.asarray(Image.open(io.BytesIO(client.get_artifact(job_id, "template/scene/000002.png"))))
    person = plate.mask[1] > 0
    assert np.array_equal(scene[person], plate.background[1][person])  # static: exact


def test_a_symlink_out_of_the_roots_is_not_read(client: Client, shot: dict) -> None:
    params = {"video": str(shot["root"] / "plate"), "person_masks": str(shot["root"] / "masks-escape")}
    job_id = client.submit("footage.decompose", params)
    for _ in client.events(job_id, timeout=300):
        pass
    view = client.jobs[job_id]
    assert view.state == M.FAILED
    text = view.error["evalue"]
    assert text == "person_masks: masks-escape holds 3 masks, the job uses 4 frames (footage frames 1-4)"
    assert not view.artifacts
