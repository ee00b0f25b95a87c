#!/usr/bin/env python3
"""Wall time of each pipeline stage on the local engine, for the known-good credit-card service.

Scenarios, each run REPEAT times through the real `kubevibe run` command with replayed model answers:
  first build   requirements.txt made unique per repetition, so the pip layer is built from scratch
  rebuild       the same requirements again, with a one-line change of myapp.py (pip layer cached)
  requirements  a package added to requirements.txt (the pip layer is built again; nothing is pre-installed)
Run it once per code base to compare (the interpreter's PYTHONPATH decides which kubevibe runs), e.g. before:
  PYTHONPATH=/path/to/old/src .venv/bin/python benchmarks/local_stages.py
For every run: Build, Validate, Deploy (to ready), Connect, Chart, and the time each stage spent outside
external commands (the tool's own overhead: stage time minus the commands in its commands.log).

Usage:  .venv/bin/python benchmarks/local_stages.py [--repeat 3]
Needs the local engine (scripts/bootstrap.sh). Prints a table; nothing is kept (runs go to a temp dir).
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

STAGES = ("BUILD", "VALIDATE", "DEPLOY", "CONNECT", "CHART")
COMMAND_TIME = re.compile(r"^# .*\((\d+\.\d+)s\)$", re.MULTILINE)


def run_once(workdir: Path, code: str, requirements: str) -> dict[str, tuple[float, float]]:
    """One run; returns {stage: (wall seconds, seconds outside external commands)}."""
    answer = json.dumps({"pythonfilecontent": code, "containerfilecontent": KNOWN_GOOD_DOCKERFILE,
                         "yamlfilecontent": KNOWN_GOOD_MANIFEST, "requirements": requirements})
    log = write_replay_log(workdir / f"answers-{uuid.uuid4().hex[:6]}.jsonl", [("generate", answer)])
    runs_dir = workdir / "runs"
    before = set(runs_dir.glob("*/*")) if runs_dir.exists() else set()
    proc = subprocess.run([sys.executable, "-m", "kubevibe.cli", "run", "Develop a credit card validation "
                           "microservice", "--llm", f"replay:{log}", "--runs-dir", str(runs_dir), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    (run,) = set(runs_dir.glob("*/*")) - before
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({run}):\n{proc.stdout}\n{proc.stderr}")
    times = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("from") in STAGES and event.get("result") == "ok":
            step_dir = run / "steps" / f"{event['step']:03d}-{event['from'].lower()}"
            log_file = step_dir / "commands.log"
            commands = sum(map(float, COMMAND_TIME.findall(log_file.read_text()))) if log_file.exists() else 0.0
            times[event["from"]] = (event["duration_s"], max(0.0, event["duration_s"] - commands))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, tuple[float, float]]]] = {"first build": [], "rebuild (1-line change)": [],
                                                                "rebuild (requirements)": []}
    with tempfile.TemporaryDirectory(prefix="kv-bench-") as tmp:
        workdir = Path(tmp)
        for i in range(args.repeat):
            token = uuid.uuid4().hex[:8]
            requirements = KNOWN_GOOD_REQUIREMENTS + f"# bench {token}\n"  # a new pip layer: no cache
            results["first build"].append(run_once(workdir, KNOWN_GOOD_CODE, requirements))
            changed = KNOWN_GOOD_CODE.replace("app = Flask(__name__)", f"app = Flask(__name__)  # {token}")
            results["rebuild (1-line change)"].append(run_once(workdir, changed, requirements))
            more = requirements + "requests==2.32.3\n"  # a new dependency: the pip layer is built again
            results["rebuild (requirements)"].append(run_once(workdir, changed, more))
            print(f"repetition {i + 1}/{args.repeat} done", file=sys.stderr)
    print(f"\nLocal engine, known-good credit-card service, {args.repeat} repetitions (median [min-max] seconds)\n")
    header = f"{'scenario':<26}" + "".join(f"{s:>20}" for s in STAGES) + f"{'overhead':>12}"
    print(header)
    print("-" * len(header))
    for scenario, runs in results.items():
        cells = []
        for stage in STAGES:
            walls = [r[stage][0] for r in runs if stage in r]
            cells.append(f"{statistics.median(walls):7.2f} [{min(walls):.2f}-{max(walls):.2f}]" if walls else "-")
        overhead = statistics.median(sum(o for _, o in r.values()) for r in runs)
        print(f"{scenario:<26}" + "".join(f"{c:>20}" for c in cells) + f"{overhead:>12.2f}")
    print("\noverhead: time the stages spent outside external commands (Python, HTTP probes of Connect, waits).")


if __name__ == "__main__":
    main()
