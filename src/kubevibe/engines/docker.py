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


def docker_image_exists_argv(binary: str, ref: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{.Id}}", ref]


class DockerBuilder(Builder):
    name = "docker"

    def build_argv(self, context_dir: Path, tag: str, **options: Any) -> list[str]:
        return docker_build_argv(self.binary, context_dir, tag, **options)

    def push_argv(self, ref: str, *, tls_verify: bool) -> list[str]:
        # Docker has no per-push TLS switch: insecure registries are daemon configuration (daemon.json), and
        # loopback registries are insecure by default.
        return docker_push_argv(self.binary, ref)

    def pull_argv(self, ref: str) -> list[str]:
        return docker_pull_argv(self.binary, ref)

    def image_exists_argv(self, ref: str) -> list[str]:
        return docker_image_exists_argv(self.binary, ref)

    def save_argv(self, ref: str, archive: Path) -> list[str]:
        return [self.binary, "save", "-o", str(archive), ref]

    def is_available(self) -> bool:
        # The CLI alone is not enough (it is often installed without a daemon): ask the daemon.
        return self.run([self.binary, "info", "--format", "{{.ServerVersion}}"], timeout=20).ok

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "binary": self.binary, "available": False, "version": None}
        result = self.run([self.binary, "info", "--format", "{{json .}}"], timeout=30)
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
