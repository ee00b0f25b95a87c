"""Fix: show the LLM the failing stage's evidence and the current files; apply its minimal changes.

The outcome says where the pipeline resumes: the earliest stage the changed files invalidate. A fix whose
LLM call fails, or that changes nothing, is a FAILED outcome: never counted as a success.
With FIXFZERO=1, and always with the scaffold strategy (whose model writes only handler bodies), the pipeline
regenerates instead (no LLM call here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kubevibe import prompts
from kubevibe.intent import Intent
from kubevibe.llm.call import ask
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import resume_outcome
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.pipeline.fsm import Outcome
from kubevibe.slo import objectives_text
from kubevibe.stages.evidence import evidence_budget, render_evidence

FileName = Literal["myapp.py", "Dockerfile", "vibe.yaml", "requirements.txt"]
assert set(FileName.__args__) == set(names.FILES)  # type: ignore[attr-defined]


class FileChange(BaseModel):
    file: FileName
    content: str


class FixAnswer(BaseModel):
    explanation: str = ""
    changes: list[FileChange] = Field(default_factory=list)


def run(ctx: RunContext) -> StageResult:
    failure = ctx.state.last_failure or {}
    if ctx.settings.fix_from_zero:
        return StageResult(outcome=Outcome.REGENERATE,
                           summary="FIXFZERO=1: discarding the artifacts and generating from scratch")
    if ctx.settings.style == "conversational":
        from kubevibe.stages import conversational

        return conversational.fix(ctx)
    if ctx.state.strategy == "scaffold":
        # The model only wrote the handler bodies, and a small model cannot edit whole files (measured: it
        # rewrites them wrongly). Its part is redone instead, with the next step's seed.
        return StageResult(outcome=Outcome.REGENERATE,
                           summary="scaffold strategy: the handler bodies are generated again")
    prompt = build_prompt(ctx, failure)
    answer = ask(ctx, "fix", prompt, FixAnswer, system=prompts.render("system.j2"))
    if not answer.ok:
        return StageResult.failed(f"the fix answer was unusable: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="fix answer", detail=answer.error or "")])
    fix = answer.value
    proposed = {c.file: c.content if c.content.endswith("\n") or not c.content else c.content + "\n"
                for c in fix.changes}
    new = ctx.artifacts.with_changes(proposed)
    changed = new.changed_files(ctx.artifacts)
    outcome = resume_outcome(changed)
    if outcome is None:
        return StageResult.failed(
            "the fix changed nothing", evidence=[Evidence(kind="llm", title="fix explanation", detail=fix.explanation)]
        )
    return StageResult(
        outcome=outcome,
        summary=f"changed {', '.join(changed)}: {fix.explanation.strip()[:200]}",
        artifacts=new,
        evidence=[Evidence(kind="llm", title="fix explanation", detail=fix.explanation)],
        metrics={"changed_files": changed},
    )


def build_prompt(ctx: RunContext, failure: dict) -> str:
    intent = Intent.model_validate(ctx.state.intent) if ctx.state.intent else None
    files = {n: ctx.artifacts.get(n) for n in names.FILES}
    evidence = [Evidence.model_validate(e) for e in failure.get("evidence", [])]
    budget = evidence_budget(ctx.settings.num_ctx, sum(len(c) for c in files.values()))
    return prompts.render(
        "fix.j2",
        stage=failure.get("stage", "unknown"),
        summary=failure.get("summary", ""),
        intent=intent.for_prompt(objectives_text(ctx.state.slo, ctx.state.intent)) if intent else ctx.state.prompt,
        evidence=render_evidence(evidence, budget),
        files=files,
        service_file=ctx.state.service_file,
        stand_ins=[f"{s.get('kind')}: {s.get('detail')}" for s in ctx.state.stand_ins],
    )
