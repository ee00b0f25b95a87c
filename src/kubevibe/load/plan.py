"""What a load run sends, where, and for how long. Pure: no Locust here (see worker.py).

Requests come from the acceptance tests of the run (`<run>/acceptance/acceptance.tavern.yaml`, every stage whose
url is `{base_url}/...`), else from the intent's declared test cases, else one `GET /`. Each keeps the status
its test expects, so a request a test expects to answer 400 does not count as an error under load.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field

ACCEPTANCE_FILE = Path("acceptance") / "acceptance.tavern.yaml"
REQUEST_TIMEOUT_S = 5.0  # one request; a slower answer is a timeout, counted as an error
MAX_USERS = 200
BUDGET_FACTOR = 1.2  # the request budget: offered rps x duration, with room for pacing jitter
_FORMAT_VARIABLE = re.compile(r"(?<!\{)\{(?!\{)([^{}]*)\}(?!\})")


class LoadRequest(BaseModel):
    method: str = "GET"
    path: str = "/"
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    expected_status: int | None = None  # the status its test expects, when it came from a test

    def label(self) -> str:
        return f"{self.method} {self.path}"


class LoadJob(BaseModel):
    base_url: str
    requests: list[LoadRequest]
    rps: float = Field(gt=0)
    duration_s: float = Field(gt=0)
    max_requests: int = Field(ge=1)
    request_timeout_s: float = REQUEST_TIMEOUT_S
    max_users: int = MAX_USERS


def make_job(base_url: str, requests: list[LoadRequest], rps: float, duration_s: float) -> LoadJob:
    if not is_loopback_url(base_url):
        raise ValueError(f"load goes to loopback addresses only, not to {base_url}")
    budget = max(1, math.ceil(rps * duration_s * BUDGET_FACTOR))
    return LoadJob(base_url=base_url.rstrip("/"), requests=requests or [LoadRequest()], rps=rps,
                   duration_s=duration_s, max_requests=budget)


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- where the requests come from --------------------------------------------------------------------------------


def requests_from_tavern(text: str) -> list[LoadRequest]:
    """Every stage request of a (multi-document) Tavern file whose url is `{base_url}/...` and that needs no other
    format variable; literal braces (`{{`) are un-doubled as Tavern does."""
    out = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        for stage in doc.get("stages") or []:
            request = stage.get("request") if isinstance(stage, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("url"), str):
                continue
            url = request["url"].strip()
            if not url.startswith("{base_url}"):
                continue
            path = url.removeprefix("{base_url}") or "/"
            body = request.get("json")
            if any(_needs_variables(v) for v in (path, body, request.get("headers"))):
                continue
            response = stage.get("response") if isinstance(stage.get("response"), dict) else {}
            status = response.get("status_code")
            out.append(LoadRequest(
                method=str(request.get("method") or "GET").upper(),
                path=_unescape(path if path.startswith("/") else "/" + path),
                body=_unescape(body),
                headers={str(k): str(_unescape(v)) for k, v in (request.get("headers") or {}).items()},
                expected_status=status if isinstance(status, int) else None,
            ))
    return out


def _needs_variables(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_FORMAT_VARIABLE.search(value))
    if isinstance(value, dict):
        return any(_needs_variables(k) or _needs_variables(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_needs_variables(v) for v in value)
    return False


def _unescape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{{", "{").replace("}}", "}")
    if isinstance(value, dict):
        return {_unescape(k): _unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


def requests_from_spec(spec: dict[str, Any] | None) -> list[LoadRequest]:
    """The intent's declared test cases (what Connect checked), as requests."""
    from kubevibe.intent import TestCase
    from kubevibe.stages.connect import concrete_path

    out = []
    for raw in (spec or {}).get("test_cases") or []:
        try:
            case = TestCase.model_validate(raw)
        except ValueError:
            continue
        out.append(LoadRequest(method=case.method.upper(), path=concrete_path(case.path), body=case.body,
                               expected_status=case.expected_status))
    return out


def choose_requests(run_dir: Path, spec: dict[str, Any] | None) -> tuple[list[LoadRequest], str]:
    """(the requests, where they came from: "acceptance", "intent" or "GET /")."""
    acceptance = run_dir / ACCEPTANCE_FILE
    if acceptance.is_file():
        try:
            found = requests_from_tavern(acceptance.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            found = []
        if found:
            return found, "acceptance"
    found = requests_from_spec(spec)
    if found:
        return found, "intent"
    return [LoadRequest()], "GET /"
