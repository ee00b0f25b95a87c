"""The local target: the manifest's workloads run as podman pods (`podman kube play`), on a network of the run.

What podman 4.3 does differently from Kubernetes, and how the played copy of the manifest deals with it
(every change is listed in DeploymentInfo.notes, so nothing is silent):
  * `kube play` publishes every declared containerPort on the host's 0.0.0.0, so two runs (or two replicas) with
    the same port collide. Pods are reachable at their own address on any port, so the played copy has no
    `ports`; the Services' targetPorts are resolved from the original manifest instead. Each Service targetPort
    is then published on 127.0.0.1 only, on a free port of this machine (hostIP + hostPort), so traffic from
    here, the LOAD stage's above all, goes to loopback and never to the pods' private addresses.
  * Pod names are global: workloads are renamed `<name>-<run token>` so concurrent runs never clash.
  * `replicas: N` makes N pods; one is enough to show the service works, and cheaper on small machines.
  * restartPolicy Always restarts a crashing container ten times a second with no back-off and mixes the logs
    of every attempt; the played copy says Never, so a crash shows once, with its exit code and one clean log.
  * Probes become podman healthchecks that need systemd timers (absent here) and curl in the image; Connect
    checks readiness itself, so probes are dropped.
  * `imagePullPolicy: Always` would pull the just-built image from the loopback registry; the image is local.
  * Services and other kinds podman ignores are left out of the played copy.
Everything gets the label io.kubevibe.run=<run id>; teardown finds pods and the network by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevibe.errors import KubeVibeError
from kubevibe.exec import CommandResult, run
from kubevibe.manifests import containers, dump_manifest, pod_labels, pod_template, selects, set_image, workloads
from kubevibe.pipeline.context import Evidence
from kubevibe.podman_conf import podman_env
from kubevibe.targets.base import (
    RUN_LABEL,
    ContainerInfo,
    ContainerUsage,
    DeploymentInfo,
    PodInfo,
    PublishedPort,
    ServicePortInfo,
    Target,
    TargetFailure,
    service_port_infos,
    tail_lines,
)
from kubevibe.tools import find_tool

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext

# Kinds podman 4.3 plays that a generated service may use; Services and the rest are not played.
PLAYED_KINDS = frozenset({"Deployment", "Pod", "ConfigMap", "Secret"})
# Container fields the played copy drops (see the module docstring).
DROPPED_CONTAINER_FIELDS = ("ports", "livenessProbe", "readinessProbe", "startupProbe")

COMMAND_TIMEOUT_S = 60.0  # one podman command other than kube play (ps, inspect, rm, logs)
PLAY_TIMEOUT_S = 180.0  # kube play creates and starts the pods
# A container that never opens a TCP port counts as ready once it has run this long without exiting.
SETTLE_S = 5.0
POLL_FIRST_S, POLL_MAX_S = 0.2, 1.0


# --- names (pure) ---------------------------------------------------------------------------------------------------


def run_token(run_id: str) -> str:
    """A short lowercase token of the run for resource names: the random part of `<stamp>-<hex>` run ids."""
    last = run_id.rsplit("-", 1)[-1].lower()
    if re.fullmatch(r"[a-z0-9]{4,12}", last):
        return last
    return hashlib.sha1(run_id.encode()).hexdigest()[:8]


def network_name(run_id: str) -> str:
    return "kubevibe-" + re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)


def label_value(run_id: str) -> str:
    """A valid label value (63 characters, alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:63].strip("-_.") or "run"


# --- the played copy (pure) -----------------------------------------------------------------------------------------


