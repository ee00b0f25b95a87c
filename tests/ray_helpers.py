"""A real Ray cluster on loopback for tests: a head and worker nodes as `ray start --block` processes.

Each node is its own process group with its own temp dir and explicit free ports (other Ray instances may run
on the machine at the same time), and is killed by its process group at the end, whatever happens; `ray stop`
is never used (it stops every Ray instance of the machine). The temp dirs are short paths under /tmp because
Ray's Unix socket paths inside them must stay under 107 characters (a pytest tmp_path is too long).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")  # the venv's, beside the Python that runs the tests
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayNode:
    name: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path

    def kill(self) -> None:
        """SIGKILL to the node's whole process group (raylet, its workers, agents): a host that vanishes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class RayCluster:
    root: Path
    env: dict[str, str]
    address: str = ""
    nodes: list[RayNode] = field(default_factory=list)

    def _start(self, name: str, args: list[str]) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        argv = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                "--disable-usage-stats", "--include-log-monitor=false", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                f"--metrics-export-port={free_port()}", *args]
        with log.open("w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        node = RayNode(name, proc, temp_dir, log)
        self.nodes.append(node)
        return node

    @staticmethod
    def _wait_started(node: RayNode) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in node.log.read_text(errors="replace"):
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {node.name} did not start:\n{node.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def start_head(self) -> None:
        port = free_port()
        head = self._start("head", ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                                    f"--dashboard-port={free_port()}"])
        self._wait_started(head)
        self.address = f"127.0.0.1:{port}"

    def start_workers(self, resources: dict[str, dict[str, float]]) -> list[RayNode]:
        """Several workers at once (their start-ups overlap), each with its own custom resources."""
        started = [self._start(name, [f"--address={self.address}", "--num-cpus=1",
                                      f"--resources={json.dumps(res)}"]) for name, res in resources.items()]
        for node in started:
            self._wait_started(node)
        return started

    def node(self, name: str) -> RayNode:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and leftovers(self.root):
            time.sleep(0.2)
        for node in self.nodes:
            node.kill()
        for proc in leftovers(self.root):  # started by these nodes, but outside their process groups
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def leftovers(marker: Path | str) -> list[psutil.Process]:
    """Processes whose command line or working directory mentions `marker` (a temp dir of this test)."""
    marker = str(marker)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in text and proc.pid != os.getpid():
            found.append(proc)
    return found


def short_temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="kvr", dir="/tmp"))


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
