"""The Kubernetes target, as far as this machine can check it (no Kubernetes API server can be installed here).

Three kinds of tests, and what each shows:
  * pure functions: the kubectl/helm/kind/podman argument lists KubeVibe builds, and how it reads kubectl's JSON.
    The pod and event JSON in tests/fixtures/k8s/ is written to match real `kubectl get pods,events -o json` output
    of a kind cluster (field names, reasons and message formats of kubelet, scheduler and controllers), not
    captured from a cluster on this machine;
  * the REAL kubectl and helm binaries against tests/kube_standin.py, an in-memory stand-in for the API server on
    loopback (see its docstring for exactly what it serves). These show that kubectl and helm accept the commands,
    send the requests expected (discovery, server-side apply with dryRun, labelled namespace create/delete, logs,
    port-forward over SPDY/3.1 to a loopback HTTP server standing in for the container), and that KubeVibe reads
    their real output. They do NOT show real cluster behaviour: no controller, scheduler or kubelet runs, so pods,
    their states and events are put there by the test (from the fixtures);
  * the namespace life cycle through the real runner: deleted after success, after an exception, and after SIGINT
    in a child process.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    KNOWN_GOOD_INTENT,
    built_state,
    dump_docs,
    known_good_artifacts,
    known_good_docs,
    make_context,
)
from kube_standin import KubeStandIn

from kubevibe import gc
from kubevibe.engines import DockerBuilder, PodmanBuilder
from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.exec import CommandResult
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.pipeline.runner import Runner
from kubevibe.stages import chart, connect, deploy, load, targeting, validate
from kubevibe.targets import TargetFailure, images
from kubevibe.targets.base import RUN_LABEL, DeploymentInfo, PodInfo
from kubevibe.targets.kubernetes.gc import owner_alive, process_owner
from kubevibe.targets.kubernetes.kubectl import (
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    STEP_LABEL,
    KubeAccess,
    apply_args,
    dry_run_findings,
    is_infrastructure_error,
    kubectl_messages,
    namespace_name,
)
from kubevibe.targets.kubernetes.manifest import applied_manifest, expected_pods, namespace_object
from kubevibe.targets.kubernetes.portforward import PortForward, PortForwardError, parse_forwarding_port
from kubevibe.targets.kubernetes.status import (
    describe_events,
    describe_pods,
    event_problems,
    events_about,
    items,
    live_pods,
    pod_problems,
    readiness,
    workload_waiting,
)
from kubevibe.tools import find_tool

TESTS_DIR = Path(__file__).parent
FIXTURES = TESTS_DIR / "fixtures" / "k8s"
BUILT = "localhost:5001/kubevibe/credit-card:20261124t101500z-abc123-s3"
KUBECTL = find_tool("kubectl")
HELM = find_tool("helm")


def fixture(name: str) -> list[dict[str, Any]]:
    return items(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


# --- names and commands (pure) --------------------------------------------------------------------------------------


def test_namespace_names_are_dns_labels_unique_per_run():
    assert namespace_name("20261124T101500Z-abc123") == "kv-20261124t101500z-abc123"
    assert namespace_name("Run_ID with spaces!!") == "kv-run-id-with-spaces"
    long_a, long_b = "x" * 80 + "-aaaaaa", "x" * 80 + "-bbbbbb"
    assert len(namespace_name(long_a)) <= 63 and namespace_name(long_a) != namespace_name(long_b)
    for name in (namespace_name(long_a), namespace_name("___"), namespace_name("A-")):
        assert name.startswith("kv-") and len(name) <= 63 and not name.endswith("-")
    obj = namespace_object("20261124T101500Z-abc123", owner="host/1/2")
    assert obj["metadata"]["labels"] == {MANAGED_BY_LABEL: "kubevibe", RUN_LABEL: "20261124T101500Z-abc123",
                                         **{f"pod-security.kubernetes.io/{m}": "baseline"
                                            for m in ("enforce", "warn", "audit")}}
    restricted = namespace_object("r", level="restricted")["metadata"]["labels"]
    assert restricted["pod-security.kubernetes.io/enforce"] == "restricted"
    assert obj["metadata"]["annotations"] == {OWNER_ANNOTATION: "host/1/2"}


def test_kubectl_and_helm_get_the_users_kubeconfig_and_context():
    access = KubeAccess("/bin/kubectl", "/home/u/.kube/kind", "kind-kind")
    assert access.argv("get", "pods") == ["/bin/kubectl", "--kubeconfig", "/home/u/.kube/kind", "--context",
                                          "kind-kind", "get", "pods"]
    assert access.helm_flags() == ["--kubeconfig", "/home/u/.kube/kind", "--kube-context", "kind-kind"]
    assert access.env() == {}
    merged = KubeAccess("kubectl", f"/a/config{os.pathsep}/b/config")  # a KUBECONFIG list is no --kubeconfig value
    assert merged.argv("version") == ["kubectl", "version"]
    assert merged.env() == {"KUBECONFIG": f"/a/config{os.pathsep}/b/config"}
    assert KubeAccess("kubectl").argv("get", "ns") == ["kubectl", "get", "ns"]
    assert apply_args("kv-x", "-", dry_run=True) == ["apply", "--server-side", "--field-manager=kubevibe",
                                                     "--namespace", "kv-x", "-f", "-", "-o", "json",
                                                     "--dry-run=server"]


def test_the_applied_copy_carries_the_image_and_the_run_and_step_labels():
    docs = known_good_docs()
    original = copy.deepcopy(docs)
    applied, notes = applied_manifest(docs, BUILT, "20261124T101500Z-abc123", 5)
    assert docs == original
    deployment, service = applied
    labels = {RUN_LABEL: "20261124T101500Z-abc123", STEP_LABEL: "5"}
    for obj in (deployment, service):
        assert labels.items() <= obj["metadata"]["labels"].items()
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"] == original[0]["spec"]["selector"]  # selectors are never touched
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == BUILT
    assert notes == [] and expected_pods(applied) == 1

    docs[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    applied, notes = applied_manifest(docs, BUILT, "r", 2, image_preloaded=True)
    assert applied[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert notes == ["Deployment credit-card container app: imagePullPolicy Always -> IfNotPresent (the image was "
                     "loaded into the nodes, no registry has it)"]


def test_where_images_go():
    assert images.destination_of(None, "local") == images.ImageDestination("local", "")
    with pytest.raises(UsageError, match="--target kubernetes needs --registry"):
        images.destination_of(None, "kubernetes")
    kind = images.destination_of("kind://dev", "kubernetes")
    assert (kind.kind, kind.registry, kind.cluster, kind.preloaded) == ("kind", "localhost", "dev", True)
    assert images.destination_of("kind://", "kubernetes").cluster == "kind"
    reg = images.destination_of("localhost:5001", "kubernetes")
    assert (reg.kind, reg.tls_verify) == ("registry", False)
    assert images.destination_of("ghcr.io/me", "kubernetes").tls_verify is True
    for loopback in ("127.0.0.1:5005", "localhost", "[::1]:5000/x"):
        assert images.is_loopback_registry(loopback)
    for bad in ("https://ghcr.io", "ghcr.io/me/", "kind://Bad_Name"):
        with pytest.raises(UsageError):
            images.destination_of(bad, "kubernetes")

    podman, docker = PodmanBuilder("/usr/bin/podman"), DockerBuilder("/usr/bin/docker")
    assert podman.push_argv("ghcr.io/me/kubevibe/a:t", tls_verify=reg.tls_verify) == [
        "/usr/bin/podman", "push", "--tls-verify=false", "ghcr.io/me/kubevibe/a:t"]
    remote = images.destination_of("ghcr.io/me", "kubernetes")
    assert podman.push_argv("ghcr.io/me/a:t", tls_verify=remote.tls_verify)[2] == "--tls-verify=true"
    assert docker.push_argv("r/a:t", tls_verify=reg.tls_verify) == ["/usr/bin/docker", "push", "r/a:t"]
    assert podman.save_argv("localhost/kubevibe/a:t", Path("/w/image.tar")) == [
        "/usr/bin/podman", "save", "--format", "docker-archive", "-o", "/w/image.tar", "localhost/kubevibe/a:t"]
    assert images.kind_load_argv("/bin/kind", Path("/w/image.tar"), "dev") == [
        "/bin/kind", "load", "image-archive", "/w/image.tar", "--name", "dev"]


# --- evidence from recorded kubectl JSON (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(("pods", "events", "reason", "fatal", "phrases"), [
    ("pods-imagepullbackoff.json", "events-imagepullbackoff.json", "ImagePullBackOff", True,
     ["cannot be pulled (ImagePullBackOff)", "dial tcp [::1]:5001: connect: connection refused", BUILT]),
    ("pods-crashloopbackoff.json", "events-crashloopbackoff.json", "CrashLoopBackOff", True,
     ["keeps crashing (CrashLoopBackOff, 3 restarts)", "exited with code 1 (Error)"]),
    ("pods-oomkilled.json", None, "OOMKilled", True,
     ["more memory than its limit of 64Mi (OOMKilled, exit code 137, 2 restarts)"]),
    ("pods-createcontainerconfigerror.json", "events-createcontainerconfigerror.json", "CreateContainerConfigError",
     True, ["cannot be started (CreateContainerConfigError): configmap \"credit-card-config\" not found"]),
    ("pods-probe-failing.json", "events-probe-failing.json", "Unhealthy", False,
     ["readiness probe of container app of pod credit-card-9b8a7c6d5e-t6y7u fails (12 times)",
      'Get "http://10.244.0.14:5000/health": dial tcp 10.244.0.14:5000: connect: connection refused']),
    ("pods-pending-unschedulable.json", "events-pending-unschedulable.json", "Unschedulable", False,
     ["cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory"]),
])  # fmt: skip
def test_each_failure_becomes_one_clear_sentence_with_the_clusters_message(pods, events, reason, fatal, phrases):
    problems = [p for pod in live_pods(fixture(pods)) for p in pod_problems(pod)]
    problems += event_problems(fixture(events)) if events else []
    first = next(p for p in problems if p.reason == reason)
    assert first.fatal is fatal
    assert first.sentence.endswith(".") and "\n" not in first.sentence
    for phrase in phrases:
        assert phrase in " ".join(p.sentence for p in problems), phrase


def test_probe_failures_name_the_probe_and_what_follows_from_it():
    liveness = [p for p in event_problems(fixture("events-probe-failing.json")) if "liveness" in p.sentence]
    assert liveness[0].sentence == ("The liveness probe of container app of pod credit-card-9b8a7c6d5e-t6y7u fails "
                                    "(3 times), so the kubelet restarts the container: HTTP probe failed with "
                                    "statuscode: 500.")


def test_a_replicaset_that_cannot_create_pods_is_named_with_the_admission_message():
    (problem,) = event_problems(fixture("events-failedcreate.json"))
    assert problem.fatal and problem.sentence.startswith("ReplicaSet credit-card-7f6e5d4c3b cannot create its pods: "
                                                         "Error creating: pods")
    assert 'violates PodSecurity "restricted:latest"' in problem.sentence


def test_states_and_events_read_like_kubectl_describe():
    assert "credit-card-6f8d7c9b5a-m7w2p/app: waiting (CrashLoopBackOff), ready false, 3 restarts, last exit 1 " \
           "(Error) [pod phase Running]" == describe_pods_text("pods-crashloopbackoff.json")
    text = describe_events(fixture("events-imagepullbackoff.json"))
    assert "Warning Failed pod/credit-card-7d9c5b8f6d-x2k4q (x4): Error: ImagePullBackOff" in text
    assert text.splitlines()[0].startswith("Normal Scheduled")  # oldest first


def describe_pods_text(name: str) -> str:
    return describe_pods(live_pods(fixture(name)))


def test_events_of_an_earlier_attempt_are_left_out():
    objects = fixture("pods-crashloopbackoff.json")
    events = fixture("events-crashloopbackoff.json") + fixture("events-imagepullbackoff.json")
    kept = events_about(events, objects)
    assert kept and {e["involvedObject"]["name"] for e in kept} == {"credit-card-6f8d7c9b5a-m7w2p"}


def test_readiness_follows_rollout_status():
    assert readiness(fixture("rollout-ready.json")) is None
    assert readiness(fixture("rollout-progressing.json")) == \
        "deployment credit-card: 0 of 1 updated replicas are available"
    deployment = copy.deepcopy(fixture("rollout-ready.json")[0])
    deployment["metadata"]["generation"] = 2
    assert workload_waiting(deployment) == "deployment credit-card: waiting for the spec update to be observed"
    deployment["metadata"]["generation"] = 1
    deployment["status"]["conditions"][1]["reason"] = "ProgressDeadlineExceeded"
    assert workload_waiting(deployment) == "deployment credit-card exceeded its progress deadline"
    assert readiness([]) == "no Deployment, StatefulSet or Pod exists yet"
    terminating = copy.deepcopy(fixture("pods-crashloopbackoff.json")[0])
    terminating["metadata"]["deletionTimestamp"] = "2026-11-24T10:20:00Z"
    assert live_pods([terminating]) == []  # an old attempt's pod on its way out is not judged


# --- kubectl's messages (pure; the strings are real kubectl output against the stand-in) ----------------------------

INVALID = ('The Deployment "Web_1" is invalid: \n'
           '* metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case '
           "alphanumeric characters, '-' or '.'\n"
           "* spec.template.spec.containers[0].image: Required value\n")
FORBIDDEN = ('Error from server (Forbidden): deployments.apps "web" is forbidden: unable to create new content in '
             "namespace kv-test because it is being terminated\n")
WARNING = ('Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container '
           '"app" must set securityContext.allowPrivilegeEscalation=false)\n')


def test_dry_run_errors_become_findings_and_warnings_notes():
    failed = CommandResult(argv=["kubectl"], returncode=1, stderr="I1125 00:15:59.4 log.go:245] noise\n" + INVALID +
                           FORBIDDEN + WARNING)
    findings, notes = dry_run_findings(failed)
    assert findings == [
        'The cluster refuses the manifest (kubectl apply --dry-run=server): The Deployment "Web_1" is invalid: '
        'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.'.",
        'The cluster refuses the manifest (kubectl apply --dry-run=server): The Deployment "Web_1" is invalid: '
        "spec.template.spec.containers[0].image: Required value.",
        'The cluster refuses the manifest (kubectl apply --dry-run=server): Error from server (Forbidden): '
        'deployments.apps "web" is forbidden: unable to create new content in namespace kv-test because it is '
        "being terminated.",
    ]
    assert notes == ['The cluster warns: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation '
                     '!= false (container "app" must set securityContext.allowPrivilegeEscalation=false)']
    assert dry_run_findings(CommandResult(argv=["k"], returncode=0, stderr=WARNING))[0] == []
    assert kubectl_messages("") == []


def test_unreachable_clusters_are_the_tools_problem_not_the_manifests():
    for text in ("The connection to the server localhost:8080 was refused - did you specify the right host or port?",
                 "Unable to connect to the server: dial tcp 172.18.0.2:6443: i/o timeout",
                 'Error from server (Forbidden): namespaces is forbidden: User "dev" cannot create resource '
                 '"namespaces" in API group "" at the cluster scope',
                 "error: context \"kind-dev\" does not exist"):
        assert is_infrastructure_error(text), text
    assert not is_infrastructure_error(FORBIDDEN) and not is_infrastructure_error(INVALID)


def test_port_forward_output_gives_the_local_port():
    assert parse_forwarding_port("Forwarding from 127.0.0.1:43567 -> 5000\n") == 43567
    assert parse_forwarding_port("Forwarding from [::1]:43567 -> 5000") == 43567
    assert parse_forwarding_port("Handling connection for 43567") is None


def test_process_owners_are_checked_on_this_host_only():
    me = process_owner()
    assert owner_alive(me) is True
    host, pid, ticks = me.split("/")
    assert owner_alive(f"{host}/{pid}/{int(ticks) + 1}") is False  # same pid, another process (pid reuse)
    assert owner_alive("another-host/1/1") is None and owner_alive("garbage") is None


# --- against the stand-in API server with the real kubectl ----------------------------------------------------------


@pytest.fixture
def api(tmp_path, monkeypatch):
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (python -m kubevibe.tools install)")
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kube-cache"))  # kubectl's discovery cache, not ~/.kube
    with KubeStandIn() as server:
        yield server


def kube_context(tmp_path: Path, api: KubeStandIn, stage: State = State.VALIDATE, step: int = 4,
                 intent: dict[str, Any] | None = None):
    settings = {"target": "kubernetes", "kubeconfig": api.kubeconfig(tmp_path), "registry": "localhost:5001"}
    state = built_state(BUILT)
    if intent is not None:
        state.intent = intent
    return make_context(tmp_path, known_good_artifacts(), state=state, settings_overrides=settings, stage=stage,
                        step=step)


def scenario(pods: str, events: str | None = None, logs: dict[tuple[str, bool], str] | None = None,
             deployment_ready: bool = False):
    """An on_apply hook: when the Deployment is applied, the recorded pods (relabelled for this attempt) and events
    appear, as if the cluster's controllers and kubelet had produced them."""

    def hook(api: KubeStandIn, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Deployment":
            return
        namespace = obj["metadata"]["namespace"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        for pod in [o for o in fixture(pods) if o["kind"] == "Pod"]:
            pod["metadata"]["labels"] = {**labels, "pod-template-hash": "7d9c5b8f6d"}
            pod["spec"]["containers"][0]["image"] = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            for status in pod["status"].get("containerStatuses", []):
                status["image"] = pod["spec"]["containers"][0]["image"]
            api.put(pod, namespace=namespace)
            for (container, previous), text in (logs or {}).items():
                api.set_log(namespace, pod["metadata"]["name"], container, text, previous=previous)
        for event in fixture(events) if events else []:
            api.put(event, namespace=namespace)
        stored = api.get("apps/v1", "Deployment", obj["metadata"]["name"], namespace)
        ready = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                 "availableReplicas": 1}
        stored["status"] = ready if deployment_ready else {"observedGeneration": 1, "replicas": 1,
                                                           "updatedReplicas": 1, "unavailableReplicas": 1}

    return hook


def test_the_run_namespace_is_labelled_reused_and_deleted_with_its_labels(tmp_path, api):
    ctx = kube_context(tmp_path, api)
    target = targeting.target_of(ctx)
    name = target.ensure_namespace(targeting.scope(ctx))
    assert name == namespace_name(ctx.run_id) and api.namespaces() == [name]
    meta = api.get("v1", "Namespace", name)["metadata"]
    assert meta["labels"] == {MANAGED_BY_LABEL: "kubevibe", RUN_LABEL: ctx.run_id,
                              **{f"pod-security.kubernetes.io/{m}": "baseline" for m in ("enforce", "warn", "audit")}}
    assert owner_alive(meta["annotations"][OWNER_ANNOTATION]) is True
    assert targeting.target_of(ctx).ensure_namespace(targeting.scope(ctx)) == name  # a later stage reuses it (and its cleanup)
    assert api.paths("POST").count("/api/v1/namespaces") == 1
    ctx.run_all_cleanups()
    assert api.namespaces() == []
    deletes = [(p, q) for m, p, q in api.requests if m == "DELETE"]
    assert deletes and all(p == f"/api/v1/namespaces/{name}" or "/pods/" in p for p, _ in deletes)
    label_query = [q for m, p, q in api.requests if m == "GET" and p == "/api/v1/namespaces" and "labelSelector" in q]
    assert label_query[0]["labelSelector"] == [f"{MANAGED_BY_LABEL}=kubevibe,{RUN_LABEL}={ctx.run_id}"]


def test_the_run_namespace_carries_the_policy_level_for_pod_security_admission(tmp_path, api):
    settings = {"target": "kubernetes", "kubeconfig": api.kubeconfig(tmp_path), "registry": "localhost:5001",
                "policy": "restricted"}
    ctx = make_context(tmp_path, known_good_artifacts(), state=built_state(BUILT), settings_overrides=settings,
                       stage=State.VALIDATE, step=4)
    name = targeting.target_of(ctx).ensure_namespace(targeting.scope(ctx))
    labels = api.get("v1", "Namespace", name)["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")} == {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted"}
    ctx.run_all_cleanups()


def test_a_namespace_kubevibe_did_not_make_is_never_used_or_deleted(tmp_path, api):
    ctx = kube_context(tmp_path, api)
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_name(ctx.run_id)},
             "status": {"phase": "Active"}})
    with pytest.raises(KubeVibeError, match="was not made by this run"):
        targeting.target_of(ctx).ensure_namespace(targeting.scope(ctx))
    ctx.run_all_cleanups()  # the cleanup deletes by both labels: this one has none
    assert api.namespaces() == [namespace_name(ctx.run_id)]


