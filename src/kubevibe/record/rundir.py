"""The run directory: runs/<model>/<UTC timestamp>-<short id>/, everything a run did, never overwritten.

Layout:
  run.json            settings (with sources), limits, model, versions, outcome, verification summary
  events.jsonl        one line per transition: step, from, to, result, duration, reason
  llm.jsonl           every LLM request and response, with token counts and timings
  state.json          checkpoint after every stage (RunState, counters, next state) for `kubevibe resume`
  artifacts/rev-NNN/  every revision of the generated files
  steps/NNN-stage/    per stage execution: evidence.json, commands.log, stage outputs
  chart/              the Helm chart, and <name>-<version>.tgz

The schema of run.json, events.jsonl, llm.jsonl and state.json is record/schema.py; RunDir writes and reads them
as those models. The writers are called by the runner (each stage's transition, checkpoint and LLM calls, and
the end of run.json) and by what starts or closes a run around it: the session (run.json at the start, a resume's
entry), refine (the parent link) and --push (run.json `push`). Readers (show, runs, resume, the store, the
report, gc, export, replay) use the typed readers here or `load_run()`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubevibe.errors import UsageError
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.record.schema import Checkpoint, LLMCallRecord, RunRecord, TransitionEvent

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
LLM_FILE = "llm.jsonl"
CHECKPOINT_FILE = "state.json"
CHART_DIR = "chart"


def _valid_lines(lines: list[dict[str, Any]], model: type[TransitionEvent] | type[LLMCallRecord]) -> list[Any]:
    """The lines that fit the model; a hand-damaged line is skipped like a line cut by a crash."""
    out = []
    for line in lines:
        try:
            out.append(model.model_validate(line))
        except ValidationError:
            continue
    return out


def load_run(path: Path) -> RunRecord:
    """The run.json at `path` (a run directory or the file). Raises OSError or ValueError (a damaged file;
    pydantic's ValidationError is one): for readers that skip what they cannot read (listing, gc, replay)."""
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{file} holds a JSON {type(data).__name__}, not an object")
    return RunRecord.model_validate(data)


def safe_component(text: str) -> str:
    """A path component from a model name: `/`, `:` and anything odd become `_`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"
    return cleaned[:100]


def utc_stamp(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


class RunDir:
    def __init__(self, path: Path):
        # Absolute, because stages run commands with other working directories (a relative path breaks there).
        self.path = Path(path).absolute()
        self._lock = threading.Lock()
        self._owner_fd: int | None = None

    # -- creation -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, runs_root: Path, model: str) -> "RunDir":
        parent = runs_root / safe_component(model)
        parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            # 40 random bits: run ids name global resources (pods, networks, image tags), not only directories.
            run_id = secrets.token_hex(5)
            path = parent / f"{utc_stamp()}-{run_id}"
            try:
                path.mkdir()  # atomic: two runs can never share a directory
            except FileExistsError:
                continue
            made = cls(path)
            made.reserve_space()
            return made
        raise RuntimeError(f"could not create a unique run directory under {parent}")

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        if not (path / "run.json").is_file():
            raise UsageError(f"{path} is not a KubeVibe run directory (no run.json).")
        return cls(path)

    # -- ownership ------------------------------------------------------------------------------------
    LOCK_FILE = "owner.lock"

    def acquire(self) -> None:
        """Become the one process that writes this run directory, until `release()` or this process ends.

        An flock on owner.lock: the kernel drops it when the process dies (even by kill -9), so a stale lock
        never blocks a resume. The file also says who holds it (pid, start time, boot id) for the message.
        """
        from kubevibe import owner

        fd = os.open(self.path / self.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._lock_holder(fd)
            os.close(fd)
            who = f"process {holder['pid']}" if holder.get("pid") else "another process"
            raise UsageError(f"Run {self.run_id} is in use by {who}, which is still running; wait until it ends "
                             "(or stop it) before resuming it.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner.current().model_dump()) + "\n").encode(), 0)
        self._owner_fd = fd

    RESERVE_FILE = ".reserve"
    RESERVE_BYTES = 256 * 1024

    def reserve_space(self) -> None:
        """Set aside room for the end of the record: if the disk fills up during the run, `free_reserve()`
        gives it back so that run.json can still say how the run ended."""
        try:
            with open(self.path / self.RESERVE_FILE, "wb") as fh:
                fh.write(b"\0" * self.RESERVE_BYTES)
        except OSError:
            (self.path / self.RESERVE_FILE).unlink(missing_ok=True)
            raise

    def free_reserve(self) -> None:
        (self.path / self.RESERVE_FILE).unlink(missing_ok=True)

    def release(self) -> None:
        self.free_reserve()
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # closing drops the flock
            self._owner_fd = None

    @staticmethod
    def _lock_holder(fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def run_id(self) -> str:
        return self.path.name

    # -- paths ----------------------------------------------------------------------------------------
    def step_dir(self, step: int, stage: str) -> Path:
        return self.path / "steps" / f"{step:03d}-{str(stage).lower()}"

    def revision_dir(self, rev: int) -> Path:
        return self.path / "artifacts" / f"rev-{rev:03d}"

    def revisions(self) -> list[int]:
        root = self.path / "artifacts"
        if not root.is_dir():
            return []
        return sorted(int(p.name[4:]) for p in root.iterdir() if re.fullmatch(r"rev-\d{3,}", p.name))

    # -- writers (called by the runner and the session only) --------------------------------------------
    def write_revision(self, artifacts: ArtifactSet) -> int:
        revs = self.revisions()
        rev = (revs[-1] + 1) if revs else 0
        artifacts.write_to(self.revision_dir(rev))
        return rev

    def append_event(self, event: TransitionEvent) -> None:
        self._append(EVENTS_FILE, event.dump())

    def append_llm_call(self, call: LLMCallRecord) -> None:
        self._append(LLM_FILE, call.dump())

    def write_run(self, run: RunRecord) -> None:
        self.write_json(RUN_FILE, run.dump())

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.write_json(CHECKPOINT_FILE, checkpoint.dump())

    def fresh_chart_dir(self) -> Path:
        """<run>/chart/, empty: the whole directory is the Chart stage's output, so an earlier attempt's files
        go (a symlink put there is left alone, never followed)."""
        root = self.path / CHART_DIR
        if root.is_dir() and not root.is_symlink():
            shutil.rmtree(root)
        return root

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock, (self.path / name).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def write_json(self, name: str, data: Any) -> None:
        """Atomic replace, so a crash never leaves a half-written run.json or state.json."""
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    # -- readers --------------------------------------------------------------------------------------
    def read_run(self) -> RunRecord:
        return self._validated(RUN_FILE, RunRecord)

    def read_checkpoint(self) -> Checkpoint:
        return self._validated(CHECKPOINT_FILE, Checkpoint)

    def read_events(self) -> list[TransitionEvent]:
        return _valid_lines(self.read_jsonl(EVENTS_FILE), TransitionEvent)

    def read_llm_calls(self) -> list[LLMCallRecord]:
        return _valid_lines(self.read_jsonl(LLM_FILE), LLMCallRecord)

    def _validated(self, name: str, model: type[RunRecord] | type[Checkpoint]) -> Any:
        data = self.read_json(name)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the top level"
            raise UsageError(f"{self.path / name} is damaged: {where}: {first['msg']}.") from None

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{path} does not exist.") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise UsageError(f"{path} is damaged: it is not valid JSON ({str(exc).splitlines()[0][:100]}).") from None
        except OSError as exc:
            raise UsageError(f"{path} cannot be read: {exc.strerror or exc}.") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path} is damaged: it holds a JSON {type(data).__name__}, not an object.")
        return data

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # A line cut by a crash: keep what is readable.
                continue
            if isinstance(record, dict):  # a line that is JSON but not an object is no record either
                out.append(record)
        return out
