"""Run an experiment: every cell of the matrix as its own `kubevibe run` subprocess, a bounded number at a time.

The experiment directory (default experiments/<plan name>/):
  plan.yaml           the normalized plan; continuing with a different plan is refused
  experiment.sqlite   the results (see store.py)
  config/model-N.toml the run settings the plan gives model N (passed with --config)
  prompts/NNN.txt     the prompts (passed with --prompt-file)
  runs/<cell key>/    the run directories of one cell (kubevibe run --runs-dir), so a run can always be found
                      from its cell, even when the experiment process died before it could record it
  logs/<cell key>.log what the subprocess printed (stdout: its JSON summary; stderr: errors)

Isolation. Each run is a separate process in its own session: a crash or a Ctrl-C of one run cannot take the
others down, and each run's own cleanups (deployments, networks) run. Runs never share a directory (one
runs/<cell key>/ per cell, created atomically by RunDir.create) and name their images, pods and networks after
their run id. Settings come only from the plan: the subprocess gets no KUBEVIBE_*/MODEL/N/TIMEOUT/... variables
of the caller and runs in the experiment directory (so no ./kubevibe.toml is picked up); each run.json records
where every setting came from.

Continuing. Running the same command again continues the experiment: a cell whose run ended with success,
fail or error is never run again (`--retry-errors` reruns the error ones from scratch: an error is the tool's,
not the model's). An interrupted run is *resumed* (`kubevibe resume`): its completed stages, counters and
limits carry over and the interrupted stage runs again, exactly as a resumed single run; the interruption is
not something the model did, and starting over would throw away work and bias long runs out of the sample.
When the run cannot be resumed (it stopped before its first stage, or used up its time limit), or with
`--restart-interrupted`, the cell starts a fresh run; the old directory stays, the cell points to the new one.

Where the runs execute is the backend's business (backends.py): local processes by default, or Ray tasks on a
cluster (`--executor ray`, ray_backend.py); either way the run directories land in runs/<cell key>/ here.

Ctrl-C. The first Ctrl-C (or SIGTERM) stops launching runs and forwards SIGINT to every running one, then waits
for them to clean up; they are recorded as interrupted. A second Ctrl-C kills them (their cleanups may not run).
A lock (experiment.lock, held by the experiment and inherited by its runs) keeps a second experiment process
away from the directory while any of them lives.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from kubevibe import __version__
from kubevibe.errors import UsageError
from kubevibe.experiments.backends import CellBackend, CellHandle, CellJob, LocalProcesses
from kubevibe.experiments.matrix import RunSpec, expand
from kubevibe.experiments.metrics import FINISHED
from kubevibe.experiments.plan import ExperimentPlan, validate_plan
from kubevibe.experiments.store import DB_NAME, Store
from kubevibe.text import last_line

PLAN_NAME = "plan.yaml"
LOCK_NAME = "experiment.lock"
POLL_S = 0.1
EXIT_INTERRUPTED = 130

Progress = Callable[[str], None]


# -- the directory --------------------------------------------------------------------------------------------
@dataclass
class ExperimentDir:
    path: Path

    @property
    def plan_file(self) -> Path:
        return self.path / PLAN_NAME

    @property
    def db_file(self) -> Path:
        return self.path / DB_NAME

    @property
    def runs(self) -> Path:
        return self.path / "runs"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def config_file(self, model_index: int) -> Path:
        return self.path / "config" / f"model-{model_index}.toml"

    def prompt_file(self, prompt_index: int) -> Path:
        return self.path / "prompts" / f"{prompt_index:03d}.txt"

    def tests_file(self, prompt_index: int, source: Path) -> Path:
        """The experiment's own copy of a prompt's acceptance tests (made once), so a cell's inputs all live in
        the experiment directory wherever the cell runs."""
        copy = self.path / "tests" / f"{prompt_index:03d}.tavern.yaml"
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(source.read_bytes())
        return copy

    def cell_runs(self, key: str) -> Path:
        return self.runs / key

    def run_dirs(self, key: str) -> list[Path]:
        """The run directories of a cell, oldest first (names start with a UTC timestamp)."""
        root = self.cell_runs(key)
        if not root.is_dir():
            return []
        return sorted((p.parent for p in root.glob("*/*/run.json")), key=lambda p: p.name)

    def is_experiment(self) -> bool:
        return self.plan_file.is_file()


def default_dir(plan: ExperimentPlan) -> Path:
    return Path("experiments") / plan.name


def read_saved_plan(exp: ExperimentDir) -> ExperimentPlan:
    data = yaml.safe_load(exp.plan_file.read_text(encoding="utf-8"))
    return validate_plan(data, base_dir=exp.path.resolve(), source=f"Plan {exp.plan_file}")


def check_same_plan(exp: ExperimentDir, plan: ExperimentPlan) -> None:
    saved = yaml.safe_load(exp.plan_file.read_text(encoding="utf-8")) or {}
    saved_identity = {k: v for k, v in saved.items() if k != "workers"}
    # A plan saved before a field existed (e.g. `styles`) has that field's default.
    for name, info in ExperimentPlan.model_fields.items():
        if name != "workers" and name not in saved_identity:
            saved_identity[name] = info.get_default(call_default_factory=True)
    mine = plan.identity()
    differ = sorted(k for k in set(saved_identity) | set(mine) if saved_identity.get(k) != mine.get(k))
    if differ:
        raise UsageError(f"{exp.path} holds an experiment with a different plan ({', '.join(differ)} differ); "
                         "continue it with its own plan (kubevibe experiment " + str(exp.path) + ") or give "
                         "another --dir.")


def prepare(exp: ExperimentDir, plan: ExperimentPlan) -> None:
    """Create the directory, or check that it holds this very plan."""
    if exp.is_experiment():
        check_same_plan(exp, plan)
    elif exp.path.exists() and any(exp.path.iterdir()):
        raise UsageError(f"{exp.path} exists and is not an experiment directory (no {PLAN_NAME}); give another --dir.")
    for sub in (exp.runs, exp.logs, exp.path / "config", exp.path / "prompts"):
        sub.mkdir(parents=True, exist_ok=True)
    if not exp.is_experiment():
        tmp = exp.plan_file.with_suffix(".tmp")
        tmp.write_text(f"# KubeVibe experiment plan (normalized); kubevibe {__version__}\n" + plan.to_yaml(),
                       encoding="utf-8")
        os.replace(tmp, exp.plan_file)
    for i, model in enumerate(plan.models):
        _write_if_changed(exp.config_file(i), settings_toml(plan.run_settings(model), model.name))
    for i, prompt in enumerate(plan.prompts):
        _write_if_changed(exp.prompt_file(i), prompt + "\n")


def settings_toml(settings: dict[str, Any], label: str) -> str:
    lines = [f"# run settings of model {json.dumps(label, ensure_ascii=False)} (written by kubevibe experiment)",
             "[kubevibe]"]
    for key, value in sorted(settings.items()):
        if value is None or key == "seed":  # the seed goes per repetition, as a flag
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


# -- the matrix with its state --------------------------------------------------------------------------------
@dataclass
class CellState:
    spec: RunSpec
    status: str
    run_dir: Path | None = None


def matrix_status(exp: ExperimentDir | None, plan: ExperimentPlan) -> list[CellState]:
    """Every cell with its status in the experiment directory (pending when there is none yet)."""
    cells = expand(plan)
    rows: dict[str, dict] = {}
    if exp is not None and exp.db_file.is_file():
        with Store(exp.db_file, base_dir=exp.path, readonly=True) as store:
            rows = {r["cell_key"]: r for r in store.runs()}
    return [CellState(c, rows.get(c.key, {}).get("status", "pending")) for c in cells]


# -- running --------------------------------------------------------------------------------------------------
@dataclass
class Running:
    cell: RunSpec
    handle: CellHandle
    started: float
    resume_dir: Path | None
    before: set[Path]
    attempt: int


@dataclass
class ExperimentResult:
    path: Path
    total: int
    skipped: int  # already finished before this invocation
    ran: int
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


class Executor:
    def __init__(self, plan: ExperimentPlan, exp: ExperimentDir, *, workers: int | None = None,
                 retry_errors: bool = False, restart_interrupted: bool = False,
                 progress: Progress | None = None, backend: CellBackend | None = None):
        self.plan = plan
        self.exp = exp
        if workers is not None and workers < 1:
            raise UsageError("--workers must be at least 1.")
        self.requested_workers = workers
        self.workers = workers or plan.workers  # the backend may say otherwise (a Ray cluster's capacity)
        self.backend = backend or LocalProcesses(lambda: self._lock_fd)
        self.retry_errors = retry_errors
        self.restart_interrupted = restart_interrupted
        self.progress = progress or (lambda text: None)
        self.model_index = {m.name: i for i, m in enumerate(plan.models)}
        keys: set[str] = set(plan.settings)
        for m in plan.models:
            keys |= set(m.settings)
        self.env_keys = frozenset(keys)
        self._signals = 0
        self._forwarded = False
        self._killed = False
        self._lock_fd: int | None = None

    # -- entry ----------------------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        prepare(self.exp, self.plan)
        self._lock()
        try:
            self.workers = self.backend.start(self.exp.path, self.requested_workers, self.plan.workers,
                                              self.progress)
            with Store(self.exp.db_file, base_dir=self.exp.path) as store:
                self.store = store
                store.set_meta("name", self.plan.name)
                store.set_meta("plan", json.dumps(self.plan.identity(), sort_keys=True))
                if store.get_meta("created") is None:
                    store.set_meta("created", _now())
                store.set_meta("kubevibe", __version__)
                cells = expand(self.plan)
                store.sync_cells(cells)
                return self._run_cells(cells)
        finally:
            self.backend.close()
            self._unlock()

    def _lock(self) -> None:
        fd = os.open(self.exp.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"Another `kubevibe experiment` (or a run it started) is still working in {self.exp.path}; "
                             "wait for it to end.") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the pool -------------------------------------------------------------------------------------
    def _run_cells(self, cells: list[RunSpec]) -> ExperimentResult:
        todo: list[tuple[RunSpec, Path | None]] = []
        skipped = 0
        for cell in cells:
            plan = self._reconcile(cell)
            if plan == "done":
                skipped += 1
            else:
                todo.append((cell, plan if isinstance(plan, Path) else None))
        total = len(cells)
        self.progress(f"{total} runs in the matrix: {skipped} already finished, {len(todo)} to run "
                      f"({self.workers} at a time) in {self.exp.path}")
        running: list[Running] = []
        finished_now = 0
        with _StopSignals(self._on_signal):
            while todo or running:
                if self._signals and not self._forwarded:
                    self._forward(running, signal.SIGINT)
                    self._forwarded = True
                    if running:
                        self.progress(f"stopping: waiting for {len(running)} running run(s) to clean up "
                                      "(Ctrl-C again to kill them)")
                if self._signals >= 2 and not self._killed:
                    self._forward(running, signal.SIGKILL)
                    self._killed = True
                    self.progress("killed the running runs; their cleanups may not have run")
                while not self._signals and todo and len(running) < self.workers:
                    cell, resume_dir = todo.pop(0)
                    running.append(self._launch(cell, resume_dir))
                if self._signals and not running:
                    break
                time.sleep(POLL_S)
                for r in list(running):
                    rc = r.handle.poll()
                    if rc is None:
                        continue
                    running.remove(r)
                    retry = self._collect(r, rc)
                    if retry is not None and not self._signals:
                        todo.insert(0, (r.cell, None))
                        continue
                    finished_now += 1
                    row = self.store.run_row(r.cell.key) or {}
                    done = skipped + finished_now
                    self.progress(f"[{done}/{total}] {r.cell.describe()}: {_describe_row(row)}")
        counts = self.store.status_counts()
        return ExperimentResult(path=self.exp.path, total=total, skipped=skipped, ran=finished_now,
                                counts=counts, interrupted=bool(self._signals))

    def _on_signal(self, signum: int) -> None:
        self._signals += 1

    def _forward(self, running: list[Running], sig: int) -> None:
        for r in running:
            r.handle.signal(sig)

    # -- one cell -------------------------------------------------------------------------------------
    def _reconcile(self, cell: RunSpec) -> str | Path | None:
        """'done', a run directory to resume, or None (start a fresh run)."""
        row = self.store.run_row(cell.key) or {}
        if row.get("status") in FINISHED and not (row["status"] == "error" and self.retry_errors):
            return "done"
        dirs = self.exp.run_dirs(cell.key)
        # A run that finished after the experiment process stopped watching it (e.g. that process was killed).
        for path in reversed(dirs):
            outcome = _outcome(path)
            if outcome in FINISHED:
                if outcome == "error" and self.retry_errors:
                    return None
                self.store.ingest_run(path, cell, attempts=max(1, row.get("attempts") or 0))
                _write_graph(path)
                return "done"
        if dirs and not self.restart_interrupted:
            newest = dirs[-1]
            if (newest / "state.json").is_file():
                return newest
        return None

    def _launch(self, cell: RunSpec, resume_dir: Path | None) -> Running:
        row = self.store.run_row(cell.key) or {}
        attempt = (row.get("attempts") or 0) + 1
        job = self._job(cell, resume_dir, attempt)
        self.exp.logs.mkdir(parents=True, exist_ok=True)
        log = self.exp.logs / f"{cell.key}.log"
        with log.open("a", encoding="utf-8") as out:
            out.write(f"--- {_now()} attempt {attempt}: -m kubevibe.cli {' '.join(job.args)}\n")
        before = set(self.exp.run_dirs(cell.key))
        handle = self.backend.launch(job, log)
        self.store.update_run(cell.key, status="running", attempts=attempt, exit_code=None,
                              started=row.get("started") or _now())
        return Running(cell, handle, time.monotonic(), resume_dir, before, attempt)

    def _job(self, cell: RunSpec, resume_dir: Path | None, attempt: int) -> CellJob:
        """The cell's command line, with paths relative to the experiment directory (where it runs, or its copy
        on a Ray worker), so every run records the same settings wherever it ran."""
        def rel(path: Path) -> str:
            return str(path.relative_to(self.exp.path))

        if resume_dir is not None:
            return CellJob(cell.key, ["resume", rel(resume_dir), "--json"], [], rel(resume_dir), attempt,
                           self.env_keys)
        prompt = rel(self.exp.prompt_file(cell.prompt_index))
        config = rel(self.exp.config_file(self.model_index[cell.model_label]))
        args = ["run", "--json", "--prompt-file", prompt, "--llm", cell.llm, "--intent-method", cell.intent_method,
                "--strategy", cell.strategy, "--style", cell.style, "--runs-dir", rel(self.exp.cell_runs(cell.key)),
                "--config", config]
        inputs = [prompt, config]
        if cell.model:
            args += ["--model", cell.model]
        if cell.seed is not None:
            args += ["--seed", str(cell.seed)]
        if self.plan.tests_files:  # a benchmark: the task's hidden tests (never shown to the model)
            tests = rel(self.exp.tests_file(cell.prompt_index, Path(self.plan.tests_files[cell.prompt_index])))
            args += ["--tests", tests, "--tests-source", "benchmark"]
            inputs.append(tests)  # shipped to a Ray worker with the prompt
        return CellJob(cell.key, args, inputs, None, attempt, self.env_keys)

    def _collect(self, r: Running, rc: int) -> str | None:
        """Record how a run ended. Returns 'fresh' when the cell must start over (a resume that was refused)."""
        if r.handle.retries:
            self.progress(f"{r.cell.describe()}: started again after a lost worker ({'; '.join(r.handle.retries)})")
        attempts = r.attempt + len(r.handle.retries)
        after = self.exp.run_dirs(r.cell.key)
        new = [p for p in after if p not in r.before]
        target = r.resume_dir or (new[-1] if new else None)
        if target is not None and (target / "run.json").is_file():
            outcome = _outcome(target)
            if r.resume_dir is not None and rc == 2 and outcome not in FINISHED and not self._signals:
                return "fresh"  # `kubevibe resume` refused (no time left, no checkpoint): start over
            self.store.ingest_run(target, r.cell, attempts=attempts, exit_code=rc)
            if outcome in FINISHED:
                _write_graph(target)
            return None
        # No run directory: the subprocess stopped before it could create one.
        interrupted = self._signals or rc in (EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGKILL, -signal.SIGTERM)
        reason = _last_error(self.exp.logs / f"{r.cell.key}.log") or f"kubevibe exited with code {rc}"
        self.store.update_run(r.cell.key, status="interrupted" if interrupted else "error", exit_code=rc,
                              reason=reason, finished=None if interrupted else _now(), attempts=attempts)
        return None


def _outcome(run_dir: Path) -> str | None:
    from kubevibe.record.rundir import load_run

    try:
        return load_run(run_dir).outcome
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def _write_graph(run_dir: Path) -> None:
    """The run's FSM execution graph (fsm.dot, fsm.svg) beside its record, as `kubevibe graph` writes it."""
    from kubevibe.pipeline.graph import write_graph
    from kubevibe.record.rundir import RunDir

    try:
        write_graph([event.dump() for event in RunDir.open(run_dir).read_events()], run_dir)
    except Exception:  # noqa: BLE001 - a drawing is a convenience; the report draws it again
        pass


