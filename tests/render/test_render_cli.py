"""``avatar-studio preview`` end to end (in-process argparse, real body, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from backend.commands.preview import main
from protocol.cameras import orbit_path


def test_preview_command_writes_sequences(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["preview", "--motion", "turn", "--cameras", "orbit:2", "--frames", "2", "--size", "40x56",
                 "--passes", "rgb,mask", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 2 and summary["width"] == 40 and summary["height"] == 56
    assert iio.imread(out / "mask" / "0002.png").shape == (56, 40)
    assert (out / "rgb.mp4").stat().st_size > 0
    arrays = np.load(out / "preview_arrays.npz")
    assert arrays["camera_K"].shape == (2, 3, 3)
    assert json.loads((out / "preview.json").read_text())["frames"] == 2


def test_preview_command_with_camera_file_and_bad_input(tmp_path: Path, capsys) -> None:
    cams = tmp_path / "cams.json"
    cams.write_text(orbit_path(1, radius=3.0, target=(0.0, -0.3, 0.0), width=32, height=32).to_json())
    assert main(["preview", "--cameras", str(cams), "--passes", "mask", "--no-mp4",
                 "--out", str(tmp_path / "a")]) == 0
    assert iio.imread(tmp_path / "a" / "mask" / "0001.png").max() == 255
    assert main(["preview", "--motion", "moonwalk", "--out", str(tmp_path / "b")]) == 2
    assert "moonwalk" in capsys.readouterr().err
    assert main(["preview", "--cameras", str(tmp_path / "missing.json"), "--out", str(tmp_path / "c")]) == 2
