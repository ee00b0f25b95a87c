"""Accept: run the acceptance tests (a Tavern file) against the live deployment.

The tests are frozen in <run>/acceptance/acceptance.tavern.yaml (see kubevibe.acceptance.sources); Fix never
changes them. Each failing test becomes evidence for Fix: its name, the request, the expected and the actual
response, and Tavern's own message. With no tests at all the stage passes and says so; the verdict then keeps the
run `unverified`.
"""

from __future__ import annotations

from typing import Any

from kubevibe.acceptance import sources
from kubevibe.acceptance.execute import TavernRun, TestOutcome, run_tavern
from kubevibe.acceptance.tavern_file import TavernFileError, describe_stage, load_tests
from kubevibe.errors import KubeVibeError
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages import targeting
from kubevibe.targets import DeploymentInfo, TargetFailure
from kubevibe.targets.base import tail_lines

TAVERN_TIMEOUT_S = 300.0
MAX_FAILURE_EVIDENCE = 5
LOG_LINES = 30


def run(ctx: RunContext) -> StageResult:
    deployment = targeting.deployment(ctx, "Accept")
    acceptance = ctx.state.acceptance or sources.choose_at_accept(ctx.rundir.path, ctx.state.intent,
                                                                   ctx.state.test_writer)
    if acceptance is None:
        return StageResult.ok("no acceptance tests: nothing checked the service against the request",
                              updates={"verified": {"accepted": False}})  # fmt: skip
    updates: dict[str, Any] = {"acceptance": acceptance}
    test_file = ctx.rundir.path / acceptance["file"]
    docs = load_tests(test_file.read_text(encoding="utf-8"), trusted=True)  # checked when it was frozen
    pod, port = _base_pod_port(ctx, deployment.info)
    try:
        with deployment.open_port(pod, port) as base_url:
            tavern = run_tavern(test_file, base_url, ctx.stage_dir / "tavern",
                                ctx.timeout(min(TAVERN_TIMEOUT_S, ctx.settings.stage_timeout)))
    except TargetFailure as failure:
        return StageResult.failed(f"Accept cannot reach the service: {failure.summary}",
                                  evidence=failure.evidence, updates=updates)  # fmt: skip
    report = _report(acceptance, tavern, base_url)
    updates["accept_report"] = report
    passed, total = tavern.passed, len(docs)
    verified = {"acceptance": {"passed": passed, "total": total, "source": acceptance["source"]}}
    summary = f"{passed}/{total} acceptance tests ({acceptance['source']}) passed"
    if passed == total and len(tavern.outcomes) == total:
        return StageResult.ok(summary, updates={**updates, "verified": verified},
                              metrics={"tests": total, "passed": passed})  # fmt: skip
    logs = deployment.logs(ctx.stage_dir / "logs")
    evidence = _evidence(tavern, docs, base_url, logs)
    failing = next((o.name for o in tavern.outcomes if not o.passed), None)
    if failing is None:  # no per-test results: Tavern itself could not run the file
        summary = f"the acceptance tests could not be run (pytest exit code {tavern.exit_code})"
    else:
        summary += f"; first failure: {failing!r}"
    return StageResult.failed(summary, evidence=evidence, updates={**updates, "verified": verified},
                              metrics={"tests": total, "passed": passed})  # fmt: skip


def _base_pod_port(ctx: RunContext, info: DeploymentInfo):
    """The pod and port that Connect found answering."""
    report = ctx.state.connect_report or {}
    for entry in report.get("ports") or []:
        if entry.get("reachable"):
            pod = next((p for p in info.pods if p.name == entry.get("pod")), None)
            if pod is not None:
                return pod, int(entry["target_port"])
    raise KubeVibeError("Accept has no reachable port: Connect has not succeeded on this deployment.")


def _report(acceptance: dict[str, Any], tavern: TavernRun, base_url: str) -> dict[str, Any]:
    return {"source": acceptance["source"], "file": acceptance["file"], "base_url": base_url,
            "exit_code": tavern.exit_code, "timed_out": tavern.timed_out,
            "tests": [{"name": o.name, "passed": o.passed, "skipped": o.skipped} for o in tavern.outcomes]}


def _evidence(tavern: TavernRun, docs: list[dict[str, Any]], base_url: str, logs: dict[str, str]) -> list[Evidence]:
    by_name = {d["test_name"]: d for d in docs}
    failures = [o for o in tavern.outcomes if not o.passed and not o.skipped]
    out = [_test_evidence(o, by_name.get(o.name), base_url) for o in failures[:MAX_FAILURE_EVIDENCE]]
    if len(failures) > MAX_FAILURE_EVIDENCE:
        out.append(Evidence(kind="note", title=f"{len(failures) - MAX_FAILURE_EVIDENCE} more acceptance tests failed",
                            detail="\n".join(o.name for o in failures[MAX_FAILURE_EVIDENCE:])))
    if not tavern.outcomes:
        out.append(Evidence(kind="command", title="Tavern could not run the acceptance tests",
                            command=tavern.command, exit_code=tavern.exit_code, stdout=tavern.output))
    for key, text in logs.items():
        out.append(Evidence(kind="log", title=f"container logs of {key} (last {LOG_LINES} lines)",
                            detail=tail_lines(text, LOG_LINES) or "(empty)"))
    return out


def _test_evidence(outcome: TestOutcome, doc: dict[str, Any] | None, base_url: str) -> Evidence:
    detail = []
    stages = (doc or {}).get("stages") or []
    index = max(0, len(outcome.exchanges) - 1)  # the failing stage is the last one that got an answer
    if index < len(stages) and isinstance(stages[index], dict):
        request, expected = describe_stage(stages[index], base_url)
        detail += [f"request: {request}", f"expected: {expected}"]
    if outcome.exchanges:
        last = outcome.exchanges[-1]
        detail.append(f"actual: status {last.get('status')}, body: {(last.get('body') or '').strip() or '(empty)'}")
    else:
        detail.append("actual: no response was received")
    message = outcome.message
    if "Errors:" in message:
        message = message[message.rindex("Errors:"):]
    detail.append("Tavern: " + message.strip())
    return Evidence(kind="http", title=f"acceptance test {outcome.name!r} failed", detail="\n".join(detail))
