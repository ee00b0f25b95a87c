"""The `scaffold` generation strategy, for models too small to write a whole service.

The tool writes everything that does not need understanding of the request:
  * the spec: the curated intent's ServiceSpec, or (intent method "none") the nearest reference's spec renamed
    after the request; when no reference is close, a generic one-endpoint spec;
  * Dockerfile, vibe.yaml and requirements.txt, rendered from templates in assets/scaffold/;
  * myapp.py's structure: imports, Flask app, the nearest reference's support code (constants, in-memory
    state, helper functions such as `luhn_valid`), GET /health, one decorated function per endpoint, the
    main block.
The model writes only the bodies of the handlers (see MODE), shown a worked example (the nearest reference's
handler for the same endpoint, with its body as the answer), the handlers to write and the requests they must
answer. What it writes is checked without running it: `ast.parse` and `symtable` (both compile-only), every
handler must return, and every name it uses must be defined. A problem fails the stage with the evidence, and
the pipeline asks again.

Generated code is never executed here; it runs in containers later in the pipeline.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import symtable
import sys
import textwrap
import time
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from pydantic import BaseModel, Field, create_model

from kubevibe import bank
from kubevibe.bank import Reference, RouteHandler
from kubevibe.intent import Endpoint, Intent, Resources, ServiceSpec, TestCase
from kubevibe.llm.call import ask
from kubevibe.manifests import dns_label
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, StageResult

FLASK_REQUIREMENT = "flask==3.1.3"  # pinned; the base images pre-install nothing, as the official ones
DEFAULT_BASE_IMAGE = "python:3.11-slim"
CLOSE_MATCH = 0.3  # bank similarity from which the nearest reference is taken to be the service asked for
# "batch": one call writes all handler bodies; "per-endpoint": one call per handler. Measured with Gemma 3 270M
# on the bank's requests (3 seeds each, services correct against their test cases in a container): batch
# todo 3/3 and kv-store 3/3, per-endpoint 2/3 and 2/3; equal elsewhere. Each extra call is one more chance for
# a tiny model to lose the thread. A service with one handler gets one call either way.
MODE = "batch"
HANDLER_MAX_TOKENS = 1000
# A body may be at most twice its example plus 200 characters, within these bounds. Gemma 3 270M sometimes
# repeats a line until the token limit; with the bound in the JSON schema the string ends first, the answer
# stays complete JSON, and normalize_body drops the cut last line.
BODY_MIN_LIMIT = 400
BODY_MAX_CHARS = 1500
MAX_HANDLERS = 12

_RESERVED = frozenset({"app", "health", "Flask", "abort", "jsonify", "redirect", "request"})
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi)?$")
_BASE_IMAGE = re.compile(r"^(docker\.io/(library/)?)?python:3\.\d{1,2}(\.\d{1,2})?(-slim)?(-(bookworm|bullseye|trixie))?$")
_PIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}(\[[A-Za-z0-9,._-]+\])?"
                       r"((==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!-]{1,30})?$")
# Import names whose pip package has another name.
_DISTRIBUTIONS = {"yaml": "PyYAML", "PIL": "Pillow", "sklearn": "scikit-learn", "bs4": "beautifulsoup4",
                  "dateutil": "python-dateutil", "jwt": "PyJWT", "dotenv": "python-dotenv",
                  "cv2": "opencv-python-headless"}
_NAME_STOPWORDS = bank.STOPWORDS | {"microservice", "service", "that", "which", "able", "new", "get", "lets"}


class ScaffoldError(Exception):
    """The scaffold cannot be built (str() is one sentence)."""


class BodyError(ValueError):
    """A handler body from the model that cannot be used (str() is one sentence)."""


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


# -- the plan: everything but the bodies --------------------------------------------------------------------------


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


def dns_name(text: str, fallback: str = "service") -> str:
    """A service name: a DNS-1123 label of at most 40 characters (room for the suffixes targets add)."""
    return dns_label(text, max_len=40, fallback=fallback, letter_first=True)


def name_from_request(request: str, fallback: str) -> str:
    """'Develop a credit card validation microservice' -> 'credit-card-validation'."""
    words = [w for w in re.findall(r"[a-z0-9]+", request.lower()) if w not in _NAME_STOPWORDS and len(w) > 1]
    return dns_name("-".join(words[:3]), fallback) if words else fallback


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
        spec.name = dns_name(spec.name, name_from_request(intent.request, ref.name))
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


# -- rendering ----------------------------------------------------------------------------------------------------


def _load_template(name: str) -> str:
    return resources.files("kubevibe.assets").joinpath("scaffold", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # trim_blocks: a block tag's own line break is dropped, so the templates read like the files they make.
    return jinja2.Environment(loader=jinja2.FunctionLoader(_load_template), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False, trim_blocks=True)


def _render(template: str, **values: Any) -> str:
    return _env().get_template(template).render(**values)


def _resources(spec: ServiceSpec) -> Resources:
    defaults = Resources()
    values = {k: (v if _QUANTITY.match(str(v)) else getattr(defaults, k)) for k, v in spec.resources.model_dump().items()}
    return Resources(**values)


def render_dockerfile(spec: ServiceSpec) -> str:
    base = spec.base_image if _BASE_IMAGE.match(spec.base_image or "") else DEFAULT_BASE_IMAGE
    return _render("Dockerfile.j2", base_image=base, target_port=spec.target_port)


def render_manifest(spec: ServiceSpec) -> str:
    return _render("vibe.yaml.j2", name=dns_name(spec.name), replicas=spec.replicas, port=spec.port,
                   target_port=spec.target_port, resources=_resources(spec))


def render_app(plan: ScaffoldPlan, bodies: dict[str, str]) -> str:
    """myapp.py from the plan and the (already indented) handler bodies."""
    description = " ".join((plan.spec.description or plan.spec.name).split())
    description = description.replace("\\", "/").replace('"""', "'''").rstrip('"') or plan.spec.name
    handlers = [{"rule_literal": json.dumps(h.rule, ensure_ascii=False), "method_literal": json.dumps(h.method), "function": h.function,
                 "params": ", ".join(h.params), "body": bodies[h.function].rstrip()} for h in plan.handlers]
    return _render("myapp.py.j2", name=plan.spec.name, description=description, imports="\n".join(plan.imports),
                   support=plan.support, handlers=handlers, port=plan.spec.target_port)