def test_validate_runs_the_clusters_dry_run_after_the_offline_checks(tmp_path, api):
    ctx = kube_context(tmp_path, api)
    result = validate.run(ctx)
    assert result.outcome == Outcome.OK, result.summary
    patches = [(p, q) for m, p, q in api.requests if m == "PATCH"]
    assert {p.rsplit("/", 2)[-2] for p, _ in patches} == {"deployments", "services"}
    assert all(q["dryRun"] == ["All"] and q["fieldManager"] == ["kubevibe"] for _, q in patches)
    namespace = namespace_name(ctx.run_id)
    assert api.list("apps/v1", "Deployment", namespace) == []  # a dry run stores nothing
    body = next(b for b in api.bodies if isinstance(b, dict) and b.get("kind") == "Deployment")
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == BUILT  # what Deploy will apply

    docs = known_good_docs()
    docs[1]["metadata"]["name"] = "Credit_Card"  # passes the offline schema; the API server refuses it
    ctx2 = kube_context(tmp_path, api)
    ctx2.artifacts = known_good_artifacts(**{"vibe.yaml": dump_docs(docs)})
    result = validate.run(ctx2)
    assert result.outcome == Outcome.FAILED
    finding = next(e for e in result.evidence if e.detail == "check: server")
    assert finding.title.startswith('The cluster refuses the manifest (kubectl apply --dry-run=server): The Service '
                                    '"Credit_Card" is invalid: metadata.name: Invalid value: "Credit_Card"')
    ctx.run_all_cleanups()
    ctx2.run_all_cleanups()
    assert api.namespaces() == []


