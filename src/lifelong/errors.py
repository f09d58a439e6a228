"""The library's own error types.

Every error a user can cause is a :class:`LifelongError` whose message is one line saying what is
wrong and how to fix it. The CLI prints that line and exits with ``exit_code``: 2 for usage errors
(bad options, bad or missing input files), 1 for failures at run time (a diverging loss).
"""

from __future__ import annotations


class LifelongError(Exception):
    """Base class of every error this library raises on purpose."""

    exit_code = 1


class UsageError(LifelongError):
    """Bad options or configuration: unknown names, values out of range, unwritable folders."""

    exit_code = 2


class DataError(LifelongError):
    """Missing, corrupt or unverifiable data files (IDX format errors, checksum mismatches)."""

    exit_code = 2


class TrainingDiverged(LifelongError):
    """The loss became NaN or infinite; the message names the likely cause."""

    exit_code = 1


def names(keys) -> str:
    """Keys a user wrote (JSON object keys, setting names) for a one-line message: as they are, or in
    quotes with escapes when they hold a newline or another unprintable character."""
    return ", ".join(k if isinstance(k, str) and k.isprintable() else repr(k) for k in keys)
