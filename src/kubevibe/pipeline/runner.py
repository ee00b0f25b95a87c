"""The runner: follows the transition table, enforces the limits, and is the only writer of the run record.

Per stage execution it: checks the limits, runs the stage function (whose LLM calls it appends to llm.jsonl as
they are handed over), stores a new artifact revision when the stage changed the files, applies the stage's
updates to RunState (validated: RunState.updated), writes the stage's evidence, appends the transition to
events.jsonl, and checkpoints state.json. The records are the models of record/schema.py. Whatever way the run ends (terminal state, limit, tool error, bug, Ctrl-C/SIGTERM), every
cleanup the stages registered runs and run.json says how it ended.

The runner owns the deployment's life: Deploy hands its handle to the context (`ctx.hold_deployment`, the
cleanup "deployment"), every stage in DEPLOYED_STATES uses it, and the runner tears it down when the pipeline
moves anywhere else (Fix included), at the end and on any interruption, a signal deferred until it is done.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from pydantic import BaseModel

from kubevibe.errors import KubeVibeError
from kubevibe.pipeline.artifacts import IMAGE_INPUTS
from kubevibe.pipeline import signals
from kubevibe.pipeline.context import Interrupted, RunContext, StageResult
from kubevibe.pipeline.fsm import DEPLOYED_STATES, TERMINAL, Outcome, State, next_state
from kubevibe.record.schema import Checkpoint, Counters, LLMCallRecord, RECORD_VERSION, TransitionEvent
from kubevibe.record.verdict import make_verdict, outcome_of_completed_run, unverified_reason
from kubevibe.stages import stage_function


class RunEnd(BaseModel):
    outcome: str  # "success", "unverified", "fail", "interrupted", "error"
    final_state: str | None
    reason: str
    hint: str | None = None


class Reporter(Protocol):
    def stage_started(self, step: int, state: State) -> None: ...
    def stage_finished(self, step: int, state: State, result: StageResult, duration: float, target: State) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def stage_started(self, step: int, state: State) -> None:
        pass

    def stage_finished(self, step: int, state: State, result: StageResult, duration: float, target: State) -> None:
        pass

    def note(self, text: str) -> None:
        pass


# What a successful execution of a stage proves about the current files (reset when the files change).
VERIFIED_BY = {State.BUILD: "built", State.VALIDATE: "validated", State.DEPLOY: "deployed",
               State.CONNECT: "reachable", State.ACCEPT: "accepted", State.LOAD: "load", State.CHART: "charted"}

StageLookup = Callable[[State], Callable[[RunContext], StageResult]]


class Runner:
    def __init__(self, ctx: RunContext, counters: Counters | None = None, reporter: Reporter | None = None,
                 stages: StageLookup = stage_function):
        self.ctx = ctx
        self.counters = counters or Counters()
        self.reporter = reporter or SilentReporter()
        self.stages = stages  # injectable so the engine's logic is testable with scripted stages
        self._session_start = time.monotonic()
        ctx.set_llm_call_writer(self._record_llm_call)  # stages hand their LLM calls to the runner

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, start: State) -> RunEnd:
        state = start
        # allowed(): the caller may hold signals until here (the CLI does, from the run directory's creation on).
        with signals.handled(), signals.allowed():
            try:
                signals.raise_pending()  # a signal while the run directory was being created
                while state not in TERMINAL:
                    limit = self._limit_reached(state)
                    if limit:
                        self._record_transition(state, Outcome.LIMIT, State.FAIL, limit, 0.0)
                        self._checkpoint(State.FAIL)
                        return self._finish(State.FAIL, RunEnd(outcome="fail", final_state=State.FAIL, reason=limit))
                    state = self._execute(state)
                    self._checkpoint(state)
                    self._leave_deployment(state)
            except Interrupted as exc:
                return self._stopped(state, "interrupted", f"interrupted by {exc.args[0] if exc.args else 'a signal'}",
                                     RunEnd(outcome="interrupted", final_state=None,
                                            reason=f"interrupted during {state}; `kubevibe resume` continues it"))
            except KubeVibeError as exc:
                return self._stopped(state, "error", exc.message,
                                     RunEnd(outcome="error", final_state=None, reason=exc.message, hint=exc.hint))
            except OSError as exc:  # the disk filled up, the run directory went away, ...: one sentence, not a bug
                if exc.errno == errno.ENOSPC:
                    self.ctx.rundir.free_reserve()  # the room set aside at the start, for exactly this record
                reason = f"{exc.filename or 'a file'} could not be written: {os_cause(exc)}"
                return self._stopped(state, "error", reason, RunEnd(
                    outcome="error", final_state=None, reason=reason, hint="free space (or fix the path), then "
                    "`kubevibe resume` continues the run"))
            except Exception as exc:  # a bug in KubeVibe: keep the traceback in the run, end cleanly
                with signals.deferred():
                    _write_quietly(self.ctx.rundir.path / "error.txt", traceback.format_exc())
                return self._stopped(state, "error", f"internal error: {exc!r}", RunEnd(
                    outcome="error", final_state=None,
                    reason=f"internal error in {state}: {exc!r} (traceback in error.txt)"))
            return self._finish(state, self._completed(state))

    def _completed(self, state: State) -> RunEnd:
        """How a run that reached a terminal state ended. The pipeline passing is not enough for SUCCESS: that
        word is kept for independent acceptance tests that all passed (otherwise: unverified)."""
        last = self._last_reason()
        if state != State.SUCCESS:
            return RunEnd(outcome="fail", final_state=state, reason=last)
        verdict = make_verdict(self.ctx.state.verified)
        outcome = outcome_of_completed_run(verdict)
        if outcome == "success":
            accepted = verdict["accepted"]
            reason = f"{accepted['passed']}/{accepted['total']} acceptance tests ({accepted['source']}) passed; {last}"
        else:
            reason = unverified_reason(verdict)
        return RunEnd(outcome=outcome, final_state=state, reason=reason)

    def _leave_deployment(self, state: State) -> None:
        """The deployment lives only through DEPLOYED_STATES: tear it down once the pipeline moves elsewhere.
        A teardown that fails stays registered: the error stops the run, whose end tries it once more."""
        if state in DEPLOYED_STATES or state == State.DEPLOY or not self.ctx.has_cleanup("deployment"):
            return
        with signals.deferred():  # a teardown is never cut half-way; the signal is raised right after it
            self.ctx.run_cleanup("deployment")
        signals.raise_pending()

    def _stopped(self, state: State, result: str, reason: str, end: RunEnd) -> RunEnd:
        """The run stops before a terminal state: clean up, say why in events.jsonl, keep a checkpoint."""
        with signals.deferred():
            errors = self.ctx.run_all_cleanups()
            # Each write on its own: with a full disk the last event may fail while run.json still fits.
            _best_effort(lambda: self._record_stop(state, result, reason, errors))
            _best_effort(lambda: self._checkpoint(state))  # resume re-runs the stage that was stopped
            try:
                return self._end(end)
            except OSError as exc:
                raise KubeVibeError(f"The run stopped ({end.reason}), and its record "
                                    f"{self.ctx.rundir.path / 'run.json'} could not be finished: {os_cause(exc)}.",
                                    hint="free space, then `kubevibe resume` continues the run") from None

    def _finish(self, state: State, end: RunEnd) -> RunEnd:
        with signals.deferred():
            errors = self.ctx.run_all_cleanups()
            if errors:
                self._record_stop(state, "cleanup-failed", "; ".join(errors), errors)
            late = signals.take_pending()
            if late:
                self._record_stop(state, "signal", f"{late} arrived during the final cleanup, which finished", [])
            _best_effort(lambda: self._checkpoint(state))
            try:
                return self._end(end)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                self.ctx.rundir.free_reserve()
                return self._end(end)

    def _execute(self, state: State) -> State:
        ctx, c = self.ctx, self.counters
        c.steps += 1
        if state == State.FIX:
            c.fix_attempts += 1
        ctx.step, ctx.stage = c.steps, state
        self.reporter.stage_started(c.steps, state)
        started = time.monotonic()
        result = self.stages(state)(ctx)
        duration = time.monotonic() - started
        target = next_state(state, result.outcome)

        if result.artifacts is not None:
            changed = result.artifacts.changed_files(ctx.artifacts)
            ctx.artifacts = result.artifacts
            rev = ctx.rundir.write_revision(result.artifacts)
            result.metrics["revision"] = rev
            # What was verified belongs to the old files; the image stays valid if none of its inputs changed.
            image_still_valid = not (IMAGE_INPUTS & set(changed)) and ctx.state.verified.get("built")
            ctx.state.verified = {"built": True} if image_still_valid else {}
        ctx.state = ctx.state.updated(result.updates, stage=state)
        if result.outcome == Outcome.OK and state in VERIFIED_BY and VERIFIED_BY[state] not in result.updates.get(
                "verified", {}):  # a stage may say it verified less (ACCEPT with no tests)
            ctx.state.verified[VERIFIED_BY[state]] = True
        if result.outcome == Outcome.FAILED:
            c.consecutive_failures += 1
            if state != State.FIX:  # Fix is shown the failure of the stage it repairs, not its own
                ctx.state.last_failure = {"stage": str(state), "step": c.steps, "summary": result.summary,
                                          "evidence": [e.model_dump() for e in result.evidence]}
        elif state != State.FIX:
            c.consecutive_failures = 0
        step_dir = ctx.rundir.step_dir(c.steps, state)
        step_dir.mkdir(parents=True, exist_ok=True)
        _write_result(step_dir, result, duration)
        self._record_transition(state, result.outcome, target, result.summary, duration, result.metrics)
        self.reporter.stage_finished(c.steps, state, result, duration, target)
        return target

    # -- limits ---------------------------------------------------------------------------------------
    def _limit_reached(self, state: State) -> str | None:
        s, c = self.ctx.settings, self.counters
        if self.ctx.remaining() <= 0:
            return f"the run's time limit of {s.timeout:g}s (TIMEOUT) was reached"
        if c.steps >= s.max_steps:
            return f"the limit of {s.max_steps} stage executions (N) was reached"
        if state == State.FIX and c.fix_attempts >= s.max_fix_attempts:
            return f"the limit of {s.max_fix_attempts} fix attempts was reached"
        if c.consecutive_failures >= s.max_consecutive_failures:
            return f"{c.consecutive_failures} stage executions failed in a row (limit {s.max_consecutive_failures})"
        return None

    # -- records --------------------------------------------------------------------------------------
    def _record_transition(self, source: State, outcome: Outcome, target: State, reason: str, duration: float,
                           metrics: dict[str, Any] | None = None) -> None:
        event = TransitionEvent(time=_now(), step=self.counters.steps, source=str(source), to=str(target),
                                result=str(outcome), duration_s=round(duration, 3), reason=reason)
        if metrics:
            event.metrics = metrics
        self.ctx.rundir.append_event(event)

    def _record_stop(self, state: State, result: str, reason: str, cleanup_errors: list[str]) -> None:
        event = TransitionEvent(time=_now(), step=self.counters.steps, source=str(state), to=None, result=result,
                                duration_s=0.0, reason=reason)
        if cleanup_errors:
            event.cleanup_errors = cleanup_errors
        self.ctx.rundir.append_event(event)

    def _record_llm_call(self, call: LLMCallRecord) -> None:
        """Written at once, not at the stage's end: a stage that crashes after a call still leaves it recorded."""
        self.ctx.rundir.append_llm_call(call)

    def _last_reason(self) -> str:
        events = self.ctx.rundir.read_events()
        return (events[-1].reason or "") if events else ""

    def _checkpoint(self, next_state_: State) -> None:
        self.ctx.rundir.write_checkpoint(Checkpoint(
            record_version=RECORD_VERSION,
            next_state=str(next_state_),
            counters=self._counters_now(),
            state=self.ctx.state.model_dump(),
            revision=(self.ctx.rundir.revisions() or [None])[-1],
        ))

    def _counters_now(self) -> Counters:
        c = self.counters.model_copy()
        c.elapsed_s = round(self.counters.elapsed_s + time.monotonic() - self._session_start, 3)
        return c

    def _end(self, end: RunEnd) -> RunEnd:
        run = self.ctx.rundir.read_run()
        state = self.ctx.state
        run.outcome = end.outcome
        run.final_state = str(end.final_state) if end.final_state else None
        run.reason = end.reason
        run.hint = end.hint
        run.finished = _now()
        run.counters = self._counters_now().model_dump()
        run.verified = state.verified
        run.intent = state.intent
        run.image = state.image
        run.chart = state.chart
        run.strategy = state.strategy
        run.reference = state.reference
        run.load = state.load_report
        run.service_file = state.service_file
        run.stand_ins = state.stand_ins
        run.verdict = {**make_verdict(state.verified), "slo": _slo_verdict(self.ctx)}
        if state.acceptance:
            run.acceptance = state.acceptance
        if state.test_writer:
            run.test_writer = state.test_writer
        self.ctx.rundir.write_run(run)
        return end


def _slo_verdict(ctx: RunContext) -> dict[str, Any] | None:
    from kubevibe.load.report import slo_verdict
    from kubevibe.slo import effective_slo

    stated = effective_slo(ctx.state.slo, ctx.state.intent)[0] is not None
    return slo_verdict(ctx.state.load_report, stated=stated, verified=bool(ctx.state.verified.get("load")))


def _write_result(step_dir, result: StageResult, duration: float) -> None:
    import json

    data = result.model_dump(exclude={"artifacts"}, mode="json")
    data["duration_s"] = round(duration, 3)
    (step_dir / "result.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def os_cause(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full (no space left on device)"
    return (exc.strerror or str(exc)).lower()


def _best_effort(write: Callable[[], None]) -> None:
    try:
        write()
    except OSError:
        pass


def _write_quietly(path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:  # the record's end matters more than the traceback file
        pass
