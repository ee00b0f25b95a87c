"""The scaffold strategy: planning, rendering, checking model answers, and the Generate contract.

Generated code is only parsed here (ast/symtable), never run. The in-process runs below execute the bank's own
handler bodies inside the rendered skeleton: KubeVibe's shipped code, trusted. Model-written code is run only
in containers, by the pipeline (and by the measurement described in kubevibe/generation/scaffold.py).
"""

from __future__ import annotations

import ast
import json
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers import load_trusted_app

from kubevibe import bank
from kubevibe.generation import bodies as body_checks
from kubevibe.generation import scaffold, scaffold_plan, scaffold_render
from kubevibe.intent import Intent, ServiceSpec
from kubevibe.llm.replay import ReplayClient, write_replay_log
from kubevibe.manifests import service_label
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunContext, RunState
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings

CC = "Develop a credit card validation microservice"
CC_BODY = bank.get_reference("credit-card").handlers()[1].body  # the reference's own /validate body


def intent_none(request: str) -> Intent:
    return Intent(request=request, method="none", text=request)


def make_ctx(tmp_path: Path, llm, request: str = CC, intent: Intent | None = None, **overrides) -> RunContext:
    settings = Settings(runs_dir=tmp_path / "runs", llm="embedded", **overrides)
    rundir = RunDir.create(settings.runs_dir, llm.model)
    state = RunState(prompt=request, intent=(intent or intent_none(request)).model_dump(), strategy="scaffold")
    ctx = RunContext(settings=settings, rundir=rundir, llm=llm, state=state, artifacts=ArtifactSet(),
                     run_id=rundir.run_id, deadline=time.monotonic() + 600)
    ctx.step, ctx.stage = 2, State.GENERATE
    return ctx


def replay_ctx(tmp_path: Path, answers: list[str], request: str = CC, intent: Intent | None = None) -> RunContext:
    """A context whose model answers are canned (kubevibe.llm.replay), in order."""
    log = write_replay_log(tmp_path / "answers.jsonl", [("generate", a) for a in answers])
    return make_ctx(tmp_path, ReplayClient.from_settings(str(log), Settings(llm=f"replay:{log}")), request, intent)


# -- pure helpers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "rule"), [
    ("/validate", "/validate"),
    ("validate", "/validate"),
    ("/todos/{id}", "/todos/<id>"),
    ("/todos/:id", "/todos/<id>"),
    ("/todos/<int:todo_id>", "/todos/<int:todo_id>"),
    ("/items/{item-id}/parts", "/items/<item_id>/parts"),
    ("/echo?message=hi", "/echo"),
    ("/a b", None),
    ("//x", None),
])
def test_flask_rule(path, rule):
    assert scaffold_plan.flask_rule(path) == rule


def test_rule_params_and_regex():
    assert scaffold_plan.rule_params("/todos/<int:todo_id>/tags/<tag>") == ["todo_id", "tag"]
    pattern = scaffold_plan.rule_regex("/todos/<int:todo_id>")
    assert pattern.fullmatch("/todos/12") and not pattern.fullmatch("/todos/x")
    assert scaffold_plan.rule_regex("/kv/<key>").fullmatch("/kv/color")


def test_function_names_are_unique_identifiers():
    taken: set[str] = {"get_todos"}
    assert scaffold_plan.function_name("GET", "/todos", taken) == "get_todos_2"
    assert scaffold_plan.function_name("GET", "/todos/<int:todo_id>", taken) == "get_todos_by_todo_id"
    assert scaffold_plan.function_name("GET", "/", taken) == "get_root"
    assert scaffold_plan.function_name("POST", "/v1/check-card", taken) == "post_v1_check_card"


def test_names():
    assert scaffold_plan.name_from_request(CC, "x") == "credit-card-validation"
    assert scaffold_plan.name_from_request("Develop a microservice", "fallback") == "fallback"
    assert service_label("My_Service!! v2") == "my-service-v2"
    assert service_label("42") == "service"
    assert len(service_label("a" * 80)) == 40


