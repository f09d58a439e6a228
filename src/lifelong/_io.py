"""Atomic file writes: a crash never leaves a half-written file.

Each write goes to a temporary file in the destination folder, is flushed and fsynced, then renamed
over the destination (``os.replace`` is atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class NotOwnFile(OSError):
    """A file a run would write through is not a plain file of its own (a symbolic link, a hard link,
    a device or pipe): writing would change something the run did not create."""


def not_own(path: str | os.PathLike, st: os.stat_result) -> str | None:
    """Why a run must not write to the file at ``path`` whose ``lstat``/``fstat`` is ``st`` (a symbolic
    link, not a plain file, a hard link), in one line; None when it is a plain file with one name."""
    import stat

    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link (to {os.readlink(path)}); a run never writes through one: remove it"
    what = ("is not a plain file" if not stat.S_ISREG(st.st_mode)
            else f"has {st.st_nlink} names (a hard link)" if st.st_nlink > 1 else None)
    return None if what is None else f"{path} {what}; a run writes only to files it created: remove it"


def open_own(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` that never follows a symbolic link at ``path`` and refuses anything but a
    plain file with one name (a hard link's other name would be written too); returns the descriptor.
    Raises :class:`NotOwnFile` (an OSError) saying what ``path`` is instead."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow, mode)
    except OSError:
        if os.path.islink(path):
            raise NotOwnFile(not_own(path, os.lstat(path))) from None
        raise
    problem = not_own(path, os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise NotOwnFile(problem)
    return fd


MAX_JSON_DEPTH = 100  # lifelong's files nest a few levels; deeper is damage (or hostility), not data


def loads(text: str | bytes) -> Any:
    """``json.loads`` for files a user can hand us: nesting deeper than :data:`MAX_JSON_DEPTH` (which
    would exhaust Python's recursion in the parser or in any reader after it) is a
    ``json.JSONDecodeError`` like any other damage."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", "", 0) from None
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} levels deep", "", 0)
        if isinstance(o, dict):
            stack.extend((v, depth + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, depth + 1) for v in o)
    return obj
