"""Leftovers of the Kubernetes provider for `kubevibe gc`: the run namespaces KubeVibe made (`Cluster`, found and
deleted by a selector with both labels), who owns one (the annotation `io.kubevibe.owner`,
`<host>/<pid>/<process start ticks>`) and whether that process still lives.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Any

from kubevibe.exec import CommandResult, run
from kubevibe.leftover import Leftover
from kubevibe.owner import start_ticks
from kubevibe.targets.kubernetes.kubectl import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    REQUEST_TIMEOUT,
    KubeAccess,
    namespace_selector,
)
from kubevibe.targets.kubernetes.status import items
from kubevibe.targets.labels import RUN_LABEL

COMMAND_TIMEOUT_S = 60.0

def process_owner(pid: int | None = None) -> str:
    """<host>/<pid>/<start ticks>: names this process unambiguously (pids are reused, start times are not)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{start_ticks(pid) or 0}"


def owner_alive(owner: str, host: str | None = None) -> bool | None:
    """True/False for an owner on this host; None when it is another host's process (cannot tell)."""
    parts = owner.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    if parts[0] != (host or socket.gethostname()):
        return None
    ticks = start_ticks(int(parts[1]))
    return ticks is not None and str(ticks) == parts[2]


def cluster_namespaces(data: Any) -> list[Leftover]:
    out = []
    for ns in items(data):
        meta = ns.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not labels.get(RUN_LABEL):
            continue  # belt and braces: the selector asked for both already
        created = meta.get("creationTimestamp")
        when = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() \
            if created else None
        out.append(Leftover("cluster", "namespace", str(meta.get("name")), labels[RUN_LABEL], when,
                            str((ns.get("status") or {}).get("phase") or "").lower(),
                            owner=str((meta.get("annotations") or {}).get(OWNER_ANNOTATION) or "")))
    return out


class Cluster:
    def __init__(self, access: KubeAccess):
        self.access = access

    def find(self) -> list[Leftover]:
        argv = self.access.argv("get", "namespaces", "-l", namespace_selector(), "-o", "json", REQUEST_TIMEOUT)
        result = run(argv, timeout=COMMAND_TIMEOUT_S, env=self.access.env() or None)
        result.check(hint="Check --kubeconfig / --context, or use `kubevibe gc --target local`.")
        return cluster_namespaces(json.loads(result.stdout or "{}"))

    def delete(self, leftover: Leftover) -> CommandResult:
        # By selector with both labels and the run: nothing without them can be named here.
        argv = self.access.argv("delete", "namespaces", "-l", namespace_selector(leftover.run), "--wait=false",
                                "--ignore-not-found", REQUEST_TIMEOUT)
        return run(argv, timeout=COMMAND_TIMEOUT_S, env=self.access.env() or None)
