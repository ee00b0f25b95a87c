"""The `scaffold` generation strategy, for models too small to write a whole service.

The tool writes everything that does not need understanding of the request (scaffold_plan.py, scaffold_render.py):
  * the spec: the curated intent's ServiceSpec, or (intent method "none") the nearest reference's spec renamed
    after the request; when no reference is close, a generic one-endpoint spec;
  * Dockerfile, vibe.yaml and requirements.txt, rendered from templates in assets/scaffold/;
  * myapp.py's structure: imports, Flask app, the nearest reference's support code (constants, in-memory
    state, helper functions such as `luhn_valid`), GET /health, one decorated function per endpoint, the
    main block.
The model writes only the bodies of the handlers (all in one call, or one call each: `mode`), shown a worked
example (the nearest reference's handler for the same endpoint, with its body as the answer), the handlers to
write and the requests they must answer. What it writes is checked without running it (bodies.py): every
handler must return, and every name it uses must be defined. A problem fails the stage with the evidence, and
the pipeline asks again.

Generated code is never executed here; it runs in containers later in the pipeline.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from kubevibe import bank
from kubevibe.bank import RouteHandler
from kubevibe.generation.bodies import BodyError, check_code, normalize_body
from kubevibe.generation.scaffold_plan import MAX_HANDLERS, HandlerPlan, ScaffoldError, ScaffoldPlan, make_plan
from kubevibe.generation.scaffold_render import (
    load_template,
    render_app,
    render_dockerfile,
    render_manifest,
    render_requirements,
    render_template,
    requirements_for,
)
from kubevibe.intent import Intent
from kubevibe.llm.call import ask
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, StageResult

# "batch": one call writes all handler bodies; "per-endpoint": one call per handler. Measured with Gemma 3 270M
# on the bank's requests (3 seeds each, services correct against their test cases in a container): batch
# todo 3/3 and kv-store 3/3, per-endpoint 2/3 and 2/3; equal elsewhere. Each extra call is one more chance for
# a tiny model to lose the thread. A service with one handler gets one call either way.
BodyMode = Literal["batch", "per-endpoint"]
DEFAULT_MODE: BodyMode = "batch"
HANDLER_MAX_TOKENS = 1000
# A body may be at most twice its example plus 200 characters, within these bounds. Gemma 3 270M sometimes
# repeats a line until the token limit; with the bound in the JSON schema the string ends first, the answer
# stays complete JSON, and normalize_body drops the cut last line.
BODY_MIN_LIMIT = 400
BODY_MAX_CHARS = 1500


# -- what the model answers ---------------------------------------------------------------------------------------

class HandlerAnswer(BaseModel):
    """One body. No separate requirements list: the packages a body needs are the ones it imports (see
    requirements_for). Asked for a list, Gemma 3 270M filled it with "python", "python3", ... and lost focus on
    the body."""

    code: str = Field(..., min_length=1, max_length=BODY_MAX_CHARS,
                      description="the Python statements of the function body")


@lru_cache(maxsize=64)
def handler_answer_model(limit: int) -> type[HandlerAnswer]:
    """HandlerAnswer with the body bounded to `limit` characters (the bound goes into the JSON schema)."""
    return create_model("HandlerAnswer", __base__=HandlerAnswer,
                        code=(str, Field(..., min_length=1, max_length=limit)))


class NamedBody(BaseModel):
    function: str = Field(..., max_length=60)
    code: str = Field(..., min_length=1, max_length=BODY_MAX_CHARS)


class HandlersAnswer(BaseModel):
    handlers: list[NamedBody] = Field(..., min_length=1, max_length=MAX_HANDLERS)


# -- the prompts ----------------------------------------------------------------------------------------------------


def _example(plan: ScaffoldPlan, handler: HandlerPlan) -> RouteHandler:
    """The example handler shown to the model: the reference's nearest one, or a generic one."""
    if handler.example is not None:
        return handler.example
    (generic,) = bank.route_handlers(load_template("generic_example.py"))
    return generic


