"""KubeVibe: natural-language request -> built, validated, deployed and charted Kubernetes service."""

__version__ = "0.1.0"
