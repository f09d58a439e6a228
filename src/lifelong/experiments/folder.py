"""A run folder's integrity: one process at a time, no leftovers, no mix of two runs.

- **Lock.** A run or resume holds an exclusive lock on ``<folder>/.lock`` (``flock``; the file holds
  the owner's pid) for as long as it runs. A second process gets a one-line error; a lock left by a
  dead process is free again (the kernel releases it with the process) and is simply taken.
- **Leftovers.** Temporary files of a write interrupted by a kill (``.<name>.<random>.tmp``, see
  :mod:`lifelong._io`) are removed by the next run or resume of the folder, under the lock.
- **Identity.** ``config.json``, ``results.json`` and ``checkpoint.safetensors`` each carry the run
  id; :func:`identity` reads them, and every reader refuses a folder whose files disagree.
- **Overrides.** Changing a run's config on resume (``--override-config``) rewrites two files; a
  journal (``override.json``) written first makes the change all-or-nothing: an interrupted change is
  completed or rolled back by the next command that opens the folder (:func:`recover`).
- **Overwrite.** ``--overwrite`` removes the files of the run that was there before writing the new
  config: results, checkpoint, CSV and plots (files it does not know are left alone).
"""

from __future__ import annotations

import contextlib
import shutil
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .. import _io
from .._io import NotOwnFile, atomic_write_json, not_own, open_own
from ..errors import UsageError
from ..report.files import EVAL_PNGS
from ..train.checkpoint import CHECKPOINT_FILE, read_header

LOCK_FILE = ".lock"
JOURNAL = "override.json"
RUN_FILES = ("results.json", CHECKPOINT_FILE, "accuracy_matrix.csv", "accuracy_curves.png", "accuracy_matrix.png",
             JOURNAL, "events.jsonl", "capacity.png", "anytime.png", *EVAL_PNGS)
RUN_DIRS = ("tensorboard",)  # TensorBoard's event files (--log tensorboard)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: an exclusive lock file whose pid must be alive
    fcntl = None


@contextlib.contextmanager
def locked(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold the folder's lock for the body, or raise a one-line UsageError if another process has it.
    The lock file is opened without following a symbolic link and must be a plain file with one name;
    a refused attempt leaves the holder's pid as it is."""
    path = folder / LOCK_FILE
    try:
        fd = open_own(path, os.O_RDWR | os.O_CREAT)
    except NotOwnFile as e:
        raise UsageError(f"{e}") from None
    except OSError as e:
        raise UsageError(f"cannot write the run folder {folder}: {e.strerror or e}; choose another `out`") from None
    held = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"{folder} is in use by another lifelong process (pid {_pid(path)}) running or resuming "
                                 f"its {what}; wait for it to finish, or choose another `out`") from None
        else:  # pragma: no cover
            owner = _pid(path)
            if owner not in (None, os.getpid()) and _alive(owner):
                raise UsageError(f"{folder} is in use by another lifelong process (pid {owner}); wait for it or "
                                 "choose another `out`")
        held = True
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        check_own_files(folder)
        yield
    finally:
        if held:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock


def check_own_files(folder: Path) -> None:
    """A one-line UsageError when a name the run writes (config.json, results, checkpoint, plots, the
    event log, ``tensorboard/``) is a symbolic link, or a file name is a hard link or not a plain file:
    a folder unpacked from someone else's archive must not make a run write outside it."""
    import stat

    for name in ("config.json", *RUN_FILES, *RUN_DIRS):
        p = folder / name
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UsageError(f"cannot read the run folder {folder}: {e.strerror or e}") from None
        if name in RUN_DIRS and not stat.S_ISLNK(st.st_mode):
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(f"{p} is not a folder; a run writes its {name} files there: remove it")
        elif (problem := not_own(p, st)) is not None:
            raise UsageError(problem)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:  # pragma: no cover - Windows fallback only
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def clean_temporaries(folder: Path) -> list[str]:
    """Remove the temporary files of interrupted atomic writes; returns their names."""
    removed = []
    for p in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p.name)
    return removed


