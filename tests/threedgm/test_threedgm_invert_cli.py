"""``avatar-studio avatar --invert PHOTO`` (job avatar.from_image_inversion with ``image``) on the
session's tiny run: a real CLI process inverts a photo of a training person (the body fitted to
it), prints the PSNR and the glb; hostile photos and flag mixes are clear errors that write nothing;
a photo outside the server's input roots is refused by the worker's check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend import cli
from backend.jobs.api import JobInputError, get_job_kind
from protocol.kinds import ParamError, parse

REPO = Path(__file__).resolve().parents[2]
KIND = "avatar.from_image_inversion"
# the avatar stages of test_threedgm_jobs.py (grid 24 keeps the surface of a 20-step model)
SMALL_FLAGS = ["--num-views", "4", "--size", "64", "--grid", "24", "--init-iters", "30", "--iters", "15",
               "--texture-size", "64", "--texture-iters", "5"]
PSNR_LINE = re.compile(r"inversion of view 'photo': PSNR ([0-9.]+) dB \(pivot ([0-9.]+) dB")


@pytest.fixture(scope="module")
def photo(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training item 0 as a photo: its 32 px crop (RGBA, alpha = the person's mask) at 128 px."""
    item = data[0]
    rgb = ((item["image"].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    rgba = np.concatenate([rgb, item["mask"][0].numpy()[..., None]], -1)
    path = tmp_path_factory.mktemp("invert-photo") / "person.png"
    image = Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")
    image.resize((128, 128), Image.BILINEAR).save(path)
    return path


def test_cli_process_inverts_a_photo(tiny_run: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "avatar"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AVATAR_STUDIO_DATA_DIR": str(tmp_path / "data")}
    argv = [sys.executable, "-m", "backend.cli", "avatar", "--invert", str(photo),
            "--checkpoint", str(tiny_run), "--out", str(out), "--w-steps", "40", "--tune-steps", "60",
            *SMALL_FLAGS]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=str(REPO), env=env)
    assert done.returncode == 0, done.stderr
    found = PSNR_LINE.search(done.stdout)
    assert found is not None, done.stdout
    psnr, pivot = float(found.group(1)), float(found.group(2))
    # measured 26.97 dB (pivot 20.84) on the whole crop; the tuning must improve on the pivot
    assert psnr >= 22.0 and psnr > pivot, done.stdout
    glb = out / "avatar.glb"
    assert f"rigged avatar: {glb}" in done.stdout
    assert glb.read_bytes()[:4] == b"glTF"
    assert (out / "sample" / "views" / "views.json").is_file() and (out / "avatar_arrays.npz").is_file()
    # every stage's first line is printed (later ones at most once a second: how many depends on speed)
    for stage in ("load", "fit", "invert", "render", "export"):
        assert f"] {stage}: " in done.stderr, (stage, done.stderr)
    assert "body fitted to the photo: silhouette IoU" in done.stdout


def test_cli_inverts_a_views_folder(tiny_run: Path, data, tmp_path: Path, capsys: Any) -> None:
    """A folder is the job's target (its camera and SMPL-X, no fit): --target-view picks the view."""
    import json

    import torch

    from backend.avatar.io.views import View, ViewSet, write_views
    from protocol.cameras import CameraFrame

    item = data[0]
    S = item["image"].shape[-1]
    rgb = ((item["image"].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    rgba = np.concatenate([rgb, item["mask"][0].numpy()[..., None]], -1).astype(np.float32)
    camera = CameraFrame.from_payload({"K": item["K"].double().tolist(), "R": item["R"].double().tolist(),
                                       "t": item["t"].double().tolist(), "width": S, "height": S,
                                       "near": 0.05, "far": 100.0})
    smplx = {k: v.numpy().tolist() for k, v in item["params"].items()}
    write_views(tmp_path / "target", ViewSet([View("front", camera, rgba)], smplx=smplx))
    out = tmp_path / "avatar"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli.main(["avatar", "--invert", str(tmp_path / "target"), "--target-view", "front",
                         "--checkpoint", str(tiny_run), "--out", str(out), "--w-steps", "40", "--tune-steps",
                         "60", *SMALL_FLAGS, "--json"])
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads(captured.out)["threedgm"]
    # measured 30.89 dB (pivot 24.30): the exact camera and body invert better than a fitted photo
    assert info["target_view"] == "front" and info["psnr_db"] >= 25.0 and "body_fit" not in info, info
    assert (out / "avatar.glb").read_bytes()[:4] == b"glTF"


def _refused(argv: list[str], capsys: Any, out: Path) -> str:
    assert cli.main(["avatar", *argv, "--out", str(out), *SMALL_FLAGS]) == 2
    assert not out.exists(), "an error must leave no output"
    return capsys.readouterr().err


def test_cli_refuses_hostile_photos(tiny_run: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "avatar"
    run = ["--checkpoint", str(tiny_run)]
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture at all\n")
    assert "params.image: not a readable image" in _refused(["--invert", str(junk), *run], capsys, out)
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 9000)).save(huge)  # 81 MP in a few kB: refused from its header, never decoded
    assert "params.image: 9000x9000 is over 64000000 pixels" in _refused(["--invert", str(huge), *run],
                                                                          capsys, out)
    missing = tmp_path / "nowhere.png"
    assert "no such file or folder" in _refused(["--invert", str(missing), *run], capsys, out)
    not_a_run = tmp_path / "empty-run"
    not_a_run.mkdir()
    assert "not a 3DGM run" in _refused(["--invert", str(huge), "--checkpoint", str(not_a_run)], capsys, out)


def test_cli_invert_is_one_source(tiny_run: Path, photo: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "avatar"
    base = ["--invert", str(photo), "--checkpoint", str(tiny_run)]
    for extra, flag in ((["--prompt", "a knight"], "--prompt"), (["--from-noise"], "--from-noise"),
                        (["--views", str(tmp_path)], "--views"), (["--image", str(photo)], "--image")):
        err = _refused([*base, *extra], capsys, out)
        assert f"--invert takes no {flag}" in err, err
    assert "--invert needs --checkpoint" in _refused(["--invert", str(photo)], capsys, out)
    err = _refused([*base, "--target-view", "front"], capsys, out)
    assert "--target-view is for --invert VIEWS_DIR" in err


def test_job_takes_target_or_image(tiny_run: Path, photo: Path, tmp_path: Path) -> None:
    run = get_job_kind(KIND).load()
    ctx = _Quiet(tmp_path)
    with pytest.raises(JobInputError, match=r"give target .* or image"):
        run({"checkpoint": str(tiny_run)}, ctx)
    with pytest.raises(JobInputError, match=r"give target .* or image"):
        run({"checkpoint": str(tiny_run), "image": str(photo), "target": str(tmp_path)}, ctx)


def test_photo_outside_the_input_roots_is_refused(photo: Path, tmp_path: Path) -> None:
    """The worker's check (the answer that counts): a photo outside the roots, or a link inside
    them leading out, is the one refusal naming params.image; inside, it is a confined file."""
    from backend.jobs.confine import InputRoots

    data_dir = tmp_path / "backend-data"
    inputs = data_dir / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "run").mkdir()
    roots = InputRoots.for_server(data_dir)
    for image in (photo, inputs / "link.png"):
        if image.parent == inputs:
            image.symlink_to(photo)
        with pytest.raises(ParamError, match=r"params\.image: not a readable file inside the server's input"):
            parse(KIND, {"checkpoint": str(inputs / "run"), "image": str(image)}, roots.resolve)
    (inputs / "photo.png").write_bytes(photo.read_bytes())
    inside = {"checkpoint": str(inputs / "run"), "image": str(inputs / "photo.png")}
    typed = parse(KIND, inside, roots.resolve)
    assert typed.image.read_bytes() == photo.read_bytes() and typed.target is None


class _Quiet:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


def test_confined_photo_over_the_byte_limit(tiny_run: Path, photo: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """As the worker runs it (params confined to the roots): a photo over the byte limit is one
    error naming params.image, read through the confined file (never past the limit)."""
    import shutil

    from backend.jobs import threedgm_photo
    from backend.jobs.confine import InputRoots

    data_dir = tmp_path / "backend-data"
    inputs = data_dir / "inputs"
    shutil.copytree(tiny_run, inputs / "run")
    shutil.copy(photo, inputs / "photo.png")
    typed = parse(KIND, {"checkpoint": str(inputs / "run"), "image": str(inputs / "photo.png")},
                  InputRoots.for_server(data_dir).resolve)
    monkeypatch.setattr(threedgm_photo, "MAX_PHOTO_BYTES", 100)
    with pytest.raises(JobInputError, match=r"^params\.image: larger than 100 bytes$"):
        get_job_kind(KIND).load()(typed, _Quiet(tmp_path / "work"))