# -- planning -----------------------------------------------------------------------------------------------------


def test_plan_for_a_request_close_to_a_reference():
    plan = scaffold_plan.make_plan(intent_none(CC))
    assert (plan.reference, plan.close) == ("credit-card", True)
    assert plan.spec.name == "credit-card-validation"
    assert plan.spec.test_cases == bank.get_reference("credit-card").spec.test_cases
    (handler,) = plan.handlers
    assert (handler.method, handler.rule, handler.function, handler.params) == ("POST", "/validate", "post_validate", [])
    assert handler.example is not None and handler.example.function == "validate"
    assert len(handler.cases) == 6 and all(c.startswith("POST /validate") for c in handler.cases)
    assert "def luhn_valid(number):" in plan.support
    assert "luhn_valid(number)" in plan.available and "request" in plan.available


def test_plan_takes_the_intents_spec():
    spec = ServiceSpec(name="Card Checker", description="checks cards", endpoints=[
        {"method": "get", "path": "/health"}, {"method": "post", "path": "/check/{kind}"},
        {"method": "FETCH", "path": "/x"}])
    plan = scaffold_plan.make_plan(Intent(request=CC, method="json-with-required", text=CC, spec=spec))
    assert plan.spec.name == "card-checker"
    assert [(h.method, h.rule, h.params) for h in plan.handlers] == [("POST", "/check/<kind>", ["kind"])]
    assert any("FETCH" in n for n in plan.notes)


def test_plan_for_an_unrelated_request_is_generic():
    plan = scaffold_plan.make_plan(intent_none("resize images and convert them to webp"))
    assert not plan.close and plan.support == "" and plan.imports == []
    assert [(h.method, h.rule) for h in plan.handlers] == [("POST", "/resize")]
    assert plan.handlers[0].example is None
    assert "greet" in scaffold.render_prompt(plan, plan.handlers[0])  # the generic example


def test_health_only_needs_no_handler():
    assert scaffold_plan.make_plan(intent_none("a service that only has a health check")).handlers == []


@pytest.mark.parametrize("ref", bank.load_bank(), ids=[r.name for r in bank.load_bank()])
def test_skeleton_with_the_references_own_bodies_passes_its_test_cases(ref, tmp_path):
    """The tool's part is right: the rendered skeleton plus the bank's handler bodies is a working service."""
    plan = scaffold_plan.make_plan(intent_none(ref.requests[0]))
    assert plan.reference == ref.name
    bodies = {h.function: textwrap.indent(h.example.body, "    ") for h in plan.handlers}
    code = scaffold_render.render_app(plan, bodies)
    assert body_checks.check_code(code, list(bodies)) == []
    assert bank.check_flask_app(load_trusted_app(code, tmp_path), plan.spec.test_cases) == []


def test_prompts_show_the_example_and_the_task():
    plan = scaffold_plan.make_plan(intent_none(CC))
    prompt = scaffold.render_prompt(plan, plan.handlers[0])
    assert 'def validate():\nExample answer:\n{"code": "data = request.get_json(silent=True)' in prompt
    assert '@app.route("/validate", methods=["POST"])\ndef post_validate():' in prompt
    assert 'POST /validate with JSON {"card_number": "4539578763621486"} -> HTTP 200' in prompt
    assert prompt.rstrip().endswith("Answer:")
    todo = scaffold_plan.make_plan(intent_none("Create a todo list REST API with CRUD operations"))
    batch = scaffold.render_batch_prompt(todo)
    assert batch.count("def ") == 2 * len(todo.handlers)
    example = json.loads(batch.split("Example answer:\n")[1].split("\n")[0])
    assert [h["function"] for h in example["handlers"]] == [h.example.function for h in todo.handlers]


