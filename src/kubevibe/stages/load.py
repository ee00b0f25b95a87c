"""Load: offer the objectives' load to the live deployment, measure it, and check the objectives.

1. The objectives in force: `--slo FILE` (RunState.slo), else what the intent method extracted (intent.slo). With
   none, a short measurement still runs (DEFAULT_RPS for DEFAULT_DURATION_S) so the chart's resources come from
   measured use; it fails only if the service crashes under it.
2. Requests: the acceptance tests' (`<run>/acceptance/acceptance.tavern.yaml`), else the intent's test cases, else
   `GET /` (kubevibe.load.plan). Traffic goes to a loopback address only: the target's open_port (the local
   engine's published 127.0.0.1 port, or a port-forward on a cluster); anything else is refused.
3. Locust runs headless in a subprocess of its own (kubevibe.load.worker: it monkey-patches the process it runs
   in), bounded in seconds and in requests; meanwhile the target is read for every container's CPU and memory.
4. A missed objective (or a crash) fails with the measured figures, the errors by status, CPU and memory against
   the limits, and what server process served the requests, so Fix can act.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubevibe
from kubevibe import exec as kexec
from kubevibe.errors import KubeVibeError
from kubevibe.load.plan import REQUEST_TIMEOUT_S, choose_requests, is_loopback_url, make_job
from kubevibe.load.report import LoadReport, errors_text, evaluate, server_process, summarise_requests, \
    summarise_usage
from kubevibe.manifests import ManifestError, containers, load_manifest, workloads
from kubevibe.pipeline.artifacts import MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.slo import effective_slo
from kubevibe.stages import targeting
from kubevibe.targets import Deployment, DeploymentInfo
from kubevibe.targets.base import ContainerUsage, PodInfo, ServicePortInfo, tail_lines

DEFAULT_RPS, DEFAULT_DURATION_S = 5.0, 3.0  # the measurement made when no objectives are stated
USAGE_INTERVAL_S = 1.0  # between two readings of the containers' resource use
WORKER_SLACK_S = 60.0  # the load generator's own start-up and shutdown, on top of the load and a last request
LOG_LINES = 30


def run(ctx: RunContext) -> StageResult:
    stage_started = time.monotonic()
    deployment = targeting.deployment(ctx, "Load")
    info = deployment.info
    slo, slo_source = effective_slo(ctx.state.slo, ctx.state.intent)
    rps, duration = (slo.load.rps, slo.load.duration_s) if slo else (DEFAULT_RPS, DEFAULT_DURATION_S)
    port, pod = _main_port(info)
    requests, requests_from = choose_requests(ctx.rundir.path, (ctx.state.intent or {}).get("spec"))

    with deployment.open_port(pod, port.target_port) as base_url:  # type: ignore[arg-type]
        if not is_loopback_url(base_url):
            raise KubeVibeError(f"The {deployment.target.name} target offers {base_url} for port {port.target_port} of pod "
                                f"{pod.name}, not a loopback address; load is sent to 127.0.0.1 only.")
        job = make_job(base_url, requests, rps, duration)
        job_file = ctx.stage_dir / "load-job.json"
        job_file.write_text(job.model_dump_json(indent=2), encoding="utf-8")
        worked = _run_worker(ctx, deployment, job_file)
        if worked is None:  # the run's TIMEOUT cut the measurement: the runner ends the run on its time limit
            return StageResult.failed("Load was cut short by the run's time limit (TIMEOUT) before it could "
                                      f"measure {duration:g}s at {rps:g} rps")  # fmt: skip
        result, readings = worked

    after = deployment.status()
    logs = deployment.logs(ctx.stage_dir / "logs")
    report = LoadReport(requests_from=requests_from, base_url=base_url, offered_rps=rps, duration_s=duration)
    summarise_requests(job, result, report)
    summarise_usage(readings, report)
    report.crashed = [f"{c.pod}/{c.name}" for c in after.containers if c.failed]
    report.server_process = server_process(logs, report.servers)
    evaluate(report, slo, slo_source)
    report.stage_s = round(time.monotonic() - stage_started, 3)
    (ctx.stage_dir / "load.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")

    data = report.model_dump(mode="json")
    metrics = {"p50_ms": report.p50_ms, "p95_ms": report.p95_ms, "p99_ms": report.p99_ms,
               "achieved_rps": report.achieved_rps, "error_rate": report.error_rate,
               "peak_memory_mib": report.peak_memory_mib, "peak_cpu": report.peak_cpu, "load_s": report.load_s,
               "overhead_s": round(report.stage_s - report.load_s, 3)}
    if report.met is False:
        summary = f"Load: objectives missed: {'; '.join(report.missed)}"
        return StageResult.failed(summary, evidence=_evidence(ctx, report, after, logs),
                                  updates={"load_report": data}, metrics=metrics)  # fmt: skip
    what = f"objectives met ({slo.describe()})" if report.met else "no objectives stated; measured"
    return StageResult.ok(f"Load: {what}: {report.figures()}", updates={"load_report": data}, metrics=metrics)


def _main_port(info: DeploymentInfo) -> tuple[ServicePortInfo, PodInfo]:
    """The first Service port with a pod behind it: the one Connect reached first."""
    for sp in info.service_ports:
        pods = info.pods_for(sp) if sp.target_port is not None else []
        if pods:
            return sp, pods[0]
    raise KubeVibeError("Load found no Service port with a pod behind it, although Connect passed.")


def _run_worker(ctx: RunContext, deployment: Deployment,
                job_file: Path) -> tuple[dict[str, Any], list[tuple[float, list[ContainerUsage]]]] | None:
    """Run the load generator in its own process while a thread reads the containers' resource use. None: the
    run's deadline, not the generator, ended it (a tool error would wrongly blame locust)."""
    job = json.loads(job_file.read_text(encoding="utf-8"))
    result_file = job_file.with_name("load-result.json")
    readings: list[tuple[float, list[ContainerUsage]]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            try:
                usage = deployment.usage()
            except Exception:  # noqa: BLE001 - a reading is best effort; the load goes on without it
                usage = None
            if usage:
                readings.append((time.monotonic() - started, usage))
            stop.wait(USAGE_INTERVAL_S)

    sampler = threading.Thread(target=sample, name="load-usage", daemon=True)
    sampler.start()
    # The package's own parent first on the path: the worker imports this very kubevibe, however it was found.
    package_root = str(Path(kubevibe.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    wanted = float(job["duration_s"]) + 2 * REQUEST_TIMEOUT_S + WORKER_SLACK_S
    try:
        worker = kexec.run([sys.executable, "-m", "kubevibe.load.worker", str(job_file), str(result_file)],
                           timeout=ctx.timeout(wanted), env={"PYTHONPATH": python_path}, log_file=ctx.log_file)
    finally:
        stop.set()
        sampler.join(timeout=30)
    if worker.timed_out and ctx.remaining() <= 0.5:
        return None
    if not worker.ok or not result_file.is_file():
        raise KubeVibeError(f"The load generator failed: {worker.describe()}: "
                            f"{tail_lines(worker.stderr or worker.stdout, 3)}",
                            f"Its output is in {ctx.log_file}; locust must be installed (pip install locust).")
    return json.loads(result_file.read_text(encoding="utf-8")), readings


def _manifest_resources(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Container name -> its resources in the manifest (requests and limits as written)."""
    try:
        docs = load_manifest(ctx.artifacts.get(MANIFEST))
    except ManifestError:
        return {}
    out = {}
    for doc in workloads(docs):
        for c in containers(doc):
            if isinstance(c.get("resources"), dict):
                out[str(c.get("name"))] = c["resources"]
    return out


def _evidence(ctx: RunContext, report: LoadReport, info: DeploymentInfo, logs: dict[str, str]) -> list[Evidence]:
    lines = [f"measured: {report.figures()}",
             f"requests from: {report.requests_from} (to {report.base_url}, {report.users} concurrent users)",
             f"errors by status: {errors_text(report)}"]
    if report.error_texts:
        lines.append("errors without an answer: " + "; ".join(f"{n} x {t}" for t, n in report.error_texts.items()))
    declared = _manifest_resources(ctx)
    for c in report.containers:
        res = declared.get(c.container, {})
        lines.append(
            f"container {c.pod}/{c.container}: peak memory {c.peak_memory_mib} MiB (manifest requests "
            f"{(res.get('requests') or {}).get('memory', 'none')}, limits {(res.get('limits') or {}).get('memory', 'none')}"
            f"; the engine enforced {c.memory_limit_mib} MiB), CPU average {c.avg_cpu} peak {c.peak_cpu} cores "
            f"(manifest limits {(res.get('limits') or {}).get('cpu', 'none')})")
    if report.server_process:
        lines.append(f"served by: {report.server_process}")
    if report.crashed:
        lines.append("container states after the load:\n" + info.describe_states())
    out = [Evidence(kind="load", title="objectives missed under load: " + "; ".join(report.missed),
                    detail="\n".join(lines))]
    for key, text in logs.items():
        if text.strip():
            out.append(Evidence(kind="log", title=f"container logs of {key} after the load (last {LOG_LINES} lines)",
                                stdout=tail_lines(text, LOG_LINES)))
    return out
