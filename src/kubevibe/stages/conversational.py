"""Generate and Fix in the conversational style (KUBEVIBE_STYLE=conversational): one chat per run.

The request (the curated intent, when an intent method ran) opens the conversation; the model answers in prose
with one fenced block per file. Every failure is the next user turn, with the evidence Fix gets in the structured
style, and the model answers with the changed files only. No JSON schema is sent. The conversation lives in
RunState.conversation (returned as an update, written by the runner), so resume continues it and replay
reproduces it; each turn's llm.jsonl record holds the messages sent.
"""

from __future__ import annotations

from kubevibe import prompts
from kubevibe.intent import Intent
from kubevibe.llm.base import ChatMessage
from kubevibe.llm.call import ask_chat
from kubevibe.llm.chat_parse import ParsedFiles, parse_files
from kubevibe.llm.conversation import FILES_NOTE, Conversation, render_files
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet, resume_outcome
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages.evidence import evidence_budget, render_evidence

# A first answer must give these; requirements.txt may be left out (a service may need no package).
REQUIRED = (names.CODE, names.DOCKERFILE, names.MANIFEST)


def _conversation(ctx: RunContext) -> Conversation | None:
    data = getattr(ctx.state, "conversation", None)
    return Conversation.model_validate(data) if data else None


def _service_file(ctx: RunContext) -> str | None:
    """Where the service's Python file goes in the build context (contract 7: RunState.service_file, when the
    engine records one), else the logical name."""
    return getattr(ctx.state, "service_file", None) or None


def open_conversation(ctx: RunContext) -> Conversation:
    intent = Intent.model_validate(ctx.state.intent) if ctx.state.intent else None
    port = intent.spec.target_port if intent and intent.spec else None
    system = prompts.render("chat_system.j2", files=list(names.FILES))
    curated = intent.for_prompt() if intent and intent.method != "none" else ""
    opening = prompts.render("chat_open.j2", request=ctx.state.prompt, curated=curated, port=port)
    return Conversation(messages=[ChatMessage(role="system", content=system),
                                  ChatMessage(role="user", content=opening)])


