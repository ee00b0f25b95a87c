"""The Kubernetes provider: the manifest's objects applied to a real cluster, in a disposable namespace of the run.

Everything goes through `kubectl` (exec.run: argument lists, timeouts, the stage's command log), with the user's
`--kubeconfig` / `--context`, JSON output, and server-side apply (`--server-side --field-manager=kubevibe`).

Namespace: one per run, `kv-<run id>` (DNS-1123), labelled `app.kubernetes.io/managed-by=kubevibe`,
`io.kubevibe.run=<run id>` and `pod-security.kubernetes.io/enforce|warn|audit=<policy level>` (so a cluster with
Pod Security Admission refuses what KubeVibe's policy would), annotated with the owning process (host/pid/start
time, for `kubevibe gc`). It is made the first time a stage needs it: Validate's server-side dry run needs it
already (a dry run into a namespace that does not exist fails with NotFound, and a dry run into `default` would
check against whatever lives there, needs rights there, and could collide with same-named objects), then Deploy
and Chart reuse it. Its cleanup is registered (StepScope.cleanups, the run's) BEFORE it is created and deletes it
at the end of the run, on errors and on Ctrl-C (the runner runs every cleanup). Deletion: `kubectl delete
namespaces -l <managed-by and run labels> --wait=false` (a selector, so nothing without both labels can ever be
deleted), pods told to stop within a second (a Python server as PID 1 ignores SIGTERM and would hold the
namespace for the 30 s grace period), then a bounded wait until it is gone.

Inside the namespace, each Deploy applies its own copy of the manifest (`applied.yaml`, manifest.py): the built
image in every Deployment container (as on the local engine), and the labels `io.kubevibe.run` and
`io.kubevibe.step` on every object and pod template, so the pods of this attempt are told apart from those of an
earlier attempt that are still terminating. `KubernetesDeployment.teardown()` deletes this attempt's objects again
(the runner calls it when the pipeline leaves the deployed states; Deploy on failure); the next attempt starts
from nothing in the same namespace. Nothing outside the namespace is created: the safety policy (kubevibe.policy:
no cluster-scoped kinds, no metadata.namespace) is checked again before any apply, also for dry runs.

Readiness: polled with `kubectl get deployments,replicasets,statefulsets,pods -l <run,step> -o json` plus the
namespace's events, judged like `kubectl rollout status` (status.py). A container that restarted, is in
CrashLoopBackOff, cannot pull its image or cannot be created ends the wait at once; anything else (readiness
probe failures, Pending pods) is reported when the time is up. Evidence for Fix: one sentence per problem with
the cluster's own message, pod and container states, the Warning events, and the tail of each container's log,
current and `--previous`.

Connect reaches pods through `kubectl port-forward pod/NAME :PORT` (`open_port`, portforward.py), never through
cluster IPs, which only work from a node.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevibe import policy
from kubevibe.errors import KubeVibeError
from kubevibe.evidence import Evidence
from kubevibe.exec import CommandResult, run
from kubevibe.manifests import dump_manifest, workloads
from kubevibe.poll import Backoff
from kubevibe.targets.base import (
    ContainerUsage,
    DeployRequest,
    Deployment,
    DeploymentInfo,
    PodInfo,
    StepScope,
    Target,
    TargetCapabilities,
    TargetFailure,
    service_port_infos,
    tail_lines,
)
from kubevibe.targets.kubernetes.gc import process_owner
from kubevibe.targets.kubernetes.kubectl import (
    APPLY_TIMEOUT_S,
    KUBECTL_TIMEOUT_S,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    REQUEST_TIMEOUT,
    KubeAccess,
    _access_hint,
    _last_line,
    apply_args,
    dry_run_findings,
    is_infrastructure_error,
    kubectl_messages,
    namespace_name,
    namespace_selector,
    run_selector,
)
from kubevibe.targets.kubernetes.manifest import applied_manifest, expected_pods, namespace_object
from kubevibe.targets.kubernetes.portforward import PORT_FORWARD_START_S, PortForward, PortForwardError
from kubevibe.targets.kubernetes.status import (
    IMAGE_PULL_REASONS,
    Problem,
    _meta,
    container_infos,
    describe_events,
    describe_pods,
    event_problems,
    events_about,
    items,
    live_pods,
    pod_infos,
    pod_problems,
    readiness,
    top_usage,
)
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.tools import find_tool

if TYPE_CHECKING:
    from kubevibe.settings import Settings

NAMESPACE_CLEANUP = "kubernetes-namespace"  # run cleanup key; "deployment" is the workloads of one Deploy
NAMESPACE_GONE_WAIT_S = 60.0  # bounded wait for a deleted namespace to disappear
POLL_FIRST_S, POLL_MAX_S = 1.0, 3.0
LOG_TAIL_LINES = 200  # lines fetched per container log; evidence shows fewer
EVIDENCE_LOG_LINES = 60


class KubernetesTarget(Target):
    name = "kubernetes"
    capabilities = TargetCapabilities(needs_registry=True, port_forward=True, enforces_pod_security=True,
                                      server_checks=True, reports_usage=True)  # fmt: skip

    def __init__(self, settings: "Settings | None" = None, access: KubeAccess | None = None) -> None:
        super().__init__(settings)
        self._access = access

    def access(self) -> KubeAccess:
        """kubectl and the run's kubeconfig/context (from the settings the provider was made with)."""
        if self._access is None:
            found = find_tool("kubectl")
            if found is None:
                raise KubeVibeError("kubectl is not installed, and the kubernetes target needs it.",
                                    "Run `python -m kubevibe.tools install` (scripts/bootstrap.sh does).")
            if self.settings is None:
                return KubeAccess(str(found))
            self._access = KubeAccess.from_settings(self.settings, str(found))
        return self._access

    # -- running kubectl ----------------------------------------------------------------------------------------------
    def kubectl(self, scope: StepScope | None, args: list[str], *, log_file: Path | None = None,
                timeout: float = KUBECTL_TIMEOUT_S, input: str | None = None) -> CommandResult:
        access = self.access()
        if scope is not None:
            timeout = scope.timeout(timeout)
        return run(access.argv(*args), timeout=timeout, env=access.env() or None, input=input, log_file=log_file)

    def get_json(self, scope: StepScope | None, args: list[str], *, log_file: Path | None = None) -> Any:
        """kubectl get ... -o json, parsed; a failure to talk to the cluster (twice: one retry for a hiccup) stops
        the run."""
        argv = ["get", *args, "-o", "json", REQUEST_TIMEOUT]
        result = self.kubectl(scope, argv, log_file=log_file)
        if not result.ok and not result.timed_out:
            time.sleep(1.0)
            result = self.kubectl(scope, argv, log_file=log_file)
        if not result.ok:
            raise KubeVibeError(f"kubectl could not read from the cluster: {_last_line(result)}",
                                _access_hint(self.access()))
        try:
            return json.loads(result.stdout or "{}")
        except ValueError:
            raise KubeVibeError(f"kubectl printed no JSON: {result.stdout[:200]!r}") from None

    # -- the namespace ------------------------------------------------------------------------------------------------
    def ensure_namespace(self, scope: StepScope) -> str:
        """The run's namespace, created if needed; its deletion is registered (scope.cleanups) before it is created."""
        name = namespace_name(scope.run_id)
        # Registered once per run: a second add_cleanup under the same key would run the first one, deleting
        # the namespace the run is using.
        cleanups = scope.cleanups
        if cleanups is not None and not cleanups.has_cleanup(NAMESPACE_CLEANUP):
            run_id, log_file = scope.run_id, scope.log_file
            cleanups.add_cleanup(NAMESPACE_CLEANUP, lambda: self.delete_namespace(run_id, log_file=log_file))
        existing = self._namespace(scope, name, scope.log_file)
        if existing is not None:
            labels = _meta(existing).get("labels") or {}
            if labels.get(RUN_LABEL) != label_value(scope.run_id) or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
                raise KubeVibeError(f"Namespace {name} exists in the cluster but was not made by this run; "
                                    "KubeVibe never uses or deletes a namespace it did not create.",
                                    f"Inspect it with `kubectl get namespace {name} -o yaml`.")
            if (existing.get("status") or {}).get("phase") != "Terminating":
                owner = process_owner()
                if (_meta(existing).get("annotations") or {}).get(OWNER_ANNOTATION) != owner:  # a resumed run
                    self.kubectl(scope, ["annotate", "namespace", name, f"{OWNER_ANNOTATION}={owner}", "--overwrite",
                                         REQUEST_TIMEOUT], log_file=scope.log_file)
                return name
            self._wait_namespace_gone(scope, name, NAMESPACE_GONE_WAIT_S)  # a resumed run's old one, being deleted
        created = self.kubectl(scope, ["create", "-f", "-", "-o", "json", REQUEST_TIMEOUT],
                               input=json.dumps(namespace_object(scope.run_id, process_owner(), scope.policy)),
                               log_file=scope.log_file)
        if not created.ok:
            raise KubeVibeError(f"kubectl could not create the run's namespace {name}: {_last_line(created)}",
                                _access_hint(self.access()))
        return name

    def _namespace(self, scope: StepScope | None, name: str, log_file: Path | None) -> dict[str, Any] | None:
        result = self.kubectl(scope, ["get", "namespace", name, "--ignore-not-found", "-o", "json",
                                      REQUEST_TIMEOUT], log_file=log_file)
        if not result.ok:
            raise KubeVibeError(f"kubectl could not read namespace {name}: {_last_line(result)}",
                                _access_hint(self.access()))
        return json.loads(result.stdout) if result.stdout.strip() else None

    def _wait_namespace_gone(self, scope: StepScope | None, name: str, wait_s: float,
                             log_file: Path | None = None) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            if self._namespace(scope, name, log_file) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)

    def delete_namespace(self, run_id: str, *, log_file: Path | None = None,
                         wait_s: float = NAMESPACE_GONE_WAIT_S) -> bool:
        """Delete the run's namespace (by its labels, so never one KubeVibe did not make) and wait, bounded, until
        it is gone. True if gone; False if still terminating when the wait ended (the cluster finishes it).
        Raises KubeVibeError if the cluster refused or could not be reached."""
        name = namespace_name(run_id)
        deleted = self.kubectl(None, ["delete", "namespaces", "-l", namespace_selector(run_id), "--wait=false",
                                      "--ignore-not-found", "-o", "name", REQUEST_TIMEOUT],
                               log_file=log_file)  # fmt: skip
        if not deleted.ok:
            raise KubeVibeError(f"kubectl could not delete namespace {name}: {_last_line(deleted)}",
                                f"Delete it later with `kubevibe gc` (it carries {RUN_LABEL}={label_value(run_id)}).")
        if f"namespace/{name}" not in deleted.stdout.split():
            return True  # there was none
        # The run's pods get a one-second grace period (not a forced removal): the namespace then goes in seconds.
        self.kubectl(None, ["delete", "pods", "-l", run_selector(run_id), "--namespace", name, "--grace-period=1",
                            "--wait=false", "--ignore-not-found", REQUEST_TIMEOUT], log_file=log_file)
        return self._wait_namespace_gone(None, name, wait_s, log_file)

    # -- deployments --------------------------------------------------------------------------------------------------
    def deployment(self, request: DeployRequest) -> "KubernetesDeployment":
        """The applied copy as a handle, after the safety policy passed again; nothing reaches the cluster yet."""
        docs = request.docs
        _refuse_unsafe(docs, request)
        applied, notes = applied_manifest(docs, request.image, request.run_id, request.step,
                                          image_preloaded=request.image_preloaded)
        if not workloads(applied):
            raise TargetFailure("The manifest has no Deployment or Pod to run.",
                                [Evidence(kind="finding", title="nothing to deploy", detail="kinds: " +
                                          ", ".join(str(d.get("kind")) for d in docs))])  # fmt: skip
        applied_file = request.work_dir / "applied.yaml"
        info = DeploymentInfo(target=self.name, run_id=request.run_id, network=namespace_name(request.run_id),
                              manifest_file=str(applied_file), expected_pods=expected_pods(applied),
                              service_ports=service_port_infos(docs), notes=notes)  # fmt: skip
        return KubernetesDeployment(self, request, info, step=request.step, applied=applied)

    def attach(self, info: DeploymentInfo, scope: StepScope) -> "KubernetesDeployment":
        return KubernetesDeployment(self, scope, info, step=_step_of(info), applied=None)

    # -- checks only a cluster can make --------------------------------------------------------------------------------
    def server_validate(self, scope: StepScope, docs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """`kubectl apply --server-side --dry-run=server` of what Deploy will apply, into the run's namespace:
        admission (PodSecurity, quotas, webhooks), defaulting and the cluster's own schema. (findings, notes)."""
        if policy.check(docs, allow_node_port=scope.allow_node_port, level=scope.policy):
            return [], []  # refused offline already; nothing refused goes to the cluster, not even as a dry run
        applied, _ = applied_manifest(docs, scope.image, scope.run_id, scope.step,
                                      image_preloaded=scope.image_preloaded)
        return self.dry_run(scope, dump_manifest(applied))

    def dry_run(self, scope: StepScope, manifest_text: str) -> tuple[list[str], list[str]]:
        namespace = self.ensure_namespace(scope)
        result = self.kubectl(scope, apply_args(namespace, "-", dry_run=True), input=manifest_text,
                              log_file=scope.log_file, timeout=APPLY_TIMEOUT_S)
        if not result.ok and is_infrastructure_error(result.stderr or result.output):
            raise KubeVibeError(f"kubectl apply --dry-run=server could not reach the cluster: {_last_line(result)}",
                                _access_hint(self.access()))
        return dry_run_findings(result)

    def chart_check(self, scope: StepScope, chart_dir: Path, release: str, helm: str,
                    env: Mapping[str, str]) -> tuple[list[str], list[Evidence]]:
        """`helm install --dry-run=server` into the run's namespace (the cluster's version and API groups, lookups,
        existing objects), then its rendered objects through `kubectl apply --dry-run=server`: helm's server dry
        run renders against the cluster but does not send the objects for admission (helm/helm#12510)."""
        namespace = self.ensure_namespace(scope)
        argv = [helm, "install", release, str(chart_dir), "--dry-run=server", "--namespace", namespace, "-o", "json",
                *self.access().helm_flags()]  # fmt: skip
        result = run(argv, timeout=scope.timeout(APPLY_TIMEOUT_S), env={**env, **self.access().env()},
                     cwd=chart_dir.parent, log_file=scope.log_file)
        evidence = [Evidence.from_command("helm install --dry-run=server", result.model_copy(update={"stdout": ""}))]
        if not result.ok:
            if is_infrastructure_error(result.output):
                raise KubeVibeError(f"helm could not reach the cluster: {_last_line(result)}",
                                    _access_hint(self.access()))
            return [f"helm install --dry-run=server of chart {release} failed: {_last_line(result)}."], evidence
        try:
            release_data = json.loads(result.stdout)
        except ValueError:
            return [f"helm install --dry-run=server printed no JSON release: {result.stdout[:200]!r}."], evidence
        manifest = str(release_data.get("manifest") or "")
        findings, notes = self.dry_run(scope, manifest)
        evidence += [Evidence(kind="note", title=n) for n in notes]
        return findings, evidence


class KubernetesDeployment(Deployment):
    """One Deploy attempt's objects in the run's namespace, told apart by the step label."""

    target: KubernetesTarget

    def __init__(self, target: KubernetesTarget, scope: StepScope, info: DeploymentInfo, *, step: int | None,
                 applied: list[dict[str, Any]] | None):
        super().__init__(target, scope, info)
        self.request = scope if isinstance(scope, DeployRequest) else None
        self.step = step
        self.applied = applied
        self.previous_logs: dict[str, str] = {}  # pod/container -> log of the run before the last restart

    @property
    def namespace(self) -> str:
        return namespace_name(self.info.run_id)

    def _kubectl(self, args: list[str], **kw: Any) -> CommandResult:
        return self.target.kubectl(self.scope, args, **kw)

    # -- start --------------------------------------------------------------------------------------------------------
    def start(self) -> DeploymentInfo:
        assert self.request is not None and self.applied is not None, "an attached deployment is started already"
        request = self.request
        applied_file = Path(self.info.manifest_file or request.work_dir / "applied.yaml")
        applied_file.write_text(dump_manifest(self.applied), encoding="utf-8")
        namespace = self.target.ensure_namespace(request)
        applied_result = self._kubectl(apply_args(namespace, str(applied_file)), log_file=request.log_file,
                                       timeout=APPLY_TIMEOUT_S)
        if not applied_result.ok:
            text = applied_result.stderr or applied_result.output
            if is_infrastructure_error(text):
                raise KubeVibeError(f"kubectl apply could not reach the cluster: {_last_line(applied_result)}",
                                    _access_hint(self.target.access()))
            messages = kubectl_messages(text) or [_last_line(applied_result)]
            evidence = [Evidence(kind="finding", title="The cluster refused an object: " + m) for m in messages]
            evidence.append(Evidence.from_command("kubectl apply of the manifest (image substituted)", applied_result))
            raise TargetFailure(f"kubectl apply failed: {messages[0]}", evidence, self.info)
        return self.status()

    # -- teardown -----------------------------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Delete this attempt's objects (pods go with their owners). The namespace stays for the run's next steps."""
        if not self.info.manifest_file:
            return
        applied_file = Path(self.info.manifest_file)
        if not applied_file.exists():
            return
        namespace = self.namespace
        # Logged where Deploy logged its commands; never clamped to a stage's deadline (a cleanup must run).
        log_file = self.request.log_file if self.request is not None else self.scope.log_file
        result = self.target.kubectl(None, ["delete", "-f", str(applied_file), "--namespace", namespace,
                                            "--ignore-not-found", "--wait=false", REQUEST_TIMEOUT],
                                     log_file=log_file)  # fmt: skip
        if not result.ok and "not found" not in result.output:
            raise KubeVibeError(f"kubectl could not delete the deployment in {namespace}: {_last_line(result)}",
                                f"The namespace {namespace} is deleted at the end of the run, or by `kubevibe gc`.")

    # -- state --------------------------------------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """This attempt's Deployments, ReplicaSets, StatefulSets and Pods, as kubectl returns them."""
        selector = run_selector(self.info.run_id, self.step)
        data = self.target.get_json(self.scope, ["deployments,replicasets,statefulsets,pods", "--namespace",
                                                 self.namespace, "-l", selector])  # fmt: skip
        return items(data)

    def events(self) -> list[dict[str, Any]]:
        return items(self.target.get_json(self.scope, ["events", "--namespace", self.namespace]))

    def status(self, objects: list[dict[str, Any]] | None = None) -> DeploymentInfo:
        objects = self.snapshot() if objects is None else objects
        pods = live_pods(objects)
        self.info = self.info.model_copy(update={"pods": pod_infos(pods), "containers": container_infos(pods)})
        return self.info

    def wait_ready(self, timeout: float) -> DeploymentInfo:
        backoff = Backoff(deadline=time.monotonic() + timeout, first=POLL_FIRST_S, maximum=POLL_MAX_S)
        while True:
            objects = self.snapshot()
            info = self.status(objects)
            problems = [p for pod in live_pods(objects) for p in pod_problems(pod)]
            events = events_about(self.events(), objects)
            problems += event_problems(events)
            if any(p.fatal for p in problems):
                raise self._failure(info, objects, events, problems, None)
            missing = readiness(objects)
            if missing is None:
                return info
            if not backoff.wait():
                raise self._failure(info, objects, events, problems, f"not ready after {timeout:.0f}s: {missing}")

    def _failure(self, info: DeploymentInfo, objects: list[dict[str, Any]], events: list[dict[str, Any]],
                 problems: list[Problem], timed_out: str | None) -> TargetFailure:
        built = self.scope.image
        unpullable = [p for p in problems if p.reason in IMAGE_PULL_REASONS and built
                      and (p.image == built or p.image.endswith("/" + built))]  # containerd may prefix docker.io/
        if unpullable:  # the image KubeVibe pushed or loaded: the cluster's access to it, not the generated files
            raise KubeVibeError(f"The cluster cannot pull the image KubeVibe built: {unpullable[0].sentence}",
                                "Push to a registry the cluster's nodes can pull from (--registry HOST:PORT, with "
                                "`podman login`/`docker login` if it needs credentials), or load the image into a kind "
                                "cluster's nodes (--registry kind://CLUSTER). See docs/kubernetes.md.")
        pods = live_pods(objects)
        logs = self.logs(self.scope.work_dir / "logs")
        problems = sorted(problems, key=lambda p: not p.fatal)  # the fatal ones first
        evidence: list[Evidence] = []
        seen: set[str] = set()
        for problem in problems:
            if problem.sentence in seen:
                continue
            seen.add(problem.sentence)
            detail = ""
            key = f"{problem.pod}/{problem.container}"
            if problem.container and logs.get(key, "").strip():
                which = " before its last restart (kubectl logs --previous) and since" if problem.previous_logs else ""
                detail = f"last log lines{which}:"
            evidence.append(Evidence(kind="finding", title=problem.sentence, detail=detail,
                                     stdout=tail_lines(logs.get(key, ""), EVIDENCE_LOG_LINES) if detail else ""))
        evidence.append(Evidence(kind="finding", title="pod and container states", detail=describe_pods(pods)))
        evidence.append(Evidence(kind="log", title="events of this deployment (kubectl get events)",
                                 detail=describe_events(events)))
        mentioned = {f"{p.pod}/{p.container}" for p in problems if p.container}
        evidence += [Evidence(kind="log", title=f"logs of {key}", stdout=tail_lines(text, EVIDENCE_LOG_LINES))
                     for key, text in logs.items() if key not in mentioned and text.strip()]
        if problems:
            first = problems[0]
            summary = first.sentence.rstrip(".")
            key = f"{first.pod}/{first.container}"
            crash_log = self.previous_logs.get(key, "") if first.previous_logs else ""
            last = tail_lines(crash_log if crash_log.strip() else logs.get(key, ""), 3).replace("\n", " | ")
            if last and first.reason not in IMAGE_PULL_REASONS:
                summary += f"; last log lines: {last}"
            if timed_out:
                summary = f"{timed_out}; {summary}"
        else:
            summary = timed_out or "the deployment failed"
        return TargetFailure(summary, evidence, info)

    # -- logs ---------------------------------------------------------------------------------------------------------
    def logs(self, directory: Path) -> dict[str, str]:
        """Logs of every container in info (as status() read them), keyed pod/container. A container that
        restarted: its previous run's log (where the crash is) first, then the current one."""
        directory.mkdir(parents=True, exist_ok=True)
        restarts = {(c.pod, c.name): c.restarts for c in self.info.containers}
        started = {(c.pod, c.name) for c in self.info.containers if c.state in ("running", "exited") or c.restarts}
        logs: dict[str, str] = {}
        for pod, container in sorted(restarts):
            if (pod, container) not in started:
                text = "(the container has not started, so it has no log)"
            else:
                text = self._log(pod, container, previous=False)
                if restarts[(pod, container)]:
                    previous = self._log(pod, container, previous=True)
                    self.previous_logs[f"{pod}/{container}"] = previous
                    text = (f"[log of the previous run, before restart {restarts[(pod, container)]}]\n{previous}"
                            f"\n[log of the current run]\n{text}")
            logs[f"{pod}/{container}"] = text
            (directory / f"{pod}-{container}.log").write_text(text, encoding="utf-8")
        return logs

    def _log(self, pod: str, container: str, *, previous: bool) -> str:
        args = ["logs", f"pod/{pod}", "--container", container, "--namespace", self.namespace,
                f"--tail={LOG_TAIL_LINES}", REQUEST_TIMEOUT]
        result = self._kubectl(args + (["--previous"] if previous else []))
        return result.stdout if result.ok else f"(no log: {_last_line(result)})"

    # -- reaching a pod: kubectl port-forward -------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_port(self, pod: PodInfo, port: int) -> Iterator[str]:
        access = self.target.access()
        namespace = self.namespace
        argv_for = lambda local: access.argv("port-forward", f"pod/{pod.name}", f"{local}:{port}",  # noqa: E731
                                             "--namespace", namespace, "--address", "127.0.0.1")
        forward = PortForward(argv_for, env=access.env(), log_file=self.scope.log_file)
        try:
            local = forward.start(self.scope.timeout(PORT_FORWARD_START_S))
        except PortForwardError as exc:
            forward.stop()
            if is_infrastructure_error(exc.output):
                raise KubeVibeError(f"kubectl port-forward could not reach the cluster: {exc}",
                                    _access_hint(access)) from None
            raise TargetFailure(f"kubectl port-forward to port {port} of pod {pod.name} failed: {exc}",
                                [Evidence(kind="command", title="kubectl port-forward", command=exc.command,
                                          stderr=exc.output)]) from None
        try:
            yield f"http://127.0.0.1:{local}"
        finally:
            forward.stop()

    # -- resource use: the metrics API, best effort -----------------------------------------------------------------
    def usage(self) -> list[ContainerUsage] | None:
        """`kubectl top pod --containers` of the run's pods; None when the cluster has no metrics API (metrics-server
        absent, or no reading yet: it samples every ~15 s, so a short load may see none)."""
        result = self._kubectl(["top", "pod", "--containers", "--no-headers", "--namespace", self.namespace,
                                REQUEST_TIMEOUT], timeout=20)
        if not result.ok:
            return None
        return top_usage(result.stdout, {p.name for p in self.info.pods})


# --- helpers --------------------------------------------------------------------------------------------------------


def _refuse_unsafe(docs: list[dict[str, Any]], scope: StepScope) -> None:
    """The safety policy again, right before anything reaches the cluster (a resumed run may bring changed files)."""
    findings = policy.check(docs, allow_node_port=scope.allow_node_port, level=scope.policy)
    if findings:
        raise TargetFailure(f"the manifest breaks the safety policy: {findings[0]}",
                            [Evidence(kind="finding", title=text, detail="check: policy") for text in findings])


def _step_of(info: DeploymentInfo) -> int | None:
    """The Deploy step of a recorded deployment (from its applied file's directory, steps/NNN-deploy): only for a
    handle re-made from state.json; a handle made by Deploy knows its step."""
    if not info.manifest_file:
        return None
    m = re.match(r"^(\d+)-", Path(info.manifest_file).parent.name)
    return int(m.group(1)) if m else None