def _last_error(log: Path) -> str | None:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    line = last_line(text, keep=lambda line: line.startswith(("error:", "internal error:")))
    return None if line is None else line.removeprefix("error:").strip()


def _describe_row(row: dict[str, Any]) -> str:
    status = row.get("status") or "?"
    parts = [status]
    if row.get("final_state") and status in ("success", "unverified", "fail"):
        parts.append(f"{row.get('steps')} steps, {row.get('fix_iterations') or 0} fixes")
    if row.get("elapsed_s") is not None:
        parts.append(f"{row['elapsed_s']:.1f}s")
    if status not in ("success",) and row.get("reason"):
        parts.append(str(row["reason"])[:120])
    return " · ".join(parts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _StopSignals:
    """SIGINT and SIGTERM only count (the pool loop reacts); restored afterwards. Main thread only."""

    def __init__(self, callback: Callable[[int], None]):
        self.callback = callback
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, lambda signum, frame: self.callback(signum))
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)


# -- entry points for the CLI ---------------------------------------------------------------------------------
def resolve_experiment(plan_arg: Path | None, plan: ExperimentPlan | None, dir_arg: Path | None
                       ) -> tuple[ExperimentPlan, ExperimentDir]:
    """The plan and directory from the command line: PLAN.yaml (+ --dir), an experiment directory, or flags."""
    if plan_arg is not None and plan_arg.is_dir():
        exp = ExperimentDir(plan_arg)
        if not exp.is_experiment():
            raise UsageError(f"{plan_arg} is a directory without {PLAN_NAME}: give a plan file or an experiment "
                             "directory.")
        if dir_arg is not None and dir_arg.resolve() != plan_arg.resolve():
            raise UsageError("An experiment directory was given; --dir cannot name another one.")
        return read_saved_plan(exp), exp
    assert plan is not None
    return plan, ExperimentDir(dir_arg or default_dir(plan))


def run_experiment(plan: ExperimentPlan, exp: ExperimentDir, **kw: Any) -> ExperimentResult:
    return Executor(plan, exp, **kw).run()