def generate(ctx: RunContext) -> StageResult:
    conv = _conversation(ctx)
    # Generate again with files already made: FIXFZERO's regeneration, which starts the conversation afresh.
    if conv is None or ctx.artifacts.files:
        conv = open_conversation(ctx)
    else:  # the previous Generate's answer was unusable: say so in the next turn
        missing = [n for n in REQUIRED if n not in conv.files]
        conv.messages.append(ChatMessage(role="user", content=prompts.render(
            "chat_retry.j2", problem=conv.pending or "it did not give every file", missing=missing,
            files_note="")))
    answer = ask_chat(ctx, "generate", conv.messages, _as_named(conv, conv.files))
    if not answer.ok:
        return StageResult.failed(f"generation failed: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="generation turn", detail=answer.error or "")])
    conv.messages.append(ChatMessage(role="assistant", content=answer.text or ""))
    parsed = parse_files(answer.text, _service_file(ctx))
    conv.files.update(parsed.files)
    conv.names.update(parsed.names)
    metrics = _metrics(conv, parsed, answer.context)
    missing = [n for n in REQUIRED if n not in conv.files]
    if not parsed.ok or missing:
        conv.pending = parsed.problem or f"it did not give {', '.join(missing)}"
        return StageResult.failed(f"generation failed: {conv.pending}", evidence=[_evidence(parsed, answer.text)],
                                  updates=_updates(ctx, conv), metrics=metrics)
    conv.pending = None
    files = {n: conv.files.get(n, "") for n in names.FILES}
    sizes = ", ".join(f"{n} {len(c)}B" for n, c in files.items())
    return StageResult.ok(f"generated {len(files)} files in turn {conv.turns} of the conversation ({sizes})",
                          artifacts=ArtifactSet(files=files), evidence=[_evidence(parsed, None)],
                          updates=_updates(ctx, conv), metrics=metrics)


def fix(ctx: RunContext) -> StageResult:
    conv = _conversation(ctx) or open_conversation(ctx)  # a structured run resumed conversationally
    failure = ctx.state.last_failure or {}
    current = {n: ctx.artifacts.get(n) for n in names.FILES}
    evidence = [Evidence.model_validate(e) for e in failure.get("evidence", [])]
    budget = evidence_budget(ctx.settings.num_ctx, sum(len(c) for c in current.values()))
    turn = prompts.render("chat_failure.j2", stage=failure.get("stage", "unknown"), summary=failure.get("summary", ""),
                          evidence=render_evidence(evidence, budget), unusable=conv.pending or "",
                          files_note=_files_note(conv, current))
    conv.messages.append(ChatMessage(role="user", content=turn))
    conv.files = current
    answer = ask_chat(ctx, "fix", conv.messages, _as_named(conv, current))
    if not answer.ok:
        return StageResult.failed(f"the fix turn failed: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="fix turn", detail=answer.error or "")])
    conv.messages.append(ChatMessage(role="assistant", content=answer.text or ""))
    parsed = parse_files(answer.text, _service_file(ctx))
    new = ctx.artifacts.with_changes(parsed.files)
    changed = new.changed_files(ctx.artifacts)
    kept = [n for n in names.FILES if n not in parsed.files]
    metrics = _metrics(conv, parsed, answer.context) | {"changed_files": changed, "kept_files": kept}
    outcome = resume_outcome(changed)
    if outcome is None:
        conv.pending = parsed.problem or "every file it gave was the same as before"
        return StageResult.failed(f"the fix changed nothing: {conv.pending}", evidence=[_evidence(parsed, answer.text)],
                                  updates=_updates(ctx, conv), metrics=metrics)
    conv.pending = None
    conv.files = dict(new.files)
    conv.names.update(parsed.names)
    kept_note = f"; kept from the previous revision: {', '.join(kept)}" if kept else ""
    return StageResult(outcome=outcome, summary=f"changed {', '.join(changed)} in turn {conv.turns}{kept_note}",
                       artifacts=new, evidence=[_evidence(parsed, None)], updates=_updates(ctx, conv),
                       metrics=metrics)


def refine(ctx: RunContext, followup: str, base: ArtifactSet | None = None) -> StageResult:
    """`kubevibe refine` in the conversational style: the follow-up is the next turn of the parent's conversation
    (carried in RunState.conversation; a parent without one gets a fresh conversation with its files restated)."""
    base = base if base is not None else ctx.artifacts
    conv = _conversation(ctx) or open_conversation(ctx)
    current = {n: base.get(n) for n in names.FILES}
    conv.messages.append(ChatMessage(role="user", content=prompts.render(
        "chat_refine.j2", followup=followup, files_note=_files_note(conv, current))))
    conv.files = current
    answer = ask_chat(ctx, "refine", conv.messages, _as_named(conv, current))
    if not answer.ok:
        return StageResult.failed(f"the refine turn failed: {answer.error}",
                                  evidence=[Evidence(kind="llm", title="refine turn", detail=answer.error or "")])
    conv.messages.append(ChatMessage(role="assistant", content=answer.text or ""))
    parsed = parse_files(answer.text, _service_file(ctx))
    new = base.with_changes(parsed.files)
    changed = new.changed_files(base)
    metrics = _metrics(conv, parsed, answer.context) | {"changed_files": changed}
    if not changed:
        conv.pending = parsed.problem or "every file it gave was the same as before"
        return StageResult.failed(f"the refine turn changed no file: {conv.pending}",
                                  evidence=[_evidence(parsed, answer.text)], updates=_updates(ctx, conv),
                                  metrics=metrics)
    conv.pending = None
    conv.files = dict(new.files)
    conv.names.update(parsed.names)
    return StageResult.ok(f"changed {', '.join(changed)} for the follow-up in turn {conv.turns}", artifacts=new,
                          evidence=[_evidence(parsed, None)], updates=_updates(ctx, conv), metrics=metrics)


def _files_note(conv: Conversation, current: dict[str, str]) -> str:
    """When the files differ from what the conversation knows (a resumed run, a regeneration), restate them."""
    if all(conv.files.get(n, "") == c for n, c in current.items()):
        return ""
    return FILES_NOTE.replace("Earlier turns of our conversation were left out to fit the context. ", "") + \
        "\n\n" + render_files(_as_named(conv, {n: c for n, c in current.items() if c}))


def _as_named(conv: Conversation, files: dict[str, str]) -> dict[str, str]:
    """Files under the names the model gave them (app.py for the service, say), which the parser maps back."""
    return {(conv.names.get(n, n) if "+" not in conv.names.get(n, n) else n): c for n, c in files.items()}


def _updates(ctx: RunContext, conv: Conversation) -> dict:
    # The model's own name for the service file is kept in conv.names (and the step's metrics); where the file
    # goes in the build context (RunState.service_file, contract 7) is the engine's to decide from the Dockerfile.
    return {"conversation": conv.model_dump()}


def _metrics(conv: Conversation, parsed: ParsedFiles, context: dict) -> dict:
    return {"chat": {"turn": conv.turns, "parsed": parsed.record(), "context": context}}


def _evidence(parsed: ParsedFiles, answer: str | None) -> Evidence:
    lines = [f"files: {', '.join(f'{k} (as {parsed.names[k]})' for k in parsed.files) or 'none'}"]
    lines += [f"note: {n}" for n in parsed.notes] + [f"left out: {i}" for i in parsed.ignored]
    if parsed.problem:
        lines.append(f"problem: {parsed.problem}")
    if answer is not None:
        lines.append("answer (start):\n" + answer[:1500])
    return Evidence(kind="llm", title="conversational answer", detail="\n".join(lines))
