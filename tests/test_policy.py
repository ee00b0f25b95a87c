"""kubevibe.policy: what KubeVibe refuses to deploy, each finding one sentence naming object, field and value."""

from __future__ import annotations

import pytest
from helpers import known_good_docs

from kubevibe import policy


def container(docs):
    return docs[0]["spec"]["template"]["spec"]["containers"][0]


def pod(docs):
    return docs[0]["spec"]["template"]["spec"]


def test_known_good_passes():
    assert policy.check(known_good_docs()) == []


def test_privileged_container_names_the_container():
    docs = known_good_docs()
    container(docs)["securityContext"] = {"privileged": True}
    assert policy.check(docs) == [
        "Deployment credit-card: container 'app' sets securityContext.privileged: true, which is not allowed."
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: container(d).update(securityContext={"allowPrivilegeEscalation": True}),
         "container 'app' sets securityContext.allowPrivilegeEscalation: true"),
        (lambda d: container(d).update(securityContext={"capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}}),
         "container 'app' adds capabilities (NET_ADMIN, SYS_TIME)"),
        (lambda d: container(d)["ports"][0].update(hostPort=5000),
         "container 'app' sets hostPort: 5000 on containerPort 5000"),
        (lambda d: pod(d).update(hostNetwork=True), "the pod sets hostNetwork: true"),
        (lambda d: pod(d).update(hostPID=True), "the pod sets hostPID: true"),
        (lambda d: pod(d).update(hostIPC=True), "the pod sets hostIPC: true"),
        (lambda d: pod(d).update(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
         "volume 'root' is a hostPath volume (/), which is not allowed"),
        (lambda d: pod(d).update(initContainers=[{"name": "setup", "image": "x",
                                                  "securityContext": {"privileged": True}}]),
         "init container 'setup' sets securityContext.privileged: true"),
    ],
)
def test_refused_pod_settings(mutate, expected):
    docs = known_good_docs()
    mutate(docs)
    findings = policy.check(docs)
    assert len(findings) == 1, findings
    assert expected in findings[0]
    assert findings[0].endswith(".")


def test_capabilities_drop_is_fine():
    docs = known_good_docs()
    container(docs)["securityContext"] = {"capabilities": {"drop": ["ALL"], "add": []},
                                          "allowPrivilegeEscalation": False, "runAsUser": 0}
    assert policy.check(docs) == []


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("ClusterRole", "cluster-scoped object"),
        ("Namespace", "cluster-scoped object"),
        ("CustomResourceDefinition", "cluster-scoped object"),
        ("DaemonSet", "runs a pod on every node"),
        ("RoleBinding", "grant permissions"),
        ("Widget", "not one of the namespaced kinds KubeVibe deploys"),
    ],
)
def test_kinds_outside_the_allowlist(kind, reason):
    docs = known_good_docs() + [{"apiVersion": "v1", "kind": kind, "metadata": {"name": "extra"}}]
    findings = policy.check(docs)
    assert len(findings) == 1
    assert findings[0].startswith(f"{kind} extra: kind {kind} is not allowed, because")
    assert reason in findings[0]


def test_allowed_namespaced_kinds():
    extra = [{"apiVersion": "v1", "kind": k, "metadata": {"name": "x"}}
             for k in ("ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim", "NetworkPolicy")]
    assert policy.check(known_good_docs() + extra) == []


def test_pod_checks_reach_cronjobs():
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostNetwork": True, "containers": []}}}}}}
    assert policy.check([cron]) == [
        "CronJob nightly: the pod sets hostNetwork: true, which is not allowed, because it shares the node's "
        "namespaces."
    ]


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_external_service_types_need_the_setting(service_type):
    docs = known_good_docs()
    docs[1]["spec"]["type"] = service_type
    assert policy.check(docs) == [
        f"Service credit-card: spec.type is {service_type}, which is not allowed; use ClusterIP "
        f"(or enable the allow-node-port setting)."
    ]
    assert policy.check(docs, allow_node_port=True) == []


def test_namespace_is_not_refused_but_dropped_from_the_applied_copy():
    from kubevibe.manifests import drop_namespaces

    docs = known_good_docs()
    docs[0]["metadata"]["namespace"] = "default"
    assert policy.check(docs) == []
    applied, notes = drop_namespaces(docs)
    assert "namespace" not in applied[0]["metadata"] and docs[0]["metadata"]["namespace"] == "default"
    assert notes == ["Deployment credit-card: metadata.namespace 'default' dropped from the applied copy "
                     "(KubeVibe chooses the namespace)"]
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mine"}})
    assert any("kind Namespace is not allowed" in f for f in policy.check(docs))  # cluster-scoped stays refused
