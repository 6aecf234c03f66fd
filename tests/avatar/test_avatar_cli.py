"""`avatar-studio avatar --views DIR --out DIR` as a user runs it: a subprocess on a views folder
that `avatar make-synthetic` wrote (tiny settings, so it takes seconds). The command reads a local
folder (no input-root confinement: that is the server's rule for params sent by clients)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_avatar_command_builds_from_a_local_views_folder(tmp_path: Path) -> None:
    views = tmp_path / "views"
    made = _cli("avatar", "make-synthetic", "--out", str(views), "--resolution", "128", "--no-hair")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "avatar"
    built = _cli("avatar", "--views", str(views), "--out", str(out), "--grid", "36", "--iters", "5",
                 "--init-iters", "20", "--texture-size", "64", "--texture-iters", "1", "--json")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["vertices"] > 0 and summary["faces"] > 0
    for name in ("avatar.glb", "avatar.obj", "avatar.png", "avatar.json"):
        assert (out / name).stat().st_size > 0, name
    # The 4 views marked "split": "test" are scored on the avatar, in the summary and avatar.json.
    scored = summary["test_views"]
    assert [row["name"] for row in scored["views"]] == ["test00", "test01", "test02", "test03"]
    for row in scored["views"]:
        assert 8.0 < row["psnr_masked_db"] < 60.0 and 0.0 < row["ssim_masked"] <= 1.0
        assert 0.6 < row["mask_iou"] <= 1.0  # a 5-iteration sculpt still covers the person
    assert scored["mean"]["mask_iou"] == sum(r["mask_iou"] for r in scored["views"]) / 4
    assert json.loads((out / "avatar.json").read_text())["test_views"] == scored


def test_test_split_scores_are_printed(tmp_path: Path) -> None:
    """The text output lists each held-out view's PSNR/SSIM inside the masks and mask IoU."""
    views = tmp_path / "views"
    made = _cli("avatar", "make-synthetic", "--out", str(views), "--resolution", "64", "--no-hair",
                "--no-skirt")
    assert made.returncode == 0, made.stderr
    built = _cli("avatar", "--views", str(views), "--out", str(tmp_path / "a"), "--grid", "16",
                 "--iters", "2", "--init-iters", "10", "--texture-size", "32", "--texture-iters", "1")
    assert built.returncode == 0, built.stderr
    lines = [ln for ln in built.stdout.splitlines() if "held-out" in ln]
    assert len(lines) == 5 and lines[0].strip().startswith("held-out test00: PSNR")
    assert "mask IoU" in lines[-1] and "held-out mean (4 views)" in lines[-1]


def test_avatar_command_refuses_an_out_of_range_knob_naming_it(tmp_path: Path) -> None:
    done = _cli("avatar", "--views", str(tmp_path), "--out", str(tmp_path / "o"), "--grid", "4")
    assert done.returncode == 2 and "grid" in done.stderr
