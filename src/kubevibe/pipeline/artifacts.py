"""The generated artifacts: the files an LLM writes, and which pipeline stage a change to each invalidates."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from kubevibe.pipeline.fsm import Outcome

# File names follow the reference tool, so researchers find the same files in a run directory.
CODE = "myapp.py"
DOCKERFILE = "Dockerfile"
MANIFEST = "vibe.yaml"
REQUIREMENTS = "requirements.txt"
FILES = (CODE, DOCKERFILE, MANIFEST, REQUIREMENTS)

# A change to any of these needs a new image; a change to the manifest alone only needs validation again.
IMAGE_INPUTS = frozenset({CODE, DOCKERFILE, REQUIREMENTS})


class ArtifactSet(BaseModel):
    """One revision of the generated files. Immutable by convention: stages return a new set."""

    files: dict[str, str] = Field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.files.get(name, "")

    def with_changes(self, changes: dict[str, str]) -> "ArtifactSet":
        merged = dict(self.files)
        merged.update(changes)
        return ArtifactSet(files=merged)

    def changed_files(self, other: "ArtifactSet") -> list[str]:
        names = sorted(set(self.files) | set(other.files))
        return [n for n in names if self.files.get(n, "") != other.files.get(n, "")]

    def write_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            if Path(name).name != name:  # names come from our own schema, but never trust a path
                raise ValueError(f"artifact name {name!r} is not a plain file name")
            (directory / name).write_text(content, encoding="utf-8")

    @classmethod
    def read_from(cls, directory: Path) -> "ArtifactSet":
        return cls(files={n: (directory / n).read_text(encoding="utf-8") for n in FILES if (directory / n).exists()})


def resume_outcome(changed: list[str]) -> Outcome | None:
    """Where a fix that changed these files resumes: the earliest stage they invalidate. None: nothing changed."""
    if not changed:
        return None
    if IMAGE_INPUTS & set(changed):
        return Outcome.RESUME_BUILD
    return Outcome.RESUME_VALIDATE
