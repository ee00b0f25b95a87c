"""Terminal output: a live line for the running stage with its elapsed time, a permanent line per finished stage.

On a terminal the running stage shows a spinner and a ticking clock; in a pipe or a log file only the
finished lines are printed. Quiet and JSON modes use no reporter at all (the CLI prints only the end).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kubevibe.pipeline.context import StageResult
from kubevibe.pipeline.fsm import Outcome, State

_MARK = {Outcome.OK: "[green]✓[/]", Outcome.FAILED: "[red]✗[/]"}


class ConsoleReporter:
    def __init__(self, console: Console):
        self.console = console
        self.run_started = time.monotonic()
        self._progress: Progress | None = None

    def stage_started(self, step: int, state: State) -> None:
        if not self.console.is_terminal:
            return
        self._progress = Progress(SpinnerColumn(), TextColumn(f"[bold]{step:>3} {state.value:<9}[/]"),
                                  TimeElapsedColumn(), console=self.console, transient=True)
        self._progress.add_task(state.value, total=None)
        self._progress.start()

    def stage_finished(self, step: int, state: State, result: StageResult, duration: float, target: State) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        mark = _MARK.get(result.outcome, "[yellow]↻[/]")
        total = time.monotonic() - self.run_started
        summary = result.summary if len(result.summary) <= 160 else result.summary[:157] + "…"
        # The end of the pipeline is not yet a success: the verdict decides (success or unverified) and says so.
        shown = "END" if target == State.SUCCESS else target.value
        self.console.print(f"{step:>3} {state.value:<9} {mark} {duration:6.1f}s (total {total:4.0f}s) "
                           f"→ {shown:<9} {escape(summary)}", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)
