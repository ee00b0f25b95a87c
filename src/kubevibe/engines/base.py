"""The builder interface (podman, docker) and the flags both engines share.

Argument lists are built by pure functions in each engine module, so tests cover them without an engine. Which
FROM images get the local stand-in is engines/baseimage.py; the FROM rewrite itself is dockerfile.py.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
