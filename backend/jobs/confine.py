"""Paths in job params are confined to the roots the server was started with.

A client names files on the backend machine (``motion: "/shots/clip.npz"``, ``views: "/shots/v1"``).
The server reads them only inside its *input roots*: ``<data-dir>/inputs`` and every
``serve --input-root DIR``. Anything else (outside the roots, a symlink leading out of them, a
missing file, the wrong kind of file) is refused with ONE message per field, so an error never says
whether a path outside the roots exists. The rest of the data dir (keys, job store, other jobs'
scratch) is not a root.

Checks happen twice: at ``submit`` (a quick answer naming the field) and in the worker just before
the job reads (the answer that counts: the file may have changed since). In the worker a file is
opened first and the opened descriptor's real path is checked (``/proc/self/fd``), so swapping a
path component for a symlink between check and read does not help; a views folder is copied into
the job's scratch dir file by file with the same check. See docs/security.md for what this covers.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.kinds import ParamError, PathParam, parse

INPUT_ROOTS_ENV = "AVATAR_STUDIO_INPUT_ROOTS"  # os.pathsep-separated; set by the executor for workers
INPUTS_DIR = "inputs"  # <data-dir>/inputs: always a root
MAX_FOLDER_FILES = 10_000
MAX_FOLDER_BYTES = 8 << 30


def refused(where: str, param: PathParam) -> ParamError:
    """The one error for every refused path of a field (existence is never told)."""
    what = "folder" if param.kind == "dir" else "file"
    return ParamError(
        where, f"not a readable {what} inside the server's input roots (see `serve --input-root`)"
    )


def _inside(real: str, roots: Iterable[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@dataclass(frozen=True)
class ConfinedFile:
    """A file param that passed the check; read it with :meth:`read_bytes` (re-checked on open)."""

    path: Path  # the resolved path
    given: str  # what the client wrote (safe to show back to it)
    roots: tuple[str, ...]
    where: str = "params"  # the field, for errors

    @property
    def name(self) -> str:
        return Path(self.given).name

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    def read_bytes(self, limit: int = 1 << 30) -> bytes:
        fd = _open_confined(self.path, self.roots)
        if fd is None:
            raise ParamError(self.where, "no longer a readable file inside the server's input roots")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ParamError(self.where, f"larger than {limit} bytes")
        return data

    def __fspath__(self) -> str:  # lets trusted local callers treat it as a path
        return str(self.path)


@dataclass(frozen=True)
class ConfinedDir:
    """A folder param that passed the check; :meth:`copy_into` takes a checked private copy."""

    path: Path
    given: str
    roots: tuple[str, ...]
    where: str = "params"

    def copy_into(self, target: Path) -> Path:
        """Copy the regular files of the folder (recursively) into ``target``; entries that lead
        outside the roots (symlinks) or are not regular files are left out. Returns ``target``."""
        count, total = 0, 0
        target.mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(self.path, followlinks=False):
            rel = Path(dirpath).relative_to(self.path)
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
            (target / rel).mkdir(parents=True, exist_ok=True)
            for name in filenames:
                fd = _open_confined(Path(dirpath) / name, self.roots)
                if fd is None:
                    continue
                count += 1
                if count > MAX_FOLDER_FILES:
                    os.close(fd)
                    raise ParamError(self.where, f"holds more than {MAX_FOLDER_FILES} files")
                with os.fdopen(fd, "rb") as src:
                    total += os.fstat(src.fileno()).st_size
                    if total > MAX_FOLDER_BYTES:
                        raise ParamError(self.where, f"holds more than {MAX_FOLDER_BYTES} bytes")
                    with open(target / rel / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        return target

    def __fspath__(self) -> str:
        return str(self.path)


def _open_confined(path: Path, roots: Sequence[str]) -> int | None:
    """An fd of the regular file ``path`` if what was opened really lies inside the roots."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        proc = f"/proc/self/fd/{fd}"
        real = os.readlink(proc) if os.path.exists(proc) else os.path.realpath(path)
        if not _inside(real, roots):
            raise OSError("outside the roots")
        os.set_blocking(fd, True)
        return fd
    except OSError:
        os.close(fd)
        return None



