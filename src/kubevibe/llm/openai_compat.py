"""OpenAI-compatible backend: POST {base}/chat/completions through the official `openai` client.

Works with OpenAI itself and with local servers that copy its API (llama.cpp's server, vLLM, LM Studio,
Ollama's /v1). Those servers differ in what they accept; the one difference we handle is structured
output: some reject `response_format: json_schema` and only know `json_object`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import openai
from pydantic import BaseModel, Field, ValidationError

from kubevibe.errors import LLMUnavailable, UsageError
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.http import (RetryPolicy, call_with_deadline, connect_timeout, status_error, timeout_error,
                               with_connect_retries)
from kubevibe.settings import Settings, openai_api_key


class ChatMessage(BaseModel):
    content: str | None = None
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    message: ChatMessage | None = None
    finish_reason: str | None = None


class ChatUsage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatEnvelope(BaseModel):
    """The part of a chat completion we read, with the types the API promises (unknown keys are ignored)."""

    choices: list[ChatChoice] = Field(min_length=1)
    model: str | None = None
    usage: ChatUsage | None = None
    timings: dict[str, Any] | None = None


def chat_envelope(body: bytes | str) -> ChatEnvelope:
    """Validate a chat-completions body; a wrong one becomes one sentence naming the field and what it held."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise LLMCallError("The server's answer was not JSON, so it is not a chat completion.") from None
    if not isinstance(data, dict):
        raise LLMCallError(f"The server's answer was a JSON {type(data).__name__}, not a chat completion object.")
    try:
        return ChatEnvelope.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "the body"
        got = json.dumps(err.get("input"), ensure_ascii=False, default=str)[:80]
        raise LLMCallError(f"The server's answer is not a valid chat completion: {where} is {got} "
                           f"({err['msg'].lower()}).") from None


