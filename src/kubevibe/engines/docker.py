"""Docker as a builder, through the `docker` CLI. Needs a running daemon (`docker info` answers).

Pushing to a loopback registry needs no flag: the Docker daemon treats 127.0.0.0/8 registries as insecure
by default. The argv functions are pure so tests check them without a daemon.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubevibe.engines.base import Builder, build_arg_flags, label_flags
from kubevibe.exec import CommandResult, run
from kubevibe.tools import find_tool


def docker_build_argv(
    binary: str,
    context_dir: Path,
    tag: str,
    *,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    pull: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    argv = [binary, "build", "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    if pull == "always":  # docker build only knows "--pull" (always); other policies are its default
        argv.append("--pull")
    argv += build_arg_flags(build_args)
    argv += label_flags(labels)
    argv.append(str(context_dir))
    return argv


def docker_push_argv(binary: str, ref: str) -> list[str]:
    return [binary, "push", ref]


def docker_pull_argv(binary: str, ref: str) -> list[str]:
    return [binary, "pull", ref]


def docker_tag_argv(binary: str, source: str, target: str) -> list[str]:
    return [binary, "tag", source, target]


def docker_image_exists_argv(binary: str, ref: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{.Id}}", ref]


def docker_rmi_argv(binary: str, ref: str, *, force: bool = False) -> list[str]:
    return [binary, "rmi", *(["--force"] if force else []), ref]


class DockerBuilder(Builder):
    name = "docker"

    def __init__(self, binary: str | Path | None = None):
        found = binary or find_tool("docker")
        self.binary = str(found) if found else "docker"

    def _run(self, argv: list[str], *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return run(argv, timeout=timeout, log_file=log_file)

    def is_available(self) -> bool:
        # The CLI alone is not enough (it is often installed without a daemon): ask the daemon.
        return self._run([self.binary, "info", "--format", "{{.ServerVersion}}"], timeout=20).ok

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "binary": self.binary, "available": False, "version": None}
        result = self._run([self.binary, "info", "--format", "{{json .}}"], timeout=30)
        if not result.ok:
            data["error"] = result.describe()
            return data
        try:
            raw = json.loads(result.stdout)
        except json.JSONDecodeError:
            raw = {}
        data.update(
            available=True,
            version=raw.get("ServerVersion"),
            runtime=raw.get("DefaultRuntime"),
            storage_driver=raw.get("Driver"),
            capabilities={"build": True, "push_insecure": True, "kube_play": False, "needs_daemon": True},
        )
        return data

    def build(
        self,
        context_dir: Path,
        tag: str,
        *,
        timeout: float,
        log_file: Path | None = None,
        dockerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        pull: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> CommandResult:
        argv = docker_build_argv(
            self.binary, context_dir, tag, dockerfile=dockerfile, build_args=build_args, pull=pull, labels=labels
        )
        return self._run(argv, timeout=timeout, log_file=log_file)

    def push(self, ref: str, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self._run(docker_push_argv(self.binary, ref), timeout=timeout, log_file=log_file)

    def pull(self, ref: str, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self._run(docker_pull_argv(self.binary, ref), timeout=timeout, log_file=log_file)

    def tag(self, source: str, target: str, *, timeout: float = 60, log_file: Path | None = None) -> CommandResult:
        return self._run(docker_tag_argv(self.binary, source, target), timeout=timeout, log_file=log_file)

    def image_exists(self, ref: str) -> bool:
        return self._run(docker_image_exists_argv(self.binary, ref), timeout=30).ok

    def remove_image(self, ref: str, *, force: bool = False, log_file: Path | None = None) -> CommandResult:
        if not self.image_exists(ref):
            return CommandResult(argv=docker_rmi_argv(self.binary, ref, force=force), returncode=0,
                                 stdout="image not present; nothing to remove")  # fmt: skip
        return self._run(docker_rmi_argv(self.binary, ref, force=force), timeout=120, log_file=log_file)
