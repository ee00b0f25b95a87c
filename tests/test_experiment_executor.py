"""`kubevibe experiment` for real: subprocess runs in a bounded pool, Ctrl-C, resuming, --dry-run, plan checks.

The runs talk to real LLM backends (replay logs, or a slow OpenAI-compatible server on loopback) and end
before Build, so no container engine is needed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from exp_helpers import slow_model_server

from kubevibe.llm.replay import write_replay_log

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
CALLER_SETTINGS = ("MODEL", "N", "TIMEOUT", "INTENT_METHOD", "IVAL_METHOD", "FIXFZERO", "KUBEVIBE_LLM")


def env(**extra):
    base = {k: v for k, v in os.environ.items() if k not in CALLER_SETTINGS}
    base.update(extra)
    return base


def write_plan(path: Path, llm: str, **changes) -> Path:
    plan = {"name": "exp", "models": [{"llm": llm, "model": "slow-model", "label": "slow"}],
            "prompts": ["Develop an echo service", "Develop a todo service"], "repetitions": 2, "workers": 2,
            "settings": {"max_steps": 3, "timeout": 120}}
    plan.update(changes)
    path.write_text(yaml.safe_dump(plan))
    return path


def statuses(exp: Path) -> dict[str, str]:
    con = sqlite3.connect(exp / "experiment.sqlite")
    try:
        return dict(con.execute("SELECT cell_key, status FROM runs").fetchall())
    finally:
        con.close()


def run_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in (exp / "runs").glob("*/*/*/run.json"))


def test_interrupted_experiment_continues_without_redoing_finished_runs(tmp_path):
    exp = tmp_path / "exp"
    with slow_model_server(delay=1.0) as llm:
        plan = write_plan(tmp_path / "plan.yaml", llm)
        started = time.monotonic()
        proc = subprocess.Popen([*KUBEVIBE, "experiment", str(plan), "--dir", str(exp)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(N="99"))
        # Workers=2: the first two runs finish, then the last two start; interrupt those in GENERATE.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [d for d in run_dirs(exp) if (d / "events.jsonl").exists()]
            if len(busy) == 4:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "Traceback" not in out + err
        assert "interrupted:" in out and "Run the same command again" in out

        first = statuses(exp)
        assert sorted(first.values()) == ["fail", "fail", "interrupted", "interrupted"], (first, out)
        dirs = run_dirs(exp)
        assert len(dirs) == 4
        outcomes = {d: json.loads((d / "run.json").read_text())["outcome"] for d in dirs}
        assert sorted(outcomes.values()) == ["fail", "fail", "interrupted", "interrupted"]
        finished = {d: (d / "run.json").stat().st_mtime_ns for d, o in outcomes.items() if o == "fail"}
        # The plan's settings won over the caller's environment (N=99 was exported to the experiment).
        record = json.loads((dirs[0] / "run.json").read_text())
        assert record["settings"]["max_steps"] == 3 and record["sources"]["max_steps"].startswith("file:")
        assert record["sources"]["llm"] == "flag" and record["settings"]["model"] == "slow-model"

        again = subprocess.run([*KUBEVIBE, "experiment", str(exp)], cwd=tmp_path, capture_output=True,
                               text=True, env=env(), timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "2 already finished, 2 to run" in again.stdout
    assert sorted(statuses(exp).values()) == ["fail"] * 4
    assert run_dirs(exp) == dirs  # nothing redone, nothing new: the interrupted runs were resumed
    for d, mtime in finished.items():
        assert (d / "run.json").stat().st_mtime_ns == mtime
    for d, outcome in outcomes.items():
        record = json.loads((d / "run.json").read_text())
        assert record["outcome"] == "fail"
        assert bool(record.get("resumed")) == (outcome == "interrupted")
        assert (d / "fsm.dot").exists() and (d / "fsm.svg").exists()
        events = [json.loads(line) for line in (d / "events.jsonl").read_text().splitlines()]
        assert events[-1]["result"] == "limit" and events[-1]["step"] == 3  # limits carried over the resume
    con = sqlite3.connect(exp / "experiment.sqlite")
    resumed = con.execute("SELECT COUNT(*) FROM runs WHERE resumed > 0").fetchone()[0]
    steps = con.execute("SELECT COUNT(*) FROM stage_executions").fetchone()[0]
    con.close()
    # INTENT + 2 GENERATE per uninterrupted run. The runner counts an interrupted execution towards N (its step
    # number is used up), so a resumed run completes one GENERATE fewer. The limit record is not an execution.
    assert resumed == 2 and steps == 2 * 3 + 2 * 2
    assert time.monotonic() - started < 45

    # A third time there is nothing left to do.
    done = subprocess.run([*KUBEVIBE, "experiment", str(exp)], cwd=tmp_path, capture_output=True, text=True,
                          env=env(), timeout=30)
    assert done.returncode == 0 and "4 already finished, 0 to run" in done.stdout


def test_replay_experiment_dry_run_and_plan_checks(tmp_path):
    answers = write_replay_log(tmp_path / "answers.jsonl", [("generate", "not json")] * 5)
    plan = write_plan(tmp_path / "plan.yaml", f"replay:{answers.name}", strategies=["auto", "full"])

    dry = subprocess.run([*KUBEVIBE, "experiment", str(plan), "--dry-run"], cwd=tmp_path, capture_output=True,
                         text=True, env=env(), timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "8 runs = 1 models × 1 intent methods × 2 strategies × 2 prompts × 2 repetitions" in dry.stdout
    assert dry.stdout.count(" pending") == 8
    assert not (tmp_path / "experiments").exists()  # a dry run creates nothing

    result = subprocess.run([*KUBEVIBE, "experiment", str(plan), "-w", "2"], cwd=tmp_path, capture_output=True,
                            text=True, env=env(), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    exp = tmp_path / "experiments" / "exp"
    assert sorted(statuses(exp).values()) == ["fail"] * 8
    assert len(run_dirs(exp)) == 8
    assert (exp / "plan.yaml").exists() and "[8/8]" in result.stdout
    report = subprocess.run([*KUBEVIBE, "report", str(exp)], cwd=tmp_path, capture_output=True, text=True,
                            env=env(), timeout=60)
    assert report.returncode == 0, report.stderr
    assert len(list((exp / "report" / "runs").glob("*.html"))) == 8
    assert len(list((exp / "report" / "graphs").glob("*.svg"))) == 8  # the graphs drawn beside each run
    index = (exp / "report" / "index.html").read_text()
    assert "slow · none · auto" in index and "slow · none · full" in index

    dry = subprocess.run([*KUBEVIBE, "experiment", str(exp), "--dry-run"], cwd=tmp_path, capture_output=True,
                         text=True, env=env(), timeout=30)
    assert dry.returncode == 0 and dry.stdout.count(" fail") == 8 and "8 finished, 0 to run" in dry.stdout

    # Another plan in the same directory is refused, in one sentence naming what differs.
    write_plan(plan, f"replay:{answers.name}", strategies=["auto", "full"], repetitions=3)
    refused = subprocess.run([*KUBEVIBE, "experiment", str(plan)], cwd=tmp_path, capture_output=True, text=True,
                             env=env(), timeout=30)
    assert refused.returncode == 2
    assert "different plan (repetitions differ)" in refused.stderr and "Traceback" not in refused.stderr
    # A bad plan: one sentence naming the field.
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "b", "models": [{"llm": "auto"}], "prompts": ["x"]}))
    bad = subprocess.run([*KUBEVIBE, "experiment", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         env=env(), timeout=30)
    assert bad.returncode == 2 and "models[0].llm" in bad.stderr
    flags_and_plan = subprocess.run([*KUBEVIBE, "experiment", str(plan), "--repetitions", "4"], cwd=tmp_path,
                                    capture_output=True, text=True, env=env(), timeout=30)
    assert flags_and_plan.returncode == 2 and "--repetitions" in flags_and_plan.stderr
