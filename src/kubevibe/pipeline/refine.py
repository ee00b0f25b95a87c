"""`kubevibe refine RUN "follow-up"`: a new run that starts from an earlier run's last good files.

The new run is an ordinary run (its own directory, id, image tags, network/namespace), made by `new_session`, and
then pointed at the parent: its files are the parent's last good revision (record/lineage.py), its intent is the
parent's, its strategy is `full` (a refine edits whole files), and it starts at REFINE, which asks the model for
the change and goes on with Build. run.json gets `parent` (contract 5) and `refine`.

Settings: flag > environment > config file > the parent's value > default; inherited values are recorded with the
source "parent:<run id>". Not inherited: the runs directory (default: the parent's runs root, so the runs sit side
by side), --push, --tests, and a replay LLM spec (the parent's answers are not the refine's).

Acceptance tests: the parent's `acceptance/acceptance.tavern.yaml` is carried over (copied to the same place in
the new run, record kept: source, count, and `from_run`), unless the user passes `--tests` again, which replaces
them. When the acceptance stage is present (RunState.acceptance, issue 12), the carried record is the run's frozen
tests, and a new `--tests` goes through its own `tests` setting; without it the file still sits where that stage
reads it, so `export` and later refines find it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from kubevibe.errors import UsageError
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.pipeline.context import RunState
from kubevibe.pipeline.fsm import REFINE_START
from kubevibe.pipeline.session import MAX_PROMPT_CHARS, Session, new_session
from kubevibe.record.lineage import last_good_revision, parent_link
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import RunRecord
from kubevibe.settings import ResolvedSettings, Settings

ACCEPTANCE_FILE = Path("acceptance") / "acceptance.tavern.yaml"  # contract 3
NOT_INHERITED = frozenset({"runs_dir", "push", "tests"})


def check_followup(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise UsageError('The follow-up request is empty: say what to change, e.g. kubevibe refine RUN "add an '
                         'endpoint GET /cards that lists the supported card types".')
    if len(text) > MAX_PROMPT_CHARS:
        raise UsageError(f"The follow-up request is {len(text)} characters long; at most {MAX_PROMPT_CHARS} are "
                         "accepted.")
    return text


def inherit_settings(resolved: ResolvedSettings, parent_run: RunRecord, parent: RunDir) -> ResolvedSettings:
    """Fill what the user left at its default with the parent's value."""
    parent_values = parent_run.settings or {}
    values = resolved.settings.model_dump()
    sources = dict(resolved.sources)
    for name in Settings.model_fields:
        if sources.get(name, "default") != "default" or name in NOT_INHERITED or name not in parent_values:
            continue
        if name == "llm" and str(parent_values[name]).startswith("replay:"):
            continue
        values[name], sources[name] = parent_values[name], f"parent:{parent.run_id}"
    if sources.get("runs_dir", "default") == "default":
        values["runs_dir"], sources["runs_dir"] = parent.path.parent.parent, f"parent:{parent.run_id}"
    try:
        settings = Settings.model_validate(values)
    except ValueError:  # a parent recorded by another version: keep what the user resolved now
        return resolved
    return resolved.model_copy(update={"settings": settings, "sources": sources})


def count_tavern_tests(path: Path) -> int:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return 0
    return sum(1 for d in docs if isinstance(d, dict) and "stages" in d)


