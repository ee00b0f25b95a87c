"""Conversational Generate and Fix on a real run directory, answered by the replay backend; trimming; settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS, make_context

from kubevibe.llm.base import ChatMessage
from kubevibe.llm.conversation import FILES_NOTE, fit_to_context
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunState
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.settings import Settings
from kubevibe.stages import fix as fix_stage
from kubevibe.stages import generate as generate_stage

PROMPT = "Develop a credit card validation microservice"
KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]


def block(name: str, content: str, lang: str = "") -> str:
    return f"File: {name}\n```{lang}\n{content}```\n"


ALL_FILES = "Here it is.\n\n" + "\n".join([block("myapp.py", KNOWN_GOOD_CODE, "python"),
                                            block("Dockerfile", KNOWN_GOOD_DOCKERFILE),
                                            block("vibe.yaml", KNOWN_GOOD_MANIFEST, "yaml"),
                                            block("requirements.txt", KNOWN_GOOD_REQUIREMENTS)])


def context(tmp_path, answers, artifacts=None, **settings):
    log = write_replay_log(tmp_path / "answers.jsonl", answers)
    llm = ReplayClient.from_settings(str(log), Settings())
    state = RunState(prompt=PROMPT, strategy="full",
                     intent={"request": PROMPT, "method": "none", "text": PROMPT})
    return make_context(tmp_path, artifacts if artifacts is not None else ArtifactSet(), state=state, llm=llm,
                        settings_overrides={"style": "conversational", **settings})


def run_stage(ctx, state: State, fn, step: int):
    """What the runner does around a stage: number it, apply its artifacts and updates."""
    ctx.step, ctx.stage = step, state
    result = fn(ctx)
    if result.artifacts is not None:
        ctx.artifacts = result.artifacts
    for key, value in result.updates.items():
        setattr(ctx.state, key, value)
    return result


def sent_messages(ctx) -> list[list[dict]]:
    return [r["request"]["messages"] for r in ctx.rundir.read_jsonl("llm.jsonl")]


def test_prose_only_is_a_failed_generate_and_the_next_turn_says_why(tmp_path):
    ctx = context(tmp_path, [("generate", "I would use Flask and a slim Python image."), ("generate", ALL_FILES)])
    first = run_stage(ctx, State.GENERATE, generate_stage.run, 1)
    assert first.outcome == Outcome.FAILED and "no fenced code block" in first.summary
    assert first.artifacts is None
    second = run_stage(ctx, State.GENERATE, generate_stage.run, 2)
    assert second.outcome == Outcome.OK
    assert second.artifacts.files == {"myapp.py": KNOWN_GOOD_CODE, "Dockerfile": KNOWN_GOOD_DOCKERFILE,
                                      "vibe.yaml": KNOWN_GOOD_MANIFEST, "requirements.txt": KNOWN_GOOD_REQUIREMENTS}
    opening, retry = sent_messages(ctx)
    assert [m["role"] for m in opening] == ["system", "user"]
    assert PROMPT in opening[1]["content"] and "File: NAME" in opening[0]["content"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "no fenced code block" in retry[3]["content"]
    records = ctx.rundir.read_jsonl("llm.jsonl")
    assert all("schema" not in r and r["request"].get("json_schema") is None for r in records)


def test_a_missing_file_is_asked_for_and_the_files_given_before_are_kept(tmp_path):
    without_manifest = ALL_FILES.split("File: vibe.yaml")[0]
    ctx = context(tmp_path, [("generate", without_manifest),
                             ("generate", block("vibe.yaml", KNOWN_GOOD_MANIFEST, "yaml"))])
    first = run_stage(ctx, State.GENERATE, generate_stage.run, 1)
    assert first.outcome == Outcome.FAILED and "vibe.yaml" in first.summary
    second = run_stage(ctx, State.GENERATE, generate_stage.run, 2)
    assert second.outcome == Outcome.OK
    assert second.artifacts.files["myapp.py"] == KNOWN_GOOD_CODE
    assert second.artifacts.files["vibe.yaml"] == KNOWN_GOOD_MANIFEST
    assert "Still missing: vibe.yaml" in sent_messages(ctx)[1][-1]["content"]


def failed_build(ctx, text: str = "COPY requirement.txt .: no such file or directory") -> None:
    ctx.state.last_failure = {"stage": "BUILD", "step": 3, "summary": "the image build failed",
                              "evidence": [{"kind": "command", "title": "podman build", "command": "podman build .",
                                            "exit_code": 125, "stderr": text}]}


def test_fix_takes_only_the_changed_files_and_keeps_the_others(tmp_path):
    broken = KNOWN_GOOD_DOCKERFILE.replace("requirements.txt .", "requirement.txt .")
    ctx = context(tmp_path, [("generate", ALL_FILES.replace("COPY requirements.txt .", "COPY requirement.txt .")),
                             ("fix", "The name is wrong.\n\n" + block("Dockerfile", KNOWN_GOOD_DOCKERFILE))])
    assert run_stage(ctx, State.GENERATE, generate_stage.run, 1).artifacts.files["Dockerfile"] == broken
    failed_build(ctx)
    result = run_stage(ctx, State.FIX, fix_stage.run, 4)
    assert result.outcome == Outcome.RESUME_BUILD
    assert result.artifacts.files["Dockerfile"] == KNOWN_GOOD_DOCKERFILE
    assert result.artifacts.files["myapp.py"] == KNOWN_GOOD_CODE
    assert result.metrics["kept_files"] == ["myapp.py", "vibe.yaml", "requirements.txt"]
    assert "kept from the previous revision" in result.summary
    turn = sent_messages(ctx)[1][-1]["content"]
    assert "BUILD stage failed" in turn and "no such file or directory" in turn and "exit code: 125" in turn


def test_a_fix_that_changes_nothing_fails_and_the_next_turn_says_so(tmp_path):
    ctx = context(tmp_path, [("generate", ALL_FILES), ("fix", "Everything looks right to me."),
                             ("fix", block("vibe.yaml", KNOWN_GOOD_MANIFEST.replace("replicas: 1", "replicas: 2")))])
    run_stage(ctx, State.GENERATE, generate_stage.run, 1)
    failed_build(ctx, "validation: something")
    first = run_stage(ctx, State.FIX, fix_stage.run, 2)
    assert first.outcome == Outcome.FAILED and first.summary.startswith("the fix changed nothing")
    second = run_stage(ctx, State.FIX, fix_stage.run, 3)
    assert second.outcome == Outcome.RESUME_VALIDATE  # only the manifest changed
    turn = sent_messages(ctx)[2][-1]["content"]
    assert turn.startswith("Your last answer changed no file")
    roles = [m["role"] for m in sent_messages(ctx)[2]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_fix_from_zero_starts_a_new_conversation(tmp_path):
    ctx = context(tmp_path, [("generate", ALL_FILES)], artifacts=ArtifactSet(files={"myapp.py": "old\n"}),
                  fix_from_zero=True)
    ctx.state.conversation = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                           {"role": "assistant", "content": "a"}]}
    assert run_stage(ctx, State.GENERATE, generate_stage.run, 5).outcome == Outcome.OK
    assert [m["role"] for m in sent_messages(ctx)[0]] == ["system", "user"]


def test_trimming_keeps_system_request_latest_files_and_latest_evidence():
    messages = [ChatMessage(role="system", content="SYSTEM"), ChatMessage(role="user", content="REQUEST")]
    for i in range(6):
        messages += [ChatMessage(role="assistant", content=f"ANSWER{i} " + "x" * 2000),
                     ChatMessage(role="user", content=f"EVIDENCE{i} " + "y" * 500)]
    files = {"Dockerfile": "FROM python:3.11-slim\n"}
    fitted = fit_to_context(messages, files, budget=4000)
    sent = fitted.messages
    assert [m.content for m in sent[:2]] == ["SYSTEM", "REQUEST"]
    assert sent[-1].content.startswith(FILES_NOTE) and "FROM python:3.11-slim" in sent[-1].content
    assert sent[-1].content.rstrip().endswith("y") and "EVIDENCE5" in sent[-1].content
    roles = [m.role for m in sent]
    assert roles[0] == "system" and all(a != b for a, b in zip(roles[1:], roles[2:]))  # user/assistant alternate
    assert sum(len(m.content) for m in sent) <= 4000
    record = fitted.record
    assert record["turns"] == 14 and record["sent"] == len(sent) and record["dropped"]
    assert record["files_restated"] and record["dropped_chars"] > 10000
    assert fit_to_context(messages[:4], files, budget=100_000).record["dropped"] == []


def cli(tmp_path, *args, env=None):
    return subprocess.run([*KUBEVIBE, "run", PROMPT, "--runs-dir", str(tmp_path / "runs"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_bad_style_is_one_sentence_and_exit_2(tmp_path):
    proc = cli(tmp_path, "--llm", "replay:" + str(write_replay_log(tmp_path / "a.jsonl", [])),
               env={"KUBEVIBE_STYLE": "chatty"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "KUBEVIBE_STYLE" in proc.stderr and "conversational" in proc.stderr


def test_conversational_with_the_scaffold_strategy_is_refused(tmp_path):
    proc = cli(tmp_path, "--llm", "replay:" + str(write_replay_log(tmp_path / "a.jsonl", [])), "--style",
               "conversational", "--strategy", "scaffold")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "scaffold" in proc.stderr and "--strategy full" in proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/*"))


def test_style_is_recorded_with_its_source(tmp_path):
    proc = cli(tmp_path, "--llm", "replay:" + str(write_replay_log(tmp_path / "a.jsonl", [])), "--json",
               "--max-steps", "1", env={"KUBEVIBE_STYLE": "conversational"})
    assert proc.returncode == 1, proc.stderr
    (run,) = list((tmp_path / "runs").glob("*/*"))
    record = json.loads((run / "run.json").read_text())
    assert record["style"] == "conversational" and record["sources"]["style"] == "env:KUBEVIBE_STYLE"


def test_an_intent_method_talks_to_the_chat_endpoint_without_a_schema_and_opens_the_conversation(tmp_path):
    from loopback import json_server

    from kubevibe.llm.http import RetryPolicy
    from kubevibe.llm.ollama import OllamaClient
    from kubevibe.stages import intent as intent_stage

    spec = {"name": "credit-card", "description": "Checks card numbers with Luhn.", "target_port": 5000,
            "endpoints": [{"method": "POST", "path": "/validate"}]}
    answers = iter([f"Here is the spec:\n```json\n{json.dumps(spec)}\n```", ALL_FILES])

    def chat(method, path, body):
        if path != "/api/chat":
            return 404, {"error": "only /api/chat here"}
        return 200, {"model": "m", "created_at": "2026-01-01T00:00:00Z", "done": True, "done_reason": "stop",
                     "message": {"role": "assistant", "content": next(answers)}}

    with json_server(chat) as (url, seen):
        llm = OllamaClient(model="m", base_url=url, timeout=30, retry=RetryPolicy(attempts=1))
        ctx = make_context(tmp_path, ArtifactSet(), state=RunState(prompt=PROMPT, strategy="full"), llm=llm,
                           settings_overrides={"style": "conversational", "intent_method": "json-with-required",
                                               "test_writer": False})
        assert run_stage(ctx, State.INTENT, intent_stage.run, 1).outcome == Outcome.OK
        assert run_stage(ctx, State.GENERATE, generate_stage.run, 2).outcome == Outcome.OK
    assert [path for _m, path, _b, _h in seen] == ["/api/chat", "/api/chat"]
    assert all("format" not in body for _m, _p, body, _h in seen)
    opening = seen[1][2]["messages"][1]["content"]
    assert PROMPT in opening and "Checks card numbers with Luhn." in opening and '"/validate"' in opening
    assert ctx.state.intent["spec"]["name"] == "credit-card"
