"""Intent: turn the user's request into what generation is asked to build, by one of the five methods.

Methods (the reference tool's names):
  none                   the request as it is
  curated-llm-zero-shot  the LLM rewrites the request as a precise description
  curated-llm-few-shot   the same, shown descriptions of the nearest reference deployments as examples
  only-json-as-format    the LLM describes the service as free-form JSON
  json-with-required     the LLM writes a ServiceSpec (required fields, endpoints, test cases)

IVAL_METHOD=llm-as-a-judge scores the curated intent; a rejection feeds the judge's rationale back into
curation, at most `max_judge_retries` times. After that the best-scored intent is used, and the verdict is
recorded (the judge advises; it never stops a run on its own).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubevibe import prompts
from kubevibe.intent import Intent, ServiceSpec, lenient_slo
from kubevibe.slo import SLO, extracted_slo
from kubevibe.llm.call import ask
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.pipeline.fsm import Outcome
from kubevibe.spec_limits import INTENT_MAX_TOKENS, limits_for, spec_schema, tidy_spec, unrelated_to_request

JUDGE_THRESHOLD = 7


class CuratedDescription(BaseModel):
    description: str = Field(..., min_length=1)
    slo: SLO | None = Field(None, description="service-level objectives the request states, else null")

    _slo = field_validator("slo", mode="wrap")(lenient_slo)


class FreeFormJSON(BaseModel):
    model_config = ConfigDict(extra="allow")


class JudgeVerdict(BaseModel):
    score: float = Field(..., ge=0, le=10)
    approved: bool
    rationale: str = ""


def run(ctx: RunContext) -> StageResult:
    result = _make_intent(ctx)
    if result.outcome == Outcome.OK and ctx.state.test_writer is None:
        _write_acceptance_tests(ctx, result)
    return result


def _write_acceptance_tests(ctx: RunContext, result: StageResult) -> None:
    """The test writer runs once, after the intent exists and before any code does (kubevibe.acceptance.writer)."""
    from kubevibe.acceptance import writer

    on, why = writer.enabled(ctx)
    if not on:
        result.updates["test_writer"] = {"off": why}
        return
    intent_before = ctx.state.intent
    ctx.state.intent = result.updates.get("intent", intent_before)  # the writer sees the new intent
    try:
        record, evidence = writer.write_tests(ctx)
    finally:
        ctx.state.intent = intent_before  # the runner applies the updates
    result.updates["test_writer"] = record
    result.evidence.extend(evidence)
    result.summary += (f"; test writer: {record['tests']} acceptance tests" if record.get("tests")
                       else "; test writer: no usable tests")


def _make_intent(ctx: RunContext) -> StageResult:
    method = ctx.settings.intent_method
    request = ctx.state.prompt
    if method == "none":
        intent = Intent(request=request, method=method, text=request)
        return StageResult.ok("request used as the intent (INTENT_METHOD=none)", updates={"intent": intent.model_dump()})

    feedback = ""
    best: tuple[float, Intent] | None = None
    evidence: list[Evidence] = []
    judging = ctx.settings.ival_method == "llm-as-a-judge"
    attempts = 1 + (ctx.settings.max_judge_retries if judging else 0)
    for attempt in range(attempts):
        intent, error = _curate(ctx, method, request, feedback)
        if intent is None:
            evidence.append(Evidence(kind="llm", title=f"curation attempt {attempt + 1} failed", detail=error or ""))
            if best is None:
                # Without any usable intent there is nothing to judge: fail, the table retries Intent.
                return StageResult.failed(f"intent curation failed: {error}", evidence=evidence)
            break
        if not judging:
            return StageResult.ok(_summary(intent), updates={"intent": intent.model_dump()})
        verdict, error = _judge(ctx, request, intent)
        if verdict is None:
            evidence.append(Evidence(kind="llm", title="the judge's answer was unusable", detail=error or ""))
            intent.judge = {"error": error}
            best = best or (-1.0, intent)
            break
        intent.judge = verdict.model_dump() | {"attempt": attempt + 1}
        if best is None or verdict.score > best[0]:
            best = (verdict.score, intent)
        evidence.append(Evidence(kind="llm", title=f"judge: score {verdict.score:g}, approved={verdict.approved}",
                                 detail=verdict.rationale))
        if verdict.approved:
            break
        feedback = verdict.rationale or "The description was not precise or faithful enough."
    assert best is not None
    chosen = best[1]
    note = ""
    if judging and not (chosen.judge or {}).get("approved"):
        note = " (the judge did not approve any curation; the best-scored one is used)"
    return StageResult.ok(_summary(chosen) + note, evidence=evidence, updates={"intent": chosen.model_dump()})


def _summary(intent: Intent) -> str:
    if intent.spec:
        notes = f" ({'; '.join(intent.notes)})" if intent.notes else ""
        return (f"service spec {intent.spec.name!r}: {len(intent.spec.endpoints)} endpoints, "
                f"{len(intent.spec.test_cases)} test cases{notes}")
    return f"curated intent ({intent.method}, {len(intent.text)} characters)"


def _curate(ctx: RunContext, method: str, request: str, feedback: str) -> tuple[Intent | None, str | None]:
    # Only the few-shot method shows examples: the methods must stay distinct for comparisons between them.
    examples = _examples(request) if method == "curated-llm-few-shot" else ""
    if method in ("curated-llm-zero-shot", "curated-llm-few-shot"):
        prompt = prompts.render("intent_curate.j2", request=request, examples=examples, feedback=feedback)
        answer = ask(ctx, "intent", prompt, CuratedDescription, system=prompts.render("system.j2"),
                     max_tokens=_intent_max_tokens(ctx))
        if not answer.ok:
            return None, answer.error
        slo = answer.value.slo.model_dump(mode="json") if answer.value.slo else None
        return Intent(request=request, method=method, text=answer.value.description.strip(), slo=slo), None
    if method == "only-json-as-format":
        prompt = prompts.render("intent_json.j2", request=request, feedback=feedback)
        answer = ask(ctx, "intent", prompt, FreeFormJSON, system=prompts.render("system.j2"),
                     max_tokens=_intent_max_tokens(ctx))
        if not answer.ok:
            return None, answer.error
        data: dict[str, Any] = answer.value.model_dump()
        if not data:
            return None, "The answer was an empty JSON object."
        text = "Build the service described by this JSON:\n" + json.dumps(data, indent=2)
        found = extracted_slo({"slo": data.get("slo")})
        return Intent(request=request, method=method, text=text,
                      slo=found.model_dump(mode="json") if found else None), None
    if method == "json-with-required":
        limits = limits_for(ctx.state.strategy)
        prompt = prompts.render("intent_spec.j2", request=request, feedback=feedback or _previous_failure(ctx),
                                limits=limits if limits.check_relevance else None)
        answer = ask(ctx, "intent", prompt, ServiceSpec, system=prompts.render("system.j2"),
                     schema=spec_schema(limits),
                     max_tokens=_intent_max_tokens(ctx))
        if not answer.ok:
            return None, answer.error
        spec, notes = tidy_spec(answer.value, limits)
        if limits.check_relevance:
            unrelated = unrelated_to_request(spec, request)
            if unrelated:
                return None, unrelated
        slo = spec.slo.model_dump(mode="json") if spec.slo else None
        intent = Intent(request=request, method=method, text=spec.description or request, spec=spec, slo=slo)
        intent.notes = notes
        return intent, None
    raise AssertionError(f"unhandled intent method {method}")  # settings validation admits only the five


def _intent_max_tokens(ctx: RunContext) -> int | None:
    """Every intent method's call is capped for small models (the scaffold strategy): a 270M model asked for free
    JSON wrote until the 2,048-token cap, the same lines over and over (125 s on 2 cores). None: the usual limit."""
    return min(ctx.settings.max_tokens, INTENT_MAX_TOKENS) if limits_for(ctx.state.strategy).check_relevance else None


def _previous_failure(ctx: RunContext) -> str:
    """Why the last Intent attempt failed, so that a retry is told (the table re-enters Intent after a failure)."""
    last = ctx.state.last_failure or {}
    return last.get("summary", "") if last.get("stage") == "INTENT" else ""


def _examples(request: str) -> str:
    from kubevibe import bank

    return bank.few_shot_block([ref for ref, _score in bank.nearest(request, k=2)])


def _judge(ctx: RunContext, request: str, intent: Intent) -> tuple[JudgeVerdict | None, str | None]:
    prompt = prompts.render("judge.j2", request=request, intent=intent.for_prompt(), threshold=JUDGE_THRESHOLD)
    answer = ask(ctx, "judge", prompt, JudgeVerdict, system=prompts.render("system.j2"))
    if not answer.ok:
        return None, answer.error
    verdict = answer.value
    # The model's own "approved" can contradict its score; the threshold decides, consistently across models.
    verdict.approved = verdict.score >= JUDGE_THRESHOLD
    return verdict, None
