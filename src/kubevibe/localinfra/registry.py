"""The loopback registry: the CNCF distribution registry (Debian `docker-registry`) as a background process.

It listens on 127.0.0.1:$KUBEVIBE_REGISTRY_PORT (default 5005, not 5000: generated services listen on 5000, and
podman's `kube play` publishes declared container ports on the host). Started on demand, reused while alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from kubevibe.errors import KubeVibeError
from kubevibe.exec import start
from kubevibe.localinfra.common import file_lock, infra_paths
from kubevibe.settings import machine_setting
from kubevibe.tools import require_tool

REGISTRY_START_TIMEOUT_S = 20.0


def registry_port() -> int:
    return machine_setting("registry_port")


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


def read_pid(pid_file: Path) -> int | None:
    """The pid in pid_file if that process is still a docker-registry (pids get reused)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"registry" in cmdline else None


_started: list[subprocess.Popen] = []  # keeps our child objects alive (no zombie / ResourceWarning noise)


def _start_registry_process(binary: Path, config: Path, log: Path, pid_file: Path) -> subprocess.Popen:
    # A daemon, so exec.start(), not exec.run(): a new session (survives our exit and Ctrl-C), output to a log file.
    # REGISTRY_* variables would override the config file, so they are dropped.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log.open("ab") as log_fh:
        proc = start([str(binary), "serve", str(config)], stdout=log_fh, env=env, cwd=str(config.parent))
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
    paths = infra_paths()
    binary = require_tool("docker-registry", "Run: apt-get install -y docker-registry")
    with file_lock(paths["registry_lock"]):
        if registry_alive(address):  # another process started it while we waited for the lock
            return address
        stale = read_pid(paths["registry_pid"])
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
    paths = infra_paths()
    with file_lock(paths["registry_lock"]):
        pid = read_pid(paths["registry_pid"])
        paths["registry_pid"].unlink(missing_ok=True)
        if pid is None:
            return False
        _terminate(pid)
        return True
