"""`--llm` spec parsing and client construction, with real servers on loopback for the auto probe."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from loopback import closed_port, json_server

from kubevibe.errors import UsageError
from kubevibe.llm.ollama import DEFAULT_MODEL, OllamaClient
from kubevibe.llm.openai_compat import OpenAIClient
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.llm.resolve import make_client, parse_spec
from kubevibe.settings import Settings


@contextmanager
def fake_server(routes: dict[str, dict]):
    """A real server on 127.0.0.1 answering GET path -> JSON from `routes`, 404 otherwise; yields HOST:PORT."""

    def answer(method, path, body):
        payload = routes.get(path)
        return (200, payload) if payload is not None else (404, {"error": "not found"})

    with json_server(answer) as (url, _seen):
        yield url.removeprefix("http://")




def test_auto_picks_ollama_when_it_answers(monkeypatch):
    with fake_server({"/api/version": {"version": "0.12.0"}}) as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        choice = parse_spec("auto")
    assert (choice.scheme, choice.target) == ("ollama", f"http://{host}")
    assert host in choice.reason


def test_auto_falls_back_to_embedded_when_nothing_listens(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")
    choice = parse_spec(" auto ")
    assert (choice.scheme, choice.target) == ("embedded", "")
    assert "no Ollama" in choice.reason


def test_auto_ignores_a_server_that_is_not_ollama(monkeypatch):
    with fake_server({}) as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        assert parse_spec("auto").scheme == "embedded"


@pytest.mark.parametrize("spec, scheme, target", [
    ("ollama", "ollama", "http://10.0.0.5:11434"),  # from OLLAMA_HOST
    ("ollama://gpu-box:11434", "ollama", "http://gpu-box:11434"),
    ("ollama://https://gpu-box:443/", "ollama", "https://gpu-box:443"),
    ("openai://localhost:8080/v1", "openai", "http://localhost:8080/v1"),
    ("openai://https://api.example.com/v1", "openai", "https://api.example.com/v1"),
    ("https://api.example.com/v1", "openai", "https://api.example.com/v1"),
    ("embedded", "embedded", ""),
    ("replay:runs/m/run1", "replay", "runs/m/run1"),
])
def test_explicit_specs(monkeypatch, spec, scheme, target):
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    choice = parse_spec(spec)
    assert (choice.scheme, choice.target, choice.reason) == (scheme, target, "spec")


@pytest.mark.parametrize("spec", ["gpt4", "", "replay:", "ftp://x", "Ollama"])
def test_invalid_specs_are_usage_errors(spec):
    with pytest.raises(UsageError) as info:
        parse_spec(spec)
    assert info.value.message.endswith(".")


def test_make_client_for_ollama_uses_the_default_model(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:1")
    client, choice = make_client(Settings(llm="ollama"))
    assert isinstance(client, OllamaClient)
    assert (client.model, client.base_url, choice.scheme) == (DEFAULT_MODEL, "http://127.0.0.1:1", "ollama")
    client.close()


def test_make_client_for_openai_discovers_the_model():
    models = {"object": "list", "data": [{"id": "phi-4", "object": "model", "created": 0, "owned_by": "x"}]}
    with fake_server({"/v1/models": models}) as host:
        client, _ = make_client(Settings(llm=f"openai://{host}/v1"))
    assert isinstance(client, OpenAIClient)
    assert client.model == "phi-4"
    client.close()


def test_make_client_for_replay(tmp_path):
    log = write_replay_log(tmp_path, [("intent", "{}")])
    client, choice = make_client(Settings(llm=f"replay:{tmp_path}"))
    assert isinstance(client, ReplayClient)
    assert choice.target == str(tmp_path) and log.name == "llm.jsonl"


def test_make_client_for_a_missing_replay_log(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        make_client(Settings(llm=f"replay:{tmp_path / 'nope.jsonl'}"))


def test_ollama_host_without_port_gets_ollamas_default_port(monkeypatch):
    from kubevibe.llm.resolve import ollama_base_url

    assert ollama_base_url("gpu-box") == "http://gpu-box:11434"
    assert ollama_base_url("http://gpu-box:8080/") == "http://gpu-box:8080"
    assert ollama_base_url("https://llm.example/ollama") == "https://llm.example/ollama"
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5")
    assert ollama_base_url() == "http://10.0.0.5:11434"
