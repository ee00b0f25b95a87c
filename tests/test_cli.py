"""The `kubevibe` command as a user meets it: exit codes, one-sentence errors, stdin, JSON, show, interrupt, resume.

Runs the real entry point in a subprocess. No container engine is needed: these runs end before Build.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exp_helpers import slow_model_server

from kubevibe.llm.replay import write_replay_log

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]


def kubevibe(*args, cwd: Path, input: str | None = None, env: dict | None = None, timeout: float = 60):
    full_env = {k: v for k, v in os.environ.items() if k not in ("MODEL", "N", "TIMEOUT", "INTENT_METHOD",
                                                                  "IVAL_METHOD", "FIXFZERO")}
    full_env.update(env or {})
    return subprocess.run([*KUBEVIBE, *args], cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def only_run(tmp_path: Path) -> Path:
    (run,) = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    return run


@pytest.mark.parametrize("args,env,needle", [
    (["run", ""], {}, "The request is empty"),
    (["run", "x"], {"INTENT_METHOD": "bogus"}, "INTENT_METHOD"),
    (["run", "x"], {"N": "zero"}, "Setting N="),
    (["run", "x", "--llm", "ftp://x"], {}, "Unknown LLM spec"),
    (["run", "x", "--llm", "replay:/nonexistent/llm.jsonl"], {}, "does not exist"),
    (["run", "--prompt-file", "/nonexistent/prompt.txt"], {}, "Cannot read the prompt file"),
    (["run", "x", "--config", "/nonexistent/k.toml"], {}, "does not exist"),
    (["show", "/tmp"], {}, "not a KubeVibe run directory"),
    (["resume", "/tmp"], {}, "not a KubeVibe run directory"),
])
def test_bad_input_gets_one_sentence_and_exit_2(tmp_path, args, env, needle):
    result = kubevibe(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().startswith("error:")
    assert not (tmp_path / "runs").exists()  # nothing was created for a refused request


def test_prompt_from_stdin_and_failure_exit_code_and_json(tmp_path):
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")] * 3)
    result = kubevibe("run", "--llm", f"replay:{answers}", "--json", "-n", "4", cwd=tmp_path,
                      input="Develop a credit card validation microservice\n")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "fail"
    assert summary["prompt"] == "Develop a credit card validation microservice"
    assert [t["from"] for t in summary["transitions"]] == ["INTENT", "GENERATE", "GENERATE", "GENERATE", "GENERATE"]
    assert summary["transitions"][-1]["result"] == "limit"
    run = only_run(tmp_path)
    assert json.loads((run / "run.json").read_text())["sources"]["max_steps"] == "flag"


def test_prompt_file_and_show(tmp_path):
    (tmp_path / "p.txt").write_text("Develop an echo service")
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "{}")])
    result = kubevibe("run", "-f", "p.txt", "--llm", f"replay:{answers}", "-n", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.count("\n") <= 3  # quiet: the end only
    run = only_run(tmp_path)
    shown = kubevibe("show", str(run), cwd=tmp_path)
    assert shown.returncode == 0
    assert "Develop an echo service" in shown.stdout and "GENERATE" in shown.stdout
    graph = kubevibe("graph", str(run), cwd=tmp_path)
    assert graph.returncode == 0 and (run / "fsm.dot").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_records_interrupted_and_resume_continues(tmp_path, sig):
    with slow_model_server(delay=30) as llm:
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", llm, "-n", "3",
                                 "--no-test-writer"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/*/events.jsonl")):
            time.sleep(0.1)  # INTENT (method none) has finished: GENERATE is waiting for the model
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run = only_run(tmp_path)
    record = json.loads((run / "run.json").read_text())
    assert record["outcome"] == "interrupted"
    assert json.loads((run / "state.json").read_text())["next_state"] == "GENERATE"

    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "still not json")])
    resumed = kubevibe("resume", str(run), "--llm", f"replay:{answers}", "--json", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    summary = json.loads(resumed.stdout)
    results = [t["result"] for t in summary["transitions"]]
    assert results == ["ok", "interrupted", "resumed", "failed", "limit"]  # N=3 counts across the resume
    again = kubevibe("resume", str(run), cwd=tmp_path)
    assert again.returncode == 2 and "already ended" in again.stderr
