"""Ollama backend: POST /api/generate, non-streaming, the reference tool's protocol; POST /api/chat for the
conversational style.

We use the official `ollama` client: it speaks exactly this endpoint (format = JSON schema, think, options)
and leaves transport errors to httpx, which the shared retry policy in `kubevibe.llm.http` classifies.
"""

from __future__ import annotations

import time

import httpx
import ollama

from kubevibe.errors import LLMUnavailable
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.http import RetryPolicy, connect_timeout, status_error, timeout_error, with_connect_retries
from kubevibe.settings import Settings

DEFAULT_MODEL = "deepseek-r1:32b"  # the reference tool's default

# Ollama reports durations in nanoseconds; we record seconds.
_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


class OllamaClient(LLMClient):
    backend = "ollama"

    def __init__(self, model: str, base_url: str, timeout: float, retry: RetryPolicy | None = None):
        super().__init__(model)
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client = ollama.Client(host=base_url, timeout=httpx.Timeout(timeout, connect=connect_timeout(timeout)))

    @classmethod
    def from_settings(cls, target: str, settings: Settings, retry: RetryPolicy | None = None) -> "OllamaClient":
        from kubevibe.llm.resolve import ollama_base_url

        return cls(settings.model or DEFAULT_MODEL, target or ollama_base_url(), settings.llm_timeout, retry)

    def describe(self) -> str:
        return f"ollama model={self.model} at {self.base_url}"

    def complete(self, request: LLMRequest) -> LLMResponse:
        answer, duration = self._send("/api/generate", lambda: self._client.generate(
            model=self.model,
            prompt=request.prompt,
            system=request.system,  # the client drops None fields from the body
            stream=False,
            think=request.think,
            format=request.json_schema,
            options=self._options(request),
        ))
        # A thinking model may put everything into `thinking` and leave `response` empty: that is the
        # model's answer, and parsing it will say so; we do not fish JSON out of the reasoning.
        return self._response(answer, answer.response, getattr(answer, "thinking", None), duration)

    def chat(self, request: LLMRequest) -> LLMResponse:
        """POST /api/chat with the conversation; no `format`: conversational answers are prose."""
        messages = [m.model_dump() for m in request.messages or []]
        answer, duration = self._send("/api/chat", lambda: self._client.chat(
            model=self.model,
            messages=messages,
            stream=False,
            think=request.think,
            options=self._options(request),
        ))
        message = getattr(answer, "message", None)
        return self._response(answer, getattr(message, "content", None), getattr(message, "thinking", None),
                              duration)

    @staticmethod
    def _options(request: LLMRequest) -> dict:
        options = {
            "temperature": request.temperature,
            "seed": request.seed,
            "num_ctx": request.num_ctx,
            "num_predict": request.max_tokens,
        }
        return {k: v for k, v in options.items() if v is not None}

    def _send(self, endpoint: str, call):
        unavailable = LLMUnavailable(
            f"Cannot reach the Ollama server at {self.base_url}.",
            hint="start it with `ollama serve`, or set OLLAMA_HOST / --llm",
        )
        started = time.monotonic()
        try:
            answer = with_connect_retries(call, self.retry, unavailable)
        except ollama.ResponseError as exc:
            raise self._response_error(exc, endpoint) from None
        except httpx.TimeoutException:  # connect timeouts were retried above; this is a slow generation
            raise timeout_error(self.timeout) from None
        except httpx.HTTPError as exc:
            raise LLMCallError(
                f"The connection to Ollama broke before the answer was complete ({type(exc).__name__})."
            ) from None
        except ValueError:  # a 200 whose body is not JSON, or not shaped like the endpoint's response
            raise LLMCallError(f"Ollama's answer was not a valid {endpoint} response.") from None
        return answer, time.monotonic() - started

    def _response(self, answer, text: str | None, thinking: str | None, duration: float) -> LLMResponse:
        timings = {f"{name}_s": value / 1e9 for name in _DURATIONS if (value := getattr(answer, name)) is not None}
        return LLMResponse(
            text=text or "",
            model=answer.model or self.model,
            backend=self.backend,
            prompt_tokens=answer.prompt_eval_count,
            completion_tokens=answer.eval_count,
            duration_s=round(duration, 3),
            timings=timings,
            finish_reason=answer.done_reason,
            thinking=thinking or None,
        )

    def _response_error(self, exc: ollama.ResponseError, endpoint: str = "/api/generate") -> Exception:
        message = str(exc.error)
        if exc.status_code == 404:
            # Every later call would fail the same way, so stop the run instead of failing stages.
            if "model" in message.lower():
                return LLMUnavailable(
                    f"The Ollama server at {self.base_url} does not have the model {self.model}.",
                    hint=f"run `ollama pull {self.model}`, or choose another with --model",
                )
            return LLMUnavailable(
                f"The server at {self.base_url} has no {endpoint} endpoint, so it is not an Ollama server.",
                hint="check OLLAMA_HOST / --llm",
            )
        return status_error(exc.status_code, message)

    def close(self) -> None:
        self._client.close()
