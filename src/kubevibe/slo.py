"""Service-level objectives: what a run must meet under load, from `--slo FILE` or from the request text.

The file is one YAML document:

    load: {rps: 20, duration_s: 10}        # offered load
    latency_ms: {p95: 100, p99: 250}       # percentiles to meet at that load (p50 too)
    error_rate_max: 0.01                   # non-2xx/3xx share, timeouts included
    memory_mib_max: 256                    # peak resident memory under load (optional)

A stated `--slo` wins over objectives the intent method extracted from the request (`effective_slo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubevibe.errors import UsageError

# Bounds that keep a load run short and gentle on a shared machine whatever a file or a model says.
MAX_RPS = 500.0
MAX_DURATION_S = 300.0


class OfferedLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rps: float = Field(10.0, gt=0, le=MAX_RPS, description="requests per second offered")
    duration_s: float = Field(10.0, gt=0, le=MAX_DURATION_S, description="seconds the load lasts")


class LatencyObjectives(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50: float | None = Field(None, gt=0, description="median latency, milliseconds")
    p95: float | None = Field(None, gt=0, description="95th percentile latency, milliseconds")
    p99: float | None = Field(None, gt=0, description="99th percentile latency, milliseconds")

    def stated(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SLO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    load: OfferedLoad = Field(default_factory=OfferedLoad)
    latency_ms: LatencyObjectives = Field(default_factory=LatencyObjectives)
    error_rate_max: float | None = Field(None, ge=0, le=1, description="largest share of failed requests")
    memory_mib_max: float | None = Field(None, gt=0, description="largest peak memory of a container, MiB")

    def has_objectives(self) -> bool:
        return bool(self.latency_ms.stated()) or self.error_rate_max is not None or self.memory_mib_max is not None

    def describe(self) -> str:
        parts = [f"{name} <= {value:g} ms" for name, value in self.latency_ms.stated().items()]
        if self.error_rate_max is not None:
            parts.append(f"error rate <= {self.error_rate_max:g}")
        if self.memory_mib_max is not None:
            parts.append(f"peak memory <= {self.memory_mib_max:g} MiB")
        objectives = ", ".join(parts) or "no objectives"
        return f"{objectives} at {self.load.rps:g} rps for {self.load.duration_s:g} s"


def _field_path(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "(the document)"


def _reason(error: dict[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "is not a known field (known: load.rps, load.duration_s, latency_ms.p50/p95/p99, error_rate_max, " \
               "memory_mib_max)"
    message = str(error.get("msg", "is invalid"))
    return message[0].lower() + message[1:] if message else "is invalid"


def parse_slo(data: Any, where: str) -> SLO:
    """An SLO from loaded YAML/JSON data; a UsageError naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise UsageError(f"The SLO file {where} must be a YAML mapping with load, latency_ms, error_rate_max "
                         "or memory_mib_max.")
    try:
        return SLO.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise UsageError(f"The SLO file {where}: field {_field_path(error)} {_reason(error)}.") from None


def load_slo_file(path: Path) -> SLO:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot read the SLO file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise UsageError(f"The SLO file {path} is not UTF-8 text.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"The SLO file {path} is not valid YAML{where}.") from None
    return parse_slo(data, str(path))


def extracted_slo(intent: dict[str, Any] | None) -> SLO | None:
    """The objectives an intent method wrote (intent["slo"], or its spec's), if usable. A model's bad values are
    dropped (the run goes on without them), never an error."""
    intent = intent or {}
    for raw in (intent.get("slo"), (intent.get("spec") or {}).get("slo")):
        if isinstance(raw, dict):
            try:
                slo = SLO.model_validate(raw)
            except ValidationError:
                continue
            if slo.has_objectives():
                return slo
    return None


def effective_slo(stated: dict[str, Any] | None, intent: dict[str, Any] | None) -> tuple[SLO | None, str | None]:
    """(the objectives in force, where they came from: "file" or "intent"). A stated --slo wins."""
    if stated:
        return SLO.model_validate(stated), "file"
    slo = extracted_slo(intent)
    return (slo, "intent") if slo else (None, None)


def objectives_text(stated: dict[str, Any] | None, intent: dict[str, Any] | None) -> str:
    """The SLO in force, described for a prompt ("" when none)."""
    slo, _source = effective_slo(stated, intent)
    return slo.describe() if slo is not None else ""
