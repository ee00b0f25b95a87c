"""Image references (`registry/repository:tag@digest`), split the way Docker splits them.

Ground floor: pure, so the engines, the base-image stand-ins, export and publish all read references alike.
"""

from __future__ import annotations

from dataclasses import dataclass

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
