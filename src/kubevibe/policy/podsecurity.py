"""The Kubernetes Pod Security Standards, baseline and restricted, as the pod-security-admission code applies them.

Source of truth: the standard's text (kubernetes.io, "Pod Security Standards") and its reference implementation,
the `policy/check_*.go` files of k8s.io/pod-security-admission. Where the two disagree, the code wins (it is
what a cluster enforces). Every control below carries the check ID the reference code uses.

How a level is evaluated (as the reference registry does it):
- baseline = the baseline controls;
- restricted = the baseline controls, minus those a restricted control overrides, plus the restricted controls
  (restrictedVolumes overrides hostPathVolumes, seccompProfile_restricted overrides seccompProfile_baseline,
  capabilities_restricted overrides capabilities_baseline, procMount_restricted overrides procMount).
  The overrides matter for Windows pods: the restricted capabilities/seccomp/privilege-escalation controls exempt
  pods with `spec.os.name: windows` entirely;
- controls gained versions over time; KubeVibe evaluates the latest policy version it knows (`LATEST`), which is
  what a namespace labelled `pod-security.kubernetes.io/enforce=<level>` without `enforce-version` gets.

Each violation names the exact field path (`spec.template.spec.containers[0].securityContext.privileged`), the
container (if any), the control and the lowest level that forbids it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("baseline", "restricted")
Version = tuple[int, int]
LATEST: Version = (1, 37)

# Kinds that carry a pod, and where their pod template (metadata, spec) lives.
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "PodTemplate": ("template",),
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
# The order the reference visitor walks containers in.
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# check_capabilities_baseline.go
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
# check_sysctls.go: the safe set grew by policy version.
SAFE_SYSCTLS: tuple[tuple[Version, frozenset[str]], ...] = (
    ((1, 0), frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})),
    ((1, 27), frozenset({"net.ipv4.ip_local_reserved_ports"})),
    ((1, 29), frozenset({"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                         "net.ipv4.tcp_keepalive_probes"})),
    ((1, 32), frozenset({"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})),
    ((1, 37), frozenset({"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"})),
)
# check_seLinuxOptions.go
SELINUX_TYPES: tuple[tuple[Version, frozenset[str]], ...] = (
    ((1, 0), frozenset({"", "container_t", "container_init_t", "container_kvm_t"})),
    ((1, 31), frozenset({"container_engine_t"})),
)
# check_restrictedVolumes.go (`image` since Kubernetes 1.33, patched into every policy version)
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret",
})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
ALLOWED_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # AppArmor and seccomp fields
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
LIFECYCLE_HANDLERS = ("postStart", "preStop")


def safe_sysctls(version: Version = LATEST) -> frozenset[str]:
    return frozenset().union(*(names for since, names in SAFE_SYSCTLS if version >= since))


def selinux_types(version: Version = LATEST) -> frozenset[str]:
    return frozenset().union(*(names for since, names in SELINUX_TYPES if version >= since))


@dataclass(frozen=True)
class Violation:
    control: str  # the reference check ID, e.g. "privileged"
    level: Level  # the lowest level that forbids it
    field: str  # exact path from the object's root
    value: Any
    reason: str  # why the standard forbids it, short
    container: str | None = None


@dataclass(frozen=True)
class ContainerRef:
    list_name: str
    index: int
    name: str
    data: Mapping
    path: str  # e.g. spec.template.spec.containers[0]


@dataclass(frozen=True)
class PodView:
    """A pod template inside any object, with the paths findings need."""

    metadata: Mapping
    spec: Mapping
    metadata_path: str
    spec_path: str
    containers: tuple[ContainerRef, ...] = field(default=())

    @property
    def is_windows(self) -> bool:
        return _dig(self.spec, "os", "name") == "windows"

    @property
    def user_namespaced(self) -> bool:  # KEP-127: `hostUsers: false` relaxes some controls from policy 1.35
        return self.spec.get("hostUsers") is False

    def pod_security_context(self) -> Mapping:
        return _mapping(self.spec.get("securityContext"))


def pod_view(doc: Mapping) -> PodView | None:
    """The pod template of an object of one of POD_TEMPLATE_PATHS' kinds, else None."""
    keys = POD_TEMPLATE_PATHS.get(str(doc.get("kind")))
    if keys is None:
        return None
    template: Any = doc
    for key in keys:
        template = _mapping(template).get(key)
    template = _mapping(template)
    prefix = ".".join(keys)
    join = (lambda rest: f"{prefix}.{rest}") if prefix else (lambda rest: rest)
    spec = _mapping(template.get("spec"))
    spec_path = join("spec")
    refs = []
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                refs.append(ContainerRef(list_name, index, str(item.get("name") or "(unnamed)"), item,
                                         f"{spec_path}.{list_name}[{index}]"))
    return PodView(_mapping(template.get("metadata")), spec, join("metadata"), spec_path, tuple(refs))


