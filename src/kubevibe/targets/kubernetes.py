"""The Kubernetes target: the manifest's objects applied to a real cluster, in a disposable namespace of the run.

Everything goes through `kubectl` (exec.run: argument lists, timeouts, the stage's command log), with the user's
`--kubeconfig` / `--context`, JSON output, and server-side apply (`--server-side --field-manager=kubevibe`).

Namespace: one per run, `kv-<run id>` (DNS-1123), labelled `app.kubernetes.io/managed-by=kubevibe`,
`io.kubevibe.run=<run id>` and `pod-security.kubernetes.io/enforce|warn|audit=<policy level>` (so a cluster with
Pod Security Admission refuses what KubeVibe's policy would), annotated with the owning process (host/pid/start time, for `kubevibe gc`). It is made
the first time a stage needs it: Validate's server-side dry run needs it already (a dry run into a namespace that
does not exist fails with NotFound, and a dry run into `default` would check against whatever lives there, needs
rights there, and could collide with same-named objects), then Deploy and Chart reuse it. Its cleanup is
registered BEFORE it is created and deletes it at the end of the run, on errors and on Ctrl-C (the runner runs
every cleanup). Deletion: `kubectl delete namespaces -l <managed-by and run labels> --wait=false` (a selector, so
nothing without both labels can ever be deleted), pods told to stop within a second (a Python server as PID 1
ignores SIGTERM and would hold the namespace for the 30 s grace period), then a bounded wait until it is gone.

Inside the namespace, each Deploy applies its own copy of the manifest (`applied.yaml`): the built image in every
Deployment container (as on the local engine), and the labels `io.kubevibe.run` and `io.kubevibe.step` on every
object and pod template, so the pods of this attempt are told apart from those of an earlier attempt that are still
terminating. The "deployment" cleanup deletes this attempt's objects again (Deploy runs it on failure, Connect at
its end); the next attempt starts from nothing in the same namespace. Nothing outside the namespace is created:
the safety policy (kubevibe.policy: no cluster-scoped kinds, no metadata.namespace) is checked again before any
apply, also for dry runs.

Readiness: polled with `kubectl get deployments,replicasets,statefulsets,pods -l <run,step> -o json` plus the
namespace's events, judged like `kubectl rollout status` (observedGeneration, updated and available replicas),
bare Pods by their Ready condition. A container that restarted, is in CrashLoopBackOff, cannot pull its image or
cannot be created ends the wait at once; anything else (readiness probe failures, Pending pods) is reported
when the time is up. Evidence for Fix (pure functions over kubectl's JSON, see `pod_problems` / `event_problems`):
one sentence per problem with the cluster's own message, pod and container states, the Warning events, and the
tail of each container's log, current and `--previous`.

Connect reaches pods through `kubectl port-forward pod/NAME :PORT` (`open_port`), never through cluster IPs,
which only work from a node. kubectl >= 1.23 ends a port-forward at the first failed connection inside the pod
(kubernetes/kubectl#1169), which is exactly what happens while a server is still starting, so the forward is
restarted on the same local port whenever it exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevibe import policy
from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.exec import CommandResult, kill_group, pretty_command, run
from kubevibe.manifests import (
    containers,
    describe,
    drop_namespaces,
    dump_manifest,
    pod_template,
    set_image,
    workloads,
)
from kubevibe.pipeline.context import Evidence
from kubevibe.targets.base import (
    RUN_LABEL,
    ContainerInfo,
    ContainerUsage,
    DeploymentInfo,
    PodInfo,
    Target,
    TargetFailure,
    service_port_infos,
    tail_lines,
)
from kubevibe.targets.images import destination_of
from kubevibe.targets.local import label_value
from kubevibe.tools import find_tool

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext
    from kubevibe.settings import Settings

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubevibe"
STEP_LABEL = "io.kubevibe.step"
OWNER_ANNOTATION = "io.kubevibe.owner"  # "<host>/<pid>/<process start ticks>" of the process that made it
FIELD_MANAGER = "kubevibe"
NAMESPACE_PREFIX = "kv-"
NAMESPACE_CLEANUP = "kubernetes-namespace"  # ctx cleanup key; "deployment" is the workloads of one Deploy

KUBECTL_TIMEOUT_S = 60.0  # one get/create/delete
REQUEST_TIMEOUT = f"--request-timeout={KUBECTL_TIMEOUT_S / 2:.0f}s"  # kubectl's own limit per API request
APPLY_TIMEOUT_S = 120.0
NAMESPACE_GONE_WAIT_S = 60.0  # bounded wait for a deleted namespace to disappear
POLL_FIRST_S, POLL_MAX_S = 1.0, 3.0
LOG_TAIL_LINES = 200  # lines fetched per container log; evidence shows fewer
EVIDENCE_LOG_LINES = 60
PORT_FORWARD_START_S = 20.0
PORT_FORWARD_MAX_RESTARTS = 100

# Waiting reasons of a container that will not get better by waiting (kubelet's own reason strings).
IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
                                "RegistryUnavailable", "SignatureValidationFailed"})
CREATE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                            "PreCreateHookError", "PostStartHookError", "PreStartHookError"})
# kubectl/API answers that mean the tool cannot talk to the cluster (not a problem of the generated files).
_INFRA_PATTERNS = re.compile(
    r"Unable to connect to the server|couldn't get current server API group list|dial tcp|i/o timeout|no such host|"
    r"x509:|certificate signed by unknown authority|You must be logged in|provide credentials|Unauthorized|"
    r"is forbidden: User \"|cannot (?:create|get|list|patch|delete) resource|context \".*\" does not exist|"
    r"error loading config file|no configuration has been provided|The connection to the server .* was refused",
    re.IGNORECASE,
)  # fmt: skip


# --- names and commands (pure) --------------------------------------------------------------------------------------


def namespace_name(run_id: str) -> str:
    """kv-<run id>, lowercased and made a DNS-1123 label (63 characters at most)."""
    body = re.sub(r"[^a-z0-9-]+", "-", run_id.lower())
    body = re.sub(r"-{2,}", "-", body).strip("-")
    if len(NAMESPACE_PREFIX + body) > 63:  # cut, and end with a hash of the whole run id, which keeps it unique
        digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
        body = body[: 63 - len(NAMESPACE_PREFIX) - 9].rstrip("-") + "-" + digest
    return NAMESPACE_PREFIX + (body or hashlib.sha1(run_id.encode()).hexdigest()[:12])


def run_selector(run_id: str, step: int | None = None) -> str:
    """The label selector of a run's objects (of one Deploy attempt when step is given)."""
    selector = f"{RUN_LABEL}={label_value(run_id)}"
    return selector + (f",{STEP_LABEL}={step}" if step is not None else "")


