"""Chart: turn the validated, deployed manifest into a Helm chart, check it, and package it.

The chart goes to <run dir>/chart/<name>/ and the package to <run dir>/chart/<name>-<version>.tgz. Both are this
run's own output: a Chart attempt replaces what an earlier attempt of the same run wrote.

How the chart is made: the main Deployment (the first one) and the Service that selects it become Jinja2-rendered
Helm templates (assets/chart/*.j2, with [[ ]] / [% %] delimiters so Helm's {{ }} pass through). Image, replicas,
resources, Service type and ports come from values.yaml; everything else the manifest says (env, args, command,
probes, volumes, pod settings, extra labels and annotations) is kept as it was, with "{{" escaped for Helm. Probe
ports and containerPorts equal to the Service's targetPort follow .Values.service.targetPort. Other objects of the
manifest are kept as they are, one template file each. Names come from the standard `fullname` helper: a release
named like the chart (`helm install credit-card ...`) gets the manifest's names.

Checks: `helm lint --strict`, `helm template` whose output goes through the same checks as Validate (policy,
schema, consistency: `validate.check_manifest`), plus "the rendered Deployment runs the built image"; then
`helm package`. Helm runs with its config/cache/data homes inside the stage directory, so a user's helm
repositories and plugins play no part. On a cluster target, the target also checks the chart against the cluster
(`Target.chart_check`: `helm install --dry-run=server` and a server-side dry run of its objects) before packaging.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from kubevibe import exec as kexec
from kubevibe import manifests
from kubevibe.load.report import sized_resources, sizing_note
from kubevibe.manifests import ManifestError, describe, dns_label
from kubevibe.pipeline.artifacts import DOCKERFILE, MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages.validate import Finding, check_manifest
from kubevibe.stages import targeting
from kubevibe.targets import capabilities_of
from kubevibe.text import clip_end, last_line
from kubevibe.tools import require_tool

CHART_VERSION = "0.1.0"
HELM_TIMEOUT_S = 120.0
# Placeholders put into manifest fragments before dumping them, replaced by Helm expressions afterwards.
_SENTINELS = {
    "__KUBEVIBE_TARGET_PORT__": "{{ .Values.service.targetPort }}",
    "__KUBEVIBE_SERVICE_PORT__": "{{ .Values.service.port }}",
}
_TARGET = "__KUBEVIBE_TARGET_PORT__"
_SERVICE_PORT = "__KUBEVIBE_SERVICE_PORT__"
# Selector labels the chart sets itself; a manifest label with one of these keys would be a duplicate key.
_CHART_LABEL_KEYS = frozenset({"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                               "app.kubernetes.io/version", "app.kubernetes.io/managed-by"})


class ChartInputError(Exception):
    """The manifest cannot be turned into a chart (one sentence)."""


# --- the stage -------------------------------------------------------------------------------------------------------


def run(ctx: RunContext) -> StageResult:
    helm = require_tool("helm", "Install helm with `python -m kubevibe.tools install` (scripts/bootstrap.sh does).")
    settings = ctx.settings
    try:
        docs = manifests.load_manifest(ctx.artifacts.get(MANIFEST))
        if ctx.state.image:
            docs = manifests.set_image(docs, ctx.state.image)
        docs, _ = manifests.drop_namespaces(docs)  # a chart installs into the release's namespace
        model = chart_model(docs, image=ctx.state.image, intent=ctx.state.intent, prompt=ctx.state.prompt,
                            run_id=ctx.run_id, load_report=ctx.state.load_report)
    except (ManifestError, ChartInputError) as exc:
        message = exc.message if isinstance(exc, ManifestError) else str(exc)
        return StageResult.failed(f"cannot make a chart: {message}",
                                  evidence=[Finding("chart", message).evidence()])

    # The whole chart/ directory is this stage's output for this run: the run directory clears an earlier
    # attempt's files.
    chart_root = ctx.rundir.fresh_chart_dir()
    chart_dir = chart_root / model["name"]
    write_chart(chart_dir, model)

    helm_home = ctx.stage_dir / "helm-home"
    env = {"HELM_CACHE_HOME": str(helm_home / "cache"), "HELM_CONFIG_HOME": str(helm_home / "config"),
           "HELM_DATA_HOME": str(helm_home / "data")}
    timeout = ctx.timeout(min(HELM_TIMEOUT_S, settings.stage_timeout))
    evidence: list[Evidence] = []

    def helm_run(title: str, *args: Any) -> kexec.CommandResult:
        result = kexec.run([helm, *args], timeout=timeout, env=env, cwd=chart_root, log_file=ctx.log_file)
        evidence.append(Evidence.from_command(title, result))
        return result

    lint = helm_run("helm lint --strict", "lint", "--strict", "--kube-version", settings.k8s_version, chart_dir)
    if not lint.ok:
        return StageResult.failed(f"helm lint --strict failed for chart {model['name']}: {_last_line(lint)}",
                                  evidence=evidence)

    rendered = helm_run("helm template", "template", model["name"], chart_dir, "--kube-version", settings.k8s_version)
    if not rendered.ok:
        return StageResult.failed(f"helm template failed for chart {model['name']}: {_last_line(rendered)}",
                                  evidence=evidence)
    (ctx.stage_dir / "rendered.yaml").write_text(rendered.stdout, encoding="utf-8")
    evidence[-1] = evidence[-1].model_copy(update={"stdout": ""})  # the rendered YAML is in rendered.yaml
    findings = check_rendered(rendered.stdout, ctx=ctx)
    if findings:
        count = f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
        return StageResult.failed(f"the rendered chart has {count}: {findings[0].message}",
                                  evidence=[f.evidence() for f in findings] + evidence)

    if capabilities_of(settings.target).server_checks:  # a cluster: `helm install --dry-run=server` and its dry run
        server_findings, server_evidence = targeting.target_of(ctx).chart_check(
            targeting.scope(ctx), chart_dir, model["name"], str(helm), env)
        evidence.extend(server_evidence)
        if server_findings:
            return StageResult.failed(f"the cluster refuses the chart: {server_findings[0]}",
                                      evidence=[Finding("server", t).evidence() for t in server_findings] + evidence)

    package = helm_run("helm package", "package", chart_dir, "--destination", chart_root)
    tgz = chart_root / f"{model['name']}-{CHART_VERSION}.tgz"
    if not package.ok or not tgz.is_file():
        return StageResult.failed(f"helm package failed for chart {model['name']}: {_last_line(package)}",
                                  evidence=evidence)

    relative = tgz.relative_to(ctx.rundir.path).as_posix()
    summary = (f"chart {model['name']} {CHART_VERSION} (appVersion {model['app_version']}) packaged as {relative}; "
               f"helm lint --strict passed and the rendered objects are valid for Kubernetes {settings.k8s_version}")
    return StageResult.ok(summary, evidence=evidence, updates={"chart": relative},
                          metrics={"chart_files": sorted(p.relative_to(chart_dir).as_posix()
                                                         for p in chart_dir.rglob("*") if p.is_file())})


def _last_line(result: kexec.CommandResult) -> str:
    return last_line(result.output) or result.describe()


def check_rendered(text: str, *, ctx: RunContext) -> list[Finding]:
    """Validate's checks on the output of `helm template`, and the built image in every Deployment container."""
    try:
        docs = manifests.load_manifest(text, filename="the output of helm template")
    except ManifestError as exc:
        return [Finding("chart", exc.message)]
    findings = check_manifest(docs, k8s_version=ctx.settings.k8s_version,
                              allow_node_port=ctx.settings.allow_node_port, level=ctx.settings.policy,
                              exposed_ports=manifests.dockerfile_exposed_ports(ctx.artifacts.get(DOCKERFILE)))
    if ctx.state.image:
        for deployment in manifests.deployments(docs):
            for container in manifests.containers(deployment):
                if container.get("image") != ctx.state.image:
                    findings.append(Finding("chart", f"the chart's {describe(deployment)}: container "
                                                     f"{container.get('name')!r} runs {container.get('image')!r}, "
                                                     f"not the built image {ctx.state.image}."))
    return findings


