"""The labels every target puts on what it creates, and Build on its build containers: one place for all."""

from __future__ import annotations

import re

# The label every resource of a run carries, so leftovers of a crashed run can be found and removed.
RUN_LABEL = "io.kubevibe.run"


def label_value(run_id: str) -> str:
    """A valid label value (63 characters, alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:63].strip("-_.") or "run"