# --- the controls ----------------------------------------------------------------------------------------------------

CheckFn = Callable[[PodView, Version], Iterator[Violation]]


@dataclass(frozen=True)
class Control:
    id: str
    level: Level
    check: CheckFn
    overrides: str | None = None  # a baseline control this one replaces at restricted


def _container_security(ref: ContainerRef) -> Mapping:
    return _mapping(ref.data.get("securityContext"))


def windows_host_process(pod: PodView, version: Version) -> Iterator[Violation]:
    reason = "Windows HostProcess containers have privileged access to the host"
    if _dig(pod.pod_security_context(), "windowsOptions", "hostProcess") is True:
        yield Violation("windowsHostProcess", "baseline", f"{pod.spec_path}.securityContext.windowsOptions.hostProcess",
                        True, reason)
    for ref in pod.containers:
        if _dig(_container_security(ref), "windowsOptions", "hostProcess") is True:
            yield Violation("windowsHostProcess", "baseline", f"{ref.path}.securityContext.windowsOptions.hostProcess",
                            True, reason, ref.name)


def host_namespaces(pod: PodView, version: Version) -> Iterator[Violation]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.spec.get(key) is True:
            yield Violation("hostNamespaces", "baseline", f"{pod.spec_path}.{key}", True,
                            "sharing the host's namespaces must be disallowed")


def privileged(pod: PodView, version: Version) -> Iterator[Violation]:
    for ref in pod.containers:
        if _container_security(ref).get("privileged") is True:
            yield Violation("privileged", "baseline", f"{ref.path}.securityContext.privileged", True,
                            "privileged containers disable most security mechanisms", ref.name)


def capabilities_baseline(pod: PodView, version: Version) -> Iterator[Violation]:
    for ref in pod.containers:
        for index, cap in _indexed(_dig(_container_security(ref), "capabilities", "add")):
            if cap not in BASELINE_CAPABILITIES:
                yield Violation("capabilities_baseline", "baseline", f"{ref.path}.securityContext.capabilities.add"
                                f"[{index}]", cap, "only the default container capabilities may be added "
                                f"({', '.join(sorted(BASELINE_CAPABILITIES))})", ref.name)


def host_path_volumes(pod: PodView, version: Version) -> Iterator[Violation]:
    for index, volume in _indexed(pod.spec.get("volumes")):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            yield Violation("hostPathVolumes", "baseline", f"{pod.spec_path}.volumes[{index}].hostPath",
                            _dig(volume, "hostPath", "path"), f"volume {volume.get('name')!r} would give access to "
                            f"the node's files; use emptyDir, a ConfigMap or a PersistentVolumeClaim")


def host_ports(pod: PodView, version: Version) -> Iterator[Violation]:
    for ref in pod.containers:
        for index, port in _indexed(ref.data.get("ports")):
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                yield Violation("hostPorts", "baseline", f"{ref.path}.ports[{index}].hostPort", port["hostPort"],
                                "host ports must be disallowed (or limited to a known list by the cluster)", ref.name)


