"""`kubevibe experiment --executor ray` on a real Ray cluster on loopback (a head and two workers with different
custom resources), against a real OpenAI-compatible model server on loopback that answers slowly and never with
JSON, so every run ends before Build (no container engine needed) with a known outcome.

Checked: the same plan gives the same cells, outcomes and stored records as the local executor; a worker killed
mid-run makes its cell start again on another worker, recorded as such; Ctrl-C and resume work through Ray; and
nothing is left running afterwards (Ray processes, the runs' processes, pods, networks).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from exp_helpers import slow_model_server
from loopback import json_server
from ray_helpers import RayCluster, leftovers, remove_root, short_temp_root

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed: pip install 'kubevibe[ray]'")

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
CALLER_SETTINGS = ("MODEL", "N", "TIMEOUT", "INTENT_METHOD", "IVAL_METHOD", "FIXFZERO", "KUBEVIBE_LLM",
                   "RAY_ADDRESS", "KUBEVIBE_EXECUTOR")
# Columns that differ between any two executions of the same cell (ids, paths, clocks).
VOLATILE = {"run_id", "run_dir", "elapsed_s", "llm_s", "started", "finished", "duration_s", "time", "attempts"}


def env(root: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in CALLER_SETTINGS}
    src = str(Path(__file__).resolve().parents[1] / "src")
    base["PYTHONPATH"] = src + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
    base["TMPDIR"] = str(root)  # the runs' scratch directories on the workers, and a local Ray instance's
    # Ray keeps an auth token in ~/.ray (a local instance writes one; a head then requires it): the test's own.
    base["HOME"] = str(root / "home")
    (root / "home").mkdir(exist_ok=True)
    # A dead node is noticed after about 3 s instead of Ray's default 30 s or so.
    base.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
                RAY_health_check_initial_delay_ms="1000", RAY_USAGE_STATS_ENABLED="0")
    base.update(extra)
    return base


@contextmanager
def counting_model_server(delay: float):
    """Like exp_helpers.slow_model_server, and yields the chat requests it has seen so far."""
    chats: list[float] = []

    def answer(method: str, path: str, body):
        if method == "GET":
            return 200, {"object": "list", "data": [{"id": "slow-model", "object": "model", "created": 0,
                                                     "owned_by": "test"}]}
        chats.append(time.monotonic())
        return 200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "slow-model",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "not json"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}, delay

    with json_server(answer) as (url, _all):
        yield f"openai://{url.removeprefix('http://')}/v1", chats


def write_plan(path: Path, llm: str, **changes) -> Path:
    plan = {"name": "exp", "models": [{"llm": llm, "model": "slow-model", "label": "slow"}],
            "prompts": ["Develop an echo service", "Develop a todo service"], "repetitions": 2, "workers": 2,
            "settings": {"max_steps": 3, "timeout": 120}}
    plan.update(changes)
    path.write_text(yaml.safe_dump(plan))
    return path


def rows(exp: Path, table: str, order: str) -> list[dict]:
    con = sqlite3.connect(exp / "experiment.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY {order}")]
    finally:
        con.close()


def stable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def run_records(exp: Path) -> dict[str, dict]:
    """cell key -> run.json without what differs between two executions (ids, times, the run's own path)."""
    out = {}
    for path in sorted((exp / "runs").glob("*/*/*/run.json")):
        record = json.loads(path.read_text())
        out[path.parts[-4]] = {k: record.get(k) for k in ("prompt", "outcome", "final_state", "reason", "strategy",
                                                          "settings", "sources", "config_file", "limits", "verified")}
    return out


def run_ids(exp: Path) -> set[str]:
    return {p.parent.name.rsplit("-", 1)[-1] for p in (exp / "runs").glob("*/*/*/run.json")}


def assert_nothing_left(root: Path, ids: set[str]) -> None:
    assert not leftovers(root), [p.info for p in leftovers(root)]
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                           timeout=60).stdout + subprocess.run(["podman", "network", "ls", "--format", "{{.Name}}"],
                                                               capture_output=True, text=True, timeout=60).stdout
    assert not [i for i in ids if i in names], names


@pytest.fixture
def short_root():
    root = short_temp_root()
    yield root
    for proc in leftovers(root):  # a failed test must not leave anything running either
        proc.kill()
    remove_root(root)


@pytest.fixture
def cluster(short_root):
    """A cluster to start: head (no kubevibe_local: it only coordinates) + worker wa (1 run at a time) + worker
    wb (2 at a time); stopped by process group whatever the test does."""
    ray_cluster = RayCluster(short_root / "ray", env(short_root))
    try:
        yield ray_cluster
    finally:
        ray_cluster.stop()


def start_cluster(ray_cluster: RayCluster) -> None:
    ray_cluster.start_head()
    ray_cluster.start_workers({"wa": {"kubevibe_local": 1}, "wb": {"kubevibe_local": 2, "kubevibe_big": 1}})


