"""The schema of the run record: run.json, events.jsonl, llm.jsonl and state.json as pydantic models.

Versioned: run.json and state.json carry `record_version` (RECORD_VERSION when this tool wrote them; absent in
runs recorded before the schema existed, which still read). The lines of events.jsonl and llm.jsonl are versioned
by their run's run.json. Every model allows unknown keys, so a record written by another version keeps them
through a read and a rewrite (resume, refine, push), and keys this schema does not name still show.

Only the runner writes these (through record.rundir.RunDir); everything else reads them through these models.
A model dumped with `dump()` gives back exactly the keys that were set or read, so rewriting a record never adds
keys that were not in it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RECORD_VERSION = 1


class _Record(BaseModel):
    # extra="allow": old and newer records keep their keys; populate_by_name: `from`/`schema` are aliases.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The record as it is written: the keys set (or read) only, under their file names. Only the top level is
        filtered: a nested model (Counters) is written whole."""
        names = {(info.alias or name): name for name, info in type(self).model_fields.items()}
        kept = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in self.model_dump(by_alias=True).items() if names.get(key, key) in kept}


class Counters(BaseModel):
    """The runner's counters, in state.json and at the end of run.json."""

    steps: int = 0  # stage executions so far (N limits this)
    fix_attempts: int = 0
    consecutive_failures: int = 0  # failed executions since the last successful pipeline stage
    elapsed_s: float = 0.0  # time spent in earlier sessions of this run (before a resume)


class RunRecord(_Record):
    """run.json: how the run was started (written at its start), how it ended (written at its end).

    Fields are in the order the file shows them. The end fields are None until the run ends."""

    record_version: int | None = None  # None: recorded before the schema was versioned
    # -- the start (pipeline/session.py) ---------------------------------------------------------------
    run_id: str | None = None
    prompt: str | None = None
    created: str | None = None  # ISO time, seconds
    outcome: str | None = None  # "running", then "success", "unverified", "fail", "interrupted", "error"
    llm: dict[str, Any] | None = None  # backend, model, spec, choice, describe
    strategy: str | None = None
    style: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # Settings as data (mode="json")
    sources: dict[str, Any] | None = None  # where each setting came from
    config_file: Any = None
    limits: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    slo: dict[str, Any] | None = None  # the --slo file's objectives, when one was given
    acceptance: dict[str, Any] | None = None  # the frozen acceptance tests: source, file, tests
    owner: dict[str, Any] | None = None
    resumed: list[dict[str, Any]] | None = None  # one entry per `kubevibe resume`
    parent: dict[str, Any] | None = None  # a refined run: run (relative path), run_id, revision, verified_to
    refine: dict[str, Any] | None = None  # a refined run: request, parent_prompt
    # -- the end (pipeline/runner.py) ------------------------------------------------------------------
    final_state: str | None = None
    reason: str | None = None
    hint: str | None = None
    finished: str | None = None
    counters: dict[str, Any] | None = None  # Counters as data
    verified: dict[str, Any] | None = None
    intent: dict[str, Any] | None = None
    image: str | None = None
    chart: str | None = None
    reference: str | None = None
    load: dict[str, Any] | None = None
    service_file: str | None = None
    stand_ins: list[dict[str, Any]] | None = None
    verdict: dict[str, Any] | None = None  # record.verdict.make_verdict, plus "slo"
    test_writer: dict[str, Any] | None = None
    push: dict[str, Any] | None = None  # --push / publish.record_push

    @property
    def model(self) -> str | None:
        """The model's name, from the `llm` record."""
        return (self.llm or {}).get("model") if isinstance(self.llm, dict) else None


class TransitionEvent(_Record):
    """One line of events.jsonl: a transition (from -> to), or a stop (to None: interrupted, error, limit,
    cleanup-failed, signal), or a resume (from None, result "resumed")."""

    time: str | None = None
    step: int | None = None
    source: str | None = Field(default=None, alias="from")
    to: str | None = None
    result: str | None = None  # an Outcome, or "resumed", "interrupted", "error", "cleanup-failed", "signal"
    duration_s: float | None = None
    reason: str | None = None
    metrics: dict[str, Any] | None = None  # only when the stage reported some (and "revision" when it made one)
    cleanup_errors: list[str] | None = None  # only on a stop whose cleanups failed

    @property
    def revision(self) -> int | None:
        """The revision this event's stage made current, if it made one."""
        value = (self.metrics or {}).get("revision")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class LLMCallRecord(_Record):
    """One line of llm.jsonl: one request, its response (or error), and what was done with the answer.

    llm/call.py builds these and hands them to the run context; the runner's writer appends them at once, so a
    stage that crashes after a call still leaves the call on the record. A replay log written by
    llm.replay.write_replay_log has only purpose, backend, model and response."""

    time: str | None = None
    step: int | None = None
    stage: str | None = None
    purpose: str | None = None
    style: str | None = None  # "conversational" for the chat style; absent for the structured style
    backend: str | None = None
    model: str | None = None
    request: dict[str, Any] | None = None  # LLMRequest as data, without the schema and the deadline
    schema_name: str | None = Field(default=None, alias="schema")  # the answer's pydantic model
    deadline_s: float | None = None
    messages: list[dict[str, Any]] | None = None  # the conversation as sent (chat style)
    context: dict[str, Any] | None = None  # what fit_to_context sent and dropped (chat style)
    response: dict[str, Any] | None = None  # LLMResponse as data (a refused long answer cut, text_cut=True)
    ok: bool | None = None
    error: str | None = None
    duration_s: float | None = None  # only when the call failed (a response carries its own timings)

    @property
    def completion_tokens(self) -> int:
        return int((self.response or {}).get("completion_tokens") or 0)


class Checkpoint(_Record):
    """state.json: what `kubevibe resume` continues from, written after every stage.

    Every field has a default so that readers of a part (export and refine read `state` only) take a partial or
    hand-made file; resume checks with `missing()` that the whole checkpoint is there."""

    record_version: int | None = None
    next_state: str | None = None
    counters: Counters = Field(default_factory=Counters)
    state: dict[str, Any] = Field(default_factory=dict)  # pipeline.context.RunState as data
    revision: int | None = None  # the current artifacts revision, None before the first

    def missing(self) -> list[str]:
        """The keys resume needs that the file did not have."""
        return [key for key in ("next_state", "counters", "state") if key not in self.model_fields_set]
