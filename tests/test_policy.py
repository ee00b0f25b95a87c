"""kubevibe.policy: the Pod Security Standards (baseline, restricted) as the reference pod-security-admission code
applies them, plus KubeVibe's own rules; every finding names object, container, field path and level.

The case table mirrors the reference implementation's fixtures (test/fixtures_<check>.go): for each control, a
minimal pod that passes both levels is mutated into what the standard forbids and into what it explicitly allows.
"""

from __future__ import annotations

import copy

import pytest
from helpers import known_good_docs

from kubevibe import policy
from kubevibe.policy import podsecurity

BASE_RESTRICTED = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "initcontainer1", "image": "registry.k8s.io/pause",
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "containers": [{"name": "container1", "image": "registry.k8s.io/pause",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    },
}


def pod(mutate=None) -> dict:
    doc = copy.deepcopy(BASE_RESTRICTED)
    if mutate:
        mutate(doc["spec"], doc)
    return doc


def c(spec, i=0):
    return spec["containers"][i]["securityContext"]


def ic(spec):
    return spec["initContainers"][0]["securityContext"]


def psc(spec):
    return spec["securityContext"]


def refused(doc, level):
    return [f for f in policy.findings([doc], level=level) if f.severity == "refused"]


# (id, mutation, baseline allows?, restricted allows?, expected field of the first finding or None)
CASES = [
    # windowsHostProcess
    ("hostProcess pod", lambda s, d: psc(s).update(windowsOptions={"hostProcess": True}) or s.update(hostNetwork=True),
     False, False, "spec.securityContext.windowsOptions.hostProcess"),
    ("hostProcess container", lambda s, d: c(s).update(windowsOptions={"hostProcess": True}), False, False,
     "spec.containers[0].securityContext.windowsOptions.hostProcess"),
    ("hostProcess false", lambda s, d: c(s).update(windowsOptions={"hostProcess": False}), True, True, None),
    # hostNamespaces
    ("hostNetwork", lambda s, d: s.update(hostNetwork=True), False, False, "spec.hostNetwork"),
    ("hostPID", lambda s, d: s.update(hostPID=True), False, False, "spec.hostPID"),
    ("hostIPC", lambda s, d: s.update(hostIPC=True), False, False, "spec.hostIPC"),
    ("host namespaces false", lambda s, d: s.update(hostNetwork=False, hostPID=False, hostIPC=False), True, True, None),
    # privileged
    ("privileged", lambda s, d: c(s).update(privileged=True), False, False,
     "spec.containers[0].securityContext.privileged"),
    ("privileged init", lambda s, d: ic(s).update(privileged=True), False, False,
     "spec.initContainers[0].securityContext.privileged"),
    ("privileged false", lambda s, d: c(s).update(privileged=False), True, True, None),
    # capabilities_baseline / capabilities_restricted
    ("add NET_RAW", lambda s, d: c(s)["capabilities"].update(add=["NET_RAW"]), False, False,
     "spec.containers[0].securityContext.capabilities.add[0]"),
    ("add CAP_CHOWN (prefix is not the name)", lambda s, d: c(s)["capabilities"].update(add=["CAP_CHOWN"]),
     False, False, "spec.containers[0].securityContext.capabilities.add[0]"),
    ("add chown (case matters)", lambda s, d: c(s)["capabilities"].update(add=["chown"]), False, False,
     "spec.containers[0].securityContext.capabilities.add[0]"),
    ("add SYS_ADMIN init", lambda s, d: ic(s)["capabilities"].update(add=["SYS_ADMIN"]), False, False,
     "spec.initContainers[0].securityContext.capabilities.add[0]"),
    ("add the whole baseline list", lambda s, d: c(s)["capabilities"].update(
        add=sorted(podsecurity.BASELINE_CAPABILITIES)), True, False,
     "spec.containers[0].securityContext.capabilities.add[0]"),
    ("add NET_BIND_SERVICE", lambda s, d: c(s)["capabilities"].update(add=["NET_BIND_SERVICE"]), True, True, None),
    ("no drop ALL", lambda s, d: c(s)["capabilities"].update(drop=["NET_RAW"]), True, False,
     "spec.containers[0].securityContext.capabilities.drop"),
    ("no capabilities at all", lambda s, d: c(s).pop("capabilities"), True, False,
     "spec.containers[0].securityContext.capabilities.drop"),
    # hostPathVolumes / restrictedVolumes
    ("hostPath", lambda s, d: s.update(volumes=[{"name": "v", "hostPath": {"path": "/a"}}]), False, False,
     "spec.volumes[0].hostPath"),
    *[(f"volume {kind}", (lambda k: lambda s, d: s.update(volumes=[{"name": "v", k: {"x": "y"}}]))(kind), True, False,
       f"spec.volumes[0].{kind}")
      for kind in ("gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
                   "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte",
                   "azureDisk", "portworxVolume", "photonPersistentDisk", "scaleIO", "storageos")],
    *[(f"volume {kind} allowed", (lambda k: lambda s, d: s.update(volumes=[{"name": "v", k: {}}]))(kind), True, True,
       None) for kind in sorted(podsecurity.RESTRICTED_VOLUME_TYPES)],
    ("volume without a source (defaulted to emptyDir)", lambda s, d: s.update(volumes=[{"name": "v"}]), True, True,
     None),
    # hostPorts
    ("hostPort", lambda s, d: s["containers"][0].update(ports=[{"containerPort": 12345, "hostPort": 12345}]),
     False, False, "spec.containers[0].ports[0].hostPort"),
    ("hostPort on an init container", lambda s, d: s["initContainers"][0].update(
        ports=[{"containerPort": 1, "hostPort": 2}]), False, False, "spec.initContainers[0].ports[0].hostPort"),
    ("hostPort 0", lambda s, d: s["containers"][0].update(ports=[{"containerPort": 12345, "hostPort": 0}]),
     True, True, None),
    # appArmorProfile (annotation and field, pod and container)
    ("apparmor annotation unconfined", lambda s, d: d["metadata"].update(annotations={
        "container.apparmor.security.beta.kubernetes.io/container1": "unconfined"}), False, False,
     "metadata.annotations[container.apparmor.security.beta.kubernetes.io/container1]"),
    ("apparmor annotation runtime/default", lambda s, d: d["metadata"].update(annotations={
        "container.apparmor.security.beta.kubernetes.io/container1": "runtime/default"}), True, True, None),
    ("apparmor annotation localhost", lambda s, d: d["metadata"].update(annotations={
        "container.apparmor.security.beta.kubernetes.io/container1": "localhost/foo"}), True, True, None),
    ("apparmor pod field Unconfined", lambda s, d: psc(s).update(appArmorProfile={"type": "Unconfined"}),
     False, False, "spec.securityContext.appArmorProfile.type"),
    ("apparmor container field Unconfined", lambda s, d: c(s).update(appArmorProfile={"type": "Unconfined"}),
     False, False, "spec.containers[0].securityContext.appArmorProfile.type"),
    ("apparmor fields RuntimeDefault/Localhost", lambda s, d: (
        psc(s).update(appArmorProfile={"type": "RuntimeDefault"}),
        c(s).update(appArmorProfile={"type": "Localhost", "localhostProfile": "p"})), True, True, None),
    # seLinuxOptions
    ("selinux type", lambda s, d: c(s).update(seLinuxOptions={"type": "somevalue"}), False, False,
     "spec.containers[0].securityContext.seLinuxOptions.type"),
    ("selinux pod user", lambda s, d: psc(s).update(seLinuxOptions={"user": "somevalue"}), False, False,
     "spec.securityContext.seLinuxOptions.user"),
    ("selinux role", lambda s, d: ic(s).update(seLinuxOptions={"role": "somevalue"}), False, False,
     "spec.initContainers[0].securityContext.seLinuxOptions.role"),
    *[(f"selinux type {t}", (lambda t: lambda s, d: c(s).update(seLinuxOptions={"type": t, "level": "s0:c1"}))(t),
       True, True, None) for t in ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")],
    # procMount
    ("procMount Unmasked", lambda s, d: c(s).update(procMount="Unmasked"), False, False,
     "spec.containers[0].securityContext.procMount"),
    ("procMount Default", lambda s, d: c(s).update(procMount="Default"), True, True, None),
    ("procMount Unmasked with hostUsers false", lambda s, d: (s.update(hostUsers=False),
                                                             ic(s).update(procMount="Unmasked")), True, False,
     "spec.initContainers[0].securityContext.procMount"),
    # seccompProfile
    ("seccomp pod Unconfined", lambda s, d: psc(s).update(seccompProfile={"type": "Unconfined"}), False, False,
     "spec.securityContext.seccompProfile.type"),
    ("seccomp container Unconfined", lambda s, d: c(s).update(seccompProfile={"type": "Unconfined"}), False, False,
     "spec.containers[0].securityContext.seccompProfile.type"),
    ("seccomp unset", lambda s, d: psc(s).pop("seccompProfile"), True, False,
     "spec.initContainers[0].securityContext.seccompProfile.type"),
    ("seccomp per container", lambda s, d: (psc(s).pop("seccompProfile"),
                                            c(s).update(seccompProfile={"type": "Localhost", "localhostProfile": "x"}),
                                            ic(s).update(seccompProfile={"type": "RuntimeDefault"})), True, True, None),
    # sysctls
    ("unsafe sysctl", lambda s, d: psc(s).update(sysctls=[{"name": "othersysctl", "value": "other"}]), False, False,
     "spec.securityContext.sysctls[0].name"),
    ("kernel.msgmax is not safe", lambda s, d: psc(s).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
     False, False, "spec.securityContext.sysctls[0].name"),
    ("safe sysctls", lambda s, d: psc(s).update(sysctls=[{"name": n, "value": "0"}
                                                         for n in sorted(podsecurity.safe_sysctls())]), True, True, None),
    # hostProbesAndHostLifecycle
    ("liveness httpGet host", lambda s, d: s["containers"][0].update(
        livenessProbe={"httpGet": {"host": "bad.host", "port": 8080}}), False, False,
     "spec.containers[0].livenessProbe.httpGet.host"),
    ("readiness tcpSocket host", lambda s, d: s["containers"][0].update(
        readinessProbe={"tcpSocket": {"host": "1.2.3.4", "port": 8080}}), False, False,
     "spec.containers[0].readinessProbe.tcpSocket.host"),
    ("startup httpGet host", lambda s, d: s["containers"][0].update(
        startupProbe={"httpGet": {"host": "x", "port": 8080}}), False, False,
     "spec.containers[0].startupProbe.httpGet.host"),
    ("postStart host", lambda s, d: s["initContainers"][0].update(
        lifecycle={"postStart": {"httpGet": {"host": "x", "port": 1}}}), False, False,
     "spec.initContainers[0].lifecycle.postStart.httpGet.host"),
    ("preStop tcpSocket host", lambda s, d: s["containers"][0].update(
        lifecycle={"preStop": {"tcpSocket": {"host": "x", "port": 1}}}), False, False,
     "spec.containers[0].lifecycle.preStop.tcpSocket.host"),
    ("probes without host", lambda s, d: s["containers"][0].update(
        livenessProbe={"httpGet": {"port": 8080, "host": ""}}, readinessProbe={"tcpSocket": {"port": 8080}},
        lifecycle={"preStop": {"httpGet": {"port": 1}}}), True, True, None),
    # allowPrivilegeEscalation
    ("allowPrivilegeEscalation unset", lambda s, d: c(s).pop("allowPrivilegeEscalation"), True, False,
     "spec.containers[0].securityContext.allowPrivilegeEscalation"),
    ("allowPrivilegeEscalation true", lambda s, d: ic(s).update(allowPrivilegeEscalation=True), True, False,
     "spec.initContainers[0].securityContext.allowPrivilegeEscalation"),
    # runAsNonRoot
    ("runAsNonRoot unset", lambda s, d: psc(s).pop("runAsNonRoot"), True, False,
     "spec.initContainers[0].securityContext.runAsNonRoot"),
    ("runAsNonRoot pod false", lambda s, d: psc(s).update(runAsNonRoot=False), True, False,
     "spec.securityContext.runAsNonRoot"),
    ("runAsNonRoot container false", lambda s, d: c(s).update(runAsNonRoot=False), True, False,
     "spec.containers[0].securityContext.runAsNonRoot"),
    ("runAsNonRoot on every container", lambda s, d: (psc(s).pop("runAsNonRoot"), c(s).update(runAsNonRoot=True),
                                                      ic(s).update(runAsNonRoot=True)), True, True, None),
    ("runAsNonRoot unset with hostUsers false", lambda s, d: (psc(s).pop("runAsNonRoot"), s.update(hostUsers=False)),
     True, True, None),
    # runAsUser
    ("runAsUser 0 pod", lambda s, d: psc(s).update(runAsUser=0), True, False, "spec.securityContext.runAsUser"),
    ("runAsUser 0 container", lambda s, d: c(s).update(runAsUser=0), True, False,
     "spec.containers[0].securityContext.runAsUser"),
    ("runAsUser 1000", lambda s, d: (psc(s).update(runAsUser=1000), c(s).update(runAsUser=1)), True, True, None),
    ("runAsUser 0 with hostUsers false", lambda s, d: (psc(s).update(runAsUser=0), s.update(hostUsers=False)),
     True, True, None),
    # Windows pods: the restricted seccomp, capabilities and privilege-escalation controls do not apply
    ("windows pod", lambda s, d: (s.update(os={"name": "windows"}), psc(s).pop("seccompProfile"),
                                  [x["securityContext"].clear() for x in s["containers"] + s["initContainers"]]),
     True, True, None),
    ("linux pod like the windows one", lambda s, d: (s.update(os={"name": "linux"}), psc(s).pop("seccompProfile")),
     True, False, "spec.initContainers[0].securityContext.seccompProfile.type"),
]


@pytest.mark.parametrize(("name", "mutate", "baseline_ok", "restricted_ok", "field"), CASES, ids=[c[0] for c in CASES])
def test_standard_cases(name, mutate, baseline_ok, restricted_ok, field):
    doc = pod(mutate)
    for level, ok in (("baseline", baseline_ok), ("restricted", restricted_ok)):
        found = refused(doc, level)
        assert (not found) == ok, (level, [f.message for f in found])
    if field:
        first = refused(doc, "baseline" if not baseline_ok else "restricted")[0]
        assert first.field == field
        assert first.level == ("baseline" if not baseline_ok else "restricted")
        assert field in first.message and first.message.endswith(".")


def test_base_pod_passes_both_levels_and_ephemeral_containers_are_checked():
    assert refused(pod(), "restricted") == []
    doc = pod(lambda s, d: s.update(ephemeralContainers=[{"name": "debug", "image": "x",
                                                           "securityContext": {"privileged": True}}]))
    (found,) = [f for f in refused(doc, "baseline")]
    assert found.field == "spec.ephemeralContainers[0].securityContext.privileged"
    assert found.container == "debug" and "container 'debug'" in found.message


@pytest.mark.parametrize(("kind", "prefix"), [
    ("Deployment", "spec.template.spec"), ("ReplicaSet", "spec.template.spec"), ("StatefulSet", "spec.template.spec"),
    ("DaemonSet", "spec.template.spec"), ("Job", "spec.template.spec"), ("ReplicationController", "spec.template.spec"),
    ("CronJob", "spec.jobTemplate.spec.template.spec"), ("PodTemplate", "template.spec"),
])
def test_every_pod_carrying_kind_is_checked_with_its_field_path(kind, prefix):
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [
        {"name": "app", "image": "x", "securityContext": {"privileged": True}}]}}
    if kind == "CronJob":
        doc = {"kind": kind, "metadata": {"name": "w"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}
    elif kind == "PodTemplate":
        doc = {"kind": kind, "metadata": {"name": "w"}, "template": template}
    else:
        doc = {"kind": kind, "metadata": {"name": "w"}, "spec": {"template": template}}
    (found,) = refused(doc, "baseline")
    assert found.field == f"{prefix}.containers[0].securityContext.privileged"
    assert found.message.startswith(f"{kind} w: container 'app': {prefix}.containers[0]")


def test_template_annotations_are_the_pods():
    docs = known_good_docs()
    docs[0]["spec"]["template"]["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    (text,) = policy.check(docs)
    assert "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]" in text
    assert "at level baseline (appArmorProfile" in text


def test_sysctls_by_policy_version():
    assert "net.ipv4.ip_local_reserved_ports" not in podsecurity.safe_sysctls((1, 26))
    assert "net.ipv4.ip_local_reserved_ports" in podsecurity.safe_sysctls((1, 27))
    assert "net.ipv4.tcp_rmem" in podsecurity.safe_sysctls((1, 32))
    assert "container_engine_t" not in podsecurity.selinux_types((1, 30))
    doc = pod(lambda s, d: s["containers"][0].update(livenessProbe={"httpGet": {"host": "x", "port": 1}}))
    assert podsecurity.evaluate(doc, "baseline", (1, 33)) == []  # the probe-host control exists from 1.34
    assert podsecurity.evaluate(doc, "baseline") != []


# --- the known-good manifest and KubeVibe's own rules ----------------------------------------------------------------


def container(docs):
    return docs[0]["spec"]["template"]["spec"]["containers"][0]


def test_known_good_passes_baseline():
    assert policy.check(known_good_docs()) == []


def test_known_good_at_restricted_says_what_is_missing():
    texts = policy.check(known_good_docs(), level="restricted")
    assert any("allowPrivilegeEscalation is not set" in t and "at level restricted" in t for t in texts)


def test_baseline_allows_what_the_standard_allows():
    docs = known_good_docs()
    container(docs)["securityContext"] = {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]},
                                          "allowPrivilegeEscalation": True, "runAsUser": 0}
    assert policy.check(docs) == []


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("ClusterRole", "cluster-scoped object"),
        ("Namespace", "cluster-scoped object"),
        ("CustomResourceDefinition", "cluster-scoped object"),
        ("RoleBinding", "grant permissions"),
        ("Widget", "not one of the namespaced kinds KubeVibe deploys"),
    ],
)
def test_kinds_outside_the_allowlist_are_kubevibes_rule(kind, reason):
    docs = known_good_docs() + [{"apiVersion": "v1", "kind": kind, "metadata": {"name": "extra"}}]
    (found,) = policy.findings(docs)
    assert found.level == "kubevibe" and found.rule == "kind" and found.field == "kind"
    assert found.message.startswith(f"{kind} extra: kind {kind} is not allowed, because")
    assert reason in found.message and "KubeVibe's own rule 'kind', not the Pod Security Standards" in found.message


