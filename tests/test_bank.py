"""The reference bank: every reference is a complete, working deployment, and the search finds the right one.

The references' myapp.py files are KubeVibe's own code, shipped in the package, so they are imported and run
in-process with Flask's test client. Generated code never is (it runs in containers).
"""

from __future__ import annotations

import ast

import pytest
import yaml
from helpers import load_trusted_app

from kubevibe import bank, policy
from kubevibe.generation import scaffold_plan, scaffold_render
from kubevibe.intent import TestCase
from kubevibe.pipeline import artifacts as names

REQUIRED = {"credit-card", "todo", "url-shortener", "echo", "temperature-converter", "kv-store", "word-count",
            "health-only"}
REFS = bank.load_bank()
IDS = [r.name for r in REFS]


def import_reference_app(ref: bank.Reference, tmp_path):
    return load_trusted_app(ref.artifacts.get(names.CODE), tmp_path, ref.name.replace("-", "_"))


def test_the_bank_has_the_required_references():
    assert REQUIRED <= set(IDS)
    assert len(REFS) >= 8
    assert IDS == sorted(IDS)


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_reference_is_complete(ref):
    assert set(ref.artifacts.files) == set(names.FILES)
    assert ref.spec.name == ref.name
    assert 3 <= len(ref.requests) <= 5
    assert ref.title and ref.description
    assert any(e.method == "GET" and e.path == "/health" for e in ref.spec.endpoints)
    assert any(c.path == "/health" and c.expected_status == 200 for c in ref.spec.test_cases)


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_reference_passes_its_own_test_cases(ref, tmp_path):
    app = import_reference_app(ref, tmp_path)
    assert ref.spec.test_cases
    assert bank.check_flask_app(app, ref.spec.test_cases) == []


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_every_endpoint_is_a_route_and_has_a_test_case(ref):
    routes = {(h.method, h.path) for h in ref.handlers()}
    for endpoint in ref.spec.endpoints:
        assert (endpoint.method, endpoint.path) in routes, f"{endpoint.method} {endpoint.path} is not in myapp.py"
        pattern = scaffold_plan.rule_regex(endpoint.path)
        assert any(c.method == endpoint.method and pattern.fullmatch(c.path.split("?")[0])
                   for c in ref.spec.test_cases), f"no test case for {endpoint.method} {endpoint.path}"


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_myapp_listens_on_all_interfaces_at_the_target_port(ref):
    tree = ast.parse(ref.artifacts.get(names.CODE))
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "app.run"]
    assert len(runs) == 1
    kwargs = {k.arg: ast.literal_eval(k.value) for k in runs[0].keywords}
    assert kwargs == {"host": "0.0.0.0", "port": ref.spec.target_port}
    assert ref.spec.target_port == 5000


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_manifest_is_a_deployment_and_a_service_consistent_with_the_spec(ref):
    docs = [d for d in yaml.safe_load_all(ref.artifacts.get(names.MANIFEST)) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    deployment, service = docs
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": ref.name}
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [ref.spec.target_port] == [5000]
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (ref.spec.port, ref.spec.target_port) == (80, 5000)
    assert service["spec"]["type"] == "ClusterIP"
    assert set(container["resources"]) == {"requests", "limits"}
    probe = container["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/health", 5000)
    assert policy.check(docs) == []


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_dockerfile_and_requirements(ref):
    lines = ref.artifacts.get(names.DOCKERFILE).splitlines()
    assert lines == [
        "FROM python:3.11-slim", "WORKDIR /app", "COPY requirements.txt .",
        "RUN pip install --no-cache-dir -r requirements.txt", "COPY myapp.py .", "EXPOSE 5000",
        'CMD ["python", "myapp.py"]',
    ]
    assert ref.artifacts.get(names.REQUIREMENTS).splitlines()[0] == "flask==3.1.3"


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_reference_files_are_what_the_scaffold_renders(ref):
    """The bank and the scaffold templates cannot drift apart."""
    assert ref.artifacts.get(names.DOCKERFILE) == scaffold_render.render_dockerfile(ref.spec)
    assert ref.artifacts.get(names.MANIFEST) == scaffold_render.render_manifest(ref.spec)
    code = ref.artifacts.get(names.CODE)
    assert ref.artifacts.get(names.REQUIREMENTS) == scaffold_render.render_requirements(
        scaffold_render.requirements_for(ref.spec, code))


@pytest.mark.parametrize(("request_text", "expected"), [
    ("Develop a credit card validation microservice", "credit-card"),
    ("Check if a Visa card number passes the Luhn test", "credit-card"),
    ("shorten links", "url-shortener"),
    ("make short URLs that redirect", "url-shortener"),
    ("a todo list", "todo"),
    ("track tasks and mark them completed", "todo"),
    ("echo back whatever JSON I post", "echo"),
    ("convert celsius to fahrenheit", "temperature-converter"),
    ("kelvin conversion API", "temperature-converter"),
    ("store key value pairs", "kv-store"),
    ("an in-memory cache with get and set", "kv-store"),
    ("count the words in a text", "word-count"),
    ("word frequency statistics of a document", "word-count"),
    ("a service that only has a health check", "health-only"),
    ("add, subtract, multiply and divide numbers", "calculator"),
    ("say hello world", "hello-world"),
])
def test_nearest_finds_the_reference(request_text, expected):
    (best, score), *_ = bank.nearest(request_text)
    assert best.name == expected
    assert score >= scaffold_plan.CLOSE_MATCH


@pytest.mark.parametrize("ref", REFS, ids=IDS)
def test_every_example_request_finds_its_own_reference(ref):
    for request_text in ref.requests:
        assert bank.nearest(request_text)[0][0].name == ref.name, request_text


def test_nearest_is_deterministic_ranked_and_bounded():
    first = bank.nearest("Develop a credit card validation microservice", k=3)
    assert first == bank.nearest("Develop a credit card validation microservice", k=3)
    scores = [s for _, s in first]
    assert scores == sorted(scores, reverse=True) and len(first) == 3
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert first[0][1] > 2 * first[1][1]  # a clear winner


def test_nearest_of_an_unrelated_request_is_not_close():
    (_, score), = bank.nearest("resize images and convert them to webp")
    assert score < scaffold_plan.CLOSE_MATCH


def test_nearest_can_search_a_subset():
    subset = [r for r in REFS if r.name != "credit-card"]
    assert bank.nearest("Develop a credit card validation microservice", refs=subset)[0][0].name != "credit-card"


def test_route_handlers_and_support_code():
    ref = bank.get_reference("url-shortener")
    handlers = {(h.method, h.path): h for h in ref.handlers()}
    assert set(handlers) == {("GET", "/health"), ("POST", "/shorten"), ("GET", "/resolve/<code>"),
                             ("GET", "/r/<code>")}
    assert handlers[("GET", "/resolve/<code>")].params == ["code"]
    assert handlers[("POST", "/shorten")].body.startswith("data = request.get_json(silent=True)")
    imports, support = bank.support_code(ref.artifacts.get(names.CODE))
    assert imports == ["import hashlib", "import threading", "from urllib.parse import urlparse"]
    assert "def short_code(url):" in support and "URLS = {}" in support
    assert "@app.route" not in support and "Flask(" not in support and "__main__" not in support


def test_route_handlers_understand_method_decorators():
    source = "@app.post('/a')\ndef a():\n    return 'x'\n\n@app.route('/b', methods=['GET', 'PUT'])\ndef b():\n" \
             "    return 'y'\n\ndef helper():\n    pass\n"
    assert [(h.method, h.path, h.function) for h in bank.route_handlers(source)] == [
        ("POST", "/a", "a"), ("GET", "/b", "b"), ("PUT", "/b", "b")]


def test_few_shot_block():
    block = bank.few_shot_block([bank.get_reference("credit-card"), bank.get_reference("todo")])
    assert block.startswith("Example 1: Credit card number validator")
    assert "Example 2: To-do list API" in block
    assert "def luhn_valid(number):" in block and "POST /validate" in block
    assert block.count("```python") == 2


def test_case_failure_messages():
    case = TestCase(name="c", method="POST", path="/v", expected_status=200, expected_json={"valid": True})
    # the bank judges its references with the same rules as Connect (kubevibe.intent.TestCase.problems)
    assert case.problems(200, '{"valid": true, "x": 1}') == []
    assert "expected 200" in case.problems(500, "")[0]
    assert "expected true, got false" in case.problems(200, '{"valid": false}')[0]
    assert "$.valid: missing" in case.problems(200, "{}")[0]
    assert "not JSON" in case.problems(200, "<html>")[0]
    assert case.problems(200, '{"valid": 1}') == ["$.valid: expected true, got 1"]  # 1 is not true