# --- from manifest to chart ------------------------------------------------------------------------------------------


def chart_name(text: str) -> str:
    """A chart (and release) name: DNS-1123, starting with a letter (Service names must), at most 53 characters."""
    name = dns_label(text, max_len=53, fallback="")
    return name if name[:1].isalpha() else dns_label(f"app-{name}", max_len=53, fallback="app")


def chart_model(docs: list[dict], *, image: str | None, intent: dict | None, prompt: str = "",
                run_id: str = "", load_report: dict | None = None) -> dict[str, Any]:
    """Everything the chart templates need, from the (image-substituted) manifest. Pure.

    With a LOAD measurement (load_report), the main container's resources are sized from it (requests = the
    measured peak, limits with a stated margin) instead of the manifest's guess, and the chart says so."""
    deployments = manifests.deployments(docs)
    if not deployments:
        raise ChartInputError(f"{MANIFEST} has no Deployment to make a chart of.")
    deployment = deployments[0]
    spec_intent = (intent or {}).get("spec") or {}
    name = chart_name(str(spec_intent.get("name") or manifests.name_of(deployment)))

    service = _main_service(deployment, docs)
    service_ports = service.get("spec", {}).get("ports") or [] if service else []
    main_port = next((p for p in service_ports if isinstance(p, dict)), None)
    target = None
    if main_port is not None:
        target = manifests.resolve_target_port(main_port.get("targetPort"), main_port.get("port"), [deployment])
    if target is None:
        raise ChartInputError(f"{MANIFEST} has no Service with a port that reaches {describe(deployment)}.")

    containers = manifests.containers(deployment)
    main_index = next((i for i, c in enumerate(containers)
                       if any(p.get("containerPort") == target for p in manifests.container_ports(c))), 0)
    main = containers[main_index] if containers else {}
    built = image or str(main.get("image") or "")
    repository, tag = manifests.split_image(built)
    tag = tag or "latest"

    declared = main.get("resources") if isinstance(main.get("resources"), dict) else {}
    measured = sized_resources(load_report, str(main.get("name") or "")) if load_report else None
    model: dict[str, Any] = {
        "name": name,
        "run_id": run_id,
        "chart_version": CHART_VERSION,
        "app_version": tag,
        "description": _description(spec_intent, prompt),
        "request": _first_line(prompt, 200),
        "endpoints": _endpoint_lines(spec_intent),
        "image_repository": repository,
        "image_tag": tag,
        "pull_policy": main.get("imagePullPolicy") or "IfNotPresent",
        "replicas": _int(deployment.get("spec", {}).get("replicas"), 1),
        "resources": measured or declared,
        "declared_resources": declared,
        "sizing": sizing_note(load_report) if measured and load_report else None,
        "service_type": service.get("spec", {}).get("type") or "ClusterIP",
        "service_port": main_port.get("port"),
        "target_port": target,
        "deployment": _deployment_model(deployment, containers, main_index, target, built),
        "service": _service_model(service, main_port),
        "extras": [d for d in docs if d is not deployment and d is not service],
    }
    return model