@pytest.mark.ray
@needs_ray
def test_ray_cluster_matches_local_executor_and_retries_a_lost_worker(cluster, short_root):
    started = time.monotonic()
    root = short_root
    with slow_model_server(delay=1.0) as llm:
        plan = write_plan(root / "plan.yaml", llm)
        # The local-executor run of the plan goes on while the cluster starts (Ray's start-up is slow).
        local = subprocess.Popen([*KUBEVIBE, "experiment", str(plan), "--dir", str(root / "local")], cwd=root,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(root))
        try:
            start_cluster(cluster)
        finally:
            local_out, _ = local.communicate(timeout=120)
        assert local.returncode == 0, local_out

        # The same plan through Ray; once all three slots are busy (wa: 1, wb: 2), worker wa dies.
        proc = subprocess.Popen([*KUBEVIBE, "experiment", str(plan), "--dir", str(root / "on-ray"), "--executor", "ray",
                                 "--ray-address", cluster.address], cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env(root))
        logs = root / "on-ray" / "logs"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            text = "".join(p.read_text() for p in logs.glob("*.log")) if logs.is_dir() else ""
            if text.count("runs on Ray node") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0]
        cluster.node("wa").kill()
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out
    assert "Traceback" not in out and "3 × kubevibe_local" in out and "(3 at a time)" in out
    local_exp, ray_exp = root / "local", root / "on-ray"

    # Same cells, same outcomes, same stored records (but for ids, paths and clocks).
    assert stable(rows(ray_exp, "runs", "cell_key")) == stable(rows(local_exp, "runs", "cell_key"))
    assert [r["status"] for r in rows(ray_exp, "runs", "cell_key")] == ["fail"] * 4
    for table, order in (("stage_executions", "cell_key, step"), ("llm_calls", "cell_key, seq"),
                         ("revisions", "cell_key, rev")):
        assert stable(rows(ray_exp, table, order)) == stable(rows(local_exp, table, order)), table
    assert run_records(ray_exp) == run_records(local_exp)
    assert len(run_records(ray_exp)) == 4  # one run directory per cell: the lost try left none behind

    # Exactly one cell lost its worker and ran again elsewhere, and says so in its log and its attempts.
    lost = {p.stem: p.read_text() for p in logs.glob("*.log") if "lost the Ray worker" in p.read_text()}
    assert len(lost) == 1, out
    key, text = next(iter(lost.items()))
    nodes = [line.split("runs on Ray node ")[1].split()[0] for line in text.splitlines() if "runs on Ray node" in line]
    assert len(nodes) == 2 and nodes[0] != nodes[1], text
    assert "NodeDiedError" in text or "WorkerCrashedError" in text, text
    assert {r["cell_key"]: r["attempts"] for r in rows(ray_exp, "runs", "cell_key")}[key] == 2
    assert "started again after a lost worker" in out

    # Report and compare read the Ray experiment like a local one.
    compared = subprocess.run([*KUBEVIBE, "compare", str(local_exp), str(ray_exp)], cwd=root, capture_output=True,
                              text=True, env=env(root), timeout=60)
    assert compared.returncode == 0, compared.stderr
    cluster.stop()
    assert_nothing_left(root, run_ids(ray_exp) | run_ids(local_exp))
    assert time.monotonic() - started < 150


@pytest.mark.ray
@needs_ray
def test_local_ray_instance_interrupt_and_resume(short_root):
    """Without an address a Ray instance is started for the experiment and stopped after it; Ctrl-C interrupts
    the runs on the workers cleanly and the next invocation resumes them through Ray."""
    root = short_root
    with counting_model_server(delay=2.5) as (llm, seen):
        plan = write_plan(root / "plan.yaml", llm, repetitions=1)
        exp = root / "exp"
        argv = [*KUBEVIBE, "experiment", str(plan), "--dir", str(exp), "--executor", "ray"]
        proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env(root))
        deadline = time.monotonic() + 90
        # Interrupt once both runs wait for the model in GENERATE (past Intent, so they have a checkpoint).
        while time.monotonic() < deadline and proc.poll() is None and len(seen) < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 130, out
        assert "a local instance for this experiment" in out and "Traceback" not in out
        statuses = [r["status"] for r in rows(exp, "runs", "cell_key")]
        assert statuses == ["interrupted"] * 2, out
        assert len(list((exp / "runs").glob("*/*/*/state.json"))) == 2  # the runs came back with their checkpoints
        assert not list(root.glob("kvray-*"))  # the instance's temp dir went with it
        assert not (root / "home" / ".ray").exists()  # its auth token lived only in the environment

        again = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env(root), timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
    assert "0 already finished, 2 to run" in again.stdout
    records = rows(exp, "runs", "cell_key")
    assert [r["status"] for r in records] == ["fail"] * 2 and [r["resumed"] for r in records] == [1, 1]
    assert len(list((exp / "runs").glob("*/*/*/run.json"))) == 2  # resumed in place, not started afresh
    assert_nothing_left(root, run_ids(exp))


def test_ray_options_bad_input(tmp_path):
    plan = write_plan(tmp_path / "plan.yaml", "openai://127.0.0.1:9/v1")
    no_ray = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None; "
                             "sys.argv = ['kubevibe', 'experiment', 'plan.yaml', '--executor', 'ray']; "
                             "from kubevibe.cli import main; main()"],
                            cwd=tmp_path, capture_output=True, text=True, env=env(tmp_path), timeout=60)
    assert no_ray.returncode == 2 and "pip install 'kubevibe[ray]'" in no_ray.stderr, no_ray.stderr
    assert "Traceback" not in no_ray.stderr
    address_alone = subprocess.run([*KUBEVIBE, "experiment", "plan.yaml", "--ray-address", "127.0.0.1:1"],
                                   cwd=tmp_path, capture_output=True, text=True, env=env(tmp_path), timeout=60)
    assert address_alone.returncode == 2 and "--executor ray" in address_alone.stderr
    bad = subprocess.run([*KUBEVIBE, "experiment", "plan.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         env=env(tmp_path, KUBEVIBE_EXECUTOR="slurm"), timeout=60)
    assert bad.returncode == 2 and "KUBEVIBE_EXECUTOR" in bad.stderr
    write_plan(tmp_path / "plan.yaml", "openai://127.0.0.1:9/v1", settings={"executor": "ray"})
    in_plan = subprocess.run([*KUBEVIBE, "experiment", "plan.yaml", "--dry-run"], cwd=tmp_path, capture_output=True,
                             text=True, env=env(tmp_path), timeout=60)
    assert in_plan.returncode == 2 and "--executor" in in_plan.stderr