def played_manifest(docs: list[dict[str, Any]], image: str, run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(the documents to give `podman kube play`, notes on what changed). The input is not modified."""
    notes: list[str] = []
    token = run_token(run_id)
    out: list[dict[str, Any]] = []
    for doc in set_image(docs, image):
        kind = doc.get("kind")
        if kind not in PLAYED_KINDS:
            continue
        if kind in ("Deployment", "Pod"):
            _adapt_workload(doc, token, label_value(run_id), notes)
        out.append(doc)
    left_out = sorted({str(d.get("kind")) for d in docs if d.get("kind") not in PLAYED_KINDS})
    if left_out:
        kinds = ", ".join(left_out)
        notes.append(f"not played (podman runs pods only; ports come from the original manifest): {kinds}")
    return out, notes


def _adapt_workload(doc: dict[str, Any], token: str, label: str, notes: list[str]) -> None:
    name = doc["metadata"]["name"]
    what = f"{doc['kind']} {name}"
    doc["metadata"]["name"] = f"{name}-{token}"
    if doc["kind"] == "Deployment":
        spec = doc.setdefault("spec", {})
        if spec.get("replicas", 1) != 1:
            notes.append(f"{what}: replicas {spec.get('replicas')} -> 1")
        spec["replicas"] = 1
    template = pod_template(doc)
    metadata = template.setdefault("metadata", {})
    if not isinstance(metadata.get("labels"), dict):
        metadata["labels"] = {}
    metadata["labels"][RUN_LABEL] = label
    pod_spec = template.setdefault("spec", {})
    pod_spec["restartPolicy"] = "Never"
    if pod_spec.pop("hostNetwork", None):
        notes.append(f"{what}: hostNetwork dropped")
    for container in containers(doc, include_init=True):
        dropped = [f for f in DROPPED_CONTAINER_FIELDS if container.pop(f, None) is not None]
        if dropped:
            notes.append(f"{what} container {container.get('name')}: dropped {', '.join(dropped)}")
        container["imagePullPolicy"] = "IfNotPresent"


def publish_loopback(played: list[dict[str, Any]], service_ports: list[ServicePortInfo],
                     free_port: Callable[[], int]) -> list[PublishedPort]:
    """Publish every Service targetPort of the workloads a Service selects on 127.0.0.1:<free port> (in place:
    a `ports` entry with hostIP and hostPort on the pod's first container; ports are per pod in podman)."""
    published: list[PublishedPort] = []
    for doc in workloads(played):
        labels = pod_labels(doc)
        first = next(iter(containers(doc)), None)
        if first is None:
            continue
        for sp in service_ports:
            if sp.target_port is None or not selects(sp.selector, labels):
                continue
            if any(p.workload == doc["metadata"]["name"] and p.container_port == sp.target_port for p in published):
                continue
            host_port = free_port()
            first.setdefault("ports", []).append({"containerPort": sp.target_port, "hostIP": "127.0.0.1",
                                                  "hostPort": host_port})  # fmt: skip
            published.append(PublishedPort(workload=doc["metadata"]["name"], container_port=sp.target_port,
                                           host_port=host_port))  # fmt: skip
    return published


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- reading podman's answers (pure) --------------------------------------------------------------------------------


def parse_listening(proc_net_tcp: str) -> set[tuple[str, int]]:
    """(address, port) of sockets in LISTEN state (st 0A) in a /proc/<pid>/net/tcp or tcp6 table."""
    out: set[tuple[str, int]] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            address, _, port = fields[1].rpartition(":")
            out.add((_proc_address(address), int(port, 16)))
    return out


def _proc_address(hex_address: str) -> str:
    """The kernel prints addresses as 32-bit words in host byte order (little-endian here)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def split_listening(sockets: set[tuple[str, int]]) -> tuple[list[int], list[int]]:
    """(ports reachable from outside the pod, ports that listen on loopback only)."""
    open_ports = {port for address, port in sockets if not ipaddress.ip_address(address).is_loopback}
    loopback = {port for _, port in sockets} - open_ports
    return sorted(open_ports), sorted(loopback)


def container_infos(inspected: list[dict[str, Any]], pod_names: dict[str, str]) -> list[ContainerInfo]:
    """ContainerInfo for each `podman container inspect` entry; pod_names maps pod id -> pod name."""
    out = []
    for entry in inspected:
        pod = pod_names.get(entry.get("Pod", ""), "")
        engine_name = entry.get("Name", "")
        state = entry.get("State", {})
        out.append(
            ContainerInfo(
                pod=pod,
                name=engine_name.removeprefix(pod + "-") if pod else engine_name,
                engine_name=engine_name,
                state=str(state.get("Status", "unknown")),
                exit_code=state.get("ExitCode"),
                restarts=int(entry.get("RestartCount") or 0),
            )
        )
    return out


def pod_ip(inspected: list[dict[str, Any]], pod_id: str, network: str | None) -> str | None:
    for entry in inspected:
        if entry.get("Pod") != pod_id:
            continue
        networks = entry.get("NetworkSettings", {}).get("Networks") or {}
        chosen = networks.get(network) if network else None
        for net in [chosen, *networks.values()]:
            if net and net.get("IPAddress"):
                return net["IPAddress"]
    return None


def readiness(
    info: DeploymentInfo, running_since: dict[str, float], now: float, settle: float | None = None
) -> str | None:
    """None when every expected container runs and serves (listens on a TCP port, or has run `settle` seconds,
    default SETTLE_S); else what is still missing, for the timeout message."""
    settle = SETTLE_S if settle is None else settle
    if len(info.pods) < info.expected_pods:
        return f"{len(info.pods)} of {info.expected_pods} pods exist"
    if not info.containers:
        return "no containers yet"
    for c in info.containers:
        if c.state != "running":
            return f"container {c.name} of pod {c.pod} is {c.state}"
    for pod in info.pods:
        if pod.listening or pod.loopback_only:  # the server is up, reachable or not (Connect tells)
            continue
        started = min((running_since.get(c.engine_name, now) for c in info.containers_of(pod.name)), default=now)
        if now - started < settle:
            return f"pod {pod.name} listens on no TCP port yet"
    return None


# --- the target -----------------------------------------------------------------------------------------------------


class LocalTarget(Target):
    name = "local"

    def __init__(self) -> None:
        found = find_tool("podman")
        if found is None:
            raise KubeVibeError("podman is not installed; the local target needs it.",
                                "Run scripts/bootstrap.sh, or: apt-get install -y podman runc")  # fmt: skip
        self.podman = str(found)

    def _run(self, args: list[str], log_file: Path | None, timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
        return run([self.podman, *args], timeout=timeout, env=podman_env(), log_file=log_file)

    # -- deploy -----------------------------------------------------------------------------------------------------
    def deploy(self, ctx: "RunContext", docs: list[dict[str, Any]], image: str) -> DeploymentInfo:
        run_id, log_file = ctx.run_id, ctx.log_file
        played, notes = played_manifest(docs, image, run_id)
        ports = service_port_infos(docs)
        published = publish_loopback(played, ports, free_loopback_port)
        notes += [f"{p.workload}: port {p.container_port} published on {p.host_ip}:{p.host_port} only"
                  for p in published]  # fmt: skip
        played_file = ctx.stage_dir / "played.yaml"
        played_file.write_text(dump_manifest(played), encoding="utf-8")
        network = network_name(run_id)
        info = DeploymentInfo(
            target=self.name, run_id=run_id, network=network, manifest_file=str(played_file),
            expected_pods=len(workloads(played)), service_ports=ports, notes=notes, published=published,
        )  # fmt: skip
        if info.expected_pods == 0:
            raise TargetFailure("The manifest has no Deployment or Pod to run.",
                                [Evidence(kind="finding", title="nothing to deploy", detail="kinds: " +
                                          ", ".join(str(d.get("kind")) for d in docs))])  # fmt: skip
        # Registered before anything exists: an interrupt from here on still removes what was created. Also
        # removes the previous Deploy of this run, and leftovers of a crashed process with this run id.
        ctx.add_cleanup("deployment", lambda: self._teardown(run_id, played_file, log_file))
        self._teardown(run_id, None, log_file)
        created = self._run(["network", "create", "--label", f"{RUN_LABEL}={label_value(run_id)}", network], log_file)
        created.check(hint="podman could not create a network; see `podman network ls`.")
        play = self._run(["kube", "play", "--network", network, "--tls-verify=false", str(played_file)],
                         log_file, timeout=ctx.timeout(PLAY_TIMEOUT_S))  # fmt: skip
        if not play.ok and "address already in use" in play.output and published:
            # Another process took a free port between our choice and podman's bind: choose again, once.
            self._teardown(run_id, played_file, log_file)
            created = self._run(["network", "create", "--label", f"{RUN_LABEL}={label_value(run_id)}", network],
                                log_file)  # fmt: skip
            created.check(hint="podman could not create a network; see `podman network ls`.")
            for doc in workloads(played):
                for container in containers(doc):
                    container.pop("ports", None)
            info.published = publish_loopback(played, ports, free_loopback_port)
            played_file.write_text(dump_manifest(played), encoding="utf-8")
            play = self._run(["kube", "play", "--network", network, "--tls-verify=false", str(played_file)],
                             log_file, timeout=ctx.timeout(PLAY_TIMEOUT_S))  # fmt: skip
        if not play.ok:
            raise TargetFailure(
                f"podman kube play failed: {_last_error_line(play)}",
                [Evidence.from_command("podman kube play of the manifest (image substituted)", play)],
                self.status(ctx, info),
            )
        return self.status(ctx, info)

    # -- state ------------------------------------------------------------------------------------------------------
    def status(self, ctx: "RunContext", info: DeploymentInfo) -> DeploymentInfo:
        pods_raw = self._json(["pod", "ps", "--filter", f"label={RUN_LABEL}={label_value(info.run_id)}",
                               "--format", "json"])  # fmt: skip
        ids = [c["Id"] for p in pods_raw for c in p.get("Containers") or [] if c.get("Id") != p.get("InfraId")]
        inspected = self._json(["container", "inspect", *ids]) if ids else []
        names = {p["Id"]: p["Name"] for p in pods_raw}
        pods = []
        for p in pods_raw:
            sockets = _listening(inspected, p["Id"])
            pods.append(PodInfo(name=p["Name"], ip=pod_ip(inspected, p["Id"], info.network),
                                labels=p.get("Labels") or {}, listening=sockets[0] if sockets else None,
                                loopback_only=sockets[1] if sockets else []))  # fmt: skip
        pods.sort(key=lambda p: p.name)
        return info.model_copy(update={"pods": pods, "containers": container_infos(inspected, names)})

    def _json(self, args: list[str]) -> list[dict[str, Any]]:
        result = self._run(args, None)
        if not result.ok:
            # A container removed between `pod ps` and `inspect` is a race, not a failure: the next poll sees it.
            if "no such" in result.output.lower():
                return []
            result.check()
        return json.loads(result.stdout or "[]") or []

    def wait_ready(self, ctx: "RunContext", info: DeploymentInfo, *, timeout: float) -> DeploymentInfo:
        deadline = time.monotonic() + timeout
        running_since: dict[str, float] = {}
        delay = POLL_FIRST_S
        while True:
            info = self.status(ctx, info)
            now = time.monotonic()
            for c in info.containers:
                if c.state == "running":
                    running_since.setdefault(c.engine_name, now)
            crashed = [c for c in info.containers if c.failed]
            if crashed:
                raise self._crash_failure(ctx, info, crashed)
            missing = readiness(info, running_since, now)
            if missing is None:
                return info
            if now >= deadline:
                raise self._timeout_failure(ctx, info, missing, timeout)
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 1.5, POLL_MAX_S)

    def _crash_failure(self, ctx: "RunContext", info: DeploymentInfo, crashed: list[ContainerInfo]) -> TargetFailure:
        logs = self.collect_logs(ctx, info, ctx.stage_dir / "logs")
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

    def _timeout_failure(self, ctx: "RunContext", info: DeploymentInfo, missing: str, timeout: float) -> TargetFailure:
        logs = self.collect_logs(ctx, info, ctx.stage_dir / "logs")
        evidence = [_states_evidence(info)]
        evidence += [Evidence(kind="log", title=f"logs of {key}", stdout=tail_lines(text, 40))
                     for key, text in logs.items()]  # fmt: skip
        return TargetFailure(f"not ready after {timeout:.0f}s: {missing}", evidence, info)

    # -- reaching a pod, resource use ---------------------------------------------------------------------------------
    def open_port(self, ctx: "RunContext", info: DeploymentInfo, pod: PodInfo,
                  port: int) -> contextlib.AbstractContextManager[str]:
        """The loopback port the played copy published for `port`, else the pod's own address."""
        published = info.published_port(pod.name, port)
        if published is not None:
            return _url(f"http://{published.host_ip}:{published.host_port}")
        return super().open_port(ctx, info, pod, port)

    def usage(self, ctx: "RunContext", info: DeploymentInfo) -> list[ContainerUsage] | None:
        names = {c.engine_name: c for c in info.containers if c.engine_name}
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
    def collect_logs(self, ctx: "RunContext", info: DeploymentInfo, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        logs: dict[str, str] = {}
        for c in info.containers:
            result = self._run(["logs", "--timestamps", c.engine_name], None)
            text = merge_timestamped(result.stdout, result.stderr) if result.ok else f"(no logs: {result.describe()})"
            logs[f"{c.pod}/{c.name}"] = text
            (directory / f"{c.pod}-{c.name}.log").write_text(text, encoding="utf-8")
        return logs

    # -- teardown ---------------------------------------------------------------------------------------------------
    def teardown(self, ctx: "RunContext", info: DeploymentInfo | None = None) -> None:
        played = Path(info.manifest_file) if info and info.manifest_file else None
        self._teardown(ctx.run_id, played, ctx.log_file)

    def _teardown(self, run_id: str, played_file: Path | None, log_file: Path | None) -> None:
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


def _listening(inspected: list[dict[str, Any]], pod_id: str) -> tuple[list[int], list[int]] | None:
    """(open ports, loopback-only ports) in the pod's network namespace, read from /proc of one of its processes.

    Works where this process may read the container's /proc (root, or rootless podman of the same user); None
    elsewhere, and readiness then falls back to a settle time.
    """
    for entry in inspected:
        pid = entry.get("State", {}).get("Pid") or 0
        if entry.get("Pod") != pod_id or pid <= 0:
            continue
        sockets: set[tuple[str, int]] = set()
        try:
            for table in ("tcp", "tcp6"):
                path = Path(f"/proc/{pid}/net/{table}")
                if path.exists():
                    sockets |= parse_listening(path.read_text())
        except OSError:
            return None
        return split_listening(sockets)
    return None


@contextlib.contextmanager
def _url(url: str) -> Iterator[str]:
    yield url


_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int | None:
    """Bytes of a podman size such as `12.69MB` (decimal units, as podman prints) or `128MiB`."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return round(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float | None:
    """Seconds of a Go duration such as `1m2.5s` or `64.28ms`."""
    parts = re.findall(r"([\d.]+)(ns|us|µs|μs|ms|s|m|h)", text or "")
    if not parts or "".join(n + u for n, u in parts) != (text or "").strip():
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def stats_usage(entries: list[dict[str, Any]], containers_by_name: dict[str, ContainerInfo]) -> list[ContainerUsage]:
    """ContainerUsage of `podman stats --no-stream --format json` entries (infra containers left out)."""
    out = []
    for entry in entries:
        known = containers_by_name.get(str(entry.get("name", "")))
        if known is None:
            continue
        used, _, limit = str(entry.get("mem_usage", "")).partition("/")
        out.append(ContainerUsage(pod=known.pod, container=known.name,
                                  cpu_time_s=parse_duration(str(entry.get("cpu_time", ""))),
                                  memory_bytes=parse_size(used), memory_limit_bytes=parse_size(limit)))
    return out


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours (Flask, uvicorn) are noise in evidence
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(\S*) ?(.*)$")


def merge_timestamped(stdout: str, stderr: str) -> str:
    """Interleave `podman logs --timestamps` stdout and stderr lines by time; drop timestamps and colour codes.

    podman writes the container's two streams to its own stdout and stderr; merged, a traceback stays after the
    lines that led to it.
    """
    entries: list[tuple[str, int, str]] = []
    for order, line in enumerate(stdout.splitlines() + stderr.splitlines()):
        m = _TS.match(line)
        if m:
            key = m.group(1) + "." + (m.group(2) or "").ljust(9, "0")
            entries.append((key, order, m.group(4)))
        else:
            entries.append((entries[-1][0] if entries else "", order, line))
    entries.sort(key=lambda e: (e[0], e[1]))
    return "".join(_ANSI.sub("", text) + "\n" for _, _, text in entries)


def _last_error_line(result: CommandResult) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip() and "failed to connect to syslog" not in ln]
    errors = [ln for ln in lines if ln.startswith("Error")]
    return (errors or lines or [result.describe()])[-1][:300]


def _states_evidence(info: DeploymentInfo) -> Evidence:
    return Evidence(kind="finding", title="container states", detail=info.describe_states())
