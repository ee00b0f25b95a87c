"""Podman as a builder. Every podman command gets `podman_env()` (the tool-owned containers.conf: runc, ulimits).

The argv functions are pure (binary path in, list out) so tests check them without an engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubevibe.engines.base import Builder, build_arg_flags, label_flags
from kubevibe.exec import CommandResult, run
from kubevibe.podman_conf import podman_env
from kubevibe.tools import find_tool

# --- pure argument builders -----------------------------------------------------------------------------------------


def podman_build_argv(
    binary: str,
    context_dir: Path,
    tag: str,
    *,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    pull: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    # --format docker keeps Docker-only instructions (HEALTHCHECK, SHELL) that the OCI format drops with a warning;
    # generated Dockerfiles are written for Docker. --layers caches steps between Fix-loop iterations.
    argv = [binary, "build", "--format", "docker", "--layers", "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    if pull is not None:
        argv.append(f"--pull={pull}")
    argv += build_arg_flags(build_args)
    argv += label_flags(labels)
    argv.append(str(context_dir))
    return argv


def podman_push_argv(binary: str, ref: str, *, tls_verify: bool = False) -> list[str]:
    # The registry KubeVibe runs is plain HTTP on loopback, hence --tls-verify=false by default.
    return [binary, "push", f"--tls-verify={'true' if tls_verify else 'false'}", ref]


def podman_pull_argv(binary: str, ref: str, *, tls_verify: bool = True) -> list[str]:
    argv = [binary, "pull"]
    if not tls_verify:
        argv.append("--tls-verify=false")
    return argv + [ref]


def podman_tag_argv(binary: str, source: str, target: str) -> list[str]:
    return [binary, "tag", source, target]


def podman_image_exists_argv(binary: str, ref: str) -> list[str]:
    return [binary, "image", "exists", ref]


def podman_rmi_argv(binary: str, ref: str, *, force: bool = False) -> list[str]:
    return [binary, "rmi", *(["--force"] if force else []), ref]


# --- the builder ----------------------------------------------------------------------------------------------------


class PodmanBuilder(Builder):
    name = "podman"

    def __init__(self, binary: str | Path | None = None):
        found = binary or find_tool("podman")
        self.binary = str(found) if found else "podman"

    def _run(self, argv: list[str], *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return run(argv, timeout=timeout, env=podman_env(), log_file=log_file)

    def is_available(self) -> bool:
        # Not just "binary present": podman must actually start with our configuration.
        return self._run([self.binary, "version", "--format", "{{.Client.Version}}"], timeout=30).ok

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "binary": self.binary, "available": False, "version": None}
        result = self._run([self.binary, "info", "--format", "json"], timeout=60)
        if not result.ok:
            data["error"] = result.describe()
            return data
        raw = json.loads(result.stdout)
        host, store = raw.get("host", {}), raw.get("store", {})
        data.update(
            available=True,
            version=raw.get("version", {}).get("Version"),
            runtime=host.get("ociRuntime", {}).get("name"),
            cgroup_version=host.get("cgroupVersion"),
            network_backend=host.get("networkBackend"),
            storage_driver=store.get("graphDriverName"),
            rootless=host.get("security", {}).get("rootless"),
            containers_conf=podman_env()["CONTAINERS_CONF"],
            capabilities={"build": True, "push_insecure": True, "kube_play": True, "needs_daemon": False},
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
        argv = podman_build_argv(
            self.binary, context_dir, tag, dockerfile=dockerfile, build_args=build_args, pull=pull, labels=labels
        )
        return self._run(argv, timeout=timeout, log_file=log_file)

    def push(self, ref: str, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self._run(podman_push_argv(self.binary, ref), timeout=timeout, log_file=log_file)

    def pull(self, ref: str, *, timeout: float, log_file: Path | None = None) -> CommandResult:
        return self._run(podman_pull_argv(self.binary, ref), timeout=timeout, log_file=log_file)

    def tag(self, source: str, target: str, *, timeout: float = 60, log_file: Path | None = None) -> CommandResult:
        return self._run(podman_tag_argv(self.binary, source, target), timeout=timeout, log_file=log_file)

    def image_exists(self, ref: str) -> bool:
        return self._run(podman_image_exists_argv(self.binary, ref), timeout=30).ok

    def remove_image(self, ref: str, *, force: bool = False, log_file: Path | None = None) -> CommandResult:
        if not self.image_exists(ref):
            return CommandResult(argv=podman_rmi_argv(self.binary, ref, force=force), returncode=0,
                                 stdout="image not present; nothing to remove")  # fmt: skip
        return self._run(podman_rmi_argv(self.binary, ref, force=force), timeout=120, log_file=log_file)