def _main_service(deployment: dict, docs: list[dict]) -> dict | None:
    labels = manifests.pod_labels(deployment)
    services = manifests.services(docs)
    for svc in services:
        if manifests.selects((svc.get("spec") or {}).get("selector"), labels):
            return svc
    return services[0] if services else None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _first_line(text: str, limit: int) -> str:
    line = " ".join((text or "").split())
    return clip_end(line, limit)


def _description(spec: dict, prompt: str) -> str:
    text = spec.get("description") or prompt or "a service"
    return _first_line(f"Generated by KubeVibe: {text}", 300)


def _endpoint_lines(spec: dict) -> list[str]:
    lines = []
    for endpoint in spec.get("endpoints") or []:
        if isinstance(endpoint, dict) and endpoint.get("path"):
            line = f"{str(endpoint.get('method') or 'GET').upper()} http://127.0.0.1:8080{endpoint['path']}"
            if endpoint.get("description"):
                line += f"  ({_first_line(str(endpoint['description']), 120)})"
            lines.append(line)
    return lines


def _extra_labels(labels: Any) -> dict:
    return {k: v for k, v in labels.items() if k not in _CHART_LABEL_KEYS} if isinstance(labels, dict) else {}


def _probe_ports(container: dict, target: int) -> None:
    """Probe ports equal to the target port follow .Values.service.targetPort (in place)."""
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_key)
        if not isinstance(probe, dict):
            continue
        for handler in ("httpGet", "tcpSocket", "grpc"):
            action = probe.get(handler)
            if isinstance(action, dict) and action.get("port") == target:
                action["port"] = _TARGET


def _deployment_model(deployment: dict, containers: list[dict], main_index: int, target: int,
                      built: str) -> dict[str, Any]:
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    template = manifests.pod_template(deployment)
    template_meta = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    pod_rest = {k: v for k, v in manifests.pod_spec(deployment).items() if k != "containers"}
    out_containers = []
    for index, original in enumerate(containers):
        container = copy.deepcopy(original)
        is_main = index == main_index
        templated_image = container.get("image") == built
        drop = {"name", "image"} | ({"imagePullPolicy"} if templated_image else set()) | (
            {"resources"} if is_main else set())
        for port in manifests.container_ports(container):
            if is_main and port.get("containerPort") == target:
                port["containerPort"] = _TARGET
        if is_main:
            _probe_ports(container, target)
        out_containers.append({
            "name": container.get("name", "app"),
            "image": container.get("image", ""),
            "templated_image": templated_image,
            "main": is_main,
            "rest": {k: v for k, v in container.items() if k not in drop},
        })
    return {
        "labels": _extra_labels(metadata.get("labels")),
        "annotations": metadata.get("annotations") or {},
        "spec_rest": {k: v for k, v in spec.items() if k not in {"replicas", "selector", "template"}},
        "pod_labels": _extra_labels(template_meta.get("labels")),
        "pod_annotations": template_meta.get("annotations") or {},
        "pod_rest": pod_rest,
        "containers": out_containers,
    }


