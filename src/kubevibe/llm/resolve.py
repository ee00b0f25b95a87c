"""Turn the `--llm` spec into a client, and say where the choice came from.

Specs:
  auto                         Ollama if it answers at OLLAMA_HOST, otherwise the embedded model
  ollama  | ollama://HOST:PORT Ollama's /api/generate (HOST:PORT default: OLLAMA_HOST or localhost:11434)
  openai://HOST:PORT/v1        any OpenAI-compatible chat-completions server (key: OPENAI_API_KEY)
  https://... or http://...    the same, written as a plain URL
  embedded                     the bundled Gemma 3 270M through llama.cpp, offline
  replay:PATH                  answers from a recorded llm.jsonl (or a run directory), in order
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from kubevibe.errors import UsageError
from kubevibe.llm.base import BACKENDS, LLMClient, backend_class
from kubevibe.settings import Settings, machine_setting

DEFAULT_OLLAMA_HOST = "localhost:11434"


def ollama_base_url(host: str | None = None) -> str:
    """Ollama's own convention for OLLAMA_HOST: scheme optional, port 11434 when none is given."""
    host = (host or machine_setting("ollama_host") or DEFAULT_OLLAMA_HOST).rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = "http://" + host
    url = urlsplit(host)  # not httpx.URL: it hides an explicit default port such as :443
    if url.port is None and not url.path.strip("/"):
        host = f"{url.scheme}://{url.hostname}:11434"
    return host


def ollama_answers(base_url: str, timeout: float = 1.5) -> bool:
    try:
        return httpx.get(base_url + "/api/version", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class LLMChoice(BaseModel):
    scheme: str
    target: str  # URL, path, or "" for embedded
    reason: str  # why this backend, for the log: "flag", "auto: Ollama answered at ...", ...


def parse_spec(spec: str) -> LLMChoice:
    spec = spec.strip()
    if spec == "auto":
        base = ollama_base_url()
        if ollama_answers(base):
            return LLMChoice(scheme="ollama", target=base, reason=f"auto: Ollama answered at {base}")
        return LLMChoice(scheme="embedded", target="", reason=f"auto: no Ollama at {base}, using the embedded model")
    if spec in ("ollama", "embedded"):
        return LLMChoice(scheme=spec, target=ollama_base_url() if spec == "ollama" else "", reason="spec")
    if spec.startswith("ollama://"):
        return LLMChoice(scheme="ollama", target=ollama_base_url(spec.removeprefix("ollama://")), reason="spec")
    if spec.startswith("openai://"):
        rest = spec.removeprefix("openai://")
        return LLMChoice(scheme="openai", target=rest if rest.startswith("http") else "http://" + rest, reason="spec")
    if spec.startswith(("http://", "https://")):
        return LLMChoice(scheme="openai", target=spec, reason="spec")
    if spec.startswith("replay:"):
        path = spec.removeprefix("replay:")
        if not path:
            raise UsageError("The replay spec needs a path: replay:RUN_DIR or replay:PATH/llm.jsonl.")
        return LLMChoice(scheme="replay", target=path, reason="spec")
    raise UsageError(
        f"Unknown LLM spec {spec!r}: use auto, ollama://HOST:PORT, openai://HOST:PORT/v1, embedded or replay:PATH."
    )


def make_client(settings: Settings) -> tuple[LLMClient, LLMChoice]:
    choice = parse_spec(settings.llm)
    assert choice.scheme in BACKENDS
    cls = backend_class(choice.scheme)
    client = cls.from_settings(choice.target, settings)
    return client, choice