def test_body_limit_follows_the_example():
    plan = scaffold_plan.make_plan(intent_none(CC))
    assert scaffold.body_limit(plan, plan.handlers[0]) == 2 * len(CC_BODY) + 200
    schema = scaffold.handler_answer_model(500).model_json_schema()
    assert schema["properties"]["code"]["maxLength"] == 500 and schema["required"] == ["code"]


# -- rendering ----------------------------------------------------------------------------------------------------


def test_manifest_and_dockerfile_fall_back_on_unusable_spec_values():
    spec = ServiceSpec(name="x", base_image="ubuntu:latest; rm -rf /",
                       resources={"cpu": "half a core", "memory": "64Mi", "cpu_limit": "1", "memory_limit": "1Gi"})
    assert scaffold_render.render_dockerfile(spec).startswith("FROM python:3.11-slim\n")
    assert scaffold_render.render_dockerfile(ServiceSpec(name="x", base_image="python:3.12-slim")).startswith(
        "FROM python:3.12-slim\n")
    deployment, service = yaml.safe_load_all(scaffold_render.render_manifest(spec))
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    assert service["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}


def test_requirements():
    spec = ServiceSpec(name="x", dependencies=["Flask", "requests==2.32.3", "json", "rm -rf /", "numpy",
                                               "NumPy", "pyyaml"])
    code = "import os\nimport yaml\nfrom PIL import Image\nimport requests\n"
    assert scaffold_render.requirements_for(spec, code) == ["flask==3.1.3", "requests==2.32.3", "numpy", "pyyaml",
                                                     "Pillow"]
    assert scaffold_render.render_requirements(["flask==3.1.3", "numpy"]) == "flask==3.1.3\nnumpy\n"


# -- checking model answers (compile-only) ------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    "data = request.get_json()\nreturn jsonify(data)",
    "    data = request.get_json()\n    return jsonify(data)",
    "data = request.get_json()\n    return jsonify(data)",  # first line flush, the rest indented
    "```python\ndata = request.get_json()\nreturn jsonify(data)\n```",
    "data = request.get_json()\\nreturn jsonify(data)",  # newlines written as \n
    "@app.route('/v', methods=['POST'])\ndef post_v():\n    data = request.get_json()\n    return jsonify(data)",
    "def whatever():\n\tdata = request.get_json()\n\treturn jsonify(data)",
])
def test_normalize_body_accepts_the_usual_shapes(answer):
    assert body_checks.normalize_body(answer, "post_v") == "    data = request.get_json()\n    return jsonify(data)"


def test_normalize_body_keeps_helpers_the_model_wrote_around_the_handler():
    answer = "import re\n\ndef helper(x):\n    return x * 2\n\n@app.post('/v')\ndef post_v():\n    return jsonify(helper(2))"
    body = body_checks.normalize_body(answer, "post_v")
    assert body.startswith("    import re\n    def helper(x):\n        return x * 2\n")
    assert body.endswith("    return jsonify(helper(2))")


def test_normalize_body_drops_a_last_line_cut_by_the_length_bound():
    answer = "x = 1\nreturn jsonify(x=x)\nreturn jsonify(x="
    assert body_checks.normalize_body(answer, "f") == "    x = 1\n    return jsonify(x=x)"


@pytest.mark.parametrize(("answer", "reason"), [
    ("", "empty"),
    ("pass", "does nothing"),
    ("The Python statements of the function body", "not valid Python"),
    ("if x:\nreturn 1\nelse", "not valid Python"),
    ("python", "never returns"),
])
def test_normalize_body_refuses(answer, reason):
    with pytest.raises(body_checks.BodyError, match=reason):
        body_checks.normalize_body(answer, "f")


