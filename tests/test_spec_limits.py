"""Small models' specs stay small and about the request (issue 18): bounded schema, repeats dropped, relevance."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from kubevibe.intent import Endpoint, ServiceSpec, TestCase
from kubevibe.llm.parse import repeated_tail, runaway
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunContext, RunState
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings
from kubevibe.spec_limits import COMPACT, WIDE, limits_for, spec_schema, tidy_spec, unrelated_to_request
from kubevibe.stages import intent

PRIME = "Develop a microservice that checks whether a number is prime"


def health_spec(n: int) -> dict:
    """The runaway the bundled model wrote: named `health`, n health endpoints and tests, nothing of the request."""
    return {"name": "health", "description": "A health service",
            "endpoints": [{"method": "POST", "path": f"/health/health/api{i}"} for i in range(n)],
            "test_cases": [{"name": "health", "method": "GET", "path": "/health"} for _ in range(n)]}


def prime_spec() -> dict:
    return {"name": "prime-checker", "description": "Says whether a number is prime",
            "endpoints": [{"method": "GET", "path": "/health"}, {"method": "POST", "path": "/is-prime"}],
            "test_cases": [{"name": "seven", "method": "POST", "path": "/is-prime", "body": {"number": 7},
                            "expected_status": 200, "expected_json": {"prime": True}}]}


def test_compact_schema_rejects_more_than_its_bounds_and_wide_allows_them():
    big = health_spec(16)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(big, spec_schema(COMPACT))
    jsonschema.validate(big, spec_schema(WIDE))
    jsonschema.validate(prime_spec(), spec_schema(COMPACT))
    long_path = {**prime_spec(), "endpoints": [{"method": "GET", "path": "/" + "x" * 500}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(long_path, spec_schema(COMPACT))


def test_every_string_and_list_of_the_compact_schema_is_bounded():
    schema = spec_schema(COMPACT)
    nodes = [schema, *schema["$defs"].values()]
    for node in nodes:
        for name, prop in node["properties"].items():
            if prop.get("type") == "string":
                assert "maxLength" in prop, name
            if prop.get("type") == "array":
                assert "maxItems" in prop, name


def test_tidy_drops_repeats_and_cuts_to_the_bounds():
    spec = ServiceSpec(name="x", endpoints=[Endpoint(method="get", path="/a"), Endpoint(method="GET", path="/a/")]
                       + [Endpoint(path=f"/p{i}") for i in range(10)],
                       test_cases=[TestCase(path="/a")] * 3)
    tidy, notes = tidy_spec(spec, COMPACT)
    assert [e.path for e in tidy.endpoints] == ["/a", "/p0", "/p1", "/p2", "/p3", "/p4"]
    assert len(tidy.test_cases) == 1
    assert any("repeated endpoints" in n for n in notes) and any("repeated test cases" in n for n in notes)
    assert any("first 6" in n for n in notes)
    assert len(spec.endpoints) == 12  # the model's answer itself is not changed


@pytest.mark.parametrize("request_text,spec,related", [
    (PRIME, health_spec(3), False),
    (PRIME, prime_spec(), True),
    ("Make a service with only a health check endpoint", health_spec(1), True),
    ("Develop a credit card validation microservice",
     {"name": "card-checker", "endpoints": [{"method": "POST", "path": "/validate"}]}, True),
    ("Build a todo list REST API", {"name": "svc", "endpoints": [{"method": "GET", "path": "/todos"}]}, True),
    ("Build a todo list REST API", {"name": "svc", "endpoints": [{"method": "GET", "path": "/greeting"}]}, False),
    ("Build an API that returns JSON", {"name": "svc", "endpoints": [{"method": "GET", "path": "/x"}]}, True),
])
def test_a_spec_must_be_about_the_request(request_text, spec, related):
    reason = unrelated_to_request(ServiceSpec.model_validate(spec), request_text)
    assert (reason is None) == related, reason
    if reason:
        assert "not about the request" in reason and spec["name"] in reason


def test_a_spec_named_right_but_without_endpoints_is_told_what_is_missing():
    """The bundled model wrote `credit-card-validator` with no endpoints: the reason must not claim the name is off
    (the retry is shown it), it must say the endpoints are missing."""
    spec = ServiceSpec.model_validate({"name": "credit-card-validator", "endpoints": []})
    reason = unrelated_to_request(spec, "Develop a credit card validation microservice")
    assert reason and "no endpoint for what the request asks" in reason and "not about" not in reason
    only_health = ServiceSpec.model_validate({"name": "card", "endpoints": [{"method": "GET", "path": "/health"}]})
    assert "health checks only" in unrelated_to_request(only_health, "Develop a credit card validation microservice")


def test_repeated_tail_spots_a_generation_going_round_in_circles():
    assert repeated_tail('{"endpoints": [' + '{"method": "GET", "path": "/health"}, ' * 12 + '{"meth')
    assert not repeated_tail(json.dumps(prime_spec()))
    assert not repeated_tail("")


def test_limits_follow_the_strategy():
    assert limits_for("scaffold") is COMPACT and limits_for("full") is WIDE and limits_for(None) is WIDE


def ctx_for(tmp_path, answers, strategy, intent_method="json-with-required"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = write_replay_log(tmp_path / "answers.jsonl", answers)
    settings = Settings(runs_dir=tmp_path / "runs", llm=f"replay:{log}", intent_method=intent_method)
    llm = ReplayClient.from_settings(str(log), settings)
    rundir = RunDir.create(settings.runs_dir, llm.model)
    ctx = RunContext(settings=settings, rundir=rundir, llm=llm, state=RunState(prompt=PRIME, strategy=strategy),
                     artifacts=ArtifactSet(), run_id=rundir.run_id, deadline=time.monotonic() + 60)
    ctx.step, ctx.stage = 1, State.INTENT
    return ctx


def test_compact_intent_refuses_an_unrelated_spec_and_the_retry_is_told_why(tmp_path):
    ctx = ctx_for(tmp_path, [("intent", json.dumps(health_spec(16))), ("intent", json.dumps(prime_spec()))],
                  "scaffold")
    first = intent.run(ctx)
    assert first.outcome == Outcome.FAILED
    assert "not about the request" in first.summary
    call = ctx.rundir.read_jsonl("llm.jsonl")[0]
    assert call["request"]["max_tokens"] <= 1200  # a compact intent call is capped
    # What the runner would record before Intent is entered again:
    ctx.state.last_failure = {"stage": "INTENT", "summary": first.summary}
    ctx.step = 2
    second = intent.run(ctx)
    assert second.outcome == Outcome.OK, second.summary
    assert second.updates["intent"]["spec"]["name"] == "prime-checker"
    retry_prompt = ctx.rundir.read_jsonl("llm.jsonl")[1]["request"]["prompt"]
    assert "not about the request" in retry_prompt and "at most 6 endpoints" in retry_prompt


def test_wide_intent_keeps_a_capable_models_spec(tmp_path):
    ctx = ctx_for(tmp_path, [("intent", json.dumps(health_spec(3)))], "full")
    result = intent.run(ctx)
    assert result.outcome == Outcome.OK  # no relevance check for capable models (language, wording vary)
    assert len(result.updates["intent"]["spec"]["test_cases"]) == 1  # repeats are dropped for every model
    assert "repeated test cases" in result.summary


@pytest.mark.parametrize("method, answer", [
    ("only-json-as-format", json.dumps({"service": "prime checker", "endpoint": "POST /is-prime"})),
    ("curated-llm-zero-shot", json.dumps({"description": "A service that tells whether a number is prime."})),
])
def test_every_intent_method_is_capped_for_small_models(tmp_path, method, answer):
    for strategy, capped in (("scaffold", True), ("full", False)):
        ctx = ctx_for(tmp_path / strategy, [("intent", answer)], strategy, intent_method=method)
        assert intent.run(ctx).outcome == Outcome.OK
        sent = ctx.rundir.read_jsonl("llm.jsonl")[0]["request"]["max_tokens"]
        assert (sent <= 1200) is capped, (strategy, sent)


def test_runaway_stops_a_generation_going_round_in_circles_and_nothing_regular():
    loop = '{"endpoints": [' + '{"method": "GET", "path": "/health"}, ' * 9
    assert runaway(loop) and runaway(loop + '{"meth')  # a cut last copy still counts
    assert runaway("x" + "health check " * 40)
    assert not runaway('{"endpoints": [' + '{"method": "GET", "path": "/health"}, ' * 4)  # a few repeats: regular
    assert not runaway(json.dumps(prime_spec(), indent=2)) and not runaway("")
    # Many similar but different items (a legit answer) are not a loop.
    assert not runaway(json.dumps([{"name": f"case {i}", "path": f"/items/{i}"} for i in range(40)]))
    prose = ("A service that checks whether a number is prime. It accepts a JSON body with the number, answers "
             "with true or false, and refuses anything that is not a whole number with status 400. ") * 3
    assert not runaway(prose)  # a paragraph said three times is odd, not a loop worth cutting