def app_armor_profile(pod: PodView, version: Version) -> Iterator[Violation]:
    reason = "AppArmor may only be RuntimeDefault or a Localhost profile, never disabled (Unconfined)"
    profile = pod.pod_security_context().get("appArmorProfile")
    if profile is not None and _mapping(profile).get("type") not in ALLOWED_PROFILE_TYPES:
        yield Violation("appArmorProfile", "baseline", f"{pod.spec_path}.securityContext.appArmorProfile.type",
                        _mapping(profile).get("type"), reason)
    for ref in pod.containers:
        profile = _container_security(ref).get("appArmorProfile")
        if profile is not None and _mapping(profile).get("type") not in ALLOWED_PROFILE_TYPES:
            yield Violation("appArmorProfile", "baseline", f"{ref.path}.securityContext.appArmorProfile.type",
                            _mapping(profile).get("type"), reason, ref.name)
    annotations = _mapping(pod.metadata.get("annotations"))
    for key in sorted(str(k) for k in annotations):
        value = annotations[key]
        if key.startswith(APPARMOR_ANNOTATION_PREFIX):
            text = "" if value is None else str(value)
            if not (text == "" or text == "runtime/default" or text.startswith("localhost/")):
                yield Violation("appArmorProfile", "baseline", f"{pod.metadata_path}.annotations[{key}]", value,
                                "the AppArmor annotation may only be runtime/default or localhost/<profile>",
                                key[len(APPARMOR_ANNOTATION_PREFIX):] or None)


def se_linux_options(pod: PodView, version: Version) -> Iterator[Violation]:
    allowed = selinux_types(version)

    def check(options: Any, path: str, container: str | None) -> Iterator[Violation]:
        if not isinstance(options, dict):
            return
        kind = options.get("type")
        if kind not in (None, *allowed):
            yield Violation("seLinuxOptions", "baseline", f"{path}.seLinuxOptions.type", kind,
                            f"the SELinux type may only be one of {', '.join(sorted(t for t in allowed if t))}",
                            container)
        for key in ("user", "role"):
            if options.get(key) not in (None, ""):
                yield Violation("seLinuxOptions", "baseline", f"{path}.seLinuxOptions.{key}", options[key],
                                f"a custom SELinux {key} must not be set", container)

    yield from check(pod.pod_security_context().get("seLinuxOptions"), f"{pod.spec_path}.securityContext", None)
    for ref in pod.containers:
        yield from check(_container_security(ref).get("seLinuxOptions"), f"{ref.path}.securityContext", ref.name)


def _proc_mount(pod: PodView, control: str, level: Level) -> Iterator[Violation]:
    for ref in pod.containers:
        value = _container_security(ref).get("procMount")
        if value is not None and value != "Default":
            yield Violation(control, level, f"{ref.path}.securityContext.procMount", value,
                            "the default /proc masks must be kept (procMount Default)", ref.name)


def proc_mount(pod: PodView, version: Version) -> Iterator[Violation]:
    if version >= (1, 35) and pod.user_namespaced:
        return
    yield from _proc_mount(pod, "procMount", "baseline")


def proc_mount_restricted(pod: PodView, version: Version) -> Iterator[Violation]:
    # Unconditional: a user-namespaced pod still needs the default /proc at restricted. It is a baseline violation
    # unless the baseline relaxation for `hostUsers: false` applies.
    level: Level = "restricted" if pod.user_namespaced else "baseline"
    yield from _proc_mount(pod, "procMount_restricted", level)


def seccomp_profile_baseline(pod: PodView, version: Version) -> Iterator[Violation]:
    reason = "seccomp must not be disabled (Unconfined)"
    if _dig(pod.pod_security_context(), "seccompProfile", "type") == "Unconfined":
        yield Violation("seccompProfile_baseline", "baseline", f"{pod.spec_path}.securityContext.seccompProfile.type",
                        "Unconfined", reason)
    for ref in pod.containers:
        if _dig(_container_security(ref), "seccompProfile", "type") == "Unconfined":
            yield Violation("seccompProfile_baseline", "baseline", f"{ref.path}.securityContext.seccompProfile.type",
                            "Unconfined", reason, ref.name)


def sysctls(pod: PodView, version: Version) -> Iterator[Violation]:
    safe = safe_sysctls(version)
    for index, item in _indexed(pod.pod_security_context().get("sysctls")):
        name = _mapping(item).get("name")
        if name not in safe:
            yield Violation("sysctls", "baseline", f"{pod.spec_path}.securityContext.sysctls[{index}].name", name,
                            f"only the safe sysctls may be set ({', '.join(sorted(safe))})")


