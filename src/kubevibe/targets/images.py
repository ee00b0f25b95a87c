"""Where Build's image goes, so the target can run it: the local registry, the user's registry, or kind's nodes.

`destination_of(settings.registry, settings.target)` decides (pure, from the target's capabilities):
  * a target that runs images where they were built (local): `--registry` if given, else the loopback registry
    KubeVibe runs (localinfra.ensure_registry).
  * a target with `needs_registry` (kubernetes): `--registry` is required, because the cluster's nodes must be
    able to pull:
      - `HOST[:PORT][/PATH]`: pushed there. A registry on a loopback address (localhost:5001, 127.0.0.1:5000; e.g.
        kind's documented local registry, which the nodes reach through a containerd mirror) is pushed with
        --tls-verify=false; any other registry with TLS verified (an insecure one is declared in the engine's own
        configuration: registries.conf for podman, daemon.json for docker).
      - `kind://CLUSTER` (`kind://` or just `kind` for the cluster named "kind"): no registry at all; the image is
        saved to an archive and loaded into every node of that kind cluster (`kind load image-archive`, which works
        with either provider; `kind load docker-image` runs `docker save` itself and so fails with podman,
        kind#2729). Image names then start with `localhost/` and Deploy sets imagePullPolicy IfNotPresent on them.
Credentials: never handled here. `podman push` and `docker push` read the usual auth files themselves
(${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json, REGISTRY_AUTH_FILE, ~/.docker/config.json;
`podman login` / `docker login` write them); nothing here reads, passes or logs a secret, and the command logs
hold only argv lists without credentials.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from kubevibe.engines.base import Builder
from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.exec import CommandResult, run
from kubevibe.targets import capabilities_of
from kubevibe.tools import find_tool

KIND_SCHEME = "kind://"
KIND_DEFAULT_CLUSTER = "kind"
KIND_IMAGE_REGISTRY = "localhost"  # name part of images that live only in the nodes' containerd


@dataclass(frozen=True)
class ImageDestination:
    kind: str  # "local" (KubeVibe's loopback registry), "registry" (the user's), "kind" (loaded into nodes)
    registry: str  # the registry part of image names ("" for "local" until ensure_registry() answers)
    cluster: str | None = None  # the kind cluster's name

    @property
    def preloaded(self) -> bool:
        """The image is in the nodes already; no registry has it."""
        return self.kind == "kind"

    @property
    def tls_verify(self) -> bool:
        return not is_loopback_registry(self.registry)

    def describe(self) -> str:
        if self.kind == "kind":
            return f"loaded into the nodes of kind cluster {self.cluster}"
        return f"pushed to {self.registry}"


def destination_of(registry: str | None, target: str) -> ImageDestination:
    """Pure: where the image goes for this --registry and --target (its capability needs_registry decides)."""
    value = (registry or "").strip()
    if value.startswith(KIND_SCHEME) or value == "kind":
        cluster = value.removeprefix(KIND_SCHEME).strip("/") or KIND_DEFAULT_CLUSTER  # "kind" alone: the default
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", cluster):
            raise UsageError(f"Setting registry={registry!r} is invalid: {cluster!r} is not a kind cluster name.")
        return ImageDestination("kind", KIND_IMAGE_REGISTRY, cluster)
    if value:
        if "://" in value or any(c.isspace() for c in value) or value.endswith("/"):
            raise UsageError(f"Setting registry={registry!r} is invalid: expected HOST[:PORT][/PATH] "
                             "(e.g. localhost:5001, ghcr.io/me) or kind://CLUSTER.")
        return ImageDestination("registry", value)
    if capabilities_of(target).needs_registry:
        raise UsageError(f"--target {target} needs --registry (env KUBEVIBE_REGISTRY): a registry the cluster's "
                         "nodes can pull from, e.g. --registry localhost:5001, or --registry kind://CLUSTER to load "
                         "the image into a kind cluster's nodes. See docs/kubernetes.md.")
    return ImageDestination("local", "")


def is_loopback_registry(registry: str) -> bool:
    host = registry.split("/", 1)[0]
    if host.startswith("["):  # [::1]:5000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(registry: str | None, target: str) -> ImageDestination:
    """destination_of(), with KubeVibe's own registry started when that is where the image goes."""
    dest = destination_of(registry, target)
    if dest.kind == "local":
        from kubevibe.localinfra.registry import ensure_registry

        return ImageDestination("local", ensure_registry())
    return dest


# --- commands (pure) ------------------------------------------------------------------------------------------------


def kind_load_argv(kind: str, archive: Path, cluster: str) -> list[str]:
    return [kind, "load", "image-archive", str(archive), "--name", cluster]


# --- publishing -----------------------------------------------------------------------------------------------------


def publish(builder: Builder, ref: str, dest: ImageDestination, *, timeout: float, log_file: Path | None,
            work_dir: Path) -> CommandResult:
    """Push or load `ref`; the result of the last command. Never raises for a failing command (Build decides)."""
    if dest.kind != "kind":
        return builder.push(ref, timeout=timeout, log_file=log_file, tls_verify=dest.tls_verify)
    kind = find_tool("kind")
    if kind is None:
        raise KubeVibeError("The kind program is not installed, but --registry kind://... asks to load the image "
                            "into a kind cluster.", "Install kind (https://kind.sigs.k8s.io), or push to a registry.")
    archive = work_dir / "image.tar"
    try:
        saved = builder.save(ref, archive, timeout=timeout, log_file=log_file)
        if not saved.ok:
            return saved
        # kind finds the cluster's engine itself (docker if it answers, else podman); KIND_EXPERIMENTAL_PROVIDER
        # in the user's environment overrides that and is passed on unchanged.
        return run(kind_load_argv(str(kind), archive, dest.cluster or KIND_DEFAULT_CLUSTER), timeout=timeout,
                   log_file=log_file)
    finally:
        archive.unlink(missing_ok=True)  # hundreds of MB; the image itself stays in the engine


def publish_hint(dest: ImageDestination, builder_name: str = "podman") -> str:
    if dest.kind == "local":
        return f"Is the registry at {dest.registry} running? `kubevibe doctor` checks it, `kubevibe setup` starts it."
    if dest.kind == "kind":
        return (f"Is kind cluster {dest.cluster} running (`kind get clusters`)? If it runs on podman while docker "
                "is installed too, set KIND_EXPERIMENTAL_PROVIDER=podman.")
    host = dest.registry.split("/")[0]
    return (f"Can this machine push to {dest.registry}? Log in with `{builder_name} login {host}`; a plain-HTTP "
            "registry that is not on loopback must be declared insecure in "
            "the engine's configuration (registries.conf or daemon.json).")
