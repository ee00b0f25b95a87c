"""The Kubernetes provider's applied copy of the manifest (pure): the run's namespace object with its Pod
Security labels, and each Deploy's `applied.yaml` (the built image, the run and step labels on every object).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubevibe.manifests import containers, describe, drop_namespaces, pod_template, set_image
from kubevibe.targets.kubernetes.kubectl import MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION, STEP_LABEL, namespace_name
from kubevibe.targets.labels import RUN_LABEL, label_value

def pod_security_labels(level: str) -> dict[str, str]:
    """Pod Security Admission labels: the cluster enforces (and warns and audits) the run's policy level too."""
    return {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")}


def namespace_object(run_id: str, owner: str | None = None, level: str = "baseline") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": namespace_name(run_id),
                            "labels": {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: label_value(run_id),
                                       **pod_security_labels(level)}}
    if owner:
        meta["annotations"] = {OWNER_ANNOTATION: owner}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def applied_manifest(docs: list[dict[str, Any]], image: str | None, run_id: str, step: int, *,
                     image_preloaded: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """(the objects to apply, notes on what changed). The input is not modified.

    The built image goes into every Deployment container; every object and pod template gets the run and step
    labels. image_preloaded (the image was loaded into the nodes, e.g. kind): containers running it get
    imagePullPolicy IfNotPresent, since no registry has it.
    """
    out, notes = drop_namespaces(set_image(docs, image) if image else docs)
    labels = {RUN_LABEL: label_value(run_id), STEP_LABEL: str(step)}
    for doc in out:
        _add_labels(doc, labels)
        template = pod_template(doc)  # a Pod's template is the Pod itself, labelled already
        if template:
            _add_labels(template, labels)
        if image_preloaded and image:
            for container in containers(doc, include_init=True):
                policy_now = container.get("imagePullPolicy", "IfNotPresent")
                if container.get("image") == image and policy_now != "IfNotPresent":
                    notes.append(f"{describe(doc)} container {container.get('name')}: imagePullPolicy {policy_now} "
                                 "-> IfNotPresent (the image was loaded into the nodes, no registry has it)")
                    container["imagePullPolicy"] = "IfNotPresent"
    return out, notes


def _add_labels(obj: dict[str, Any], labels: Mapping[str, str]) -> None:
    """Merge `labels` into obj's metadata.labels, making both if missing (a malformed metadata is left alone)."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return
    if not isinstance(meta.get("labels"), dict):
        meta["labels"] = {}
    meta["labels"].update(labels)


def expected_pods(docs: Iterable[Mapping[str, Any]]) -> int:
    """Pods that should run: replicas of Deployments, StatefulSets and ReplicaSets (default 1), one per bare Pod."""
    total = 0
    for doc in docs:
        kind = doc.get("kind")
        if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            replicas = (doc.get("spec") or {}).get("replicas", 1)
            total += replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1
        elif kind == "Pod":
            total += 1
    return total
