"""The deployment target interface: where Deploy runs the service, and what Connect needs to reach it.

A target creates the manifest's workloads from the built image, waits until they run, hands out their logs,
and tears everything down again. `DeploymentInfo` is what Deploy passes on to Connect (through
`RunState.deployment`), so it is plain data: names, addresses, container states and the Services' ports.

A failure the generated files caused (a container that exits, a manifest the engine refuses) is raised as
`TargetFailure` carrying its evidence, and becomes a stage failure for Fix. A failure of the tool itself (no
engine installed) is a `KubeVibeError` and stops the run.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kubevibe.manifests import selects, service_ports, services
from kubevibe.pipeline.context import Evidence

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext

# The label every resource of a run carries, so leftovers of a crashed run can be found and removed.
RUN_LABEL = "io.kubevibe.run"


class ContainerInfo(BaseModel):
    pod: str
    name: str  # the container's name in the manifest
    engine_name: str = ""  # the engine's own name for it (podman: <pod>-<name>)
    state: str = "unknown"  # running, exited, created, ... as the engine says
    exit_code: int | None = None
    restarts: int = 0

    @property
    def failed(self) -> bool:
        """A server must keep running: an exit (any code) or a restart means it crashed."""
        return self.restarts > 0 or self.state in ("exited", "stopped", "dead")


class PodInfo(BaseModel):
    name: str
    ip: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    listening: list[int] | None = None  # TCP ports open to other pods (any address); None: not known
    loopback_only: list[int] = Field(default_factory=list)  # TCP ports bound to 127.0.0.1/::1 only


class PublishedPort(BaseModel):
    """A container port the target published on a loopback address of this machine (local engine only)."""

    workload: str  # the played workload's name; its pod's name starts with it
    container_port: int
    host_ip: str = "127.0.0.1"
    host_port: int


class ContainerUsage(BaseModel):
    """One reading of a container's resource use, as the engine reports it."""

    pod: str
    container: str
    cpu_time_s: float | None = None  # cumulative CPU time (podman); CPU use is its rate between readings
    cpu_cores: float | None = None  # current CPU use, when the engine reports a rate (the metrics API)
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None  # what the engine enforces (the host's memory when no limit)


class ServicePortInfo(BaseModel):
    service: str
    port: int | None
    target_port: int | None  # resolved from the original manifest (a named targetPort becomes its number)
    selector: dict[str, str] = Field(default_factory=dict)


class DeploymentInfo(BaseModel):
    target: str
    run_id: str
    network: str | None = None
    manifest_file: str | None = None  # the manifest the engine was given (a transformed copy)
    expected_pods: int = 0
    pods: list[PodInfo] = Field(default_factory=list)
    containers: list[ContainerInfo] = Field(default_factory=list)
    service_ports: list[ServicePortInfo] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # what the target changed in the played copy, and why
    published: list[PublishedPort] = Field(default_factory=list)  # loopback ports for traffic from this machine

    def published_port(self, pod: str, port: int) -> PublishedPort | None:
        for p in self.published:
            if p.container_port == port and (pod == p.workload or pod.startswith(p.workload + "-")):
                return p
        return None

    def pods_for(self, port: ServicePortInfo) -> list[PodInfo]:
        return [p for p in self.pods if selects(port.selector, p.labels)]

    def containers_of(self, pod: str) -> list[ContainerInfo]:
        return [c for c in self.containers if c.pod == pod]

    def describe_states(self) -> str:
        """One line per container, for evidence: `pod/app: running` or `pod/app: exited (code 1), 2 restarts`."""
        lines = []
        for c in self.containers:
            text = f"{c.pod}/{c.name}: {c.state}"
            if c.exit_code is not None and c.state != "running":
                text += f" (code {c.exit_code})"
            if c.restarts:
                text += f", {c.restarts} restarts"
            lines.append(text)
        return "\n".join(lines) or "(no containers)"


class TargetFailure(Exception):
    """The deployment failed because of the generated files; the evidence says what the engine saw."""

    def __init__(self, summary: str, evidence: list[Evidence], info: DeploymentInfo | None = None):
        super().__init__(summary)
        self.summary = summary
        self.evidence = evidence
        self.info = info


class Target(ABC):
    """One place to deploy to (local podman, a Kubernetes cluster)."""

    name: str = ""

    @abstractmethod
    def deploy(self, ctx: "RunContext", docs: list[dict[str, Any]], image: str) -> DeploymentInfo:
        """Create the workloads of `docs` running `image`. Registers ctx cleanup "deployment" before creating
        anything, so an interrupt never leaves resources behind. Raises TargetFailure."""

    @abstractmethod
    def wait_ready(self, ctx: "RunContext", info: DeploymentInfo, *, timeout: float) -> DeploymentInfo:
        """Wait (bounded) until every container runs. Raises TargetFailure if one exits or time runs out."""

    @abstractmethod
    def status(self, ctx: "RunContext", info: DeploymentInfo) -> DeploymentInfo:
        """The current pods and container states (a fresh copy of info)."""

    @abstractmethod
    def collect_logs(self, ctx: "RunContext", info: DeploymentInfo, directory: Path) -> dict[str, str]:
        """Logs of every container, keyed `pod/container`; also written to directory/<pod>-<container>.log."""

    @abstractmethod
    def teardown(self, ctx: "RunContext", info: DeploymentInfo | None = None) -> None:
        """Remove everything this run deployed. Idempotent; never raises for resources already gone."""

    def open_port(self, ctx: "RunContext", info: DeploymentInfo, pod: PodInfo,
                  port: int) -> contextlib.AbstractContextManager[str]:
        """A base URL (`http://host:port`, no trailing slash) that reaches `port` of `pod` from this machine, valid
        until the context ends. Default: the pod's own address (podman pods are reachable from the host). A target
        whose pods are not (a cluster) forwards a local port. Raises TargetFailure if the pod cannot be reached."""
        return _direct(f"http://{pod.ip}:{port}")

    def usage(self, ctx: "RunContext", info: DeploymentInfo) -> list[ContainerUsage] | None:
        """One reading of every container's CPU and memory use; None when the target cannot tell."""
        return None

    # Checks only the target itself can make (a cluster's server-side dry run). Validate and Chart call them when
    # server_checks is set, after their own offline checks passed.
    server_checks: bool = False

    def server_validate(self, ctx: "RunContext", docs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """(findings, notes) of the target's own validation of the manifest; findings fail Validate."""
        return [], []

    def chart_check(self, ctx: "RunContext", chart_dir: Path, release: str, helm: str,
                    env: Mapping[str, str]) -> tuple[list[str], list[Evidence]]:
        """(findings, evidence) of the target's own check of the chart (e.g. `helm install --dry-run=server`)."""
        return [], []


@contextlib.contextmanager
def _direct(url: str) -> Iterator[str]:
    yield url


def service_port_infos(docs: list[dict[str, Any]]) -> list[ServicePortInfo]:
    """Every Service port of the original manifest with its resolved targetPort and its selector."""
    selectors = {}
    for svc in services(docs):
        spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
        selector = spec.get("selector") if isinstance(spec.get("selector"), dict) else {}
        selectors[svc["metadata"]["name"]] = {str(k): str(v) for k, v in selector.items()}
    return [
        ServicePortInfo(service=sp.service, port=sp.port, target_port=sp.target_port,
                        selector=selectors.get(sp.service, {}))  # fmt: skip
        for sp in service_ports(docs)
    ]


def tail_lines(text: str, count: int) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-count:])
