"""What the user wants, as the pipeline understands it: the curated intent and, when asked for, a service spec.

`ServiceSpec` is the structured form of the `json-with-required` intent method. Its endpoints and test cases
are what Connect checks, so a run can say more than "something answered".
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator

from kubevibe.slo import SLO
from kubevibe.text import clip_end


def lenient_slo(value: Any, handler: ValidatorFunctionWrapHandler) -> SLO | None:
    """A model's unusable objectives are dropped (the run goes on without them), never a failed intent."""
    try:
        slo = handler(value)
    except ValidationError:
        return None
    return slo if slo is not None and slo.has_objectives() else None


class Endpoint(BaseModel):
    method: str = Field("GET", description="HTTP method")
    path: str = Field(..., description="path beginning with /")
    description: str = ""


class TestCase(BaseModel):
    __test__ = False  # not a pytest class

    name: str = ""
    method: str = "GET"
    path: str
    body: Any = None  # JSON body to send, or null
    expected_status: int = 200
    expected_json: dict[str, Any] | None = None  # these keys must appear in the response with these values
    expected_contains: str | None = None  # this text must appear in the response body

    def problems(self, status: int, body_text: str) -> list[str]:
        """Why a response fails this case (empty: it passes). The one judge of test cases: Connect uses it on
        deployed services, and the reference bank on its own apps, so both agree on what passing means."""
        problems = []
        if status != self.expected_status:
            problems.append(f"status {status}, expected {self.expected_status}")
        if self.expected_json is not None:
            try:
                actual = json.loads(body_text)
            except ValueError:
                problems.append(f"the body is not JSON, expected it to contain {short_json(self.expected_json)}")
            else:
                problems += json_subset_problems(self.expected_json, actual)
        if self.expected_contains is not None and self.expected_contains not in body_text:
            problems.append(f"the body does not contain {self.expected_contains!r}")
        return problems


def json_subset_problems(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Where `actual` does not contain `expected`: dicts by key (extra keys allowed), lists item by item."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {short_json(actual)}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += json_subset_problems(value, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {short_json(expected)}, got {short_json(actual)}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [p for i, (e, a) in pairs for p in json_subset_problems(e, a, f"{path}[{i}]")]
    # bool is an int in Python: true must not match 1
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return [f"{path}: expected {short_json(expected)}, got {short_json(actual)}"]
    return []


def short_json(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return clip_end(text, limit)


class Resources(BaseModel):
    cpu: str = "100m"
    memory: str = "128Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "256Mi"


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(..., description="DNS-1123 service name, e.g. credit-card-validator")
    description: str = ""
    functionality: list[str] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list, description="pip packages")
    base_image: str = "python:3.11-slim"
    port: int = Field(80, ge=1, le=65535, description="Service port")
    target_port: int = Field(5000, ge=1, le=65535, description="container port")
    replicas: int = Field(1, ge=1, le=10)
    resources: Resources = Field(default_factory=Resources)
    endpoints: list[Endpoint] = Field(default_factory=list)
    test_cases: list[TestCase] = Field(default_factory=list)
    slo: SLO | None = Field(None, description="service-level objectives the request states, else null")

    _slo = field_validator("slo", mode="wrap")(lenient_slo)


class Intent(BaseModel):
    request: str  # the user's words, unchanged
    method: str  # the intent method that produced it
    text: str  # what generation is asked to build (the request itself for method "none")
    spec: ServiceSpec | None = None
    # Where the spec came from when the intent method did not write one: "reference:<name>" when the
    # scaffold strategy adopted the nearest reference deployment's spec (and with it its test cases),
    # "generic" when no reference was close and a one-endpoint spec tested only by GET /health was used.
    spec_from: str | None = None
    judge: dict[str, Any] | None = None  # the last llm-as-a-judge verdict, when used
    notes: list[str] = Field(default_factory=list)  # what KubeVibe changed in the model's spec (repeats dropped)
    slo: dict[str, Any] | None = None  # objectives the intent method extracted (kubevibe.slo.SLO as data)

    def for_prompt(self, objectives: str = "") -> str:
        """What the model is told to build; `objectives`: the SLO in force, described (kubevibe.slo.SLO.describe)."""
        text = self.text
        if self.spec is not None:
            text += "\n\nService specification (JSON):\n" + self.spec.model_dump_json(indent=2, exclude={"slo"})
        if objectives:
            text += ("\n\nService-level objectives, checked under load before the service is accepted: "
                     + objectives + ".")
        return text
