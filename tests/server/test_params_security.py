"""Params against a live server (issue 9 items 1 and 4, issue 10 item 1).

- every kind: a wrong, a missing (required) and an out-of-range param are refused at submit with
  an error naming the field;
- the planted-pickle attack (``SMPLX_NEUTRAL.pkl`` and npz files with object arrays whose
  unpickling writes a sentinel) through every path-like param of every kind runs nothing;
- a path outside the input roots is refused with the same message whether or not it exists
  (symlinks, ``..``, relative paths included);
- a failed job's error carries no server path and no traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_helpers import REPO, ServerProcess

from protocol import ServerError
from protocol import messages as M
from protocol.client import Client


class _Plant:
    """Unpickling this writes ``path``: the proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _plant_files(folder: Path, sentinel: Path) -> None:
    """Every shape of a pickle a loader could be lured into."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SMPLX_NEUTRAL.pkl").write_bytes(pickle.dumps(_Plant(sentinel)))
    evil = np.array([_Plant(sentinel)], dtype=object)
    np.savez(folder / "SMPLX_NEUTRAL.npz", v_template=evil, f=evil)
    np.savez(folder / "evil.npz", poses=evil, trans=np.zeros((1, 3)))  # an "AMASS" file
    (folder / "pickle.npz").write_bytes(pickle.dumps(_Plant(sentinel)))  # a bare pickle named .npz
    (folder / "clip.bvh").write_bytes(pickle.dumps(_Plant(sentinel)))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("params")
    paths = {
        "base": base,
        "root": base / "root",
        "outside": base / "outside",
        "data": base / "data",
        "sentinel": base / "SENTINEL",
    }
    root, outside = paths["root"], paths["outside"]
    _plant_files(root, paths["sentinel"])
    _plant_files(root / "smplx", paths["sentinel"])
    _plant_files(paths["data"] / "inputs", paths["sentinel"])
    views = root / "views"
    _plant_files(views, paths["sentinel"])
    manifest = {
        "format": "avatar-studio-views", "version": 1,
        "smplx": {"gender": "neutral", "model_path": str(root / "SMPLX_NEUTRAL.pkl")},
        "views": [{"name": "v", "image": "evil.npz", "K": np.eye(3).tolist(), "R": np.eye(3).tolist(),
                   "t": [0, 0, 3], "width": 4, "height": 4}],
    }  # fmt: skip
    (views / "views.json").write_text(json.dumps(manifest))
    # Outside the roots: a file that exists, a folder that exists, and links into them.
    outside.mkdir()
    np.savez(outside / "clip.npz", poses=np.zeros((2, 165)), trans=np.zeros((2, 3)))
    (outside / "views").mkdir()
    (root / "link.npz").symlink_to(outside / "clip.npz")
    (root / "linkdir").symlink_to(outside / "views")
    (root / "corrupt.npz").write_bytes(b"not a zip file at all")
    # The server's own models.toml points the smplx role at a folder with only planted files: a
    # folder is searched for .npz only, and this one's object arrays are never unpickled.
    paths["data"].mkdir(parents=True, exist_ok=True)
    (paths["data"] / "models.toml").write_text(f'[models.smplx]\npath = "{root / "smplx"}"\n')
    return paths


@pytest.fixture(scope="module")
def confined_server(tree: dict[str, Path]) -> Iterator[ServerProcess]:
    server = ServerProcess(tree["data"], "--input-root", str(tree["root"])).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def client(confined_server: ServerProcess) -> Iterator[Client]:
    with confined_server.client(request_timeout_s=30) as c:
        yield c


def _refusal(client: Client, kind: str, params: dict[str, Any]) -> str:
    with pytest.raises(ServerError) as err:
        client.submit(kind, params)
    assert err.value.remote_ename == M.E_BAD_REQUEST
    return err.value.evalue


CAMERAS_WITHOUT_HEIGHT = {"K": np.eye(3)[None], "R": np.eye(3)[None], "t": np.zeros((1, 3)), "width": 64}

# (kind, wrong type, missing required, out of range) -> the field each error must start with.
CONTRACT_CASES = [
    ("system.info", ({"verbose": True}, "params.verbose: unknown field"), None, None),
    (
        "system.sleep",
        ({"seconds": "soon"}, "params.seconds: must be a number in [0, 3600], got 'soon'"),
        None,  # every system.sleep param has a default
        ({"file_bytes": -1}, "params.file_bytes: must be an int in [0, 1073741824], got -1"),
    ),
    (
        "body.preview",
        ({"passes": "rgb"}, "params.passes: must be list of 1-5"),
        ({"cameras": CAMERAS_WITHOUT_HEIGHT}, "params.cameras.height: required"),
        ({"size": [0, 64]}, "params.size[0]: must be an int in [1, 4096], got 0"),
    ),
    (
        "body.mesh",
        ({"gender": 3}, "params.gender: must be one of neutral, male, female; got 3"),
        ({"motion": {"poses": np.zeros((2, 165))}}, "params.motion.trans: required"),
        ({"frames": 0}, "params.frames: must be an int in [1, 100000], got 0"),
    ),
    (
        "avatar.from_views",
        ({"synthetic": {"skirt": "yes"}}, "params.synthetic.skirt: must be true or false, got 'yes'"),
        ({"grid": 32}, "params.views: give exactly one of views, synthetic"),
        ({"synthetic": {}, "texture_size": 4096}, "params.texture_size: must be an int in [16, 2048]"),
    ),
    (
        "clips.render",
        ({"people": "two"}, "params.people: must be int in [1, 4] or list of 2"),
        ({"cameras": [CAMERAS_WITHOUT_HEIGHT]}, "params.cameras[0].height: required"),
        ({"size": [4096, 64]}, "params.size[0]: must be an int in [1, 2048], got 4096"),
    ),
]


@pytest.mark.parametrize(
    "kind, wrong, missing, out_of_range", CONTRACT_CASES, ids=[c[0] for c in CONTRACT_CASES]
)
def test_bad_params_are_refused_naming_the_field(
    client: Client, confined_server: ServerProcess, kind: str, wrong: Any, missing: Any, out_of_range: Any
) -> None:
    before = len(client.list_jobs())
    for case in (wrong, missing, out_of_range):
        if case is None:
            continue
        params, expected = case
        assert _refusal(client, kind, params).startswith(expected)
    assert len(client.list_jobs()) == before  # nothing was stored


def test_planted_pickles_run_nothing_through_any_path_param(client: Client, tree: dict[str, Path]) -> None:
    root, inputs = tree["root"], tree["data"] / "inputs"
    files = [
        root / n for n in ("SMPLX_NEUTRAL.pkl", "SMPLX_NEUTRAL.npz", "evil.npz", "pickle.npz", "clip.bvh")
    ]
    files += [root / "smplx" / "SMPLX_NEUTRAL.npz", inputs / "evil.npz", Path("evil.npz"), Path("pickle.npz")]
    folders = [root, root / "views", root / "smplx", inputs, Path("views")]
    attempts: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        for kind in ("body.preview", "body.mesh"):
            attempts.append((kind, {"motion": str(path)}))
            attempts.append((kind, {"model_path": str(path)}))
        attempts.append(("avatar.from_views", {"synthetic": {}, "body_model_path": str(path)}))
        attempts.append(("system.sleep", {"seconds": 0, "model_path": str(path)}))
        attempts.append(("system.info", {"model_path": str(path)}))
    for folder in folders:
        attempts.append(("avatar.from_views", {"views": str(folder)}))
        attempts.append(("body.mesh", {"motion": "a-pose", "model_path": str(folder)}))
    accepted, refused = [], 0
    for kind, params in attempts:
        try:
            accepted.append(client.submit(kind, params))
        except ServerError as exc:
            assert exc.remote_ename == M.E_BAD_REQUEST and exc.evalue.startswith("params.")
            refused += 1
    views = [client.wait(job_id, timeout=180) for job_id in accepted]
    assert refused > 0 and accepted, (refused, len(accepted))
    assert all(v.state == M.FAILED for v in views), [(v.kind, v.state) for v in views]
    assert not tree["sentinel"].exists(), "a planted pickle was unpickled"


def test_outside_the_roots_one_message_whether_or_not_it_exists(
    client: Client, tree: dict[str, Path]
) -> None:
    root, outside = tree["root"], tree["outside"]
    files = [
        outside / "clip.npz",  # exists
        outside / "missing.npz",  # does not
        root / "link.npz",  # a symlink in the root to an existing file outside
        root / ".." / "outside" / "clip.npz",
        Path("../../outside/clip.npz"),  # relative to <data-dir>/inputs
        tree["data"] / "jobs.sqlite3.npz",  # the data dir itself is not a root
        root / "nothing-here.npz",  # inside the root, but missing: the same answer
    ]
    messages = {_refusal(client, "body.mesh", {"motion": str(p)}) for p in files}
    assert messages == {
        "params.motion: not a readable file inside the server's input roots (see `serve --input-root`)"
    }
    folders = [outside / "views", outside / "nope", root / "linkdir", tree["data"], tree["data"] / "work"]
    messages = {_refusal(client, "avatar.from_views", {"views": str(p)}) for p in folders}
    assert messages == {
        "params.views: not a readable folder inside the server's input roots (see `serve --input-root`)"
    }


def test_failed_job_errors_hold_no_server_path_or_traceback(
    client: Client, tree: dict[str, Path], confined_server: ServerProcess
) -> None:
    cases = [
        ("body.mesh", {"motion": str(tree["root"] / "corrupt.npz")}),
        ("body.mesh", {"motion": "evil.npz"}),  # in <data-dir>/inputs
        ("avatar.from_views", {"views": str(tree["root"] / "views")}),
        ("system.sleep", {"seconds": 0, "fail": "boom"}),
    ]
    server_paths = [str(tree["data"]), os.path.realpath(tree["data"]), str(REPO), sys.prefix]
    for kind, params in cases:
        view = client.wait(client.submit(kind, params), timeout=180)
        assert view.state == M.FAILED and view.error is not None
        assert view.error["traceback"] == "" and "Traceback" not in view.error["evalue"]
        leaked = [p for p in server_paths if p in view.error["evalue"]]
        assert not leaked, (kind, view.error)
    assert "RuntimeError: boom" in confined_server.log()  # the traceback went to the server's log
