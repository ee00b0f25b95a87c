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
from pathlib import Path
from typing import Any

from kubevibe import dockerfile
from kubevibe.baseimages import DEFAULT_STAND_IN, choose_stand_in
from kubevibe.buildcontext import service_file
from kubevibe.engines import get_builder, map_base_image
from kubevibe.engines.leftovers import remove_build_containers
from kubevibe.errors import KubeVibeError
from kubevibe.localinfra.baseimage import ensure_stand_in
from kubevibe.manifests import (
    ManifestError,
    deployments,
    dns_label,
    load_manifest,
    name_of,
)
from kubevibe.owner import owner_labels
from kubevibe.pipeline.artifacts import CODE, DOCKERFILE, MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.targets import images
from kubevibe.targets.labels import RUN_LABEL, label_value

PUSH_TIMEOUT_S = 300.0


# --- names (pure) ---------------------------------------------------------------------------------------------------


def service_name(intent: dict[str, Any] | None, manifest_text: str) -> str:
    """The spec's name if there is one, else the first Deployment's name, else "service"."""
    spec = (intent or {}).get("spec") or {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"].strip():
        return dns_label(spec["name"])
    try:
        found = deployments(load_manifest(manifest_text))
    except ManifestError:
        found = []
    return dns_label(name_of(found[0])) if found else "service"


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

    code_path = place_service_code(ctx, context_dir)
    build_notes: list[str] = []
    dockerfile, records = map_base_image(ctx.artifacts.get(DOCKERFILE), builder,
                                         lambda image: _stand_in_image(image, build_notes))  # fmt: skip
    (context_dir / DOCKERFILE).write_text(dockerfile, encoding="utf-8")
    mappings = mapping_records(records)
    notes = [_mapping_note(mappings, build_notes)] if mappings else []
    if code_path != CODE:
        notes.append(Evidence(kind="note", title=f"the service code ({CODE}) is written as {code_path} in the build "
                              "context: the name the Dockerfile copies or runs"))  # fmt: skip

    # Where the image goes (KubeVibe's loopback registry, the user's registry, a kind cluster's nodes): images.py.
    destination = images.resolve(ctx.settings.registry, ctx.settings.target)
    registry = destination.registry
    tag = image_tag(registry, service_name(ctx.state.intent, ctx.artifacts.get(MANIFEST)), ctx.run_id, ctx.step)
    started = time.monotonic()
    run_label = label_value(ctx.run_id)
    if builder.name == "podman":
        # An interrupted or timed-out build leaves buildah working containers: removed right after the build, or
        # by the runner's cleanups when a signal stops the run during it.
        log_file = ctx.log_file
        ctx.add_cleanup("build", lambda: remove_build_containers(builder.binary, builder.env(), run_label, log_file))
    built = builder.build(context_dir, tag, timeout=ctx.timeout(ctx.settings.stage_timeout), log_file=ctx.log_file,
                          labels={RUN_LABEL: run_label, **owner_labels()})  # so `kubevibe gc` can find it
    build_s = time.monotonic() - started
    ctx.run_cleanup("build")
    updates: dict[str, Any] = {"image_mappings": mappings} if mappings else {}
    updates["service_file"] = code_path
    stand_ins = [{"kind": "base-image", "detail": _stand_in_detail(m)} for m in mappings if m.get("to")]
    if stand_ins:
        updates["stand_ins"] = ctx.state.stand_ins_plus(stand_ins)
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


def place_service_code(ctx: RunContext, context_dir: Path) -> str:
    """Write the service code where the Dockerfile expects it (buildcontext.service_file); return that path."""
    path = service_file(ctx.artifacts.get(DOCKERFILE))
    if path != CODE:
        target = context_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(ctx.artifacts.get(CODE), encoding="utf-8")
        (context_dir / CODE).unlink(missing_ok=True)  # the real project has no myapp.py either
    return path


def _stand_in_image(image: str, notes: list[str]) -> str:
    """The local stand-in for an official python image, built now if it is not there yet (3.13: on first need)."""
    choice = choose_stand_in(image)
    stand_in = choice.stand_in if choice else DEFAULT_STAND_IN
    try:
        return ensure_stand_in(stand_in, progress=lambda message: None)
    except KubeVibeError as exc:
        if stand_in == DEFAULT_STAND_IN:
            raise
        notes.append(f"the Python {stand_in.python} stand-in could not be built ({exc.message}); "
                     f"Python {DEFAULT_STAND_IN.python} is used instead")  # fmt: skip
        return ensure_stand_in(DEFAULT_STAND_IN, progress=lambda message: None)


def _stand_in_detail(mapping: dict[str, str]) -> str:
    detail = f"FROM {mapping.get('from')} -> {mapping.get('to')}"
    return detail + (f" ({mapping['note']})" if mapping.get("note") else "")


def _mapping_note(mappings: list[dict[str, str]], extra: list[str] | None = None) -> Evidence:
    lines = []
    for m in mappings:
        line = f"line {m.get('line')}: FROM {m.get('from')} -> {m.get('to') or '(unchanged)'} [{m.get('status')}]: "
        line += m.get("reason", "")
        if m.get("note"):
            line += f" ({m['note']})"
        lines.append(line)
    lines += extra or []
    return Evidence(kind="note", title="base image mapped for this machine (the generated Dockerfile is unchanged)",
                    detail="\n".join(lines))  # fmt: skip

