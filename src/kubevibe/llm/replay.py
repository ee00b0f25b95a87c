"""Replay backend: answer from a recorded llm.jsonl, in order, to re-run a pipeline without a model.

The records are the ones `kubevibe.llm.call.ask` writes: `purpose`, `model`, and either `response` (an
LLMResponse dump, written even when parsing the answer failed) or only `error` (the call itself failed).
Each request must have the purpose of the next record; otherwise the pipeline took another path than the
recorded run and the remaining answers would be meaningless.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubevibe.errors import UsageError
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.settings import Settings

LOG_NAME = "llm.jsonl"


def _log_path(target: str | Path) -> Path:
    path = Path(target)
    return path / LOG_NAME if path.is_dir() else path


def read_replay_log(target: str | Path) -> list[dict[str, Any]]:
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
        records.append(record)
    return records


def write_replay_log(path: str | Path, answers: list[tuple[str, str]]) -> Path:
    """Write an llm.jsonl that replays `answers` [(purpose, text), ...]; `path` may be a directory."""
    path = _log_path(path)
    with path.open("w", encoding="utf-8") as fh:
        for purpose, text in answers:
            response = LLMResponse(text=text, model="replay", backend="replay")
            record = {"purpose": purpose, "backend": "replay", "model": "replay", "response": response.model_dump()}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _recorded_run(run_dir: Path) -> dict[str, Any]:
    """The recorded run's run.json, when the log sits in a run directory (else empty)."""
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}


def _recorded_strategy(run_dir: Path) -> str | None:
    """The generation strategy of the recorded run, read from its run.json when the log sits in a run directory."""
    strategy = _recorded_run(run_dir).get("strategy")
    return strategy if strategy in ("scaffold", "full") else None


def _recorded_style(run_dir: Path) -> str | None:
    """The prompting style of the recorded run (run.json `style`), so a replay asks the way the run asked."""
    style = _recorded_run(run_dir).get("style")
    return style if style in ("structured", "conversational") else None


class ReplayClient(LLMClient):
    backend = "replay"

    def __init__(self, records: list[dict[str, Any]], model: str, source: str = ""):
        super().__init__(model)
        self.records = records
        self.source = source
        self.used = 0

    @classmethod
    def from_settings(cls, target: str, settings: Settings) -> "ReplayClient":
        records = read_replay_log(target)
        recorded_model = next((r["model"] for r in records if isinstance(r.get("model"), str)), None)
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
        expected = record.get("purpose")
        if expected != request.purpose:
            # Not consumed: the log stays where it diverged, so every later call reports the same place.
            raise LLMCallError(
                f"The replay diverged at answer {self.used + 1}: expected purpose {expected!r}, got {request.purpose!r}."
            )
        self.used += 1
        if "response" not in record:
            if "error" in record:
                raise LLMCallError(str(record["error"]))
            raise LLMCallError(f"Replay record {self.used} has neither a response nor an error.")
        try:
            response = LLMResponse.model_validate(record["response"])
        except ValueError:
            raise LLMCallError(f"Replay record {self.used} has a malformed response.") from None
        # Keep the recorded tokens and timings (they describe the original run), but say who answered now.
        return response.model_copy(update={"backend": self.backend, "duration_s": round(time.monotonic() - started, 3)})
