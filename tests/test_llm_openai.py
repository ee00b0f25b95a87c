"""The OpenAI-compatible backend against a real HTTP server on loopback that speaks chat completions."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import pytest
from loopback import json_server

from kubevibe.errors import LLMUnavailable, UsageError
from kubevibe.llm.base import LLMCallError, LLMRequest
from kubevibe.llm.http import RetryPolicy
from kubevibe.llm.openai_compat import OpenAIClient
from kubevibe.settings import Settings

SCHEMA = {"title": "Service Spec", "type": "object", "properties": {"name": {"type": "string"}}}


def completion(text='{"name": "cc"}', finish_reason="stop", **extra):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "qwen2.5-coder-7b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40},
        **extra,
    }


def models(*ids):
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "me"} for i in ids]}


@contextmanager
def fake_server(answer):
    """A real JSON server on 127.0.0.1 (tests/loopback.py), addressed as an OpenAI base URL."""
    with json_server(answer) as (url, seen):
        yield url + "/v1", seen


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(url: str, sleeps=None, model: str | None = "qwen2.5-coder-7b", **settings) -> OpenAIClient:
    retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, sleep=sleeps if sleeps is not None else Sleeps())
    return OpenAIClient.from_settings(url, Settings(model=model, **settings), retry=retry)


def request(**overrides) -> LLMRequest:
    fields = dict(purpose="generate", prompt="Write the service.", system="Answer in JSON.", json_schema=SCHEMA,
                  temperature=0.2, seed=7, max_tokens=100, num_ctx=4096, think=True)
    return LLMRequest(**(fields | overrides))


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_request_sends_messages_parameters_and_the_json_schema():
    with fake_server(lambda *_: (200, completion())) as (url, seen):
        client_for(url).complete(request())
    ((method, path, body, headers),) = seen
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body["model"] == "qwen2.5-coder-7b"
    assert body["messages"] == [{"role": "system", "content": "Answer in JSON."},
                                {"role": "user", "content": "Write the service."}]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.2, 7, 100)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Service_Spec", "schema": SCHEMA, "strict": False},
    }
    assert headers["authorization"] == "Bearer not-needed"


def test_unset_values_are_omitted_and_the_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with fake_server(lambda *_: (200, completion())) as (url, seen):
        client_for(url).complete(request(system=None, seed=None, json_schema=None))
    _, _, body, headers = seen[0]
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "seed" not in body and "response_format" not in body
    assert headers["authorization"] == "Bearer sk-test"


def test_response_maps_usage_finish_reason_and_server_timings():
    timings = {"prompt_n": 31, "prompt_ms": 120.5, "predicted_n": 9, "predicted_ms": 300.25}
    with fake_server(lambda *_: (200, completion(timings=timings))) as (url, _):
        response = client_for(url).complete(request())
    assert response.text == '{"name": "cc"}'
    assert (response.backend, response.model) == ("openai", "qwen2.5-coder-7b")
    assert (response.prompt_tokens, response.completion_tokens) == (31, 9)
    assert response.finish_reason == "stop"
    assert response.timings == timings
    assert response.duration_s is not None and response.duration_s >= 0


def test_truncated_answer_reports_length():
    with fake_server(lambda *_: (200, completion('{"name": "c', finish_reason="length"))) as (url, _):
        response = client_for(url).complete(request())
    assert response.finish_reason == "length"
    assert response.timings == {}


def test_json_object_fallback_when_json_schema_is_rejected():
    def answer(_method, _path, body):
        if body["response_format"]["type"] == "json_schema":
            return 400, {"error": {"message": "response_format type 'json_schema' is not supported", "code": 400}}
        return 200, completion()

    with fake_server(answer) as (url, seen):
        client = client_for(url)
        assert client.complete(request()).text == '{"name": "cc"}'
        assert [s[2]["response_format"]["type"] for s in seen] == ["json_schema", "json_object"]
        client.complete(request())  # remembered: no failed request first
        assert [s[2]["response_format"]["type"] for s in seen] == ["json_schema", "json_object", "json_object"]
    assert client.json_schema_rejected


def test_other_bad_requests_fail_the_call_without_fallback():
    error = {"error": {"message": "the prompt is longer than the context (9000 > 8192 tokens)"}}
    with fake_server(lambda *_: (400, error)) as (url, seen):
        with pytest.raises(LLMCallError, match=r"^The server answered HTTP 400: .*9000 > 8192"):
            client_for(url).complete(request())
    assert len(seen) == 1


def test_server_error_fails_the_call_without_retry():
    sleeps = Sleeps()
    with fake_server(lambda *_: (503, {"error": {"message": "loading model"}})) as (url, seen):
        with pytest.raises(LLMCallError, match="HTTP 503"):
            client_for(url, sleeps).complete(request())
    assert len(seen) == 1 and sleeps == []


def test_refused_key_stops_the_run():
    with fake_server(lambda *_: (401, {"error": {"message": "invalid api key"}})) as (url, _):
        with pytest.raises(LLMUnavailable) as info:
            client_for(url).complete(request())
    assert "OPENAI_API_KEY" in info.value.hint


def test_connection_refused_is_unavailable_after_bounded_retries():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    with pytest.raises(LLMUnavailable, match=f"Cannot reach the OpenAI-compatible server at .*:{port}/v1"):
        client_for(f"http://127.0.0.1:{port}/v1", sleeps).complete(request())
    assert len(sleeps) == 2


def test_slow_generation_times_out_without_retry():
    with fake_server(lambda *_: (200, completion(), 1.5)) as (url, seen):
        with pytest.raises(LLMCallError, match=r"did not answer within 0\.3 s"):
            client_for(url, llm_timeout=0.3).complete(request())
    assert len(seen) == 1


def test_model_discovery_uses_the_only_served_model():
    def answer(method, path, _body):
        return (200, models("llama-3.2-3b")) if path == "/v1/models" else (200, completion())

    with fake_server(answer) as (url, seen):
        client = client_for(url, model=None)
        client.complete(request())
    assert client.model == "llama-3.2-3b"
    assert seen[0][:2] == ("GET", "/v1/models")
    assert seen[1][2]["model"] == "llama-3.2-3b"


@pytest.mark.parametrize("served, expected", [
    (("a", "b"), r"serves 2 models \(a, b\); choose one with --model\.$"),
    ((), r"serves no models; choose one with --model\.$"),
])
def test_model_discovery_needs_exactly_one_model(served, expected):
    with fake_server(lambda *_: (200, models(*served))) as (url, _):
        with pytest.raises(UsageError, match=expected):
            client_for(url, model=None)


def test_model_discovery_without_a_models_endpoint():
    with fake_server(lambda *_: (404, {"error": "not found"})) as (url, _):
        with pytest.raises(UsageError, match=r"does not list its models \(HTTP 404\); choose one with --model\.$"):
            client_for(url, model=None)


@pytest.mark.parametrize("payload", ["<html>proxy login</html>", {"error": "oops"}])
def test_an_answer_that_is_not_a_chat_completion_fails_the_call(payload):
    with fake_server(lambda *_: (200, payload)) as (url, _):
        with pytest.raises(LLMCallError, match="not a (valid )?chat completion"):
            client_for(url).complete(request())