def clear(folder: Path) -> None:
    """Remove the files a previous run left (``--overwrite``); other files stay."""
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    for name in RUN_DIRS:
        if (folder / name).is_dir() and not (folder / name).is_symlink():
            shutil.rmtree(folder / name, ignore_errors=True)


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content, or a one-line UsageError saying the file is damaged."""
    try:
        return _io.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not readable JSON ({str(e).splitlines()[0][:120]}); the {what} is damaged") from None


def identity(folder: Path) -> dict[str, str | None]:
    """The run id each of the folder's files names (None for a file that is absent or names none)."""
    ids: dict[str, str | None] = {}
    for name in ("config.json", "results.json"):
        try:
            d = read_json(folder / name, "run folder")
        except FileNotFoundError:
            ids[name] = None
            continue
        except UsageError:
            ids[name] = "<unreadable>"
            continue
        ids[name] = d.get("run_id") if isinstance(d, dict) and isinstance(d.get("run_id"), str) else "<no run id>"
    try:
        header = read_header(folder / CHECKPOINT_FILE)
        ids[CHECKPOINT_FILE] = header.get("run_id") if isinstance(header.get("run_id"), str) else None
    except FileNotFoundError:
        ids[CHECKPOINT_FILE] = None
    except UsageError:
        ids[CHECKPOINT_FILE] = "<unreadable>"
    return ids


def check_consistent(folder: Path) -> None:
    """A one-line UsageError when results.json or the checkpoint belong to another run than config.json."""
    ids = identity(folder)
    own = ids["config.json"]
    for name in ("results.json", CHECKPOINT_FILE):
        other = ids[name]
        if other is not None and other != own:
            raise UsageError(
                f"{folder}: {name} belongs to run {other} but config.json to {own or 'no run'}{_differences(folder, name)}: "
                "the folder mixes two runs; put this run's file back, or start again (`overwrite=True`)"
            )


def _differences(folder: Path, name: str) -> str:
    """`` (they differ in lr: 0.001 / 0.01)``: the config keys in which ``name``'s run differs from config.json's."""
    try:
        ours = read_json(folder / "config.json", "run folder")
        theirs = (read_header(folder / name) if name == CHECKPOINT_FILE else read_json(folder / name, "run folder")).get("config")
    except (OSError, UsageError, AttributeError):
        return ""
    if not isinstance(ours, dict) or not isinstance(theirs, dict):
        return ""
    from .config import flat_record, not_method_keys

    ours, theirs = flat_record(ours), flat_record(theirs)
    skip = (not_method_keys() - {"seed"}) | {"data"}  # (the run ids cover the data)
    keys = [k for k in sorted(set(ours) | set(theirs)) if k not in skip and ours.get(k) != theirs.get(k)]
    if not keys:
        return ""
    return " (they differ in " + ", ".join(f"{k}: {json.dumps(ours.get(k))} / {json.dumps(theirs.get(k))}" for k in keys[:4]) + ")"


# ---- the override journal -------------------------------------------------------------------------------


def begin_override(folder: Path, old_id: str, new_id: str, record: dict) -> None:
    atomic_write_json(folder / JOURNAL, {"from": old_id, "to": new_id, "config": record})


def finish_override(folder: Path, record: dict) -> None:
    atomic_write_json(folder / "config.json", record)
    with contextlib.suppress(FileNotFoundError):
        (folder / JOURNAL).unlink()


def recover(folder: Path) -> str | None:
    """Complete or roll back an override interrupted between its writes; returns what was done."""
    try:
        journal = read_json(folder / JOURNAL, "override journal")
    except FileNotFoundError:
        return None
    except UsageError:
        journal = None
    if not isinstance(journal, dict) or not isinstance(journal.get("config"), dict):
        (folder / JOURNAL).unlink()
        return "removed a damaged override journal"
    ckpt = identity(folder)[CHECKPOINT_FILE]
    if ckpt == journal.get("to"):
        finish_override(folder, journal["config"])
        return "completed an interrupted `override_config`"
    (folder / JOURNAL).unlink()
    return "rolled back an interrupted `override_config`"
