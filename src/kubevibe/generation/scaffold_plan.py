"""The scaffold strategy's plan: everything the tool decides before asking the model.

Pure (the reference bank and the intent only): the spec to build (the intent's, the nearest reference's renamed
after the request, or a generic one), the service's name, one handler per endpoint with its Flask rule, function
name, parameters, the test cases that hit it and a worked example from the nearest reference.
"""

from __future__ import annotations

import ast
import json
import re

from pydantic import BaseModel, Field

from kubevibe import bank
from kubevibe.bank import Reference, RouteHandler
from kubevibe.intent import Endpoint, Intent, ServiceSpec, TestCase
from kubevibe.manifests import service_label
from kubevibe.pipeline import artifacts as names

CLOSE_MATCH = 0.3  # bank similarity from which the nearest reference is taken to be the service asked for
MAX_HANDLERS = 12
_RESERVED = frozenset({"app", "health", "Flask", "abort", "jsonify", "redirect", "request"})
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_NAME_STOPWORDS = bank.STOPWORDS | {"microservice", "service", "that", "which", "able", "new", "get", "lets"}


class ScaffoldError(Exception):
    """The scaffold cannot be built (str() is one sentence)."""


class HandlerPlan(BaseModel):
    method: str
    rule: str  # Flask rule, e.g. /todos/<int:todo_id>
    function: str
    params: list[str]
    what: str  # the endpoint's description
    cases: list[str]  # the test cases that hit it, as one line each
    example: RouteHandler | None = None


class ScaffoldPlan(BaseModel):
    spec: ServiceSpec
    reference: str
    similarity: float
    close: bool  # the reference was taken to be the service asked for
    imports: list[str]  # support imports from the reference
    support: str  # support code from the reference
    available: list[str]  # one line per support name, for the prompt
    handlers: list[HandlerPlan]
    notes: list[str] = Field(default_factory=list)


def name_from_request(request: str, fallback: str) -> str:
    """'Develop a credit card validation microservice' -> 'credit-card-validation'."""
    words = [w for w in re.findall(r"[a-z0-9]+", request.lower()) if w not in _NAME_STOPWORDS and len(w) > 1]
    return service_label("-".join(words[:3]), fallback) if words else fallback


def flask_rule(path: str) -> str | None:
    """A Flask rule from a spec path: {id} and :id become <id>; the query string is dropped. None if unusable."""
    path = path.strip().split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    path = re.sub(r"\{([^{}/]+)\}", r"<\1>", path)
    path = re.sub(r"/:([A-Za-z_][A-Za-z0-9_]*)", r"/<\1>", path)

    def fix_param(match: re.Match) -> str:
        converter, _, var = match.group(1).rpartition(":")
        var = re.sub(r"\W+", "_", var).strip("_") or "value"
        if var[0].isdigit():
            var = "p_" + var
        converter = converter if converter in ("int", "float", "path", "string", "uuid") else ""
        return f"<{converter + ':' if converter else ''}{var}>"

    path = re.sub(r"<([^<>/]+)>", fix_param, path)
    if not re.fullmatch(r"[A-Za-z0-9_\-./~<>:]*", path) or "//" in path:
        return None
    return path


def rule_params(rule: str) -> list[str]:
    return [m.rpartition(":")[2] for m in re.findall(r"<([^<>]+)>", rule)]


def rule_regex(rule: str) -> re.Pattern:
    pattern, pos = "", 0
    for match in re.finditer(r"<([^<>]+)>", rule):
        pattern += re.escape(rule[pos : match.start()])
        converter = match.group(1).rpartition(":")[0]
        pattern += {"int": r"\d+", "float": r"\d+(\.\d+)?", "path": r".+"}.get(converter, r"[^/]+")
        pos = match.end()
    pattern += re.escape(rule[pos:])
    return re.compile(pattern)


def function_name(method: str, rule: str, taken: set[str]) -> str:
    parts = []
    for segment in rule.strip("/").split("/"):
        if not segment:
            continue
        if segment.startswith("<"):
            parts.append("by_" + segment.strip("<>").rpartition(":")[2])
        else:
            parts.append(re.sub(r"\W+", "_", segment).strip("_"))
    base = "_".join([method.lower(), *[p for p in parts if p]]) if parts else f"{method.lower()}_root"
    base = re.sub(r"_+", "_", base).lower()[:50]
    name, n = base, 2
    while name in taken or name in _RESERVED or not name.isidentifier():
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def describe_case(case: TestCase) -> str:
    text = f"{case.method.upper()} {case.path}"
    if case.body is not None:
        text += f" with JSON {json.dumps(case.body)}"
    text += f" -> HTTP {case.expected_status}"
    if case.expected_json:
        text += f", JSON containing {json.dumps(case.expected_json)}"
    if case.expected_contains:
        text += f", response text containing {case.expected_contains!r}"
    return text