def host_probes_and_host_lifecycle(pod: PodView, version: Version) -> Iterator[Violation]:
    if version < (1, 34):
        return
    reason = "probes and lifecycle handlers must not target another host"
    for ref in pod.containers:
        handlers = [(probe, ref.data.get(probe)) for probe in PROBES]
        handlers += [(f"lifecycle.{name}", _dig(ref.data, "lifecycle", name)) for name in LIFECYCLE_HANDLERS]
        for where, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = _dig(handler, action, "host")
                if host not in (None, ""):
                    yield Violation("hostProbesAndHostLifecycle", "baseline", f"{ref.path}.{where}.{action}.host",
                                    host, reason, ref.name)


def restricted_volumes(pod: PodView, version: Version) -> Iterator[Violation]:
    for index, volume in _indexed(pod.spec.get("volumes")):
        volume = _mapping(volume)
        sources = [key for key, value in volume.items() if key != "name" and value is not None]
        if not sources or any(key in RESTRICTED_VOLUME_TYPES for key in sources):
            continue  # a volume without a source is defaulted to emptyDir by the API server
        level: Level = "baseline" if "hostPath" in sources else "restricted"
        yield Violation("restrictedVolumes", level, f"{pod.spec_path}.volumes[{index}].{sources[0]}",
                        volume.get("name"), "only these volume types are allowed: "
                        + ", ".join(sorted(RESTRICTED_VOLUME_TYPES)))


def allow_privilege_escalation(pod: PodView, version: Version) -> Iterator[Violation]:
    if pod.is_windows:
        return
    for ref in pod.containers:
        value = _container_security(ref).get("allowPrivilegeEscalation")
        if value is not False:
            yield Violation("allowPrivilegeEscalation", "restricted",
                            f"{ref.path}.securityContext.allowPrivilegeEscalation", value,
                            "it must be set to false", ref.name)


def run_as_non_root(pod: PodView, version: Version) -> Iterator[Violation]:
    if version >= (1, 35) and pod.user_namespaced:
        return
    pod_value = pod.pod_security_context().get("runAsNonRoot")
    if pod_value is False:
        yield Violation("runAsNonRoot", "restricted", f"{pod.spec_path}.securityContext.runAsNonRoot", False,
                        "it must not be false")
    for ref in pod.containers:
        value = _container_security(ref).get("runAsNonRoot")
        if value is False:
            yield Violation("runAsNonRoot", "restricted", f"{ref.path}.securityContext.runAsNonRoot", False,
                            "it must not be false", ref.name)
        elif value is None and pod_value is not True:
            yield Violation("runAsNonRoot", "restricted", f"{ref.path}.securityContext.runAsNonRoot", None,
                            f"the pod ({pod.spec_path}.securityContext.runAsNonRoot) or every container must set "
                            f"it to true", ref.name)


def run_as_user(pod: PodView, version: Version) -> Iterator[Violation]:
    if version >= (1, 35) and pod.user_namespaced:
        return
    if pod.pod_security_context().get("runAsUser") == 0:
        yield Violation("runAsUser", "restricted", f"{pod.spec_path}.securityContext.runAsUser", 0,
                        "containers must not run as root (UID 0)")
    for ref in pod.containers:
        if _container_security(ref).get("runAsUser") == 0:
            yield Violation("runAsUser", "restricted", f"{ref.path}.securityContext.runAsUser", 0,
                            "containers must not run as root (UID 0)", ref.name)


