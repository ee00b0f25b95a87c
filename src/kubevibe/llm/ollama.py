"""Ollama backend: POST /api/generate, non-streaming, the reference tool's protocol.

We use the official `ollama` client: it speaks exactly this endpoint (format = JSON schema, think, options)
and leaves transport errors to httpx, which the shared retry policy in `kubevibe.llm.http` classifies.
"""

from __future__ import annotations

import time

import httpx
import ollama

from kubevibe.errors import LLMUnavailable
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.http import (RetryPolicy, call_with_deadline, connect_timeout, status_error, timeout_error,
                               with_connect_retries)
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
        self._client = self._new_client()

    def _new_client(self) -> ollama.Client:
        return ollama.Client(host=self.base_url, timeout=httpx.Timeout(self.timeout, connect=connect_timeout(self.timeout)))

    @classmethod
    def from_settings(cls, target: str, settings: Settings, retry: RetryPolicy | None = None) -> "OllamaClient":
        from kubevibe.llm.resolve import ollama_base_url

        return cls(settings.model or DEFAULT_MODEL, target or ollama_base_url(), settings.llm_timeout, retry)

    def describe(self) -> str:
        return f"ollama model={self.model} at {self.base_url}"

    def complete(self, request: LLMRequest) -> LLMResponse:
        options = {
            "temperature": request.temperature,
            "seed": request.seed,
            "num_ctx": request.num_ctx,
            "num_predict": request.max_tokens,
        }
        unavailable = LLMUnavailable(
            f"Cannot reach the Ollama server at {self.base_url}.",
            hint="start it with `ollama serve`, or set OLLAMA_HOST / --llm",
        )
        started = time.monotonic()
        deadline = min(request.timeout_s or self.timeout, self.timeout)
        client = self._client

        def timed_out() -> Exception:
            # The abandoned call may still hold its connection: later calls use a fresh client.
            self._client = self._new_client()
            return timeout_error(deadline)

        try:
            answer = call_with_deadline(lambda: with_connect_retries(
                lambda: client.generate(
                    model=self.model,
                    prompt=request.prompt,
                    system=request.system,  # the client drops None fields from the body
                    stream=False,
                    think=request.think,
                    format=request.json_schema,
                    options={k: v for k, v in options.items() if v is not None},
                ),
                self.retry,
                unavailable,
            ), deadline, timed_out)
        except ollama.ResponseError as exc:
            raise self._response_error(exc) from None
        except httpx.TimeoutException:  # connect timeouts were retried above; this is a slow generation
            raise timeout_error(min(deadline, self.timeout)) from None
        except httpx.HTTPError as exc:
            raise LLMCallError(
                f"The connection to Ollama broke before the answer was complete ({type(exc).__name__})."
            ) from None
        except ValueError:  # a 200 whose body is not JSON, or not shaped like a generate response
            raise LLMCallError("Ollama's answer was not a valid /api/generate response.") from None
        duration = time.monotonic() - started

        timings = {f"{name}_s": value / 1e9 for name in _DURATIONS if (value := getattr(answer, name)) is not None}
        # A thinking model may put everything into `thinking` and leave `response` empty: that is the
        # model's answer, and parsing it will say so; we do not fish JSON out of the reasoning.
        return LLMResponse(
            text=answer.response or "",
            model=answer.model or self.model,
            backend=self.backend,
            prompt_tokens=answer.prompt_eval_count,
            completion_tokens=answer.eval_count,
            duration_s=round(duration, 3),
            timings=timings,
            finish_reason=answer.done_reason,
            thinking=getattr(answer, "thinking", None) or None,
        )

    def _response_error(self, exc: ollama.ResponseError) -> Exception:
        message = str(exc.error)
        if exc.status_code == 404:
            # Every later call would fail the same way, so stop the run instead of failing stages.
            if "model" in message.lower():
                return LLMUnavailable(
                    f"The Ollama server at {self.base_url} does not have the model {self.model}.",
                    hint=f"run `ollama pull {self.model}`, or choose another with --model",
                )
            return LLMUnavailable(
                f"The server at {self.base_url} has no /api/generate endpoint, so it is not an Ollama server.",
                hint="check OLLAMA_HOST / --llm",
            )
        return status_error(exc.status_code, message)

    def close(self) -> None:
        self._client.close()
