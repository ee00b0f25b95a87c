"""Terminal output: a live line for the running stage with its elapsed time, a permanent line per finished stage;
and how the CLI prints a run's end (`print_run_end`), a run's summary (`kubevibe show`) and the runs listing.

On a terminal the running stage shows a spinner and a ticking clock; in a pipe or a log file only the
finished lines are printed. Quiet and JSON modes use no reporter at all (the CLI prints only the end).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kubevibe.pipeline.context import StageResult
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.record.listing import human_age
from kubevibe.record.show import load_line, stand_in_lines, verification_line

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


def lineage_line(lineage: list[dict]) -> str:
    """The runs a refined run descends from, nearest first: 'ID "request" ← ID "request"'."""
    return " ← ".join(f"{a['run_id']}" + (f" \"{a['prompt']}\"" if a.get("prompt") else "")
                      + ("" if a.get("found") else " (missing)") for a in lineage)


def print_run_summary(out: Console, summary: dict[str, Any]) -> None:
    """`kubevibe show`: the run, its transitions and what was verified."""
    out.print(f"[bold]{summary['run_id']}[/]  {summary['outcome']}  ({summary['path']})")
    out.print(f"request:  {summary['prompt']}", highlight=False, markup=False)
    if summary.get("lineage"):
        out.print(f"refines:  {lineage_line(summary['lineage'])}", highlight=False, markup=False)
    llm = summary["llm"]
    out.print(f"llm:      {llm.get('backend')} {llm.get('model')}  strategy={summary['strategy']}  "
              f"style={summary['style']}  intent={summary['intent_method']}", highlight=False, markup=False)
    out.print(f"steps:    {summary['steps']}  fixes: {summary['fix_iterations']}  revisions: {summary['revisions']}  "
              f"llm calls: {summary['llm_calls']}  completion tokens: {summary['completion_tokens']}")
    for t in summary["transitions"]:
        out.print(f"  {t['step']!s:>3} {t['from']!s:<9} → {t['to']!s:<9} {t['result']:<15} "
                  f"{(t['duration_s'] or 0):6.1f}s  {t['reason'] or ''}", highlight=False, soft_wrap=True)
    out.print(f"verified: {verification_line(summary['verified'], summary['tests_from'])}", markup=False)
    if load_line(summary["load"], summary["slo"]):
        out.print(f"load:     {load_line(summary['load'], summary['slo'])}", highlight=False, markup=False)
    if summary["resources"]:
        out.print(f"resources: {summary['resources']}", highlight=False, markup=False)
    for line in stand_in_lines(summary["stand_ins"]):
        out.print(line, highlight=False, markup=False)
    if summary["service_file"] and summary["service_file"] != "myapp.py":
        out.print(f"service file: {summary['service_file']}", highlight=False, markup=False)
    if summary["image"]:
        out.print(f"image:    {summary['image']}")
    if summary["chart"]:
        out.print(f"chart:    {summary['chart']}")
    if summary["reason"] and summary["outcome"] != "success":
        out.print(f"reason:   {summary['reason']}", highlight=False, markup=False)


def print_run_end(out: Console, end: Any, summary: dict[str, Any], path: Path, *, quiet: bool) -> None:
    """The end of `kubevibe run`, `resume` and `refine` (end: the session's RunEnd)."""
    colour = {"success": "green", "fail": "red", "error": "red"}.get(end.outcome, "yellow")
    out.print(f"[{colour}]{end.outcome.upper()}[/] {escape(end.reason)}", highlight=False)
    out.print(f"verified: {verification_line(summary['verified'], summary['tests_from'])}", highlight=False, markup=False)
    if summary.get("lineage"):
        out.print(f"refines:  {lineage_line(summary['lineage'])}", highlight=False, markup=False)
    if (summary.get("push") or {}).get("ok"):
        out.print(f"pushed:   {summary['push']['image']}", highlight=False, markup=False)
    if load_line(summary["load"], summary["slo"]) and not quiet:
        out.print(f"load: {load_line(summary['load'], summary['slo'])}", highlight=False, markup=False)
    for line in stand_in_lines(summary["stand_ins"]):  # what would differ on a real registry and cluster
        out.print(line, highlight=False, markup=False)
    if not quiet:
        out.print(f"record: {path}", highlight=False, markup=False)
    if end.hint:
        out.print(f"hint: {end.hint}", highlight=False, markup=False)


def print_run_rows(out: Console, rows: list[Any]) -> None:
    """`kubevibe runs`: one line per run (rows: records.listing's RunRow)."""
    # Plain aligned lines (never folded), so the listing reads the same in a terminal, a pipe or a log.
    cells = [(r.run_id, r.outcome, human_age(r.age_s), r.model or "", r.parent or "-", r.verdict, r.request[:100])
             for r in rows]
    header = ("RUN", "OUTCOME", "AGE", "MODEL", "PARENT", "VERIFIED", "REQUEST")
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(5)]
    for line in [header, *cells]:
        fixed = "  ".join(text.ljust(width) for text, width in zip(line[:5], widths))
        out.print(f"{fixed}  {line[5]}  | {line[6]}", highlight=False, markup=False)
