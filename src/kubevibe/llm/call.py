"""One logged LLM call: send, record in llm.jsonl, parse and validate. The only way stages talk to a model."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from kubevibe.llm.base import LLMCallError, LLMRequest, LLMResponse
from kubevibe.llm.parse import AnswerError, parse_answer

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


def ask(ctx: "RunContext", purpose: str, prompt: str, model: type[T], *, system: str | None = None,
        max_tokens: int | None = None) -> Answer[T]:
    s = ctx.settings
    request = LLMRequest(
        purpose=purpose,
        prompt=prompt,
        system=system,
        json_schema=schema_for(model),
        temperature=s.temperature,
        # A fixed seed would make a retry repeat the failure it retries: vary it by step, reproducibly.
        seed=None if s.seed is None else s.seed + ctx.step,
        max_tokens=max_tokens or s.max_tokens,
        num_ctx=s.num_ctx,
        think=s.think,
        # A total deadline for the call: it never outlives the run's TIMEOUT.
        timeout_s=max(0.5, min(s.llm_timeout, ctx.remaining())),
    )
    started = time.monotonic()
    record: dict = {
        "time": datetime.now(timezone.utc).isoformat(),
        "step": ctx.step,
        "stage": str(ctx.stage) if ctx.stage else None,
        "purpose": purpose,
        "backend": ctx.llm.backend,
        "model": ctx.llm.model,
        "request": request.model_dump(exclude={"json_schema", "timeout_s"}),
        "schema": model.__name__,
        "deadline_s": round(request.timeout_s, 3) if request.timeout_s else None,
    }
    try:
        response = ctx.llm.complete(request)
    except LLMCallError as exc:
        record.update(ok=False, error=str(exc), duration_s=round(time.monotonic() - started, 3))
        ctx.rundir.append_llm(record)
        return Answer(error=f"The LLM call failed: {exc}")
    except BaseException as exc:  # unreachable server, interruption, a bug: the call is still on the record
        record.update(ok=False, error=f"{type(exc).__name__}: {exc}", duration_s=round(time.monotonic() - started, 3))
        ctx.rundir.append_llm(record)
        raise
    record["response"] = response.model_dump()
    try:
        value = parse_answer(response.text, model)
    except AnswerError as exc:
        reason = str(exc)
        if response.finish_reason == "length":
            reason += f" The model stopped at the token limit ({request.max_tokens})."
        record.update(ok=False, error=reason)
        if len(response.text) > MAX_REFUSED_CHARS:
            record["response"] = {**record["response"], "text": cut_for_record(response.text),
                                  "text_chars": len(response.text), "text_cut": True}
            for key in ("thinking",):
                if record["response"].get(key):
                    record["response"][key] = cut_for_record(record["response"][key])
        ctx.rundir.append_llm(record)
        return Answer(error=reason, response=response)
    record.update(ok=True)
    ctx.rundir.append_llm(record)
    return Answer(value=value, response=response)
