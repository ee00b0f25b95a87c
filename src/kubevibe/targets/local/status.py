"""Reading podman's answers (pure, but for /proc): container states, listening sockets, readiness, stats, logs.

`readiness` decides when a played pod serves: it listens on every port a Service sends it to (read from
/proc/<pid>/net/tcp of one of its processes), or has run `SETTLE_S` seconds listening elsewhere or on nothing
that can be read. `stats_usage` turns `podman stats` into ContainerUsage, `merge_timestamped` merges a
container's two log streams by time.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from kubevibe.manifests import selects
from kubevibe.targets.base import ContainerInfo, ContainerUsage, DeploymentInfo, PodInfo

# A container that never opens a TCP port counts as ready once it has run this long without exiting.
SETTLE_S = 5.0


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


def declared_ports(info: DeploymentInfo, pod: PodInfo) -> set[int]:
    """The ports a pod must listen on: the targetPorts of the Services that select it."""
    return {sp.target_port for sp in info.service_ports if sp.target_port and selects(sp.selector, pod.labels)}


def readiness(
    info: DeploymentInfo, running_since: dict[str, float], now: float, settle: float | None = None
) -> str | None:
    """None when every expected container runs and serves; else what is still missing, for the timeout message.

    Serving: the pod listens on every port a Service sends it to. A pod that listens only on other ports (a
    wrong targetPort) or on loopback counts as up after `settle` seconds (default SETTLE_S), so Connect can say
    which ports; a pod no Service selects, or whose sockets cannot be read, after `settle` seconds of running.
    A pod that listens on nothing yet is waited for: a slow start under a low CPU limit is not a failure."""
    settle = SETTLE_S if settle is None else settle
    if len(info.pods) < info.expected_pods:
        return f"{len(info.pods)} of {info.expected_pods} pods exist"
    if not info.containers:
        return "no containers yet"
    for c in info.containers:
        if c.state != "running":
            return f"container {c.name} of pod {c.pod} is {c.state}"
    for pod in info.pods:
        started = min((running_since.get(c.engine_name, now) for c in info.containers_of(pod.name)), default=now)
        wanted = declared_ports(info, pod)
        if wanted and pod.listening is not None:
            missing = sorted(wanted - set(pod.listening))
            if not missing:
                continue
            open_elsewhere = pod.listening or pod.loopback_only
            if open_elsewhere and now - started >= settle:
                continue  # up, but not where the Service points: Connect names the ports
            ports = ", ".join(map(str, missing))
            return (f"pod {pod.name} does not listen on port {ports} yet (running for {now - started:.0f}s"
                    + (f"; it listens on {', '.join(map(str, open_elsewhere))}" if open_elsewhere else "") + ")")
        if pod.listening or pod.loopback_only:  # the server is up, reachable or not (Connect tells)
            continue
        if now - started < settle:
            return f"pod {pod.name} listens on no TCP port yet"
    return None


def pod_listening(inspected: list[dict[str, Any]], pod_id: str) -> tuple[list[int], list[int]] | None:
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
