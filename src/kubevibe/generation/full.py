"""The `full` generation strategy, the reference tool's way: one structured request for all four files."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kubevibe import prompts
from kubevibe.intent import Intent
from kubevibe.llm.call import ask
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.slo import objectives_text


class GeneratedArtifacts(BaseModel):
    """The reference tool's answer keys, so recorded answers of both tools read the same."""

    pythonfilecontent: str = Field(..., min_length=1)
    containerfilecontent: str = Field(..., min_length=1)
    yamlfilecontent: str = Field(..., min_length=1)
    requirements: str = ""

    def to_artifacts(self) -> ArtifactSet:
        return ArtifactSet(files={
            names.CODE: _ensure_newline(self.pythonfilecontent),
            names.DOCKERFILE: _ensure_newline(self.containerfilecontent),
            names.MANIFEST: _ensure_newline(self.yamlfilecontent),
            names.REQUIREMENTS: _ensure_newline(self.requirements),
        })


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def generate_full(ctx: RunContext) -> StageResult:
    intent = Intent.model_validate(ctx.state.intent)
    port = intent.spec.target_port if intent.spec else None
    objectives = objectives_text(ctx.state.slo, ctx.state.intent)
    prompt = prompts.render("generate.j2", intent=intent.for_prompt(objectives), port=port)
    answer = ask(ctx, "generate", prompt, GeneratedArtifacts, system=prompts.render("system.j2"))
    if not answer.ok:
        return StageResult.failed(f"generation failed: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="generation answer", detail=answer.error or "")])
    artifacts = answer.value.to_artifacts()
    sizes = ", ".join(f"{n} {len(c)}B" for n, c in artifacts.files.items())
    return StageResult.ok(f"generated {len(artifacts.files)} files ({sizes})", artifacts=artifacts)
