"""Start or resume a run: create the run directory, choose the LLM, write run.json, hand over to the Runner."""

from __future__ import annotations

import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kubevibe import __version__, owner
from kubevibe.errors import UsageError
from kubevibe.llm.base import LLMClient
from kubevibe.llm.resolve import LLMChoice, make_client
from kubevibe.pipeline import signals
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunContext, RunState
from kubevibe.pipeline.fsm import RESUME_REDIRECT, START, TERMINAL, State
from kubevibe.pipeline.runner import Counters, Reporter, Runner, RunEnd
from kubevibe.preflight import check_runs_dir
from kubevibe.record.rundir import CHECKPOINT_FILE, RunDir
from kubevibe.record.schema import RECORD_VERSION, Checkpoint, RunRecord, TransitionEvent
from kubevibe.settings import ResolvedSettings, Settings
from kubevibe.slo import load_slo_file

MAX_PROMPT_CHARS = 20_000
PUSHED_OUTCOMES = ("success", "unverified")  # --push: only an image that was deployed and answered leaves


def check_prompt(prompt: str) -> str:
    prompt = prompt.strip()
    if not prompt:
        raise UsageError("The request is empty: say what service to build, e.g. kubevibe run \"Develop a credit "
                         "card validation microservice\".")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UsageError(f"The request is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are accepted.")
    return prompt


def resolve_strategy(settings: Settings, llm: LLMClient) -> str:
    if settings.style == "conversational":
        # The scaffold is structured by nature (the tool renders the files, the model fills schema fields).
        if settings.strategy == "scaffold":
            raise UsageError("The scaffold strategy is structured prompting; with --style conversational use "
                             "--strategy full or auto.")
        return "full"
    if settings.strategy != "auto":
        return settings.strategy
    # A replayed run must take the recorded run's path, or its answers stop matching the requests.
    return llm.recorded_strategy or llm.default_strategy


def _replayed_style(settings: Settings, resolved: ResolvedSettings,
                    llm: LLMClient) -> tuple[Settings, ResolvedSettings]:
    """A replay asks the way the recorded run asked, unless the user chose a style: otherwise its answers stop
    matching the requests."""
    if llm.recorded_style is None or resolved.sources.get("style") != "default" or llm.recorded_style == settings.style:
        return settings, resolved
    settings = settings.model_copy(update={"style": llm.recorded_style})
    sources = {**resolved.sources, "style": "replay:recorded run"}
    return settings, resolved.model_copy(update={"settings": settings, "sources": sources})


class Session:
    """A run in progress: its directory, its context, and how it was started (for reporting)."""

    def __init__(self, ctx: RunContext, choice: LLMChoice | None, start: State, counters: Counters):
        self.ctx = ctx
        self.choice = choice
        self.start = start
        self.counters = counters

    @property
    def path(self) -> Path:
        return self.ctx.rundir.path

    def run(self, reporter: Reporter | None = None) -> RunEnd:
        try:
            end = Runner(self.ctx, self.counters, reporter).run(self.start)
            if self.ctx.settings.push and end.outcome in PUSHED_OUTCOMES:
                from kubevibe.publish import record_push

                end = record_push(self.ctx, end)  # still the run directory's owner: it writes run.json
            return end
        finally:
            self.ctx.llm.close()
            self.ctx.rundir.release()


def new_session(prompt: str, resolved: ResolvedSettings) -> Session:
    """Call it inside `signals.deferred()` (the CLI does, up to the Runner's start): a signal then never leaves a
    run directory empty or half-written; the Runner records it as the run's interruption instead."""
    prompt = check_prompt(prompt)
    settings = resolved.settings
    # A bad SLO file is bad input: it stops the run before anything is created (exit 2).
    slo = load_slo_file(settings.slo).model_dump(mode="json") if settings.slo else None
    with signals.allowed():  # nothing exists yet: Ctrl-C during a slow model probe or load just stops
        llm, choice = make_client(settings)
        try:
            settings, resolved = _replayed_style(settings, resolved, llm)
            strategy = resolve_strategy(settings, llm)
            check_runs_dir(settings.runs_dir)  # usable, with room: a run never starts only to die half-written
            llm.warm_up()  # before TIMEOUT's clock starts: loading a model is set-up, not the run
        except BaseException:
            llm.close()
            raise
    state = RunState(prompt=prompt, strategy=strategy, slo=slo)
    with signals.deferred():
        try:
            rundir = _create_rundir(settings, llm, prompt, state, choice, resolved)
        except BaseException:
            llm.close()
            raise
    ctx = RunContext(settings=settings, rundir=rundir, llm=llm, state=state, artifacts=ArtifactSet(),
                     run_id=rundir.run_id, deadline=time.monotonic() + settings.timeout)
    return Session(ctx, choice, START, Counters())