def test_nothing_the_policy_refuses_reaches_the_cluster(tmp_path, api):
    docs = known_good_docs() + [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                 "metadata": {"name": "all"}, "rules": []}]
    ctx = kube_context(tmp_path, api)
    ctx.artifacts = known_good_artifacts(**{"vibe.yaml": dump_docs(docs)})
    result = validate.run(ctx)
    assert result.outcome == Outcome.FAILED and "ClusterRole" in result.summary
    with pytest.raises(TargetFailure, match="safety policy"):
        targeting.target_of(ctx).deployment(targeting.request(ctx, docs, BUILT))
    assert api.requests == []  # not even discovery


def test_a_healthy_deploy_is_ready_and_its_objects_go_away_again(tmp_path, api):
    api.on_apply = scenario("rollout-ready.json", deployment_ready=True, logs={("app", False): "Running on :5000\n"})
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5)
    result = deploy.run(ctx)
    assert result.outcome == Outcome.OK, result.summary
    info = result.updates["deployment"]
    assert info["target"] == "kubernetes" and info["pods"][0]["ip"] == "10.244.0.20"
    assert info["pods"][0]["labels"][STEP_LABEL] == "5"
    namespace = namespace_name(ctx.run_id)
    assert (ctx.stage_dir / "logs" / "credit-card-7d9c5b8f6d-r5t6y-app.log").read_text() == "Running on :5000\n"
    ctx.run_cleanup("deployment")  # what the runner does when the pipeline leaves the deployed states
    assert api.list("apps/v1", "Deployment", namespace) == [] and api.namespaces() == [namespace]
    ctx.run_all_cleanups()  # the end of the run
    assert api.namespaces() == []


