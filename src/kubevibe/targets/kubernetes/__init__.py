"""The Kubernetes provider: a run's namespace in a real cluster (target.py), the applied copy (manifest.py),
kubectl's JSON (status.py), kubectl access and errors (kubectl.py), port-forward (portforward.py), leftovers (gc.py)."""

from kubevibe.targets.kubernetes.target import KubernetesDeployment, KubernetesTarget

__all__ = ["KubernetesDeployment", "KubernetesTarget"]
