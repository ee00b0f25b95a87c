"""The typed run record (record/schema.py): real run directories read back into the models and write out the same
files; records from before the schema still read; the runner refuses untyped stage updates; an LLM call is on the
record even when its stage crashes afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from kubevibe.experiments.store import Store
from kubevibe.llm.base import LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.call import ask
from kubevibe.llm.replay import write_replay_log
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunContext, RunState, StageResult, StateUpdateError
from kubevibe.pipeline.fsm import State
from kubevibe.pipeline.runner import Runner
from kubevibe.record.listing import list_runs
from kubevibe.record.rundir import RunDir, load_run
from kubevibe.record.schema import RECORD_VERSION, Checkpoint, LLMCallRecord, RunRecord, TransitionEvent
from kubevibe.record.show import run_summary
from kubevibe.settings import Settings

REQUEST = "Develop a credit card validation microservice"


@pytest.fixture(scope="module")
def replayed_run(tmp_path_factory) -> Path:
    """A run made by the real CLI (session, runner, llm/call.py) from recorded answers: it fails in Generate."""
    root = tmp_path_factory.mktemp("e2e")
    answers = write_replay_log(root / "answers.jsonl", [("generate", "not json")] * 3)
    proc = subprocess.run([sys.executable, "-m", "kubevibe.cli", "run", "--llm", f"replay:{answers}", "-n", "4",
                           REQUEST], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    (run,) = [p for p in (root / "runs").glob("*/*") if p.is_dir()]
    return run


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_file_of_a_real_run_reads_into_its_model_and_writes_back_unchanged(replayed_run):
    run_json = json.loads((replayed_run / "run.json").read_text())
    run = RunRecord.model_validate(run_json)
    assert run.record_version == RECORD_VERSION and run.outcome == "fail" and run.prompt == REQUEST
    assert run.dump() == run_json and list(run.dump()) == list(run_json)  # same keys, same values, same order

    state_json = json.loads((replayed_run / "state.json").read_text())
    checkpoint = Checkpoint.model_validate(state_json)
    assert checkpoint.dump() == state_json and not checkpoint.missing()
    assert RunState.model_validate(checkpoint.state).prompt == REQUEST

    events = lines(replayed_run / "events.jsonl")
    assert len(events) >= 3
    for line in events:
        event = TransitionEvent.model_validate(line)
        assert event.dump() == line and list(event.dump()) == list(line)
    assert TransitionEvent.model_validate(events[0]).source == "INTENT"

    calls = lines(replayed_run / "llm.jsonl")
    assert [c["purpose"] for c in calls] == ["generate"] * len(calls) and len(calls) >= 2
    assert calls[0]["ok"] is False and calls[0]["response"]["text"] == "not json"  # the refused answer is kept
    for line in calls:
        call = LLMCallRecord.model_validate(line)
        assert call.dump() == line and set(call.dump()) == set(line)
    assert LLMCallRecord.model_validate(calls[0]).schema_name  # "schema" in the file


def test_a_record_from_before_the_version_key_still_reads_everywhere(replayed_run, tmp_path):
    old_runs = tmp_path / "runs" / "replay"
    old_runs.mkdir(parents=True)
    old = old_runs / replayed_run.name
    subprocess.run(["cp", "-r", str(replayed_run), str(old)], check=True)
    for name in ("run.json", "state.json"):
        data = json.loads((old / name).read_text())
        del data["record_version"]
        data["written_by_a_later_version"] = {"kept": True}  # an unknown key is kept, not refused
        (old / name).write_text(json.dumps(data))

    record = RunDir.open(old).read_run()
    assert record.record_version is None and record.outcome == "fail"
    assert record.dump()["written_by_a_later_version"] == {"kept": True}
    assert RunDir(old).read_checkpoint().record_version is None
    assert run_summary(old)["outcome"] == "fail" and run_summary(old)["llm_calls"] >= 2
    (row,) = list_runs(tmp_path / "runs")
    assert row.outcome == "fail" and row.request == REQUEST
    store = Store(":memory:")
    ingested = store.ingest_run(old)
    assert ingested["outcome"] == "fail" and ingested["llm_calls"] >= 2
    assert load_run(old).model == record.model


def test_a_damaged_run_json_is_one_sentence(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"outcome": ["not", "a", "string"]}))
    with pytest.raises(Exception) as info:
        RunDir.open(tmp_path).read_run()
    assert "is damaged: outcome" in str(info.value)


# --- the runner: typed updates, LLM calls kept -------------------------------------------------------------------


def make_ctx(tmp_path: Path, llm: LLMClient | None = None) -> RunContext:
    settings = Settings(runs_dir=tmp_path)
    rundir = RunDir.create(tmp_path, "scripted")
    rundir.write_run(RunRecord(run_id=rundir.run_id, outcome="running", settings=settings.model_dump(mode="json")))
    return RunContext(settings=settings, rundir=rundir, llm=llm, state=RunState(prompt="p"),  # type: ignore[arg-type]
                      artifacts=ArtifactSet(), run_id=rundir.run_id, deadline=time.monotonic() + 60)


def only_intent(result):
    """Stage functions: INTENT returns `result` (a function of ctx); nothing else is reached in these tests."""
    def lookup(state: State):
        assert state == State.INTENT, state
        return result
    return lookup


@pytest.mark.parametrize("updates,words", [
    ({"no_such_field": 1}, "stage INTENT returned updates for no_such_field, which RunState does not have"),
    ({"image": ["not", "a", "string"]}, "stage INTENT returned updates that do not fit RunState"),
])
def test_a_stage_update_that_is_not_a_runstate_field_of_its_type_stops_the_run_naming_the_stage(
        tmp_path, updates, words):
    ctx = make_ctx(tmp_path)
    end = Runner(ctx, stages=only_intent(lambda ctx: StageResult.ok("done", updates=updates))).run(State.INTENT)
    assert end.outcome == "error" and words in end.reason
    assert ctx.state.image is None and not hasattr(ctx.state, "no_such_field")
    assert words in (ctx.rundir.path / "error.txt").read_text()


def test_updates_are_validated_and_verified_is_merged():
    state = RunState(prompt="p", verified={"built": True})
    new = state.updated({"image": "localhost/x:1", "verified": {"validated": True}}, stage=State.VALIDATE)
    assert new.image == "localhost/x:1" and new.verified == {"built": True, "validated": True}
    assert state.image is None  # the old state is left as it was
    with pytest.raises(StateUpdateError, match="stage BUILD returned updates for imag,"):
        state.updated({"imag": "x"}, stage=State.BUILD)


class Answer(BaseModel):
    name: str


class OneAnswer(LLMClient):
    backend = "scripted"

    def __init__(self):
        super().__init__("scripted-1b")

    @classmethod
    def from_settings(cls, target, settings):
        return cls()

    def complete(self, request: LLMRequest) -> LLMResponse:
        return LLMResponse(text='{"name": "a"}', model=self.model, backend=self.backend, finish_reason="stop")


def test_an_llm_call_is_on_the_record_when_its_stage_crashes_right_after_it(tmp_path):
    def crashing_stage(ctx: RunContext) -> StageResult:
        answer = ask(ctx, "intent", "prompt", Answer)
        assert answer.ok
        raise RuntimeError("a bug after the call")

    ctx = make_ctx(tmp_path, OneAnswer())
    end = Runner(ctx, stages=only_intent(crashing_stage)).run(State.INTENT)
    assert end.outcome == "error" and "a bug after the call" in end.reason
    (call,) = ctx.rundir.read_llm_calls()
    assert call.ok is True and call.purpose == "intent" and call.stage == "INTENT" and call.step == 1
    assert call.response and call.response["text"] == '{"name": "a"}'
    run = ctx.rundir.read_run()
    assert run.outcome == "error" and run.counters and run.counters["steps"] == 1
