"""Which revision of a run is its "last good" one, and the chain of runs a refined run descends from.

The last good revision: of the revisions a run wrote (artifacts/rev-NNN), the one its pipeline verified furthest
(the latest stage of the main path, fsm.PIPELINE, that passed while it was the current revision), the later one
on a tie. A revision counts only once it was at least built: files that never became an image are no base to
refine or export. The record is events.jsonl: an event whose metrics carry "revision" made that revision current,
and every later "ok" of a main-path stage verified it, until the next revision.

Lineage: a refined run's run.json has `"parent": {"run": <path of the parent's directory, relative to the child's
directory>, "run_id": ..., "revision": N, "verified_to": STAGE}`; `chain()` follows those links to the first run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevibe.pipeline.fsm import PIPELINE, State
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import RunRecord, TransitionEvent

MAX_CHAIN = 100  # a chain longer than this is a loop in hand-edited records


@dataclass(frozen=True)
class GoodRevision:
    revision: int
    verified_to: State  # the furthest main-path stage that passed with these files


def stages_passed(events: list[TransitionEvent]) -> dict[int, int]:
    """revision -> index in PIPELINE of the furthest stage that passed while it was the current revision."""
    reached: dict[int, int] = {}
    current: int | None = None
    names = [s.value for s in PIPELINE]
    for event in events:
        if event.revision is not None:
            current = event.revision
            continue
        source = event.source
        if current is not None and event.result == "ok" and source in names:
            reached[current] = max(reached.get(current, -1), names.index(source))
    return reached


def last_good_revision(rundir: RunDir) -> GoodRevision | None:
    """The revision verified furthest (the later on a tie), if one was at least built; else None."""
    built = PIPELINE.index(State.BUILD)
    existing = set(rundir.revisions())
    candidates = [(index, rev) for rev, index in stages_passed(rundir.read_events()).items()
                  if index >= built and rev in existing]
    if not candidates:
        return None
    index, rev = max(candidates)
    return GoodRevision(revision=rev, verified_to=PIPELINE[index])


def parent_link(parent: Path, child: Path) -> str:
    """How a child's run.json names its parent: relative to the child's directory, so a moved runs tree still holds."""
    return os.path.relpath(parent.absolute(), child.absolute())


def parent_of(run_dir: Path, run: RunRecord) -> Path | None:
    link = (run.parent or {}).get("run")
    if not isinstance(link, str) or not link:
        return None
    path = Path(link)
    return path if path.is_absolute() else (run_dir / path).resolve()


def chain(run_dir: Path) -> list[dict[str, Any]]:
    """The ancestors of a run, nearest first: [{"run_id", "path", "prompt", "outcome", "found"}]."""
    out: list[dict[str, Any]] = []
    seen = {Path(run_dir).resolve()}
    current = Path(run_dir)
    try:
        run = RunDir.open(current).read_run()
    except Exception:  # noqa: BLE001 - an unreadable record has no chain to show
        return out
    while len(out) < MAX_CHAIN:
        parent = parent_of(current, run)
        if parent is None:
            break
        link = run.parent or {}
        if parent in seen or not (parent / "run.json").is_file():
            out.append({"run_id": link.get("run_id"), "path": str(parent), "prompt": None, "outcome": None,
                        "found": False})
            break
        seen.add(parent)
        run = RunDir(parent).read_run()
        out.append({"run_id": run.run_id, "path": str(parent), "prompt": run.prompt, "outcome": run.outcome,
                    "found": True})
        current = parent
    return out
