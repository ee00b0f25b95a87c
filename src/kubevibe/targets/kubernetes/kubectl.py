"""kubectl for the Kubernetes provider: how to reach the cluster (`KubeAccess`: kubectl, --kubeconfig,
--context), the names and selectors of a run's objects, the server-side apply arguments, and kubectl's error
output read into one clear sentence each (`kubectl_messages`, `is_infrastructure_error`, `dry_run_findings`).
All pure: the provider (target.py) runs the commands.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubevibe.exec import CommandResult, pretty_command
from kubevibe.text import last_line
from kubevibe.targets.labels import RUN_LABEL, label_value

if TYPE_CHECKING:
    from kubevibe.settings import Settings

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubevibe"
STEP_LABEL = "io.kubevibe.step"
OWNER_ANNOTATION = "io.kubevibe.owner"  # "<host>/<pid>/<process start ticks>" of the process that made it
FIELD_MANAGER = "kubevibe"
NAMESPACE_PREFIX = "kv-"

KUBECTL_TIMEOUT_S = 60.0  # one get/create/delete
REQUEST_TIMEOUT = f"--request-timeout={KUBECTL_TIMEOUT_S / 2:.0f}s"  # kubectl's own limit per API request
APPLY_TIMEOUT_S = 120.0
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


def _last_line(result: CommandResult) -> str:
    """The last line of kubectl's output that is not a klog info/warning line (I0102 ..., W0102 ...)."""
    line = last_line(result.output, keep=lambda ln: not re.match(r"^[IW]\d{4} ", ln))
    return (line or result.describe())[:400]


def _access_hint(access: KubeAccess) -> str:
    where = f"--kubeconfig {access.kubeconfig}" if access.kubeconfig else "the default kubeconfig (~/.kube/config)"
    context = f" and --context {access.context}" if access.context else " and its current context"
    check = pretty_command(["kubectl", *access.argv()[1:], "auth", "can-i", "create", "namespaces"])
    return f"KubeVibe uses {where}{context}. Check access with `{check}`."