def namespace_selector(run_id: str | None = None) -> str:
    """Namespaces KubeVibe made, of one run when run_id is given (else of any run): both labels, never one alone."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{RUN_LABEL}" + (f"={label_value(run_id)}" if run_id else "")


@dataclass(frozen=True)
class KubeAccess:
    """How to reach the cluster: the kubectl binary and the user's kubeconfig and context."""

    kubectl: str
    kubeconfig: str | None = None
    context: str | None = None

    @classmethod
    def from_settings(cls, settings: "Settings", kubectl: str) -> "KubeAccess":
        return cls(kubectl, str(settings.kubeconfig) if settings.kubeconfig else None, settings.context)

    def _flags(self, context_flag: str) -> list[str]:
        """--kubeconfig F (a KUBECONFIG list a:b is no flag value: env() passes it) and the context flag."""
        flags = ["--kubeconfig", self.kubeconfig] if self.kubeconfig and not self.env() else []
        return flags + ([context_flag, self.context] if self.context else [])

    def argv(self, *args: str) -> list[str]:
        """kubectl [--kubeconfig F] [--context C] ARGS."""
        return [self.kubectl, *self._flags("--context"), *args]

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": self.kubeconfig} if self.kubeconfig and os.pathsep in self.kubeconfig else {}

    def helm_flags(self) -> list[str]:
        return self._flags("--kube-context")


def apply_args(namespace: str, file: str, *, dry_run: bool = False) -> list[str]:
    """kubectl arguments of a server-side apply of `file` ("-" for stdin) into `namespace`."""
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--namespace", namespace, "-f", file,
            "-o", "json"]  # fmt: skip
    return args + (["--dry-run=server"] if dry_run else [])


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


def process_owner(pid: int | None = None) -> str:
    """<host>/<pid>/<start ticks>: names this process unambiguously (pids are reused, start times are not)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid) or 0}"


def owner_alive(owner: str, host: str | None = None) -> bool | None:
    """True/False for an owner on this host; None when it is another host's process (cannot tell)."""
    parts = owner.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    if parts[0] != (host or socket.gethostname()):
        return None
    ticks = _start_ticks(int(parts[1]))
    return ticks is not None and str(ticks) == parts[2]


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None  # field 22 of stat: starttime


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


# --- reading kubectl's JSON (pure) ----------------------------------------------------------------------------------


