"""Container engines that build and push images: `get_builder("podman" | "docker")`."""

from __future__ import annotations

from kubevibe.engines.base import Builder
from kubevibe.engines.baseimage import map_base_image
from kubevibe.engines.docker import DockerBuilder
from kubevibe.engines.podman import PodmanBuilder
from kubevibe.errors import UsageError

BUILDERS: dict[str, type[Builder]] = {"podman": PodmanBuilder, "docker": DockerBuilder}


def get_builder(name: str) -> Builder:
    cls = BUILDERS.get(name.strip().lower())
    if cls is None:
        raise UsageError(f"Unknown builder {name!r}: choose one of {', '.join(sorted(BUILDERS))}.")
    return cls()


__all__ = ["BUILDERS", "Builder", "DockerBuilder", "PodmanBuilder", "get_builder", "map_base_image"]