def _signature(method: str, rule: str, function: str, params: list[str]) -> str:
    return f"@app.route({json.dumps(rule, ensure_ascii=False)}, methods=[{json.dumps(method)}])\ndef {function}({', '.join(params)}):"


def body_limit(plan: ScaffoldPlan, handler: HandlerPlan) -> int:
    """How many characters the model may write for this body: twice the example's plus 200, bounded."""
    return max(BODY_MIN_LIMIT, min(BODY_MAX_CHARS, 2 * len(_example(plan, handler).body) + 200))


def render_prompt(plan: ScaffoldPlan, handler: HandlerPlan) -> str:
    """The prompt for one handler body: a worked example (signature and answer), then the task.

    This "example task / example answer / task / answer" shape was measured against a longer prompt that showed
    the example's source, the service and the rules: Gemma 3 270M wrote a usable body in 14 of 15 calls with it
    and in 4 of 15 with the longer one (todo's five handlers, 3 seeds each).
    """
    ex = _example(plan, handler)
    return render_template("handler.j2", example_signature=_signature(ex.method, ex.path, ex.function, ex.params),
                   example_answer=json.dumps({"code": ex.body}),
                   signature=_signature(handler.method, handler.rule, handler.function, handler.params),
                   what=handler.what, cases=handler.cases, available=plan.available)


def render_batch_prompt(plan: ScaffoldPlan) -> str:
    """The prompt for all handler bodies at once (mode "batch"), with every example handler and its answer."""
    examples: dict[str, RouteHandler] = {}
    for h in plan.handlers:
        ex = _example(plan, h)
        examples.setdefault(ex.function, ex)
    answer = json.dumps({"handlers": [{"function": e.function, "code": e.body} for e in examples.values()]})
    return render_template(
        "handlers.j2",
        examples=[{"signature": _signature(e.method, e.path, e.function, e.params)} for e in examples.values()],
        example_answer=answer,
        handlers=[{"signature": _signature(h.method, h.rule, h.function, h.params), "function": h.function,
                   "what": h.what, "cases": h.cases} for h in plan.handlers],
        available=plan.available)


def system_prompt() -> str:
    return load_template("system.j2").strip()


# -- the stage ----------------------------------------------------------------------------------------------------


def _intent(ctx: RunContext) -> Intent:
    if ctx.state.intent:
        return Intent.model_validate(ctx.state.intent)
    return Intent(request=ctx.state.prompt, method="none", text=ctx.state.prompt)


def _failed(summary: str, evidence: list[Evidence], plan: ScaffoldPlan, metrics: dict) -> StageResult:
    return StageResult.failed(summary, evidence=evidence, updates={"reference": plan.reference}, metrics=metrics)


class _Stop(Exception):
    """One body could not be used: the stage fails with this summary and evidence."""

    def __init__(self, summary: str, evidence: Evidence):
        super().__init__(summary)
        self.summary = summary
        self.evidence = evidence


def _count(metrics: dict[str, Any], answer: Any) -> None:
    metrics["llm_calls"] += 1
    if answer.response is not None and answer.response.completion_tokens:
        metrics["completion_tokens"] += answer.response.completion_tokens


def _normalized(text: str, function: str) -> str:
    try:
        return normalize_body(text, function)
    except BodyError as exc:
        raise _Stop(f"scaffold: {exc}", Evidence(kind="finding", title=f"body of {function}", detail=str(exc),
                                                 stdout=text)) from None


def _bodies_per_endpoint(ctx: RunContext, plan: ScaffoldPlan, metrics: dict[str, Any]) -> dict[str, str]:
    bodies = {}
    for h in plan.handlers:
        answer = ask(ctx, "generate", render_prompt(plan, h), handler_answer_model(body_limit(plan, h)),
                     system=system_prompt(), max_tokens=HANDLER_MAX_TOKENS)
        _count(metrics, answer)
        if not answer.ok:
            raise _Stop(f"scaffold: the body of {h.method} {h.rule} was unusable: {answer.error}",
                        Evidence(kind="llm", title=f"body of {h.function}", detail=answer.error or ""))
        bodies[h.function] = _normalized(answer.value.code, h.function)
    return bodies


