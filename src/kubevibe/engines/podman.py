"""Podman as a builder. Every podman command gets `podman_env()` (the tool-owned containers.conf: runc, ulimits).

The argv functions are pure (binary path in, list out) so tests check them without an engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubevibe.engines.base import Builder, build_arg_flags, label_flags
from kubevibe.engines.hardening import EscapeStatus, escape_status, podman_hardening_flags
from kubevibe.engines.leftovers import marker_flags
from kubevibe.podman_conf import podman_env

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
    # Least privilege the engine allows here (engines/hardening.py says what was measured and why not more).
    argv = [binary, "build", "--format", "docker", "--layers", *podman_hardening_flags(), "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    if pull is not None:
        argv.append(f"--pull={pull}")
    argv += build_arg_flags(build_args)
    argv += label_flags(labels)
    argv += marker_flags(labels)  # buildah keeps no labels on working containers: these mark them for cleanup
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


def podman_image_exists_argv(binary: str, ref: str) -> list[str]:
    return [binary, "image", "exists", ref]


# --- the builder ----------------------------------------------------------------------------------------------------


class PodmanBuilder(Builder):
    name = "podman"

    def env(self) -> dict[str, str]:
        return podman_env()

    def build_argv(self, context_dir: Path, tag: str, **options: Any) -> list[str]:
        return podman_build_argv(self.binary, context_dir, tag, **options)

    def push_argv(self, ref: str, *, tls_verify: bool) -> list[str]:
        return podman_push_argv(self.binary, ref, tls_verify=tls_verify)

    def pull_argv(self, ref: str) -> list[str]:
        return podman_pull_argv(self.binary, ref)

    def image_exists_argv(self, ref: str) -> list[str]:
        return podman_image_exists_argv(self.binary, ref)

    def save_argv(self, ref: str, archive: Path) -> list[str]:
        return [self.binary, "save", "--format", "docker-archive", "-o", str(archive), ref]

    def is_available(self) -> bool:
        # Not just "binary present": podman must actually start with our configuration.
        return self.run([self.binary, "version", "--format", "{{.Client.Version}}"], timeout=30).ok

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "binary": self.binary, "available": False, "version": None}
        result = self.run([self.binary, "info", "--format", "json"], timeout=60)
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
            buildah_version=host.get("buildahVersion"),
            containers_conf=podman_env()["CONTAINERS_CONF"],
            capabilities={"build": True, "push_insecure": True, "kube_play": True, "needs_daemon": False},
        )
        return data


def build_escape_status(builder: PodmanBuilder | None = None) -> EscapeStatus:
    """For `kubevibe doctor`: podman/buildah versions, known build-escape exposure, mitigations in force."""
    info = (builder or PodmanBuilder()).info()
    return escape_status(info.get("version"), info.get("buildah_version"))
