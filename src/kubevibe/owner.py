"""Who owns a run: this process, named so that another process (gc, resume) can tell whether it still lives.

A pid alone is not enough: pids are reused, and after a reboot every old pid is meaningless. So an owner is
(pid, process start time in clock ticks since boot, boot id). `gc` removes at once what a dead owner left;
`resume` refuses a run whose owner is alive (the run directory's lock, record.rundir).

On local objects (pods, networks, images, build containers) the owner is the label `io.kubevibe.owner` with a
value that is also a valid Kubernetes label value: `<pid>.<start ticks>.<boot id prefix>`.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from pydantic import BaseModel

OWNER_LABEL = "io.kubevibe.owner"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_BOOT_CHARS = 16


@functools.cache
def boot_id() -> str:
    """This boot's id (Linux), hex without dashes; elsewhere the boot time, which also changes on every boot."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip().replace("-", "")
    except OSError:
        import psutil

        return f"{int(psutil.boot_time()):x}"


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


class Owner(BaseModel):
    pid: int
    ticks: int
    boot: str

    def label(self) -> str:
        return f"{self.pid}.{self.ticks}.{self.boot[:_BOOT_CHARS]}"

    def alive(self) -> bool:
        """True while this very process runs: same boot, same pid, same start time."""
        if self.boot[:_BOOT_CHARS] != boot_id()[:_BOOT_CHARS]:
            return False  # the machine rebooted since: every process of that boot has ended
        return start_ticks(self.pid) == self.ticks

    @classmethod
    def from_label(cls, value: str | None) -> "Owner | None":
        m = re.fullmatch(r"(\d+)\.(\d+)\.([0-9a-f]+)", value or "")
        return cls(pid=int(m.group(1)), ticks=int(m.group(2)), boot=m.group(3)) if m else None


def current() -> Owner:
    return _owner_of(os.getpid())  # keyed by pid: a forked worker is an owner of its own


@functools.cache
def _owner_of(pid: int) -> Owner:
    return Owner(pid=pid, ticks=start_ticks(pid) or 0, boot=boot_id())


def owner_labels() -> dict[str, str]:
    """The labels that name this process as the owner of an object it creates."""
    return {OWNER_LABEL: current().label()}


def label_alive(value: str | None) -> bool | None:
    """For gc: True/False for an owner label of this machine, None when the label is missing or unreadable."""
    owner = Owner.from_label(value)
    return None if owner is None else owner.alive()
