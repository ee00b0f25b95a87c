"""Intent, Generate and Fix stages with replayed model answers: what they send, parse, and return."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubevibe.generation import full
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, RunState
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings
from kubevibe.stages import fix, generate, intent

FILES = {"myapp.py": "from flask import Flask\napp = Flask(__name__)\n", "Dockerfile": "FROM python:3.11-slim\n",
         "vibe.yaml": "kind: Deployment\n", "requirements.txt": "flask\n"}


def ctx_with_answers(tmp_path: Path, answers: list[tuple[str, str]], artifacts=None, **overrides) -> RunContext:
    log = write_replay_log(tmp_path / "answers.jsonl", answers)
    settings = Settings(runs_dir=tmp_path / "runs", llm=f"replay:{log}", **overrides)
    llm = ReplayClient.from_settings(str(log), settings)
    rundir = RunDir.create(settings.runs_dir, llm.model)
    ctx = RunContext(settings=settings, rundir=rundir, llm=llm, state=RunState(prompt="Develop a credit card "
                     "validation microservice"), artifacts=artifacts or ArtifactSet(), run_id=rundir.run_id,
                     deadline=time.monotonic() + 60)
    ctx.step, ctx.stage = 1, State.INTENT
    return ctx


def llm_log(ctx):
    return ctx.rundir.read_jsonl("llm.jsonl")


def test_intent_none_uses_the_request_without_a_model(tmp_path):
    ctx = ctx_with_answers(tmp_path, [])
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK
    assert result.updates["intent"]["text"] == ctx.state.prompt
    assert llm_log(ctx) == []


def test_intent_zero_shot_curates(tmp_path):
    ctx = ctx_with_answers(tmp_path, [("intent", '<think>hmm</think>{"description": "A Luhn validator on :5000"}')],
                           intent_method="curated-llm-zero-shot")
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK
    assert result.updates["intent"]["text"] == "A Luhn validator on :5000"
    (call,) = llm_log(ctx)
    assert call["purpose"] == "intent" and call["ok"] is True
    assert "credit card" in call["request"]["prompt"]


def test_intent_json_with_required_gives_a_spec_with_tests(tmp_path):
    spec = {"name": "cc", "description": "d", "port": 80, "target_port": 5000,
            "endpoints": [{"method": "POST", "path": "/validate"}],
            "test_cases": [{"method": "POST", "path": "/validate", "body": {"card_number": "4539578763621486"},
                            "expected_status": 200, "expected_json": {"valid": True}}]}
    ctx = ctx_with_answers(tmp_path, [("intent", "```json\n" + json.dumps(spec) + "\n```")],
                           intent_method="json-with-required")
    result = intent.run(ctx)
    got = result.updates["intent"]["spec"]
    assert got["name"] == "cc" and got["test_cases"][0]["expected_json"] == {"valid": True}


def test_intent_off_schema_answer_fails_with_reason(tmp_path):
    ctx = ctx_with_answers(tmp_path, [("intent", '{"name": 5}')], intent_method="json-with-required")
    result = intent.run(ctx)
    assert result.outcome == Outcome.FAILED
    assert "did not match the schema" in result.summary


def test_judge_rejection_feeds_rationale_back_and_retries(tmp_path):
    answers = [
        ("intent", '{"description": "a service"}'),
        ("judge", '{"score": 3, "approved": true, "rationale": "says nothing about the Luhn check"}'),
        ("intent", '{"description": "POST /validate checks a card number with the Luhn algorithm"}'),
        ("judge", '{"score": 9, "approved": true, "rationale": "good"}'),
    ]
    ctx = ctx_with_answers(tmp_path, answers, intent_method="curated-llm-zero-shot", ival_method="llm-as-a-judge")
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK
    assert "Luhn algorithm" in result.updates["intent"]["text"]
    assert result.updates["intent"]["judge"]["score"] == 9
    second_curation = llm_log(ctx)[2]["request"]["prompt"]
    assert "says nothing about the Luhn check" in second_curation  # the rationale reached the model


def test_judge_retries_are_bounded_and_best_intent_is_kept(tmp_path):
    answers = [("intent", '{"description": "v1"}'), ("judge", '{"score": 5, "approved": false, "rationale": "r1"}'),
               ("intent", '{"description": "v2"}'), ("judge", '{"score": 2, "approved": false, "rationale": "r2"}')]
    ctx = ctx_with_answers(tmp_path, answers, intent_method="curated-llm-zero-shot", ival_method="llm-as-a-judge",
                           max_judge_retries=1)
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK
    assert result.updates["intent"]["text"] == "v1"
    assert "did not approve" in result.summary
    assert len(llm_log(ctx)) == 4


def test_generate_full_maps_reference_keys_to_files(tmp_path):
    answer = {"pythonfilecontent": "print(1)", "containerfilecontent": "FROM python:3.11-slim",
              "yamlfilecontent": "kind: Service", "requirements": "flask"}
    ctx = ctx_with_answers(tmp_path, [("generate", "Here you go:\n" + json.dumps(answer) + "\nEnjoy!")])
    ctx.state.intent = {"request": "r", "method": "none", "text": "r"}
    result = full.generate_full(ctx)
    assert result.outcome == Outcome.OK
    assert result.artifacts.files == {"myapp.py": "print(1)\n", "Dockerfile": "FROM python:3.11-slim\n",
                                      "vibe.yaml": "kind: Service\n", "requirements.txt": "flask\n"}


def test_generate_truncated_answer_fails(tmp_path):
    ctx = ctx_with_answers(tmp_path, [("generate", '{"pythonfilecontent": "import fla')])
    ctx.state.intent = {"request": "r", "method": "none", "text": "r"}
    result = full.generate_full(ctx)
    assert result.outcome == Outcome.FAILED and "cut off" in result.summary


def failing_build(ctx):
    ctx.state.intent = {"request": "r", "method": "none", "text": "a credit card validator"}
    ctx.state.last_failure = {"stage": "BUILD", "summary": "the image build failed", "evidence": [
        Evidence(kind="command", title="podman build", command="podman build ...", exit_code=1,
                 stderr="ERROR: No matching distribution found for flaskk").model_dump()]}
    ctx.stage = State.FIX


def test_fix_sees_the_error_output_and_resumes_at_build(tmp_path):
    answer = {"explanation": "typo in requirements", "changes": [{"file": "requirements.txt", "content": "flask"}]}
    ctx = ctx_with_answers(tmp_path, [("fix", json.dumps(answer))],
                           artifacts=ArtifactSet(files=FILES | {"requirements.txt": "flaskk\n"}))
    failing_build(ctx)
    result = fix.run(ctx)
    assert result.outcome == Outcome.RESUME_BUILD
    assert result.artifacts.get("requirements.txt") == "flask\n"
    assert result.artifacts.get("myapp.py") == FILES["myapp.py"]
    prompt = llm_log(ctx)[0]["request"]["prompt"]
    assert "No matching distribution found for flaskk" in prompt  # the fix sees the error output
    assert "exit code: 1" in prompt and "===== Dockerfile =====" in prompt


def test_fix_of_manifest_only_resumes_at_validate(tmp_path):
    answer = {"explanation": "port", "changes": [{"file": "vibe.yaml", "content": "kind: Service\n"}]}
    ctx = ctx_with_answers(tmp_path, [("fix", json.dumps(answer))], artifacts=ArtifactSet(files=FILES))
    failing_build(ctx)
    assert fix.run(ctx).outcome == Outcome.RESUME_VALIDATE


@pytest.mark.parametrize("answer", [
    json.dumps({"explanation": "nothing to do", "changes": []}),
    json.dumps({"explanation": "same", "changes": [{"file": "Dockerfile", "content": FILES["Dockerfile"]}]}),
])
def test_fix_that_changes_nothing_is_a_failure(tmp_path, answer):
    ctx = ctx_with_answers(tmp_path, [("fix", answer)], artifacts=ArtifactSet(files=FILES))
    failing_build(ctx)
    result = fix.run(ctx)
    assert result.outcome == Outcome.FAILED and "changed nothing" in result.summary


def test_fix_whose_llm_call_fails_is_a_failure(tmp_path):
    ctx = ctx_with_answers(tmp_path, [("fix", "I cannot help with that.")], artifacts=ArtifactSet(files=FILES))
    failing_build(ctx)
    assert fix.run(ctx).outcome == Outcome.FAILED


def test_fix_refuses_unknown_file_names(tmp_path):
    answer = {"explanation": "x", "changes": [{"file": "../../etc/passwd", "content": "x"}]}
    ctx = ctx_with_answers(tmp_path, [("fix", json.dumps(answer))], artifacts=ArtifactSet(files=FILES))
    failing_build(ctx)
    assert fix.run(ctx).outcome == Outcome.FAILED


def test_fix_from_zero_regenerates_without_asking(tmp_path):
    ctx = ctx_with_answers(tmp_path, [], artifacts=ArtifactSet(files=FILES), fix_from_zero=True)
    failing_build(ctx)
    assert fix.run(ctx).outcome == Outcome.REGENERATE
    assert llm_log(ctx) == []


def test_huge_evidence_is_trimmed_to_the_context_keeping_the_tail(tmp_path):
    answer = {"explanation": "x", "changes": [{"file": "requirements.txt", "content": "flask\n"}]}
    ctx = ctx_with_answers(tmp_path, [("fix", json.dumps(answer))],
                           artifacts=ArtifactSet(files=FILES | {"requirements.txt": "flaskk\n"}), num_ctx=2048)
    failing_build(ctx)
    ctx.state.last_failure["evidence"][0]["stdout"] = "noise line\n" * 50_000 + "THE REAL ERROR AT THE END"
    fix.run(ctx)
    prompt = llm_log(ctx)[0]["request"]["prompt"]
    assert len(prompt) < 12_000
    assert "THE REAL ERROR AT THE END" in prompt


def test_scaffold_strategy_regenerates_instead_of_editing_files(tmp_path):
    ctx = ctx_with_answers(tmp_path, [], artifacts=ArtifactSet(files=FILES))
    failing_build(ctx)
    ctx.state.strategy = "scaffold"
    result = fix.run(ctx)
    assert result.outcome == Outcome.REGENERATE and llm_log(ctx) == []


def test_seed_varies_by_step_so_retries_differ(tmp_path):
    ctx = ctx_with_answers(tmp_path, [("generate", "x"), ("generate", "y")], seed=42)
    ctx.state.intent = {"request": "r", "method": "none", "text": "r"}
    ctx.step = 2
    full.generate_full(ctx)
    ctx.step = 3
    full.generate_full(ctx)
    assert [c["request"]["seed"] for c in llm_log(ctx)] == [44, 45]


def test_intent_methods_extract_objectives_and_generation_is_told_the_ones_in_force(tmp_path):
    from kubevibe.slo import SLO, effective_slo

    answer = {"description": "A Luhn validator on :5000",
              "slo": {"load": {"rps": 50, "duration_s": 10}, "latency_ms": {"p95": 100}}}
    ctx = ctx_with_answers(tmp_path, [("intent", json.dumps(answer))], intent_method="curated-llm-zero-shot")
    ctx.state.prompt = "A credit card validator that must answer within 100 ms at 50 requests per second"
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK
    extracted = result.updates["intent"]["slo"]
    assert extracted["load"]["rps"] == 50 and extracted["latency_ms"]["p95"] == 100
    (call,) = llm_log(ctx)
    assert '"slo"' in call["request"]["prompt"]  # the prompt asks for objectives
    # a stated --slo wins over the extracted objectives
    stated = SLO.model_validate({"latency_ms": {"p99": 250}}).model_dump(mode="json")
    assert effective_slo(stated, result.updates["intent"])[1] == "file"

    (tmp_path / "g").mkdir()
    gen = ctx_with_answers(tmp_path / "g", [("generate", json.dumps({
        "pythonfilecontent": FILES["myapp.py"], "containerfilecontent": FILES["Dockerfile"],
        "yamlfilecontent": FILES["vibe.yaml"], "requirements": FILES["requirements.txt"]}))],
        intent_method="curated-llm-zero-shot")
    gen.state.intent, gen.state.strategy = result.updates["intent"], "full"
    gen.stage = State.GENERATE
    assert generate.run(gen).outcome == Outcome.OK
    (call,) = llm_log(gen)
    assert "Service-level objectives, checked under load" in call["request"]["prompt"]
    assert "p95 <= 100 ms at 50 rps for 10 s" in call["request"]["prompt"]