def test_allowed_namespaced_kinds():
    extra = [{"apiVersion": "v1", "kind": k, "metadata": {"name": "x"}}
             for k in ("ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim", "NetworkPolicy")]
    assert policy.check(known_good_docs() + extra) == []


def test_namespace_is_a_warning_never_a_refusal():
    docs = known_good_docs()
    docs[0]["metadata"]["namespace"] = "kube-system"
    assert policy.check(docs) == []  # the deployed copy drops it (issue 13); cluster-scoped kinds stay refused
    (found,) = policy.findings(docs)
    assert found.severity == "warning" and found.level == "kubevibe" and found.field == "metadata.namespace"


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_external_service_types_need_the_setting(service_type):
    docs = known_good_docs()
    docs[1]["spec"]["type"] = service_type
    assert policy.check(docs) == [
        f"Service credit-card: spec.type is {service_type}, which is not allowed; use ClusterIP "
        f"(or enable the allow-node-port setting) (KubeVibe's own rule 'service-type', not the Pod Security "
        f"Standards)."
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


def test_policy_setting_flag_env_and_bad_value():
    from kubevibe.errors import SettingError
    from kubevibe.settings import resolve_settings

    assert resolve_settings(flags={}, env={}).settings.policy == "baseline"
    resolved = resolve_settings(flags={}, env={"KUBEVIBE_POLICY": "restricted"})
    assert resolved.settings.policy == "restricted" and resolved.sources["policy"] == "env:KUBEVIBE_POLICY"
    assert resolve_settings(flags={"policy": "baseline"}, env={"KUBEVIBE_POLICY": "restricted"}).settings.policy \
        == "baseline"
    with pytest.raises(SettingError, match="KUBEVIBE_POLICY"):
        resolve_settings(flags={}, env={"KUBEVIBE_POLICY": "privileged"})
