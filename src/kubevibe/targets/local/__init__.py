"""The local provider: podman pods from `podman kube play` (target.py), its played copy (manifest.py), podman's
answers (status.py) and its leftovers (gc.py)."""

from kubevibe.targets.local.target import LocalDeployment, LocalTarget

__all__ = ["LocalDeployment", "LocalTarget"]
