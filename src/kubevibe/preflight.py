"""Checks made before a run starts, so that what the user can fix fails at once with one sentence (exit 2)
instead of half-way through a run with a half-written record."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from kubevibe.errors import UsageError

# Written and removed in the runs directory before a run: a run needs at least this much room for its record.
PROBE_BYTES = 1 << 20


def check_argv(argv: list[str]) -> None:
    """Python turns argv bytes that are not UTF-8 into lone surrogates, which no file or JSON can hold."""
    for position, arg in enumerate(argv[1:], start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:60]
            raise UsageError(f"Command-line argument {position} ({shown!r}) is not valid UTF-8 text.") from None


def check_runs_dir(runs_dir: Path) -> None:
    """The runs directory exists (or can be made), is a directory, is writable and has room."""
    path = Path(runs_dir)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"The runs directory {path} cannot be used: {parent} is a file, not a directory.")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"The runs directory {path} cannot be created: {_cause(exc)}.") from None
    probe = path / f".kubevibe-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise UsageError(f"The runs directory {path} cannot be written: {_cause(exc)}.") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def _cause(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full (no space left on device)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return (exc.strerror or str(exc)).lower()