def seccomp_profile_restricted(pod: PodView, version: Version) -> Iterator[Violation]:
    if pod.is_windows:
        return
    profile = pod.pod_security_context().get("seccompProfile")
    pod_ok = False
    if profile is not None:
        kind = _mapping(profile).get("type")
        pod_ok = kind in ALLOWED_PROFILE_TYPES
        if not pod_ok:
            yield Violation("seccompProfile_restricted", "baseline" if kind == "Unconfined" else "restricted",
                            f"{pod.spec_path}.securityContext.seccompProfile.type", kind,
                            "it must be RuntimeDefault or Localhost")
    for ref in pod.containers:
        profile = _container_security(ref).get("seccompProfile")
        if profile is not None:
            kind = _mapping(profile).get("type")
            if kind not in ALLOWED_PROFILE_TYPES:
                yield Violation("seccompProfile_restricted", "baseline" if kind == "Unconfined" else "restricted",
                                f"{ref.path}.securityContext.seccompProfile.type", kind,
                                "it must be RuntimeDefault or Localhost", ref.name)
        elif not pod_ok:
            yield Violation("seccompProfile_restricted", "restricted",
                            f"{ref.path}.securityContext.seccompProfile.type", None,
                            f"the pod ({pod.spec_path}.securityContext.seccompProfile.type) or every container must "
                            f"set it to RuntimeDefault or Localhost", ref.name)


def capabilities_restricted(pod: PodView, version: Version) -> Iterator[Violation]:
    if pod.is_windows:
        return
    for ref in pod.containers:
        capabilities = _mapping(_container_security(ref).get("capabilities"))
        dropped = capabilities.get("drop")
        if "ALL" not in (dropped if isinstance(dropped, list) else []):
            yield Violation("capabilities_restricted", "restricted", f"{ref.path}.securityContext.capabilities.drop",
                            dropped, 'it must include "ALL"', ref.name)
        for index, cap in _indexed(capabilities.get("add")):
            if cap != "NET_BIND_SERVICE":
                yield Violation("capabilities_restricted", "baseline" if cap not in BASELINE_CAPABILITIES
                                else "restricted", f"{ref.path}.securityContext.capabilities.add[{index}]", cap,
                                "only NET_BIND_SERVICE may be added", ref.name)


CONTROLS: tuple[Control, ...] = (
    Control("windowsHostProcess", "baseline", windows_host_process),
    Control("hostNamespaces", "baseline", host_namespaces),
    Control("privileged", "baseline", privileged),
    Control("capabilities_baseline", "baseline", capabilities_baseline),
    Control("hostPathVolumes", "baseline", host_path_volumes),
    Control("hostPorts", "baseline", host_ports),
    Control("appArmorProfile", "baseline", app_armor_profile),
    Control("seLinuxOptions", "baseline", se_linux_options),
    Control("procMount", "baseline", proc_mount),
    Control("seccompProfile_baseline", "baseline", seccomp_profile_baseline),
    Control("sysctls", "baseline", sysctls),
    Control("hostProbesAndHostLifecycle", "baseline", host_probes_and_host_lifecycle),
    Control("restrictedVolumes", "restricted", restricted_volumes, overrides="hostPathVolumes"),
    Control("allowPrivilegeEscalation", "restricted", allow_privilege_escalation),
    Control("runAsNonRoot", "restricted", run_as_non_root),
    Control("runAsUser", "restricted", run_as_user),
    Control("seccompProfile_restricted", "restricted", seccomp_profile_restricted,
            overrides="seccompProfile_baseline"),
    Control("capabilities_restricted", "restricted", capabilities_restricted, overrides="capabilities_baseline"),
    Control("procMount_restricted", "restricted", proc_mount_restricted, overrides="procMount"),
)


def controls_for(level: Level) -> tuple[Control, ...]:
    """The controls a level evaluates, with the reference registry's overrides applied."""
    if level == "baseline":
        return tuple(c for c in CONTROLS if c.level == "baseline")
    overridden = {c.overrides for c in CONTROLS if c.level == "restricted" and c.overrides}
    return tuple(c for c in CONTROLS if c.id not in overridden)


def evaluate_pod(pod: PodView, level: Level, version: Version = LATEST) -> list[Violation]:
    return [v for control in controls_for(level) for v in control.check(pod, version)]


def evaluate(doc: Mapping, level: Level, version: Version = LATEST) -> list[Violation]:
    """Every violation of this level in one object ([] for objects without a pod template)."""
    pod = pod_view(doc)
    return evaluate_pod(pod, level, version) if pod is not None else []


# --- helpers ---------------------------------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _indexed(items: Any) -> list[tuple[int, Any]]:
    return list(enumerate(items)) if isinstance(items, list) else []
