"""KubeVibe-Bench's own integrity: the shipped suite's shape, every reference passes its hidden tests, every task's
tests catch its deliberately wrong variant (all in-process on loopback, with Tavern itself), and a sample of tasks
through the real pipeline (replayed answers: the reference's own files) and through `kubevibe bench`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubevibe.errors import UsageError
from kubevibe.experiments import bench as kb
from kubevibe.llm.replay import write_replay_log

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
SUITE = kb.load_suite()


def test_the_shipped_suite_has_at_least_30_tasks_in_three_tiers_each_complete():
    assert len(SUITE) >= 30
    tiers = {tier: [t for t in SUITE if t.tier == tier] for tier in kb.TIERS}
    assert all(len(members) >= 8 for members in tiers.values()), {k: len(v) for k, v in tiers.items()}
    for task in SUITE:
        assert task.path.name == task.id
        for name in (*kb.REFERENCE_FILES, kb.WRONG_FILE):
            assert task.reference(name).is_file(), (task.id, name)
        assert "5000" in task.request  # the request states the contract, port included


@pytest.fixture(scope="module")
def integrity(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-integrity")
    return ({r.task: r for r in kb.check_suite(SUITE, "myapp.py", work / "reference")},
            {r.task: r for r in kb.check_suite(SUITE, kb.WRONG_FILE, work / "wrong")})


def test_every_reference_passes_all_its_hidden_tests(integrity):
    good, _ = integrity
    failing = {task: r.failures for task, r in good.items() if not r.all_passed}
    assert failing == {}
    assert len(good) == len(SUITE)


def test_every_tasks_tests_catch_its_wrong_variant(integrity):
    _, wrong = integrity
    accepted = [task for task, r in wrong.items() if r.all_passed]
    assert accepted == [], "these tasks' tests accept a wrong implementation"
    assert len(wrong) == len(SUITE)


def test_check_references_command_says_every_task_is_sound(tmp_path):
    suite = tmp_path / "suite"
    for task_id in ("reverse-string", "todo-api"):
        shutil.copytree(kb.shipped_suite() / task_id, suite / task_id)
    done = subprocess.run([*KUBEVIBE, "bench", str(suite), "--check-references"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 tasks are sound" in done.stdout and "wrong variant caught" in done.stdout
    # a task whose tests accept anything is caught
    (suite / "todo-api" / "reference" / "wrong.py").write_text(
        (suite / "todo-api" / "reference" / "myapp.py").read_text())
    done = subprocess.run([*KUBEVIBE, "bench", str(suite), "--check-references"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "NOT caught" in done.stdout and "1 of 2 tasks are sound" in done.stdout


def copy_task(src: str, root: Path) -> Path:
    return Path(shutil.copytree(kb.shipped_suite() / src, root / src))


def test_a_benchmarks_tests_may_not_run_host_code(tmp_path):
    task = copy_task("reverse-string", tmp_path)
    tests = task / "tests.tavern.yaml"
    tests.write_text(tests.read_text() + "---\ntest_name: sneaky\nstages:\n  - name: x\n    request:\n"
                     "      url: '{base_url}/reverse'\n    response:\n      verify_response_with:\n"
                     "        function: os:system\n")
    with pytest.raises(UsageError, match="verify_response_with"):
        kb.load_task(task)
    tests.write_text("test_name: t\nstages:\n  - request: {url: !include /etc/passwd}\n")
    with pytest.raises(UsageError, match="!include"):
        kb.load_task(task)


def test_a_bad_task_file_is_one_sentence(tmp_path):
    task = copy_task("reverse-string", tmp_path)
    (task / "task.yaml").write_text(yaml.safe_dump({"id": "reverse-string", "tier": "legendary", "request": "x" * 20}))
    with pytest.raises(UsageError, match="tier"):
        kb.load_suite(tmp_path)
    done = subprocess.run([*KUBEVIBE, "bench", str(tmp_path), "--llm", "embedded"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "tier" in done.stderr and "Traceback" not in done.stderr


def reference_answer(task: kb.Task) -> str:
    files = {key: task.reference(name).read_text() for key, name in (
        ("pythonfilecontent", "myapp.py"), ("containerfilecontent", "Dockerfile"), ("yamlfilecontent", "vibe.yaml"),
        ("requirements", "requirements.txt"))}
    return json.dumps(files)


ENV = {**os.environ, "KUBEVIBE_BASE_POLICY": "offline"}


@pytest.mark.engine
@pytest.mark.parametrize("task_id", ["celsius-to-fahrenheit", "bank-accounts"])
def test_a_reference_passes_its_hidden_tests_through_the_real_pipeline(tmp_path, task_id):
    from engine_helpers import NOTHING, leftovers, require_engine

    require_engine()
    task = next(t for t in SUITE if t.id == task_id)
    log = write_replay_log(tmp_path / "a.jsonl", [("generate", reference_answer(task))])
    done = subprocess.run([*KUBEVIBE, "run", task.request, "--llm", f"replay:{log}", "--tests", str(task.tests_file),
                           "--tests-source", "benchmark", "--json"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "runs").glob("*/*")
    record = json.loads((run / "run.json").read_text())
    assert record["outcome"] == "success"
    assert record["verdict"]["accepted"]["source"] == "benchmark"
    assert record["verdict"]["accepted"]["passed"] == record["verdict"]["accepted"]["total"] > 0
    assert leftovers(run.name) == NOTHING


@pytest.mark.engine
def test_kubevibe_bench_runs_a_suite_as_an_experiment_and_prints_the_table(tmp_path):
    from engine_helpers import require_engine

    require_engine()
    suite = tmp_path / "suite"
    task = kb.load_task(copy_task("palindrome", suite))
    other = kb.load_task(copy_task("vowel-count", suite))
    # One replay log for every run: the palindrome reference, which is wrong for the vowel task.
    log = write_replay_log(tmp_path / "a.jsonl", [("generate", reference_answer(task))])
    done = subprocess.run([*KUBEVIBE, "bench", str(suite), "--llm", f"replay:{log}", "--max-fixes", "0",
                           "--dir", str(tmp_path / "exp")], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**ENV, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "exp" / "bench.json").read_text())
    rows = {r["task"]: r for r in result["tasks"]}
    assert (rows[task.id]["n"], rows[task.id]["pass1"], rows[task.id]["passk"]) == (1, 1, 1)
    assert (rows[other.id]["pass1"], rows[other.id]["passk"], rows[other.id]["runtime_only"]) == (0, 0, 1)
    assert rows[other.id]["stops"] == {"ACCEPT": 1}
    easy = next(r for r in result["tiers"] if r["task"] == "easy")
    assert (easy["n"], easy["pass1"], easy["runtime_only"]) == (2, 1, 1)
    assert "functional pass@1" in done.stdout and "palindrome" in done.stdout
    # the experiment store has the verdict of every run
    import sqlite3

    con = sqlite3.connect(tmp_path / "exp" / "experiment.sqlite")
    rows = con.execute("SELECT status, accept_source, functional_success, runtime_success FROM runs").fetchall()
    assert sorted(rows) == [("fail", "benchmark", 0, 1), ("success", "benchmark", 1, 1)]
