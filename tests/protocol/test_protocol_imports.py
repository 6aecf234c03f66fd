"""protocol/ must stay importable inside Blender: standard library, zmq and numpy only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_protocol_imports_only_stdlib_zmq_numpy() -> None:
    code = (
        "import sys\n"
        "import protocol, protocol.client, protocol.curve, protocol.messages, protocol.connection\n"
        "import protocol.kinds\n"
        "mods = {m.split('.')[0] for m in sys.modules}\n"
        "print(' '.join(sorted(mods - set(sys.stdlib_module_names))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    # Besides the three allowed packages: interpreter/tooling internals (pyzmq's Cython runtime,
    # setuptools' editable-install finder), which Blender's Python would not need either.
    internals = ("_cython_", "cython_runtime", "__editable__", "_distutils_hack", "__main__")
    extra = {m for m in out.stdout.split()
             if m not in {"protocol", "zmq", "numpy"} and not m.startswith(internals)}
    assert not extra, f"protocol/ pulled in {extra}"
