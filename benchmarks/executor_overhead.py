#!/usr/bin/env python3
"""What running an experiment's cells as Ray tasks costs, against local processes.

The same plan (CELLS cells whose model is a replay log answering "not json", so each run ends after Intent and
two Generate executions, in a second or two, with no container engine) goes through the real `kubevibe
experiment` command with `--executor local` and `--executor ray` (a local Ray instance started for the
experiment, as many kubevibe_local as workers), with 1 and 2 workers. From the progress lines as they appear:
  start-up  until the matrix is announced (for Ray: ray.init, the coordinator actor)
  cells     from then until the last cell is recorded
  per cell  cells time × workers / cells (the time one slot is busy per cell)
  overhead  Ray's per-cell time minus the local executor's, at the same number of workers
Needs ray (pip install 'kubevibe[ray]').

Usage:  .venv/bin/python benchmarks/executor_overhead.py [--cells 6] [--repeat 1]
Prints a table; nothing is kept (experiments go to a temp dir).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kubevibe.llm.replay import write_replay_log

SETTINGS_VARS = ("MODEL", "N", "TIMEOUT", "INTENT_METHOD", "IVAL_METHOD", "FIXFZERO", "KUBEVIBE_LLM", "RAY_ADDRESS",
                 "KUBEVIBE_EXECUTOR")


def one(root: Path, executor: str, workers: int, cells: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"{executor}{workers}-", dir=root))
    answers = write_replay_log(work / "answers.jsonl", [("generate", "not json")] * 5)
    plan = {"name": "overhead", "models": [{"llm": f"replay:{answers}", "label": "replay"}],
            "prompts": [f"Develop an echo service number {i}" for i in range(cells)], "repetitions": 1,
            "workers": workers, "settings": {"max_steps": 3, "timeout": 120}}
    (work / "plan.yaml").write_text(yaml.safe_dump(plan))
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    env["HOME"] = str(work)  # Ray writes an auth token under ~/.ray for a local instance: keep it here
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kubevibe.cli", "experiment", str(work / "plan.yaml"), "--dir",
                             str(work / "exp"), "--executor", executor, "-w", str(workers)], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    announced = last_cell = None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        now = time.monotonic() - started
        if " runs in the matrix" in line:
            announced = now
        elif line.startswith(f"[{cells}/{cells}]"):
            last_cell = now
    proc.wait()
    total = time.monotonic() - started
    if proc.returncode != 0 or announced is None or last_cell is None:
        raise SystemExit(f"{executor} with {workers} worker(s) failed:\n{''.join(lines)[-3000:]}")
    shutil.rmtree(work, ignore_errors=True)
    return {"startup": announced, "cells": last_cell - announced, "total": total,
            "per_cell": (last_cell - announced) * workers / cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kvbench-", dir="/tmp"))  # short: Ray's socket paths live under it
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for _ in range(args.repeat):
            for workers in (1, 2):
                for executor in ("local", "ray"):
                    results.setdefault((executor, workers), []).append(one(root, executor, workers, args.cells))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def mean(key: tuple[str, int], field: str) -> float:
        return statistics.mean(r[field] for r in results[key])

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.cells} cells per experiment, {args.repeat} repetition(s), seconds (mean); "
          f"{os.cpu_count()} cores, load average {load}")
    print(f"{'executor':<8} {'workers':>7} {'start-up':>9} {'cells':>7} {'total wall':>11} {'per cell':>9} "
          f"{'overhead/cell':>14}")
    for workers in (1, 2):
        for executor in ("local", "ray"):
            key = (executor, workers)
            overhead = mean(key, "per_cell") - mean(("local", workers), "per_cell")
            print(f"{executor:<8} {workers:>7} {mean(key, 'startup'):>9.1f} {mean(key, 'cells'):>7.1f} "
                  f"{mean(key, 'total'):>11.1f} {mean(key, 'per_cell'):>9.2f} "
                  f"{'' if executor == 'local' else f'{overhead:+.2f}':>14}")


if __name__ == "__main__":
    main()
