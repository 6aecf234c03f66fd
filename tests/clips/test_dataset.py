"""Writers and the driver: COCO file, determinism across workers, resume after a kill, bad specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main
from backend.clips.coco import rle_decode, rle_encode
from backend.clips.dataset import render_dataset
from backend.clips.spec import ClipSpec, SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]
TINY = {"clips": 3, "frames": 2, "width": 40, "height": 32, "seed": 7, "people": {"count": [1, 2]},
        "cameras": ["ring:1", "handheld:1"], "motion": {"sources": ["walk", "turn"]}}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_coco_file_loads_with_pycocotools_and_matches_the_manifest(dataset: Path) -> None:
    # A dev dependency (pyproject, installed by scripts/bootstrap.sh): a missing install fails here.
    from pycocotools.coco import COCO

    manifest = json.loads((dataset / "manifest.json").read_text())
    coco = COCO(str(dataset / manifest["coco"]))
    clips = manifest["clips"]
    n_images = sum(c["frames"] * len(c["cameras"]) for c in clips)
    assert len(coco.getImgIds()) == n_images == manifest["counts"]["images"]
    assert len(coco.getAnnIds()) == manifest["counts"]["annotations"] > 0
    assert coco.loadCats(coco.getCatIds())[0]["keypoints"][0] == "nose"
    for ann in coco.loadAnns(coco.getAnnIds())[:12]:
        image = coco.loadImgs(ann["image_id"])[0]
        assert (dataset / image["file_name"]).is_file()
        instance = np.load(dataset / "clips" / image["clip"] / image["camera"] / "instance.npy")
        expected = instance[image["frame"]] == ann["person"] + 1
        assert (coco.annToMask(ann).astype(bool) == expected).all()
        assert ann["area"] == expected.sum() and len(ann["keypoints"]) == 51
        assert set(ann["keypoints"][2::3]) <= {0, 1, 2}
        assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool), np.zeros((2, 2), bool)):
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size and (rle_decode(rle) == mask).all()


def test_same_seed_same_files_with_one_and_two_workers(tmp_path: Path) -> None:
    spec = ClipSpec.parse(TINY)
    render_dataset(spec, tmp_path / "one", workers=1)
    render_dataset(spec, tmp_path / "two", workers=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 20
    assert [k for k in one if one[k] != two[k]] == []
    other = ClipSpec.parse({**TINY, "seed": 8})
    render_dataset(other, tmp_path / "other")
    assert _files(tmp_path / "other")["clips/000000/people.npz"] != one["clips/000000/people.npz"]


def test_a_killed_run_resumes_without_rerendering_finished_clips(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "backend", "clips", "render", "--people", "2", "--motion", "walk",
               "--cameras", "ring:2", "--frames", "6", "--clips", "6", "--size", "96x96", "--seed", "1",
               "--out", str(out), "--json"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "clips" / "000000").is_dir():
            assert proc.poll() is None and time.monotonic() < deadline, "the first clip never appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = sorted(p.name for p in (out / "clips").iterdir() if not p.name.startswith("."))
    assert 1 <= len(done) < 6 and not (out / "manifest.json").exists()
    stamps = {p: p.stat().st_mtime_ns for name in done for p in (out / "clips" / name).rglob("*")}
    for name in done:  # every finished clip is complete
        assert (out / "clips" / name / "clip.json").is_file()
    rendered: list[str] = []
    spec = load_spec(out / "spec.json")
    manifest = render_dataset(spec, out,
                              on_clip=lambda cid, skipped: rendered.append(cid) if not skipped else None)
    assert sorted(rendered) == [f"{i:06d}" for i in range(len(done), 6)]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished clips untouched
    assert [c["id"] for c in manifest["clips"]] == [f"{i:06d}" for i in range(6)]
    assert not list((out / "clips").glob(".tmp-*"))
    # the CLI run of the same command finds nothing to do and keeps the same manifest
    before = (out / "manifest.json").read_bytes()
    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0
    assert (out / "manifest.json").read_bytes() == before


@pytest.mark.parametrize(("change", "message"), [
    ({"motion": {"sources": ["missing_clip.npz"]}}, "motion file not found"),
    ({"motion": {"sources": ["moonwalk"]}}, "unknown motion"),
    ({"cameras": []}, "at least one camera"),
    ({"cameras": ["ring:0"]}, "cameras[0]"),
    ({"width": -4}, "width"),
    ({"people": {"count": [5, 5]}}, "people.count"),
    ({"people": {"count": [4, 4], "area": 0.2}}, "cannot place person"),
    ({"colour": "red"}, "unknown field"),
    ({"format": "something.else"}, "format"),
])
def test_bad_specs_error_clearly_and_write_nothing(tmp_path: Path, change: dict, message: str) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**TINY, **change}))
    out = tmp_path / "out"
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        render_dataset(load_spec(spec_file), out)
    assert not out.exists()


def test_cli_bad_spec_exit_status_and_foreign_folder(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["clips", "render", "--cameras", "ring:0", "--out", str(out)]) == 2
    assert "ring:0" in capsys.readouterr().err and not out.exists()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**TINY, "clips": 1, "passes": ["instance"]}))
    assert main(["clips", "render", "--spec", str(spec_file), "--frames", "3", "--out", str(out)]) == 2
    assert "exclude each other" in capsys.readouterr().err and not out.exists()
    assert main(["clips", "render", "--spec", str(spec_file), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"clips": 1, "images": 4,
                                                                            "annotations": 4}
    assert sorted(p.name for p in (out / "clips" / "000000" / "cam_01").iterdir()) == [
        "annotations.npz", "camera.npz", "instance.npy"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="not a clips dataset"):
        render_dataset(ClipSpec.parse(TINY), foreign)


def test_spec_json_round_trip() -> None:
    spec = ClipSpec.parse(TINY)
    again = ClipSpec.parse(json.loads(json.dumps(spec.to_json_dict())))
    assert again == spec and spec.n_cameras == 2


def test_png_writer_round_trips_through_pillow(tmp_path: Path) -> None:
    from PIL import Image

    from backend.clips.png import write_rgb_png

    rng = np.random.default_rng(1)
    for image in (rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), np.zeros((1, 1, 3), np.uint8),
                  np.full((3, 300, 3), 255, np.uint8)):
        write_rgb_png(tmp_path / "a.png", image)
        assert (np.asarray(Image.open(tmp_path / "a.png").convert("RGB")) == image).all()
    write_rgb_png(tmp_path / "b.png", np.array([[[0.0, 0.5, 1.0]]], np.float32))
    assert np.asarray(Image.open(tmp_path / "b.png")).tolist() == [[[0, 128, 255]]]
