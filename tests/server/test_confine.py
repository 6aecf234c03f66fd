"""backend/jobs/confine.py: where a job may read (unit level; the live-server tests are in
test_params_security.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.jobs.confine import InputRoots, private_copy
from protocol.kinds import ParamError, PathParam

FILE, DIR = PathParam("file", (".npz",)), PathParam("dir")


@pytest.fixture
def roots(tmp_path: Path) -> InputRoots:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.npz").write_bytes(b"secret")
    return InputRoots.for_server(tmp_path / "data", [tmp_path / "root"])


def test_roots_are_the_inputs_dir_and_the_given_ones(
    roots: InputRoots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, root = os.path.realpath(tmp_path / "data" / "inputs"), os.path.realpath(tmp_path / "root")
    assert roots.roots == (inputs, root)
    monkeypatch.setenv("AVATAR_STUDIO_INPUT_ROOTS", roots.to_env())  # what workers get
    assert InputRoots.from_env(tmp_path / "data").roots == (inputs, root)


def test_a_file_swapped_for_a_link_after_the_check_is_not_read(roots: InputRoots, tmp_path: Path) -> None:
    clip = tmp_path / "root" / "clip.npz"
    clip.write_bytes(b"clip")
    confined = roots.resolve(str(clip), "params.motion", FILE)
    assert confined.read_bytes() == b"clip"
    clip.unlink()
    clip.symlink_to(tmp_path / "outside" / "secret.npz")  # swapped between check and read
    with pytest.raises(ParamError, match="no longer a readable file"):
        confined.read_bytes()


def test_a_folder_copy_leaves_out_what_leads_outside(roots: InputRoots, tmp_path: Path) -> None:
    views = tmp_path / "root" / "views"
    (views / "rgba").mkdir(parents=True)
    (views / "views.json").write_text("{}")
    (views / "rgba" / "a.png").write_bytes(b"png")
    (views / "rgba" / "leak.png").symlink_to(tmp_path / "outside" / "secret.npz")
    (views / "out").symlink_to(tmp_path / "outside")
    (views / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(views / "fifo")  # not a regular file: left out, and never blocks the copy
    confined = roots.resolve(str(views), "params.views", DIR)
    copy = confined.copy_into(tmp_path / "work" / "views-in")
    copied = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    assert copied == ["rgba/a.png", "views.json"]



def test_private_copy_takes_files_and_folders_through_the_check(roots: InputRoots, tmp_path: Path) -> None:
    """The footage jobs' reader input: copies under scratch/<param>/<the client's name>, the map
    back to what the client wrote, plain paths and None as they are, a swapped file refused."""
    clip = tmp_path / "root" / "clip.npz"
    clip.write_bytes(b"clip")
    (tmp_path / "root" / "masks" / "x").mkdir(parents=True)
    (tmp_path / "root" / "masks" / "0001.png").write_bytes(b"png")
    (tmp_path / "root" / "masks" / "0002.png").symlink_to(tmp_path / "outside" / "secret.npz")
    scratch, given = tmp_path / "scratch", {}
    file_copy = private_copy(roots.resolve(str(clip), "params.motion", FILE), scratch, "motion", given)
    dotted = str(tmp_path / "root" / "masks" / "x" / "..")  # no name of its own: the param's
    folder = private_copy(roots.resolve(dotted, "params.masks", DIR), scratch, "people", given)
    assert file_copy == scratch / "motion" / "clip.npz" and file_copy.read_bytes() == b"clip"
    assert folder == scratch / "people" / "people"
    assert sorted(p.name for p in folder.iterdir()) == ["0001.png", "x"]  # the link out left out
    assert given == {str(file_copy): str(clip), str(folder): dotted}
    assert private_copy(str(clip), scratch, "plain") == clip and private_copy(None, scratch, "none") is None
    assert not (scratch / "plain").exists()
    swapped = roots.resolve(str(clip), "params.motion", FILE)
    clip.unlink()
    clip.symlink_to(tmp_path / "outside" / "secret.npz")  # swapped between check and copy
    with pytest.raises(ParamError, match="no longer a readable file"):
        private_copy(swapped, tmp_path / "scratch2", "motion")


def test_unconfined_local_use_names_the_problem(tmp_path: Path) -> None:
    local = InputRoots.unconfined()
    with pytest.raises(ParamError, match="no such readable file"):
        local.resolve(str(tmp_path / "nope.npz"), "params.motion", FILE)
    (tmp_path / "ok.npz").write_bytes(b"x")
    assert local.resolve(str(tmp_path / "ok.npz"), "params.motion", FILE).read_bytes() == b"x"