def _service_model(service: dict, main_port: dict) -> dict[str, Any]:
    metadata = service.get("metadata") or {}
    spec = service.get("spec") or {}
    ports = []
    for entry in spec.get("ports") or []:
        entry = copy.deepcopy(entry)
        if entry is main_port or entry == main_port:
            entry.pop("nodePort", None)  # allocated by the cluster; a fixed one would clash between releases
            entry["port"] = _SERVICE_PORT
            entry["targetPort"] = _TARGET
            main_port = None  # only the first equal entry
        ports.append(entry)
    rest = {k: v for k, v in spec.items() if k not in {"type", "ports", "selector", "clusterIP", "clusterIPs"}}
    if spec.get("clusterIP") == "None":  # a headless Service stays headless
        rest["clusterIP"] = "None"
    return {
        "labels": _extra_labels(metadata.get("labels")),
        "annotations": metadata.get("annotations") or {},
        "spec_rest": rest,
        "ports": ports,
    }


# --- rendering -------------------------------------------------------------------------------------------------------


class _ChartDumper(yaml.SafeDumper):
    """Indents list items under their key, as hand-written charts do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_ChartDumper, sort_keys=False, default_flow_style=False,
                     width=float("inf"), allow_unicode=True).rstrip("\n")


def _indent(text: str, spaces: int) -> str:
    """Indent every line but the first (the template places the first line)."""
    pad = " " * spaces
    return "\n".join(line if i == 0 or not line else pad + line for i, line in enumerate(text.split("\n")))


def _escape_helm(text: str) -> str:
    """Text Helm must print literally: every "{{" becomes an action that prints "{{"."""
    return text.replace("{{", '{{ "{{" }}')


def _tpl(text: str) -> str:
    text = _escape_helm(text)
    for sentinel, expression in _SENTINELS.items():
        text = re.sub(rf"(['\"]?){sentinel}\1", lambda _m, e=expression: e, text)
    return text


def _jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        variable_start_string="[[", variable_end_string="]]",
        block_start_string="[%", block_end_string="%]",
        comment_start_string="[#", comment_end_string="#]",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False,
    )
    env.filters["yaml"] = lambda value, spaces=0: _indent(_dump(value), spaces)
    env.filters["tpl_yaml"] = lambda value, spaces=0: _indent(_tpl(_dump(value)), spaces)
    # ensure_ascii=False: JSON's \ud83d\ude00 escapes of a non-BMP character (an emoji in the request) are
    # surrogates to YAML, which Helm refuses; the character itself is valid YAML.
    env.filters["scalar"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["tpl_scalar"] = lambda value: _escape_helm(json.dumps(value, ensure_ascii=False))
    env.filters["tpl_text"] = lambda value: _escape_helm(str(value))
    return env


def _asset(name: str) -> str:
    return resources.files("kubevibe.assets").joinpath("chart", name).read_text(encoding="utf-8")


def render_chart(model: dict[str, Any]) -> dict[str, str]:
    """{relative path: content} of every file of the chart. Pure."""
    env = _jinja_env()

    def render(asset: str, **extra: Any) -> str:
        return env.from_string(_asset(asset)).render(**model, **extra)

    files = {
        "Chart.yaml": render("Chart.yaml.j2"),
        "values.yaml": render("values.yaml.j2"),
        ".helmignore": _asset("helmignore"),
        "templates/_helpers.tpl": render("_helpers.tpl.j2"),
        "templates/deployment.yaml": render("deployment.yaml.j2", **model["deployment"]),
        "templates/service.yaml": render("service.yaml.j2", **model["service"]),
        "templates/NOTES.txt": render("NOTES.txt.j2"),
        "README.md": render("README.md.j2"),
    }
    for doc in model["extras"]:
        base = chart_name(f"{doc.get('kind', 'object')}-{manifests.name_of(doc)}")
        path = f"templates/{base}.yaml"
        n = 2
        while path in files:
            path, n = f"templates/{base}-{n}.yaml", n + 1
        files[path] = "# Kept as generated by KubeVibe.\n" + _escape_helm(_dump(doc)) + "\n"
    return files


def write_chart(chart_dir: Path, model: dict[str, Any]) -> dict[str, str]:
    files = render_chart(model)
    for relative, content in files.items():
        path = chart_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return files
