"""KubeVibe-Bench: a suite of tasks with hidden acceptance tests, run through the whole pipeline as an experiment.

A suite is a folder of tasks; a task is a folder with
  task.yaml          id, tier (easy | medium | hard), request (states the API contract: paths, methods, fields,
                     status codes, port)
  tests.tavern.yaml  the hidden acceptance tests (Tavern; `{base_url}` is the service), never shown to the model
  reference/         myapp.py, Dockerfile, vibe.yaml, requirements.txt: a correct solution (the suite's own code),
                     and wrong.py: a deliberately wrong variant its tests must catch
The shipped suite is src/kubevibe/assets/bench/ (see docs/bench.md for adding tasks). `kubevibe bench` runs each task
as a prompt of an experiment (same SQLite store, resumable, `kubevibe report`), every run with its task's tests
as source `benchmark`, and prints functional pass@1, passItr@k, runtime-only success and where failures stop.
"""

from __future__ import annotations

import re
import threading
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubevibe.acceptance.tavern_file import TavernFileError, check_untrusted, load_tests
from kubevibe.errors import UsageError

Tier = Literal["easy", "medium", "hard"]
TIERS: tuple[str, ...] = ("easy", "medium", "hard")
TASK_FILE, TESTS_FILE, REFERENCE_DIR = "task.yaml", "tests.tavern.yaml", "reference"
REFERENCE_FILES = ("myapp.py", "Dockerfile", "vibe.yaml", "requirements.txt")
WRONG_FILE = "wrong.py"
DEFAULT_SUITE = "default"


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    tier: Tier
    request: str = Field(min_length=10)
    path: Path = Field(exclude=True)  # the task folder

    @property
    def tests_file(self) -> Path:
        return self.path / TESTS_FILE

    def reference(self, name: str = "myapp.py") -> Path:
        return self.path / REFERENCE_DIR / name


def shipped_suite() -> Path:
    return Path(str(resources.files("kubevibe.assets").joinpath("bench")))


def suite_path(suite: str | Path | None) -> Path:
    if suite in (None, "", DEFAULT_SUITE):
        return shipped_suite()
    path = Path(suite)
    if not path.is_dir():
        raise UsageError(f"The suite {suite} is not a folder of tasks (or the name of a shipped suite: "
                         f"{DEFAULT_SUITE}).")
    return path


def load_suite(suite: str | Path | None = None) -> list[Task]:
    """Every task of a suite, sorted by tier then id; UsageError naming the first task that is not usable."""
    root = suite_path(suite)
    tasks = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        tasks.append(load_task(folder))
    if not tasks:
        raise UsageError(f"The suite {root} has no tasks (folders with {TASK_FILE}).")
    ids = [t.id for t in tasks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UsageError(f"The suite {root} has two tasks with the id {dupes[0]!r}.")
    requests = [t.request for t in tasks]
    same = next((t for t in tasks if requests.count(t.request) > 1), None)
    if same:
        raise UsageError(f"Task {same.id} has the same request as another task; each request must be its own.")
    return sorted(tasks, key=lambda t: (TIERS.index(t.tier), t.id))


def load_task(folder: Path) -> Task:
    where = f"Task {folder}"
    try:
        meta = yaml.safe_load((folder / TASK_FILE).read_text(encoding="utf-8"))
    except OSError:
        raise UsageError(f"{where} has no {TASK_FILE}.") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: {TASK_FILE} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{where}: {TASK_FILE} must be a mapping with id, tier and request.")
    try:
        task = Task(**meta, path=folder)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"{where}: {TASK_FILE} field {'.'.join(map(str, err['loc']))}: {err['msg']}.") from None
    if not task.tests_file.is_file():
        raise UsageError(f"{where} has no {TESTS_FILE}.")
    try:
        check_untrusted(load_tests(task.tests_file.read_text(encoding="utf-8"), trusted=False))
    except TavernFileError as exc:
        raise UsageError(f"{where}: {TESTS_FILE} cannot be used: {exc}.") from None
    return task


# -- integrity: references pass, wrong variants fail ---------------------------------------------------------------


def load_app(source: Path) -> Any:
    """The Flask app of a reference file, imported in this process in a module of its own (fresh state).

    Only for a suite's own reference code (trusted: the suite's authors wrote it); generated code never runs here.
    """
    module = types.ModuleType(f"kubevibe_bench_{source.parent.parent.name.replace('-', '_')}")
    module.__file__ = str(source)
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), module.__dict__)  # noqa: S102
    app = getattr(module, "app", None)
    if app is None:
        raise UsageError(f"{source} defines no `app` (a Flask/WSGI application).")
    return app


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """A WSGI app on a free loopback port until the block ends; yields its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log(self, *args: Any) -> None:  # one line per request would drown the results
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class IntegrityResult(BaseModel):
    task: str
    variant: str  # "myapp.py" or "wrong.py"
    passed: int
    total: int
    failures: list[str] = Field(default_factory=list)

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


def check_variant(task: Task, variant: str, work_dir: Path, timeout: float = 120.0) -> IntegrityResult:
    """Run the task's tests with Tavern against one variant of its reference served on loopback."""
    from kubevibe.acceptance.execute import run_tavern

    total = len(load_tests(task.tests_file.read_text(encoding="utf-8"), trusted=False))
    with serve_app(load_app(task.reference(variant))) as base_url:
        result = run_tavern(task.tests_file, base_url, work_dir / task.id / variant.removesuffix(".py"), timeout)
    failures = [o.name for o in result.outcomes if not o.passed]
    if not result.outcomes:
        failures = [f"Tavern could not run the tests (exit code {result.exit_code}): {result.output[-300:]}"]
    return IntegrityResult(task=task.id, variant=variant, passed=result.passed, total=total, failures=failures)


