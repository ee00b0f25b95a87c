"""Deployment targets (providers): `get_target("local")`, `get_target("kubernetes")`, or one a caller registered.

Each provider is a folder with the same file names (target.py, manifest.py, status.py, gc.py); `targets/base.py`
is the interface: `Target` -> `Deployment` handle, `DeployRequest` in, `TargetCapabilities` for callers to read.
"""

from __future__ import annotations

from kubevibe.errors import UsageError
from kubevibe.settings import TARGET_NAMES, Settings
from kubevibe.targets.base import (
    Deployment,
    DeploymentInfo,
    DeployRequest,
    StepScope,
    Target,
    TargetCapabilities,
    TargetFailure,
)
from kubevibe.targets.kubernetes import KubernetesTarget
from kubevibe.targets.local import LocalTarget

TARGETS: dict[str, type[Target]] = {}


def register_target(name: str, cls: type[Target]) -> None:
    """Make `cls` the provider of `--target name` (the built-in ones register the same way)."""
    key = name.strip().lower()
    TARGETS[key] = cls
    if key not in TARGET_NAMES:
        TARGET_NAMES.append(key)  # what Settings accepts as --target


register_target("local", LocalTarget)
register_target("kubernetes", KubernetesTarget)


def target_class(name: str) -> type[Target]:
    cls = TARGETS.get(name.strip().lower())
    if cls is None:
        raise UsageError(f"Unknown target {name!r}: choose one of {', '.join(sorted(TARGETS))}.")
    return cls


def capabilities_of(name: str) -> TargetCapabilities:
    """What the target of this name can do, without making it (no tool is looked for)."""
    return target_class(name).capabilities


def get_target(name: str, settings: Settings | None = None) -> Target:
    return target_class(name)(settings)


__all__ = ["TARGETS", "DeployRequest", "Deployment", "DeploymentInfo", "KubernetesTarget", "LocalTarget",
           "StepScope", "Target", "TargetCapabilities", "TargetFailure", "capabilities_of", "get_target",
           "register_target", "target_class"]
