"""`--push REGISTRY/PATH`: the final image of a run, pushed to the user's registry with the user's own credentials.

Where it goes (pure, `pushed_reference`): REGISTRY/PATH is a repository prefix, the image keeps its name and tag:
`--push ghcr.io/me` turns 127.0.0.1:5005/kubevibe/credit-card:abc-s3 into ghcr.io/me/credit-card:abc-s3. A value
whose last component has a tag (`ghcr.io/me/cards:1.0`) is used as it is.

Credentials: never handled here. podman/docker read the user's auth files themselves (REGISTRY_AUTH_FILE,
${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json, written by `podman login`/`docker login`); the
command log holds only the argv. A loopback registry (localhost, 127.0.0.1) is pushed without TLS verification,
any other with it (as Build does for --registry, targets/images.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubevibe.engines import get_builder
from kubevibe.imageref import parse_image_ref
from kubevibe.errors import UsageError
from kubevibe.targets.images import is_loopback_registry

if TYPE_CHECKING:
    from kubevibe.pipeline.context import RunContext
    from kubevibe.pipeline.runner import RunEnd

PUSH_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PushRecord:
    image: str  # what was (to be) pushed: the user's reference
    source: str  # the run's own image
    ok: bool
    error: str | None = None

    def as_record(self) -> dict:
        return asdict(self)


def check_push_target(value: str) -> str:
    """REGISTRY[:PORT]/PATH, or one sentence (exit 2) saying what is expected."""
    text = (value or "").strip()
    ref = parse_image_ref(text) if text else None
    if (not text or "://" in text or any(c.isspace() for c in text) or text.endswith("/") or "@" in text
            or ref is None or ref.registry is None):
        raise UsageError(f"--push {value!r} is not a registry path: expected REGISTRY[:PORT]/PATH, e.g. "
                         "ghcr.io/me or localhost:5001/team.")
    return text


def pushed_reference(push: str, image: str) -> str:
    target = check_push_target(push)
    if parse_image_ref(target).tag:
        return target
    source = parse_image_ref(image)
    name = source.repository.rsplit("/", 1)[-1]
    return f"{target}/{name}:{source.tag or 'latest'}"


def push_image(image: str, push: str, *, builder_name: str = "podman", log_file: Path | None = None,
               timeout: float = PUSH_TIMEOUT_S) -> PushRecord:
    """Tag the run's image for the user's registry and push it; pulls it back from the run's registry if needed."""
    target = pushed_reference(push, image)
    builder = get_builder(builder_name)
    if not builder.image_exists(image):
        source_registry = parse_image_ref(image).registry or ""
        pulled = builder.run([*builder.pull_argv(image)] + (["--tls-verify=false"] if builder.name == "podman"
                             and is_loopback_registry(source_registry) else []), timeout=timeout, log_file=log_file)
        if not pulled.ok:
            return PushRecord(target, image, False, f"the run's image {image} is gone ({pulled.describe()})")
    tagged = builder.tag(image, target, log_file=log_file)
    if not tagged.ok:
        return PushRecord(target, image, False, f"could not tag {image} as {target} ({tagged.describe()})")
    registry = parse_image_ref(target).registry or ""
    pushed = builder.push(target, timeout=timeout, log_file=log_file, tls_verify=not is_loopback_registry(registry))
    if not pushed.ok:
        lines = [ln.strip() for ln in pushed.output.splitlines() if ln.strip()]
        return PushRecord(target, image, False, f"{builder.name} push {target} failed: "
                                                f"{(lines or [pushed.describe()])[-1][:300]}")
    return PushRecord(target, image, True)


def record_push(ctx: "RunContext", end: "RunEnd") -> "RunEnd":
    """After a run: push its final image (--push) and record the result in run.json `push`.

    A failed push turns the run's outcome into "error" (exit 1) with the reason: the user asked for the image
    to be in their registry, and it is not."""
    run = ctx.rundir.read_run()
    image = ctx.state.image
    if not image:
        record = PushRecord(ctx.settings.push, "", False, "the run produced no image")
    else:
        log = ctx.rundir.path / "push" / "commands.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        record = push_image(image, ctx.settings.push, builder_name=ctx.settings.builder, log_file=log,
                            timeout=PUSH_TIMEOUT_S)  # after the run: its own deadline is spent
    run.push = record.as_record()
    if not record.ok:
        end = end.model_copy(update={"outcome": "error", "reason": f"the image was not pushed: {record.error}",
                                     "hint": "Log in with `podman login REGISTRY` (or docker login) and push "
                                             "again with `kubevibe export RUN DIR --push REGISTRY/PATH`."})
        run.outcome, run.reason, run.hint = end.outcome, end.reason, end.hint
    ctx.rundir.write_run(run)
    return end
