"""The target interface: a provider (where Deploy runs the service) and the Deployment handle it hands out.

As in kind's providers, every target is the same small shape, so a third one (docker compose, say) is one new
folder next to `local/` and `kubernetes/`:
  * `Target` (the provider): `name`, a `TargetCapabilities` record callers read instead of names, and
    `deployment(request)`, which returns a `Deployment` handle and creates NOTHING yet. Checks only the target
    can make (a cluster's server-side dry run) are `server_validate` and `chart_check`.
  * `DeployRequest` in: the manifest documents, the image, the run id and step, labels, where the target may write
    (work_dir, log_file), its deadline and the policy level, as plain values. `StepScope` is the part every call
    needs (who asks, where it writes, until when); stages build both from their context (stages/targeting.py).
  * `Deployment` out: `.info` (DeploymentInfo, recorded in state.json/run.json), `start()`, `wait_ready()`,
    `status()`, `logs()`, `open_port()`, `usage()` and an idempotent `teardown()`. The pipeline's runner owns the
    handle's life (it tears it down when the pipeline leaves the deployed states); `Target.attach(info, scope)`
    re-makes a handle from recorded data, for a resumed run.
Nothing here (or below) knows the pipeline's RunContext: a target gets what it needs as data.

A failure the generated files caused (a container that exits, a manifest the engine refuses) is raised as
`TargetFailure` carrying its evidence, and becomes a stage failure for Fix. A failure of the tool itself (no
engine installed) is a `KubeVibeError` and stops the run.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kubevibe.evidence import Evidence
from kubevibe.manifests import selects, service_ports, services
from kubevibe.targets.labels import RUN_LABEL, label_value

if TYPE_CHECKING:
    from kubevibe.settings import Settings

__all__ = ["RUN_LABEL", "label_value"]  # re-exported: the labels every target puts on what it creates


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
    cpu_limits: dict[str, str] = Field(default_factory=dict)  # container name -> resources.limits.cpu
    ready_s: float | None = None  # seconds from the start of the wait until every declared port listened
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


class TargetCapabilities(BaseModel):
    """What a target can do; callers ask these, never the target's name."""

    model_config = ConfigDict(frozen=True)

    needs_registry: bool = False  # the image must be pushed (or loaded) where the target pulls it from
    port_forward: bool = False  # pods are reached through a forwarded local port, not their own address
    enforces_pod_security: bool = False  # the target refuses what the Pod Security level forbids (admission)
    server_checks: bool = False  # a server-side dry run for Validate and Chart
    reports_usage: bool = False  # usage() reads CPU and memory per container


class Cleanups(Protocol):
    """Where a target registers the teardown of a run-level resource (the Kubernetes namespace) before creating
    it; the runner guarantees to run it. The pipeline's context is one; a test may pass its own."""

    def add_cleanup(self, key: str, fn: Callable[[], None]) -> None: ...

    def has_cleanup(self, key: str) -> bool: ...


class StepScope(BaseModel):
    """Who asks a target for something, where it may write, and until when (one stage execution)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    step: int = 0
    work_dir: Path  # the stage's own directory: played/applied copies, logs
    log_file: Path | None = None  # the stage's command log
    deadline: float = Field(default_factory=lambda: time.monotonic() + 3600.0)  # time.monotonic() of the run's end
    policy: str = "baseline"  # the Pod Security level (--policy)
    allow_node_port: bool = False
    image: str | None = None  # the image Build produced, when there is one
    image_preloaded: bool = False  # it was loaded into the nodes (kind://), not pushed: no registry has it
    cleanups: Any = Field(default=None, exclude=True)  # a Cleanups (the run context), or None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def timeout(self, wanted: float) -> float:
        """What an operation wants, but never past the deadline (at least 1 s), as RunContext.timeout."""
        return max(1.0, min(wanted, self.remaining()))


class DeployRequest(StepScope):
    """What Deploy asks a target to run: the manifest's documents with the built image."""

    docs: list[dict[str, Any]]
    image: str
    labels: dict[str, str] = Field(default_factory=dict)  # put on everything created (RUN_LABEL at least)


class Deployment(ABC):
    """A handle on one Deploy's workloads. Made by `Target.deployment(request)` (nothing exists yet) or
    `Target.attach(info, scope)` (re-made from the recorded info). The scope of the stage using it is set with
    `use(scope)`, so each stage's commands go to its own log and obey its deadline."""

    def __init__(self, target: "Target", scope: StepScope, info: DeploymentInfo):
        self.target = target
        self.scope = scope
        self.info = info

    def use(self, scope: StepScope) -> "Deployment":
        """From now on, commands go to this stage's log and deadline; returns self."""
        self.scope = scope
        return self

    @abstractmethod
    def start(self) -> DeploymentInfo:
        """Create the workloads. Raises TargetFailure (self.info then says what exists)."""

    @abstractmethod
    def wait_ready(self, timeout: float) -> DeploymentInfo:
        """Wait (bounded) until every container runs. Raises TargetFailure if one exits or time runs out."""

    @abstractmethod
    def status(self) -> DeploymentInfo:
        """The current pods and container states (a fresh copy of info; self.info is updated too)."""

    @abstractmethod
    def logs(self, directory: Path) -> dict[str, str]:
        """Logs of every container, keyed `pod/container`; also written to directory/<pod>-<container>.log."""

    @abstractmethod
    def teardown(self) -> None:
        """Remove everything this Deploy created. Idempotent; never raises for resources already gone."""

    def open_port(self, pod: PodInfo, port: int) -> contextlib.AbstractContextManager[str]:
        """A base URL (`http://host:port`, no trailing slash) that reaches `port` of `pod` from this machine, valid
        until the context ends. Default: the pod's own address. A target whose pods are not reachable (a cluster:
        capabilities.port_forward) forwards a local port. Raises TargetFailure if the pod cannot be reached."""
        return _direct(f"http://{pod.ip}:{port}")

    def usage(self) -> list[ContainerUsage] | None:
        """One reading of every container's CPU and memory use; None when the target cannot tell."""
        return None


class Target(ABC):
    """A provider: one place to deploy to (local podman, a Kubernetes cluster, a test's own)."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[TargetCapabilities] = TargetCapabilities()

    def __init__(self, settings: "Settings | None" = None) -> None:
        """Made as `cls(settings)` by `get_target`; a provider reads the settings it needs here (kubeconfig...)."""
        self.settings = settings

    @abstractmethod
    def deployment(self, request: DeployRequest) -> Deployment:
        """A handle for `request`; creates nothing (the caller holds it first, so a teardown is always known)."""

    @abstractmethod
    def attach(self, info: DeploymentInfo, scope: StepScope) -> Deployment:
        """A handle on a deployment recorded earlier (a resumed run, a teardown after a crash)."""

    # Checks only the target itself can make (capabilities.server_checks). Validate and Chart call them after their
    # own offline checks passed.
    def server_validate(self, scope: StepScope, docs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """(findings, notes) of the target's own validation of the manifest; findings fail Validate."""
        return [], []

    def chart_check(self, scope: StepScope, chart_dir: Path, release: str, helm: str,
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
