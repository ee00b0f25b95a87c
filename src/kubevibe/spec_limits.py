"""How much of a service spec a model may write, and whether what it wrote is still about the request.

Measured with the bundled 270M model on `json-with-required` (issue 18): one intent call generated until the token
limit (259 s on 2 cores), the retry gave a spec named `health` with 16 endpoints and 16 test cases for "a service that
checks whether a number is prime", and Generate then failed six times on handlers nobody asked for. So for small
models (runs on the scaffold strategy) the spec is *compact*:

- the schema sent for constrained decoding bounds every list and string (`spec_schema`), so the answer cannot
  run away however the model samples, and `INTENT_MAX_TOKENS` caps the call;
- duplicates are dropped and the lists cut to the bounds (`tidy_spec`), recorded as notes;
- a spec whose name, endpoints and test cases share no word with the request is a failed intent with that reason
  (`unrelated_to_request`); the table asks again, and the retry is told why.

Capable models get the same schema with wide bounds and no relevance check (a request in another language than
the spec's would fail it for nothing).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from kubevibe.bank import terms
from kubevibe.intent import ServiceSpec


class SpecLimits(BaseModel):
    endpoints: int
    test_cases: int
    list_items: int  # functionality, dependencies
    text: int  # the description
    short: int  # names, paths, methods, short descriptions
    check_relevance: bool


WIDE = SpecLimits(endpoints=24, test_cases=32, list_items=24, text=4000, short=300, check_relevance=False)
COMPACT = SpecLimits(endpoints=6, test_cases=8, list_items=8, text=400, short=120, check_relevance=True)
# Tokens for one compact intent call: a full compact spec is about 600 tokens; more is a runaway.
INTENT_MAX_TOKENS = 1200

# Words that say nothing about what a service does (beyond bank.STOPWORDS): HTTP verbs and plumbing.
_PLUMBING = terms("whether get post put patch delete head options json body request response return returns "
                  "status health check ok true false null value result input output data only api v1 v2")


def limits_for(strategy: str | None) -> SpecLimits:
    """Compact for the scaffold strategy (the one small models run on), wide otherwise."""
    return COMPACT if strategy == "scaffold" else WIDE


def spec_schema(limits: SpecLimits) -> dict[str, Any]:
    """ServiceSpec's JSON schema with every list and string bounded by `limits`."""
    schema = ServiceSpec.model_json_schema()
    props = schema["properties"]
    props["endpoints"]["maxItems"] = limits.endpoints
    props["test_cases"]["maxItems"] = limits.test_cases
    for key in ("functionality", "dependencies"):
        props[key]["maxItems"] = limits.list_items
        props[key].setdefault("items", {})["maxLength"] = limits.short
    props["description"]["maxLength"] = limits.text
    for key in ("name", "base_image"):
        props[key]["maxLength"] = min(limits.short, 63)
    for model in schema.get("$defs", {}).values():
        for name, prop in model.get("properties", {}).items():
            if prop.get("type") == "string":
                prop["maxLength"] = limits.text if name == "description" else limits.short
    return schema


def tidy_spec(spec: ServiceSpec, limits: SpecLimits) -> tuple[ServiceSpec, list[str]]:
    """Drop repeated endpoints and test cases, cut the lists to the bounds; say what was changed."""
    notes: list[str] = []
    spec = spec.model_copy(deep=True)

    def unique(items: list, key) -> list:
        seen, kept = set(), []
        for item in items:
            k = key(item)
            if k not in seen:
                seen.add(k)
                kept.append(item)
        return kept

    endpoints = unique(spec.endpoints, lambda e: (e.method.strip().upper(), e.path.strip().rstrip("/") or "/"))
    cases = unique(spec.test_cases, lambda c: (c.method.strip().upper(), c.path.strip(),
                                               json.dumps(c.body, sort_keys=True, default=str)))
    if len(endpoints) < len(spec.endpoints):
        notes.append(f"dropped {len(spec.endpoints) - len(endpoints)} repeated endpoints")
    if len(cases) < len(spec.test_cases):
        notes.append(f"dropped {len(spec.test_cases) - len(cases)} repeated test cases")
    if len(endpoints) > limits.endpoints:
        notes.append(f"kept the first {limits.endpoints} of {len(endpoints)} endpoints")
    if len(cases) > limits.test_cases:
        notes.append(f"kept the first {limits.test_cases} of {len(cases)} test cases")
    spec.endpoints = endpoints[: limits.endpoints]
    spec.test_cases = cases[: limits.test_cases]
    spec.functionality = list(dict.fromkeys(spec.functionality))[: limits.list_items]
    spec.dependencies = list(dict.fromkeys(spec.dependencies))[: limits.list_items]
    return spec, notes


def _path_words(path: str) -> str:
    return " ".join(re.split(r"[/_\-{}<>:?=&.]+", path))


def unrelated_to_request(spec: ServiceSpec, request: str) -> str | None:
    """Why the spec is not about the request (None: it is). Its name, endpoints or test cases must share a word
    with the request; a spec of nothing but health checks counts only for a request about health."""
    about_health = "health" in request.lower()
    wanted = terms(request) - (_PLUMBING - {"health"} if about_health else _PLUMBING)
    if not wanted:  # a request of plumbing words only ("an API that returns JSON"): nothing to hold it to
        return None
    real = [e for e in spec.endpoints if about_health or _path_words(e.path).strip().lower() != "health"]
    said = " ".join([spec.name.replace("-", " ")]
                    + [f"{_path_words(e.path)} {e.description}" for e in real]
                    + [f"{c.name} {_path_words(c.path)}" for c in spec.test_cases])
    if real and wanted & terms(said):
        return None
    shown = ", ".join(f"{e.method.upper()} {e.path}" for e in spec.endpoints[:4]) or "none"
    if not real:  # the name may well be right (`credit-card-validator`); what is missing is the service itself
        return (f"The service spec has no endpoint for what the request asks ({shown}"
                + (", health checks only" if spec.endpoints else "") + "). Give it the endpoints the request asks "
                f"for ({', '.join(sorted(wanted))}), not only a health check.")
    return (f"The service spec is not about the request: its name {spec.name!r} and endpoints ({shown}) mention "
            f"none of {', '.join(sorted(wanted))}. Name the service after the request and give it the endpoints "
            "the request asks for.")
