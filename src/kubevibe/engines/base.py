"""The builder interface (podman, docker), and the base-image mapping for machines without a public registry.

Argument lists are built by pure functions in each engine module, so tests cover them without an engine.

Base-image mapping: generated Dockerfiles say `FROM python:3.11-slim`, which cannot be pulled where no public
registry is reachable (CI, air-gapped machines). `map_base_image()` rewrites such FROM lines to the local stand-in
image built by `kubevibe setup`, and returns one record per change for the run log, so the substitution is never
silent. The decision per image is: present locally -> keep; policy "offline" -> substitute; policy "auto" ->
a pull bounded by a short timeout, substitute only if it fails.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevibe.dockerfile import parse as parse_dockerfile
from kubevibe.errors import SettingError
from kubevibe.exec import CommandResult
from kubevibe.exec import run as run_command
from kubevibe.tools import find_tool

# --- builder interface ----------------------------------------------------------------------------------------------


class Builder(ABC):
    """One container engine that builds, tags, pushes, saves and removes images.

    The operations are shared; an engine says only how its command lines look (the pure `*_argv` methods, which
    tests cover without an engine) and which environment its commands need (`env`). Callers ask the builder,
    never "is this podman?".
    """

    name: str = ""

    def __init__(self, binary: str | Path | None = None):
        found = binary or find_tool(self.name)
        self.binary = str(found) if found else self.name

    # -- what differs between engines ------------------------------------------------------------------------------
    def env(self) -> dict[str, str] | None:
        """Extra environment for every command of this engine."""
        return None

    @abstractmethod
    def is_available(self) -> bool:
        """True if the engine can build right now (binary present and working / daemon reachable)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """{"name", "available", "binary", "version", "capabilities": {...}, ...} for the run log and `doctor`."""

    @abstractmethod
    def build_argv(self, context_dir: Path, tag: str, *, dockerfile: Path | None = None,
                   build_args: Mapping[str, str] | None = None, pull: str | None = None,
                   labels: Mapping[str, str] | None = None) -> list[str]: ...

    @abstractmethod
    def push_argv(self, ref: str, *, tls_verify: bool) -> list[str]: ...

    @abstractmethod
    def pull_argv(self, ref: str) -> list[str]: ...

    @abstractmethod
    def image_exists_argv(self, ref: str) -> list[str]: ...

    @abstractmethod
    def save_argv(self, ref: str, archive: Path) -> list[str]:
        """Write `ref` as a docker-archive tarball (what `kind load image-archive` imports)."""

    def tag_argv(self, source: str, target: str) -> list[str]:
        return [self.binary, "tag", source, target]

    def rmi_argv(self, ref: str, *, force: bool = False) -> list[str]:
        return [self.binary, "rmi", *(["--force"] if force else []), ref]

    # -- the operations ---------------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return run_command(argv, timeout=timeout, env=self.env(), log_file=log_file)

    def build(self, context_dir: Path, tag: str, *, timeout: float, log_file: Path | None = None,
              dockerfile: Path | None = None, build_args: Mapping[str, str] | None = None, pull: str | None = None,
              labels: Mapping[str, str] | None = None) -> CommandResult:
        """Build context_dir into image `tag`. dockerfile: defaults to context_dir/Dockerfile.

        pull: None (engine default), "never", "missing", "always"... passed to the engine as given.
        labels: image labels (e.g. the run id, so runs can find and remove their images).
        Never raises for a failing build: the result is evidence for the Fix stage.
        """
        argv = self.build_argv(context_dir, tag, dockerfile=dockerfile, build_args=build_args, pull=pull,
                               labels=labels)
        return self.run(argv, timeout=timeout, log_file=log_file)

    def push(self, ref: str, *, timeout: float, log_file: Path | None = None,
             tls_verify: bool = False) -> CommandResult:
        """Push `ref` (which names its registry). tls_verify=False suits KubeVibe's plain-HTTP loopback registry."""
        return self.run(self.push_argv(ref, tls_verify=tls_verify), timeout=timeout, log_file=log_file)

    def pull(self, ref: str, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self.run(self.pull_argv(ref), timeout=timeout, log_file=log_file)

    def tag(self, source: str, target: str, *, timeout: float = 60, log_file: Path | None = None) -> CommandResult:
        return self.run(self.tag_argv(source, target), timeout=timeout, log_file=log_file)

    def save(self, ref: str, archive: Path, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self.run(self.save_argv(ref, archive), timeout=timeout, log_file=log_file)

    def image_exists(self, ref: str) -> bool:
        return self.run(self.image_exists_argv(ref), timeout=30).ok

    def remove_image(self, ref: str, *, force: bool = False, log_file: Path | None = None) -> CommandResult:
        """Remove (or untag, if it has other names) the image `ref`. A missing image is not an error."""
        if not self.image_exists(ref):
            return CommandResult(argv=self.rmi_argv(ref, force=force), returncode=0,
                                 stdout="image not present; nothing to remove")
        return self.run(self.rmi_argv(ref, force=force), timeout=120, log_file=log_file)


def label_flags(labels: Mapping[str, str] | None) -> list[str]:
    """["--label", "K=V", ...] in a stable order (sorted), shared by podman and docker."""
    flags: list[str] = []
    for key in sorted(labels or {}):
        if not key or "=" in key or any(c.isspace() for c in key):
            raise ValueError(f"invalid label name {key!r}")
        flags += ["--label", f"{key}={labels[key]}"]  # type: ignore[index]
    return flags


def build_arg_flags(build_args: Mapping[str, str] | None) -> list[str]:
    """["--build-arg", "K=V", ...] in a stable order (sorted), shared by podman and docker."""
    flags: list[str] = []
    for key in sorted(build_args or {}):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"invalid build argument name {key!r}")
        flags += ["--build-arg", f"{key}={build_args[key]}"]  # type: ignore[index]
    return flags


# --- image references -----------------------------------------------------------------------------------------------

DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class ImageRef:
    registry: str | None  # None: no registry given (Docker Hub by convention)
    repository: str  # e.g. "python", "library/python", "kubevibe/python"
    tag: str | None
    digest: str | None


def parse_image_ref(ref: str) -> ImageRef:
    """Split an image reference the way Docker does: a first component with '.' or ':' or 'localhost' is a host."""
    rest, _, digest = ref.partition("@")
    registry: str | None = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder
    repo, tag = rest, None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        repo, tag = rest[:colon], rest[colon + 1 :]
    return ImageRef(registry=registry, repository=repo, tag=tag or None, digest=digest or None)


# Tags of the official python image that the local base stands in for. Not exhaustive: `python_image_match()`
# accepts any python 3 tag; this list documents the common ones and drives the tests.
KNOWN_PYTHON_TAGS = (
    "3.11-slim", "3.11", "3.11-slim-bookworm", "3.11-bookworm", "3.11-slim-bullseye", "3.11-bullseye",
    "3.12-slim", "3.12", "3.12-slim-bookworm", "3.13-slim", "3.13", "3.10-slim", "3.10", "3.9-slim", "3.9",
    "3.8-slim", "3-slim", "3", "slim", "latest", "bookworm", "slim-bookworm", "3.11.9-slim", "3.11.9",
    "3.11-alpine", "3.12-alpine", "alpine",
)  # fmt: skip


def python_image_match(ref: str) -> tuple[bool, str | None]:
    """(is an official python 3 image, note about how its local stand-in differs or None): kubevibe.baseimages."""
    from kubevibe.baseimages import python_image_match as match  # baseimages builds on this module

    return match(ref)


# --- the decision: substitute or keep -------------------------------------------------------------------------------

BASE_POLICIES = ("auto", "offline")
DEFAULT_PULL_TIMEOUT_S = 30.0


def base_policy() -> str:
    """KUBEVIBE_BASE_POLICY: "auto" (default: bounded pull attempt first) or "offline" (never try to pull)."""
    value = os.environ.get("KUBEVIBE_BASE_POLICY", "auto").strip().lower()
    if value not in BASE_POLICIES:
        raise SettingError("KUBEVIBE_BASE_POLICY", value, " or ".join(BASE_POLICIES))
    return value


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
    return line if len(line) <= 300 else line[:297] + "..."


# --- the rewrite (pure) ---------------------------------------------------------------------------------------------


_FROM_RE = re.compile(
    r"^\s*(?P<kw>from)\s+(?P<flags>(?:--\S+\s+)*)(?P<image>\S+)(?:\s+(?P<as>as)\s+(?P<alias>\S+))?\s*$",
    re.IGNORECASE,
)
_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<mod>:[-+][^}]*)?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_args(value: str, args: Mapping[str, str | None]) -> str | None:
    """Substitute $VAR / ${VAR} / ${VAR:-default} / ${VAR:+alt} from args; None if a variable has no value."""
    missing = False

    def repl(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group("braced") or m.group("plain")
        val = args.get(name)
        mod = m.group("mod")
        if mod and mod.startswith(":-"):
            return val if val else mod[2:]
        if mod and mod.startswith(":+"):
            return mod[2:] if val else ""
        if val is None:
            missing = True
            return ""
        return val

    result = _VAR_RE.sub(repl, value)
    return None if missing else result


def _global_arg(text: str) -> tuple[str, str | None] | None:
    """("NAME", default or None) for an `ARG NAME[=default]` instruction."""
    m = re.match(r"^\s*arg\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?\s*$", text, re.IGNORECASE)
    if not m:
        return None
    default = m.group(2)
    if default is not None:
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] and default[0] in "\"'":
            default = default[1:-1]
    return m.group(1), default