def test_check_code_finds_what_would_fail_at_run_time():
    good = "from flask import jsonify\n\ndef helper():\n    return 1\n\ndef h(n):\n    total = [i for i in range(n)]\n" \
           "    return jsonify(total=total, one=helper(), n=len(str(n)))\n"
    assert body_checks.check_code(good, ["h"]) == []
    assert "never returns" in body_checks.check_code("def h():\n    x = 1\n", ["h"])[0]
    assert "'luhn_check', which is not defined" in body_checks.check_code(
        "def h(n):\n    return luhn_check(n)\n", ["h"])[0]
    assert "does not parse" in body_checks.check_code("def h(:\n", ["h"])[0]
    assert "missing" in body_checks.check_code("x = 1\n", ["h"])[0]
    assert body_checks.undefined_names("def f():\n    def g():\n        return y\n    return g\n") == [("f", "y")]


# -- the Generate contract, with canned model answers (kubevibe.llm.replay) -----------------------------------


def test_generate_with_a_replayed_answer_gives_the_four_files(tmp_path):
    ctx = replay_ctx(tmp_path, [json.dumps({"code": CC_BODY})])
    result = scaffold.generate(ctx)
    assert result.outcome == Outcome.OK, result.summary
    files = result.artifacts.files
    assert set(files) == set(names.FILES)
    assert result.updates["reference"] == "credit-card"
    # the spec the files were built to becomes the intent's, so Connect checks the reference's test cases
    built_to = result.updates["intent"]
    assert built_to["spec_from"] == "reference:credit-card"
    assert built_to["spec"]["test_cases"] and built_to["request"] == "Develop a credit card validation microservice"
    plan = scaffold_plan.make_plan(intent_none(CC))
    assert files[names.DOCKERFILE] == scaffold_render.render_dockerfile(plan.spec)
    assert files[names.MANIFEST] == scaffold_render.render_manifest(plan.spec)
    assert files[names.REQUIREMENTS] == "flask==3.1.3\n"
    tree = ast.parse(files[names.CODE])
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == [
        "luhn_valid", "card_brand", "health", "post_validate"]
    assert result.metrics["llm_calls"] == 1 and result.metrics["handlers"] == 1
    (call,) = ctx.rundir.read_jsonl("llm.jsonl")
    assert call["purpose"] == "generate" and call["ok"] is True and call["schema"] == "HandlerAnswer"
    assert "def post_validate():" in call["request"]["prompt"]


def test_generate_fails_with_evidence_when_a_body_does_not_parse(tmp_path):
    ctx = replay_ctx(tmp_path, [json.dumps({"code": "The Python statements of the function body"})])
    result = scaffold.generate(ctx)
    assert result.outcome == Outcome.FAILED
    assert "not valid Python" in result.summary
    finding = result.evidence[-1]
    assert finding.kind == "finding" and "The Python statements" in finding.stdout
    assert result.updates == {"reference": "credit-card"}


def test_generate_fails_when_a_body_uses_an_undefined_helper(tmp_path):
    ctx = replay_ctx(tmp_path, [json.dumps({"code": "return jsonify(valid=luhn_check(request.json['n']))"})])
    result = scaffold.generate(ctx)
    assert result.outcome == Outcome.FAILED
    assert "'luhn_check', which is not defined" in result.summary
    assert "def post_validate():" in result.evidence[-1].stdout


def test_generate_fails_when_the_answer_is_not_json(tmp_path):
    result = scaffold.generate(replay_ctx(tmp_path, ["sure! here is the code"]))
    assert result.outcome == Outcome.FAILED and result.evidence[-1].kind == "llm"


def test_generate_for_health_only_asks_nothing(tmp_path):
    ctx = replay_ctx(tmp_path, [], request="a service that only has a health check")
    result = scaffold.generate(ctx)
    assert result.outcome == Outcome.OK and result.metrics["llm_calls"] == 0
    assert 'def health():\n    return jsonify(status="ok")' in result.artifacts.get(names.CODE)