def _module_of(requirement: str) -> str:
    return re.split(r"[\[=<>!~]", requirement, maxsplit=1)[0].strip()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(code: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def requirements_for(spec: ServiceSpec, code: str) -> list[str]:
    """flask pinned, the spec's dependencies, and the packages the code imports (standard library excluded).

    Dependencies are kept only when they look like pip requirements (a name, maybe extras and one version
    constraint); a module imported by the code maps to its pip name (yaml -> PyYAML, ...).
    """
    stdlib = set(sys.stdlib_module_names)
    imported = imported_modules(code) - stdlib - {"flask"}
    out, seen = [FLASK_REQUIREMENT], {"flask", "werkzeug"}

    def add(requirement: str) -> None:
        requirement = requirement.strip()
        key = _norm(_module_of(requirement))
        if not _PIP_NAME.match(requirement) or key in seen or _module_of(requirement) in stdlib:
            return
        seen.add(key)
        out.append(requirement)

    for dep in spec.dependencies:
        add(dep)
    for module in sorted(imported):
        add(_DISTRIBUTIONS.get(module, module))
    return out


def render_requirements(requirements: list[str]) -> str:
    return _render("requirements.txt.j2", requirements=requirements)


def _example(plan: ScaffoldPlan, handler: HandlerPlan) -> RouteHandler:
    """The example handler shown to the model: the reference's nearest one, or a generic one."""
    if handler.example is not None:
        return handler.example
    (generic,) = bank.route_handlers(_load_template("generic_example.py"))
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
    return _render("handler.j2", example_signature=_signature(ex.method, ex.path, ex.function, ex.params),
                   example_answer=json.dumps({"code": ex.body}),
                   signature=_signature(handler.method, handler.rule, handler.function, handler.params),
                   what=handler.what, cases=handler.cases, available=plan.available)


def render_batch_prompt(plan: ScaffoldPlan) -> str:
    """The prompt for all handler bodies at once (MODE "batch"), with every example handler and its answer."""
    examples: dict[str, RouteHandler] = {}
    for h in plan.handlers:
        ex = _example(plan, h)
        examples.setdefault(ex.function, ex)
    answer = json.dumps({"handlers": [{"function": e.function, "code": e.body} for e in examples.values()]})
    return _render(
        "handlers.j2",
        examples=[{"signature": _signature(e.method, e.path, e.function, e.params)} for e in examples.values()],
        example_answer=answer,
        handlers=[{"signature": _signature(h.method, h.rule, h.function, h.params), "function": h.function,
                   "what": h.what, "cases": h.cases} for h in plan.handlers],
        available=plan.available)


def system_prompt() -> str:
    return _load_template("system.j2").strip()


# -- checking what the model wrote (compile-only: nothing is executed) --------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)


def _as_function(body: str) -> ast.FunctionDef:
    """The body wrapped in a function and parsed (compile-only); SyntaxError if it is not valid Python."""
    (function,) = ast.parse("def _handler():\n" + textwrap.indent(body, "    ", lambda line: True)).body
    assert isinstance(function, ast.FunctionDef)
    return function


def _from_whole_function(code: str, function: str) -> str | None:
    """When the model wrote the whole function (maybe with helpers), its body with the helpers in front."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    target = next((d for d in defs if d.name == function), None)
    target = target or next((d for d in defs if any(bank.route_of(x) for x in d.decorator_list)), None)
    if target is None and len(tree.body) == 1 and defs:
        target = defs[0]  # one function under another name: the model renamed the handler
    if target is None:
        return None
    lines = code.splitlines()
    first = target.body[0]
    if first.lineno == target.lineno:  # def f(): return x
        body = "\n".join(ast.get_source_segment(code, s) or "" for s in target.body)
    else:
        body = textwrap.dedent("\n".join(lines[first.lineno - 1 : target.end_lineno]))
    helpers = [bank.statement_source(node, lines) for node in tree.body
               if node is not target and not bank.is_skeleton_stmt(node)]
    return "\n".join([*helpers, body]) if helpers else body


def normalize_body(text: str, function: str) -> str:
    """The model's answer as a function body indented by 4 spaces; BodyError if it is not a usable body."""
    fence = _FENCE.search(text)
    code = fence.group(1) if fence else text
    code = code.replace("\t", "    ").replace("\r\n", "\n").strip("\n")
    if not code.strip():
        raise BodyError("The handler body is empty.")
    candidates = []
    whole = _from_whole_function(textwrap.dedent(code), function)
    if whole is not None:
        candidates.append(whole)
    candidates.append(textwrap.dedent(code))
    lines = code.split("\n")
    if len(lines) > 1:  # first line flush left, the rest indented (a common way to write a body in a string)
        candidates.append(lines[0].strip() + "\n" + textwrap.dedent("\n".join(lines[1:])))
    if "\n" not in code and "\\n" in code:  # newlines written as the two characters \n
        candidates.append(textwrap.dedent(code.replace("\\n", "\n")))
    # Last: without the last line, which the schema's length bound may have cut in the middle.
    candidates.extend([c.rstrip("\n").rsplit("\n", 1)[0] for c in candidates if "\n" in c.rstrip("\n")])
    first_error: SyntaxError | None = None
    for body in candidates:
        body = body.strip("\n")
        try:
            wrapped = _as_function(body)
        except SyntaxError as exc:
            first_error = first_error or exc
            continue
        if all(line.strip() in ("", "pass", "...") or line.strip().startswith("#") for line in body.split("\n")):
            raise BodyError("The handler body does nothing (only pass, ... or comments).")
        if not _returns(wrapped):
            raise BodyError(f"The handler body of {function} never returns a response: {_first_line(body)!r}.")
        return textwrap.indent(body, "    ")
    assert first_error is not None
    raise BodyError(f"The handler body of {function} is not valid Python: {first_error.msg} "
                    f"(line {first_error.lineno} of the body).")


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().split("\n")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _returns(func: ast.FunctionDef) -> bool:
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # a nested function's return is not the handler's
        stack.extend(ast.iter_child_nodes(node))
    return False


def undefined_names(code: str) -> list[tuple[str, str]]:
    """(function, name) for each name a function reads that nothing defines. Compile-only (symtable)."""
    top = symtable.symtable(code, names.CODE, "exec")
    module_names = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    known = module_names | set(dir(builtins))
    out: list[tuple[str, str]] = []

    def walk(table: symtable.SymbolTable, owner: str) -> None:
        for child in table.get_children():
            label = owner or (child.get_name() if child.get_type() == "function" else "")
            for sym in child.get_symbols():
                if sym.is_referenced() and sym.is_global() and sym.get_name() not in known:
                    out.append((label, sym.get_name()))
            walk(child, label)

    walk(top, "")
    return sorted(set(out))


def check_code(code: str, handlers: list[str]) -> list[str]:
    """Problems of a scaffolded myapp.py, one sentence each; [] when it parses, every handler returns and every
    name is defined."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"myapp.py does not parse: {exc.msg} at line {exc.lineno}."]
    problems = []
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name in handlers:
        func = functions.get(name)
        if func is None:
            problems.append(f"the handler {name} is missing from myapp.py.")
        elif not _returns(func):
            problems.append(f"the handler {name} never returns a response (Flask answers 500 without one).")
    for function, name in undefined_names(code):
        problems.append(f"{function or 'module level'} uses {name!r}, which is not defined anywhere in myapp.py.")
    return problems


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


def generate(ctx: RunContext) -> StageResult:
    """Generate stage, scaffold strategy: four files, the model writing only the handler bodies."""
    started = time.monotonic()
    intent = _intent(ctx)
    try:
        plan = make_plan(intent)
    except ScaffoldError as exc:
        return StageResult.failed(f"scaffold: {exc}", evidence=[Evidence(kind="note", title="scaffold", detail=str(exc))])
    metrics: dict[str, Any] = {"reference": plan.reference, "similarity": plan.similarity, "close": plan.close,
                               "handlers": len(plan.handlers), "llm_calls": 0, "completion_tokens": 0, "mode": MODE}
    notes = [Evidence(kind="note", title="scaffold plan", detail="\n".join(plan.notes))] if plan.notes else []
    try:
        if MODE == "batch" and len(plan.handlers) > 1:
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
