"""Leftovers of the local provider for `kubevibe gc`: podman pods, containers and networks with the run label
(pure parsers of podman's JSON). Removing one run's pods and network at once is `LocalTarget.remove_run`.
"""

from __future__ import annotations

from typing import Any

from kubevibe.leftover import Leftover, owner_of, podman_time
from kubevibe.targets.labels import RUN_LABEL


def podman_pods(data: Any) -> list[Leftover]:
    out = []
    for pod in data or []:
        run_id = (pod.get("Labels") or {}).get(RUN_LABEL)
        if run_id:
            out.append(Leftover("podman", "pod", str(pod.get("Name") or pod.get("Id")), run_id,
                                podman_time(pod.get("Created")), str(pod.get("Status") or "").lower(),
                                owner=owner_of(pod.get("Labels")), extra={"id": pod.get("Id")}))
    return out


def podman_containers(data: Any, pod_ids: set[str]) -> list[Leftover]:
    """Containers outside the pods already listed (a pod's containers go with it)."""
    out = []
    for c in data or []:
        run_id = (c.get("Labels") or {}).get(RUN_LABEL)
        if run_id and c.get("Pod") not in pod_ids:
            names = c.get("Names") or [c.get("Id")]
            out.append(Leftover("podman", "container", str(names[0]), run_id, podman_time(c.get("Created")),
                                str(c.get("State") or "").lower(), owner=owner_of(c.get("Labels")),
                                extra={"id": c.get("Id")}))
    return out


def podman_networks(data: Any) -> list[Leftover]:
    out = []
    for net in data or []:
        labels = net.get("labels") or net.get("Labels") or {}
        run_id = labels.get(RUN_LABEL)
        if run_id:
            out.append(Leftover("podman", "network", str(net.get("name") or net.get("Name")), run_id,
                                podman_time(net.get("created")), owner=owner_of(labels)))
    return out
