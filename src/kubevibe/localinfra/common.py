"""What the local infrastructure modules share: where KubeVibe keeps their files, and the podman binary."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kubevibe.paths import data_dir
from kubevibe.tools import require_tool

Progress = Callable[[str], None]
PODMAN_FIX = "apt-get install -y podman runc uidmap"


def infra_paths() -> dict[str, Path]:
    root = data_dir()
    return {
        "base": root / "base",
        "rootfs": root / "base" / "rootfs",
        "context": root / "base" / "context",
        "registry": root / "registry",
        "registry_storage": root / "registry" / "storage",
        "registry_config": root / "registry" / "config.yml",
        "registry_pid": root / "registry" / "registry.pid",
        "registry_log": root / "registry" / "registry.log",
        "registry_lock": root / "registry" / "lock",
        "base_lock": root / "base" / "lock",
        "setup_log": root / "logs" / "setup.log",
    }


def podman_binary() -> str:
    return str(require_tool("podman", f"Run: {PODMAN_FIX}"))


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Serialises a step between concurrent KubeVibe processes (two runs starting the registry at once...)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
