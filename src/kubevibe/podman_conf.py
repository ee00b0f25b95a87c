"""The containers.conf that KubeVibe owns, and the environment that makes podman use it.

Podman's defaults fail in sandboxes like CI containers: the default runtime `crun` fails with "cgroups in hybrid
mode not supported", and the default ulimits fail with "setrlimit RLIMIT_NOFILE: operation not permitted".
Instead of editing /etc/containers, KubeVibe writes its own file under `data_dir()` and points podman at it with
`CONTAINERS_CONF`. With that variable set podman reads *only* this file (containers.conf(5)), so everything the
tool relies on is stated here, and system files stay untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kubevibe.paths import data_dir

DEFAULT_ULIMITS = ("nofile=20000:20000", "nproc=4096:4096")

# Why each setting:
#   default_ulimits  - podman's defaults (taken from the host's hard limits) are refused inside sandboxes.
#   runtime = runc   - crun fails on hybrid cgroup hierarchies; runc works (Debian package `runc`).
#   cgroup_manager   - there is no systemd on CI machines and containers; cgroupfs works everywhere.
#   events_logger    - the default is journald, which is absent without systemd.
#   short-name mode  - not set here (that lives in registries.conf); KubeVibe rewrites FROM lines instead.
CONTAINERS_CONF_TEMPLATE = """\
# Written by KubeVibe (kubevibe.podman_conf). Regenerated on `kubevibe setup`; edits are overwritten.
# Used only by podman runs that KubeVibe starts, through CONTAINERS_CONF; system files are not changed.

[containers]
default_ulimits = [{ulimits}]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def containers_conf_path() -> Path:
    return data_dir() / "podman" / "containers.conf"


def render_containers_conf(ulimits: tuple[str, ...] = DEFAULT_ULIMITS) -> str:
    return CONTAINERS_CONF_TEMPLATE.format(ulimits=", ".join(f'"{u}"' for u in ulimits))


def write_containers_conf() -> Path:
    """Write (or refresh) the tool-owned containers.conf; return its path. Cheap and idempotent."""
    path = containers_conf_path()
    text = render_containers_conf()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".containers.conf.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: a concurrent podman never reads half a file
    return path


def podman_env() -> dict[str, str]:
    """Extra environment for every podman command: `exec.run(argv, env=podman_env(), ...)`.

    Writes the file if it is missing, so callers never point podman at a file that does not exist
    (podman would silently fall back to nothing but built-in defaults, which fail here).
    """
    return {"CONTAINERS_CONF": str(write_containers_conf())}
