#!/usr/bin/env python3
"""The LOAD stage's own overhead, and what it measures against services whose latency is known.

Each scenario is one real `kubevibe run --slo FILE` of the known-good credit-card service (replayed answers,
real podman, real Locust in its own process): a plain handler, and the same handler sleeping a known time per
request (so p50 must come out at that time plus the service's own small latency). For every run it prints the
offered and achieved rate, p50/p95/p99, error rate, peak memory and CPU, and where the LOAD stage's time went:
the load itself, the load generator's start-up and shutdown (a Python process importing Locust and gevent), and
the rest (engine readings, logs, bookkeeping).

Usage:  .venv/bin/python benchmarks/load_stage.py [--repeat 1] [--duration 5] [--rates 10,50]
Needs the local engine (scripts/bootstrap.sh). Traffic goes to 127.0.0.1 only. Nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS  # noqa: E402

from kubevibe.llm.replay import write_replay_log  # noqa: E402

WORKER_TIME = re.compile(r"^# .*kubevibe\.load\.worker .*\((\d+\.\d+)s\)$", re.MULTILINE)
SPEC = {"name": "credit-card", "port": 80, "target_port": 5000,
        "endpoints": [{"method": "POST", "path": "/validate"}],
        "test_cases": [{"name": "valid", "method": "POST", "path": "/validate",
                        "body": {"card_number": "4539578763621486"}, "expected_status": 200,
                        "expected_json": {"valid": True}}]}  # fmt: skip


def sleeping(code: str, ms: int) -> str:
    if ms <= 0:
        return code
    return code.replace("def validate():\n", f"def validate():\n    import time\n    time.sleep({ms / 1000})\n")


def run_once(workdir: Path, sleep_ms: int, rps: float, duration: float) -> dict:
    generated = json.dumps({"pythonfilecontent": sleeping(KNOWN_GOOD_CODE, sleep_ms),
                            "containerfilecontent": KNOWN_GOOD_DOCKERFILE, "yamlfilecontent": KNOWN_GOOD_MANIFEST,
                            "requirements": KNOWN_GOOD_REQUIREMENTS})
    log = write_replay_log(workdir / f"answers-{uuid.uuid4().hex[:6]}.jsonl",
                           [("intent", json.dumps(SPEC)), ("generate", generated)])
    slo = workdir / f"slo-{uuid.uuid4().hex[:6]}.yaml"
    # Objectives nobody misses: the benchmark wants the figures, not a Fix.
    slo.write_text(f"load: {{rps: {rps}, duration_s: {duration}}}\nlatency_ms: {{p99: 60000}}\n")
    runs_dir = workdir / "runs"
    before = set(runs_dir.glob("*/*")) if runs_dir.exists() else set()
    proc = subprocess.run([sys.executable, "-m", "kubevibe.cli", "run", "Develop a credit card validation "
                           "microservice", "--llm", f"replay:{log}", "--intent-method", "json-with-required",
                           "--runs-dir", str(runs_dir), "--slo", str(slo), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    (run,) = set(runs_dir.glob("*/*")) - before
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({run}):\n{proc.stdout}\n{proc.stderr}")
    (load_dir,) = sorted(run.glob("steps/*-load"))[-1:]
    report = json.loads((load_dir / "load.json").read_text())
    worker = float(WORKER_TIME.findall((load_dir / "commands.log").read_text())[-1])
    report["worker_s"] = worker
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rates", default="10,50", help="offered rates, comma-separated")
    parser.add_argument("--sleeps", default="0,300", help="handler sleeps in ms, comma-separated")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    sleeps = [int(s) for s in args.sleeps.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kv-load-bench-") as tmp:
        for sleep_ms in sleeps:
            for rps in rates:
                reports = [run_once(Path(tmp), sleep_ms, rps, args.duration) for _ in range(args.repeat)]
                rows.append((sleep_ms, rps, reports))
                print(f"handler sleep {sleep_ms} ms at {rps:g} rps done", file=sys.stderr)

    def med(reports: list[dict], key: str) -> float | None:
        values = [r[key] for r in reports if r.get(key) is not None]
        return statistics.median(values) if values else None

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(f"\nLOAD stage, known-good credit-card service, {args.duration:g} s per load, {args.repeat} run(s) each "
          "(medians)\n")
    header = (f"{'sleep ms':>8} {'offered':>8} {'achieved':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'errors':>7} {'mem MiB':>8} {'CPU':>6} | {'stage s':>7} {'load s':>7} {'startup s':>9} "
              f"{'other s':>7}")
    print(header)
    print("-" * len(header))
    for sleep_ms, rps, reports in rows:
        stage, load, worker = med(reports, "stage_s"), med(reports, "load_s"), med(reports, "worker_s")
        print(f"{sleep_ms:>8} {rps:>8g} {cell(med(reports, 'achieved_rps'), '.1f'):>8} "
              f"{cell(med(reports, 'p50_ms'), '.0f'):>8} {cell(med(reports, 'p95_ms'), '.0f'):>8} "
              f"{cell(med(reports, 'p99_ms'), '.0f'):>8} {cell(med(reports, 'error_rate'), '.1%'):>7} "
              f"{cell(med(reports, 'peak_memory_mib'), '.1f'):>8} {cell(med(reports, 'peak_cpu'), '.2f'):>6} | "
              f"{stage:>7.1f} {load:>7.1f} {worker - load:>9.1f} {stage - worker:>7.1f}")
    print("\nstartup: the load generator process's time besides the load (Python, Locust and gevent imports, "
          "shutdown);\nother: the rest of the stage (engine readings after the load, logs, the port, bookkeeping).")


if __name__ == "__main__":
    main()