def check_suite(tasks: list[Task], variant: str, work_dir: Path, timeout: float = 600.0) -> list[IntegrityResult]:
    """check_variant for every task at once: one Tavern process, each task's app mounted under /<task id> on one
    loopback server (each test file's {base_url} becomes {base_url}/<task id> in a copy). Much faster than a
    process per task; the tests are the same."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.wrappers import Response

    from kubevibe.acceptance.execute import run_tavern_dir

    work_dir.mkdir(parents=True, exist_ok=True)
    tests_dir = work_dir / "tests"
    tests_dir.mkdir(exist_ok=True)
    mounts, totals = {}, {}
    for task in tasks:
        if not task.reference(variant).is_file():
            continue
        text = task.tests_file.read_text(encoding="utf-8")
        totals[task.id] = len(load_tests(text, trusted=False))
        (tests_dir / f"{task.id}.tavern.yaml").write_text(text.replace("{base_url}", "{base_url}/" + task.id),
                                                          encoding="utf-8")
        mounts["/" + task.id] = load_app(task.reference(variant))
    app = DispatcherMiddleware(Response("no such task", status=404), mounts)
    with serve_app(app) as base_url:
        run = run_tavern_dir(tests_dir, base_url, work_dir / "tavern", timeout)
    results = []
    for task_id, total in totals.items():
        mine = [o for o in run.outcomes if o.file.startswith(task_id + ".tavern")]
        passed = sum(1 for o in mine if o.passed)
        failures = [o.name for o in mine if not o.passed]
        if not mine:
            failures = [f"no results (Tavern exit code {run.exit_code}): {run.output[-300:]}"]
        results.append(IntegrityResult(task=task_id, variant=variant, passed=passed, total=total, failures=failures))
    return results


# -- the bench as an experiment ------------------------------------------------------------------------------------


def bench_plan(tasks: list[Task], *, name: str, llm: str, model: str | None, repeat: int, workers: int,
               settings: dict[str, Any]) -> Any:
    from kubevibe.experiments.plan import ExperimentPlan, ModelEntry

    try:
        label = re.sub(r"[\x00-\x1f/\\]+", "_", model or llm)[-80:].strip("_") or "model"
        return ExperimentPlan(name=name, models=[ModelEntry(llm=llm, model=model, label=label)], prompts=[t.request for t in tasks],
                              tests_files=[str(t.tests_file.resolve()) for t in tasks], repetitions=repeat,
                              workers=workers, settings={k: v for k, v in settings.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"The bench cannot run: {err['msg']}.") from None


def task_rows(tasks: list[Task], runs: list[dict[str, Any]], executions: list[dict[str, Any]],
              k: int) -> list[dict[str, Any]]:
    """Per task: runs, functional pass@1 (first attempt), passItr@k, runtime-only success, where failures stop."""
    from kubevibe.experiments.metrics import COUNTED, stop_stage

    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_prompt.setdefault(run.get("prompt") or "", []).append(run)
    rows = []
    for task in tasks:
        done = [r for r in by_prompt.get(task.request, []) if r.get("status") in COUNTED]
        stops = Counter(s for s in (stop_stage(r, executions) for r in done) if s)
        rows.append({
            "task": task.id, "tier": task.tier, "n": len(done),
            "pass1": sum(1 for r in done if r.get("first_attempt_success")),
            "passk": sum(1 for r in done if r["status"] == "success" and (r.get("fix_iterations") or 0) <= k),
            "runtime_only": sum(1 for r in done if r.get("runtime_success") and r["status"] != "success"),
            "errors": sum(1 for r in by_prompt.get(task.request, []) if r.get("status") == "error"),
            "stops": dict(stops.most_common()),
        })
    return rows


def tier_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tier in (*TIERS, "all"):
        members = [r for r in rows if tier == "all" or r["tier"] == tier]
        if not members:
            continue
        stops: Counter = Counter()
        for r in members:
            stops.update(r["stops"])
        out.append({"task": tier, "tier": tier, "tasks": len(members),
                    **{key: sum(r[key] for r in members) for key in ("n", "pass1", "passk", "runtime_only", "errors")},
                    "stops": dict(stops.most_common())})
    return out
