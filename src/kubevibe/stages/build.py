"""Build: the generated files become an image in the local registry, under a tag unique to this run and build.

On the kubernetes target the image goes where the cluster can get it instead: the user's `--registry`, or the
nodes of a kind cluster (`--registry kind://CLUSTER`); targets/images.py decides and does it.

The build context is a copy of the current artifacts in the stage directory. A FROM image that cannot be pulled
(no public registry here) is mapped to the local stand-in on that copy only, so the generated Dockerfile stays
what the model wrote and every mapping is recorded (RunState.image_mappings and a note). On failure, the
evidence is the build command with its output; the Dockerfile's error lines are at its end.
"""

from __future__ import annotations

import re
import time
from typing import Any

from kubevibe import dockerfile
from kubevibe.engines import get_builder, map_base_image
from kubevibe.errors import KubeVibeError
from kubevibe.localinfra import BASE_IMAGE
from kubevibe.manifests import (
    ManifestError,
    deployments,
    dns_label,
    load_manifest,
    name_of,
)
from kubevibe.pipeline.artifacts import DOCKERFILE, MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.targets import images
from kubevibe.targets.base import RUN_LABEL
from kubevibe.targets.local import label_value

PUSH_TIMEOUT_S = 300.0


# --- names (pure) ---------------------------------------------------------------------------------------------------


def dns_name(text: str, fallback: str = "service") -> str:
    """A DNS-1123 label, usable in image names too."""
    return dns_label(text, fallback=fallback)


def service_name(intent: dict[str, Any] | None, manifest_text: str) -> str:
    """The spec's name if there is one, else the first Deployment's name, else "service"."""
    spec = (intent or {}).get("spec") or {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"].strip():
        return dns_name(spec["name"])
    try:
        found = deployments(load_manifest(manifest_text))
    except ManifestError:
        found = []
    return dns_name(name_of(found[0])) if found else "service"


def image_tag(registry: str, name: str, run_id: str, step: int) -> str:
    """<registry>/kubevibe/<name>:<run id>-s<step>: unique per run and per build, never `latest`."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id).lower().lstrip(".-")[:110]
    return f"{registry}/kubevibe/{name}:{tag}-s{step}"


def mapping_records(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """map_base_image records as text (RunState.image_mappings holds strings)."""
    out = []
    for record in records:
        out.append({k: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
                    for k, v in record.items() if v is not None})  # fmt: skip
    return out


def failing_step(output: str) -> str:
    """The engine's last error line ("Error: building at STEP "RUN pip ...": exit status 1"), for the summary."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"(?i)^error\b", ln)]
    last = (errors or lines or ["no output"])[-1]
    last = re.sub(r"\s*&imagebuilder\.Step\{.*$", "", last)  # podman appends a dump of its parser state
    return last[:300]


# --- the stage ------------------------------------------------------------------------------------------------------


def precheck_result(dockerfile_text: str) -> StageResult | None:
    """The failed result when the Dockerfile asks for something that could reach outside the build (see
    kubevibe.dockerfile); None when it may be built. Runs before any engine command."""
    refused = dockerfile.refusals(dockerfile_text)
    if not refused:
        return None
    count = f"{len(refused)} refusal{'s' if len(refused) != 1 else ''}"
    return StageResult.failed(
        f"Dockerfile pre-check: {count}, nothing was built: {refused[0].message}",
        evidence=[Evidence(kind="finding", title=f.message, detail=f"check: dockerfile-precheck ({f.rule})")
                  for f in refused],
        metrics={"precheck_refusals": len(refused)},
    )


def run(ctx: RunContext) -> StageResult:
    if not ctx.artifacts.get(DOCKERFILE).strip():
        return StageResult.failed("There is no Dockerfile to build.",
                                  evidence=[Evidence(kind="finding", title=f"{DOCKERFILE} is missing or empty")])
    # Nothing the model wrote runs before it is checked: refusals go to Fix before any engine command.
    refused = precheck_result(ctx.artifacts.get(DOCKERFILE))
    if refused is not None:
        return refused
    builder = get_builder(ctx.settings.builder)
    if not builder.is_available():  # a missing engine is the machine's problem, not the generated files'
        raise KubeVibeError(f"The {builder.name} builder is not available on this machine.",
                            "Run `kubevibe doctor`, or choose another with --builder.")
    context_dir = ctx.stage_dir / "context"
    ctx.artifacts.write_to(context_dir)

    dockerfile, records = map_base_image(ctx.artifacts.get(DOCKERFILE), builder, BASE_IMAGE)
    (context_dir / DOCKERFILE).write_text(dockerfile, encoding="utf-8")
    mappings = mapping_records(records)
    notes = [_mapping_note(mappings)] if mappings else []

    # Where the image goes (KubeVibe's loopback registry, the user's registry, a kind cluster's nodes): images.py.
    destination = images.resolve(ctx.settings.registry, ctx.settings.target)
    registry = destination.registry
    tag = image_tag(registry, service_name(ctx.state.intent, ctx.artifacts.get(MANIFEST)), ctx.run_id, ctx.step)
    started = time.monotonic()
    built = builder.build(context_dir, tag, timeout=ctx.timeout(ctx.settings.stage_timeout), log_file=ctx.log_file,
                          labels={RUN_LABEL: label_value(ctx.run_id)})  # so `kubevibe gc --images` can find it
    build_s = time.monotonic() - started
    updates: dict[str, Any] = {"image_mappings": mappings} if mappings else {}
    if not built.ok:
        summary = "Build failed: " + ("timed out" if built.timed_out else failing_step(built.output))
        evidence = [Evidence.from_command(f"{builder.name} build of the generated Dockerfile", built), *notes]
        return StageResult.failed(summary, evidence=evidence, updates=updates, metrics={"build_s": round(build_s, 1)})

    started = time.monotonic()
    pushed = images.publish(builder, tag, destination, timeout=ctx.timeout(PUSH_TIMEOUT_S), log_file=ctx.log_file,
                            work_dir=ctx.stage_dir)
    # A push failure is the registry's problem, not the generated files': stop with a hint instead of asking Fix.
    pushed.check(hint=images.publish_hint(destination, builder.name))
    push_s = time.monotonic() - started
    return StageResult.ok(
        f"Built and pushed {tag}" if destination.kind != "kind" else f"Built {tag} and {destination.describe()}",
        evidence=notes,
        updates={**updates, "image": tag},
        metrics={"build_s": round(build_s, 1), "push_s": round(push_s, 1)},
    )


def _mapping_note(mappings: list[dict[str, str]]) -> Evidence:
    lines = []
    for m in mappings:
        line = f"line {m.get('line')}: FROM {m.get('from')} -> {m.get('to') or '(unchanged)'} [{m.get('status')}]: "
        line += m.get("reason", "")
        if m.get("note"):
            line += f" ({m['note']})"
        lines.append(line)
    return Evidence(kind="note", title="base image mapped for this machine (the generated Dockerfile is unchanged)",
                    detail="\n".join(lines))  # fmt: skip