def test_a_crashing_container_fails_deploy_with_the_sentence_and_the_crash_log(tmp_path, api):
    crash = ("Traceback (most recent call last):\n  File \"/app/myapp.py\", line 3\n"
             "NameError: name 'Flask' is not defined\n")
    api.on_apply = scenario("pods-crashloopbackoff.json", "events-crashloopbackoff.json",
                            logs={("app", True): crash, ("app", False): "starting\n"})
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5)
    started = time.monotonic()
    result = deploy.run(ctx)
    assert time.monotonic() - started < 20  # a crash ends the wait at once, not at the timeout
    assert result.outcome == Outcome.FAILED
    assert result.summary.startswith("Deploy failed: The container app of pod credit-card-6f8d7c9b5a-m7w2p keeps "
                                     "crashing (CrashLoopBackOff, 3 restarts); it last exited with code 1 (Error)")
    assert "NameError: name 'Flask' is not defined" in result.summary
    first = result.evidence[0]
    assert first.detail == "last log lines before its last restart (kubectl logs --previous) and since:"
    assert "NameError" in first.stdout and "starting" in first.stdout
    titles = [e.title for e in result.evidence]
    assert "pod and container states" in titles and "events of this deployment (kubectl get events)" in titles
    events = next(e for e in result.evidence if e.title.startswith("events"))
    assert ("Warning BackOff pod/credit-card-6f8d7c9b5a-m7w2p (x6): Back-off restarting failed container"
            in events.detail)
    logs = [q for m, p, q in api.requests if p.endswith("/log")]
    assert {"previous": ["true"], "container": ["app"], "tailLines": ["200"]}.items() <= \
        {k: v for q in logs if "previous" in q for k, v in q.items()}.items()
    namespace = namespace_name(ctx.run_id)
    assert api.list("apps/v1", "Deployment", namespace) == []  # Deploy's failure path removed the workloads
    ctx.run_all_cleanups()
    assert api.namespaces() == []