def _bodies_batch(ctx: RunContext, plan: ScaffoldPlan, metrics: dict[str, Any]) -> dict[str, str]:
    answer = ask(ctx, "generate", render_batch_prompt(plan), HandlersAnswer, system=system_prompt(),
                 max_tokens=min(HANDLER_MAX_TOKENS * len(plan.handlers), 4000))
    _count(metrics, answer)
    if not answer.ok:
        raise _Stop(f"scaffold: the handler bodies were unusable: {answer.error}",
                    Evidence(kind="llm", title="handler bodies", detail=answer.error or ""))
    given = {b.function: b.code for b in answer.value.handlers}
    bodies = {}
    for position, h in enumerate(plan.handlers):
        text = given.get(h.function)
        if text is None and position < len(answer.value.handlers):
            text = answer.value.handlers[position].code  # named wrongly, but in its place
        if text is None:
            raise _Stop(f"scaffold: the model wrote no body for {h.function}",
                        Evidence(kind="llm", title="handler bodies", detail=f"no body for {h.function}"))
        bodies[h.function] = _normalized(text, h.function)
    return bodies


def generate(ctx: RunContext, mode: BodyMode = DEFAULT_MODE) -> StageResult:
    """Generate stage, scaffold strategy: four files, the model writing only the handler bodies (all in one call,
    or one call per handler: `mode`)."""
    started = time.monotonic()
    intent = _intent(ctx)
    try:
        plan = make_plan(intent)
    except ScaffoldError as exc:
        return StageResult.failed(f"scaffold: {exc}", evidence=[Evidence(kind="note", title="scaffold", detail=str(exc))])
    metrics: dict[str, Any] = {"reference": plan.reference, "similarity": plan.similarity, "close": plan.close,
                               "handlers": len(plan.handlers), "llm_calls": 0, "completion_tokens": 0, "mode": mode}
    notes = [Evidence(kind="note", title="scaffold plan", detail="\n".join(plan.notes))] if plan.notes else []
    try:
        if mode == "batch" and len(plan.handlers) > 1:
            bodies = _bodies_batch(ctx, plan, metrics)
        else:
            bodies = _bodies_per_endpoint(ctx, plan, metrics)
    except _Stop as stop:
        metrics["seconds"] = round(time.monotonic() - started, 3)
        return _failed(stop.summary, [*notes, stop.evidence], plan, metrics)
    code = render_app(plan, bodies)
    problems = check_code(code, [h.function for h in plan.handlers])
    metrics["seconds"] = round(time.monotonic() - started, 3)
    if problems:
        return _failed(f"scaffold: {problems[0]}", [*notes, Evidence(kind="finding", title="static check of myapp.py",
                                                                      detail="\n".join(problems), stdout=code)],
                       plan, metrics)
    files = {
        names.CODE: code,
        names.DOCKERFILE: render_dockerfile(plan.spec),
        names.MANIFEST: render_manifest(plan.spec),
        names.REQUIREMENTS: render_requirements(requirements_for(plan.spec, code)),
    }
    count = len(plan.handlers)
    summary = (f"scaffolded {plan.spec.name} from the reference {plan.reference} (similarity {plan.similarity:.2f}); "
               f"the model wrote {count} handler bod{'y' if count == 1 else 'ies'}")
    # The files were built to plan.spec: record it as the intent's spec, so Connect checks its test cases.
    if intent.spec is not None:
        spec_from = intent.spec_from or "intent"
    else:  # a close reference lends its spec; otherwise the spec is a generic one whose only test is /health
        spec_from = f"reference:{plan.reference}" if plan.close else "generic"
    built_to = intent.model_copy(update={"spec": plan.spec, "spec_from": spec_from})
    return StageResult.ok(summary, artifacts=ArtifactSet(files=files),
                          updates={"reference": plan.reference, "intent": built_to.model_dump()},
                          evidence=notes, metrics=metrics)
