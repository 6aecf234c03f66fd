"""``avatar-studio addon build``: the installable Blender extension zip.

The zip is what a user drags into Blender (Edit > Preferences > Get Extensions > Install from Disk,
or ``bpy.ops.extensions.package_install_files``). It holds, at its root:

- the add-on (``blender_addon/`` minus caches) with its ``blender_manifest.toml``,
- a vendored copy of the pure-Python ``protocol`` package (imported by the add-on as a subpackage,
  so users never pip-install anything inside Blender),
- ``wheels/``: pyzmq wheels for every platform and Python that Blender 4.2-5.x ships, listed in the
  manifest's ``wheels = [...]`` so Blender's extension installer extracts the matching one.

Wheels come from a local directory (``--wheel-dir``, for offline builds), else from a cache in the
data dir, else from PyPI through ``pip download --only-binary``. ``--no-wheels`` skips them (tests
and development, where pyzmq comes from the environment).

This module never imports torch; it only needs the standard library and pip.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend import __version__ as PACKAGE_VERSION
from protocol.connection import default_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_SOURCE = REPO_ROOT / "blender_addon"
PROTOCOL_SOURCE = REPO_ROOT / "protocol"
EXTENSION_ID = "avatar_studio"

# Blender 4.2-4.5 embed CPython 3.11, Blender 5.x embeds 3.13.
BLENDER_PYTHONS: tuple[str, ...] = ("3.11", "3.13")

# Blender platform name -> wheel platform tags pip may pick from (best first). pip only matches
# exact tags, so the older manylinux/macOS tags that pyzmq publishes are listed explicitly.
WHEEL_PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-x64": (
        "manylinux_2_28_x86_64",
        "manylinux_2_26_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ),
    "linux-arm64": (
        "manylinux_2_28_aarch64",
        "manylinux_2_26_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
    ),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
    "macos-x64": (
        "macosx_10_15_x86_64",
        "macosx_10_9_x86_64",
        "macosx_10_15_universal2",
        "macosx_10_9_universal2",
    ),
}

_SKIP_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".blend1", ".zip"}


class AddonBuildError(RuntimeError):
    """The zip could not be built (a wheel not found offline, pip failed, a bad manifest)."""


@dataclass(frozen=True)
class WheelTarget:
    platform: str  # a key of WHEEL_PLATFORMS
    python: str  # "3.11"

    @property
    def label(self) -> str:
        return f"{self.platform}/cp{self.python.replace('.', '')}"


def default_pyzmq_version() -> str:
    """The pyzmq the project is tested with: the one installed where the build runs."""
    try:
        return importlib.metadata.version("pyzmq")
    except importlib.metadata.PackageNotFoundError:
        return "27.3.0"


def wheel_matches(filename: str, target: WheelTarget, pyzmq_version: str) -> bool:
    """True when the wheel file named ``filename`` installs on ``target``.

    Accepts ``cpXY-cpXY`` wheels for that exact Python and ``cpXY-abi3`` wheels built for an older
    or equal minor version (the stable ABI is forward compatible).
    """
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or parts[0].lower() != "pyzmq" or parts[1] != pyzmq_version:
        return False
    python_tag, abi_tag, platform_tag = parts[-3:]
    wanted = int(target.python.split(".")[1])
    py_ok = False
    for tag in python_tag.split("."):
        match = re.fullmatch(r"cp3(\d+)", tag)
        if match is None:
            continue
        minor = int(match.group(1))
        if (abi_tag == f"cp3{wanted}" and minor == wanted) or (abi_tag == "abi3" and minor <= wanted):
            py_ok = True
    platforms = set(platform_tag.split("."))
    return py_ok and bool(platforms & set(WHEEL_PLATFORMS[target.platform]))


def _find_wheel(directory: Path | None, target: WheelTarget, pyzmq_version: str) -> Path | None:
    if directory is None or not directory.is_dir():
        return None
    for candidate in sorted(directory.glob("*.whl")):
        if wheel_matches(candidate.name, target, pyzmq_version):
            return candidate
    return None


def _pip_download(target: WheelTarget, pyzmq_version: str, dest: Path) -> Path:
    """Fetch one binary wheel for ``target`` from the package index into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"pyzmq=={pyzmq_version}",
        "--only-binary=:all:",
        "--no-deps",
        "--implementation",
        "cp",
        "--python-version",
        target.python,
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(dest),
    ]
    for tag in WHEEL_PLATFORMS[target.platform]:
        command += ["--platform", tag]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise AddonBuildError(
            f"pip could not fetch pyzmq {pyzmq_version} for {target.label}: "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    found = _find_wheel(dest, target, pyzmq_version)
    if found is None:
        raise AddonBuildError(f"pip ran but no pyzmq wheel for {target.label} is in {dest}")
    return found


def collect_wheels(
    targets: list[WheelTarget],
    *,
    pyzmq_version: str,
    cache_dir: Path,
    wheel_dir: Path | None = None,
    allow_download: bool = True,
) -> list[Path]:
    """One wheel per target (deduplicated: an abi3 or universal2 wheel may serve several)."""
    chosen: dict[str, Path] = {}
    for target in targets:
        found = _find_wheel(wheel_dir, target, pyzmq_version) or _find_wheel(cache_dir, target, pyzmq_version)
        if found is None:
            if not allow_download:
                raise AddonBuildError(
                    f"no pyzmq {pyzmq_version} wheel for {target.label} in "
                    f"{wheel_dir or '-'} or {cache_dir}, and downloads are off"
                )
            found = _pip_download(target, pyzmq_version, cache_dir)
        chosen.setdefault(found.name, found)
    return [chosen[name] for name in sorted(chosen)]


def render_manifest(template: str, wheel_names: list[str], version: str) -> str:
    """Fill ``wheels = [...]`` and ``version`` in the source manifest; validated by parsing it back."""
    # Blender rejects an empty list: without wheels the key is left out.
    wheels_toml = (
        "wheels = [\n" + "".join(f'  "./wheels/{name}",\n' for name in wheel_names) + "]"
        if wheel_names
        else ""
    )
    text, count = re.subn(r"^wheels\s*=\s*\[[^\]]*\]", lambda _m: wheels_toml, template, flags=re.MULTILINE)
    if count != 1:
        raise AddonBuildError("blender_manifest.toml must contain exactly one top-level 'wheels = [...]'")
    text = re.sub(r'^version\s*=\s*"[^"]*"', f'version = "{version}"', text, count=1, flags=re.MULTILINE)
    parsed = tomllib.loads(text)
    if (
        parsed.get("id") != EXTENSION_ID
        or [w.rsplit("/", 1)[-1] for w in parsed.get("wheels", [])] != wheel_names
    ):
        raise AddonBuildError("the rendered manifest does not round-trip")
    return text


def _copy_tree(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in _SKIP_NAMES for part in rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _write_zip(staging: Path, zip_path: Path) -> None:
    """Deterministic zip (sorted entries, fixed timestamps) written atomically."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED if path.suffix == ".whl" else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    os.replace(tmp, zip_path)


def build_addon(
    out_dir: Path,
    *,
    targets: list[WheelTarget] | None = None,
    no_wheels: bool = False,
    wheel_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    pyzmq_version: str | None = None,
) -> list[Path]:
    """Build the extension zip(s) and return their paths.

    One zip per Blender Python (``avatar_studio-<version>-py311.zip``, ``...-py313.zip``), each with
    the wheels of every platform for that Python. One zip for both would be refused by Blender:
    its installer derives the supported Pythons from the wheel tags, and pyzmq publishes
    ``cp311-cp311`` wheels next to ``cp312-abi3`` ones, which Blender reads as "3.11 only".
    With ``no_wheels``: a single ``avatar_studio-<version>.zip``.
    """
    if not (ADDON_SOURCE / "blender_manifest.toml").is_file():
        raise AddonBuildError(f"no add-on sources at {ADDON_SOURCE}")
    pyzmq_version = pyzmq_version or default_pyzmq_version()
    if targets is None:
        targets = [WheelTarget(p, py) for p in WHEEL_PLATFORMS for py in BLENDER_PYTHONS]
    if cache_dir is None:
        cache_dir = _default_cache_dir()
    if no_wheels:
        return [_build_one(Path(out_dir) / f"{EXTENSION_ID}-{PACKAGE_VERSION}.zip", [])]
    zips = []
    for python in sorted({t.python for t in targets}, key=lambda v: tuple(int(x) for x in v.split("."))):
        wheels = collect_wheels(
            [t for t in targets if t.python == python],
            pyzmq_version=pyzmq_version,
            cache_dir=cache_dir,
            wheel_dir=wheel_dir,
            allow_download=allow_download,
        )
        tag = "py" + python.replace(".", "")
        zips.append(_build_one(Path(out_dir) / f"{EXTENSION_ID}-{PACKAGE_VERSION}-{tag}.zip", wheels))
    return zips


def _build_one(zip_path: Path, wheels: list[Path]) -> Path:
    with tempfile.TemporaryDirectory(prefix="avs-addon-") as tmp:
        staging = Path(tmp) / EXTENSION_ID
        _copy_tree(ADDON_SOURCE, staging)
        # Vendored protocol: the add-on imports it as its own subpackage (relative imports only).
        _copy_tree(PROTOCOL_SOURCE, staging / "protocol")
        for wheel in wheels:
            (staging / "wheels").mkdir(exist_ok=True)
            shutil.copy2(wheel, staging / "wheels" / wheel.name)
        manifest = render_manifest(
            (ADDON_SOURCE / "blender_manifest.toml").read_text(encoding="utf-8"),
            [w.name for w in wheels],
            PACKAGE_VERSION,
        )
        (staging / "blender_manifest.toml").write_text(manifest, encoding="utf-8")
        _write_zip(staging, zip_path)
    return zip_path


def _default_cache_dir(data_dir: Path | None = None) -> Path:
    return Path(data_dir if data_dir is not None else default_data_dir()) / "cache" / "addon-wheels"


def _parse_targets(platforms: list[str] | None, pythons: list[str] | None) -> list[WheelTarget]:
    for name in platforms or []:
        if name not in WHEEL_PLATFORMS:
            raise AddonBuildError(f"unknown platform {name!r}; known: {', '.join(WHEEL_PLATFORMS)}")
    for version in pythons or []:
        if not re.fullmatch(r"3\.\d+", version):
            raise AddonBuildError(f"--python wants a version like 3.11, got {version!r}")
    return [
        WheelTarget(p, py)
        for p in (platforms or list(WHEEL_PLATFORMS))
        for py in (pythons or BLENDER_PYTHONS)
    ]


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data dir whose cache/addon-wheels keeps downloaded wheels",
    )
    parser.add_argument(
        "--wheel-dir",
        type=Path,
        default=None,
        help="local folder of pyzmq wheels, searched before the cache and PyPI (offline builds)",
    )
    parser.add_argument(
        "--no-wheels",
        action="store_true",
        help="bundle no wheels (pyzmq must then come from Blender's environment)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="never call pip; use --wheel-dir and the cache"
    )
    parser.add_argument(
        "--platform",
        action="append",
        choices=sorted(WHEEL_PLATFORMS),
        default=None,
        help="only these platforms (repeatable; default: all)",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=None,
        help=f"only these Blender Pythons (repeatable; default: {', '.join(BLENDER_PYTHONS)})",
    )
    parser.add_argument(
        "--pyzmq-version", default=None, help="pyzmq version to bundle (default: the installed one)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    try:
        zip_paths = build_addon(
            args.out,
            targets=_parse_targets(args.platform, args.python),
            no_wheels=args.no_wheels,
            wheel_dir=args.wheel_dir,
            cache_dir=_default_cache_dir(args.data_dir),
            allow_download=not args.offline,
            pyzmq_version=args.pyzmq_version,
        )
    except AddonBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    built = []
    for zip_path in zip_paths:
        with zipfile.ZipFile(zip_path) as archive:
            wheels = sorted(n for n in archive.namelist() if n.startswith("wheels/"))
        built.append({"zip": str(zip_path), "wheels": wheels})
    if args.json:
        print(json.dumps({"zips": built}))
    else:
        for entry in built:
            print(f"built {entry['zip']} ({len(entry['wheels'])} wheels)")
            for name in entry["wheels"]:
                print(f"  {name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``addon build`` to the ``avatar-studio`` command line (called by backend/cli/)."""
    addon = subparsers.add_parser(
        "addon", help="Blender add-on tools", description="Build the Blender extension zip."
    )
    addon_sub = addon.add_subparsers(dest="addon_command", required=True)
    build = addon_sub.add_parser(
        "build",
        help="build the installable Blender extension zip",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _add_build_arguments(build)


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.addon_build [options]``: the same as ``avatar-studio addon build``."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.addon_build", description="Build the installable Blender extension zip."
    )
    _add_build_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