def _create_rundir(settings: Settings, llm: LLMClient, prompt: str, state: RunState, choice: LLMChoice,
                   resolved: ResolvedSettings) -> RunDir:
    rundir = RunDir.create(settings.runs_dir, llm.model)
    if settings.tests is not None:  # frozen before anything runs; a bad file stops here with exit code 2
        from kubevibe.acceptance.sources import freeze_given_file

        try:
            state.acceptance = freeze_given_file(rundir.path, settings.tests, settings.tests_source)
        except UsageError:
            shutil.rmtree(rundir.path, ignore_errors=True)  # nothing ran: leave no half-made run behind
            raise
    rundir.acquire()
    run = RunRecord(
        record_version=RECORD_VERSION,
        run_id=rundir.run_id,
        prompt=prompt,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        outcome="running",
        llm={"backend": llm.backend, "model": llm.model, "spec": settings.llm, "choice": choice.reason,
             "describe": llm.describe()},
        strategy=state.strategy,
        style=settings.style,
        settings=settings.model_dump(mode="json"),
        sources=resolved.sources,
        config_file=resolved.config_file,
        limits={"timeout_s": settings.timeout, "max_steps": settings.max_steps,
                "max_fix_attempts": settings.max_fix_attempts,
                "max_consecutive_failures": settings.max_consecutive_failures},
        versions=versions(),
        policy=policy_record(settings.policy),
        slo={"objectives": state.slo, "source": "file", "file": str(settings.slo)} if state.slo else None,
        owner=owner.current().model_dump(),
    )
    if state.acceptance:
        run.acceptance = state.acceptance
    rundir.write_run(run)
    return rundir


def policy_record(level: str) -> dict[str, str]:
    """What the manifests were held to (issue 9): the Pod Security Standards level and policy version."""
    from kubevibe.policy.podsecurity import LATEST

    return {"level": level, "standard": "Pod Security Standards", "version": f"v{LATEST[0]}.{LATEST[1]}",
            "own_rules": "kubevibe"}


def resume_session(path: Path, llm_override: str | None = None) -> Session:
    rundir = RunDir.open(path)
    rundir.acquire()  # refused, with one sentence, while the run's own process (or another resume) is alive
    try:
        return _resume(rundir, llm_override)
    except BaseException:
        rundir.release()
        raise


def _resume(rundir: RunDir, llm_override: str | None) -> Session:
    run = rundir.read_run()
    if run.outcome in ("success", "unverified", "fail"):
        raise UsageError(f"Run {rundir.run_id} already ended with {run.outcome}; only an interrupted run "
                         "(or one that stopped on an error) can be resumed.")
    if not (rundir.path / CHECKPOINT_FILE).exists():
        raise UsageError(f"Run {rundir.run_id} has no checkpoint (state.json): it stopped before its first stage.")
    checkpoint_data = rundir.read_json(CHECKPOINT_FILE)
    try:
        if "settings" not in run.model_fields_set:  # a run.json from before it recorded settings, or edited
            raise KeyError("settings")
        values = dict(run.settings)
        if llm_override:
            values["llm"] = llm_override
        settings = Settings.model_validate(values)
        checkpoint = Checkpoint.model_validate(checkpoint_data)
        if checkpoint.missing():
            raise KeyError(checkpoint.missing()[0])
        counters = checkpoint.counters
        state = RunState.model_validate(checkpoint.state)
        start = State(checkpoint.next_state)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise UsageError(f"Run {rundir.run_id} cannot be resumed: its run.json or state.json is damaged "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}).") from None
    if start in TERMINAL:
        raise UsageError(f"Run {rundir.run_id} already reached {start}.")
    start = RESUME_REDIRECT.get(start, start)
    rev = checkpoint.revision
    artifacts = ArtifactSet.read_from(rundir.revision_dir(rev)) if rev is not None else ArtifactSet()
    remaining = settings.timeout - counters.elapsed_s
    if remaining <= 0:
        raise UsageError(f"Run {rundir.run_id} has used its whole time limit ({settings.timeout:g}s); "
                         "nothing is left to resume.")
    with signals.allowed():  # nothing is written yet: a signal during a slow probe or load just stops
        llm, choice = make_client(settings)
        try:
            llm.warm_up()  # before the run's clock starts again
        except BaseException:
            llm.close()
            raise
    run.outcome = "running"
    run.resumed = (run.resumed or []) + [
        {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from": str(start), "llm": settings.llm}]
    rundir.write_run(run)
    rundir.append_event(TransitionEvent(time=datetime.now(timezone.utc).isoformat(), step=counters.steps,
                                        source=None, to=str(start), result="resumed", duration_s=0.0,
                                        reason=f"resumed at {start}"))
    ctx = RunContext(settings=settings, rundir=rundir, llm=llm, state=state, artifacts=artifacts,
                     run_id=rundir.run_id, deadline=time.monotonic() + remaining)
    return Session(ctx, choice, start, counters)


def versions() -> dict[str, str]:
    out = {"kubevibe": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        from kubevibe.tools import tool_versions

        out.update(tool_versions())
    except Exception:  # noqa: BLE001 - versions are informative; a missing tool must not stop a run
        pass
    return out
