"""The ``avatar-studio`` command line against a real server (subprocess CLI and in-process main())."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_helpers import REPO, ServerProcess

from backend import cli


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_submit_wait_json_in_a_subprocess(fresh_server: ServerProcess, tmp_path: Path) -> None:
    conn = str(fresh_server.connection_file)
    result = _run_cli(
        "submit",
        "system.sleep",
        "--params",
        '{"seconds": 0.3}',
        "--wait",
        "--json",
        "--out",
        str(tmp_path / "out"),
        "--connection",
        conn,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded" and summary["data"]["ticks"] == 3
    assert summary["downloaded"] == [str(tmp_path / "out" / "ticks.npy")]
    assert np.load(tmp_path / "out" / "ticks.npy").tolist() == [0.0, 1.0, 2.0]

    result = _run_cli("submit", "system.info", "--wait", "--json", "--connection", conn)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["state"] == "succeeded" and info["data"]["cpu_count"] >= 1 and "torch" in info["data"]

    result = _run_cli("jobs", "--json", "--connection", conn)
    jobs = json.loads(result.stdout)["jobs"]
    assert [j["kind"] for j in jobs] == ["system.info", "system.sleep"]  # newest first


def test_cli_commands_in_process(fresh_server: ServerProcess, tmp_path: Path, capsys: Any) -> None:
    conn = ["--connection", str(fresh_server.connection_file)]
    assert cli.main(["submit", "system.sleep", "--params", '{"seconds": 30}', "--json", *conn]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    assert cli.main(["cancel", job_id, "--json", *conn]) == 0
    assert json.loads(capsys.readouterr().out) == {"job_id": job_id, "state": "cancelled"}

    # Params that break the kind's contract: refused at submit (exit 2), the field named.
    assert (
        cli.main(["submit", "system.sleep", "--params", '{"seconds": "x"}', "--wait", "--json", *conn]) == 2
    )
    refused = json.loads(capsys.readouterr().out)["error"]
    assert refused["ename"] == "BadRequest" and refused["evalue"].startswith("params.seconds: ")
    # A failing job: exit status 1, the error in the JSON.
    params = '{"seconds": 0, "fail": "no"}'
    assert cli.main(["submit", "system.sleep", "--params", params, "--wait", "--json", *conn]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert failed["state"] == "failed" and failed["error"]["ename"] == "RuntimeError"

    # Idempotency through the CLI: the same key names the same job.
    args = [
        "submit",
        "system.sleep",
        "--params",
        '{"seconds": 0.1}',
        "--idempotency-key",
        "k1",
        "--json",
        *conn,
    ]
    assert cli.main(args) == 0
    first = json.loads(capsys.readouterr().out)["job_id"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["job_id"] == first

    # attach after the fact downloads the result.
    assert cli.main(["attach", first, "--out", str(tmp_path / "a"), "--json", *conn]) == 0
    attached = json.loads(capsys.readouterr().out)
    assert attached["state"] == "succeeded" and (tmp_path / "a" / "ticks.npy").exists()

    assert cli.main(["jobs", "--state", "cancelled", "--json", *conn]) == 0
    assert [j["job_id"] for j in json.loads(capsys.readouterr().out)["jobs"]] == [job_id]
    assert cli.main(["jobs", *conn]) == 0
    assert job_id in capsys.readouterr().out  # the human table


def test_cli_errors_are_reported(server: ServerProcess, tmp_path: Path, capsys: Any) -> None:
    conn = ["--connection", str(server.connection_file)]
    assert cli.main(["submit", "nope.kind", "--json", *conn]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["ename"] == "UnknownJobKind"
    assert cli.main(["submit", "system.sleep", "--params", "{bad json", "--json", *conn]) == 2
    assert "not JSON" in json.loads(capsys.readouterr().out)["error"]["evalue"]
    assert cli.main(["attach", "f" * 32, "--json", *conn]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["ename"] == "UnknownJob"
    missing = ["--connection", str(tmp_path / "nowhere.json")]
    assert cli.main(["jobs", "--json", *missing]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["ename"] == "ConnectionFileError"


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["submit"],
        ["jobs"],
        ["cancel"],
        ["attach"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["models"],
        ["models", "check"],
    ],
)
def test_every_builtin_command_has_help(command: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: avatar-studio" in capsys.readouterr().out


def test_plugins_missing_module_is_skipped_other_errors_propagate(monkeypatch: Any, tmp_path: Path) -> None:
    registered: list[str] = []
    plugin = types.ModuleType("fake_plugin_ok")
    plugin.register = lambda sub: registered.append("ok") or sub.add_parser("fake", help="fake")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_plugin_ok", plugin)
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ["fake_plugin_ok", "backend.no_such_plugin_module"])
    parser = cli.build_parser()
    assert registered == ["ok"]
    assert parser.parse_args(["fake"]).command == "fake"

    # A plug-in that exists but fails to import one of *its* dependencies must not be hidden.
    broken = tmp_path / "broken_plugin_mod.py"
    broken.write_text("import package_that_is_not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ["broken_plugin_mod"])
    with pytest.raises(ModuleNotFoundError, match="package_that_is_not_installed_anywhere"):
        cli.build_parser()


def test_serve_does_not_import_torch(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.wait(client.submit("system.info", {}), timeout=60).state == "succeeded"
    maps = Path(f"/proc/{server.pid}/maps").read_text()
    assert "torch" not in maps  # torch lives in the worker processes only


def test_serve_buffer_integrity_flag_reaches_connection_file_and_clients(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--buffer-integrity", "transport").start()
    try:
        written = json.loads(proc.connection_file.read_text())
        assert written["buffer_integrity"] == "transport"
        with proc.client() as client:
            assert client.session.buffer_integrity == "transport"
            job_id = client.submit("system.sleep", {"seconds": 0.05})
            assert client.wait(job_id, timeout=60).state == "succeeded"
            ticks = client.get_artifact(job_id, "ticks")
            assert isinstance(ticks, np.ndarray) and ticks.size > 0
    finally:
        proc.stop()
