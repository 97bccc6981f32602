"""Where outputs go and how they are written: files whole or not at all (a reader, or an
interrupted run, never sees half a file), names checked before they become paths, output
folders checked before a run and locked while it writes them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from policies.errors import PolicyError
from policies.names import NAME_RULE, check_name

__all__ = [
    "MARKERS",
    "NAME_RULE",
    "OutputRefused",
    "atomic_write",
    "atomic_write_bytes",
    "check_name",
    "check_output",
    "earlier_output",
    "folder_for",
    "inside",
    "output_lock",
    "staged_folder",
    "writable_folder",
]


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` into a temp file beside ``path``, then rename it over ``path``. The file
    gets the mode of the one it replaces, else what the umask gives a new file (a temp file is
    0600, which would hide a team's manifest from its group)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a rename over /dev/null would replace the device
        raise PolicyError(
            "exists and is not a regular file: refusing to replace it", file=str(path)
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` as the whole of ``path``, or the old file untouched (``atomic_write``)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temp folder beside ``out`` to write into; renamed over ``out`` on success (an earlier
    folder there is replaced only then, and put back if the rename fails), deleted on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        yield tmp
        for path in (tmp, *tmp.rglob("*")):  # mkdtemp/mkstemp make 0700/0600; outputs are shared
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the earlier folder back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- names and paths

_ROOM = 40
"""Bytes a folder name must leave free under NAME_MAX for what is written beside it
(``.<name>.XXXXXXXX.partial``, ``<name>.checkpoint``, ``<name>.lock``, ``-tune``)."""


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root/parts`` if it resolves (symlinks followed) strictly inside ``root``, else a
    one-line ``PolicyError``: a name that would write elsewhere is refused before any write."""
    base = Path(root).resolve()
    path = Path(root).joinpath(*parts)
    resolved = path.resolve()
    if resolved == base or base not in resolved.parents:
        raise PolicyError(f"{'/'.join(parts)!r} would write outside {root}", file=str(path))
    return path


def folder_for(root: str | os.PathLike, name: str, what: str, suffix: str = "") -> Path:
    """The default folder ``root/<name><suffix>`` of a named thing: the name checked first."""
    return inside(root, check_name(name, what) + suffix)


# ---------------------------------------------------------------------------- output folders


class OutputRefused(PolicyError, FileExistsError):
    """Something is already at an output path and is not ours to replace: bad input (one line,
    exit 2), and a ``FileExistsError`` for Python callers."""


MARKERS = {
    "report": ("report.html", "results.parquet"),
    "sweep": ("sweep.csv", "cells"),
    "tune": ("tune.md",),
    "sensitivity": ("sensitivity.csv",),
}
"""What shows that an existing folder is an earlier output of that kind (and may be replaced)."""


def check_output(out: str | os.PathLike, kind: str) -> Path:
    """Refuse, before any work, an output folder a run could not write or must not replace:
    an existing file, a folder of something else (files, no ``MARKERS``), a name too long for
    the file system, a folder or parent that cannot be written (read-only, full)."""
    out = Path(out)
    where = str(out)
    limit = _name_max(out)
    for part in out.resolve().parts:
        if len(os.fsencode(part)) > limit - _ROOM:
            raise PolicyError(
                f"a folder name of {len(part)} characters is too long here (at most"
                f" {limit - _ROOM})",
                file=where,
            )
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputRefused("exists and is not a folder: give a new or empty folder", file=where)
    markers = MARKERS[kind]
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in markers):
        raise OutputRefused(
            f"a folder that holds files but no {' or '.join(markers)}: refusing to replace it"
            f" (give a new or empty folder, or an earlier {kind} folder)",
            file=where,
        )
    beside = out.with_name(out.name + ".checkpoint")
    if beside.exists() and not beside.is_dir():
        raise OutputRefused("exists and is not a checkpoint folder", file=str(beside))
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PolicyError(f"{parent} is not a folder", file=where)
    _probe(parent, where)
    if out.is_dir():
        _probe(out, where)
    return out


def earlier_output(out: str | os.PathLike, kind: str) -> str | None:
    """What an earlier ``kind`` of run left at the folder ``out`` (its output, or the
    checkpoint of an interrupted one beside it), said for a caller that must not replace it
    silently (the command line asks for --resume or --overwrite); None when nothing."""
    out = Path(out)
    if out.is_dir() and any((out / m).exists() for m in MARKERS[kind]):
        return f"holds an earlier {kind}"
    beside = out.with_name(out.name + ".checkpoint")
    if beside.is_dir():
        job = "run" if kind == "report" else kind
        return f"an interrupted {job} left its checkpoint beside it ({beside.name})"
    return None


def _name_max(path: Path) -> int:
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf here: the common limit
        return 255


def _probe(folder: Path, where: str) -> None:
    """Write (and remove) a small file in ``folder``: a read-only or full disk says so now."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rolloutsim-probe.")
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise PolicyError(f"cannot write in {folder}: {exc.strerror or exc}", file=where) from None


def writable_folder(path: str | os.PathLike) -> Path:
    """A folder to write named files into (``export -o``): made when needed, never a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputRefused("exists and is not a folder", file=str(folder))
    return folder


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<out>.lock`` (it holds our PID) while a run writes ``out`` and its checkpoint.

    Another live run holding it is refused with its PID; a lock left by a process that died is
    taken over (the lock is the file system's ``flock``, released when its holder dies)."""
    out = Path(out)
    lock = out.with_name(out.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"another run (PID {holder})" if holder else "another run"
            raise PolicyError(
                f"{who} is writing this folder (lock {lock.name}): wait for it, or give another"
                " output folder",
                file=str(out),
            ) from None
        try:  # the file we locked must still be the one at the path (a holder removes it)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    if os.fstat(fd).st_size and _read_pid(fd) is None:  # someone's own file: never truncated
        os.close(fd)
        raise OutputRefused("exists and is not a rolloutsim lock", file=str(lock))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    except (OSError, ValueError):
        return None
