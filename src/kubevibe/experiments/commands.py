"""What `kubevibe experiment`, `kubevibe report` and `kubevibe compare` do; cli.py only parses and calls these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kubevibe.errors import UsageError
from kubevibe.experiments.executor import (
    EXIT_INTERRUPTED,
    ExperimentDir,
    matrix_status,
    resolve_experiment,
    run_experiment,
)
from kubevibe.experiments.backends import CellBackend, LocalProcesses
from kubevibe.experiments.matrix import matrix_size
from kubevibe.experiments.metrics import FINISHED
from kubevibe.experiments.plan import ExperimentPlan, load_plan, plan_from_flags
from kubevibe.settings import resolve_named


def make_backend(executor: str, ray_address: str | None = None, *,
                 lock_fd: Callable[[], int | None] = lambda: None) -> CellBackend:
    """The backend the `executor` setting names. Ray is imported only when asked for (an optional extra)."""
    if executor == "ray":
        from kubevibe.experiments.ray_backend import RayCluster

        return RayCluster(ray_address)
    return LocalProcesses(lock_fd)


def _say(console: Console) -> Any:
    return lambda text: console.print(text, highlight=False, markup=False)


def experiment(console: Console, *, plan_path: Path | None, directory: Path | None, workers: int | None,
               dry_run: bool, retry_errors: bool, restart_interrupted: bool, flags: dict[str, Any],
               executor: str | None = None, ray_address: str | None = None) -> int:
    flat = {**{k: v for k, v in flags.items() if k != "settings"}, **(flags.get("settings") or {})}
    given_flags = {k: v for k, v in flat.items() if v not in (None, [], ())}
    plan: ExperimentPlan | None = None
    if plan_path is not None and given_flags:
        raise UsageError(f"With a plan, only --dir, --workers, --executor, --ray-address, --dry-run, --retry-errors "
                         f"and --restart-interrupted apply; put --{sorted(given_flags)[0].replace('_', '-')} in the plan.")
    if plan_path is None:
        plan = plan_from_flags(**flags)
    elif not plan_path.is_dir():
        plan = load_plan(plan_path)
    plan, exp = resolve_experiment(plan_path, plan, directory)
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1.")
    place = resolve_executor(executor, ray_address)
    if dry_run:
        print_matrix(console, plan, exp, workers or plan.workers)
        if place["executor"] == "ray":
            _say(console)(f"executor: ray at {place['ray_address']}" if place["ray_address"]
                          else "executor: ray (a local instance for this experiment)")
        return 0
    backend = make_backend(place["executor"], place["ray_address"])
    result = run_experiment(plan, exp, workers=workers, retry_errors=retry_errors,
                            restart_interrupted=restart_interrupted, progress=_say(console), backend=backend)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    say = _say(console)
    if result.interrupted:
        say(f"interrupted: {counts}. Run the same command again to continue (finished runs are kept).")
        return EXIT_INTERRUPTED
    unfinished = sum(n for status, n in result.counts.items() if status not in FINISHED)
    say(f"done: {result.total} runs ({counts}); results in {exp.db_file}")
    if unfinished:
        say(f"{unfinished} run(s) did not finish (their process stopped early); run the same command again to "
            "resume them.")
    say(f"report: kubevibe report {exp.path}")
    return 0


def resolve_executor(executor: str | None, ray_address: str | None) -> dict[str, Any]:
    """The `executor` and `ray_address` settings (flag > KUBEVIBE_EXECUTOR / RAY_ADDRESS > config file > default).
    An address alone does not choose Ray: RAY_ADDRESS may be set for other tools."""
    values, _sources = resolve_named(("executor", "ray_address"), {"executor": executor, "ray_address": ray_address})
    if ray_address is not None and values["executor"] != "ray":
        raise UsageError("--ray-address applies only with --executor ray.")
    return values


def print_matrix(console: Console, plan: ExperimentPlan, exp: ExperimentDir, workers: int) -> None:
    say = _say(console)
    cells = matrix_status(exp if exp.is_experiment() else None, plan)
    say(f"experiment {plan.name} → {exp.path}{'' if exp.is_experiment() else ' (new)'}")
    for m in plan.models:
        say(f"  model {m.name}: {m.llm}" + (f" model={m.model}" if m.model else "")
            + (f" settings={m.settings}" if m.settings else ""))
    say(f"  intent methods: {', '.join(plan.intent_methods)}")
    say(f"  strategies: {', '.join(plan.strategies)}")
    if plan.styles != ["structured"]:
        say(f"  styles: {', '.join(plan.styles)}")
    for i, p in enumerate(plan.prompts):
        say(f"  prompt {i}: {p if len(p) <= 100 else p[:97] + '...'}")
    say(f"  repetitions: {plan.repetitions}")
    if plan.settings:
        say(f"  settings: {plan.settings}")
    header = ["#", "key", "model", "intent method", "strategy", "style", "prompt", "rep", "seed", "status"]
    rows = [[str(i + 1), c.spec.key, c.spec.model_label, c.spec.intent_method, c.spec.strategy, c.spec.style,
             str(c.spec.prompt_index), str(c.spec.repetition), "" if c.spec.seed is None else str(c.spec.seed),
             c.status] for i, c in enumerate(cells)]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    for r in [header, *rows]:
        say("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    finished = sum(1 for c in cells if c.status in FINISHED)
    n = matrix_size(plan)
    styles = "" if plan.styles == ["structured"] else f"{len(plan.styles)} styles × "
    say(f"{n} runs = {len(plan.models)} models × {len(plan.intent_methods)} intent methods × "
        f"{len(plan.strategies)} strategies × {styles}{len(plan.prompts)} prompts × {plan.repetitions} repetitions; "
        f"{finished} finished, {n - finished} to run, {workers} at a time")


def report(console: Console, *, source: Path, out: Path | None, csv_dir: Path | None) -> int:
    from kubevibe.experiments.report import write_report
    from kubevibe.experiments.store import open_results

    say = _say(console)
    if csv_dir is not None:
        store = open_results(source)
        try:
            for path in store.export_csv(csv_dir):
                say(f"wrote {path}")
        finally:
            store.close()
        return 0
    index = write_report(source, out)
    say(f"wrote {index}")
    return 0


def compare(console: Console, *, a: Path, b: Path, html: Path | None) -> int:
    from rich.table import Table
    from rich.text import Text

    from kubevibe.experiments.compare import compare_data, text_rows, write_compare

    data = compare_data(a, b)
    table = Table(title=f"{data['a']['tag']}  vs  {data['b']['tag']}", show_lines=False)
    for column in ("group", f"A: {data['a']['tag']} functional success [95% CI]",
                   f"B: {data['b']['tag']} functional success [95% CI]", "B − A [95% CI]", "fixes A / B",
                   "first attempt A / B", "runtime success A / B"):
        table.add_column(column, overflow="fold")
    for row in text_rows(data):
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    console.print("* the difference's interval excludes 0", style="dim", highlight=False)
    if html is not None:
        path = write_compare(a, b, html)
        console.print(f"wrote {path}", highlight=False, markup=False)
    return 0


def bench(console: Console, *, suite: str | None, llm: str | None, model: str | None, repeat: int, workers: int,
          directory: Path | None, check_references: bool, settings: dict[str, Any], executor: str | None = None,
          ray_address: str | None = None) -> int:
    """`kubevibe bench`: the suite's tasks through the whole pipeline as an experiment, then the bench table."""
    import json
    import re

    from kubevibe.experiments import bench as kb
    from kubevibe.experiments.store import Store

    say = _say(console)
    tasks = kb.load_suite(suite)
    if check_references:
        return _check_references(console, tasks)
    if not llm:
        raise UsageError("Name the model to benchmark with --llm SPEC (e.g. --llm embedded, --llm "
                         "ollama://HOST:PORT with --model NAME).")
    if repeat < 1 or workers < 1:
        raise UsageError("--repeat and --workers must be at least 1.")
    suite_name = "default" if suite in (None, "", kb.DEFAULT_SUITE) else Path(suite).resolve().name
    label = model or llm
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"bench-{suite_name}-{label}").strip("._-")[:80]
    plan = kb.bench_plan(tasks, name=name, llm=llm, model=model, repeat=repeat, workers=workers, settings=settings)
    plan, exp = resolve_experiment(None, plan, directory)
    place = resolve_executor(executor, ray_address)
    counts_by_tier = ", ".join(f"{sum(1 for t in tasks if t.tier == tier)} {tier}" for tier in kb.TIERS)
    say(f"bench {suite_name}: {len(tasks)} tasks ({counts_by_tier}) × {repeat} repetitions with {label} → {exp.path}")
    result = run_experiment(plan, exp, workers=workers, progress=say,
                            backend=make_backend(place["executor"], place["ray_address"]))
    if result.interrupted:
        say("interrupted; run the same command again to continue (finished runs are kept).")
        return EXIT_INTERRUPTED
    store = Store(exp.db_file, base_dir=exp.path, readonly=True)
    try:
        runs, executions = store.runs(), store.table("stage_executions")
    finally:
        store.close()
    k = int(plan.settings.get("max_fix_attempts", 10))
    rows = kb.task_rows(tasks, runs, executions, k)
    tiers = kb.tier_rows(rows)
    print_bench(console, rows, tiers, k)
    (exp.path / "bench.json").write_text(json.dumps({"suite": suite_name, "llm": llm, "model": model, "k": k,
                                                     "repeat": repeat, "tasks": rows, "tiers": tiers},
                                                    indent=2) + "\n", encoding="utf-8")
    say(f"results: {exp.path / 'bench.json'} and {exp.db_file}; report: kubevibe report {exp.path}")
    return 0


