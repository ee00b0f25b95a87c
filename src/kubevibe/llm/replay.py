"""Replay backend: answer from a recorded llm.jsonl, in order, to re-run a pipeline without a model.

The records are record.schema.LLMCallRecord lines, as `kubevibe.llm.call.ask` makes them: `purpose`, `model`,
and either `response` (an LLMResponse dump, written even when parsing the answer failed) or only `error` (the
call itself failed).
Each request must have the purpose of the next record; otherwise the pipeline took another path than the
recorded run and the remaining answers would be meaningless.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from pydantic import ValidationError

from kubevibe.errors import UsageError
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.record.rundir import LLM_FILE, RUN_FILE, load_run
from kubevibe.record.schema import LLMCallRecord, RunRecord
from kubevibe.settings import Settings

LOG_NAME = LLM_FILE


def _log_path(target: str | Path) -> Path:
    path = Path(target)
    return path / LOG_NAME if path.is_dir() else path


def read_replay_log(target: str | Path) -> list[LLMCallRecord]:
    path = _log_path(target)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else "cannot be read"
        raise UsageError(f"The replay log {path} {reason}: give a run directory or its {LOG_NAME}.") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise UsageError(f"Line {number} of the replay log {path} is not a JSON object.")
        try:
            records.append(LLMCallRecord.model_validate(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(f"Line {number} of the replay log {path} is not an LLM call record: "
                             f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}.") from None
    return records


def write_replay_log(path: str | Path, answers: list[tuple[str, str]]) -> Path:
    """Write an llm.jsonl that replays `answers` [(purpose, text), ...]; `path` may be a directory."""
    path = _log_path(path)
    with path.open("w", encoding="utf-8") as fh:
        for purpose, text in answers:
            response = LLMResponse(text=text, model="replay", backend="replay")
            record = LLMCallRecord(purpose=purpose, backend="replay", model="replay", response=response.model_dump())
            fh.write(json.dumps(record.dump(), ensure_ascii=False) + "\n")
    return path


def _recorded_run(run_dir: Path) -> RunRecord:
    """The recorded run's run.json, when the log sits in a run directory (else an empty record)."""
    try:
        return load_run(run_dir / RUN_FILE)
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return RunRecord()


def _recorded_strategy(run_dir: Path) -> str | None:
    """The generation strategy of the recorded run, read from its run.json when the log sits in a run directory."""
    strategy = _recorded_run(run_dir).strategy
    return strategy if strategy in ("scaffold", "full") else None


def _recorded_style(run_dir: Path) -> str | None:
    """The prompting style of the recorded run (run.json `style`), so a replay asks the way the run asked."""
    style = _recorded_run(run_dir).style
    return style if style in ("structured", "conversational") else None


class ReplayClient(LLMClient):
    backend = "replay"

    def __init__(self, records: list[LLMCallRecord], model: str, source: str = ""):
        super().__init__(model)
        self.records = records
        self.source = source
        self.used = 0

    @classmethod
    def from_settings(cls, target: str, settings: Settings) -> "ReplayClient":
        records = read_replay_log(target)
        recorded_model = next((r.model for r in records if r.model), None)
        client = cls(records, recorded_model or settings.model or "replay", str(_log_path(target)))
        client.recorded_strategy = _recorded_strategy(_log_path(target).parent)
        client.recorded_style = _recorded_style(_log_path(target).parent)
        return client

    def describe(self) -> str:
        return f"replay model={self.model} from {self.source} ({self.used}/{len(self.records)} answers used)"

    def chat(self, request: LLMRequest) -> LLMResponse:
        # A conversational turn is recorded like any call (with the messages sent): answered in order too.
        return self.complete(request)

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        if self.used >= len(self.records):
            raise LLMCallError(f"The replay log has no more answers ({self.used} used).")
        record = self.records[self.used]
        expected = record.purpose
        if expected != request.purpose:
            # Not consumed: the log stays where it diverged, so every later call reports the same place.
            raise LLMCallError(
                f"The replay diverged at answer {self.used + 1}: expected purpose {expected!r}, got {request.purpose!r}."
            )
        self.used += 1
        if record.response is None:
            if "error" in record.model_fields_set:
                raise LLMCallError(str(record.error))
            raise LLMCallError(f"Replay record {self.used} has neither a response nor an error.")
        if record.response.get("text_cut"):
            # Only refused answers are stored cut: replay the refusal, not a shortened text that might parse.
            raise LLMCallError(f"The recorded answer was refused: {record.error or 'it was unusable'}")
        try:
            response = LLMResponse.model_validate(record.response)
        except ValueError:
            raise LLMCallError(f"Replay record {self.used} has a malformed response.") from None
        # Keep the recorded tokens and timings (they describe the original run), but say who answered now.
        return response.model_copy(update={"backend": self.backend, "duration_s": round(time.monotonic() - started, 3)})
