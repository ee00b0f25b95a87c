"""Who owns a run: this process, named so that another process (gc, resume) can tell whether it still lives.

A pid alone is not enough: pids are reused, and after a reboot every old pid is meaningless. So an owner is
(boot id, pid, process start time). `gc` removes at once what belongs to a dead owner; `resume` refuses a run whose
owner is alive (the run directory's lock says so, see records.rundir).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import psutil
from pydantic import BaseModel

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str:
    """This boot's id (Linux); elsewhere the boot time, which also changes on every boot."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip().replace("-", "")[:32]
    except OSError:
        return f"t{int(psutil.boot_time())}"


class Owner(BaseModel):
    pid: int
    boot: str
    started: float  # the process's start time (seconds since the epoch), from the kernel

    def describe(self) -> str:
        return f"process {self.pid}"

    def alive(self) -> bool:
        """True while this very process runs (same boot, same pid, same start time)."""
        if self.boot != boot_id():
            return False
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            return True  # it exists; we may not look at it, so assume it is in use

    def labels(self) -> dict[str, str]:
        """The owner as object labels (podman, Kubernetes): label values are short strings."""
        return {OWNER_PID_LABEL: str(self.pid), OWNER_BOOT_LABEL: self.boot,
                OWNER_STARTED_LABEL: str(int(self.started))}

    @classmethod
    def from_labels(cls, labels: dict[str, str] | None) -> "Owner | None":
        labels = labels or {}
        try:
            return cls(pid=int(labels[OWNER_PID_LABEL]), boot=labels[OWNER_BOOT_LABEL],
                       started=float(labels[OWNER_STARTED_LABEL]))
        except (KeyError, ValueError):
            return None


OWNER_PID_LABEL = "io.kubevibe.owner-pid"
OWNER_BOOT_LABEL = "io.kubevibe.owner-boot"
OWNER_STARTED_LABEL = "io.kubevibe.owner-started"


def current() -> Owner:
    return _owner_of(os.getpid())  # keyed by pid: a forked worker is an owner of its own


@functools.cache
def _owner_of(pid: int) -> Owner:
    return Owner(pid=pid, boot=boot_id(), started=psutil.Process(pid).create_time())
