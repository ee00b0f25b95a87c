"""The replay backend: recorded answers, in order, from a run directory or an llm.jsonl."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from kubevibe.errors import UsageError
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.call import ask
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings


def req(purpose: str) -> LLMRequest:
    return LLMRequest(purpose=purpose, prompt="p")


def replay(target, **settings) -> ReplayClient:
    return ReplayClient.from_settings(str(target), Settings(**settings))


def write_records(path, records):
    return write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def test_replays_in_order_from_a_file(tmp_path):
    log = write_replay_log(tmp_path / "answers.jsonl", [("intent", '{"a": 1}'), ("generate", '{"b": 2}')])
    client = replay(log)
    assert client.complete(req("intent")).text == '{"a": 1}'
    second = client.complete(req("generate"))
    assert (second.text, second.backend) == ('{"b": 2}', "replay")


def test_replays_from_a_run_directory(tmp_path):
    write_replay_log(tmp_path, [("judge", '{"ok": true}')])
    assert (tmp_path / "llm.jsonl").is_file()
    assert replay(tmp_path).complete(req("judge")).text == '{"ok": true}'


def test_divergence_names_both_purposes_and_does_not_consume(tmp_path):
    client = replay(write_replay_log(tmp_path, [("intent", "{}"), ("generate", "{}")]))
    expected = r"^The replay diverged at answer 1: expected purpose 'intent', got 'fix'\.$"
    for _ in range(2):
        with pytest.raises(LLMCallError, match=expected):
            client.complete(req("fix"))
    assert client.complete(req("intent")).text == "{}"


def test_exhaustion(tmp_path):
    client = replay(write_replay_log(tmp_path, [("intent", "{}"), ("intent", "{}")]))
    client.complete(req("intent"))
    client.complete(req("intent"))
    with pytest.raises(LLMCallError, match=r"^The replay log has no more answers \(2 used\)\.$"):
        client.complete(req("intent"))


def test_recorded_failure_is_replayed_as_a_failed_call(tmp_path):
    log = write_records(tmp_path / "llm.jsonl", [
        {"purpose": "generate", "model": "qwen3:8b", "ok": False, "error": "The server answered HTTP 500: boom."},
        {"purpose": "generate", "model": "qwen3:8b", "ok": True,
         "response": {"text": "{}", "model": "qwen3:8b", "backend": "ollama", "prompt_tokens": 5}},
    ])
    client = replay(log)
    assert client.model == "qwen3:8b"
    with pytest.raises(LLMCallError, match=r"^The server answered HTTP 500: boom\.$"):
        client.complete(req("generate"))
    response = client.complete(req("generate"))
    assert (response.model, response.prompt_tokens, response.backend) == ("qwen3:8b", 5, "replay")


def test_model_falls_back_to_the_setting(tmp_path):
    log = write_records(tmp_path / "llm.jsonl", [{"purpose": "intent", "response": {"text": "{}", "model": "x",
                                                                                  "backend": "ollama"}}])
    assert replay(log, model="mine").model == "mine"


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing.jsonl",
    lambda tmp: tmp,  # a directory without llm.jsonl
    lambda tmp: write_records(tmp / "llm.jsonl", ["not an object"]),
    lambda tmp: write_bytes(tmp / "llm.jsonl", b'{"purpose": "intent"\n'),  # cut-off line
    lambda tmp: write_bytes(tmp / "llm.jsonl", b"\xff\xfe\x00"),  # not UTF-8
])
def test_unusable_logs_are_usage_errors(tmp_path, make):
    with pytest.raises(UsageError) as info:
        replay(make(tmp_path))
    message = info.value.message
    assert message.endswith(".") and message.count(". ") == 0  # one sentence


class Scripted(LLMClient):
    """A model that answers from a script; an Exception in the script is raised as a failed call."""

    backend = "scripted"

    def __init__(self, script):
        super().__init__("scripted-1b")
        self.script = list(script)

    @classmethod
    def from_settings(cls, target, settings):
        return cls([])

    def complete(self, request: LLMRequest) -> LLMResponse:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return LLMResponse(text=item, model=self.model, backend=self.backend, finish_reason="stop")


class Spec(BaseModel):
    name: str


def run_asks(tmp_path, name, llm, purposes):
    rundir = RunDir(tmp_path / name)
    rundir.path.mkdir()
    # call.py hands each call to the context; this one writes it to the run directory, as the runner's writer does
    ctx = SimpleNamespace(settings=Settings(), llm=llm, rundir=rundir, step=1, stage=None, remaining=lambda: 600.0,
                          record_llm_call=rundir.append_llm_call)
    return rundir, [ask(ctx, purpose, "prompt", Spec) for purpose in purposes]


def test_replaying_what_ask_recorded_gives_the_same_answers(tmp_path):
    purposes = ["intent", "generate", "generate", "fix"]
    script = ['{"name": "a"}', LLMCallError("The server answered HTTP 500: oom."), "no json here", '{"name": "b"}']
    original_dir, originals = run_asks(tmp_path, "original", Scripted(script), purposes)

    client = ReplayClient.from_settings(str(original_dir.path), Settings())
    assert client.model == "scripted-1b"
    _, replayed = run_asks(tmp_path, "replayed", client, purposes)

    assert [(a.value, a.error) for a in replayed] == [(a.value, a.error) for a in originals]
    assert [a.ok for a in replayed] == [True, False, False, True]
    assert "(4/4 answers used)" in client.describe()


def test_replay_of_a_run_directory_keeps_the_recorded_strategy(tmp_path):
    import json as _json

    from kubevibe.llm.replay import ReplayClient, write_replay_log
    from kubevibe.pipeline.session import resolve_strategy
    from kubevibe.settings import Settings

    write_replay_log(tmp_path, [("generate", "{}")])
    (tmp_path / "run.json").write_text(_json.dumps({"strategy": "scaffold"}))
    client = ReplayClient.from_settings(str(tmp_path), Settings())
    assert resolve_strategy(Settings(), client) == "scaffold"
    assert resolve_strategy(Settings(strategy="full"), client) == "full"