def private_copy(value: Any, scratch: Path, name: str, given: dict[str, str] | None = None) -> Path | None:
    """A path param the readers can open: a confined folder or file is first copied, through the
    confinement check, into ``scratch/name/`` under the name the client gave it (so errors name
    the client's file); a trusted caller's plain path is used as it is; ``None`` stays ``None``.
    ``given``, when passed, maps each copy's path back to what the client wrote.

    A file is copied too, not opened by its resolved path: the copy reads the descriptor whose
    real path was checked, so a path component swapped for a symlink after the check is not
    followed (the same rule as :meth:`ConfinedDir.copy_into`)."""
    if value is None:
        return None
    if not isinstance(value, ConfinedFile | ConfinedDir):
        return Path(os.fspath(value))
    leaf = Path(value.given).name
    target = scratch / name / (leaf if leaf not in ("", ".", "..") else name)
    if isinstance(value, ConfinedDir):
        value.copy_into(target)
    else:
        fd = _open_confined(value.path, value.roots)
        if fd is None:
            raise ParamError(value.where, "no longer a readable file inside the server's input roots")
        target.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(fd, "rb") as src:
            if os.fstat(src.fileno()).st_size > MAX_FOLDER_BYTES:
                raise ParamError(value.where, f"larger than {MAX_FOLDER_BYTES} bytes")
            with open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if given is not None:
        given[str(target)] = value.given
    return target

@dataclass(frozen=True)
class InputRoots:
    """Where jobs may read: resolved, absolute roots. ``None`` roots = trusted local use (CLI)."""

    roots: tuple[str, ...] | None

    @classmethod
    def for_server(cls, data_dir: Path | str, extra: Iterable[Path | str] = ()) -> InputRoots:
        inputs = Path(data_dir) / INPUTS_DIR
        roots = [os.path.realpath(inputs)] + [os.path.realpath(Path(r).expanduser()) for r in extra]
        return cls(tuple(dict.fromkeys(roots)))

    @classmethod
    def from_env(cls, data_dir: Path | str) -> InputRoots:
        extra = [r for r in os.environ.get(INPUT_ROOTS_ENV, "").split(os.pathsep) if r]
        return cls.for_server(data_dir, extra)

    @classmethod
    def unconfined(cls) -> InputRoots:
        return cls(None)

    def to_env(self) -> str:
        return os.pathsep.join(self.roots or ())

    def _refused(self, value: str, where: str, param: PathParam) -> ParamError:
        if self.roots is None:  # local, trusted use: say what is wrong with the user's own path
            what = "folder" if param.kind == "dir" else "file"
            return ParamError(where, f"{value}: no such readable {what}")
        return refused(where, param)

    def resolve(self, value: str, where: str, param: PathParam) -> ConfinedFile | ConfinedDir:
        """The ``resolve_path`` hook of :func:`protocol.kinds.parse`."""
        candidate = Path(value).expanduser()
        if self.roots is None:
            roots: tuple[str, ...] = ("/",)
            real = os.path.realpath(candidate)
        else:
            roots = self.roots
            if not candidate.is_absolute():  # relative to the first root (<data-dir>/inputs)
                candidate = Path(roots[0]) / candidate
            real = os.path.realpath(candidate)  # symlinks and '..' resolved before the check
            if not _inside(real, roots):
                raise refused(where, param)
        if param.kind == "dir":
            if not os.path.isdir(real) or not os.access(real, os.R_OK | os.X_OK):
                raise self._refused(value, where, param)
            return ConfinedDir(Path(real), value, roots, where)
        fd = _open_confined(Path(real), roots)
        if fd is None:
            raise self._refused(value, where, param)
        os.close(fd)
        return ConfinedFile(Path(real), value, roots, where)


def check_params(
    kind: str, params: Any, data_dir: Path | str, extra_roots: Iterable[Path | str] = ()
) -> None:
    """The server's check at ``submit``: ``params`` against the contract of ``kind``, paths
    confined to the input roots. Raises :class:`ParamError` naming the field."""
    parse(kind, params, InputRoots.for_server(data_dir, extra_roots).resolve)
