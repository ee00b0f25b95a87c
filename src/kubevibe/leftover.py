"""A leftover of a run (a pod, network, image, registry tag, namespace) as `kubevibe gc` lists and decides it,
and the small readers every place that finds leftovers shares. Its own module so the providers' gc.py files
(targets/*/gc.py) and the top-level gc.py build the same record without importing each other upward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubevibe.owner import OWNER_LABEL


@dataclass
class Leftover:
    place: str  # "podman", "registry", "cluster"
    kind: str  # pod, container, network, image, tag, namespace
    name: str  # what the deletion names (id, name, repo:tag)
    run: str  # the run id (label value)
    created: float | None = None  # unix time, when known
    state: str = ""
    owner: str = ""  # io.kubevibe.owner of a namespace
    extra: dict[str, Any] = field(default_factory=dict)
    delete: bool = False
    why: str = ""

    def line(self, dry_run: bool) -> str:
        verb = ("would delete" if dry_run else "delete") if self.delete else "keep"
        state = f", {self.state}" if self.state else ""
        return f"{verb:<12} {self.place} {self.kind} {self.name} (run {self.run}{state}): {self.why}"


def podman_time(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", value)
        if m:
            tz = m.group(2) or "Z"
            return datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz)).timestamp()
    return None


def owner_of(labels: Any) -> str:
    return str((labels or {}).get(OWNER_LABEL) or "") if isinstance(labels, dict) else ""
