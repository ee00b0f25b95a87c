"""SIGINT and SIGTERM for a run: they become `Interrupted` in the main thread, except inside `deferred()`.

Cleanups (tearing a deployment down, writing the end of the record) run deferred: a signal that arrives then is
remembered, not raised, so a second Ctrl-C cannot abort a teardown half-way or leave run.json at "running". The
teardown commands themselves run in their own process group (kubevibe.exec), so a terminal's Ctrl-C does not
reach them either. SIGTERM behaves exactly like SIGINT.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kubevibe.pipeline.context import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Guard:
    def __init__(self) -> None:
        self.installed = 0  # nesting depth of handled()
        self.defer = 0  # nesting depth of deferred()
        self.pending: str | None = None  # a signal that arrived while deferred, not raised yet
        self.raised = False  # an Interrupted is on its way: the run is stopping, later signals must not cut that

    def handler(self, signum: int, frame: object) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        if self.defer or self.raised:
            self.pending = self.pending or name
            return
        self.raised = True
        raise Interrupted(name)


_GUARD = _Guard()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handled(*, exiting: bool = False) -> Iterator[None]:
    """Install the handlers for the block (main thread only; elsewhere the block runs untouched).

    exiting: the process ends after the block (the CLI). If it was interrupted, later signals are ignored
    instead of restoring the defaults: the record is complete, and a second Ctrl-C must not turn exit code
    130 into a death by signal on the way out.
    """
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _GUARD.handler) for sig in SIGNALS} if not _GUARD.installed else {}
    _GUARD.installed += 1
    try:
        yield
    finally:
        _GUARD.installed -= 1
        interrupted = _GUARD.raised or _GUARD.pending is not None
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_IGN if exiting and interrupted else old)
        if not _GUARD.installed:
            _GUARD.pending, _GUARD.raised = None, False


@contextmanager
def deferred() -> Iterator[None]:
    """Signals arriving in the block are remembered (see `take_pending`) instead of raised.

    Only the main thread receives signals, so only its blocks count (runs in worker threads share the guard)."""
    if not _main_thread():
        yield
        return
    _GUARD.defer += 1
    try:
        yield
    finally:
        _GUARD.defer -= 1


@contextmanager
def allowed() -> Iterator[None]:
    """Inside a deferred block: signals raise again for this block (the Runner's loop; a slow model probe before
    anything exists that a signal could leave half-made). A signal held before stays pending: `raise_pending()`
    delivers it where the caller can record it."""
    if not _main_thread():
        yield
        return
    depth, _GUARD.defer = _GUARD.defer, 0
    try:
        yield
    finally:
        _GUARD.defer = depth


def take_pending() -> str | None:
    """The name of a signal that arrived while deferred (and forget it)."""
    if not _main_thread():
        return None
    name, _GUARD.pending = _GUARD.pending, None
    return name


def raise_pending() -> None:
    """Raise `Interrupted` now for a signal that arrived while deferred."""
    name = take_pending()
    if name:
        _GUARD.raised = True
        raise Interrupted(name)