def print_bench(console: Console, rows: list[dict[str, Any]], tiers: list[dict[str, Any]], k: int) -> None:
    from rich.table import Table

    from kubevibe.experiments.metrics import wilson

    def frac(s: int, n: int) -> str:
        if not n:
            return "-"
        low, high = wilson(s, n) or (0.0, 0.0)
        return f"{s}/{n} {100 * s / n:.0f}% [{100 * low:.0f}-{100 * high:.0f}]"

    def stops(counts: dict[str, int]) -> str:
        return ", ".join(f"{stage} {n}" for stage, n in counts.items()) or "-"

    for title, items in (("per task", rows), ("per tier", tiers)):
        table = Table(title=f"KubeVibe-Bench {title} (functional success = the hidden acceptance tests all passed)")
        for column in ("task" if title == "per task" else "tier", "tier" if title == "per task" else "tasks",
                       "functional pass@1", f"passItr@{k}", "runtime-only", "failures stop at"):
            table.add_column(column, overflow="fold")
        for r in items:
            table.add_row(r["task"], r["tier"] if title == "per task" else str(r["tasks"]), frac(r["pass1"], r["n"]),
                          frac(r["passk"], r["n"]), frac(r["runtime_only"], r["n"]), stops(r["stops"]))
        console.print(table)
    console.print("runtime-only: deployed and answered, but the hidden tests failed (or none passed); "
                  "errors of the tool itself are left out", style="dim", highlight=False)