def test_a_probe_that_keeps_failing_is_reported_when_the_time_is_up(tmp_path, api):
    api.on_apply = scenario("pods-probe-failing.json", "events-probe-failing.json")
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5)
    handle = targeting.target_of(ctx).deployment(targeting.request(ctx, known_good_docs(), BUILT))
    ctx.hold_deployment(handle)
    handle.start()
    with pytest.raises(TargetFailure) as failed:
        handle.wait_ready(2)
    assert failed.value.summary.startswith("not ready after 2s: deployment credit-card: 0 of 1 updated replicas are "
                                           "available; The readiness probe of container app of pod")
    ctx.run_all_cleanups()


def test_the_cluster_not_pulling_the_built_image_stops_the_run_with_a_hint(tmp_path, api):
    api.on_apply = scenario("pods-imagepullbackoff.json", "events-imagepullbackoff.json")
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5)
    with pytest.raises(KubeVibeError, match="The cluster cannot pull the image KubeVibe built") as stopped:
        deploy.run(ctx)
    assert "--registry kind://CLUSTER" in (stopped.value.hint or "")
    ctx.run_all_cleanups()
    assert api.namespaces() == []


def test_a_refused_apply_is_a_stage_failure_with_the_api_servers_words(tmp_path, api):
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5)
    docs = known_good_docs()
    docs[1]["metadata"]["name"] = "Credit_Card"
    ctx.artifacts = known_good_artifacts(**{"vibe.yaml": dump_docs(docs)})
    result = deploy.run(ctx)
    assert result.outcome == Outcome.FAILED
    assert result.summary.startswith('Deploy failed: kubectl apply failed: The Service "Credit_Card" is invalid: '
                                     'metadata.name: Invalid value: "Credit_Card"')
    ctx.run_all_cleanups()


def test_port_forward_to_a_pod_that_is_gone_is_a_target_failure_and_leaves_no_process(tmp_path, api):
    ctx = kube_context(tmp_path, api, stage=State.CONNECT, step=6)
    target = targeting.target_of(ctx)
    target.ensure_namespace(targeting.scope(ctx))
    pod = fixture("rollout-ready.json")[1]
    expected = ('kubectl port-forward to port 5000 of pod credit-card-7d9c5b8f6d-r5t6y failed: Error from server '
                '(NotFound): pods "credit-card-7d9c5b8f6d-r5t6y" not found')
    with pytest.raises(TargetFailure, match=re.escape(expected)):
        with target.attach(get_info(ctx), targeting.scope(ctx)).open_port(_pod_info(pod), 5000):
            pass
    assert not _port_forwards()
    ctx.run_all_cleanups()