def refine_session(parent_path: Path, followup: str, resolved: ResolvedSettings, tests: Path | None = None) -> Session:
    followup = check_followup(followup)
    if not Path(parent_path).is_dir():
        raise UsageError(f"There is no run at {parent_path}: give the directory of the run to refine "
                         "(kubevibe runs lists them).")
    parent = RunDir.open(Path(parent_path))
    parent_run = parent.read_run()
    good = last_good_revision(parent)
    if good is None:
        raise UsageError(f"Run {parent.run_id} did not get far enough to refine: none of its file revisions was "
                         "ever built. Run the request again instead.")
    if tests is not None and not tests.is_file():
        raise UsageError(f"The tests file {tests} does not exist.")
    parent_state = _parent_state(parent)
    intent = parent_run.intent or parent_state.get("intent")

    has_tests_setting = "tests" in Settings.model_fields
    user_tests = tests is not None
    carried = parent.path / ACCEPTANCE_FILE
    resolved = inherit_settings(resolved, parent_run, parent)
    if has_tests_setting and user_tests:
        resolved = _with_setting(resolved, "tests", tests.absolute(), "flag")

    session = new_session(followup, resolved)
    ctx, rundir = session.ctx, session.ctx.rundir
    acceptance = _carry_acceptance(rundir, parent, parent_run, tests if user_tests else None, carried,
                                   stage_takes_tests=has_tests_setting)
    ctx.artifacts = ArtifactSet.read_from(parent.revision_dir(good.revision))
    ctx.state = _refine_state(ctx.state, followup, parent, parent_run, parent_state, intent, good.revision)
    if acceptance and "acceptance" in RunState.model_fields:
        ctx.state = ctx.state.model_copy(update={"acceptance": acceptance})
    session.start = REFINE_START

    run = rundir.read_run()
    run.strategy = ctx.state.strategy
    run.parent = {"run": parent_link(parent.path, rundir.path), "run_id": parent.run_id,
                  "revision": good.revision, "verified_to": str(good.verified_to)}
    run.refine = {"request": followup, "parent_prompt": parent_run.prompt}
    if acceptance:
        run.acceptance = acceptance
    rundir.write_run(run)
    return session


def _with_setting(resolved: ResolvedSettings, name: str, value: Any, source: str) -> ResolvedSettings:
    settings = Settings.model_validate({**resolved.settings.model_dump(), name: value})
    return resolved.model_copy(update={"settings": settings, "sources": {**resolved.sources, name: source}})


def _parent_state(parent: RunDir) -> dict[str, Any]:
    try:
        return parent.read_checkpoint().state or {}
    except UsageError:  # no checkpoint, or a damaged one: the parent's state is unknown
        return {}


def _refine_state(state: RunState, followup: str, parent: RunDir, parent_run: RunRecord,
                  parent_state: dict[str, Any], intent: dict[str, Any] | None, revision: int) -> RunState:
    parent_prompt = parent_run.prompt or parent_state.get("prompt") or ""
    updates: dict[str, Any] = {
        # What the service is asked to be now: the original request and the follow-up.
        "prompt": f"{parent_prompt}\n\nFollow-up: {followup}" if parent_prompt else followup,
        "intent": intent,
        "strategy": "full",
        "reference": parent_run.reference,
        "refine": {"request": followup, "parent_run_id": parent.run_id, "parent_revision": revision,
                   "parent_dir": str(parent.path)},
    }
    # Where the service file is written in the build context (issue 13), when this build records it.
    service_file = parent_run.service_file or parent_state.get("service_file")
    if "service_file" in RunState.model_fields and service_file:
        updates["service_file"] = service_file
    # The conversational style (issue 16) continues the parent's conversation with the follow-up as the next turn.
    if "conversation" in RunState.model_fields and parent_state.get("conversation"):
        updates["conversation"] = parent_state["conversation"]
    return state.model_copy(update=updates)


def _carry_acceptance(rundir: RunDir, parent: RunDir, parent_run: RunRecord, user_tests: Path | None,
                      carried: Path, *, stage_takes_tests: bool) -> dict[str, Any] | None:
    """Copy the acceptance tests this run starts with to ACCEPTANCE_FILE; their run.json record (contract 3)."""
    if user_tests is not None:
        if stage_takes_tests:
            return None  # the acceptance stage freezes --tests itself and records it
        source_file, record = user_tests, {"source": "user"}
    elif carried.is_file() and not carried.is_symlink():
        previous = parent_run.acceptance or {}
        source_file, record = carried, {"source": previous.get("source") or "user", "from_run": parent.run_id}
    else:
        return None
    destination = rundir.path / ACCEPTANCE_FILE
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_file, destination)
    return {**record, "file": ACCEPTANCE_FILE.as_posix(), "tests": count_tavern_tests(destination)}