def _check_references(console: Console, tasks: list[Any]) -> int:
    """Every reference passes its task's tests; every wrong variant fails at least one (no model involved)."""
    import tempfile

    from kubevibe.experiments import bench as kb

    say = _say(console)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="kubevibe-bench-check-") as work:
        good = {r.task: r for r in kb.check_suite(tasks, "myapp.py", Path(work) / "reference")}
        wrong = {r.task: r for r in kb.check_suite(tasks, kb.WRONG_FILE, Path(work) / "wrong")}
    for task in tasks:
        ref = good[task.id]
        line = f"{task.id:<24} reference {ref.passed}/{ref.total}"
        ok = ref.all_passed
        if task.id in wrong:
            caught = not wrong[task.id].all_passed
            line += f", wrong variant {'caught' if caught else 'NOT caught'} ({wrong[task.id].passed}/{ref.total})"
            ok = ok and caught
        else:
            line += f", no wrong variant ({kb.REFERENCE_DIR}/{kb.WRONG_FILE})"
        if not ref.all_passed:
            line += f"; failing: {', '.join(ref.failures)}"
        bad += not ok
        say(("ok   " if ok else "FAIL ") + line)
    say(f"{len(tasks) - bad} of {len(tasks)} tasks are sound")
    return 0 if bad == 0 else 1