def _available(imports: list[str], support: str) -> list[str]:
    """The names a handler may use besides its parameters, for the prompt: Flask's, then the support code's."""
    out = ["request", "jsonify", "abort", "redirect"]
    for line in imports:
        node = ast.parse(line).body[0]
        out.extend((a.asname or a.name) for a in node.names)  # type: ignore[attr-defined]
    if not support:
        return out
    for node in ast.parse(support).body:
        if isinstance(node, ast.FunctionDef):
            out.append(f"{node.name}({', '.join(a.arg for a in node.args.args)})")
        elif isinstance(node, ast.Assign):
            out.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.append(node.target.id)
    return out


def _defined_names(imports: list[str], support: str) -> set[str]:
    defined: set[str] = set()
    for node in ast.parse("\n".join(imports) + "\n" + support).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    return defined


def resolve_spec(intent: Intent, ref: Reference, close: bool) -> tuple[ServiceSpec, list[str]]:
    """The spec to build: the intent's, else the reference's (renamed), else a generic one. Plus notes."""
    notes = []
    if intent.spec is not None:
        spec = intent.spec.model_copy(deep=True)
        spec.name = service_label(spec.name, name_from_request(intent.request, ref.name))
        real = [e for e in spec.endpoints if flask_rule(e.path) not in (None, "/health")]
        if not real and close:
            notes.append(f"the intent's spec names no endpoints; using those of the reference {ref.name}")
            spec.endpoints = list(ref.spec.endpoints)
            spec.test_cases = spec.test_cases or list(ref.spec.test_cases)
        return spec, notes
    name = name_from_request(intent.request, ref.name)
    if close:
        notes.append(f"no spec in the intent; using the spec of the reference {ref.name}, named {name}")
        return ref.spec.model_copy(deep=True, update={"name": name}), notes
    notes.append(f"no spec in the intent and no close reference (best: {ref.name}); using a generic one-endpoint "
                 "spec")
    words = [w for w in re.findall(r"[a-z]+", intent.request.lower()) if w not in _NAME_STOPWORDS and len(w) > 2]
    path = "/" + (words[0] if words else "process")
    spec = ServiceSpec(
        name=name, description=intent.text,
        endpoints=[Endpoint(method="GET", path="/health", description="liveness and readiness check"),
                   Endpoint(method="POST", path=path, description=intent.text)],
        test_cases=[TestCase(name="health", method="GET", path="/health", expected_status=200,
                             expected_json={"status": "ok"})],
    )
    return spec, notes


def _pick_example(endpoint: Endpoint, rule: str, handlers: list[RouteHandler]) -> RouteHandler | None:
    best, best_score = None, -1.0
    for h in handlers:
        if h.path == "/health":
            continue
        score = 0.0
        if h.method == endpoint.method.upper():
            score += 1.0
        if h.path == rule:
            score += 1.0
            if h.method == endpoint.method.upper():
                score += 2.0
        score += bank.text_similarity(f"{rule} {endpoint.description}", f"{h.path} {h.function} {h.body[:300]}")
        if score > best_score:
            best, best_score = h, score
    return best


def make_plan(intent: Intent, refs: list[Reference] | None = None) -> ScaffoldPlan:
    """Everything the tool decides before asking the model. Pure: bank lookup and templates only."""
    query = intent.request
    if intent.spec is not None:
        query += " " + intent.spec.name.replace("-", " ") + " " + intent.spec.description
    matches = bank.nearest(query, k=1, refs=refs)
    if not matches:
        raise ScaffoldError("The reference bank is empty.")
    ref, score = matches[0]
    close = score >= CLOSE_MATCH
    spec, notes = resolve_spec(intent, ref, close)
    imports, support = bank.support_code(ref.artifacts.get(names.CODE)) if close else ([], "")
    taken = _defined_names(imports, support)
    ref_handlers = ref.handlers() if close else []
    handlers, seen = [], set()
    for endpoint in spec.endpoints:
        method = endpoint.method.strip().upper()
        rule = flask_rule(endpoint.path)
        if method not in _METHODS or rule is None:
            notes.append(f"skipped the endpoint {endpoint.method} {endpoint.path}: not a usable method and path")
            continue
        if rule == "/health" and method == "GET" or (method, rule) in seen:
            continue
        seen.add((method, rule))
        pattern = rule_regex(rule)
        cases = [describe_case(c) for c in spec.test_cases
                 if c.method.upper() == method and pattern.fullmatch(c.path.split("?", 1)[0])]
        handlers.append(HandlerPlan(
            method=method, rule=rule, function=function_name(method, rule, taken), params=rule_params(rule),
            what=endpoint.description or f"handle {method} {rule}", cases=cases[:6],
            example=_pick_example(endpoint, rule, ref_handlers),
        ))
    if len(handlers) > MAX_HANDLERS:
        notes.append(f"kept the first {MAX_HANDLERS} of {len(handlers)} endpoints")
        handlers = handlers[:MAX_HANDLERS]
    return ScaffoldPlan(spec=spec, reference=ref.name, similarity=score, close=close, imports=imports,
                        support=support, available=_available(imports, support), handlers=handlers, notes=notes)