class OpenAIClient(LLMClient):
    backend = "openai"

    def __init__(self, model: str, base_url: str, timeout: float, retry: RetryPolicy | None = None):
        super().__init__(model)
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        # Set once the server rejects json_schema, so later calls do not pay for a failed request first.
        self.json_schema_rejected = False
        self._client = self._new_client()

    def _new_client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=openai_api_key() or "not-needed",  # local servers ignore the key
            timeout=openai.Timeout(self.timeout, connect=connect_timeout(self.timeout)),
            max_retries=0,  # connection failures are retried by our policy; nothing else should be
        )

    @classmethod
    def from_settings(cls, target: str, settings: Settings, retry: RetryPolicy | None = None) -> "OpenAIClient":
        client = cls(settings.model or "", target, settings.llm_timeout, retry)
        if not client.model:
            try:
                client.model = client._only_served_model()
            except BaseException:
                client.close()
                raise
        return client

    def describe(self) -> str:
        return f"openai model={self.model} at {self.base_url}"

    def _unavailable(self) -> LLMUnavailable:
        return LLMUnavailable(
            f"Cannot reach the OpenAI-compatible server at {self.base_url}.",
            hint="start the server, or fix the URL given to --llm",
        )

    def _only_served_model(self) -> str:
        """The model to use when none was given: the server's only one, else ask the user to choose."""
        try:
            page = with_connect_retries(self._client.models.list, self.retry, self._unavailable())
        except openai.APIStatusError as exc:
            raise UsageError(
                f"The server at {self.base_url} does not list its models (HTTP {exc.status_code}); "
                "choose one with --model."
            ) from None
        except (openai.OpenAIError, ValueError):
            raise UsageError(
                f"The server at {self.base_url} did not answer GET /models; choose a model with --model."
            ) from None
        ids = [m.id for m in getattr(page, "data", None) or []]
        if len(ids) == 1:
            return ids[0]
        served = f"{len(ids)} models ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})" if ids else "no models"
        raise UsageError(f"The server at {self.base_url} serves {served}; choose one with --model.")

    def complete(self, request: LLMRequest) -> LLMResponse:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        return self._completion(request, messages, request.json_schema)

    def chat(self, request: LLMRequest) -> LLMResponse:
        """The conversation as it is, and no response_format: conversational answers are prose."""
        return self._completion(request, [m.model_dump() for m in request.messages or []], None)

    def _completion(self, request: LLMRequest, messages: list[dict[str, str]],
                    schema: dict[str, Any] | None) -> LLMResponse:
        params: dict[str, Any] = {"model": self.model, "messages": messages}
        # Omit unset values rather than sending nulls, which some servers reject.
        for name in ("temperature", "seed", "max_tokens"):
            if (value := getattr(request, name)) is not None:
                params[name] = value
        # num_ctx and think have no chat-completions equivalent: the server's own configuration decides.

        started = time.monotonic()
        deadline = min(request.timeout_s or self.timeout, self.timeout)
        client = self._client

        def timed_out() -> Exception:
            # The abandoned call may still hold its connection: later calls use a fresh client.
            self._client = self._new_client()
            return timeout_error(deadline)

        try:
            completion = call_with_deadline(lambda: self._create(client, params, schema), deadline, timed_out)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:  # connect timeouts were retried above; this is a slow generation
            raise timeout_error(min(deadline, self.timeout)) from None
        except openai.APIConnectionError:
            raise LLMCallError("The connection to the server broke before the answer was complete.") from None
        except (openai.OpenAIError, ValueError):  # ValueError: a body that is not JSON
            raise LLMCallError("The server's answer was not a valid chat completion.") from None
        duration = time.monotonic() - started

        envelope = chat_envelope(completion)
        choice = envelope.choices[0]
        message = choice.message or ChatMessage()
        usage = envelope.usage or ChatUsage()
        return LLMResponse(
            text=message.content or "",
            model=envelope.model or self.model,
            backend=self.backend,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            duration_s=round(duration, 3),
            # llama.cpp's server adds `timings` (prompt_ms, predicted_ms, ...)
            timings=envelope.timings if isinstance(envelope.timings, dict) else {},
            finish_reason=choice.finish_reason,
            # llama.cpp and vLLM return reasoning apart from the answer under this non-standard field
            thinking=message.reasoning_content or None,
        )

    def _create(self, client: openai.OpenAI, params: dict[str, Any], schema: dict[str, Any] | None) -> Any:
        if schema is not None:
            params = {**params, "response_format": self._response_format(schema)}
        try:
            return self._send(client, params)
        except openai.BadRequestError as exc:
            text = exc.response.text.lower()
            if schema is None or self.json_schema_rejected or not ("response_format" in text or "json_schema" in text):
                raise
            self.json_schema_rejected = True
            return self._send(client, {**params, "response_format": {"type": "json_object"}})

    def _send(self, client: openai.OpenAI, params: dict[str, Any]) -> Any:
        # The raw body: the client's own parsing does not check types, and a wrongly typed field would surface
        # later as an AttributeError far from its cause. `chat_envelope` validates it instead.
        raw = with_connect_retries(lambda: client.chat.completions.with_raw_response.create(**params), self.retry,
                                   self._unavailable())
        return raw.http_response.content

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.json_schema_rejected:
            return {"type": "json_object"}
        # The name must match [a-zA-Z0-9_-]{1,64}; pydantic puts the model's class name in "title".
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
        # strict=False: strict mode demands every property be required and no extra keys, which our
        # pydantic schemas (with defaults) do not satisfy; the schema still guides the server's grammar.
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        body = exc.response.text
        # These fail every later call the same way, so stop the run instead of failing stages.
        if exc.status_code in (401, 403):
            return LLMUnavailable(
                f"The server at {self.base_url} refused the request (HTTP {exc.status_code}).",
                hint="set OPENAI_API_KEY to a key the server accepts",
            )
        if exc.status_code == 404:
            return LLMUnavailable(
                f"The server at {self.base_url} answered 404 for model {self.model}.",
                hint="check that the URL ends in /v1 and that --model names a served model (GET /models)",
            )
        return status_error(exc.status_code, body)

    def close(self) -> None:
        self._client.close()