@dataclass(frozen=True)
class Decision:
    """What to do with one FROM image: `to` is the replacement (None: keep the line as it is)."""

    to: str | None
    reason: str
    note: str | None = None
    unmapped: bool = False  # unavailable and no stand-in exists: reported, left unchanged


def rewrite_from_lines(
    dockerfile_text: str,
    decide: Callable[[str], Decision],
    build_args: Mapping[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Rewrite FROM images for which `decide(image).to` is set; return (new text, records).

    `decide` is called once per distinct resolved image. Stage names (FROM builder), `scratch`, and FROMs whose
    ARGs have no value are left alone; unresolved ones get a record with status "unresolved". Only the FROM
    line changes; the `AS name` part and flags other than --platform are kept. --platform is dropped on
    substitution because the local base exists for the host platform only.
    """
    lines = dockerfile_text.splitlines(keepends=True)
    global_args: dict[str, str | None] = {}
    stages: set[str] = set()
    seen_from = False
    decisions: dict[str, Decision] = {}
    records: list[dict[str, Any]] = []
    replacements: dict[int, tuple[int, str]] = {}  # first physical line -> (end, new physical line)

    for logical in parse_dockerfile(dockerfile_text):
        text = logical.text
        if not seen_from:
            arg = _global_arg(text)
            if arg:  # only ARGs before the first FROM can be used in FROM lines
                name, default = arg
                global_args[name] = (build_args or {}).get(name, default)
                continue
        m = _FROM_RE.match(text)
        if not m:
            continue
        seen_from = True
        raw_image, alias = m.group("image"), m.group("alias")
        line_no = logical.start + 1
        image = expand_args(raw_image, global_args) if "$" in raw_image else raw_image
        is_stage_or_scratch = image is not None and (image.lower() in stages or image.lower() == "scratch")
        if alias:
            stages.add(alias.lower())
        if image is None:
            records.append({"line": line_no, "from": raw_image, "to": None, "status": "unresolved",
                            "reason": "uses a build argument without a value; left unchanged"})  # fmt: skip
            continue
        if is_stage_or_scratch:
            continue  # an earlier stage or the empty image: nothing to pull
        if image not in decisions:
            decisions[image] = decide(image)
        decision = decisions[image]
        if decision.to is None:
            if decision.unmapped:
                records.append({"line": line_no, "from": image, "to": None, "status": "unmapped",
                                "reason": decision.reason})  # fmt: skip
            continue
        flags = m.group("flags").split()
        kept = [f for f in flags if not f.lower().startswith("--platform")]
        record: dict[str, Any] = {"line": line_no, "from": image, "to": decision.to, "status": "mapped",
                                  "reason": decision.reason}  # fmt: skip
        if decision.note:
            record["note"] = decision.note
        if len(kept) != len(flags):
            record["dropped_flags"] = [f for f in flags if f not in kept]
        records.append(record)
        parts = [m.group("kw"), *kept, decision.to] + ([m.group("as"), alias] if alias else [])
        last = lines[logical.end - 1]
        ending = "\r\n" if last.endswith("\r\n") else ("\n" if last.endswith("\n") else "")
        indent = lines[logical.start][: len(lines[logical.start]) - len(lines[logical.start].lstrip())]
        replacements[logical.start] = (logical.end, indent + " ".join(parts) + ending)

    return _apply(lines, replacements) if replacements else dockerfile_text, records


def _apply(lines: list[str], replacements: dict[int, tuple[int, str]]) -> str:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in replacements:
            end, new_line = replacements[i]
            out.append(new_line)
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "".join(out)


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
