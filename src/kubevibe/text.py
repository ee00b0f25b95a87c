"""Small text helpers shared by every layer: a pasteable command line, and clipping long text.

Ground floor: imports nothing of KubeVibe, so errors.py and exec.py can both use it without importing each other.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence


def pretty_command(argv: Sequence[str]) -> str:
    """A pasteable rendering of argv (for logs and error messages only; never executed)."""
    return shlex.join([str(a) for a in argv])


def clip_middle(text: str, head: int, tail: int) -> str:
    """text when it fits in head + tail characters; else its first `head` and last `tail` characters around a
    note of how many were cut (the start says what ran, the end says how it failed)."""
    if len(text) <= head + tail:
        return text
    return text[:head] + f"\n... [{len(text) - head - tail} characters cut] ...\n" + text[-tail:]


def clip_end(text: str, limit: int, ellipsis: str = "...") -> str:
    """text when it has at most `limit` characters; else its start and `ellipsis`, `limit` characters in all."""
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis


def trim_middle(text: str, limit: int) -> str:
    """text cut to about `limit` characters: a third from its start, the rest from its end (evidence and chat
    turns for a prompt)."""
    head = limit // 3
    return text if len(text) <= limit else clip_middle(text, head, limit - head - 40)


def last_line(text: str, *, keep: Callable[[str], bool] | None = None,
              prefer: Callable[[str], bool] | None = None) -> str | None:
    """The last non-blank line of text that `keep` accepts (all, by default), stripped: the last of those that
    `prefer` accepts, if any does. None when there is none. How a failed command is told in one line."""
    lines = [line for line in text.splitlines() if line.strip() and (keep is None or keep(line))]
    preferred = [line for line in lines if prefer(line)] if prefer is not None else []
    chosen = (preferred or lines or [None])[-1]
    return None if chosen is None else chosen.strip()
