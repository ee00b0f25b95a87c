"""Connect: reach the deployed service over HTTP, then check its declared endpoints and test cases.

1. Every Service port: its pods answer HTTP on the targetPort (polled with a short back-off up to a readiness
   deadline). Any answer below 500 counts, a 404 on "/" too: a server answers. 5xx or a refused connection do not.
2. With a service spec (intent method json-with-required): each test case must return its expected status and
   body; each declared endpoint that no test case covers must answer without 5xx, 404 or 405.
Failures carry the request, the response and the container logs, and name the port when nothing answers there.
At the end the logs are kept; the deployment stays up for the stages after Connect (Accept, Load: the runner
owns its lifetime, see fsm.DEPLOYED_STATES).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from kubevibe.intent import Endpoint, TestCase, short_json
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.poll import Backoff
from kubevibe.stages import targeting
from kubevibe.targets import Deployment, DeploymentInfo, TargetFailure
from kubevibe.targets.base import PodInfo, ServicePortInfo, tail_lines

# How long a Service port may take to answer: KUBEVIBE_READY_TIMEOUT (Deploy already waited until it listened).
GIVE_UP_AFTER_S = 3.0  # ...unless the pod demonstrably listens elsewhere for this long (a wrong targetPort)
CHECK_INTERVAL_S = 1.0  # how often the probe asks the target whether waiting still makes sense
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 1.0
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 2.0, 10.0
BODY_LIMIT = 2000  # characters of a response body kept in evidence
LOG_LINES = 40  # container log lines attached to a failure
MAX_FAILURE_EVIDENCE = 5


# --- probing (pure apart from the HTTP call) -------------------------------------------------------------------------


@dataclass
class ProbeResult:
    url: str
    reachable: bool = False
    status: int | None = None
    attempts: int = 0
    elapsed_s: float = 0.0
    error: str | None = None  # the last connection error
    stopped: str | None = None  # why probing ended before the deadline, if it did
    response: httpx.Response | None = field(default=None, repr=False)

    def report(self) -> dict[str, Any]:
        return {"url": self.url, "reachable": self.reachable, "status": self.status, "attempts": self.attempts,
                "elapsed_s": round(self.elapsed_s, 2), "error": self.error, "stopped": self.stopped}  # fmt: skip


def probe(
    client: httpx.Client,
    url: str,
    *,
    deadline: float,
    give_up: Callable[[float], str | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """GET url until an answer below 500 or the deadline (a clock() value).

    give_up(elapsed) is asked about once a second while nothing answers; a reason from it ends probing early
    (the container exited, or the pod listens on another port).
    """
    result = ProbeResult(url=url)
    start = clock()
    backoff = Backoff(deadline=deadline, first=BACKOFF_FIRST_S, maximum=BACKOFF_MAX_S, clock=clock, sleep=sleep)
    next_check = start + CHECK_INTERVAL_S
    while True:
        result.attempts += 1
        try:
            response = client.get(url)
            result.status, result.response, result.error = response.status_code, response, None
            if response.status_code < 500:
                result.reachable = True
                break
        except httpx.HTTPError as exc:
            result.error = _describe_error(exc)
        now = clock()
        result.elapsed_s = now - start
        if now >= deadline:  # checked before give_up, which is not asked once the time is up
            break
        if give_up is not None and now >= next_check:
            next_check = now + CHECK_INTERVAL_S
            reason = give_up(now - start)
            if reason:
                result.stopped = reason
                break
        backoff.wait(now)
    result.elapsed_s = clock() - start
    return result


# What a call to the service may raise: transport errors, and a path the model wrote that is no valid URL.
CALL_ERRORS = (httpx.HTTPError, httpx.InvalidURL)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc}" if str(exc) else "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


# --- checking answers (pure) ----------------------------------------------------------------------------------------


def case_problems(case: TestCase, status: int, body_text: str) -> list[str]:
    return case.problems(status, body_text)


_PATH_PARAM = re.compile(r"\{[^}/]+\}|<[^>/]+>|:[A-Za-z_]\w*")


def endpoint_problem(endpoint: Endpoint, status: int) -> str | None:
    """A declared endpoint must exist: no 5xx, no 405, and no 404 (unless its path has a parameter that our
    placeholder value may not match, e.g. /items/{id} -> /items/1)."""
    if status >= 500:
        return f"server error {status}"
    if status == 405:
        return f"405 Method Not Allowed: the app has no {endpoint.method.upper()} handler for {endpoint.path}"
    if status == 404 and not _PATH_PARAM.search(endpoint.path):
        return f"404 Not Found: the app has no route {endpoint.path}"
    return None


def concrete_path(path: str) -> str:
    """A path template with placeholder values: /items/{id} -> /items/1."""
    path = path if path.startswith("/") else "/" + path
    return _PATH_PARAM.sub("1", path)


def loopback_message(port: int) -> str:
    return (f"the app listens on port {port} on 127.0.0.1 only (loopback), which nothing outside the container "
            "can reach; it must listen on 0.0.0.0")


def listening_in_logs(logs: str) -> list[int]:
    """Ports a server said it listens on (Flask/Werkzeug, uvicorn, gunicorn, http.server, ...)."""
    pattern = re.compile(r"(?:running on|listening (?:at|on)|serving http on|bound to):?\s+\S*?:(\d{2,5})\b", re.I)
    ports: list[int] = []
    for m in pattern.finditer(logs):
        port = int(m.group(1))
        if port not in ports:
            ports.append(port)
    return ports


# --- the stage ------------------------------------------------------------------------------------------------------


@dataclass
class _Failure:
    title: str
    request: str
    response: str
    pod: str | None


class _Checker:
    """One Connect execution: probes, calls, and the failures found, in order."""

    def __init__(self, ctx: RunContext, info: DeploymentInfo, client: httpx.Client, target: Deployment | None):
        self.ctx, self.info, self.client, self.target = ctx, info, client, target  # target: the live deployment
        self.failures: list[_Failure] = []
        self.report: dict[str, Any] = {"ports": [], "base_url": None, "tests": [], "endpoints": []}
        self.base: tuple[str, PodInfo] | None = None  # (base URL, pod) for endpoints and test cases
        self.ports = contextlib.ExitStack()  # what open_port opened (port-forwards), closed after the checks

    # -- step 1: every Service port answers --------------------------------------------------------------------------
    def check_ports(self, wait_s: float) -> None:
        if not self.info.service_ports:
            self.failures.append(_Failure("The manifest has no Service port to connect to.", "", "", None))
            return
        deadline = time.monotonic() + wait_s
        for sp in self.info.service_ports:
            self._check_port(sp, deadline)

    def _check_port(self, sp: ServicePortInfo, deadline: float) -> None:
        where = f"Service {sp.service} port {sp.port}"
        if sp.target_port is None:
            self.failures.append(_Failure(f"{where}: its targetPort names no containerPort of the pods it selects.",
                                          "", "", None))  # fmt: skip
            return
        pods = self.info.pods_for(sp)
        if not pods:
            labels = "; ".join(f"{p.name}: {_labels(p.labels)}" for p in self.info.pods) or "no pods"
            self.failures.append(_Failure(f"{where}: its selector {_labels(sp.selector)} matches no pod "
                                          f"(pod labels: {labels}).", "", "", None))  # fmt: skip
            return
        for pod in pods:
            if not pod.ip:
                self.failures.append(_Failure(f"{where}: pod {pod.name} has no address on network "
                                              f"{self.info.network}.", "", "", pod.name))  # fmt: skip
                continue
            try:
                url = self._open_port(pod, sp.target_port) + "/"
            except TargetFailure as failure:  # e.g. a port-forward to a pod that is gone
                self.failures.append(_Failure(f"{where}: pod {pod.name} cannot be reached: {failure.summary}",
                                              "", "", pod.name))  # fmt: skip
                continue
            give_up = self._give_up(pod, sp.target_port) if self.target else None
            result = probe(self.client, url, deadline=deadline, give_up=give_up)
            self.report["ports"].append({"service": sp.service, "port": sp.port, "target_port": sp.target_port,
                                         "pod": pod.name, **result.report()})  # fmt: skip
            if result.reachable:
                self.base = self.base or (url.rstrip("/"), pod)
            else:
                self.failures.append(self._port_failure(sp, pod, result))

    def _open_port(self, pod: PodInfo, port: int) -> str:
        """The base URL of `port` of `pod` from here, open until `self.ports` closes (the target decides how)."""
        if self.target is None:
            return f"http://{pod.ip}:{port}"
        return self.ports.enter_context(self.target.open_port(pod, port))

    def _give_up(self, pod: PodInfo, port: int) -> Callable[[float], str | None]:
        """Stop waiting when the container exited, or when the pod has listened only on other ports for a while."""

        assert self.target is not None

        def check(elapsed: float) -> str | None:
            self.info = self.target.status()
            crashed = [c for c in self.info.containers_of(pod.name) if c.failed]
            if crashed:
                return f"container {crashed[0].name} exited with code {crashed[0].exit_code}"
            current = next((p for p in self.info.pods if p.name == pod.name), None)
            if current and port in current.loopback_only:
                return loopback_message(port)
            if current and current.listening and port not in current.listening and elapsed >= GIVE_UP_AFTER_S:
                return f"the pod listens on {_ports(current.listening)}, not on {port}"
            return None

        return check

    def _port_failure(self, sp: ServicePortInfo, pod: PodInfo, result: ProbeResult) -> _Failure:
        where = f"(Service {sp.service} targetPort {sp.target_port})"
        if result.status is not None and result.status >= 500:
            title = f"port {sp.target_port} of pod {pod.name} answers GET / with {result.status} {where}"
        else:
            title = f"nothing answers on port {sp.target_port} of pod {pod.name} {where}"
            current = next((p for p in self.info.pods if p.name == pod.name), pod)
            if sp.target_port in current.loopback_only:
                title += f"; {loopback_message(sp.target_port)}"
            elif current.listening:
                title += f"; the pod listens on {_ports(current.listening)}"
        response = _describe_response(result.response) if result.response is not None else f"none ({result.error})"
        request = f"GET {result.url} ({result.attempts} attempts over {result.elapsed_s:.1f}s)"
        if result.stopped:
            request += f"; stopped waiting because {result.stopped}"
        return _Failure(title, request, response, pod.name)

    # -- step 2: test cases, then endpoints no test case covers -------------------------------------------------------
    def check_spec(self, spec: dict[str, Any] | None, *, run_cases: bool = True) -> None:
        """run_cases=False: the spec's test cases are the run's acceptance tests, which Accept runs next on this same
        deployment; running them here too would show a stateful service each request twice (a second create gets
        id 2, not 1) and fail a correct service."""
        if not spec or self.base is None:
            return
        base, pod = self.base
        self.report["base_url"] = base
        cases = _parse_list(spec.get("test_cases"), TestCase)
        for case in cases if run_cases else []:
            self._check_case(base, pod, case)
        covered = {(c.method.upper(), concrete_path(c.path)) for c in cases}
        for endpoint in _parse_list(spec.get("endpoints"), Endpoint):
            if (endpoint.method.upper(), concrete_path(endpoint.path)) not in covered:
                self._check_endpoint(base, pod, endpoint)

    def _check_case(self, base: str, pod: PodInfo, case: TestCase) -> None:
        name = case.name or f"{case.method.upper()} {case.path}"
        url = base + concrete_path(case.path)
        request = _describe_request(case.method, url, case.body)
        entry: dict[str, Any] = {"name": name, "method": case.method.upper(), "path": case.path}
        try:
            response = self._call(case.method, url, case.body)
        except CALL_ERRORS as exc:
            entry.update(passed=False, problems=[_describe_error(exc)])
            self.failures.append(_Failure(f"test case {name!r}: {_describe_error(exc)}", request, "", pod.name))
        else:
            problems = case_problems(case, response.status_code, response.text)
            entry.update(status=response.status_code, passed=not problems, problems=problems)
            if problems:
                self.failures.append(_Failure(f"test case {name!r} failed: {'; '.join(problems)}", request,
                                              _describe_response(response), pod.name))  # fmt: skip
        self.report["tests"].append(entry)

    def _check_endpoint(self, base: str, pod: PodInfo, endpoint: Endpoint) -> None:
        method = endpoint.method.upper()
        body = {} if method in ("POST", "PUT", "PATCH") else None  # some JSON, so a handler can answer 400
        url = base + concrete_path(endpoint.path)
        entry: dict[str, Any] = {"method": method, "path": endpoint.path}
        try:
            response = self._call(method, url, body)
        except CALL_ERRORS as exc:
            problem, status, text = _describe_error(exc), None, ""
        else:
            problem, status = endpoint_problem(endpoint, response.status_code), response.status_code
            text = _describe_response(response)
        entry.update(status=status, passed=problem is None, problem=problem)
        if problem:
            self.failures.append(_Failure(f"declared endpoint {method} {endpoint.path}: {problem}",
                                          _describe_request(method, url, body), text, pod.name))  # fmt: skip
        self.report["endpoints"].append(entry)

    def _call(self, method: str, url: str, body: Any) -> httpx.Response:
        if body is None:
            return self.client.request(method.upper(), url)
        return self.client.request(method.upper(), url, json=body)

    # -- evidence ----------------------------------------------------------------------------------------------------
    def evidence(self, logs: dict[str, str]) -> list[Evidence]:
        out = []
        for failure in self.failures[:MAX_FAILURE_EVIDENCE]:
            detail = []
            if failure.request:
                detail.append("request: " + failure.request)
            if failure.response:
                detail.append("response: " + failure.response)
            pod_logs = {k: v for k, v in logs.items() if failure.pod and k.startswith(failure.pod + "/")}
            for key, text in pod_logs.items():
                said = listening_in_logs(text)
                if said:  # the logs are read after probing ended: say so, or the evidence contradicts itself
                    detail.append(f"the container logs of {key}, read after probing ended, show it listening on "
                                  f"{_ports(said)}")
                tail = tail_lines(text, LOG_LINES) or "(empty)"
                detail.append(f"container logs of {key} (last {LOG_LINES} lines):\n{tail}")
            out.append(Evidence(kind="http", title=failure.title, detail="\n".join(detail)))
        if len(self.failures) > MAX_FAILURE_EVIDENCE:
            out.append(Evidence(kind="note", title=f"{len(self.failures) - MAX_FAILURE_EVIDENCE} more failures",
                                detail="\n".join(f.title for f in self.failures[MAX_FAILURE_EVIDENCE:])))
        return out


def http_client() -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not swallow requests to pod addresses.
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    return httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)


def run(ctx: RunContext) -> StageResult:
    deployment = targeting.deployment(ctx, "Connect")
    spec = (ctx.state.intent or {}).get("spec")
    # The deployment stays up: the runner tears it down once the run leaves the states that need it.
    with http_client() as client:
        checker = _Checker(ctx, deployment.info, client, deployment)
        with checker.ports:
            checker.check_ports(ctx.timeout(ctx.settings.ready_timeout))
            checker.check_spec(spec, run_cases=not _cases_are_acceptance_tests(ctx))
    logs = deployment.logs(ctx.stage_dir / "logs")
    report = checker.report
    if checker.base is not None:
        report["base_pod"] = checker.base[1].name  # where Accept sends its tests
    tests = report["tests"]
    passed = sum(1 for t in tests if t.get("passed"))
    if checker.failures:
        return StageResult.failed(f"Connect failed: {checker.failures[0].title}", evidence=checker.evidence(logs),
                                  updates={"connect_report": report})  # fmt: skip
    endpoints = len(report["endpoints"])
    summary = f"Reachable at {report['ports'][0]['url']}"
    if tests:
        summary += f"; {passed}/{len(tests)} test cases passed"
    if endpoints:
        summary += f"; {endpoints} more declared endpoints answered"
    verified = {"reachable": True, "tests_passed": passed, "tests_total": len(tests), "endpoints_checked": endpoints}
    return StageResult.ok(
        summary,
        updates={"connect_report": report, "verified": verified},
        metrics={"probe_s": round(sum(p["elapsed_s"] for p in report["ports"]), 2)},
    )


def _cases_are_acceptance_tests(ctx: RunContext) -> bool:
    """The acceptance tests are (or, at Accept's first run, will be) the spec's own test cases: the adopted
    reference's or the intent's (see acceptance.sources.choose_at_accept: only the test writer's come first)."""
    if ctx.state.acceptance:
        return ctx.state.acceptance.get("source") in ("reference", "intent")
    return not (ctx.state.test_writer or {}).get("tests")


def _parse_list(items: Any, model: type) -> list:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and model is Endpoint:  # "POST /validate" written as text
            method, _, path = item.strip().partition(" ")
            item = {"method": method, "path": path.strip()} if path else {"path": method}
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            continue  # the spec was validated when the intent was made; skip what cannot be a call
    return out


def _describe_request(method: str, url: str, body: Any) -> str:
    text = f"{method.upper()} {url}"
    if body is not None:
        text += " with JSON body " + short_json(body, 500)
    return text


KEPT_HEADERS = ("content-type", "content-length", "location", "server", "allow")


def _describe_response(response: httpx.Response) -> str:
    headers = ", ".join(f"{k}: {response.headers[k]}" for k in KEPT_HEADERS if k in response.headers)
    body = response.text
    if len(body) > BODY_LIMIT:
        body = body[:BODY_LIMIT] + f"... [{len(response.text) - BODY_LIMIT} more characters]"
    status = f"{response.status_code} {response.reason_phrase}" + (f" ({headers})" if headers else "")
    return f"{status}\nbody: {body.strip() or '(empty)'}"


def _ports(ports: list[int]) -> str:
    return ("port " if len(ports) == 1 else "ports ") + ", ".join(str(p) for p in ports)


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in labels.items()) + "}"
