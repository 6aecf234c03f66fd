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


def test_avatar_command_refuses_an_out_of_range_knob_naming_it(tmp_path: Path) -> None:
    done = _cli("avatar", "--views", str(tmp_path), "--out", str(tmp_path / "o"), "--grid", "4")
    assert done.returncode == 2 and "grid" in done.stderr
