"""`kubevibe check PATH...`: the offline checks of Validate and the Dockerfile pre-check, for files a user has.

A PATH is a manifest file (multi-document YAML, any kind, bare Pods included), a Dockerfile (or Containerfile), a
chart directory (rendered with `helm template`), a run directory (its latest revision, and its chart when there is
one), or a directory holding such files. Every finding is "refused" or "warning":
- refused: the safety policy (the Pod Security Standards at the chosen level, KubeVibe's own kind and Service
  rules), the Kubernetes schema, the Dockerfile pre-check, hadolint errors;
- warning: consistency checks that only make sense for a whole service (a Service selecting the Deployment, ports
  agreeing), metadata.namespace (a user's own files carry one; a run would drop it), hadolint warnings.
Exit 0 when nothing is refused, 1 when something is; bad input (a missing path, YAML that does not parse) is a
UsageError (exit 2) raised before anything is reported.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kubevibe import dockerfile, manifests, policy
from kubevibe import exec as kexec
from kubevibe.errors import UsageError
from kubevibe.manifests import ManifestError
from kubevibe.pipeline.artifacts import DOCKERFILE, MANIFEST
from kubevibe.tools import require_tool

HELM_TIMEOUT_S = 120.0
HADOLINT_TIMEOUT_S = 60.0
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

Severity = Literal["refused", "warning"]


@dataclass(frozen=True)
class CheckFinding:
    file: str
    severity: Severity
    check: str  # "policy", "schema", "consistency", "dockerfile", "hadolint"
    message: str  # one sentence, with the field path
    level: str | None = None  # policy: "baseline" | "restricted" | "kubevibe"
    rule: str | None = None
    object: str | None = None
    container: str | None = None
    field: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def text(self) -> str:
        tag = f"{self.check}" + (f" {self.level}" if self.level else "") + (f" {self.rule}" if self.rule else "")
        return f"{self.file}: {self.severity} [{tag}] {self.message}"


@dataclass(frozen=True)
class Target:
    kind: Literal["manifest", "dockerfile", "chart"]
    path: Path
    label: str  # how findings name it


def is_dockerfile(path: Path) -> bool:
    name = path.name.lower()
    return name in ("dockerfile", "containerfile") or name.endswith((".dockerfile", ".containerfile")) or \
        name.startswith(("dockerfile.", "containerfile."))


def _latest_revision(run_dir: Path) -> Path | None:
    revisions = sorted(p for p in (run_dir / "artifacts").glob("rev-*") if p.is_dir())
    return revisions[-1] if revisions else None


def targets_of(path: Path) -> list[Target]:
    """What one PATH argument stands for; a UsageError for paths that cannot be checked."""
    if not path.exists():
        raise UsageError(f"{path} does not exist.")
    if path.is_file():
        if is_dockerfile(path):
            return [Target("dockerfile", path, str(path))]
        return [Target("manifest", path, str(path))]
    if (path / "Chart.yaml").is_file():
        return [Target("chart", path, str(path))]
    if (path / "run.json").is_file():
        revision = _latest_revision(path)
        if revision is None:
            raise UsageError(f"{path} is a run directory without generated files (no artifacts/rev-*).")
        found = [Target("manifest", revision / MANIFEST, str(revision / MANIFEST))] \
            if (revision / MANIFEST).is_file() else []
        if (revision / DOCKERFILE).is_file():
            found.append(Target("dockerfile", revision / DOCKERFILE, str(revision / DOCKERFILE)))
        charts = sorted(p.parent for p in (path / "chart").glob("*/Chart.yaml"))
        found.extend(Target("chart", chart, str(chart)) for chart in charts)
        return found
    found = []
    for child in sorted(path.iterdir()):
        if child.is_file() and is_dockerfile(child):
            found.append(Target("dockerfile", child, str(child)))
        elif child.is_file() and child.suffix.lower() in MANIFEST_SUFFIXES:
            found.append(Target("manifest", child, str(child)))
        elif child.is_dir() and (child / "Chart.yaml").is_file():
            found.append(Target("chart", child, str(child)))
    if not found:
        raise UsageError(f"{path} holds no manifest, Dockerfile or chart to check.")
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} cannot be read as text: {exc.__class__.__name__}.") from None


def _expand_lists(text: str) -> str:
    """`kubectl get -o yaml` writes a List; its items are the objects. Text without a List is returned as it is."""
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return text  # load_manifest reports it, with the line
    if not any(isinstance(d, dict) and d.get("kind") == "List" for d in raw):
        return text
    items = [i for d in raw for i in ((d.get("items") or []) if isinstance(d, dict) and d.get("kind") == "List"
                                      else [d])]
    return manifests.dump_manifest(items)


def load_docs(text: str, label: str) -> list[dict]:
    try:
        docs = manifests.load_manifest(_expand_lists(text), filename=label)
    except ManifestError as exc:
        raise UsageError(exc.message) from None
    if not docs:
        raise UsageError(f"{label} contains no Kubernetes objects.")
    return docs


def render_chart(chart: Path, work_dir: Path) -> str:
    helm = require_tool("helm", "Install helm (scripts/bootstrap.sh does), or check the rendered manifest instead.")
    result = kexec.run([helm, "template", "release", chart.resolve()], timeout=HELM_TIMEOUT_S, cwd=work_dir)
    if not result.ok:
        detail = (result.stderr or result.output or "").strip().splitlines()
        raise UsageError(f"helm template could not render {chart}: {detail[-1] if detail else 'no output'}.")
    return result.stdout


def manifest_findings(docs: list[dict], label: str, *, level: policy.Level, k8s_version: str,
                      allow_node_port: bool, exposed_ports: list[int] | None = None) -> list[CheckFinding]:
    from kubevibe.stages.validate import consistency_findings, schema_findings

    out = [CheckFinding(label, f.severity, "policy", f.message, f.level, f.rule, f.object, f.container, f.field)
           for f in policy.findings(docs, level=level, allow_node_port=allow_node_port, namespace="warning")]
    out += [CheckFinding(label, "refused", "schema", text) for text in schema_findings(docs, k8s_version)]
    out += [CheckFinding(label, "warning", "consistency", text.replace(MANIFEST, label))
            for text in consistency_findings(docs, exposed_ports)]
    return out


def dockerfile_findings(text: str, label: str, work_dir: Path) -> list[CheckFinding]:
    from kubevibe.stages.validate import lint_dockerfile

    out = [CheckFinding(label, f.severity, "dockerfile", f.message.replace(DOCKERFILE, label, 1), rule=f.rule,
                        line=f.line) for f in dockerfile.precheck(text)]
    lint = lint_dockerfile(text, work_dir=work_dir, timeout=HADOLINT_TIMEOUT_S)
    out += [CheckFinding(label, "refused", "hadolint", m.replace(DOCKERFILE, label, 1)) for m in lint.errors]
    out += [CheckFinding(label, "warning", "hadolint", m.replace(DOCKERFILE, label, 1)) for m in lint.notes]
    return out


def check_paths(paths: Iterable[Path], *, level: policy.Level = policy.DEFAULT_LEVEL, k8s_version: str = "1.33.0",
                allow_node_port: bool = False) -> tuple[list[Target], list[CheckFinding]]:
    """Every finding for these paths. Bad input raises UsageError before any check runs."""
    targets = [t for p in paths for t in targets_of(Path(p))]
    texts: dict[Path, str] = {t.path: _read(t.path) for t in targets if t.kind != "chart"}
    with tempfile.TemporaryDirectory(prefix="kubevibe-check-") as tmp:
        work_dir = Path(tmp)
        loaded: dict[Path, list[dict]] = {}
        for target in targets:  # everything parses, or nothing is reported
            if target.kind == "manifest":
                loaded[target.path] = load_docs(texts[target.path], target.label)
            elif target.kind == "chart":
                loaded[target.path] = load_docs(render_chart(target.path, work_dir), f"{target.label} (helm template)")
        exposed = [port for t in targets if t.kind == "dockerfile" for port in dockerfile.exposed_ports(texts[t.path])]
        findings: list[CheckFinding] = []
        for target in targets:
            if target.kind == "dockerfile":
                findings += dockerfile_findings(texts[target.path], target.label, work_dir)
            else:
                findings += manifest_findings(loaded[target.path], target.label, level=level, k8s_version=k8s_version,
                                              allow_node_port=allow_node_port, exposed_ports=exposed or None)
    return targets, findings


def summary(findings: list[CheckFinding], targets: list[Target], level: str) -> dict[str, Any]:
    refused = sum(f.severity == "refused" for f in findings)
    return {
        "policy": level,
        "files": [{"path": t.label, "kind": t.kind} for t in targets],
        "refused": refused,
        "warnings": len(findings) - refused,
        "findings": [f.as_dict() for f in findings],
        "exit_code": 1 if refused else 0,
    }
