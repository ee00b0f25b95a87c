"""Refine: the first stage of `kubevibe refine RUN "follow-up"`: the model changes the parent run's files.

The run starts with the parent's last good revision of the files (record/lineage.py) and the parent's intent. The
model is asked Fix-style for the smallest changes that do what the follow-up says, keeping every other behaviour;
it also declares the endpoints and test cases of the new behaviour, which join the intent's spec so Connect (and
the acceptance tests, when the run has them) check the new behaviour next to the old. Test cases whose behaviour the
follow-up explicitly changes are named in `retired_tests` and leave the spec (recorded in the evidence).

A refine edits whole files, so the run uses the `full` strategy whatever the parent's was (a scaffold model only
writes handler bodies). With the conversational style (KUBEVIBE_STYLE, issue 16) the follow-up is the next turn of
the parent's conversation (`kubevibe.stages.conversational.refine`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from kubevibe import prompts
from kubevibe.intent import Endpoint, Intent, TestCase
from kubevibe.llm.call import ask
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages import conversational
from kubevibe.stages.fix import FileChange

class RefineAnswer(BaseModel):
    explanation: str = ""
    changes: list[FileChange] = Field(default_factory=list)
    endpoints: list[Endpoint] = Field(default_factory=list)  # endpoints the change adds
    test_cases: list[TestCase] = Field(default_factory=list)  # tests of the new behaviour
    retired_tests: list[str] = Field(default_factory=list)  # names of existing tests the follow-up changes


def run(ctx: RunContext) -> StageResult:
    refine = ctx.state.refine or {}
    followup = refine.get("request") or ""
    base = ctx.artifacts
    if not base.files and refine.get("parent_dir") is not None:
        # A refine interrupted before its first answer resumes with no revision of its own: it starts again
        # from the parent's files.
        from kubevibe.record.rundir import RunDir

        parent = RunDir(Path(refine["parent_dir"]))
        base = ArtifactSet.read_from(parent.revision_dir(int(refine.get("parent_revision") or 0)))
    if ctx.settings.style == "conversational":
        return conversational.refine(ctx, followup, base)
    intent = Intent.model_validate(ctx.state.intent) if ctx.state.intent else None
    files = {n: base.get(n) for n in names.FILES}
    tests = [t.name for t in intent.spec.test_cases if t.name] if intent and intent.spec else []
    prompt = prompts.render("refine.j2", intent=intent.for_prompt() if intent else ctx.state.prompt,
                            followup=followup, files=files, test_names=tests)
    answer = ask(ctx, "refine", prompt, RefineAnswer, system=prompts.render("system.j2"))
    if not answer.ok:
        return StageResult.failed(f"the refine answer was unusable: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="refine answer", detail=answer.error or "")])
    refined = answer.value
    proposed = {c.file: c.content if c.content.endswith("\n") or not c.content else c.content + "\n"
                for c in refined.changes}
    new = base.with_changes(proposed)
    changed = new.changed_files(base)
    explanation = Evidence(kind="llm", title="refine explanation", detail=refined.explanation)
    if not changed:
        return StageResult.failed("the refine answer changed no file", evidence=[explanation])
    updates, spec_notes = _updated_intent(intent, refined)
    summary = f"changed {', '.join(changed)} for the follow-up: {refined.explanation.strip()[:200]}"
    return StageResult.ok(summary, artifacts=new, updates=updates, evidence=[explanation, *spec_notes],
                          metrics={"changed_files": changed, "new_tests": len(refined.test_cases),
                                   "retired_tests": refined.retired_tests})


def _updated_intent(intent: Intent | None, refined: RefineAnswer) -> tuple[dict, list[Evidence]]:
    """The intent with the new endpoints and tests (and without the retired ones), and notes saying what changed."""
    if intent is None or intent.spec is None:
        if refined.endpoints or refined.test_cases:
            return {}, [Evidence(kind="note", title="new tests not kept",
                                 detail="the parent run has no service spec, so there is nowhere to declare them")]
        return {}, []
    spec = intent.spec
    retired = set(refined.retired_tests)
    kept = [t for t in spec.test_cases if t.name not in retired]
    known = {(e.method.upper(), e.path) for e in spec.endpoints}
    endpoints = spec.endpoints + [e for e in refined.endpoints if (e.method.upper(), e.path) not in known]
    new_spec = spec.model_copy(update={"endpoints": endpoints, "test_cases": kept + refined.test_cases})
    notes = []
    if refined.test_cases:
        notes.append(Evidence(kind="note", title=f"{len(refined.test_cases)} test case(s) of the new behaviour added",
                              detail=", ".join(t.name or f"{t.method} {t.path}" for t in refined.test_cases)))
    if retired:
        notes.append(Evidence(kind="note", title="test cases retired by the follow-up",
                              detail=", ".join(sorted(retired))))
    return {"intent": intent.model_copy(update={"spec": new_spec}).model_dump(mode="json")}, notes
