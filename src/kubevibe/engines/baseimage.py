"""The base-image mapping for machines without a public registry: which FROM images get the local stand-in.

Generated Dockerfiles say `FROM python:3.11-slim`, which cannot be pulled where no public registry is reachable
(CI, air-gapped machines). `map_base_image()` rewrites such FROM lines to the local stand-in image built by
`kubevibe setup` (the rewrite itself is dockerfile.rewrite_from_lines), and returns one record per change for the
run log, so the substitution is never silent. The decision per image is: present locally -> keep; policy
"offline" -> substitute; policy "auto" -> a pull bounded by a short timeout, substitute only if it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubevibe.baseimages import python_image_match
from kubevibe.dockerfile import Decision, rewrite_from_lines
from kubevibe.engines.base import Builder
from kubevibe.exec import CommandResult
from kubevibe.settings import machine_setting
from kubevibe.text import clip_end

# Tags of the official python image that the local base stands in for. Not exhaustive: `python_image_match()`
# accepts any python 3 tag; this list documents the common ones and drives the tests.
KNOWN_PYTHON_TAGS = (
    "3.11-slim", "3.11", "3.11-slim-bookworm", "3.11-bookworm", "3.11-slim-bullseye", "3.11-bullseye",
    "3.12-slim", "3.12", "3.12-slim-bookworm", "3.13-slim", "3.13", "3.10-slim", "3.10", "3.9-slim", "3.9",
    "3.8-slim", "3-slim", "3", "slim", "latest", "bookworm", "slim-bookworm", "3.11.9-slim", "3.11.9",
    "3.11-alpine", "3.12-alpine", "alpine",
)  # fmt: skip


# --- the decision: substitute or keep -------------------------------------------------------------------------------

BASE_POLICIES = ("auto", "offline")
DEFAULT_PULL_TIMEOUT_S = 30.0


def base_policy() -> str:
    """KUBEVIBE_BASE_POLICY: "auto" (default: bounded pull attempt first) or "offline" (never try to pull)."""
    return machine_setting("base_policy")


def should_substitute(
    builder: Builder | None, ref: str, *, policy: str = "auto", pull_timeout: float = DEFAULT_PULL_TIMEOUT_S
) -> tuple[bool, str]:
    """(substitute?, reason). Local images are always kept; then policy decides whether to try a pull."""
    if builder is None:
        return True, "no engine to check with"
    if builder.image_exists(ref):
        return False, "present locally"
    if policy == "offline":
        return True, "not present locally (policy offline: no pull attempted)"
    result = builder.pull(ref, timeout=pull_timeout)
    if result.ok:
        return False, "pulled"
    return True, f"not present locally and pull failed: {_pull_failure(result)}"


def _pull_failure(result: CommandResult) -> str:
    """The pull's last error line, short: it goes into the run log next to the rewritten FROM line."""
    if result.timed_out:
        return f"timed out after {result.duration_s:.0f}s"
    lines = (result.error or result.output).strip().splitlines() or ["failed"]
    line = lines[-1].removeprefix("Error: ")
    return clip_end(line, 300)


def map_base_image(
    dockerfile_text: str,
    builder: Builder | None,
    base_ref: str | Callable[[str], str],
    *,
    policy: str | None = None,
    pull_timeout: float = DEFAULT_PULL_TIMEOUT_S,
    build_args: Mapping[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Rewrite FROM lines that name an unavailable official python image to `base_ref`.

    Returns (new Dockerfile text, records). A record: {"line", "from", "to", "status", "reason"} plus "note"
    (how the stand-in differs, e.g. another Python version) and "dropped_flags" when relevant. status is
    "mapped" (rewritten), "unmapped" (unavailable and no stand-in: the build will likely fail) or "unresolved"
    (FROM uses an ARG without a value). Images present locally, or pullable under policy "auto", are kept.
    builder None: no engine to ask, every python image is mapped (previews and tests).
    base_ref: the stand-in, or a function of the FROM image that names its stand-in (one per Python version).
    """
    chosen_policy = policy or base_policy()

    def decide(image: str) -> Decision:
        if image == base_ref or (callable(base_ref) and image.startswith("localhost/kubevibe/")):
            return Decision(None, "already the local base")
        needed, reason = should_substitute(builder, image, policy=chosen_policy, pull_timeout=pull_timeout)
        if not needed:
            return Decision(None, reason)
        is_python, note = python_image_match(image)
        if not is_python:
            return Decision(None, f"no local stand-in for this image; {reason}", unmapped=True)
        return Decision(base_ref(image) if callable(base_ref) else base_ref, reason, note=note)

    return rewrite_from_lines(dockerfile_text, decide, build_args)