def items(data: Any) -> list[dict[str, Any]]:
    """The objects of a kubectl `-o json` answer: a List's items, or the one object."""
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("items"), list):
        return [i for i in data["items"] if isinstance(i, dict)]
    return [data] if data.get("kind") else []


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def live_pods(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pods that are not being deleted and do not belong to a Job (those are allowed to finish)."""
    out = []
    for obj in objects:
        if obj.get("kind") != "Pod" or _meta(obj).get("deletionTimestamp"):
            continue
        owners = _meta(obj).get("ownerReferences") or []
        if any(o.get("kind") == "Job" for o in owners if isinstance(o, dict)):
            continue
        out.append(dict(obj))
    return sorted(out, key=_name)


def _statuses(pod: Mapping[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    found = list(status.get("initContainerStatuses") or []) if init else []
    return [s for s in found + list(status.get("containerStatuses") or []) if isinstance(s, dict)]


def container_state(status: Mapping[str, Any]) -> tuple[str, str | None, int | None]:
    """(running | waiting | exited | unknown, the state's reason, the exit code of the current or last run)."""
    state = status.get("state") if isinstance(status.get("state"), dict) else {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    if "running" in state:
        return "running", None, last.get("exitCode")
    if "terminated" in state:
        term = state["terminated"] or {}
        return "exited", term.get("reason"), term.get("exitCode")
    if "waiting" in state:
        return "waiting", (state["waiting"] or {}).get("reason"), last.get("exitCode")
    return "unknown", None, None


def pod_infos(pods: Iterable[Mapping[str, Any]]) -> list[PodInfo]:
    out = []
    for pod in pods:
        labels = _meta(pod).get("labels") or {}
        out.append(PodInfo(name=_name(pod), ip=(pod.get("status") or {}).get("podIP") or None,
                           labels={str(k): str(v) for k, v in labels.items()}))  # fmt: skip
    return out


def container_infos(pods: Iterable[Mapping[str, Any]]) -> list[ContainerInfo]:
    out = []
    for pod in pods:
        for status in _statuses(pod):
            state, _, code = container_state(status)
            out.append(ContainerInfo(pod=_name(pod), name=str(status.get("name", "")),
                                     engine_name=str(status.get("containerID") or ""), state=state, exit_code=code,
                                     restarts=int(status.get("restartCount") or 0)))  # fmt: skip
    return out


def _condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return {}


def workload_waiting(obj: Mapping[str, Any]) -> str | None:
    """What a Deployment / StatefulSet / Pod still waits for, in `kubectl rollout status` words; None: ready."""
    kind, name = obj.get("kind"), _name(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == "Pod":
        ready = _condition(obj, "Ready").get("status") == "True"
        return None if ready else f"pod {name} is not ready (phase {status.get('phase', 'unknown')})"
    if kind not in ("Deployment", "StatefulSet"):
        return None
    generation = _meta(obj).get("generation", 0) or 0
    if (status.get("observedGeneration") or 0) < generation:
        return f"{kind.lower()} {name}: waiting for the spec update to be observed"
    replicas = spec.get("replicas", 1)
    if kind == "StatefulSet":
        ready = status.get("readyReplicas") or 0
        return None if ready >= replicas else f"statefulset {name}: {ready} of {replicas} pods are ready"
    if _condition(obj, "Progressing").get("reason") == "ProgressDeadlineExceeded":
        return f"deployment {name} exceeded its progress deadline"
    updated = status.get("updatedReplicas") or 0
    if updated < replicas:
        return f"deployment {name}: {updated} out of {replicas} new replicas have been updated"
    if (status.get("replicas") or 0) > updated:
        return f"deployment {name}: {(status.get('replicas') or 0) - updated} old replicas are pending termination"
    available = status.get("availableReplicas") or 0
    if available < updated:
        return f"deployment {name}: {available} of {updated} updated replicas are available"
    return None


def readiness(objects: list[dict[str, Any]]) -> str | None:
    """None when every Deployment, StatefulSet and bare Pod of the attempt is ready; else the first thing missing."""
    workloads_found = [o for o in objects if o.get("kind") in ("Deployment", "StatefulSet")]
    bare_pods = [p for p in live_pods(objects) if not (_meta(p).get("ownerReferences"))]
    if not workloads_found and not bare_pods:
        return "no Deployment, StatefulSet or Pod exists yet"
    for obj in workloads_found + bare_pods:
        waiting = workload_waiting(obj)
        if waiting:
            return waiting
    return None


# --- problems: one clear sentence each (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    reason: str  # the cluster's reason (ImagePullBackOff, CrashLoopBackOff, Unhealthy, ...)
    sentence: str  # what Fix is shown: one sentence with the cluster's own message
    pod: str = ""
    container: str = ""
    image: str = ""
    fatal: bool = True  # waiting longer will not help
    previous_logs: bool = False  # the container restarted: `kubectl logs --previous` shows the crash


def _clean(text: Any, limit: int = 1000) -> str:
    text = " ".join(str(text or "").split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _memory_limit(pod: Mapping[str, Any], container: str) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if isinstance(c, dict) and c.get("name") == container:
            return ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def pod_problems(pod: Mapping[str, Any]) -> list[Problem]:
    """Problems visible in one pod's status: image pulls, crashes, OOM kills, create errors, scheduling."""
    name = _name(pod)
    out: list[Problem] = []
    status = pod.get("status") or {}
    for cs in _statuses(pod, init=True):
        cname, image = str(cs.get("name", "")), str(cs.get("image", ""))
        where = f"container {cname} of pod {name}"
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        reason = waiting.get("reason")
        message = _clean(waiting.get("message"))
        if reason in IMAGE_PULL_REASONS:
            out.append(Problem(reason, f"The image {image} of {where} cannot be pulled ({reason}): "
                               f"{message or 'no message'}.", name, cname, image,
                               fatal=reason != "ErrImagePull"))  # ErrImagePull turns into ImagePullBackOff
            continue
        if reason in CREATE_REASONS:
            out.append(Problem(reason, f"The {where} cannot be started ({reason}): {message or 'no message'}.",
                               name, cname, image))
            continue
        crash = last if last else terminated
        if crash.get("reason") == "OOMKilled":
            limit = _memory_limit(pod, cname)
            out.append(Problem("OOMKilled", f"The {where} was killed because it used more memory than its limit"
                               f"{f' of {limit}' if limit else ''} (OOMKilled, exit code {crash.get('exitCode', 137)}"
                               f", {restarts} restarts).", name, cname, image, previous_logs=restarts > 0))
            continue
        if reason == "CrashLoopBackOff":
            out.append(Problem(reason, f"The {where} keeps crashing (CrashLoopBackOff, {restarts} restarts); it last "
                               f"exited with code {last.get('exitCode', '?')} ({last.get('reason') or 'no reason'}).",
                               name, cname, image, previous_logs=restarts > 0))
            continue
        if restarts > 0 or (terminated and not _is_init_done(cs, pod)):
            code = crash.get("exitCode", "?")
            text = f"The {where} exited with code {code} ({crash.get('reason') or 'no reason'})"
            text += f" and was restarted {restarts} times." if restarts else " and was not restarted."
            out.append(Problem("Error" if restarts else "Terminated", text, name, cname, image,
                               previous_logs=restarts > 0))
    if status.get("phase") == "Failed":
        out.append(Problem(status.get("reason") or "Failed", f"Pod {name} failed ({status.get('reason') or 'no reason'}"
                           f"): {_clean(status.get('message')) or 'no message'}.", name))
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False":
        out.append(Problem(scheduled.get("reason") or "Unschedulable", f"Pod {name} cannot be scheduled: "
                           f"{_clean(scheduled.get('message')) or 'no message'}.", name, fatal=False))
    return out


def _is_init_done(status: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """An init container that exited 0 has done its job."""
    init_names = {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or [] if isinstance(c, dict)}
    term = (status.get("state") or {}).get("terminated") or {}
    return status.get("name") in init_names and term.get("exitCode") == 0


_PROBE = re.compile(r"^(Readiness|Liveness|Startup) probe (?:failed|errored):?\s*(.*)$", re.S)
_FIELD_CONTAINER = re.compile(r"spec\.(?:initContainers|containers)\{([^}]+)\}")


def event_count(event: Mapping[str, Any]) -> int:
    series = event.get("series") if isinstance(event.get("series"), dict) else {}
    return int(series.get("count") or event.get("count") or 1)


def event_problems(events: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Problems only events tell: probe failures (Unhealthy), scheduling, pod creation refused, volume mounts."""
    out: list[Problem] = []
    for event in events:
        if event.get("type") != "Warning":
            continue
        obj = event.get("involvedObject") or event.get("regarding") or {}
        kind, name = obj.get("kind", ""), obj.get("name", "")
        reason = str(event.get("reason", ""))
        message = _clean(event.get("message") or event.get("note"))
        times = event_count(event)
        container = (_FIELD_CONTAINER.search(str(obj.get("fieldPath", ""))) or [None, ""])[1]
        if reason == "Unhealthy":
            m = _PROBE.match(message)
            probe, detail = (m.group(1).lower(), m.group(2)) if m else ("health", message)
            effect = {"readiness": "so the pod never becomes ready and receives no traffic",
                      "liveness": "so the kubelet restarts the container",
                      "startup": "so the kubelet restarts the container"}.get(probe, "")
            where = f"container {container} of pod {name}" if container else f"pod {name}"
            out.append(Problem("Unhealthy", f"The {probe} probe of {where} fails ({times} times), {effect}: "
                               f"{_clean(detail) or 'no message'}.", name, container, fatal=False))
        elif reason == "FailedScheduling":
            out.append(Problem(reason, f"Pod {name} cannot be scheduled: {message}.", name, fatal=False))
        elif reason == "FailedCreate":
            out.append(Problem(reason, f"{kind} {name} cannot create its pods: {message}.", name))
        elif reason in ("FailedMount", "FailedAttachVolume"):
            out.append(Problem(reason, f"Pod {name} cannot mount a volume ({reason}): {message}.", name, fatal=False))
    return out


def describe_pods(pods: Iterable[Mapping[str, Any]]) -> str:
    """One line per container: `pod/app: waiting (CrashLoopBackOff), ready false, 3 restarts, last exit 1 (Error)`."""
    lines = []
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase", "unknown")
        statuses = _statuses(pod, init=True)
        if not statuses:
            lines.append(f"{_name(pod)}: phase {phase}, no container started yet")
        for cs in statuses:
            state, reason, _ = container_state(cs)
            last = (cs.get("lastState") or {}).get("terminated") or {}
            text = f"{_name(pod)}/{cs.get('name')}: {state}" + (f" ({reason})" if reason else "")
            text += f", ready {str(bool(cs.get('ready'))).lower()}, {int(cs.get('restartCount') or 0)} restarts"
            if last:
                text += f", last exit {last.get('exitCode')} ({last.get('reason') or 'no reason'})"
            lines.append(text + f" [pod phase {phase}]")
    return "\n".join(lines) or "(no pods)"


def describe_events(events: Iterable[Mapping[str, Any]], limit: int = 40) -> str:
    """`Warning Unhealthy pod/web-1 (x5): Readiness probe failed: ...`, oldest first, like kubectl describe."""
    rows = []
    for event in events:
        obj = event.get("involvedObject") or event.get("regarding") or {}
        when = event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get(
            "creationTimestamp") or ""
        times = event_count(event)
        what = f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}"
        rows.append((str(when), f"{event.get('type', '?')} {event.get('reason', '?')} {what}"
                     f"{f' (x{times})' if times > 1 else ''}: "
                     f"{_clean(event.get('message') or event.get('note'), 400)}"))
    rows.sort(key=lambda r: r[0])
    return "\n".join(text for _, text in rows[-limit:]) or "(no events)"


def events_about(events: Iterable[Mapping[str, Any]], objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events whose object is one of `objects` (this attempt's), not an earlier attempt's in the same namespace."""
    names = {(str(o.get("kind")), _name(o)) for o in objects}
    out = []
    for event in events:
        obj = event.get("involvedObject") or event.get("regarding") or {}
        if (str(obj.get("kind")), str(obj.get("name"))) in names:
            out.append(dict(event))
    return out


# --- kubectl's error output (pure) ----------------------------------------------------------------------------------

_ERROR_START = re.compile(r"^(Error from server|error:|Error:|The \S+ \"[^\"]*\" is invalid|Warning:)")


def kubectl_messages(stderr: str) -> list[str]:
    """kubectl's error and warning messages, one per entry: continuation lines are joined, and each `* cause`
    of an `The Deployment "x" is invalid:` block becomes a message of its own, with that prefix."""
    entries: list[list[str]] = []
    for line in stderr.splitlines():
        if not line.strip() or re.match(r"^[IEW]\d{4} ", line):  # klog lines (-v) are not messages
            continue
        if _ERROR_START.match(line) or not entries:
            entries.append([line.strip()])
        else:
            entries[-1].append(line.strip())
    out = []
    for head, *rest in entries:
        causes = [r[2:] for r in rest if r.startswith("* ")]
        if causes and head.endswith(":") and len(causes) == len(rest):
            out += [" ".join(f"{head} {cause}".split()) for cause in causes]
        else:
            out.append(" ".join(" ".join([head, *rest]).split()))
    return out


def is_infrastructure_error(text: str) -> bool:
    """kubectl could not talk to the cluster, or may not: the tool's problem, not the generated files'."""
    return bool(_INFRA_PATTERNS.search(text))


def dry_run_findings(result: CommandResult) -> tuple[list[str], list[str]]:
    """(findings, notes) of a `kubectl apply --dry-run=server`: each error is a finding sentence, each warning
    (e.g. a PodSecurity "would violate") a note."""
    findings, notes = [], []
    for message in kubectl_messages(result.stderr):
        if message.startswith("Warning:"):
            notes.append("The cluster warns: " + message.removeprefix("Warning:").strip())
        else:
            findings.append("The cluster refuses the manifest (kubectl apply --dry-run=server): "
                            + message.removeprefix("error: ").rstrip(".") + ".")
    if not result.ok and not findings:
        findings.append(f"kubectl apply --dry-run=server failed: {_last_line(result)}.")
    return findings, notes


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(n|u|m)?$")
_MEMORY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "K": 1000, "M": 1000**2, "G": 1000**3, "": 1}


def top_usage(text: str, pods: set[str]) -> list[ContainerUsage]:
    """ContainerUsage of `kubectl top pod --containers --no-headers` lines: `POD CONTAINER 3m 21Mi`."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 4 or (pods and fields[0] not in pods):
            continue
        cpu = _CPU.match(fields[2])
        mem = re.match(r"^(\d+(?:\.\d+)?)([KMGT]i?)?$", fields[3])
        cores = None
        if cpu:
            cores = float(cpu.group(1)) * {"n": 1e-9, "u": 1e-6, "m": 1e-3, None: 1.0}[cpu.group(2)]
        memory = round(float(mem.group(1)) * _MEMORY[mem.group(2) or ""]) if mem else None
        out.append(ContainerUsage(pod=fields[0], container=fields[1], cpu_cores=cores, memory_bytes=memory))
    return out


def parse_forwarding_port(line: str) -> int | None:
    """The local port of `Forwarding from 127.0.0.1:43567 -> 5000` (kubectl port-forward's first lines)."""
    m = re.match(r"^Forwarding from (?:127\.0\.0\.1|\[::1\]|localhost|[\d.]+):(\d+) -> \d+", line.strip())
    return int(m.group(1)) if m else None


def _last_line(result: CommandResult) -> str:
    lines = [ln.strip() for ln in result.output.splitlines() if ln.strip() and not re.match(r"^[IW]\d{4} ", ln)]
    return (lines or [result.describe()])[-1][:400]


# --- the target -----------------------------------------------------------------------------------------------------

class KubernetesTarget(Target):
    name = "kubernetes"
    server_checks = True

    def __init__(self, access: KubeAccess | None = None) -> None:
        self._access = access
        self.previous_logs: dict[str, str] = {}  # pod/container -> log of the run before the last restart

    def access(self, ctx: "RunContext | None" = None) -> KubeAccess:
        """kubectl and the run's kubeconfig/context, kept from the first call with a ctx (cleanups run without)."""
        if self._access is None:
            found = find_tool("kubectl")
            if found is None:
                raise KubeVibeError("kubectl is not installed, and the kubernetes target needs it.",
                                    "Run `python -m kubevibe.tools install` (scripts/bootstrap.sh does).")
            if ctx is None:
                return KubeAccess(str(found))
            self._access = KubeAccess.from_settings(ctx.settings, str(found))
        return self._access

    # -- running kubectl ----------------------------------------------------------------------------------------------
    def kubectl(self, ctx: "RunContext | None", args: list[str], *, log_file: Path | None = None,
                timeout: float = KUBECTL_TIMEOUT_S, input: str | None = None) -> CommandResult:
        access = self.access(ctx)
        if ctx is not None:
            timeout = ctx.timeout(timeout)
        return run(access.argv(*args), timeout=timeout, env=access.env() or None, input=input, log_file=log_file)

    def get_json(self, ctx: "RunContext | None", args: list[str], *, log_file: Path | None = None) -> Any:
        """kubectl get ... -o json, parsed; a failure to talk to the cluster (twice: one retry for a hiccup) stops
        the run."""
        argv = ["get", *args, "-o", "json", REQUEST_TIMEOUT]
        result = self.kubectl(ctx, argv, log_file=log_file)
        if not result.ok and not result.timed_out:
            time.sleep(1.0)
            result = self.kubectl(ctx, argv, log_file=log_file)
        if not result.ok:
            raise KubeVibeError(f"kubectl could not read from the cluster: {_last_line(result)}",
                                _access_hint(self.access(ctx)))
        try:
            return json.loads(result.stdout or "{}")
        except ValueError:
            raise KubeVibeError(f"kubectl printed no JSON: {result.stdout[:200]!r}") from None

    # -- the namespace ------------------------------------------------------------------------------------------------
    def ensure_namespace(self, ctx: "RunContext") -> str:
        """The run's namespace, created if needed; its deletion is registered before it is created."""
        name = namespace_name(ctx.run_id)
        # Registered once per run: a second add_cleanup under the same key would run the first one, deleting
        # the namespace the run is using.
        if not ctx.has_cleanup(NAMESPACE_CLEANUP):
            run_id, log_file = ctx.run_id, ctx.log_file
            ctx.add_cleanup(NAMESPACE_CLEANUP, lambda: self.delete_namespace(None, run_id, log_file=log_file))
        existing = self._namespace(ctx, name, ctx.log_file)
        if existing is not None:
            labels = _meta(existing).get("labels") or {}
            if labels.get(RUN_LABEL) != label_value(ctx.run_id) or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
                raise KubeVibeError(f"Namespace {name} exists in the cluster but was not made by this run; "
                                    "KubeVibe never uses or deletes a namespace it did not create.",
                                    f"Inspect it with `kubectl get namespace {name} -o yaml`.")
            if (existing.get("status") or {}).get("phase") != "Terminating":
                owner = process_owner()
                if (_meta(existing).get("annotations") or {}).get(OWNER_ANNOTATION) != owner:  # a resumed run
                    self.kubectl(ctx, ["annotate", "namespace", name, f"{OWNER_ANNOTATION}={owner}", "--overwrite",
                                       REQUEST_TIMEOUT], log_file=ctx.log_file)
                return name
            self._wait_namespace_gone(ctx, name, NAMESPACE_GONE_WAIT_S)  # a resumed run's old one, being deleted
        created = self.kubectl(ctx, ["create", "-f", "-", "-o", "json", REQUEST_TIMEOUT],
                               input=json.dumps(namespace_object(ctx.run_id, process_owner(), ctx.settings.policy)),
                               log_file=ctx.log_file)
        if not created.ok:
            raise KubeVibeError(f"kubectl could not create the run's namespace {name}: {_last_line(created)}",
                                _access_hint(self.access(ctx)))
        return name

    def _namespace(self, ctx: "RunContext | None", name: str, log_file: Path | None) -> dict[str, Any] | None:
        result = self.kubectl(ctx, ["get", "namespace", name, "--ignore-not-found", "-o", "json",
                                    REQUEST_TIMEOUT], log_file=log_file)
        if not result.ok:
            raise KubeVibeError(f"kubectl could not read namespace {name}: {_last_line(result)}",
                                _access_hint(self.access(ctx)))
        return json.loads(result.stdout) if result.stdout.strip() else None

    def _wait_namespace_gone(self, ctx: "RunContext | None", name: str, wait_s: float,
                             log_file: Path | None = None) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            if self._namespace(ctx, name, log_file) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)

    def delete_namespace(self, ctx: "RunContext | None", run_id: str, *, log_file: Path | None = None,
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

    # -- deploy -------------------------------------------------------------------------------------------------------
    def deploy(self, ctx: "RunContext", docs: list[dict[str, Any]], image: str) -> DeploymentInfo:
        _refuse_unsafe(docs, ctx)
        preloaded = _image_preloaded(ctx)
        applied, notes = applied_manifest(docs, image, ctx.run_id, ctx.step, image_preloaded=preloaded)
        if not workloads(applied):
            raise TargetFailure("The manifest has no Deployment or Pod to run.",
                                [Evidence(kind="finding", title="nothing to deploy", detail="kinds: " +
                                          ", ".join(str(d.get("kind")) for d in docs))])  # fmt: skip
        applied_file = ctx.stage_dir / "applied.yaml"
        applied_file.write_text(dump_manifest(applied), encoding="utf-8")
        namespace = self.ensure_namespace(ctx)
        info = DeploymentInfo(target=self.name, run_id=ctx.run_id, network=namespace,
                              manifest_file=str(applied_file), expected_pods=expected_pods(applied),
                              service_ports=service_port_infos(docs), notes=notes)  # fmt: skip
        log_file = ctx.log_file
        # Registered before anything is applied: an interrupt from here on still removes what was created.
        ctx.add_cleanup("deployment", lambda: self._delete_objects(namespace, applied_file, log_file))
        applied_result = self.kubectl(ctx, apply_args(namespace, str(applied_file)), log_file=log_file,
                                      timeout=APPLY_TIMEOUT_S)
        if not applied_result.ok:
            text = applied_result.stderr or applied_result.output
            if is_infrastructure_error(text):
                raise KubeVibeError(f"kubectl apply could not reach the cluster: {_last_line(applied_result)}",
                                    _access_hint(self.access(ctx)))
            messages = kubectl_messages(text) or [_last_line(applied_result)]
            evidence = [Evidence(kind="finding", title="The cluster refused an object: " + m) for m in messages]
            evidence.append(Evidence.from_command("kubectl apply of the manifest (image substituted)", applied_result))
            raise TargetFailure(f"kubectl apply failed: {messages[0]}", evidence, info)
        return self.status(ctx, info)

    def _delete_objects(self, namespace: str, applied_file: Path, log_file: Path | None) -> None:
        """Delete one attempt's objects (pods go with their owners). The namespace stays for the run's next steps."""
        if not applied_file.exists():
            return
        result = self.kubectl(None, ["delete", "-f", str(applied_file), "--namespace", namespace,
                                     "--ignore-not-found", "--wait=false", REQUEST_TIMEOUT],
                              log_file=log_file)  # fmt: skip
        if not result.ok and "not found" not in result.output:
            raise KubeVibeError(f"kubectl could not delete the deployment in {namespace}: {_last_line(result)}",
                                f"The namespace {namespace} is deleted at the end of the run, or by `kubevibe gc`.")

    # -- state --------------------------------------------------------------------------------------------------------
    def snapshot(self, ctx: "RunContext", info: DeploymentInfo) -> list[dict[str, Any]]:
        """This attempt's Deployments, ReplicaSets, StatefulSets and Pods, as kubectl returns them."""
        namespace = namespace_name(info.run_id)
        step = _step_of(info)
        selector = run_selector(info.run_id, step)
        data = self.get_json(ctx, ["deployments,replicasets,statefulsets,pods", "--namespace", namespace,
                                   "-l", selector])  # fmt: skip
        return items(data)

    def events(self, ctx: "RunContext", info: DeploymentInfo) -> list[dict[str, Any]]:
        return items(self.get_json(ctx, ["events", "--namespace", namespace_name(info.run_id)]))

    def status(self, ctx: "RunContext", info: DeploymentInfo, objects: list[dict[str, Any]] | None = None
               ) -> DeploymentInfo:
        objects = self.snapshot(ctx, info) if objects is None else objects
        pods = live_pods(objects)
        return info.model_copy(update={"pods": pod_infos(pods), "containers": container_infos(pods)})

    def wait_ready(self, ctx: "RunContext", info: DeploymentInfo, *, timeout: float) -> DeploymentInfo:
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            objects = self.snapshot(ctx, info)
            info = self.status(ctx, info, objects)
            problems = [p for pod in live_pods(objects) for p in pod_problems(pod)]
            events = events_about(self.events(ctx, info), objects)
            problems += event_problems(events)
            if any(p.fatal for p in problems):
                raise self._failure(ctx, info, objects, events, problems, None)
            missing = readiness(objects)
            if missing is None:
                return info
            now = time.monotonic()
            if now >= deadline:
                raise self._failure(ctx, info, objects, events, problems, f"not ready after {timeout:.0f}s: {missing}")
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 1.5, POLL_MAX_S)

    def _failure(self, ctx: "RunContext", info: DeploymentInfo, objects: list[dict[str, Any]],
                 events: list[dict[str, Any]], problems: list[Problem], timed_out: str | None) -> TargetFailure:
        built = ctx.state.image
        unpullable = [p for p in problems if p.reason in IMAGE_PULL_REASONS and built
                      and (p.image == built or p.image.endswith("/" + built))]  # containerd may prefix docker.io/
        if unpullable:  # the image KubeVibe pushed or loaded: the cluster's access to it, not the generated files
            raise KubeVibeError(f"The cluster cannot pull the image KubeVibe built: {unpullable[0].sentence}",
                                "Push to a registry the cluster's nodes can pull from (--registry HOST:PORT, with "
                                "`podman login`/`docker login` if it needs credentials), or load the image into a kind "
                                "cluster's nodes (--registry kind://CLUSTER). See docs/kubernetes.md.")
        pods = live_pods(objects)
        logs = self.collect_logs(ctx, info, ctx.stage_dir / "logs")
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
    def collect_logs(self, ctx: "RunContext", info: DeploymentInfo, directory: Path) -> dict[str, str]:
        """Logs of every container in info (as status() read them), keyed pod/container. A container that
        restarted: its previous run's log (where the crash is) first, then the current one."""
        directory.mkdir(parents=True, exist_ok=True)
        namespace = namespace_name(info.run_id)
        restarts = {(c.pod, c.name): c.restarts for c in info.containers}
        started = {(c.pod, c.name) for c in info.containers if c.state in ("running", "exited") or c.restarts}
        logs: dict[str, str] = {}
        for pod, container in sorted(restarts):
            if (pod, container) not in started:
                text = "(the container has not started, so it has no log)"
            else:
                text = self._log(ctx, namespace, pod, container, previous=False)
                if restarts[(pod, container)]:
                    previous = self._log(ctx, namespace, pod, container, previous=True)
                    self.previous_logs[f"{pod}/{container}"] = previous
                    text = (f"[log of the previous run, before restart {restarts[(pod, container)]}]\n{previous}"
                            f"\n[log of the current run]\n{text}")
            logs[f"{pod}/{container}"] = text
            (directory / f"{pod}-{container}.log").write_text(text, encoding="utf-8")
        return logs

    def _log(self, ctx: "RunContext", namespace: str, pod: str, container: str, *, previous: bool) -> str:
        args = ["logs", f"pod/{pod}", "--container", container, "--namespace", namespace,
                f"--tail={LOG_TAIL_LINES}", REQUEST_TIMEOUT]
        result = self.kubectl(ctx, args + (["--previous"] if previous else []))
        return result.stdout if result.ok else f"(no log: {_last_line(result)})"

    # -- teardown -----------------------------------------------------------------------------------------------------
    def teardown(self, ctx: "RunContext", info: DeploymentInfo | None = None) -> None:
        if info is not None and info.manifest_file:
            self._delete_objects(namespace_name(info.run_id), Path(info.manifest_file), ctx.log_file)

    # -- reaching a pod: kubectl port-forward -------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_port(self, ctx: "RunContext", info: DeploymentInfo, pod: PodInfo, port: int) -> Iterator[str]:
        access = self.access(ctx)
        argv_for = lambda local: access.argv("port-forward", f"pod/{pod.name}", f"{local}:{port}",  # noqa: E731
                                             "--namespace", namespace_name(info.run_id), "--address", "127.0.0.1")
        forward = PortForward(argv_for, env=access.env(), log_file=ctx.log_file)
        try:
            local = forward.start(ctx.timeout(PORT_FORWARD_START_S))
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
    def usage(self, ctx: "RunContext", info: DeploymentInfo) -> list[ContainerUsage] | None:
        """`kubectl top pod --containers` of the run's pods; None when the cluster has no metrics API (metrics-server
        absent, or no reading yet: it samples every ~15 s, so a short load may see none)."""
        result = self.kubectl(ctx, ["top", "pod", "--containers", "--no-headers", "--namespace",
                                    namespace_name(info.run_id), REQUEST_TIMEOUT], timeout=20)
        if not result.ok:
            return None
        return top_usage(result.stdout, {p.name for p in info.pods})

    # -- checks only a cluster can make --------------------------------------------------------------------------------
    def server_validate(self, ctx: "RunContext", docs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """`kubectl apply --server-side --dry-run=server` of what Deploy will apply, into the run's namespace:
        admission (PodSecurity, quotas, webhooks), defaulting and the cluster's own schema. (findings, notes)."""
        if policy.check(docs, allow_node_port=ctx.settings.allow_node_port, level=ctx.settings.policy):
            return [], []  # refused offline already; nothing refused goes to the cluster, not even as a dry run
        applied, _ = applied_manifest(docs, ctx.state.image, ctx.run_id, ctx.step,
                                      image_preloaded=_image_preloaded(ctx))
        return self.dry_run(ctx, dump_manifest(applied))

    def dry_run(self, ctx: "RunContext", manifest_text: str) -> tuple[list[str], list[str]]:
        namespace = self.ensure_namespace(ctx)
        result = self.kubectl(ctx, apply_args(namespace, "-", dry_run=True), input=manifest_text,
                              log_file=ctx.log_file, timeout=APPLY_TIMEOUT_S)
        if not result.ok and is_infrastructure_error(result.stderr or result.output):
            raise KubeVibeError(f"kubectl apply --dry-run=server could not reach the cluster: {_last_line(result)}",
                                _access_hint(self.access(ctx)))
        return dry_run_findings(result)

    def chart_check(self, ctx: "RunContext", chart_dir: Path, release: str, helm: str,
                    env: Mapping[str, str]) -> tuple[list[str], list[Evidence]]:
        """`helm install --dry-run=server` into the run's namespace (the cluster's version and API groups, lookups,
        existing objects), then its rendered objects through `kubectl apply --dry-run=server`: helm's server dry
        run renders against the cluster but does not send the objects for admission (helm/helm#12510)."""
        namespace = self.ensure_namespace(ctx)
        argv = [helm, "install", release, str(chart_dir), "--dry-run=server", "--namespace", namespace, "-o", "json",
                *self.access(ctx).helm_flags()]  # fmt: skip
        result = run(argv, timeout=ctx.timeout(APPLY_TIMEOUT_S), env={**env, **self.access(ctx).env()},
                     cwd=chart_dir.parent, log_file=ctx.log_file)
        evidence = [Evidence.from_command("helm install --dry-run=server", result.model_copy(update={"stdout": ""}))]
        if not result.ok:
            if is_infrastructure_error(result.output):
                raise KubeVibeError(f"helm could not reach the cluster: {_last_line(result)}",
                                    _access_hint(self.access(ctx)))
            return [f"helm install --dry-run=server of chart {release} failed: {_last_line(result)}."], evidence
        try:
            release_data = json.loads(result.stdout)
        except ValueError:
            return [f"helm install --dry-run=server printed no JSON release: {result.stdout[:200]!r}."], evidence
        manifest = str(release_data.get("manifest") or "")
        findings, notes = self.dry_run(ctx, manifest)
        evidence += [Evidence(kind="note", title=n) for n in notes]
        return findings, evidence


# --- port-forward ---------------------------------------------------------------------------------------------------


class PortForwardError(Exception):
    def __init__(self, message: str, command: str, output: str):
        super().__init__(message)
        self.command, self.output = command, output


class PortForward:
    """`kubectl port-forward` in its own process group, restarted on the same local port whenever it exits.

    argv_for(local_port) builds the command: "" first (kubectl picks a free port, parsed from its output), the
    chosen port for restarts. Not run through exec.run: it runs in the background until stop(); the command and
    its output still go to the stage's command log.
    """

    def __init__(self, argv_for: Any, *, env: Mapping[str, str] | None = None, log_file: Path | None = None,
                 max_restarts: int = PORT_FORWARD_MAX_RESTARTS):
        self.argv_for = argv_for
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file
        self.max_restarts = max_restarts
        self.port: int | None = None
        self.restarts = 0
        self.output: list[str] = []  # every line kubectl printed, all runs
        self._proc: subprocess.Popen[str] | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def _launch(self, local: str, timeout: float) -> int:
        argv = self.argv_for(local)
        self._log(f"$ {pretty_command(argv)}")
        lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=self.env, start_new_session=True)
        with self._lock:
            self._proc = proc
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=self._pump, args=(stream, name, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        closed = 0
        while True:
            try:
                name, line = lines.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    kill_group(proc)
                    raise PortForwardError(f"no `Forwarding from` line within {timeout:.0f}s",
                                           pretty_command(argv), "\n".join(self.output[-20:])) from None
                continue
            if line is None:
                closed += 1
                if closed == 2:  # both streams ended: kubectl exited before forwarding
                    proc.wait()
                    errors = [ln for ln in self.output[-20:] if ln.strip()]
                    raise PortForwardError((errors or [f"exit {proc.returncode}"])[-1], pretty_command(argv),
                                           "\n".join(self.output[-20:]))
                continue
            port = parse_forwarding_port(line) if name == "stdout" else None
            if port is not None:
                return port

    def _pump(self, stream: Any, name: str, lines: "queue.Queue[tuple[str, str | None]]") -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.output.append(line)
            self._log(("" if name == "stdout" else "[stderr] ") + line)
            lines.put((name, line))
        lines.put((name, None))

    def start(self, timeout: float = PORT_FORWARD_START_S) -> int:
        self.port = self._launch("", timeout)
        self._supervisor = threading.Thread(target=self._supervise, name="port-forward", daemon=True)
        self._supervisor.start()
        return self.port

    def _supervise(self) -> None:
        failures_in_a_row = 0
        while not self._stopped.is_set():
            proc = self._proc
            if proc is None:
                return
            while proc.poll() is None:
                if self._stopped.wait(0.05):
                    return
            if self._stopped.is_set() or self.restarts >= self.max_restarts or failures_in_a_row >= 5:
                return
            self.restarts += 1
            self._log(f"# port-forward exited ({proc.returncode}); restart {self.restarts} on port {self.port}")
            try:
                self._launch(str(self.port), PORT_FORWARD_START_S)
                failures_in_a_row = 0
            except PortForwardError:
                failures_in_a_row += 1
                self._stopped.wait(0.5)
            except OSError:
                return

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            kill_group(proc)
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)

    def _log(self, line: str) -> None:
        if self.log_file is None:
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.log_file.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


# --- helpers --------------------------------------------------------------------------------------------------------


def _refuse_unsafe(docs: list[dict[str, Any]], ctx: "RunContext") -> None:
    """The safety policy again, right before anything reaches the cluster (a resumed run may bring changed files)."""
    findings = policy.check(docs, allow_node_port=ctx.settings.allow_node_port, level=ctx.settings.policy)
    if findings:
        raise TargetFailure(f"the manifest breaks the safety policy: {findings[0]}",
                            [Evidence(kind="finding", title=text, detail="check: policy") for text in findings])


def _image_preloaded(ctx: "RunContext") -> bool:
    try:
        return destination_of(ctx.settings.registry, ctx.settings.target).preloaded
    except UsageError:  # no registry setting: Build has said so already
        return False


def _step_of(info: DeploymentInfo) -> int | None:
    """The Deploy step whose objects `info` describes (from the applied file's directory, steps/NNN-deploy)."""
    if not info.manifest_file:
        return None
    m = re.match(r"^(\d+)-", Path(info.manifest_file).parent.name)
    return int(m.group(1)) if m else None


def _access_hint(access: KubeAccess) -> str:
    where = f"--kubeconfig {access.kubeconfig}" if access.kubeconfig else "the default kubeconfig (~/.kube/config)"
    context = f" and --context {access.context}" if access.context else " and its current context"
    check = pretty_command(["kubectl", *access.argv()[1:], "auth", "can-i", "create", "namespaces"])
    return f"KubeVibe uses {where}{context}. Check access with `{check}`."
