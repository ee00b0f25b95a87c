#!/usr/bin/env python3
"""How well a model does the whole job: the prompt set in benchmarks/prompts.txt, REPEAT times, with any backend.

Runs an experiment through the real harness (`kubevibe experiment`: each run a `kubevibe run` subprocess on the
local engine), then prints success rate (95% Wilson interval), first-attempt success, fix iterations, depth,
mean wall time per stage, and the model's speed in generated tokens per second.

Usage:
  .venv/bin/python benchmarks/model_benchmark.py --llm embedded --repeat 1
  .venv/bin/python benchmarks/model_benchmark.py --llm embedded --intent-method all   # one row per intent method
  .venv/bin/python benchmarks/model_benchmark.py --llm ollama://localhost:11434 --model qwen2.5-coder:7b --repeat 3
Results stay in the experiment directory (default experiments/bench-<label>/): running the same command again
continues it and never redoes finished runs; `kubevibe report DIR` draws the HTML report.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console

from kubevibe.experiments.executor import ExperimentDir, run_experiment
from kubevibe.experiments.metrics import FINISHED, STAGES, summarize
from kubevibe.errors import KubeVibeError
from kubevibe.experiments.plan import validate_plan
from kubevibe.experiments.store import open_results
from kubevibe.record.rundir import load_run
from kubevibe.record.schema import RunRecord
from kubevibe.record.show import tests_from
from kubevibe.settings import INTENT_METHODS

PROMPTS = Path(__file__).with_name("prompts.txt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", required=True, help="any --llm spec except auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--strategy", default="auto", choices=["auto", "scaffold", "full"])
    parser.add_argument("--intent-method", action="append", default=None, metavar="METHOD",
                        help="an intent method, repeatable, or `all` for every one (default: none)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--max-steps", type=int, default=25)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT prompts")
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: print the tables of what the experiment directory holds so far")
    args = parser.parse_args()
    try:
        methods = _methods(args.intent_method or ["none"])
    except ValueError as exc:
        parser.error(str(exc))  # one sentence, exit 2

    label = re.sub(r"[^A-Za-z0-9._-]+", "-", args.model or args.llm.split(":")[0]).strip("-") or "model"
    prompts = [line.strip() for line in PROMPTS.read_text().splitlines()
               if line.strip() and not line.startswith("#")][: args.limit]
    plan = validate_plan({
        "name": f"bench-{label}",
        "models": [{"llm": args.llm, "model": args.model, "label": label}],
        "intent_methods": methods, "strategies": [args.strategy], "prompts": prompts,
        "repetitions": args.repeat, "settings": {"timeout": args.timeout, "max_steps": args.max_steps},
    }, base_dir=Path.cwd(), source="The benchmark's arguments")
    exp = ExperimentDir(args.dir or Path("experiments") / plan.name)
    console = Console(stderr=True)
    if not args.tables_only:
        run_experiment(plan, exp, progress=lambda text: console.print(text, highlight=False, markup=False))
    elif not (exp.path / "experiment.sqlite").is_file():
        parser.error(f"{exp.path} holds no experiment yet")

    with open_results(exp.path) as store:
        runs, executions, calls = store.runs(), store.table("stage_executions"), store.table("llm_calls")
        # Where each successful run's checked tests came from: a success tested only by GET /health is weak.
        sources = {m: Counter(_tests_source(store.resolve_run_dir(r.get("run_dir"))) for r in runs
                              if r.get("status") == "success" and r.get("intent_method") == m) for m in methods}
    finished = sum(1 for r in runs if r.get("status") in FINISHED)
    print(f"\n{args.llm} {args.model or ''}  strategy={args.strategy}  "
          f"{len(prompts)} prompts x {args.repeat}  ({exp.path})")
    print(f"{finished} of {len(prompts) * args.repeat * len(methods)} runs finished"
          + ("" if finished == len(prompts) * args.repeat * len(methods) else " (a partial table)"))
    if len(methods) > 1:
        _print_methods_table(methods, runs, executions, calls)
    for method in methods:
        mine = [r for r in runs if r.get("intent_method") == method]
        ids = {r.get("run_id") for r in mine}
        _print_one(method, mine, [e for e in executions if e.get("run_id") in ids],
                   [c for c in calls if c.get("run_id") in ids], sources[method])
    return 0


def _methods(given: list[str]) -> list[str]:
    out: list[str] = []
    for name in given:
        for method in INTENT_METHODS if name == "all" else [name]:
            if method not in INTENT_METHODS:
                raise ValueError(f"unknown intent method {method!r}: choose from {', '.join(INTENT_METHODS)} or all.")
            if method not in out:
                out.append(method)
    return out


def _print_methods_table(methods: list[str], runs: list[dict], executions: list[dict], calls: list[dict]) -> None:
    """One row per intent method: outcomes, and the wall time per run (mean and the longest: a bound that matters
    for small models, which can run away)."""
    print(f"\n| intent method | runs finished | success | unverified | fail | error | Intent failed | mean s/run | max s/run "
          f"| LLM calls/run |\n|---|---|---|---|---|---|---|---|---|---|")
    for method in methods:
        mine = [r for r in runs if r.get("intent_method") == method and r.get("status") in FINISHED]
        ids = {r.get("run_id") for r in mine}
        status = Counter(r.get("status") for r in mine)
        times = [r["elapsed_s"] for r in mine if r.get("elapsed_s") is not None]
        intent_failed = sum(1 for e in executions if e.get("run_id") in ids and e.get("stage") == "INTENT"
                            and e.get("result") == "failed")
        llm = sum(1 for c in calls if c.get("run_id") in ids)
        print(f"| {method} | {len(mine)} | {status['success']} | {status['unverified']} | {status['fail']} "
              f"| {status['error']} | {intent_failed} | {_num(sum(times) / len(times) if times else None)} "
              f"| {_num(max(times) if times else None)} | {_num(llm / len(mine) if mine else None)} |")


def _print_one(method: str, runs: list[dict], executions: list[dict], calls: list[dict], sources: Counter) -> None:
    s = summarize(runs, executions, calls)
    tokens = sum(c.get("completion_tokens") or 0 for c in calls)
    llm_time = sum(c.get("duration_s") or 0.0 for c in calls)
    ci = s["success_ci"]
    print(f"\nintent method {method}\n")
    rows = [
        ("runs counted", f"{s['n']}  (+{s['error']} stopped by a tool error)"),
        ("success rate", f"{s['success']}/{s['n']} = {_pct(s['success_rate'])}"
                         + (f"  [95% CI {_pct(ci[0])}-{_pct(ci[1])}]" if ci else "")),
        ("unverified", str(s["unverified"])),
        ("first-attempt success", f"{s['first_attempt']}/{s['n']}"),
        ("fix iterations (mean)", _num(s["fix_mean"])),
        ("depth to success (mean)", _num(s["depth_mean"])),
        ("wall time per run (mean s)", _num(s["elapsed_mean"])),
        ("LLM calls per run (mean)", _num(s["llm_calls_mean"])),
        ("generated tokens/s", _num(tokens / llm_time if llm_time else None)),
        ("successes tested by", ", ".join(f"{n} {src}" for src, n in sources.most_common()) or "-"),
    ]
    for name, value in rows:
        print(f"{name:<30} {value}")
    print(f"\n{'stage':<10}{'executions':>12}{'failed':>8}{'mean s/run':>12}")
    for stage in STAGES:
        print(f"{stage:<10}{s['stage_executions'][stage]:>12}{s['stage_failures'][stage]:>8}"
              f"{s['stage_time_mean'][stage]:>12.2f}")


def _tests_source(run_dir: Path | None) -> str:
    try:
        record = load_run(run_dir) if run_dir else RunRecord()
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return "unknown"
    source = tests_from(record)
    if source is None:
        return "the intent's tests"
    return "a generic spec (GET /health only)" if source == "generic" else f"the tests of {source}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except KubeVibeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
