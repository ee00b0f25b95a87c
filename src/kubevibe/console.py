"""Terminal output: a live line per stage with elapsed time; quiet and JSON modes print only the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.status import Status

from kubevibe.pipeline.context import StageResult
from kubevibe.pipeline.fsm import Outcome, State

_MARK = {Outcome.OK: "[green]✓[/]", Outcome.FAILED: "[red]✗[/]"}


class ConsoleReporter:
    def __init__(self, console: Console, run_started: float | None = None):
        self.console = console
        self.run_started = run_started or time.monotonic()
        self._status: Status | None = None
        self._stage_started = 0.0

    def stage_started(self, step: int, state: State) -> None:
        self._stage_started = time.monotonic()
        label = f"[bold]{step:>3} {state.value:<9}[/] running…"
        if self.console.is_terminal:
            self._status = self.console.status(label)
            self._status.start()
            self._tick_label = label
        else:
            self.console.print(f"{step:>3} {state.value:<9} …", highlight=False)

    def stage_finished(self, step: int, state: State, result: StageResult, duration: float, target: State) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        mark = _MARK.get(result.outcome, "[yellow]↻[/]")
        total = time.monotonic() - self.run_started
        summary = result.summary if len(result.summary) <= 160 else result.summary[:157] + "…"
        self.console.print(f"{step:>3} {state.value:<9} {mark} {duration:6.1f}s  (total {total:5.0f}s) "
                           f"→ {target.value:<9} {summary}", highlight=False, markup=True, soft_wrap=True)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)
