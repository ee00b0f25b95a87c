"""Faults on the real local engine (issue 11): signals during teardown, interrupted and timed-out builds,
`kill -9`, gc of dead owners' leftovers, and a Unicode request end to end.

Every run is the real `kubevibe run` with replayed model answers; podman, the registry and helm are real.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from engine_helpers import NOTHING, leftovers, require_engine
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE
from test_e2e_local import SPEC, generated

from kubevibe.engines.leftovers import build_containers
from kubevibe.exec import run as run_command
from kubevibe.llm.replay import write_replay_log
from kubevibe.podman_conf import podman_env
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.tools import find_tool

pytestmark = pytest.mark.engine

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
PROMPT = "Develop a credit card validation microservice"
def slow_code(seconds: float) -> str:
    """The service listens at once (so Deploy is done) but takes `seconds` for every answer: the run stays in the
    deployed states (Connect, Accept, Load) long enough for a signal or a gc to land there."""
    return KNOWN_GOOD_CODE.replace('@app.route("/health"', "import time\n\n\n@app.before_request\n"
                                   f"def answer_slowly():\n    time.sleep({seconds})\n\n\n"
                                   '@app.route("/health"', 1)


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


def start(tmp_path: Path, answers: list[tuple[str, str]], *args: str, prompt: str = PROMPT,
          env: dict | None = None) -> subprocess.Popen:
    log = write_replay_log(tmp_path / f"answers-{secrets.token_hex(3)}.jsonl", answers)
    return subprocess.Popen([*KUBEVIBE, "run", prompt, "--llm", f"replay:{log}", "--intent-method",
                             "json-with-required", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline", **(env or {})})


def wait_until(proc: subprocess.Popen, ready, seconds: float = 300, what: str = "the awaited moment"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before {what}: {out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{what} never came")


def the_run(tmp_path: Path) -> Path | None:
    found = list((tmp_path / "runs").glob("*/*/run.json"))
    return found[0].parent if found else None


def pods_up(tmp_path: Path, stage: str):
    """Ready once the run is in `stage` (its transition is recorded) and its pods exist."""
    def ready():
        run = the_run(tmp_path)
        if run is None or not (run / "events.jsonl").exists():
            return None
        if not any(e.get("to") == stage.upper() for e in events_of(run)):
            return None
        return run if leftovers(run.name)["pods"] else None
    return ready


def building(tmp_path: Path):
    def ready():
        run = the_run(tmp_path)
        if run is None or not list(run.glob("steps/*-build/commands.log")) and not list(run.glob("steps/*-build")):
            return None
        return run if our_build_containers(run.name) else None
    return ready


def our_build_containers(run_id: str) -> list[str]:
    return [c.id for c in build_containers(str(find_tool("podman")), podman_env()) if c.run == label_value(run_id)]


def remove_images_of(run_id: str) -> None:
    """Best effort: other runs on this machine add and remove images meanwhile, which can fail a listing."""
    binary, env = str(find_tool("podman")), podman_env()
    listed = run_command([binary, "images", "-q", "--filter", f"label={RUN_LABEL}={label_value(run_id)}"],
                         timeout=60, env=env)
    for image in set(listed.stdout.split()):
        run_command([binary, "rmi", "--force", image], timeout=60, env=env)


def events_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


# --- 2. A signal during teardown leaks nothing; two signals do not abort the teardown -----------------------------


@pytest.mark.parametrize("first,second", [(signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
def test_signals_during_connect_and_its_teardown_leak_nothing(tmp_path, first, second):
    proc = start(tmp_path, [("intent", json.dumps(SPEC)), ("generate", generated(pythonfilecontent=slow_code(3)))])
    run = wait_until(proc, pods_up(tmp_path, "connect"), what="Connect with a running pod")
    try:
        time.sleep(0.5)
        proc.send_signal(first)
        time.sleep(0.4)  # the teardown is running now
        proc.send_signal(second)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert leftovers(run.name) == NOTHING
        record = json.loads((run / "run.json").read_text())
        assert record["outcome"] == "interrupted" and record["finished"]
        last = events_of(run)[-1]
        # The signal lands while the deployment lives: in Connect, or in Accept or Load right after it.
        assert last["result"] == "interrupted" and last["from"] in ("CONNECT", "ACCEPT", "LOAD"), last
        assert json.loads((run / "state.json").read_text())["next_state"] == last["from"]
    finally:
        remove_images_of(run.name)


# --- 3. No build leaves working containers; gc finds those of a crashed build -------------------------------------


def slow_dockerfile() -> str:
    # A step no cache holds (the token), that outlives the stage timeout or the signal.
    return KNOWN_GOOD_DOCKERFILE.replace("COPY myapp.py .", f"RUN sleep 90 && echo {secrets.token_hex(6)}\n"
                                         "COPY myapp.py .")


def test_a_timed_out_build_leaves_no_working_containers(tmp_path):
    proc = start(tmp_path, [("intent", json.dumps(SPEC)), ("generate", generated(containerfilecontent=slow_dockerfile()))],
                 "-n", "3", "--json", env={"KUBEVIBE_STAGE_TIMEOUT": "8"})
    out, err = proc.communicate(timeout=300)
    run = the_run(tmp_path)
    assert proc.returncode == 1, err
    summary = json.loads(out)
    build = [t for t in summary["transitions"] if t["from"] == "BUILD"]
    assert build and build[0]["result"] == "failed" and "timed out" in build[0]["reason"]
    assert our_build_containers(run.name) == []


def test_an_interrupted_build_leaves_no_working_containers(tmp_path):
    proc = start(tmp_path, [("intent", json.dumps(SPEC)), ("generate", generated(containerfilecontent=slow_dockerfile()))])
    run = wait_until(proc, building(tmp_path), what="a build with a working container")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert our_build_containers(run.name) == []
    assert json.loads((run / "run.json").read_text())["outcome"] == "interrupted"


# --- 5. Objects carry their owner; gc removes at once what a dead owner left, never a live run's ------------------


def gc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*KUBEVIBE, "gc", "--target", "local", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_gc_removes_at_once_what_a_killed_build_left(tmp_path):
    proc = start(tmp_path, [("intent", json.dumps(SPEC)), ("generate", generated(containerfilecontent=slow_dockerfile()))])
    run = wait_until(proc, building(tmp_path), what="a build with a working container")
    proc.kill()  # SIGKILL: no cleanup can run
    proc.communicate(timeout=30)
    # The build itself (podman, in its own process group) may still be going; it is not KubeVibe's process.
    left = our_build_containers(run.name)
    assert left, "a killed build left nothing: this test would prove nothing"
    result = gc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "its process has ended" in result.stdout
    deadline = time.monotonic() + 120
    while our_build_containers(run.name) and time.monotonic() < deadline:
        gc(tmp_path)  # the orphaned podman build may create its next step's container before it notices
        time.sleep(2)
    assert our_build_containers(run.name) == []


def test_gc_keeps_a_live_runs_pods_and_removes_them_at_once_after_kill_9(tmp_path):
    proc = start(tmp_path, [("intent", json.dumps(SPEC)), ("generate", generated(pythonfilecontent=slow_code(8)))])
    run = wait_until(proc, pods_up(tmp_path, "connect"), what="Connect with a running pod")
    try:
        kept = gc(tmp_path)
        assert kept.returncode == 0, kept.stdout + kept.stderr
        assert "its process is still running" in kept.stdout
        assert leftovers(run.name)["pods"]  # untouched while the run lives
        proc.kill()
        proc.communicate(timeout=30)
        assert leftovers(run.name)["pods"]  # kill -9: nothing could clean up
        removed = gc(tmp_path)  # the default --older-than is an hour: ownership decides, not age
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "its process has ended" in removed.stdout
        assert leftovers(run.name) == NOTHING
    finally:
        if proc.poll() is None:
            proc.kill()
        remove_images_of(run.name)


# --- 6. Any Unicode request works end to end ------------------------------------------------------------------------


def test_an_emoji_request_reaches_success_and_its_chart_keeps_the_emoji(tmp_path):
    prompt = "Develop a credit card validation microservice 💳✨ — für alle Kunden"
    proc = start(tmp_path, [("intent", json.dumps({**SPEC, "description": "Validates cards 💳 with Luhn ✨"})),
                            ("generate", generated())], "--json", prompt=prompt)
    out, err = proc.communicate(timeout=600)
    run = the_run(tmp_path)
    try:
        assert proc.returncode in (0, 3), err  # 3: "unverified" once verdicts exist (issue 12)
        summary = json.loads(out)
        assert summary["prompt"] == prompt
        assert all(t["from"] != "FIX" for t in summary["transitions"]), summary["transitions"]
        chart_yaml = next(run.glob("chart/*/Chart.yaml")).read_text(encoding="utf-8")
        assert "💳" in chart_yaml and "\\ud83d" not in chart_yaml
        assert yaml.safe_load(chart_yaml)["description"]
        assert leftovers(run.name) == NOTHING
    finally:
        remove_images_of(run.name)
