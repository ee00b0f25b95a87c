"""The test writer: a separate LLM call, before Generate, that turns the request (and the curated intent) into
acceptance tests of the observable contract. The tests are frozen before any code exists.

It may use another model than the generator (`--test-llm`, `--test-model`: an independent judge). It is off for
the embedded model by default: a 270M model cannot write meaningful tests (it copies the prompt's examples), so
its tests would make a run look verified when it is not. The model answers structured test cases (schema-
constrained), which KubeVibe turns into Tavern; it never writes YAML that Tavern would run as given.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kubevibe import prompts
from kubevibe.acceptance import sources
from kubevibe.acceptance.tavern_file import TavernFileError, cases_to_tavern, check_untrusted, load_tests
from kubevibe.intent import TestCase
from kubevibe.llm.call import ask
from kubevibe.pipeline.context import Evidence, RunContext

MAX_TESTS = 8
PURPOSE = "test-writer"


class WrittenTests(BaseModel):
    tests: list[TestCase] = Field(..., min_length=1, max_length=2 * MAX_TESTS)


def enabled(ctx: RunContext) -> tuple[bool, str]:
    """Whether the test writer runs in this run, and why."""
    s = ctx.settings
    if s.tests is not None:
        return False, "acceptance tests were given (--tests)"
    if s.test_writer is not None:
        return s.test_writer, "--test-writer" if s.test_writer else "--no-test-writer"
    backend = (s.test_llm or "").split(":")[0] if s.test_llm else ctx.llm.backend
    if backend == "embedded":
        return False, "off for the embedded model: it cannot write meaningful tests"
    if ctx.llm.backend == "replay" and not s.test_llm:
        # A replayed run takes the recorded path: the writer runs only if the recorded run asked it.
        records = getattr(ctx.llm, "records", [])
        recorded = any(r.purpose == PURPOSE for r in records)  # record.schema.LLMCallRecord
        return recorded, "the replayed run " + ("had" if recorded else "had no") + " test writer"
    return True, "on by default"


def write_tests(ctx: RunContext) -> tuple[dict[str, Any], list[Evidence]]:
    """Ask for tests; returns (RunState.test_writer record, evidence). Never fails the stage that calls it:
    without usable tests the run falls back to the next source (and its verdict says so)."""
    client, owned = _client(ctx)
    intent = ctx.state.intent or {}
    text = intent.get("text") if intent.get("method") not in (None, "none") else None
    prompt = prompts.render("test_writer.j2", request=ctx.state.prompt, intent=text, max_tests=MAX_TESTS)
    try:
        answer = ask(ctx, PURPOSE, prompt, WrittenTests, client=client)
    finally:
        if owned:
            client.close()
    model = f"{client.backend} {client.model}"
    if not answer.ok:
        return ({"error": answer.error, "model": model},
                [Evidence(kind="llm", title="the test writer's answer was unusable", detail=answer.error or "")])
    cases = answer.value.tests[:MAX_TESTS]
    tavern = cases_to_tavern(cases, f"written by the test writer ({model}) before any code existed")
    try:
        check_untrusted(load_tests(tavern, trusted=False))  # our conversion; checked like any untrusted file
    except TavernFileError as exc:
        return {"error": str(exc), "model": model}, [Evidence(kind="llm", title="test writer refused", detail=str(exc))]
    sources.write_frozen(ctx.rundir.path, tavern, sources.WRITER_FILE)
    return {"tests": len(cases), "model": model, "file": sources.WRITER_FILE}, []


def _client(ctx: RunContext):
    s = ctx.settings
    if not s.test_llm and not s.test_model:
        return ctx.llm, False
    from kubevibe.llm.resolve import make_client

    values = s.model_dump()
    values.update(llm=s.test_llm or s.llm, model=s.test_model or (s.model if not s.test_llm else None))
    client, _ = make_client(type(s).model_validate(values))
    return client, True
