"""Evidence: one piece of what a stage (or a target working for it) saw, as the Fix stage is shown it.

Its own module so that layers below the pipeline (targets) can build evidence without importing the pipeline;
`kubevibe.pipeline.context` re-exports it for the stages.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kubevibe.text import trim_middle


class Evidence(BaseModel):
    """One piece of what a stage saw. This is what the Fix stage is shown, so it must be specific."""

    kind: str  # "command", "finding", "http", "log", "llm", "note"
    title: str
    command: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    detail: str = ""

    @classmethod
    def from_command(cls, title: str, result: Any) -> "Evidence":
        """From an exec.CommandResult."""
        return cls(
            kind="command",
            title=title,
            command=result.command,
            exit_code=result.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
            detail=result.error or ("timed out" if result.timed_out else ""),
        )

    def render(self, limit: int = 4000) -> str:
        """Plain text for a prompt; long output keeps its head and its tail (errors are usually at the end)."""
        parts = [f"[{self.kind}] {self.title}"]
        if self.command:
            parts.append(f"command: {self.command}")
        if self.exit_code is not None:
            parts.append(f"exit code: {self.exit_code}")
        if self.detail:
            parts.append(self.detail)
        if self.stdout.strip():
            parts.append("stdout:\n" + self.stdout.strip())
        if self.stderr.strip():
            parts.append("stderr:\n" + self.stderr.strip())
        return trim_middle("\n".join(parts), limit)
