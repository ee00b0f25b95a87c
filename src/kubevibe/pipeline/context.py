"""The run context handed to every stage, and the result every stage returns.

Stages read the context and return a `StageResult`; they never write the run record (events, run.json,
revisions, state.json) themselves: only the runner does. A stage's LLM calls are handed to
`record_llm_call`, which writes through the runner's writer at once. A stage's `updates` are RunState fields,
checked against RunState when the runner applies them (`RunState.updated`). A stage may write files in its own
`stage_dir` (logs, build context) or in a directory the RunDir hands it (Chart: `RunDir.fresh_chart_dir()`), and
may register a cleanup for a resource it created, which the runner guarantees to run. Deploy hands its deployment
handle to the context (`hold_deployment`) before anything exists; later stages use `ctx.deployment`, and the
runner tears it down (the cleanup "deployment").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from kubevibe.evidence import Evidence as Evidence  # re-exported: stages import it from here
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.fsm import Outcome, State

if TYPE_CHECKING:
    from kubevibe.llm.base import LLMClient
    from kubevibe.record.schema import LLMCallRecord
    from kubevibe.record.rundir import RunDir
    from kubevibe.settings import Settings
    from kubevibe.targets.base import Deployment


class StageResult(BaseModel):
    outcome: Outcome
    summary: str  # one sentence for the terminal and events.jsonl
    evidence: list[Evidence] = Field(default_factory=list)
    artifacts: ArtifactSet | None = None  # a new revision, when the stage changed the files
    # RunState fields to set ("verified" is merged into the current one); checked by RunState.updated.
    updates: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)  # numbers worth keeping (durations of sub-steps, ...)

    @classmethod
    def ok(cls, summary: str, **kw: Any) -> "StageResult":
        return cls(outcome=Outcome.OK, summary=summary, **kw)

    @classmethod
    def failed(cls, summary: str, **kw: Any) -> "StageResult":
        return cls(outcome=Outcome.FAILED, summary=summary, **kw)


class StateUpdateError(ValueError):
    """A stage returned updates that are not RunState fields, or values of the wrong type: a bug in the stage."""


class RunState(BaseModel):
    """What stages hand to later stages. Checkpointed after every stage, so `resume` can continue."""

    prompt: str
    intent: dict[str, Any] | None = None  # kubevibe.intent.Intent as data
    strategy: str | None = None  # "scaffold" or "full", resolved at the start of the run
    reference: str | None = None  # name of the nearest reference deployment, when one was used
    image: str | None = None  # the image Build produced, registry/name:tag
    image_mappings: list[dict[str, str]] = Field(default_factory=list)
    last_failure: dict[str, Any] | None = None  # {"stage", "summary", "evidence": [...]} for Fix
    deployment: dict[str, Any] | None = None  # what Deploy created, for Connect (addresses, ports)
    connect_report: dict[str, Any] | None = None
    slo: dict[str, Any] | None = None  # the objectives of --slo (kubevibe.slo.SLO as data); win over extracted ones
    load_report: dict[str, Any] | None = None  # what LOAD measured (kubevibe.load.LoadReport as data)
    chart: str | None = None  # path of the packaged chart, relative to the run dir
    # The frozen acceptance tests: {"source", "file" (relative to the run dir), "tests"} (contract 3).
    acceptance: dict[str, Any] | None = None
    test_writer: dict[str, Any] | None = None  # what the test writer produced: {"tests", "model"} or {"error"}
    accept_report: dict[str, Any] | None = None  # the last ACCEPT execution's per-test results
    verified: dict[str, Any] = Field(default_factory=dict)  # what was really checked, for the final summary
    # `kubevibe refine`: {"request": the follow-up, "parent_run_id", "parent_revision"}; None for a new request.
    refine: dict[str, Any] | None = None
    # The conversational style's one conversation (llm.conversation.Conversation as data), continued by resume.
    conversation: dict[str, Any] | None = None
    # Where Build wrote the service code in the build context (the artifact key stays "myapp.py").
    service_file: str | None = None
    # Every stand-in that acted in this run: {"kind": "base-image"|"dropped-field"|..., "detail": str}.
    stand_ins: list[dict[str, str]] = Field(default_factory=list)

    def updated(self, updates: dict[str, Any], *, stage: State | str) -> "RunState":
        """This state with a stage's `updates` applied, validated like every RunState: an unknown key or a value of
        the wrong type is refused at once, naming the stage. "verified" is merged into the current one."""
        unknown = sorted(set(updates) - set(type(self).model_fields))
        if unknown:
            raise StateUpdateError(f"stage {stage} returned updates for {', '.join(unknown)}, which RunState does "
                                   f"not have")
        if not updates:
            return self
        merged = dict(updates)
        if "verified" in merged:
            merged["verified"] = {**self.verified, **merged["verified"]}
        try:
            return type(self).model_validate({**dict(self), **merged})
        except ValidationError as exc:
            raise StateUpdateError(f"stage {stage} returned updates that do not fit RunState: {exc}") from exc

    def stand_ins_plus(self, new: list[dict[str, str]]) -> list[dict[str, str]]:
        """stand_ins with `new` appended, each record once (for StageResult.updates["stand_ins"])."""
        out = list(self.stand_ins)
        for record in new:
            if record not in out:
                out.append(record)
        return out


class Interrupted(BaseException):
    """Raised in the main thread on SIGINT/SIGTERM; BaseException so stage code does not swallow it."""


class RunContext:
    """Everything a stage may use. One per run; no global state."""

    def __init__(
        self,
        *,
        settings: "Settings",
        rundir: "RunDir",
        llm: "LLMClient",
        state: RunState,
        artifacts: ArtifactSet,
        run_id: str,
        deadline: float,
    ):
        self.settings = settings
        self.rundir = rundir
        self.llm = llm
        self.state = state
        self.artifacts = artifacts
        self.run_id = run_id
        self.deadline = deadline  # time.monotonic() value at which the whole run must stop
        self.step = 0  # the current step number, set by the runner
        self.stage: State | None = None
        self._cleanups: dict[str, Callable[[], None]] = {}
        # The live deployment (Deploy's handle); the runner tears it down with the cleanup "deployment".
        self.deployment: "Deployment | None" = None
        self._lock = threading.Lock()
        # Where record_llm_call writes: the runner installs its own writer; a stage run without a runner (a test
        # of one stage) gets the same RunDir writer.
        self._llm_call_writer: Callable[["LLMCallRecord"], None] = rundir.append_llm_call

    # -- time -----------------------------------------------------------------------------------------
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def timeout(self, wanted: float) -> float:
        """A timeout for one operation: what it wants, but never past the run's deadline (at least 1 s)."""
        return max(1.0, min(wanted, self.remaining()))

    # -- files ----------------------------------------------------------------------------------------
    @property
    def stage_dir(self) -> Path:
        """A directory of this stage execution's own, e.g. runs/.../steps/003-build/."""
        assert self.stage is not None
        d = self.rundir.step_dir(self.step, self.stage)
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def log_file(self) -> Path:
        return self.stage_dir / "commands.log"

    # -- the deployment -------------------------------------------------------------------------------
    def hold_deployment(self, handle: "Deployment") -> None:
        """Hold Deploy's handle before it creates anything: its teardown is the cleanup "deployment" (which
        first tears down the previous one), run by the runner when the pipeline leaves the deployed states, on
        Fix, at the end and on any interruption."""

        def release() -> None:
            handle.teardown()
            if self.deployment is handle:
                self.deployment = None

        self.add_cleanup("deployment", release)
        self.deployment = handle

    # -- the record -----------------------------------------------------------------------------------
    def set_llm_call_writer(self, writer: Callable[["LLMCallRecord"], None]) -> None:
        self._llm_call_writer = writer

    def record_llm_call(self, call: "LLMCallRecord") -> None:
        """Hand one LLM call to the run's writer (llm.jsonl), at once: a stage that crashes later keeps it."""
        self._llm_call_writer(call)

    # -- cleanups -------------------------------------------------------------------------------------
    def add_cleanup(self, key: str, fn: Callable[[], None]) -> None:
        """Register a teardown for a resource. A second registration under the same key runs the first one."""
        self.run_cleanup(key)
        with self._lock:
            self._cleanups[key] = fn

    def has_cleanup(self, key: str) -> bool:
        with self._lock:
            return key in self._cleanups

    def run_cleanup(self, key: str) -> None:
        """Run one cleanup. It stays registered until it has succeeded: a failed or interrupted teardown is
        tried again by the next cleanup (at the latest at the end of the run)."""
        with self._lock:
            fn = self._cleanups.get(key)
        if fn is None:
            return
        fn()
        with self._lock:
            if self._cleanups.get(key) is fn:
                del self._cleanups[key]

    def run_all_cleanups(self) -> list[str]:
        """Run every registered cleanup, newest first; return the errors (a failing cleanup never hides others).

        A cleanup that fails stays registered, so a later call (or a resumed run's Deploy) may try again."""
        errors = []
        with self._lock:
            keys = list(reversed(self._cleanups))
        for key in keys:
            try:
                self.run_cleanup(key)
            except Exception as exc:  # noqa: BLE001 - report every cleanup failure, keep cleaning
                errors.append(f"cleanup {key}: {exc}")
        return errors