class _App(BaseHTTPRequestHandler):
    """The "container" behind the stand-in's port-forward: the known-good credit-card service's two routes."""

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"status": "ok"}) if self.path == "/health" else self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/validate":
            return self._send(404, {"error": "not found"})
        if "card_number" not in body:
            return self._send(400, {"error": "card_number is required"})
        digits = [int(c) for c in str(body["card_number"])][::-1]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
        self._send(200, {"card_number": body["card_number"], "valid": total % 10 == 0})


@pytest.fixture
def app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


INTENT_WITH_TESTS = {**KNOWN_GOOD_INTENT, "spec": {**KNOWN_GOOD_INTENT["spec"], "test_cases": [
    {"name": "valid number", "method": "POST", "path": "/validate", "body": {"card_number": "4111111111111111"},
     "expected_status": 200, "expected_json": {"valid": True}},
    {"name": "missing number", "method": "POST", "path": "/validate", "body": {}, "expected_status": 400,
     "expected_contains": "required"},
]}}  # fmt: skip


def _deployed(tmp_path, api, artifacts=None):
    api.on_apply = scenario("rollout-ready.json", deployment_ready=True)
    ctx = kube_context(tmp_path, api, stage=State.DEPLOY, step=5, intent=INTENT_WITH_TESTS)
    if artifacts is not None:
        ctx.artifacts = artifacts
    result = deploy.run(ctx)
    assert result.outcome == Outcome.OK, result.summary
    ctx.state.deployment = result.updates["deployment"]
    ctx.step, ctx.stage = 6, State.CONNECT
    return ctx


def _port_forwards() -> str:
    return "\n".join(line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
                     .stdout.splitlines() if "kubectl" in line and "port-forward" in line)


def test_connect_reaches_the_pod_through_kubectl_port_forward(tmp_path, api, app):
    ctx = _deployed(tmp_path, api)
    ctx.state.acceptance = {"source": "user"}  # so Connect runs the spec's cases itself (Accept runs the user's)
    api.forward(namespace_name(ctx.run_id), "credit-card-7d9c5b8f6d-r5t6y", 5000, app)
    result = connect.run(ctx)
    assert result.outcome == Outcome.OK, (result.summary, [e.render() for e in result.evidence])
    assert result.updates["verified"] == {"reachable": True, "tests_passed": 2, "tests_total": 2,
                                          "endpoints_checked": 1}
    assert result.summary.startswith("Reachable at http://127.0.0.1:")  # the forwarded port, not a pod address
    assert ("POST", f"/api/v1/namespaces/{namespace_name(ctx.run_id)}/pods/credit-card-7d9c5b8f6d-r5t6y/portforward",
            {}) in api.requests
    assert len(api.forwarded) >= 4 and not _port_forwards()  # every check went through it; it is gone now
    # The deployment stays for the stages after Connect; the runner removes it when the run leaves them.
    assert api.list("apps/v1", "Deployment", namespace_name(ctx.run_id)) != []
    forwarded = len(api.forwarded)
    ctx.step, ctx.stage = 7, State.LOAD
    result = load.run(ctx)  # the load goes through a port-forward on 127.0.0.1 too, never to a pod address
    assert result.outcome == Outcome.OK, (result.summary, [e.render() for e in result.evidence])
    report = result.updates["load_report"]
    assert report["base_url"].startswith("http://127.0.0.1:") and report["sent"] >= 10
    assert report["error_rate"] == 0 and report["p95_ms"] is not None
    assert len(api.forwarded) > forwarded and not _port_forwards()
    ctx.run_cleanup("deployment")
    assert api.list("apps/v1", "Deployment", namespace_name(ctx.run_id)) == []
    ctx.run_all_cleanups()
    assert api.list("apps/v1", "Deployment", namespace_name(ctx.run_id)) == []


def test_load_cut_by_the_runs_time_limit_is_a_failed_stage_not_a_tool_error(tmp_path, api, app):
    """A run whose TIMEOUT ends during Load: the stage fails saying so (the runner then ends the run on its time
    limit); it is not an internal error that blames locust."""
    ctx = _deployed(tmp_path, api)
    api.forward(namespace_name(ctx.run_id), "credit-card-7d9c5b8f6d-r5t6y", 5000, app)
    ctx.step, ctx.stage = 7, State.LOAD
    ctx.deadline = time.monotonic() + 2.5  # less than the measurement (3 s) and the generator's start-up need
    result = load.run(ctx)
    assert result.outcome == Outcome.FAILED and "cut short by the run's time limit" in result.summary
    assert not _port_forwards()
    ctx.run_all_cleanups()


def test_connect_to_a_port_nothing_listens_on_fails_and_the_forward_keeps_coming_back(tmp_path, api, app,
                                                                                      monkeypatch):
    manifest = known_good_artifacts().get("vibe.yaml").replace("containerPort: 5000", "containerPort: 6000") \
        .replace("targetPort: 5000", "targetPort: 6000").replace("port: 5000", "port: 6000")
    ctx = _deployed(tmp_path, api, known_good_artifacts(**{"vibe.yaml": manifest}))
    ctx.settings = ctx.settings.model_copy(update={"ready_timeout": 4.0})  # KUBEVIBE_READY_TIMEOUT
    api.forward(namespace_name(ctx.run_id), "credit-card-7d9c5b8f6d-r5t6y", 5000, app)  # the app is on 5000
    result = connect.run(ctx)
    assert result.outcome == Outcome.FAILED
    assert result.summary.startswith("Connect failed: nothing answers on port 6000 of pod credit-card-7d9c5b8f6d-r5t6y "
                                     "(Service credit-card targetPort 6000)")
    log = (ctx.stage_dir / "commands.log").read_text()
    assert "lost connection to pod" in log and "restart 1 on port" in log  # kubectl exited; the forward came back
    assert not _port_forwards()
    ctx.run_all_cleanups()


