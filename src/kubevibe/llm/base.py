"""The LLM interface: `complete()` (one prompt, structured style) and `chat()` (a conversation, conversational
style). Backends register by spec scheme in `BACKENDS`.

Errors:
- `LLMCallError`: this call failed (HTTP error, timeout, server-side error). The stage fails with the reason.
- `kubevibe.errors.LLMUnavailable`: the server cannot be reached at all after bounded retries. The run stops
  with a hint: an unreachable server says nothing about the model's ability, so it must not count as a failure.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from kubevibe.settings import Settings


class ChatMessage(BaseModel):
    """One turn of a conversation, in the role names every chat API shares."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class LLMRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str  # "intent", "judge", "generate", "fix": recorded, and checked by replay
    prompt: str = ""  # complete(): the one user turn
    # chat(): the whole conversation as sent (system first); prompt and system are unused then.
    messages: list[ChatMessage] | None = None
    system: str | None = None
    json_schema: dict[str, Any] | None = None  # constrain the answer to this JSON schema where supported
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    num_ctx: int | None = None
    think: bool | None = None
    # Seconds for the whole call (not per read): min(KUBEVIBE_LLM_TIMEOUT, what is left of TIMEOUT), set by
    # llm.call.ask. None: the client's own llm_timeout.
    timeout_s: float | None = Field(None, gt=0)


class LLMResponse(BaseModel):
    text: str
    model: str
    backend: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_s: float | None = None  # wall time of the call as measured by the client
    timings: dict[str, Any] = Field(default_factory=dict)  # whatever the backend reports (eval_duration, ...)
    finish_reason: str | None = None  # "stop", "length" (truncated), "repetition" (stopped going round in circles)
    thinking: str | None = None  # reasoning the server returned apart from the answer (Ollama, llama.cpp)


class LLMCallError(Exception):
    """One call failed; the message is one sentence recorded as the stage's failure reason."""


class LLMClient(ABC):
    backend: ClassVar[str]
    # Small models cannot write a whole service; backends say which generation strategy suits them.
    default_strategy: ClassVar[str] = "full"

    def __init__(self, model: str):
        self.model = model
        # The generation strategy of the run being reproduced, when a backend replays one (see session).
        self.recorded_strategy: str | None = None
        self.recorded_style: str | None = None  # likewise its prompting style (structured, conversational)

    @classmethod
    @abstractmethod
    def from_settings(cls, target: str, settings: "Settings") -> "LLMClient":
        """Build the client from the spec's target (URL, path, or "") and the run's settings."""

    @abstractmethod
    def complete(self, request: LLMRequest) -> LLMResponse: ...

    def chat(self, request: LLMRequest) -> LLMResponse:
        """Answer the conversation `request.messages` in prose (no JSON schema). Backends override this."""
        raise LLMCallError(f"The {self.backend} backend cannot hold a conversation.")

    def describe(self) -> str:
        return f"{self.backend} model={self.model}"

    def warm_up(self) -> None:
        """Get ready before the run's clock starts (the embedded backend loads its model here)."""

    def close(self) -> None:
        """Release connections, servers, loaded models. Safe to call twice."""


# scheme -> "module:Class". Imported lazily: the embedded backend pulls in llama.cpp only when chosen.
BACKENDS: dict[str, str] = {
    "ollama": "kubevibe.llm.ollama:OllamaClient",
    "openai": "kubevibe.llm.openai_compat:OpenAIClient",
    "embedded": "kubevibe.llm.embedded:EmbeddedClient",
    "replay": "kubevibe.llm.replay:ReplayClient",
}


def backend_class(scheme: str) -> type[LLMClient]:
    module_name, _, class_name = BACKENDS[scheme].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
