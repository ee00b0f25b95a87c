"""One logged LLM call: send, record, parse and validate. The only way stages talk to a model.

Each call becomes one record.schema.LLMCallRecord, handed to the run context (`ctx.record_llm_call`) as soon as
the call ends; the runner's writer appends it to llm.jsonl. This module never writes the record itself.

`ask` is the structured style (one schema-constrained request); `ask_chat` one turn of the conversational style.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from kubevibe.llm.base import ChatMessage, LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.conversation import context_budget, fit_to_context
from kubevibe.llm.parse import AnswerError, parse_answer, repeated_tail
from kubevibe.record.schema import LLMCallRecord

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext

T = TypeVar("T", bound=BaseModel)

# A refused answer is kept in llm.jsonl only this long (head and tail): a runaway model must not write megabytes
# per call. Accepted answers are kept whole, because replay reproduces a run from them.
MAX_REFUSED_CHARS = 20_000


def cut_for_record(text: str, limit: int = MAX_REFUSED_CHARS) -> str:
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return text[:head] + f"\n... [kubevibe: {len(text) - head - tail} of {len(text)} characters cut] ...\n" + text[-tail:]


class Answer(BaseModel, Generic[T]):
    value: T | None = None
    error: str | None = None  # one sentence, when value is None
    response: LLMResponse | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def schema_for(model: type[BaseModel]) -> dict:
    """The JSON schema sent to the backend for constrained decoding."""
    return model.model_json_schema()


def _sampling(ctx: "RunContext", max_tokens: int | None) -> dict:
    """The request fields every call takes from the run's settings."""
    s = ctx.settings
    return {
        "temperature": s.temperature,
        # A fixed seed would make a retry repeat the failure it retries: vary it by step, reproducibly.
        "seed": None if s.seed is None else s.seed + ctx.step,
        "max_tokens": max_tokens or s.max_tokens,
        "num_ctx": s.num_ctx,
        "think": s.think,
        # A total deadline for the call: it never outlives the run's TIMEOUT.
        "timeout_s": max(0.5, min(s.llm_timeout, ctx.remaining())),
    }


def ask(ctx: "RunContext", purpose: str, prompt: str, model: type[T], *, system: str | None = None,
        max_tokens: int | None = None, schema: dict | None = None, client: "LLMClient | None" = None) -> Answer[T]:
    """`schema` replaces the model's own JSON schema for constrained decoding (e.g. with tighter bounds); the
    answer is still validated against `model`. `client`: another model than the run's (the test writer's)."""
    s = ctx.settings
    llm = client or ctx.llm
    # The conversational style sends no JSON schema and talks to the chat endpoint: a structured answer (an
    # intent spec, a judge's verdict) is then asked for by the prompt alone and parsed tolerantly.
    chatting = s.style == "conversational"
    messages = None
    if chatting:
        messages = ([ChatMessage(role="system", content=system)] if system else []) + \
            [ChatMessage(role="user", content=prompt)]
    request = LLMRequest(
        purpose=purpose,
        prompt="" if chatting else prompt,
        system=None if chatting else system,
        messages=messages,
        json_schema=None if chatting else (schema if schema is not None else schema_for(model)),
        **_sampling(ctx, max_tokens),
    )
    started = time.monotonic()
    record: dict = {
        "time": datetime.now(timezone.utc).isoformat(),
        "step": ctx.step,
        "stage": str(ctx.stage) if ctx.stage else None,
        "purpose": purpose,
        "backend": llm.backend,
        "model": llm.model,
        "request": request.model_dump(exclude={"json_schema", "timeout_s"}),
        "schema": model.__name__,
        "deadline_s": round(request.timeout_s, 3) if request.timeout_s else None,
    }
    if chatting:
        record["style"] = "conversational"
    try:
        response = llm.chat(request) if chatting else llm.complete(request)
    except LLMCallError as exc:
        record.update(ok=False, error=str(exc), duration_s=round(time.monotonic() - started, 3))
        ctx.record_llm_call(LLMCallRecord.model_validate(record))
        return Answer(error=f"The LLM call failed: {exc}")
    except BaseException as exc:  # unreachable server, interruption, a bug: the call is still on the record
        record.update(ok=False, error=f"{type(exc).__name__}: {exc}", duration_s=round(time.monotonic() - started, 3))
        ctx.record_llm_call(LLMCallRecord.model_validate(record))
        raise
    record["response"] = response.model_dump()
    try:
        value = parse_answer(response.text, model)
    except AnswerError as exc:
        reason = str(exc)
        written = f"{response.completion_tokens} tokens" if response.completion_tokens else f"limit {request.max_tokens}"
        if response.finish_reason == "length":
            reason += f" The model stopped at the token limit ({written})"
            reason += ", repeating itself." if repeated_tail(response.text) else "."
        elif response.finish_reason == "repetition":
            reason += f" The model was going round in circles and was stopped after {written}."
        record.update(ok=False, error=reason)
        if len(response.text) > MAX_REFUSED_CHARS:
            record["response"] = {**record["response"], "text": cut_for_record(response.text),
                                  "text_chars": len(response.text), "text_cut": True}
            for key in ("thinking",):
                if record["response"].get(key):
                    record["response"][key] = cut_for_record(record["response"][key])
        ctx.record_llm_call(LLMCallRecord.model_validate(record))
        return Answer(error=reason, response=response)
    record.update(ok=True)
    ctx.record_llm_call(LLMCallRecord.model_validate(record))
    return Answer(value=value, response=response)


class ChatAnswer(BaseModel):
    text: str | None = None
    error: str | None = None  # one sentence, when the call itself failed
    response: LLMResponse | None = None
    context: dict = {}  # what fit_to_context sent and dropped

    @property
    def ok(self) -> bool:
        return self.text is not None


def ask_chat(ctx: "RunContext", purpose: str, messages: list[ChatMessage], files: dict[str, str]) -> ChatAnswer:
    """One conversational turn: trim the conversation to the context, send it, record the messages sent (so
    replay reproduces the run) and what was dropped. No JSON schema: the answer is prose, parsed by the caller."""
    s = ctx.settings
    fitted = fit_to_context(messages, files, context_budget(s.num_ctx, s.max_tokens))
    request = LLMRequest(
        purpose=purpose,
        messages=fitted.messages,
        **_sampling(ctx, None),
    )
    started = time.monotonic()
    record: dict = {
        "time": datetime.now(timezone.utc).isoformat(),
        "step": ctx.step,
        "stage": str(ctx.stage) if ctx.stage else None,
        "purpose": purpose,
        "style": "conversational",
        "backend": ctx.llm.backend,
        "model": ctx.llm.model,
        "request": request.model_dump(exclude={"json_schema", "prompt", "system"}),
        # The conversation as sent, also at the top level: what a reader of llm.jsonl looks for first.
        "messages": [m.model_dump() for m in fitted.messages],
        "context": fitted.record,
    }
    try:
        response = ctx.llm.chat(request)
    except LLMCallError as exc:
        record.update(ok=False, error=str(exc), duration_s=round(time.monotonic() - started, 3))
        ctx.record_llm_call(LLMCallRecord.model_validate(record))
        return ChatAnswer(error=f"The LLM call failed: {exc}", context=fitted.record)
    record.update(ok=True, response=response.model_dump())
    ctx.record_llm_call(LLMCallRecord.model_validate(record))
    return ChatAnswer(text=response.text, response=response, context=fitted.record)
