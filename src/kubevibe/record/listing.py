"""`kubevibe runs` (alias `ls`): the runs under a runs directory, newest first, with what each one showed.

Rows are read from each run's run.json only (no events), so listing hundreds of runs stays fast; a directory
whose run.json cannot be read is listed with outcome "unreadable" rather than hidden.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from pydantic import BaseModel

from kubevibe.record.rundir import load_run
from kubevibe.record.schema import RunRecord
from kubevibe.record.show import tests_from, verification_line


class RunRow(BaseModel):
    run_id: str
    path: str
    model: str | None
    outcome: str
    verdict: str  # one line: what was verified
    request: str
    created: str | None
    age_s: float | None
    parent: str | None  # the parent's run id, for a refined run


def verdict_text(run: RunRecord) -> str:
    verdict = run.verdict
    if isinstance(verdict, dict):  # issue 12's verdict, when present
        accepted = verdict.get("accepted")
        if isinstance(accepted, dict):
            return (f"accepted {accepted.get('passed')}/{accepted.get('total')} ({accepted.get('source')}); "
                    + verification_line(run.verified or {}, tests_from(run)))
    return verification_line(run.verified or {}, tests_from(run))


def _age(created: str | None, now: datetime) -> float | None:
    try:
        then = datetime.fromisoformat(created) if created else None
    except ValueError:
        return None
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (now - then).total_seconds())


def _stamp_of(name: str) -> str | None:
    """The creation time in a run directory's name (<UTC stamp>-<id>), for a run.json that cannot be read."""
    try:
        return datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).isoformat()
    except ValueError:
        return None


def row_of(run_dir: Path, now: datetime) -> RunRow:
    try:
        run = load_run(run_dir)
    except (OSError, ValueError, UnicodeDecodeError):  # pydantic's ValidationError is a ValueError
        created = _stamp_of(run_dir.name)
        return RunRow(run_id=run_dir.name, path=str(run_dir), model=None, outcome="unreadable", verdict="",
                      request="", created=created, age_s=_age(created, now), parent=None)
    return RunRow(run_id=str(run.run_id or run_dir.name), path=str(run_dir), model=run.model,
                  outcome=str(run.outcome or "unknown"), verdict=verdict_text(run),
                  request=" ".join(str(run.prompt or "").split()), created=run.created,
                  age_s=_age(run.created, now), parent=(run.parent or {}).get("run_id"))


def list_runs(runs_dir: Path, *, outcome: str | None = None, model: str | None = None,
              now: datetime | None = None) -> list[RunRow]:
    """runs_dir/<model>/<run>/run.json, newest first, filtered by outcome and model (exact, case-insensitive)."""
    now = now or datetime.now(timezone.utc)
    if not runs_dir.is_dir():
        return []
    rows = [row_of(d, now) for d in runs_dir.glob("*/*") if d.is_dir() and (d / "run.json").exists()]
    if outcome:
        rows = [r for r in rows if r.outcome.lower() == outcome.lower()]
    if model:
        rows = [r for r in rows if (r.model or "").lower() == model.lower() or Path(r.path).parent.name == model]
    return sorted(rows, key=lambda r: (r.created or "", r.run_id), reverse=True)


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