def test_generate_batch_mode(tmp_path):
    request = "Create a todo list REST API with CRUD operations"
    plan = scaffold_plan.make_plan(intent_none(request))
    answer = {"handlers": [{"function": h.function, "code": h.example.body} for h in plan.handlers]}
    answer["handlers"][1]["function"] = "wrong_name"  # taken by its place in the list
    ctx = replay_ctx(tmp_path, [json.dumps(answer)], request=request)
    result = scaffold.generate(ctx, mode="batch")
    assert result.outcome == Outcome.OK, result.summary
    assert result.metrics["llm_calls"] == 1 and result.metrics["handlers"] == 5 and result.metrics["mode"] == "batch"
    assert "def post_todos():\n    data = request.get_json(silent=True)" in result.artifacts.get(names.CODE)


def test_generate_per_endpoint_mode(tmp_path):
    request = "Create a todo list REST API with CRUD operations"
    plan = scaffold_plan.make_plan(intent_none(request))
    answers = [json.dumps({"code": h.example.body}) for h in plan.handlers]
    ctx = replay_ctx(tmp_path, answers, request=request)
    result = scaffold.generate(ctx, mode="per-endpoint")
    assert result.outcome == Outcome.OK, result.summary
    assert result.metrics["llm_calls"] == 5 and result.metrics["mode"] == "per-endpoint"
    assert [c["schema"] for c in ctx.rundir.read_jsonl("llm.jsonl")] == ["HandlerAnswer"] * 5


def test_generate_stops_at_the_first_unusable_body(tmp_path):
    request = "Create a todo list REST API with CRUD operations"
    ctx = replay_ctx(tmp_path, [json.dumps({"code": "return jsonify(todos=list(TODOS.values()))"}),
                                json.dumps({"code": "python"})], request=request)
    result = scaffold.generate(ctx, mode="per-endpoint")
    assert result.outcome == Outcome.FAILED and "post_todos" in result.summary
    assert result.metrics["llm_calls"] == 2


# -- with the real embedded model ---------------------------------------------------------------------------------


@pytest.mark.embedded
def test_generate_with_the_embedded_model(tmp_path):
    pytest.importorskip("xllamacpp")
    from kubevibe.llm.embedded import EmbeddedClient

    llm = EmbeddedClient.from_settings("", Settings(llm="embedded", num_ctx=4096))  # shares test_embedded's server
    ctx = make_ctx(tmp_path, llm, seed=1, num_ctx=4096)
    result = scaffold.generate(ctx)  # its speed is measured by benchmarks/model_benchmark.py, not here
    assert result.outcome == Outcome.OK, result.summary
    files = result.artifacts.files
    assert set(files) == set(names.FILES)
    ast.parse(files[names.CODE])  # compile-only: the code is not run here
    plan = scaffold_plan.make_plan(intent_none(CC))
    assert files[names.DOCKERFILE] == scaffold_render.render_dockerfile(plan.spec)
    assert files[names.MANIFEST] == scaffold_render.render_manifest(plan.spec)
    assert files[names.REQUIREMENTS].startswith("flask==3.1.3\n")
    assert '@app.route("/validate", methods=["POST"])\ndef post_validate():' in files[names.CODE]
    (call,) = ctx.rundir.read_jsonl("llm.jsonl")
    assert call["backend"] == "embedded" and call["response"]["completion_tokens"] > 0


def test_generate_for_an_unrelated_request_says_its_tests_are_generic(tmp_path):
    body = "data = request.get_json(silent=True) or {}\nreturn jsonify(result=str(data))"
    ctx = replay_ctx(tmp_path, [json.dumps({"code": body})], request="resize images and convert them to webp")
    result = scaffold.generate(ctx)
    assert result.outcome == Outcome.OK, result.summary
    built_to = result.updates["intent"]
    # no reference lent its spec: the run must not claim a reference's tests
    assert built_to["spec_from"] == "generic"
    assert [c["path"] for c in built_to["spec"]["test_cases"]] == ["/health"]
