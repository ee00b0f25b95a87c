"""Small text helpers shared by every layer: a pasteable command line, and clipping long text.

Ground floor: imports nothing of KubeVibe, so errors.py and exec.py can both use it without importing each other.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


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
