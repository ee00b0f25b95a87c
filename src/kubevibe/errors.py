"""Errors meant for users: one sentence of what went wrong, and a hint that says how to fix it.

A *stage failure* is not an error: it is an outcome that feeds the Fix stage. These errors are for the tool
itself (bad settings, a missing engine, an unreachable model server) and stop the run.
"""

from __future__ import annotations

from kubevibe.text import pretty_command


class KubeVibeError(Exception):
    """A problem the user can fix. `str()` is the one-line message; `hint` says what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(KubeVibeError):
    """Bad input from the user (a flag, a setting, a file). Exit code 2."""

    exit_code = 2


class SettingError(UsageError):
    def __init__(self, name: str, value: object, expected: str):
        super().__init__(f"Setting {name}={value!r} is invalid: expected {expected}.")
        self.name = name


class LLMUnavailable(KubeVibeError):
    """The model server could not be reached at all (after retries). Not the model's fault: the run stops."""


class CommandError(KubeVibeError):
    """An external command the tool itself needs (not a stage under test) failed."""

    def __init__(self, argv: list[str], returncode: int | None, output: str, hint: str | None = None):
        tail = output.strip().splitlines()[-5:]
        msg = f"Command failed (exit {returncode}): {pretty_command(argv)}"
        if tail:
            msg += "\n  " + "\n  ".join(tail)
        super().__init__(msg, hint)
        self.argv = argv
        self.returncode = returncode
        self.output = output
