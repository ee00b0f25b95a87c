"""Deployment targets: `get_target("local")`, `get_target("kubernetes")`."""

from __future__ import annotations

from kubevibe.errors import UsageError
from kubevibe.targets.base import DeploymentInfo, Target, TargetFailure
from kubevibe.targets.kubernetes import KubernetesTarget
from kubevibe.targets.local import LocalTarget

TARGETS: dict[str, type[Target]] = {"local": LocalTarget, "kubernetes": KubernetesTarget}


def get_target(name: str) -> Target:
    cls = TARGETS.get(name.strip().lower())
    if cls is None:
        raise UsageError(f"Unknown target {name!r}: choose one of {', '.join(sorted(TARGETS))}.")
    return cls()


__all__ = ["TARGETS", "DeploymentInfo", "KubernetesTarget", "LocalTarget", "Target", "TargetFailure", "get_target"]