def get_info(ctx):
    return DeploymentInfo(target="kubernetes", run_id=ctx.run_id)


def _pod_info(pod):
    return PodInfo(name=pod["metadata"]["name"], ip=pod["status"]["podIP"])


def test_port_forward_is_restarted_on_the_same_local_port_when_kubectl_exits(tmp_path):
    """kubectl >= 1.23 exits at the first failed connection inside the pod; the forward must come back. A small
    program that prints kubectl's first line and exits after a moment stands in for kubectl here."""
    script = tmp_path / "fake_forward.py"
    script.write_text(textwrap.dedent("""\
        import socket, sys, time
        port = int(sys.argv[1] or 0)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        print(f"Forwarding from 127.0.0.1:{s.getsockname()[1]} -> 5000", flush=True)
        time.sleep(0.3)
        print("E1125 portforward.go:413] an error occurred forwarding: connection refused", file=sys.stderr, flush=True)
        sys.exit(1)
    """))
    forward = PortForward(lambda local: [sys.executable, str(script), local], log_file=tmp_path / "commands.log",
                          max_restarts=3)
    port = forward.start(10)
    deadline = time.monotonic() + 10
    while forward.restarts < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    forward.stop()
    assert forward.restarts == 3 and forward.port == port
    log = (tmp_path / "commands.log").read_text()
    assert f"restart 1 on port {port}" in log and f"fake_forward.py {port}" in log
    with pytest.raises(PortForwardError, match="no such pod"):
        PortForward(lambda local: [sys.executable, "-c", "import sys; sys.exit('error: no such pod')"]).start(5)


def test_chart_is_checked_with_helm_install_dry_run_server_and_the_clusters_dry_run(tmp_path, api):
    if HELM is None:
        pytest.skip("helm is not installed")
    ctx = kube_context(tmp_path, api, stage=State.CHART, step=7)
    result = chart.run(ctx)
    assert result.outcome == Outcome.OK, result.summary
    assert any(e.command and "install credit-card" in e.command and "--dry-run=server" in e.command
               for e in result.evidence)
    assert ["GET", "/version"] in [[m, p] for m, p, _ in api.requests]  # helm asked the cluster
    dry = [(p, q) for m, p, q in api.requests if m == "PATCH"]
    assert dry and all(q["dryRun"] == ["All"] for _, q in dry)
    applied = [b for b in api.bodies if isinstance(b, dict) and b.get("kind") == "Deployment"]
    assert applied[-1]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    ctx.run_all_cleanups()
    assert api.namespaces() == []


# --- the namespace life cycle through the real runner ---------------------------------------------------------------


def test_the_namespace_is_deleted_when_a_stage_raises(tmp_path, api):
    ctx = kube_context(tmp_path, api)
    ctx.rundir.write_json("run.json", {"run_id": ctx.run_id, "outcome": "running"})

    def validate_then_crash(c):
        targeting.target_of(c).server_validate(targeting.scope(c), known_good_docs())
        assert api.namespaces() == [namespace_name(c.run_id)]
        raise RuntimeError("a bug")

    end = Runner(ctx, stages=lambda state: validate_then_crash).run(State.VALIDATE)
    assert end.outcome == "error" and "a bug" in end.reason
    assert api.namespaces() == []


INTERRUPTED_CHILD = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from helpers import KNOWN_GOOD_INTENT, built_state, known_good_artifacts, make_context
    from kubevibe.pipeline.fsm import State
    from kubevibe.pipeline.runner import Runner
    from kubevibe.stages import deploy

    ctx = make_context(Path({tmp!r}), known_good_artifacts(), state=built_state({image!r}),
                       settings_overrides={{"target": "kubernetes", "kubeconfig": {kubeconfig!r},
                                            "registry": "localhost:5001"}})
    ctx.rundir.write_json("run.json", {{"run_id": ctx.run_id, "outcome": "running"}})
    print(ctx.run_id, flush=True)
    end = Runner(ctx, stages=lambda state: deploy.run).run(State.DEPLOY)
    print(end.outcome, flush=True)
