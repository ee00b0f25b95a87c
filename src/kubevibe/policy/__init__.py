"""The safety policy for manifests: the Pod Security Standards at a chosen level, with KubeVibe's own rules on top.

Pure functions over loaded documents (see kubevibe.manifests). `findings(docs, level=...)` returns structured
findings; `check(docs)` the sentences of the refused ones, ready to be shown to the Fix stage's model. Each finding
names the object, the container (if any), the exact field path, and who forbids it: the Pod Security Standards
level (kubevibe.policy.podsecurity, which follows the reference pod-security-admission code) or KubeVibe.

KubeVibe's own rules (named `kubevibe` in every finding, so the standard and our additions can be told apart):
- kinds: only namespaced application kinds; cluster-scoped objects (Namespace, ClusterRole, CRDs, webhooks, ...)
  change the whole cluster, RBAC objects grant permissions;
- metadata.namespace is a warning, not a refusal: the tool (the user's target) decides the namespace, so the
  applied copy drops the field with a note (manifests.drop_namespaces), as it replaces the image;
- Services reachable from outside the cluster (NodePort, LoadBalancer, externalIPs) unless allow_node_port.
Everything about pods (privileged, host namespaces, capabilities, volumes, seccomp, ...) is the standard's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kubevibe.manifests import describe
from kubevibe.policy import podsecurity
from kubevibe.policy.podsecurity import LEVELS, Level, Violation

__all__ = ["LEVELS", "DEFAULT_LEVEL", "Level", "PolicyFinding", "check", "findings"]

DEFAULT_LEVEL: Level = "baseline"
KUBEVIBE = "kubevibe"

# Namespaced kinds a service may consist of (every pod-carrying kind is checked against the standard).
ALLOWED_KINDS = frozenset({
    "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Pod", "ReplicaSet", "StatefulSet", "DaemonSet",
    "Job", "CronJob", "ReplicationController", "PodTemplate", "Ingress", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim",
})
# Why some well-known kinds are refused; any other kind outside the allowlist gets a generic reason.
REFUSED_KINDS: dict[str, str] = {
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

Severity = Literal["refused", "warning"]


@dataclass(frozen=True)
class PolicyFinding:
    object: str  # "Deployment credit-card"
    level: str  # "baseline" | "restricted" (the Pod Security Standards level that forbids it) | "kubevibe"
    rule: str  # the standard's check ID ("privileged") or KubeVibe's rule ("kind", "namespace", "service-type")
    field: str  # exact path from the object's root, e.g. spec.template.spec.containers[0].securityContext.privileged
    message: str  # one sentence, everything above included
    container: str | None = None
    severity: Severity = "refused"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def findings(docs: Iterable[Mapping], *, level: Level = DEFAULT_LEVEL, allow_node_port: bool = False,
             namespace: Severity = "warning") -> list[PolicyFinding]:
    """Every finding for these objects, in document order. `namespace`: how a metadata.namespace counts (a
    warning: the deployed copy drops it, see manifests.drop_namespaces)."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security Standards level {level!r}")
    out: list[PolicyFinding] = []
    for doc in docs:
        out.extend(_kind_findings(doc))
        out.extend(_namespace_findings(doc, namespace))
        out.extend(_pod_security_finding(doc, v) for v in podsecurity.evaluate(doc, level))
        if doc.get("kind") == "Service":
            out.extend(_service_findings(doc, allow_node_port=allow_node_port))
    return out


def check(docs: Iterable[Mapping], *, allow_node_port: bool = False, level: Level = DEFAULT_LEVEL) -> list[str]:
    """The sentences of everything refused; [] means the manifest may be deployed."""
    return [f.message for f in findings(docs, level=level, allow_node_port=allow_node_port) if f.severity == "refused"]


# --- the Pod Security Standards, as sentences ------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, int, float, str, list, dict)) else str(value)


def _pod_security_finding(doc: Mapping, violation: Violation) -> PolicyFinding:
    where = describe(doc)
    who = f"container {violation.container!r}: " if violation.container else ""
    state = "is not set" if violation.value is None else f"is {_value_text(violation.value)}"
    message = (f"{where}: {who}{violation.field} {state}, which the Pod Security Standards forbid at level "
               f"{violation.level} ({violation.control}: {violation.reason}).")
    return PolicyFinding(where, violation.level, violation.control, violation.field, message, violation.container)


# --- KubeVibe's own rules --------------------------------------------------------------------------------------------


def _ours(doc: Mapping, rule: str, field: str, text: str, severity: Severity = "refused") -> PolicyFinding:
    where = describe(doc)
    return PolicyFinding(where, KUBEVIBE, rule, field,
                         f"{where}: {text} (KubeVibe's own rule '{rule}', not the Pod Security Standards).",
                         severity=severity)


def _kind_findings(doc: Mapping) -> list[PolicyFinding]:
    kind = str(doc.get("kind"))
    if kind in ALLOWED_KINDS:
        return []
    if kind in REFUSED_KINDS:
        reason = REFUSED_KINDS[kind]
    elif kind in _CLUSTER_SCOPED:
        reason = "it is a cluster-scoped object that would change the whole cluster"
    else:
        reason = "it is not one of the namespaced kinds KubeVibe deploys (" + ", ".join(sorted(ALLOWED_KINDS)) + ")"
    return [_ours(doc, "kind", "kind", f"kind {kind} is not allowed, because {reason}")]


def _namespace_findings(doc: Mapping, severity: Severity) -> list[PolicyFinding]:
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and "namespace" in metadata:
        return [_ours(doc, "namespace", "metadata.namespace",
                      f"metadata.namespace is set to {metadata['namespace']!r}; KubeVibe chooses the namespace, so "
                      "the deployed copy leaves it out", severity)]
    return []


def _service_findings(doc: Mapping, *, allow_node_port: bool = False) -> list[PolicyFinding]:
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    out: list[PolicyFinding] = []
    service_type = spec.get("type", "ClusterIP")
    if service_type in EXTERNAL_SERVICE_TYPES and not allow_node_port:
        out.append(_ours(doc, "service-type", "spec.type",
                         f"spec.type is {service_type}, which is not allowed; use ClusterIP "
                         f"(or enable the allow-node-port setting)"))
    if spec.get("externalIPs") and not allow_node_port:
        out.append(_ours(doc, "service-type", "spec.externalIPs",
                         f"spec.externalIPs is set ({spec['externalIPs']}), which is not allowed"))
    return out
