"""Leftovers of the Kubernetes provider: who owns a run's namespace (the annotation `io.kubevibe.owner`,
`<host>/<pid>/<process start ticks>`), and whether that process still lives, for `kubevibe gc`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

def process_owner(pid: int | None = None) -> str:
    """<host>/<pid>/<start ticks>: names this process unambiguously (pids are reused, start times are not)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid) or 0}"


def owner_alive(owner: str, host: str | None = None) -> bool | None:
    """True/False for an owner on this host; None when it is another host's process (cannot tell)."""
    parts = owner.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    if parts[0] != (host or socket.gethostname()):
        return None
    ticks = _start_ticks(int(parts[1]))
    return ticks is not None and str(ticks) == parts[2]


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None  # field 22 of stat: starttime
