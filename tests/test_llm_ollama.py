"""The Ollama backend against a real HTTP server on loopback that speaks /api/generate."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager

import pytest
from loopback import closed_port, json_server

from kubevibe.errors import LLMUnavailable
from kubevibe.llm.base import LLMCallError, LLMRequest
from kubevibe.llm.http import RetryPolicy
from kubevibe.llm.ollama import DEFAULT_MODEL, OllamaClient
from kubevibe.settings import Settings

SCHEMA = {"title": "Answer", "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

GENERATED = {
    "model": "qwen3:8b",
    "created_at": "2025-01-01T00:00:00Z",
    "response": '{"name": "cc"}',
    "done": True,
    "done_reason": "stop",
    "total_duration": 2_500_000_000,
    "load_duration": 500_000_000,
    "prompt_eval_count": 42,
    "prompt_eval_duration": 250_000_000,
    "eval_count": 7,
    "eval_duration": 1_000_000_000,
}


@contextmanager
def fake_server(answer, port: int = 0):
    """A real JSON server on 127.0.0.1 (tests/loopback.py): answer(method, path, body) -> (status, payload[, delay])."""
    with json_server(answer, port) as (url, seen):
        yield url, seen


class Sleeps(list):
    """A RetryPolicy.sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(url: str, sleeps=None, **settings) -> OllamaClient:
    retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, sleep=sleeps if sleeps is not None else Sleeps())
    return OllamaClient.from_settings(url, Settings(**settings), retry=retry)


def request(**overrides) -> LLMRequest:
    fields = dict(purpose="intent", prompt="Describe the service.", system="Answer in JSON.", json_schema=SCHEMA,
                  temperature=0.2, seed=7, max_tokens=100, num_ctx=4096, think=False)
    return LLMRequest(**(fields | overrides))


def test_request_body_follows_the_generate_protocol():
    with fake_server(lambda *_: (200, GENERATED)) as (url, seen):
        client_for(url, model="qwen3:8b").complete(request())
    ((method, path, body, _headers),) = seen
    assert (method, path) == ("POST", "/api/generate")
    assert body["model"] == "qwen3:8b"
    assert body["prompt"] == "Describe the service."
    assert body["system"] == "Answer in JSON."
    assert body["stream"] is False
    assert body["format"] == SCHEMA
    assert body["think"] is False
    assert body["options"] == {"temperature": 0.2, "seed": 7, "num_ctx": 4096, "num_predict": 100}


def test_unset_fields_are_left_out():
    with fake_server(lambda *_: (200, GENERATED)) as (url, seen):
        client_for(url).complete(request(system=None, think=None, seed=None, json_schema=None))
    body = seen[0][2]
    assert "think" not in body and "system" not in body and "format" not in body
    assert "seed" not in body["options"]
    assert body["model"] == DEFAULT_MODEL == "deepseek-r1:32b"


def test_response_maps_tokens_timings_and_finish_reason():
    with fake_server(lambda *_: (200, GENERATED)) as (url, _):
        response = client_for(url, model="qwen3:8b").complete(request())
    assert response.text == '{"name": "cc"}'
    assert (response.backend, response.model) == ("ollama", "qwen3:8b")
    assert (response.prompt_tokens, response.completion_tokens) == (42, 7)
    assert response.timings == {"total_duration_s": 2.5, "load_duration_s": 0.5,
                                "prompt_eval_duration_s": 0.25, "eval_duration_s": 1.0}
    assert response.finish_reason == "stop"
    assert response.duration_s is not None and response.duration_s >= 0


def test_answer_left_in_thinking_is_returned_as_is():
    answer = GENERATED | {"response": "", "thinking": '{"name": "cc"}', "done_reason": "length"}
    with fake_server(lambda *_: (200, answer)) as (url, _):
        response = client_for(url).complete(request(think=True))
    assert response.text == ""
    assert response.finish_reason == "length"


def test_server_error_is_a_failed_call_without_retry():
    sleeps = Sleeps()
    with fake_server(lambda *_: (500, {"error": "llama runner process has terminated"})) as (url, seen):
        with pytest.raises(LLMCallError, match=r"HTTP 500: llama runner process has terminated\.$"):
            client_for(url, sleeps).complete(request())
    assert len(seen) == 1 and sleeps == []


def test_bad_request_is_a_failed_call_without_retry():
    with fake_server(lambda *_: (400, {"error": "invalid format: " + "x" * 500})) as (url, seen):
        with pytest.raises(LLMCallError) as info:
            client_for(url).complete(request())
    assert len(seen) == 1
    assert len(str(info.value)) < 260  # the body is cut to 200 characters


def test_missing_model_stops_with_a_pull_hint():
    error = {"error": "model 'nosuch:1b' not found, try pulling it first"}
    with fake_server(lambda *_: (404, error)) as (url, _):
        with pytest.raises(LLMUnavailable) as info:
            client_for(url, model="nosuch:1b").complete(request())
    assert "nosuch:1b" in info.value.message
    assert "ollama pull nosuch:1b" in info.value.hint


def test_not_an_ollama_server():
    with fake_server(lambda *_: (404, "404 page not found")) as (url, _):
        with pytest.raises(LLMUnavailable, match="not an Ollama server"):
            client_for(url).complete(request())


def test_connection_refused_is_unavailable_after_bounded_retries():
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as info:
        client_for(url, sleeps).complete(request())
    assert time.monotonic() - started < 2
    assert len(sleeps) == 2  # three attempts
    assert info.value.message == f"Cannot reach the Ollama server at {url}."
    assert "ollama serve" in info.value.hint


def test_server_that_comes_up_during_the_retries_is_used():
    port = closed_port()
    with ExitStack() as stack:
        # The "wait" before the second attempt starts the server on the port that refused the first.
        start = lambda _seconds: stack.enter_context(fake_server(lambda *_: (200, GENERATED), port=port))  # noqa: E731
        response = client_for(f"http://127.0.0.1:{port}", start).complete(request())
    assert response.text == '{"name": "cc"}'


def test_slow_generation_times_out_without_retry():
    with fake_server(lambda *_: (200, GENERATED, 1.5)) as (url, seen):
        started = time.monotonic()
        with pytest.raises(LLMCallError, match=r"did not answer within 0\.3 s"):
            client_for(url, llm_timeout=0.3).complete(request())
        assert time.monotonic() - started < 1.2
    assert len(seen) == 1


def test_a_body_that_is_not_json_is_a_failed_call():
    with fake_server(lambda *_: (200, "<html>proxy login</html>")) as (url, _):
        with pytest.raises(LLMCallError, match="not a valid /api/generate response"):
            client_for(url).complete(request())


def test_close_twice_is_safe():
    client = client_for("http://127.0.0.1:1")
    client.close()
    client.close()
    assert client.describe() == f"ollama model={DEFAULT_MODEL} at http://127.0.0.1:1"


def test_reasoning_returned_apart_from_the_answer_is_kept():
    answer = GENERATED | {"thinking": "First, the Luhn check..."}
    with fake_server(lambda *_: (200, answer)) as (url, _seen):
        response = client_for(url).complete(request(think=True))
    assert response.thinking == "First, the Luhn check..."
