"""Helpers for tests that use the real local engine: podman commands, the engine check, and leftover detection."""

from __future__ import annotations

import pytest

from kubevibe.engines.podman import PodmanBuilder
from kubevibe.exec import run as run_command
from kubevibe.localinfra.baseimage import BASE_IMAGE
from kubevibe.localinfra.registry import ensure_registry
from kubevibe.podman_conf import podman_env
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.targets.local.manifest import network_name
from kubevibe.tools import find_tool

NOTHING = {"containers": [], "pods": [], "networks": []}


def podman(*args: str) -> str:
    result = run_command([str(find_tool("podman")), *args], timeout=60, env=podman_env())
    assert result.ok, result.describe() + "\n" + result.output
    return result.stdout


def require_engine() -> str:
    """The registry address; skips the calling test when podman or the base image is missing."""
    if find_tool("podman") is None:
        pytest.skip("podman is not installed (scripts/bootstrap.sh installs it)")
    if not PodmanBuilder().image_exists(BASE_IMAGE):
        pytest.skip(f"the base image {BASE_IMAGE} is missing (run `kubevibe setup`)")
    return ensure_registry()


def leftovers(run_id: str) -> dict[str, list[str]]:
    """Everything of this run still known to podman: containers, pods (by the run label) and its network."""
    label = f"label={RUN_LABEL}={label_value(run_id)}"
    return {
        "containers": podman("ps", "-a", "--quiet", "--filter", label).split(),
        "pods": podman("pod", "ps", "--quiet", "--filter", label).split(),
        "networks": [n for n in podman("network", "ls", "--format", "{{.Name}}").split() if n == network_name(run_id)],
    }
