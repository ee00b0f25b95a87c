"""`kubectl port-forward` kept alive: kubectl >= 1.23 ends a port-forward at the first failed connection inside
the pod (kubernetes/kubectl#1169), which is exactly what happens while a server is still starting, so the forward
is restarted on the same local port whenever it exits.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubevibe.exec import kill_group, pretty_command

PORT_FORWARD_START_S = 20.0
PORT_FORWARD_MAX_RESTARTS = 100


# --- port-forward ---------------------------------------------------------------------------------------------------


class PortForwardError(Exception):
    def __init__(self, message: str, command: str, output: str):
        super().__init__(message)
        self.command, self.output = command, output


class PortForward:
    """`kubectl port-forward` in its own process group, restarted on the same local port whenever it exits.

    argv_for(local_port) builds the command: "" first (kubectl picks a free port, parsed from its output), the
    chosen port for restarts. Not run through exec.run: it runs in the background until stop(); the command and
    its output still go to the stage's command log.
    """

    def __init__(self, argv_for: Any, *, env: Mapping[str, str] | None = None, log_file: Path | None = None,
                 max_restarts: int = PORT_FORWARD_MAX_RESTARTS):
        self.argv_for = argv_for
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file
        self.max_restarts = max_restarts
        self.port: int | None = None
        self.restarts = 0
        self.output: list[str] = []  # every line kubectl printed, all runs
        self._proc: subprocess.Popen[str] | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def _launch(self, local: str, timeout: float) -> int:
        argv = self.argv_for(local)
        self._log(f"$ {pretty_command(argv)}")
        lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=self.env, start_new_session=True)
        with self._lock:
            self._proc = proc
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=self._pump, args=(stream, name, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        closed = 0
        while True:
            try:
                name, line = lines.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    kill_group(proc)
                    raise PortForwardError(f"no `Forwarding from` line within {timeout:.0f}s",
                                           pretty_command(argv), "\n".join(self.output[-20:])) from None
                continue
            if line is None:
                closed += 1
                if closed == 2:  # both streams ended: kubectl exited before forwarding
                    proc.wait()
                    errors = [ln for ln in self.output[-20:] if ln.strip()]
                    raise PortForwardError((errors or [f"exit {proc.returncode}"])[-1], pretty_command(argv),
                                           "\n".join(self.output[-20:]))
                continue
            port = parse_forwarding_port(line) if name == "stdout" else None
            if port is not None:
                return port

    def _pump(self, stream: Any, name: str, lines: "queue.Queue[tuple[str, str | None]]") -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.output.append(line)
            self._log(("" if name == "stdout" else "[stderr] ") + line)
            lines.put((name, line))
        lines.put((name, None))

    def start(self, timeout: float = PORT_FORWARD_START_S) -> int:
        self.port = self._launch("", timeout)
        self._supervisor = threading.Thread(target=self._supervise, name="port-forward", daemon=True)
        self._supervisor.start()
        return self.port

    def _supervise(self) -> None:
        failures_in_a_row = 0
        while not self._stopped.is_set():
            proc = self._proc
            if proc is None:
                return
            while proc.poll() is None:
                if self._stopped.wait(0.05):
                    return
            if self._stopped.is_set() or self.restarts >= self.max_restarts or failures_in_a_row >= 5:
                return
            self.restarts += 1
            self._log(f"# port-forward exited ({proc.returncode}); restart {self.restarts} on port {self.port}")
            try:
                self._launch(str(self.port), PORT_FORWARD_START_S)
                failures_in_a_row = 0
            except PortForwardError:
                failures_in_a_row += 1
                self._stopped.wait(0.5)
            except OSError:
                return

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            kill_group(proc)
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)

    def _log(self, line: str) -> None:
        if self.log_file is None:
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.log_file.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def parse_forwarding_port(line: str) -> int | None:
    """The local port of `Forwarding from 127.0.0.1:43567 -> 5000` (kubectl port-forward's first lines)."""
    m = re.match(r"^Forwarding from (?:127\.0\.0\.1|\[::1\]|localhost|[\d.]+):(\d+) -> \d+", line.strip())
    return int(m.group(1)) if m else None
