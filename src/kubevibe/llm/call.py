"""One logged LLM call: send, record in llm.jsonl, parse and validate. The only way stages talk to a model."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.parse import AnswerError, parse_answer

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext

T = TypeVar("T", bound=BaseModel)


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
        max_tokens: int | None = None, client: "LLMClient | None" = None) -> Answer[T]:
    """client: another model than the run's (the test writer's); default ctx.llm."""
    s = ctx.settings
    llm = client or ctx.llm
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
    )
    started = time.monotonic()
    record: dict = {
        "time": datetime.now(timezone.utc).isoformat(),
        "step": ctx.step,
        "stage": str(ctx.stage) if ctx.stage else None,
        "purpose": purpose,
        "backend": llm.backend,
        "model": llm.model,
        "request": request.model_dump(exclude={"json_schema"}),
        "schema": model.__name__,
    }
    try:
        response = llm.complete(request)
    except LLMCallError as exc:
        record.update(ok=False, error=str(exc), duration_s=round(time.monotonic() - started, 3))
        ctx.rundir.append_llm(record)
        return Answer(error=f"The LLM call failed: {exc}")
    record["response"] = response.model_dump()
    try:
        value = parse_answer(response.text, model)
    except AnswerError as exc:
        reason = str(exc)
        if response.finish_reason == "length":
            reason += f" The model stopped at the token limit ({request.max_tokens})."
        record.update(ok=False, error=reason)
        ctx.rundir.append_llm(record)
        return Answer(error=reason, response=response)
    record.update(ok=True)
    ctx.rundir.append_llm(record)
    return Answer(value=value, response=response)
