"""The engine's logic with scripted stages: transitions, records, limits, fix routing, interruption, resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, RunState, StageResult
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.pipeline.runner import Counters, Runner
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings

GOOD = ArtifactSet(files={"myapp.py": "print(1)\n", "Dockerfile": "FROM x\n", "vibe.yaml": "a: 1\n",
                          "requirements.txt": "flask\n"})
ACCEPTED = {"passed": 2, "total": 2, "source": "user"}


class Script:
    """Stage functions that return queued outcomes per state (default OK), and record what ran."""

    def __init__(self, plan: dict[State, list] | None = None):
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.ran: list[State] = []

    def __call__(self, state: State):
        def stage(ctx: RunContext) -> StageResult:
            self.ran.append(state)
            queue = self.plan.get(state)
            item = queue.pop(0) if queue else Outcome.OK
            if callable(item):
                return item(ctx)
            if isinstance(item, StageResult):
                return item
            if state == State.GENERATE and item == Outcome.OK:
                return StageResult.ok("generated", artifacts=GOOD)
            if state == State.ACCEPT and item == Outcome.OK:  # independent tests passed, unless a test says
                return StageResult.ok("accepted", updates={"verified": {"acceptance": ACCEPTED}})
            return StageResult(outcome=item, summary=f"{state} {item}",
                               evidence=[Evidence(kind="note", title=f"{state} said {item}")])
        return stage


def make_ctx(tmp_path: Path, **overrides) -> RunContext:
    settings = Settings(runs_dir=tmp_path, **overrides)
    rundir = RunDir.create(tmp_path, "scripted")
    rundir.write_json("run.json", {"run_id": rundir.run_id, "outcome": "running",
                                   "settings": settings.model_dump(mode="json")})
    return RunContext(settings=settings, rundir=rundir, llm=None, state=RunState(prompt="p"),  # type: ignore[arg-type]
                      artifacts=ArtifactSet(), run_id=rundir.run_id, deadline=time.monotonic() + settings.timeout)


def events(ctx):
    return ctx.rundir.read_jsonl("events.jsonl")


def test_happy_path_records_every_transition(tmp_path):
    ctx = make_ctx(tmp_path)
    script = Script()
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "success" and end.final_state == State.SUCCESS
    assert script.ran == [State.INTENT, State.GENERATE, State.BUILD, State.VALIDATE, State.DEPLOY, State.CONNECT,
                          State.ACCEPT, State.LOAD, State.CHART]
    evs = events(ctx)
    assert [(e["step"], e["from"], e["to"], e["result"]) for e in evs][-1] == (9, "CHART", "SUCCESS", "ok")
    assert all({"step", "from", "to", "result", "duration_s", "reason", "time"} <= set(e) for e in evs)
    run = ctx.rundir.read_json("run.json")
    assert run["outcome"] == "success" and run["counters"]["steps"] == 9
    assert run["verified"] == {"built": True, "validated": True, "deployed": True, "reachable": True,
                               "accepted": True, "acceptance": ACCEPTED, "load": True, "charted": True}
    assert run["verdict"] == {"built": True, "validated": True, "deployed": True, "reachable": True,
                              "accepted": ACCEPTED, "charted": True, "slo": None}  # no objectives stated
    assert ctx.rundir.revisions() == [0]
    assert (ctx.rundir.revision_dir(0) / "Dockerfile").read_text() == "FROM x\n"
    assert json.loads((ctx.rundir.step_dir(3, "BUILD") / "result.json").read_text())["outcome"] == "ok"


def fix_changing(files: dict[str, str], outcome: Outcome):
    def stage(ctx):
        return StageResult(outcome=outcome, summary="fixed", artifacts=ctx.artifacts.with_changes(files))
    return stage


def test_fix_sees_the_failure_and_resumes_at_validate_when_only_the_manifest_changed(tmp_path):
    ctx = make_ctx(tmp_path)
    seen = {}

    def fix(c):
        seen.update(c.state.last_failure)
        return fix_changing({"vibe.yaml": "b: 2\n"}, Outcome.RESUME_VALIDATE)(c)

    script = Script({State.DEPLOY: [Outcome.FAILED], State.FIX: [fix]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "success"
    assert seen["stage"] == "DEPLOY" and seen["evidence"][0]["title"] == "DEPLOY said failed"
    # resumed at VALIDATE, not BUILD: no second build
    assert script.ran.count(State.BUILD) == 1 and script.ran.count(State.VALIDATE) == 2
    assert ctx.rundir.revisions() == [0, 1]
    # the fix changed only the manifest: the image Build made is still the one deployed
    assert ctx.rundir.read_json("run.json")["verified"]["built"] is True


def test_a_fix_of_the_code_withdraws_what_was_verified(tmp_path):
    ctx = make_ctx(tmp_path, max_fix_attempts=1)
    script = Script({State.DEPLOY: [Outcome.FAILED, Outcome.FAILED],
                     State.FIX: [fix_changing({"myapp.py": "print(2)\n"}, Outcome.RESUME_BUILD)],
                     State.BUILD: [Outcome.OK, Outcome.OK], State.VALIDATE: [Outcome.OK, Outcome.FAILED]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "fail"
    # rev 1 was built again but failed validation: nothing after Build is claimed for it
    assert ctx.rundir.read_json("run.json")["verified"] == {"built": True}


def test_failed_fix_is_not_success_and_fix_limit_ends_in_fail(tmp_path):
    ctx = make_ctx(tmp_path, max_fix_attempts=3, max_consecutive_failures=50)
    script = Script({State.BUILD: [Outcome.FAILED], State.FIX: [Outcome.FAILED] * 10})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "fail" and end.final_state == State.FAIL
    assert script.ran.count(State.FIX) == 3
    assert "3 fix attempts" in end.reason
    last = events(ctx)[-1]
    assert (last["from"], last["to"], last["result"]) == ("FIX", "FAIL", "limit")


def test_consecutive_failures_limit(tmp_path):
    ctx = make_ctx(tmp_path, max_consecutive_failures=4)
    fix = fix_changing({"myapp.py": "x"}, Outcome.RESUME_BUILD)
    counter = iter(range(100))

    def fix_unique(c):  # each fix changes the code, and Build keeps failing
        return fix_changing({"myapp.py": f"v{next(counter)}"}, Outcome.RESUME_BUILD)(c)

    script = Script({State.BUILD: [Outcome.FAILED] * 10, State.FIX: [fix_unique] * 10})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "fail"
    assert "failed in a row" in end.reason
    assert script.ran.count(State.BUILD) == 4
    del fix


def test_step_limit_N(tmp_path):
    ctx = make_ctx(tmp_path, max_steps=5)
    script = Script({State.GENERATE: [Outcome.FAILED] * 10})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "fail" and "5 stage executions" in end.reason
    assert len(script.ran) == 5


def test_time_limit(tmp_path):
    ctx = make_ctx(tmp_path, timeout=0.3)

    def slow(c):
        time.sleep(0.4)
        return StageResult.ok("slow")

    end = Runner(ctx, stages=Script({State.INTENT: [slow]})).run(State.INTENT)
    assert end.outcome == "fail" and "time limit" in end.reason


def test_fix_from_zero_routes_to_generate(tmp_path):
    ctx = make_ctx(tmp_path)
    script = Script({State.CONNECT: [Outcome.FAILED], State.FIX: [Outcome.REGENERATE]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "success"
    assert script.ran.count(State.GENERATE) == 2


def test_interrupt_runs_cleanups_records_interrupted_and_resume_continues(tmp_path):
    ctx = make_ctx(tmp_path)
    cleaned = []

    def deploy_then_sigint(c):
        c.add_cleanup("deployment", lambda: cleaned.append("torn down"))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal interrupts this
        return StageResult.ok("unreachable")

    script = Script({State.DEPLOY: [deploy_then_sigint]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "interrupted"
    assert cleaned == ["torn down"]
    assert events(ctx)[-1]["result"] == "interrupted"
    assert ctx.rundir.read_json("run.json")["outcome"] == "interrupted"
    checkpoint = ctx.rundir.read_json("state.json")
    assert checkpoint["next_state"] == "DEPLOY"

    # resume: a fresh context from the checkpoint, continuing at DEPLOY with the same files
    ctx2 = make_ctx(tmp_path)
    ctx2.rundir = ctx.rundir
    ctx2.state = RunState.model_validate(checkpoint["state"])
    ctx2.artifacts = ArtifactSet.read_from(ctx.rundir.revision_dir(checkpoint["revision"]))
    script2 = Script()
    end2 = Runner(ctx2, Counters.model_validate(checkpoint["counters"]), stages=script2).run(State.DEPLOY)
    assert end2.outcome == "success"
    assert script2.ran == [State.DEPLOY, State.CONNECT, State.ACCEPT, State.LOAD, State.CHART]
    steps = [e["step"] for e in events(ctx2) if e["result"] not in ("interrupted",)]
    assert steps == sorted(steps) and steps[-1] == 10  # step numbers continue


def test_tool_error_stops_the_run_with_hint_and_cleans_up(tmp_path):
    from kubevibe.errors import LLMUnavailable

    ctx = make_ctx(tmp_path)
    cleaned = []

    def broken(c):
        c.add_cleanup("x", lambda: cleaned.append(1))
        raise LLMUnavailable("Cannot reach the Ollama server.", hint="start it")

    end = Runner(ctx, stages=Script({State.INTENT: [broken]})).run(State.INTENT)
    assert (end.outcome, end.hint) == ("error", "start it") and cleaned == [1]


def test_a_bug_in_a_stage_is_recorded_not_raised(tmp_path):
    ctx = make_ctx(tmp_path)

    def buggy(c):
        raise ZeroDivisionError("oops")

    end = Runner(ctx, stages=Script({State.BUILD: [buggy]})).run(State.INTENT)
    assert end.outcome == "error" and "ZeroDivisionError" in end.reason
    assert "ZeroDivisionError" in (ctx.rundir.path / "error.txt").read_text()


def test_run_directories_never_collide(tmp_path):
    paths = {RunDir.create(tmp_path, "m/odel:7b").path for _ in range(50)}
    assert len(paths) == 50
    assert all(p.parent.name == "m_odel_7b" for p in paths)


@pytest.mark.parametrize("env,expected", [({"N": "0"}, "N"), ({"TIMEOUT": "-1"}, "TIMEOUT"),
                                          ({"FIXFZERO": "maybe"}, "FIXFZERO")])
def test_bad_settings_name_the_setting(env, expected):
    from kubevibe.errors import SettingError
    from kubevibe.settings import resolve_settings

    with pytest.raises(SettingError) as info:
        resolve_settings(env=env)
    assert expected in str(info.value)


def test_settings_precedence(tmp_path):
    from kubevibe.settings import resolve_settings

    cfg = tmp_path / "k.toml"
    cfg.write_text('timeout = 100\nmax_steps = 7\nmodel = "file-model"\n')
    r = resolve_settings(flags={"timeout": 50}, env={"N": "9", "FIXFZERO": "1"}, config_path=cfg)
    s = r.settings
    assert (s.timeout, s.max_steps, s.model, s.fix_from_zero) == (50, 9, "file-model", True)
    assert r.sources["timeout"] == "flag" and r.sources["max_steps"] == "env:N"
    assert r.sources["model"].startswith("file:") and r.sources["builder"] == "default"


def test_verification_line_says_exactly_what_was_checked_and_where_tests_came_from():
    from kubevibe.record.show import verification_line

    assert verification_line({}) == "nothing verified"
    assert verification_line({"built": True, "validated": True, "deployed": True, "reachable": True,
                              "tests_passed": 2, "tests_total": 3}) == \
        "built, validated, deployed, reachable, declared tests (intent) passed 2 of 3"
    assert verification_line({"reachable": True, "tests_passed": 7, "tests_total": 7}, "reference:credit-card") == \
        "reachable, declared tests (reference credit-card) passed 7 of 7"
    assert "only GET /health" in verification_line({"reachable": True, "tests_passed": 1, "tests_total": 1}, "generic")
    assert verification_line({"reachable": True, "tests_total": 0}) == "reachable, no declared tests"


@pytest.mark.parametrize("accept, reason_part", [
    (StageResult.ok("no tests", updates={"verified": {"accepted": False}}), "no acceptance tests"),
    (StageResult.ok("intent tests", updates={"verified": {"acceptance": {"passed": 3, "total": 3,
                                                                          "source": "intent"}}}),
     "written by the same model"),
])
def test_a_run_not_checked_by_independent_tests_ends_unverified_never_success(tmp_path, accept, reason_part):
    ctx = make_ctx(tmp_path)
    end = Runner(ctx, stages=Script({State.ACCEPT: [accept]})).run(State.INTENT)
    assert end.outcome == "unverified" and end.final_state == State.SUCCESS
    assert reason_part in end.reason and "NOT verified" in end.reason
    run = ctx.rundir.read_json("run.json")
    assert run["outcome"] == "unverified"
    assert run["verdict"]["deployed"] and run["verdict"]["reachable"] and run["verdict"]["charted"]


def test_an_acceptance_test_that_failed_once_keeps_no_success_when_a_later_pass_is_partial(tmp_path):
    ctx = make_ctx(tmp_path)
    partial = StageResult.ok("partial", updates={"verified": {"acceptance": {"passed": 1, "total": 2,
                                                                              "source": "user"}}})
    end = Runner(ctx, stages=Script({State.ACCEPT: [partial]})).run(State.INTENT)
    assert end.outcome == "unverified"


def test_the_deployment_lives_through_connect_and_accept_and_is_torn_down_after(tmp_path):
    ctx = make_ctx(tmp_path)
    alive_in: list[State] = []
    torn_down: list[int] = []

    def deploy(c):
        c.add_cleanup("deployment", lambda: torn_down.append(c.step))
        return StageResult.ok("deployed")

    def check(state):
        def stage(c):
            if c.has_cleanup("deployment"):
                alive_in.append(state)
            return Script()(state)(c)
        return stage

    script = Script({State.DEPLOY: [deploy], State.CONNECT: [check(State.CONNECT)],
                     State.ACCEPT: [check(State.ACCEPT)], State.LOAD: [check(State.LOAD)],
                     State.CHART: [check(State.CHART)]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "success"
    assert alive_in == [State.CONNECT, State.ACCEPT, State.LOAD]  # Chart does not need the pods
    assert torn_down == [8]  # right after LOAD, before CHART


def test_a_failure_in_a_deployed_state_tears_the_deployment_down_before_fix(tmp_path):
    ctx = make_ctx(tmp_path)
    torn: list[int] = []

    def deploy(c):
        c.add_cleanup("deployment", lambda: torn.append(c.step))
        return StageResult.ok("deployed")

    def fix(c):
        assert not c.has_cleanup("deployment")
        return StageResult(outcome=Outcome.RESUME_BUILD, summary="fixed", artifacts=GOOD.with_changes(
            {"myapp.py": "print(2)\n"}))

    script = Script({State.DEPLOY: [deploy, deploy], State.LOAD: [Outcome.FAILED], State.FIX: [fix]})
    end = Runner(ctx, stages=script).run(State.INTENT)
    assert end.outcome == "success"
    assert torn == [8, 15]  # after the failed LOAD (step 8), and after the second LOAD (step 15)

