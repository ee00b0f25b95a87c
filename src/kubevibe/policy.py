"""The safety policy for generated manifests: what KubeVibe refuses to deploy, whatever the model wrote.

Pure functions over loaded documents (see kubevibe.manifests). `check(docs)` returns findings, each one sentence
naming the object, the field and the value, ready to be shown to the Fix stage's model.

What is refused, and why:
- kinds outside a small allowlist of namespaced application kinds: cluster-scoped objects (Namespace, ClusterRole,
  CRDs, webhooks, ...) change the whole cluster; RBAC objects grant permissions; DaemonSets run on every node;
- metadata.namespace is NOT refused: the tool (the user's target) decides the namespace, so the applied copy
  drops the field with a note (manifests.drop_namespaces), as it replaces the image;
- containers that escape isolation: privileged, allowPrivilegeEscalation, added capabilities, Windows hostProcess;
- pods that share the node: hostNetwork, hostPID, hostIPC, hostPort, hostPath volumes;
- Services reachable from outside the cluster (NodePort, LoadBalancer, externalIPs) unless allow_node_port.
Running as root (runAsUser 0) is allowed: generated Flask images from python:3.11-slim run as root, and refusing
that would fail nearly every run for little gain inside an unprivileged container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubevibe.manifests import CONTAINER_LISTS, POD_KINDS, describe, pod_spec

# Namespaced kinds a generated service may consist of.
ALLOWED_KINDS = frozenset({
    "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Pod", "ReplicaSet", "StatefulSet", "Job",
    "CronJob", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim",
})

# Why some well-known kinds are refused; any other kind outside the allowlist gets a generic reason.
REFUSED_KINDS: dict[str, str] = {
    "DaemonSet": "it runs a pod on every node of the cluster; use a Deployment",
    "Role": "RBAC objects grant permissions, and KubeVibe does not create them",
    "RoleBinding": "RBAC objects grant permissions, and KubeVibe does not create them",
}
_CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "RuntimeClass", "IngressClass",
    "CSIDriver", "CSINode", "VolumeAttachment", "CertificateSigningRequest", "FlowSchema",
    "PriorityLevelConfiguration", "ClusterIssuer",
})
EXTERNAL_SERVICE_TYPES = frozenset({"NodePort", "LoadBalancer"})


def check(docs: Iterable[Mapping], *, allow_node_port: bool = False) -> list[str]:
    """All policy findings for these objects, in document order; [] means the manifest may be deployed."""
    findings: list[str] = []
    for doc in docs:
        findings.extend(check_kind(doc))
        if doc.get("kind") in POD_KINDS:
            findings.extend(check_pod(doc))
        if doc.get("kind") == "Service":
            findings.extend(check_service(doc, allow_node_port=allow_node_port))
    return findings


def check_kind(doc: Mapping) -> list[str]:
    kind = str(doc.get("kind"))
    if kind in ALLOWED_KINDS:
        return []
    if kind in REFUSED_KINDS:
        reason = REFUSED_KINDS[kind]
    elif kind in _CLUSTER_SCOPED:
        reason = "it is a cluster-scoped object that would change the whole cluster"
    else:
        reason = "it is not one of the namespaced kinds KubeVibe deploys (" + ", ".join(sorted(ALLOWED_KINDS)) + ")"
    return [f"{describe(doc)}: kind {kind} is not allowed, because {reason}."]


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def check_pod(doc: Mapping) -> list[str]:
    """Isolation findings for the pod template of a workload (or a Pod)."""
    spec = pod_spec(doc)
    where = describe(doc)
    findings: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if _true(spec.get(field)):
            findings.append(f"{where}: the pod sets {field}: true, which is not allowed, because it shares the "
                            f"node's namespaces.")
    pod_security = spec.get("securityContext")
    if isinstance(pod_security, dict) and _true(_dig(pod_security, "windowsOptions", "hostProcess")):
        findings.append(f"{where}: the pod sets securityContext.windowsOptions.hostProcess: true, which is not "
                        f"allowed.")
    volumes = spec.get("volumes")
    for volume in volumes if isinstance(volumes, list) else []:
        if isinstance(volume, dict) and "hostPath" in volume:
            path = _dig(volume, "hostPath", "path")
            findings.append(f"{where}: volume {volume.get('name', '(unnamed)')!r} is a hostPath volume"
                            f"{f' ({path})' if path else ''}, which is not allowed; use emptyDir, a ConfigMap or a "
                            f"PersistentVolumeClaim instead.")
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        for container in items if isinstance(items, list) else []:
            if isinstance(container, dict):
                findings.extend(check_container(where, list_name, container))
    return findings


def check_container(where: str, list_name: str, container: Mapping) -> list[str]:
    label = {"containers": "container", "initContainers": "init container",
             "ephemeralContainers": "ephemeral container"}[list_name]
    who = f"{where}: {label} {container.get('name', '(unnamed)')!r}"
    findings: list[str] = []
    security = container.get("securityContext")
    if isinstance(security, dict):
        if _true(security.get("privileged")):
            findings.append(f"{who} sets securityContext.privileged: true, which is not allowed.")
        if _true(security.get("allowPrivilegeEscalation")):
            findings.append(f"{who} sets securityContext.allowPrivilegeEscalation: true, which is not allowed.")
        added = _dig(security, "capabilities", "add")
        if added:
            shown = ", ".join(str(c) for c in added) if isinstance(added, list) else str(added)
            findings.append(f"{who} adds capabilities ({shown}) in securityContext.capabilities.add, which is not "
                            f"allowed.")
        if _true(_dig(security, "windowsOptions", "hostProcess")):
            findings.append(f"{who} sets securityContext.windowsOptions.hostProcess: true, which is not allowed.")
    ports = container.get("ports")
    for port in ports if isinstance(ports, list) else []:
        if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
            findings.append(f"{who} sets hostPort: {port['hostPort']} on containerPort {port.get('containerPort')}, "
                            f"which is not allowed; the Service exposes the port.")
    return findings


def check_service(doc: Mapping, *, allow_node_port: bool = False) -> list[str]:
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    findings: list[str] = []
    service_type = spec.get("type", "ClusterIP")
    if service_type in EXTERNAL_SERVICE_TYPES and not allow_node_port:
        findings.append(f"{describe(doc)}: spec.type is {service_type}, which is not allowed; use ClusterIP "
                        f"(or enable the allow-node-port setting).")
    if spec.get("externalIPs") and not allow_node_port:
        findings.append(f"{describe(doc)}: spec.externalIPs is set ({spec['externalIPs']}), which is not allowed.")
    return findings


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