""")


def test_an_interrupt_during_deploy_deletes_the_namespace(tmp_path, api):
    api.on_apply = scenario("pods-pending-unschedulable.json")  # never ready: Deploy keeps waiting
    script = INTERRUPTED_CHILD.format(tests=str(TESTS_DIR), tmp=str(tmp_path / "child"), image=BUILT,
                                      kubeconfig=str(api.kubeconfig(tmp_path)))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        run_id = child.stdout.readline().strip()  # type: ignore[union-attr]
        assert run_id, child.stderr.read()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while not api.list("v1", "Pod", namespace_name(run_id)):
            assert time.monotonic() < deadline and child.poll() is None, "the child never deployed"
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.strip() == "interrupted", err
    assert api.namespaces() == []
    events = [json.loads(line) for line in
              next((tmp_path / "child").glob("runs/*/*/events.jsonl")).read_text().splitlines()]  # fmt: skip
    assert events[-1]["result"] == "interrupted" and "cleanup_errors" not in events[-1]


# --- kubevibe gc ----------------------------------------------------------------------------------------------------


def test_gc_lists_then_deletes_only_leftovers_of_ended_or_dead_runs(tmp_path, api):
    now = time.time()
    me = process_owner()
    host = me.split("/")[0]
    old_run, fresh_run = "20200101T000000Z-aaaaaa", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-bbbbbb"
    cases = {  # run id -> owner annotation
        "20260101T000000Z-dead00": f"{host}/999999/1",  # this host, process gone: crashed
        "20260101T000000Z-live00": me,  # this process: a run still going
        old_run: "elsewhere/1/1",  # another host, long ago
        fresh_run: "elsewhere/1/1",  # another host, just now: may still be going
        "20260101T000000Z-ended0": "",  # its run.json says it ended
    }
    for run_id, owner in cases.items():
        obj = namespace_object(run_id, owner or None)
        obj["status"] = {"phase": "Active"}
        api.put(obj)
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}, "status": {"phase": "Active"}})
    api.put({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Active"},
             "metadata": {"name": "half-labelled", "labels": {MANAGED_BY_LABEL: "kubevibe"}}})  # no run label
    runs = tmp_path / "runs" / "model" / "20260101T000000Z-ended0"
    runs.mkdir(parents=True)
    (runs / "run.json").write_text(json.dumps({"outcome": "fail"}))

    settings = kube_context(tmp_path, api).settings
    lines: list[str] = []
    code = gc.command(lines.append, where="kubernetes", include_images=False, dry_run=True, older_than=3600,
                      settings=settings)
    assert code == 0
    listed = {line.split(" (run ")[1].split(",")[0].rstrip("):"): line.split()[0] for line in lines if "(run " in line}
    assert listed == {"20260101T000000Z-dead00": "would", "20260101T000000Z-live00": "keep", old_run: "would",
                      fresh_run: "keep", "20260101T000000Z-ended0": "would"}
    assert lines[-1] == "would delete 3, kept 2"
    assert len(api.namespaces()) == 7  # a dry run deletes nothing

    lines.clear()
    assert gc.command(lines.append, where="kubernetes", include_images=False, dry_run=False, older_than=3600,
                      settings=settings) == 0
    time.sleep(api.namespace_delete_delay + 0.1)
    assert sorted(api.namespaces()) == sorted(["default", "half-labelled", namespace_name(fresh_run),
                                               namespace_name("20260101T000000Z-live00")])


def test_gc_decisions_for_local_leftovers():
    outcomes = {"20261124t101500z-abc123": "success"}
    now = gc.run_started("20261124T121500Z-x")
    assert now is not None
    ended = gc.decide(gc.Leftover("podman", "pod", "p", "20261124T101500Z-abc123"), outcomes=outcomes, now=now,
                      older_than=86400)
    assert ended.delete and ended.why == "its run has ended (success)"
    recent = gc.decide(gc.Leftover("podman", "pod", "p", "20261124T120000Z-def456"), outcomes={}, now=now,
                       older_than=3600)
    assert not recent.delete and "may still be going (started 15 min ago" in recent.why
    stale = gc.decide(gc.Leftover("registry", "tag", "kubevibe/a:x-s1", "20261124t000000z-def456"),
                      outcomes={"20261124t000000z-def456": "running"}, now=now, older_than=3600)
    assert stale.delete and "says it is still running" in stale.why
    assert gc.registry_tags({"kubevibe/a": ["20261124t101500z-abc123-s3", "latest"], "other/b": ["x-s1"]}) == [
        gc.Leftover("registry", "tag", "kubevibe/a:20261124t101500z-abc123-s3", "20261124t101500z-abc123",
                    extra={"repo": "kubevibe/a", "tag": "20261124t101500z-abc123-s3"})]


@pytest.mark.engine
def test_gc_finds_a_labelled_podman_network_and_deletes_only_it(tmp_path):
    podman = find_tool("podman")
    if podman is None:
        pytest.skip("podman is not installed")
    from kubevibe.exec import run
    from kubevibe.podman_conf import podman_env

    run_id = "20200101T000000Z-gc" + os.urandom(3).hex()
    name = "kubevibe-" + run_id.lower()
    run([str(podman), "network", "create", "--label", f"{RUN_LABEL}={run_id}", name], timeout=60,
        env=podman_env()).check()
    try:
        report = gc.garbage_collect(podman=gc.Podman(str(podman), podman_env()), cluster=None, registry=None,
                                    include_images=False, runs_dir=tmp_path, older_than=3600, dry_run=True)
        (mine,) = [x for x in report.leftovers if x.run == run_id]
        assert (mine.kind, mine.name, mine.delete) == ("network", name, True)
        assert gc.Podman(str(podman), podman_env()).delete(mine).ok  # only this one: others may be in use
        assert not run([str(podman), "network", "exists", name], timeout=60, env=podman_env()).ok
    finally:
        run([str(podman), "network", "rm", "--force", name], timeout=60, env=podman_env())


# --- the command line -----------------------------------------------------------------------------------------------


def _kubevibe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEVIBE_") and k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "kubevibe.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_run_on_kubernetes_without_a_registry_stops_before_any_work(tmp_path):
    result = _kubevibe("run", "--target", "kubernetes", "--llm", "replay:none.jsonl", "a service", cwd=tmp_path)
    assert result.returncode == 2
    assert "--target kubernetes needs --registry" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_gc_command_lists_a_leftover_namespace_of_the_stand_in(tmp_path, api):
    obj = namespace_object("20200101T000000Z-c0ffee0000", "another-host/1/1")
    obj["status"] = {"phase": "Active"}
    api.put(obj)
    result = _kubevibe("gc", "--dry-run", "--target", "kubernetes", "--kubeconfig", str(api.kubeconfig(tmp_path)),
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("would delete cluster namespace kv-20200101t000000z-c0ffee0000 (run "
                               "20200101T000000Z-c0ffee0000, active): its run started ")
    assert lines[-1] == "would delete 1, kept 0"
    assert api.namespaces() == ["kv-20200101t000000z-c0ffee0000"]
