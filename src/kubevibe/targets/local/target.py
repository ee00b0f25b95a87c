"""The local provider: the manifest's workloads run as podman pods (`podman kube play`), on a network of the run.

`LocalTarget.deployment(request)` makes the played copy of the manifest (targets/local/manifest.py says what
differs from Kubernetes, and why) and returns a `LocalDeployment`, which creates the network and plays the copy
on `start()`, waits with the readers of targets/local/status.py, and on `teardown()` stops and removes the pods
and the network, found by the label io.kubevibe.run=<run id>. Pods are reached at the loopback port published for
each Service targetPort, else at their own address (podman pods are reachable from the host).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kubevibe.errors import KubeVibeError
from kubevibe.evidence import Evidence
from kubevibe.exec import CommandResult, run
from kubevibe.manifests import containers, dump_manifest, workloads
from kubevibe.owner import OWNER_LABEL, owner_labels
from kubevibe.podman_conf import podman_env
from kubevibe.poll import Backoff
from kubevibe.targets.base import (
    ContainerInfo,
    ContainerUsage,
    DeployRequest,
    Deployment,
    DeploymentInfo,
    PodInfo,
    StepScope,
    Target,
    TargetCapabilities,
    TargetFailure,
    service_port_infos,
    tail_lines,
)
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.targets.local.manifest import (
    cpu_limits,
    free_loopback_port,
    network_name,
    played_manifest,
    publish_loopback,
    slow_start_hint,
)
from kubevibe.text import last_line
from kubevibe.targets.local.status import (
    pod_listening,
    container_infos,
    merge_timestamped,
    pod_ip,
    readiness,
    stats_usage,
)
from kubevibe.tools import find_tool

if TYPE_CHECKING:
    from kubevibe.settings import Settings

COMMAND_TIMEOUT_S = 60.0  # one podman command other than kube play (ps, inspect, rm, logs)
PLAY_TIMEOUT_S = 180.0  # kube play creates and starts the pods
POLL_FIRST_S, POLL_MAX_S = 0.2, 1.0


class LocalTarget(Target):
    name = "local"
    capabilities = TargetCapabilities(reports_usage=True)

    def __init__(self, settings: "Settings | None" = None) -> None:
        super().__init__(settings)
        found = find_tool("podman")
        if found is None:
            raise KubeVibeError("podman is not installed; the local target needs it.",
                                "Run scripts/bootstrap.sh, or: apt-get install -y podman runc")  # fmt: skip
        self.podman = str(found)

    def _run(self, args: list[str], log_file: Path | None, timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
        return run([self.podman, *args], timeout=timeout, env=podman_env(), log_file=log_file)

    def deployment(self, request: DeployRequest) -> "LocalDeployment":
        """The played copy (and the loopback ports it publishes) as a handle; nothing is written or created yet."""
        docs, run_id = request.docs, request.run_id
        played, notes = played_manifest(docs, request.image, run_id)
        ports = service_port_infos(docs)
        published = publish_loopback(played, ports, free_loopback_port)
        notes += [f"{p.workload}: port {p.container_port} published on {p.host_ip}:{p.host_port} only"
                  for p in published]  # fmt: skip
        played_file = request.work_dir / "played.yaml"
        info = DeploymentInfo(
            target=self.name, run_id=run_id, network=network_name(run_id), manifest_file=str(played_file),
            expected_pods=len(workloads(played)), service_ports=ports, notes=notes, published=published,
            cpu_limits=cpu_limits(played),
        )  # fmt: skip
        if info.expected_pods == 0:
            raise TargetFailure("The manifest has no Deployment or Pod to run.",
                                [Evidence(kind="finding", title="nothing to deploy", detail="kinds: " +
                                          ", ".join(str(d.get("kind")) for d in docs))])  # fmt: skip
        return LocalDeployment(self, request, info, played)

    def attach(self, info: DeploymentInfo, scope: StepScope) -> "LocalDeployment":
        return LocalDeployment(self, None, info, None, scope=scope)

    # -- teardown (also for gc of one run) ------------------------------------------------------------------------
    def remove_run(self, run_id: str, played_file: Path | None, log_file: Path | None) -> None:
        """kube down, then any pod left with the run's label, then the network. Safe to call any number of times."""
        label = f"label={RUN_LABEL}={label_value(run_id)}"
        pods = self._pod_ids(label)
        if pods:
            # Stop at once (-t 0): a Python server as PID 1 ignores SIGTERM, so a graceful stop waits the full
            # 10 s for nothing (logs are already kept). kube down then only removes stopped pods (0.1 s, not 3.5).
            self._run(["pod", "stop", "--ignore", "--time", "0", *pods], log_file, timeout=120)
            if played_file is not None and played_file.exists():
                self._run(["kube", "down", str(played_file)], log_file, timeout=120)
        leftover = self._pod_ids(label)
        if leftover:  # pods kube down did not know (an older played file, a crashed process)
            self._run(["pod", "rm", "--force", "--ignore", "--time", "0", *leftover], log_file, timeout=120)
        network = network_name(run_id)
        if self._run(["network", "exists", network], None).ok:
            self._run(["network", "rm", "--force", "--time", "0", network], log_file).check(
                hint=f"Remove it by hand: podman network rm -f {network}"
            )
        still = self._pod_ids(label)
        if still:
            raise KubeVibeError(f"pods of run {run_id} are still there after teardown: {', '.join(still)}",
                                f"Remove them by hand: podman pod rm -f {' '.join(still)}")  # fmt: skip

    def _pod_ids(self, label_filter: str) -> list[str]:
        result = self._run(["pod", "ps", "--quiet", "--filter", label_filter], None)
        return result.stdout.split() if result.ok else []


