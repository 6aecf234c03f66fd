"""``avatar.from_text`` / ``avatar.from_image`` over a real server: a missing model role fails the job
with the one clear error (role, model, download command); a photo outside the input roots is
refused at submit. (The chain itself on tiny models: tests/generate/test_avatar_chain.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from server_helpers import ServerProcess

from backend.models.registry import ROLES
from protocol import messages as M
from protocol.client import Client, ServerError


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("genjob")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    photo = np.full((64, 64, 3), 200, np.uint8)
    Image.fromarray(photo).save(root / "photo.png")
    Image.fromarray(photo).save(outside / "photo.png")
    (root / "escape.png").symlink_to(outside / "photo.png")
    # A models file that names no diffusion weights, and an empty Hugging Face cache: the
    # base-diffusion role is missing (as on a machine that never ran `models download`).
    (base / "models.toml").write_text("# nothing configured\n")
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def gen_server(roots: dict[str, Path]) -> Iterator[ServerProcess]:
    with pytest.MonkeyPatch.context() as mp:  # the server and its workers inherit this environment
        mp.setenv("HF_HUB_CACHE", str(roots["base"] / "empty-hf-cache"))
        server = ServerProcess(roots["base"] / "data", "--input-root", str(roots["root"]),
                               "--models", str(roots["base"] / "models.toml"), workers=1).start()
    yield server
    server.stop()


@pytest.fixture
def client(gen_server: ServerProcess) -> Iterator[Client]:
    with gen_server.client(timeout=30.0) as c:
        yield c


@pytest.mark.parametrize("kind", ["avatar.from_text", "avatar.from_image"])
def test_missing_base_diffusion_fails_the_job_with_role_model_and_command(
    client: Client, roots: dict[str, Path], kind: str
) -> None:
    params: dict[str, Any] = {"prompt": "a knight", "views": 4, "size": 64, "steps": 2}
    if kind == "avatar.from_image":
        params["image"] = str(roots["root"] / "photo.png")
    view = client.wait(client.submit(kind, params), timeout=120)
    assert view.state == M.FAILED, view.state
    assert view.error["ename"] == "ModelMissingError", view.error
    text = view.error["evalue"]
    default = ROLES["base-diffusion"].default_hub_id
    assert "'base-diffusion'" in text and default in text, text
    assert "`avatar-studio models download base-diffusion`" in text, text
    assert not view.artifacts


def test_photo_outside_the_input_roots_is_refused_at_submit(client: Client, roots: dict[str, Path]) -> None:
    before = len(client.list_jobs())
    answers = set()
    for path in (roots["outside"] / "photo.png", roots["outside"] / "none.png", roots["root"] / "escape.png",
                 Path("../../outside/photo.png")):
        with pytest.raises(ServerError) as err:
            client.submit("avatar.from_image", {"prompt": "a knight", "image": str(path)})
        assert err.value.remote_ename == M.E_BAD_REQUEST
        answers.add(err.value.evalue)
    assert answers == {"params.image: not a readable file inside the server's input roots "
                       "(see `serve --input-root`)"}
    # the photo's keypoints file is confined the same way (inside: accepted at submit)
    (roots["outside"] / "k.json").write_text("{}")
    with pytest.raises(ServerError, match=r"params\.keypoints: not a readable file inside"):
        client.submit("avatar.from_image", {"image": str(roots["root"] / "photo.png"),
                                            "keypoints": str(roots["outside"] / "k.json")})
    with pytest.raises(ServerError, match=r"params\.keypoints: must end with|params\.keypoints: .*\.json"):
        client.submit("avatar.from_image", {"image": str(roots["root"] / "photo.png"),
                                            "keypoints": str(roots["root"] / "photo.png")})
    with pytest.raises(ServerError, match=r"params\.image: required"):
        client.submit("avatar.from_image", {"prompt": "a knight"})
    with pytest.raises(ServerError, match=r"params\.prompt: required"):
        client.submit("avatar.from_text", {"views": 4})
    assert len(client.list_jobs()) == before  # nothing was stored
