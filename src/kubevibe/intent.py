"""What the user wants, as the pipeline understands it: the curated intent and, when asked for, a service spec.

`ServiceSpec` is the structured form of the `json-with-required` intent method. Its endpoints and test cases
are what Connect checks, so a run can say more than "something answered".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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

    def for_prompt(self) -> str:
        if self.spec is None:
            return self.text
        return self.text + "\n\nService specification (JSON):\n" + self.spec.model_dump_json(indent=2)
