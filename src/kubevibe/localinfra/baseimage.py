"""The base images: faithful stand-ins for the official python images, built once and reused.

Where no public registry is reachable, `FROM python:3.11-slim` cannot be pulled. `kubevibe setup` builds the
default stand-in (`BASE_IMAGE`, Python 3.11 from bookworm); the others (kubevibe.baseimages: Python 3.13 from
trixie) are built by the first Build that needs them. Each is a Debian root file system made with debootstrap
(from this machine's own apt mirror, apt.py), imported into podman, plus a layer laid out like the official python
image (Python under /usr/local, nothing pre-installed; see kubevibe.baseimages and docs/local-engine.md).
`engines.baseimage.map_base_image()` rewrites FROM lines to them, and records every rewrite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from kubevibe.baseimages import DEBOOTSTRAP_INCLUDE, DEFAULT_STAND_IN, StandIn, render_containerfile
from kubevibe.errors import KubeVibeError
from kubevibe.exec import run, run_pipe
from kubevibe.localinfra.apt import debian_mirror
from kubevibe.engines.podman import PodmanBuilder
from kubevibe.localinfra.common import Progress, file_lock, infra_paths, podman_binary
from kubevibe.podman_conf import podman_env
from kubevibe.tools import find_tool, require_tool

BASE_IMAGE = DEFAULT_STAND_IN.image  # python 3.11 from bookworm; baseimages.STAND_INS lists all
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/kubevibe-host-ca-certificates.crt"
BASE_DIGEST_LABEL = "io.kubevibe.base.digest"

DEBOOTSTRAP_TIMEOUT_S = 1800.0
IMPORT_TIMEOUT_S = 600.0
BASE_BUILD_TIMEOUT_S = 1800.0


def image_label(ref: str, label: str) -> str | None:
    """A label of a local image, or None if the image (or label) is missing."""
    fmt = '{{ index .Labels "' + label + '" }}'  # a Go template
    result = run([podman_binary(), "image", "inspect", "--format", fmt, ref], timeout=30, env=podman_env())
    if not result.ok:
        return None
    value = result.stdout.strip()
    return None if value in ("", "<no value>") else value


def _host_ca_bundle() -> Path:
    if HOST_CA_BUNDLE.is_file():
        return HOST_CA_BUNDLE
    import certifi  # a dependency of httpx; its bundle is better than none

    return Path(certifi.where())


def _stand_in_paths(stand_in: StandIn) -> dict[str, Path]:
    base = infra_paths()["base"] / f"python{stand_in.python}-{stand_in.suite}"
    return {"rootfs": base / "rootfs", "context": base / "context"}


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        points = [line.split()[1].replace("\\040", " ") for line in fh]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_rootfs(rootfs: Path) -> None:
    """Delete a (possibly half-made) root file system; unmount leftovers first so /proc or /sys is never walked."""
    if not rootfs.exists():
        return
    for point in _mounts_below(rootfs):
        run(["umount", "-l", point], timeout=60).check(hint=f"Unmount {point} by hand, then retry.")
    if _mounts_below(rootfs):
        raise KubeVibeError(f"{rootfs} still has file systems mounted below it.",
                            f"Unmount them, then delete {rootfs}.")  # fmt: skip
    shutil.rmtree(rootfs)


def make_rootfs(suite: str, rootfs: Path, progress: Progress = print) -> Path:
    """debootstrap a minimal Debian `suite` (with python3) into rootfs. Needs root; any suite from any host."""
    log = infra_paths()["setup_log"]
    debootstrap = require_tool("debootstrap", "Run: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise KubeVibeError("Creating a base image needs root (debootstrap).", "Run `kubevibe setup` as root.")
    _remove_rootfs(rootfs)  # debootstrap cannot resume a half-made tree
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror(suite)
    progress(f"  debootstrap {suite} from {mirror} (about 1 minute; log: {log})")
    argv = [str(debootstrap), "--variant=minbase", "--include=" + ",".join(DEBOOTSTRAP_INCLUDE),
            suite, str(rootfs), mirror]  # fmt: skip
    result = run(argv, timeout=DEBOOTSTRAP_TIMEOUT_S, log_file=log)
    if not result.ok:
        _remove_rootfs(rootfs)
        result.check(hint=f"See {log}; set KUBEVIBE_DEBIAN_MIRROR to use another mirror.")
    if _mounts_below(rootfs):
        raise KubeVibeError(f"debootstrap left file systems mounted below {rootfs}.", "Unmount them and retry.")
    return rootfs


def import_rootfs(rootfs: Path, image: str, suite: str, progress: Progress = print) -> None:
    """`tar -C rootfs -c . | podman import - IMAGE`, without a shell."""
    tar = find_tool("tar") or Path("tar")
    progress(f"  importing the root file system as {image}")
    producer = [str(tar), "-C", str(rootfs), "--numeric-owner", "-c", "."]
    consumer = [podman_binary(), "import", "--message", "kubevibe debootstrap " + suite, "-", image]
    result = run_pipe(producer, consumer, timeout=IMPORT_TIMEOUT_S, env=podman_env(), log_file=infra_paths()["setup_log"])
    result.check(hint=f"See {infra_paths()['setup_log']}.")


def _probe_versions(rootfs_image: str) -> tuple[str, str]:
    """(exact Python version, bundled pip version) of a root file system image, for the official ENV values."""
    script = "import ensurepip, platform; print(platform.python_version(), ensurepip.version())"
    result = run([podman_binary(), "run", "--rm", "--network=none", rootfs_image, "python3", "-c", script],
                 timeout=120, env=podman_env(), log_file=infra_paths()["setup_log"])  # fmt: skip
    result.check(hint=f"See {infra_paths()['setup_log']}.")
    python_version, pip_version = result.stdout.split()[:2]
    return python_version, pip_version


def render_stand_in_containerfile(stand_in: StandIn, python_version: str = "3", pip_version: str = "0") -> str:
    return render_containerfile(stand_in, python_version=python_version, pip_version=pip_version,
                                ca_bundle_path=IMAGE_CA_BUNDLE)  # fmt: skip


def stand_in_digest(stand_in: StandIn) -> str:
    """Identifies what a stand-in is built from; stored as a label, so a change triggers a rebuild."""
    h = hashlib.sha256(render_stand_in_containerfile(stand_in).encode())
    h.update(" ".join(DEBOOTSTRAP_INCLUDE).encode())
    h.update(_host_ca_bundle().read_bytes())
    return h.hexdigest()[:16]


def stand_in_current(stand_in: StandIn) -> bool:
    return image_label(stand_in.image, BASE_DIGEST_LABEL) == stand_in_digest(stand_in)


def base_image_current() -> bool:
    return stand_in_current(DEFAULT_STAND_IN)


def _build_stand_in(stand_in: StandIn, progress: Progress) -> None:
    builder = PodmanBuilder()
    paths = _stand_in_paths(stand_in)
    if builder.image_exists(stand_in.rootfs_image):
        progress(f"Root file system image {stand_in.rootfs_image} already present")
    else:
        progress(f"Creating the Debian {stand_in.suite} root file system")
        t0 = time.monotonic()
        make_rootfs(stand_in.suite, paths["rootfs"], progress)
        import_rootfs(paths["rootfs"], stand_in.rootfs_image, stand_in.suite, progress)
        _remove_rootfs(paths["rootfs"])  # the image holds it now; 300 MB less on disk
        progress(f"  done in {time.monotonic() - t0:.0f}s")
    progress(f"Building the base image {stand_in.image}")
    t0 = time.monotonic()
    python_version, pip_version = _probe_versions(stand_in.rootfs_image)
    context = paths["context"]
    context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_host_ca_bundle(), context / "ca-certificates.crt")
    containerfile = context / "Containerfile"
    containerfile.write_text(render_stand_in_containerfile(stand_in, python_version, pip_version), encoding="utf-8")
    # The digest label goes on the command line: the Containerfile is itself part of the digest.
    log = infra_paths()["setup_log"]
    result = builder.build(context, stand_in.image, timeout=BASE_BUILD_TIMEOUT_S, log_file=log,
                           dockerfile=containerfile, pull="never",
                           labels={BASE_DIGEST_LABEL: stand_in_digest(stand_in)})  # fmt: skip
    result.check(hint=f"See {log}.")
    progress(f"  done in {time.monotonic() - t0:.0f}s (Python {python_version}, pip {pip_version})")


def ensure_stand_in(stand_in: StandIn, progress: Progress = print) -> str:
    """Build a stand-in if it is missing or outdated (one process at a time); return its image name."""
    if stand_in_current(stand_in):
        progress(f"Base image {stand_in.image} is up to date")
        return stand_in.image
    with file_lock(infra_paths()["base_lock"]):
        if stand_in_current(stand_in):  # another process built it while we waited
            progress(f"Base image {stand_in.image} is up to date")
            return stand_in.image
        _build_stand_in(stand_in, progress)
    return stand_in.image


def ensure_base_image(progress: Progress = print) -> str:
    """The default stand-in (python 3.11 from bookworm); the others are built on first need."""
    return ensure_stand_in(DEFAULT_STAND_IN, progress)
