"""The local target's played copy of the manifest (pure): what `podman kube play` is given, and why.

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

import hashlib
import re
import socket
from collections.abc import Callable
from typing import Any

from kubevibe.manifests import containers, drop_namespaces, pod_labels, pod_template, selects, set_image, workloads
from kubevibe.owner import owner_labels
from kubevibe.targets.base import PublishedPort, ServicePortInfo
from kubevibe.targets.labels import RUN_LABEL, label_value

PLAYED_KINDS = frozenset({"Deployment", "Pod", "ConfigMap", "Secret"})
# Container fields the played copy drops (see the module docstring).
DROPPED_CONTAINER_FIELDS = ("ports", "livenessProbe", "readinessProbe", "startupProbe")


# --- names (pure) ---------------------------------------------------------------------------------------------------


def run_token(run_id: str) -> str:
    """A short lowercase token of the run for resource names: the random part of `<stamp>-<hex>` run ids."""
    last = run_id.rsplit("-", 1)[-1].lower()
    if re.fullmatch(r"[a-z0-9]{4,12}", last):
        return last
    return hashlib.sha1(run_id.encode()).hexdigest()[:8]


def network_name(run_id: str) -> str:
    return "kubevibe-" + re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)


# --- the played copy (pure) -----------------------------------------------------------------------------------------


def played_manifest(docs: list[dict[str, Any]], image: str, run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(the documents to give `podman kube play`, notes on what changed). The input is not modified."""
    docs, notes = drop_namespaces(docs)
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
    metadata["labels"].update(owner_labels())  # gc removes at once what a dead process left
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


def cpu_limits(docs: list[dict[str, Any]]) -> dict[str, str]:
    """resources.limits.cpu of every container that has one, keyed by container name (the slow-start hint)."""
    out: dict[str, str] = {}
    for doc in workloads(docs):
        for container in containers(doc):
            limits = (container.get("resources") or {}).get("limits") or {}
            if isinstance(limits, dict) and limits.get("cpu") is not None:
                out[str(container.get("name"))] = str(limits["cpu"])
    return out


def slow_start_hint(limits: dict[str, str]) -> str:
    which = ", ".join(f"{limit} for container {name}" for name, limit in limits.items())
    return (f"the CPU limit ({which}) slows the start of a Python server; raise resources.limits.cpu "
            "(e.g. 500m) if the logs show it still starting")
