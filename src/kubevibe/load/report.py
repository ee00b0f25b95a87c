"""What a load run measured, and whether it meets the objectives. Pure: figures in, figures and verdicts out.

Latency percentiles are over the requests that got an answer (nearest rank); a request without an answer (a
timeout, a refused connection) counts as an error, and so does an answer outside 2xx/3xx unless it is the status
the request's test expects. CPU use of a container is the rate of its CPU time between two engine readings
(cores); memory is the engine's reading of its resident use.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from kubevibe.load.plan import LoadJob
from kubevibe.slo import SLO
from kubevibe.targets.base import ContainerUsage

MIB = 1024 * 1024
# A load the service cannot keep up with is a missed objective: under this share of the offered rate.
MIN_ACHIEVED_SHARE = 0.8
# Resources sized from measurement: limits are the measured peak times this margin (requests: the peak itself).
LIMIT_MARGIN = 2.0
MIN_CPU_MILLI, MIN_MEMORY_MIB = 10, 16


class ContainerLoad(BaseModel):
    pod: str
    container: str
    readings: int = 0
    peak_memory_mib: float | None = None
    memory_limit_mib: float | None = None  # what the engine enforced (the host's memory when no limit)
    avg_cpu: float | None = None  # cores over the load
    peak_cpu: float | None = None  # cores, the busiest interval between two readings


class LoadReport(BaseModel):
    requests_from: str
    base_url: str
    offered_rps: float
    duration_s: float
    users: int = 0
    sent: int = 0
    answered: int = 0
    achieved_rps: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    error_rate: float = 0.0
    errors_by_status: dict[str, int] = Field(default_factory=dict)  # "500": 3, "timeout": 1, "connection": 2
    error_texts: dict[str, int] = Field(default_factory=dict)
    servers: list[str] = Field(default_factory=list)  # Server headers seen
    server_process: str | None = None  # what the logs say served it (e.g. "Werkzeug development server")
    containers: list[ContainerLoad] = Field(default_factory=list)
    peak_memory_mib: float | None = None
    peak_cpu: float | None = None
    crashed: list[str] = Field(default_factory=list)  # containers that exited or restarted during the load
    objectives: dict[str, Any] | None = None  # the SLO in force (kubevibe.slo.SLO as data)
    objectives_from: str | None = None  # "file" or "intent"
    met: bool | None = None  # None: no objectives stated
    missed: list[str] = Field(default_factory=list)
    load_s: float = 0.0  # the load itself
    stage_s: float = 0.0  # the whole LOAD stage (load generator start-up, readings, logs included)

    def figures(self) -> str:
        """One line of the measured figures, for summaries and evidence."""
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0f} ms"
        text = (f"offered {self.offered_rps:g} rps for {self.duration_s:g} s, achieved {self.achieved_rps:.1f} rps; "
                f"p50 {ms(self.p50_ms)}, p95 {ms(self.p95_ms)}, p99 {ms(self.p99_ms)}; "
                f"error rate {self.error_rate:.1%} ({self.sent} requests)")
        if self.peak_memory_mib is not None:
            text += f"; peak memory {self.peak_memory_mib:.1f} MiB"
        if self.peak_cpu is not None:
            text += f", peak CPU {self.peak_cpu:.2f} cores"
        return text


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def is_error(status: int, expected: int | None) -> bool:
    if status == 0:
        return True
    if 200 <= status < 400:
        return False
    return status != expected


def summarise_requests(job: LoadJob, result: dict[str, Any], report: LoadReport) -> None:
    samples = result.get("samples") or []
    report.users = int(result.get("users") or 0)
    report.sent = len(samples)
    report.load_s = float(result.get("load_s") or 0.0)
    answered = [s for s in samples if s[2]]
    report.answered = len(answered)
    latencies = sorted(float(s[1]) for s in answered)
    report.p50_ms, report.p95_ms, report.p99_ms = (percentile(latencies, f) for f in (0.50, 0.95, 0.99))
    report.max_ms = latencies[-1] if latencies else None
    errors: Counter[str] = Counter()
    for s in samples:
        expected = job.requests[s[3]].expected_status if 0 <= s[3] < len(job.requests) else None
        if is_error(int(s[2]), expected):
            errors[str(s[2]) if s[2] else (s[4] if len(s) > 4 and s[4] else "no answer")] += 1
    report.errors_by_status = dict(errors.most_common())
    report.error_rate = round(sum(errors.values()) / len(samples), 4) if samples else 0.0
    if samples:  # requests sent over the load window (the generator stops sending when the window closes)
        report.achieved_rps = round(len(samples) / max(report.load_s or job.duration_s, 1e-3), 2)
    report.servers = list(result.get("servers") or [])
    report.error_texts = dict(result.get("errors") or {})


def summarise_usage(readings: list[tuple[float, list[ContainerUsage]]], report: LoadReport) -> None:
    """readings: (seconds since the load started, one reading of every container)."""
    by_container: dict[tuple[str, str], list[tuple[float, ContainerUsage]]] = {}
    for at, usages in readings:
        for u in usages:
            by_container.setdefault((u.pod, u.container), []).append((at, u))
    out = []
    for (pod, name), series in by_container.items():
        entry = ContainerLoad(pod=pod, container=name, readings=len(series))
        memories = [u.memory_bytes for _, u in series if u.memory_bytes is not None]
        if memories:
            entry.peak_memory_mib = round(max(memories) / MIB, 2)
        limits = [u.memory_limit_bytes for _, u in series if u.memory_limit_bytes]
        if limits:
            entry.memory_limit_mib = round(limits[-1] / MIB, 1)
        rates = [u.cpu_cores for _, u in series if u.cpu_cores is not None]
        timed = [(at, u.cpu_time_s) for at, u in series if u.cpu_time_s is not None]
        for (t0, c0), (t1, c1) in zip(timed, timed[1:]):
            if t1 > t0:
                rates.append(max(0.0, (c1 - c0) / (t1 - t0)))
        if len(timed) >= 2 and timed[-1][0] > timed[0][0]:
            entry.avg_cpu = round(max(0.0, (timed[-1][1] - timed[0][1]) / (timed[-1][0] - timed[0][0])), 3)
        elif rates:
            entry.avg_cpu = round(sum(rates) / len(rates), 3)
        if rates:
            entry.peak_cpu = round(max(rates), 3)
        out.append(entry)
    report.containers = out
    memories = [c.peak_memory_mib for c in out if c.peak_memory_mib is not None]
    cpus = [c.peak_cpu for c in out if c.peak_cpu is not None]
    report.peak_memory_mib = max(memories) if memories else None
    report.peak_cpu = max(cpus) if cpus else None


def evaluate(report: LoadReport, slo: SLO | None, source: str | None) -> None:
    """Set met/missed. A crash under load is missed whatever the objectives; without objectives, nothing else."""
    missed = [f"container {name} stopped during the load" for name in report.crashed]
    if slo is not None and slo.has_objectives():
        report.objectives, report.objectives_from = slo.model_dump(mode="json"), source
        for name, objective in slo.latency_ms.stated().items():
            measured = getattr(report, f"{name}_ms")
            if measured is None:
                missed.append(f"{name} latency: no request was answered (objective {objective:g} ms)")
            elif measured > objective:
                missed.append(f"{name} latency {measured:.0f} ms > {objective:g} ms")
        if slo.error_rate_max is not None and report.error_rate > slo.error_rate_max:
            missed.append(f"error rate {report.error_rate:.1%} > {slo.error_rate_max:.1%} "
                          f"({_errors_text(report.errors_by_status)})")
        if slo.memory_mib_max is not None and report.peak_memory_mib is not None \
                and report.peak_memory_mib > slo.memory_mib_max:
            missed.append(f"peak memory {report.peak_memory_mib:.1f} MiB > {slo.memory_mib_max:g} MiB")
        if report.achieved_rps < MIN_ACHIEVED_SHARE * report.offered_rps:
            missed.append(f"throughput {report.achieved_rps:.1f} rps < {MIN_ACHIEVED_SHARE:.0%} of the offered "
                          f"{report.offered_rps:g} rps")
        report.met = not missed
    elif missed:
        report.met = False
    report.missed = missed


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in errors.items()) or "none"


def errors_text(report: LoadReport) -> str:
    return _errors_text(report.errors_by_status)


_SERVERS = (
    (re.compile(r"WARNING: This is a development server|\* Running on http", re.I),
     "Werkzeug development server (Flask's app.run: one process; not for production)"),
    (re.compile(r"Booting worker with pid|\[INFO\] Starting gunicorn", re.I), "gunicorn"),
    (re.compile(r"Uvicorn running on", re.I), "uvicorn"),
    (re.compile(r"Serving on http://", re.I), "waitress"),
    (re.compile(r"Serving HTTP on .* port", re.I), "Python http.server"),
)


def server_process(logs: dict[str, str], servers: list[str]) -> str | None:
    """What served the requests, from the container logs and the Server headers."""
    found = []
    for text in logs.values():
        for pattern, name in _SERVERS:
            if pattern.search(text) and name not in found:
                found.append(name)
    if servers:
        found.append("Server header: " + ", ".join(servers))
    return "; ".join(found) or None


# --- resources sized from the measurement --------------------------------------------------------------------------


def sized_resources(report: dict[str, Any] | None, container: str | None = None) -> dict[str, Any] | None:
    """Kubernetes `resources` for a container from a LoadReport (as data): requests = the measured peak, limits =
    LIMIT_MARGIN x requests; None when nothing was measured. `container` picks the container (default: the one
    with the highest peak memory)."""
    if not report:
        return None
    entries = [ContainerLoad.model_validate(c) for c in report.get("containers") or []]
    entries = [c for c in entries if c.peak_memory_mib is not None or c.peak_cpu is not None]
    if container is not None:
        entries = [c for c in entries if c.container == container] or entries
    if not entries:
        return None
    chosen = max(entries, key=lambda c: c.peak_memory_mib or 0.0)
    cpu_m = max(MIN_CPU_MILLI, math.ceil((chosen.peak_cpu or 0.0) * 1000))
    mem_mib = max(MIN_MEMORY_MIB, math.ceil(chosen.peak_memory_mib or 0.0))
    return {
        "requests": {"cpu": f"{cpu_m}m", "memory": f"{mem_mib}Mi"},
        "limits": {"cpu": f"{math.ceil(cpu_m * LIMIT_MARGIN)}m", "memory": f"{math.ceil(mem_mib * LIMIT_MARGIN)}Mi"},
    }


def sizing_note(report: dict[str, Any]) -> str:
    """How sized_resources derived its numbers, for the chart's values.yaml, NOTES and README."""
    return (f"requests = the peak use measured by KubeVibe's LOAD stage at {report.get('offered_rps'):g} rps for "
            f"{report.get('duration_s'):g} s (peak memory {report.get('peak_memory_mib')} MiB, peak CPU "
            f"{report.get('peak_cpu')} cores; at least {MIN_CPU_MILLI}m CPU and {MIN_MEMORY_MIB}Mi); "
            f"limits = {LIMIT_MARGIN:g} x requests")


def slo_verdict(report: dict[str, Any] | None, stated: bool, verified: bool) -> dict[str, Any] | None:
    """run.json verdict.slo: None when no objectives were stated; `met` only for a measurement of the final files."""
    if not stated:
        return None
    r = report or {}
    return {
        "met": bool(verified and r.get("met")),
        "offered_rps": r.get("offered_rps"),
        "achieved_rps": r.get("achieved_rps"),
        "p50_ms": r.get("p50_ms"),
        "p95_ms": r.get("p95_ms"),
        "p99_ms": r.get("p99_ms"),
        "error_rate": r.get("error_rate"),
        "peak_memory_mib": r.get("peak_memory_mib"),
        "peak_cpu": r.get("peak_cpu"),
        "missed": r.get("missed") or [],
        "objectives": r.get("objectives"),
    }
