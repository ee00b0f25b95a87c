"""Reading kubectl's JSON for the Kubernetes provider (pure): pods and container states, readiness judged like
`kubectl rollout status`, and problems (a crash loop, an unpullable image, a failing probe) as one clear sentence
each with the cluster's own message, from pods and Warning events; `kubectl top` as ContainerUsage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubevibe.targets.base import ContainerInfo, ContainerUsage, PodInfo

# Waiting reasons of a container that will not get better by waiting (kubelet's own reason strings).
IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
                                "RegistryUnavailable", "SignatureValidationFailed"})
CREATE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                            "PreCreateHookError", "PostStartHookError", "PreStartHookError"})


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