class LocalDeployment(Deployment):
    target: LocalTarget

    def __init__(self, target: LocalTarget, request: DeployRequest | None, info: DeploymentInfo,
                 played: list[dict] | None, *, scope: StepScope | None = None):
        super().__init__(target, scope or request, info)  # type: ignore[arg-type]
        self.request = request
        self.played = played

    @property
    def _played_file(self) -> Path | None:
        return Path(self.info.manifest_file) if self.info.manifest_file else None

    def _run(self, args: list[str], log_file: Path | None, timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
        return self.target._run(args, log_file, timeout)

    # -- start ------------------------------------------------------------------------------------------------------
    def start(self) -> DeploymentInfo:
        assert self.request is not None and self.played is not None, "an attached deployment is started already"
        request, played, info = self.request, self.played, self.info
        run_id, log_file = request.run_id, request.log_file
        played_file = self._played_file
        assert played_file is not None
        played_file.write_text(dump_manifest(played), encoding="utf-8")
        network = network_name(run_id)
        # The previous Deploy of this run, and leftovers of a crashed process with this run id, go first.
        self.target.remove_run(run_id, None, log_file)
        owner = owner_labels()[OWNER_LABEL]
        created = self._run(["network", "create", "--label", f"{RUN_LABEL}={label_value(run_id)}",
                             "--label", f"{OWNER_LABEL}={owner}", network], log_file)
        created.check(hint="podman could not create a network; see `podman network ls`.")
        play = self._run(["kube", "play", "--network", network, "--tls-verify=false", str(played_file)],
                         log_file, timeout=request.timeout(PLAY_TIMEOUT_S))  # fmt: skip
        if not play.ok and "address already in use" in play.output and info.published:
            # Another process took a free port between our choice and podman's bind: choose again, once.
            self.target.remove_run(run_id, played_file, log_file)
            created = self._run(["network", "create", "--label", f"{RUN_LABEL}={label_value(run_id)}", network],
                                log_file)  # fmt: skip
            created.check(hint="podman could not create a network; see `podman network ls`.")
            for doc in workloads(played):
                for container in containers(doc):
                    container.pop("ports", None)
            info.published = publish_loopback(played, info.service_ports, free_loopback_port)
            played_file.write_text(dump_manifest(played), encoding="utf-8")
            play = self._run(["kube", "play", "--network", network, "--tls-verify=false", str(played_file)],
                             log_file, timeout=request.timeout(PLAY_TIMEOUT_S))  # fmt: skip
        if not play.ok:
            raise TargetFailure(
                f"podman kube play failed: {_last_error_line(play)}",
                [Evidence.from_command("podman kube play of the manifest (image substituted)", play)],
                self.status(),
            )
        return self.status()

    # -- state ------------------------------------------------------------------------------------------------------
    def status(self) -> DeploymentInfo:
        info = self.info
        pods_raw = self._json(["pod", "ps", "--filter", f"label={RUN_LABEL}={label_value(info.run_id)}",
                               "--format", "json"])  # fmt: skip
        ids = [c["Id"] for p in pods_raw for c in p.get("Containers") or [] if c.get("Id") != p.get("InfraId")]
        inspected = self._json(["container", "inspect", *ids]) if ids else []
        names = {p["Id"]: p["Name"] for p in pods_raw}
        pods = []
        for p in pods_raw:
            sockets = pod_listening(inspected, p["Id"])
            pods.append(PodInfo(name=p["Name"], ip=pod_ip(inspected, p["Id"], info.network),
                                labels=p.get("Labels") or {}, listening=sockets[0] if sockets else None,
                                loopback_only=sockets[1] if sockets else []))  # fmt: skip
        pods.sort(key=lambda p: p.name)
        self.info = info.model_copy(update={"pods": pods, "containers": container_infos(inspected, names)})
        return self.info

    def _json(self, args: list[str]) -> list[dict]:
        result = self._run(args, None)
        if not result.ok:
            # A container removed between `pod ps` and `inspect` is a race, not a failure: the next poll sees it.
            if "no such" in result.output.lower():
                return []
            result.check()
        return json.loads(result.stdout or "[]") or []

    def wait_ready(self, timeout: float) -> DeploymentInfo:
        started = time.monotonic()
        backoff = Backoff(deadline=started + timeout, first=POLL_FIRST_S, maximum=POLL_MAX_S)
        running_since: dict[str, float] = {}
        while True:
            info = self.status()
            now = time.monotonic()
            for c in info.containers:
                if c.state == "running":
                    running_since.setdefault(c.engine_name, now)
            crashed = [c for c in info.containers if c.failed]
            if crashed:
                raise self._crash_failure(info, crashed)
            missing = readiness(info, running_since, now)
            if missing is None:
                self.info = info.model_copy(update={"ready_s": round(now - started, 1)})
                return self.info
            if not backoff.wait(now):
                raise self._timeout_failure(info, missing, timeout)

    def _crash_failure(self, info: DeploymentInfo, crashed: list[ContainerInfo]) -> TargetFailure:
        logs = self.logs(self.scope.work_dir / "logs")
        evidence = []
        for c in crashed:
            how = f"exited with code {c.exit_code}" if c.state != "running" else f"restarted {c.restarts} times"
            log = logs.get(f"{c.pod}/{c.name}", "")
            evidence.append(Evidence(kind="log", title=f"container {c.name} of pod {c.pod} {how}",
                                     detail="last log lines:" if log.strip() else "it wrote no log lines",
                                     stdout=tail_lines(log, 60)))  # fmt: skip
        first = crashed[0]
        last = tail_lines(logs.get(f"{first.pod}/{first.name}", ""), 3).replace("\n", " | ")
        how = f"exited with code {first.exit_code}" if first.state != "running" else "restarted"
        summary = f"container {first.name} {how}" + (f"; last log lines: {last}" if last else "; no log output")
        return TargetFailure(summary, evidence + [_states_evidence(info)], info)

    def _timeout_failure(self, info: DeploymentInfo, missing: str, timeout: float) -> TargetFailure:
        logs = self.logs(self.scope.work_dir / "logs")
        evidence = [_states_evidence(info)]
        evidence += [Evidence(kind="log", title=f"logs of {key}", stdout=tail_lines(text, 40))
                     for key, text in logs.items()]  # fmt: skip
        summary = f"not ready after {timeout:.0f}s (KUBEVIBE_READY_TIMEOUT): {missing}"
        if info.cpu_limits:
            summary += "; " + slow_start_hint(info.cpu_limits)
        return TargetFailure(summary, evidence, info)

    # -- reaching a pod, resource use ---------------------------------------------------------------------------------
    def open_port(self, pod: PodInfo, port: int) -> contextlib.AbstractContextManager[str]:
        """The loopback port the played copy published for `port`, else the pod's own address."""
        published = self.info.published_port(pod.name, port)
        if published is not None:
            return _url(f"http://{published.host_ip}:{published.host_port}")
        return super().open_port(pod, port)

    def usage(self) -> list[ContainerUsage] | None:
        names = {c.engine_name: c for c in self.info.containers if c.engine_name}
        if not names:
            return []
        result = self._run(["stats", "--no-stream", "--format", "json", *names], None, timeout=30)
        if not result.ok:
            return None  # a container that exited has no stats; the caller keeps the readings it has
        try:
            entries = json.loads(result.stdout or "[]") or []
        except ValueError:
            return None
        return stats_usage(entries, names)

    # -- logs -------------------------------------------------------------------------------------------------------
    def logs(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        logs: dict[str, str] = {}
        for c in self.info.containers:
            result = self._run(["logs", "--timestamps", c.engine_name], None)
            text = merge_timestamped(result.stdout, result.stderr) if result.ok else f"(no logs: {result.describe()})"
            logs[f"{c.pod}/{c.name}"] = text
            (directory / f"{c.pod}-{c.name}.log").write_text(text, encoding="utf-8")
        return logs

    # -- teardown ---------------------------------------------------------------------------------------------------
    def teardown(self) -> None:
        # Logged where Deploy logged its commands (the cleanup's log since the first version).
        log_file = self.request.log_file if self.request is not None else self.scope.log_file
        self.target.remove_run(self.info.run_id, self._played_file, log_file)


@contextlib.contextmanager
def _url(url: str) -> Iterator[str]:
    yield url


def _last_error_line(result: CommandResult) -> str:
    """podman's last `Error...` line, else its last line (the syslog complaint of a container-less host is noise)."""
    line = last_line(result.output, keep=lambda ln: "failed to connect to syslog" not in ln,
                     prefer=lambda ln: ln.startswith("Error"))
    return (line or result.describe())[:300]


def _states_evidence(info: DeploymentInfo) -> Evidence:
    return Evidence(kind="finding", title="container states", detail=info.describe_states())
