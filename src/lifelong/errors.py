"""The library's own error types.

Every error a user can cause is a :class:`LifelongError` whose message is one line saying what is
wrong and how to fix it. The CLI prints that line and exits with ``exit_code``: 2 for usage errors
(bad options, bad or missing input files), 1 for failures at run time (a diverging loss).

The library speaks Python: a message names a parameter as it is spelled in Python, quoted as code
(```lam```, ```data_dir```) or with its value (``fisher='mc'``), and lists those names in ``params``.
The command line, which knows each parameter's flag, rewrites them (``--lambda``, ``--data-dir``,
``--fisher mc``) before printing; in Python the message is read as it is.
"""

from __future__ import annotations

import re


class LifelongError(Exception):
    """Base class of every error this library raises on purpose.

    ``params``: the Python names of the parameters the message mentions (``("lam", "lr")``), so that a
    front end can name them its own way; those quoted as code (```out```, ```overwrite=True```) are
    found by themselves. ``owner``: what they belong to (a strategy's name, ``"train"``, ``"stream"``),
    or None.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, params: tuple[str, ...] = (), owner: str | None = None):
        super().__init__(message)
        quoted = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)(?:=[^`]*)?`", message)
        self.params = tuple(dict.fromkeys([*params, *quoted]))
        self.owner = owner

    def within(self, where: str) -> "LifelongError":
        """This error (same type, same parameters) with ``where: `` in front of its message: a sweep's
        ``sweep run 3 of 8 (lr=0): train: lr must be > 0``."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.args = (f"{where}: {self}",)
        return out


class UsageError(LifelongError):
    """Bad options or configuration: unknown names, values out of range, unwritable folders."""

    exit_code = 2


class SettingError(UsageError):
    """A value one setting of ``owner`` cannot take: ``ewc: lam must be >= 0, got -1``.

    ``name`` is the field, ``problem`` the rest of the sentence; ``params`` lists ``name`` and any other
    field the problem mentions (written ``field`` or ``field='value'``)."""

    def __init__(self, owner: str, name: str, problem: str, *others: str):
        super().__init__(f"{owner}: {name} {problem}", params=(name, *others), owner=owner)
        self.name, self.problem = name, problem


class DataError(LifelongError):
    """Missing, corrupt or unverifiable data files (IDX format errors, checksum mismatches)."""

    exit_code = 2


class UserCodeError(LifelongError):
    """Your own code (a ``stream`` function, a callback) raised: the message says where and what; its
    traceback is the cause (the CLI shows it with ``--debug``)."""

    exit_code = 1


class DiskError(LifelongError):
    """A file could not be written (a full disk, no permission): the message names the file and what
    survived."""

    exit_code = 1


class TrainingDiverged(LifelongError):
    """The loss became NaN or infinite; the message names the likely cause."""

    exit_code = 1


def names(keys) -> str:
    """Keys a user wrote (JSON object keys, setting names) for a one-line message: as they are, or in
    quotes with escapes when they hold a newline or another unprintable character."""
    return ", ".join(k if isinstance(k, str) and k.isprintable() else repr(k) for k in keys)
