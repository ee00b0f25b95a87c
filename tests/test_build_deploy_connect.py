"""Build -> Deploy -> Connect with the real engine: podman, the local registry and the local base image.

Each test checks that nothing of its run is left behind: no container, pod or network with the run's label.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from engine_helpers import NOTHING, leftovers, require_engine
from engine_helpers import podman as _podman
from helpers import (
    KNOWN_GOOD_CODE,
    KNOWN_GOOD_DOCKERFILE,
    KNOWN_GOOD_INTENT,
    KNOWN_GOOD_MANIFEST,
    known_good_artifacts,
)
from helpers import make_context as _make_context

from kubevibe.engines.podman import PodmanBuilder
from kubevibe.localinfra.baseimage import BASE_IMAGE
from kubevibe.pipeline.context import RunContext, RunState, StageResult
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.stages import build, connect, deploy
from kubevibe.targets.labels import RUN_LABEL, label_value

pytestmark = pytest.mark.engine

TESTS_DIR = Path(__file__).parent
STAGES = {State.BUILD: build.run, State.DEPLOY: deploy.run, State.CONNECT: connect.run}

# Test cases for the known-good app (the shared intent declares endpoints only).
INTENT_WITH_TESTS = {
    **KNOWN_GOOD_INTENT,
    "spec": {
        **KNOWN_GOOD_INTENT["spec"],
        "test_cases": [
            {"name": "valid number", "method": "POST", "path": "/validate", "body": {"card_number": "4111111111111111"},
             "expected_status": 200, "expected_json": {"valid": True}},
            {"name": "invalid number", "method": "POST", "path": "/validate",
             "body": {"card_number": "4111111111111112"}, "expected_status": 200, "expected_json": {"valid": False}},
            {"name": "missing number", "method": "POST", "path": "/validate", "body": {}, "expected_status": 400,
             "expected_contains": "required"},
        ],
    },
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def engine() -> str:
    return require_engine()


def make_context(tmp_path: Path, artifacts=None, intent=KNOWN_GOOD_INTENT) -> RunContext:
    return _make_context(tmp_path, artifacts or known_good_artifacts(), state=RunState(prompt="p", intent=intent))


def run_stage(ctx: RunContext, state: State) -> StageResult:
    """What the runner does around one stage: set step and stage, run it, apply its updates."""
    ctx.step += 0 if ctx.stage is None else 1
    ctx.stage = state
    result = STAGES[state](ctx)
    for key, value in result.updates.items():
        if key == "verified":
            ctx.state.verified = {**ctx.state.verified, **value}
        else:
            setattr(ctx.state, key, value)
    return result


@pytest.fixture
def contexts():
    """Contexts created by a test; their cleanups run and their images are removed even if the test fails."""
    made: list[RunContext] = []
    yield made
    for ctx in made:
        ctx.run_all_cleanups()
        if ctx.state.image:
            PodmanBuilder().remove_image(ctx.state.image)
        assert leftovers(ctx.run_id) == NOTHING


def test_known_good_files_build_deploy_and_connect(tmp_path, contexts, engine, capsys):
    ctx = make_context(tmp_path, intent=INTENT_WITH_TESTS)
    # The user gave their own acceptance tests, so Connect itself checks the intent's declared cases too.
    ctx.state.acceptance = {"source": "user", "file": "acceptance/acceptance.tavern.yaml", "tests": 3}
    contexts.append(ctx)
    timings = {}
    for state in (State.BUILD, State.DEPLOY, State.CONNECT):
        started = time.monotonic()
        result = run_stage(ctx, state)
        timings[str(state)] = round(time.monotonic() - started, 1)
        assert result.outcome == Outcome.OK, f"{state}: {result.summary}\n" + "\n".join(e.render() for e in
                                                                                        result.evidence)
        if state == State.DEPLOY:
            assert leftovers(ctx.run_id)["pods"], "Deploy left the pod running for Connect"
    with capsys.disabled():
        print(f"\nknown-good timings (s): {timings}")

    image = ctx.state.image
    assert image.startswith(f"{engine}/kubevibe/credit-card:") and image.endswith("-s1")
    repo, tag = image.removeprefix(engine + "/").rsplit(":", 1)
    with httpx.Client(trust_env=False) as client:
        assert tag in client.get(f"http://{engine}/v2/{repo}/tags/list").json()["tags"]
    assert ctx.state.image_mappings[0]["from"] == "python:3.11-slim"
    assert ctx.state.image_mappings[0]["to"] == BASE_IMAGE

    assert ctx.state.deployment["pods"][0]["listening"] == [5000]
    assert ctx.state.deployment["service_ports"][0]["target_port"] == 5000
    assert ctx.state.verified == {"reachable": True, "tests_passed": 3, "tests_total": 3, "endpoints_checked": 1}
    report = ctx.state.connect_report
    assert [e["path"] for e in report["endpoints"]] == ["/health"]  # /validate is covered by the test cases
    # Connect keeps the deployment up (the runner owns its lifetime); its cleanup removes everything.
    assert leftovers(ctx.run_id)["pods"]
    ctx.run_cleanup("deployment")
    assert leftovers(ctx.run_id) == NOTHING
    (log,) = (ctx.rundir.step_dir(3, State.CONNECT) / "logs").glob("*.log")
    assert "POST /validate" in log.read_text()


def test_a_broken_dockerfile_fails_build_with_the_error_in_the_evidence(tmp_path, contexts):
    requirements = "flask==3.0.3\nnonexistent-package-zzz==1.0\n"
    ctx = make_context(tmp_path, known_good_artifacts(**{"requirements.txt": requirements}))
    contexts.append(ctx)
    result = run_stage(ctx, State.BUILD)
    assert result.outcome == Outcome.FAILED
    assert 'building at STEP "RUN pip install' in result.summary
    rendered = result.evidence[0].render()
    assert "No matching distribution found for nonexistent-package-zzz" in rendered
    assert ctx.state.image is None


def test_a_typo_in_an_instruction_fails_build(tmp_path, contexts):
    dockerfile = KNOWN_GOOD_DOCKERFILE.replace("COPY myapp.py", "COPPY myapp.py")
    ctx = make_context(tmp_path, known_good_artifacts(Dockerfile=dockerfile))
    contexts.append(ctx)
    result = run_stage(ctx, State.BUILD)
    assert result.outcome == Outcome.FAILED
    assert 'Unknown instruction: "COPPY"' in result.summary
    assert "COPPY" in result.evidence[0].render()


def test_a_wrong_target_port_fails_connect_naming_the_port(tmp_path, contexts):
    manifest = KNOWN_GOOD_MANIFEST.replace("targetPort: 5000", "targetPort: 5001")
    ctx = make_context(tmp_path, known_good_artifacts(**{"vibe.yaml": manifest}))
    contexts.append(ctx)
    assert run_stage(ctx, State.BUILD).outcome == Outcome.OK
    assert run_stage(ctx, State.DEPLOY).outcome == Outcome.OK
    started = time.monotonic()
    result = run_stage(ctx, State.CONNECT)
    assert time.monotonic() - started < 20, "a pod listening elsewhere should not cost the whole readiness deadline"
    assert result.outcome == Outcome.FAILED
    pod = ctx.state.deployment["pods"][0]["name"]
    assert result.summary == (f"Connect failed: nothing answers on port 5001 of pod {pod} "
                              f"(Service credit-card targetPort 5001); the pod listens on port 5000")
    (evidence,) = result.evidence
    assert evidence.kind == "http"
    # requests go to the loopback port published for targetPort 5001, never to the pod's own address
    (published,) = ctx.state.deployment["published"]
    assert published["container_port"] == 5001 and published["host_ip"] == "127.0.0.1"
    assert f"GET http://127.0.0.1:{published['host_port']}/" in evidence.detail
    assert "show it listening on port 5000" in evidence.detail
    assert "Running on http://127.0.0.1:5000" in evidence.detail  # the logs themselves
    ctx.run_cleanup("deployment")  # the runner's job after a failed Connect
    assert leftovers(ctx.run_id) == NOTHING


def test_an_app_listening_on_loopback_only_fails_connect_saying_so(tmp_path, contexts):
    code = KNOWN_GOOD_CODE.replace('app.run(host="0.0.0.0", port=5000)', "app.run(port=5000)")
    ctx = make_context(tmp_path, known_good_artifacts(**{"myapp.py": code}))
    contexts.append(ctx)
    assert run_stage(ctx, State.BUILD).outcome == Outcome.OK
    assert run_stage(ctx, State.DEPLOY).outcome == Outcome.OK
    assert ctx.state.deployment["pods"][0]["loopback_only"] == [5000]
    started = time.monotonic()
    result = run_stage(ctx, State.CONNECT)
    assert time.monotonic() - started < 15
    assert result.outcome == Outcome.FAILED
    assert "nothing answers on port 5000" in result.summary
    assert "listens on port 5000 on 127.0.0.1 only (loopback)" in result.summary
    assert "must listen on 0.0.0.0" in result.summary


def test_a_crashing_app_fails_deploy_with_the_traceback(tmp_path, contexts):
    code = "raise RuntimeError('configuration missing: boom at import')\n" + KNOWN_GOOD_CODE
    ctx = make_context(tmp_path, known_good_artifacts(**{"myapp.py": code}))
    contexts.append(ctx)
    assert run_stage(ctx, State.BUILD).outcome == Outcome.OK
    result = run_stage(ctx, State.DEPLOY)
    assert result.outcome == Outcome.FAILED
    assert result.summary.startswith("Deploy failed: container app exited with code 1; last log lines:")
    assert "RuntimeError: configuration missing: boom at import" in result.summary
    rendered = "\n".join(e.render() for e in result.evidence)
    assert "Traceback (most recent call last):" in rendered
    assert 'File "/app/myapp.py", line 1' in rendered
    assert leftovers(ctx.run_id) == NOTHING  # torn down right away
    assert ctx.state.deployment is None


def test_a_second_deploy_in_a_run_replaces_the_first(tmp_path, contexts):
    ctx = make_context(tmp_path)
    contexts.append(ctx)
    assert run_stage(ctx, State.BUILD).outcome == Outcome.OK
    assert run_stage(ctx, State.DEPLOY).outcome == Outcome.OK
    first = leftovers(ctx.run_id)["pods"]
    assert run_stage(ctx, State.DEPLOY).outcome == Outcome.OK
    second = leftovers(ctx.run_id)["pods"]
    assert len(first) == len(second) == 1 and first != second
    ctx.run_all_cleanups()
    assert leftovers(ctx.run_id) == NOTHING


# The child runs the real runner from DEPLOY. SETTLE_S is raised so that Deploy keeps waiting for the app, which
# sleeps before it would listen: the interrupt then lands in the middle of Deploy's wait.
INTERRUPTED_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from helpers import make_context, known_good_artifacts
    from kubevibe.pipeline.context import RunState
    from kubevibe.pipeline.fsm import State
    from kubevibe.pipeline.runner import Runner
    from kubevibe.stages import deploy
    import kubevibe.targets.local.status as local_status

    local_status.SETTLE_S = 600
    ctx = make_context(Path({tmp!r}), known_good_artifacts(), state=RunState(prompt="p", image={image!r}))
    ctx.rundir.write_json("run.json", {{"run_id": ctx.run_id}})
    print(ctx.run_id, flush=True)
    end = Runner(ctx, stages=lambda state: deploy.run).run(State.DEPLOY)
    print(end.outcome, flush=True)
""")


def test_an_interrupt_during_deploy_leaves_nothing_behind(tmp_path, contexts):
    code = "import time\ntime.sleep(300)\n" + KNOWN_GOOD_CODE
    ctx = make_context(tmp_path, known_good_artifacts(**{"myapp.py": code}))
    contexts.append(ctx)
    assert run_stage(ctx, State.BUILD).outcome == Outcome.OK

    script = INTERRUPTED_CHILD.format(tests=str(TESTS_DIR), tmp=str(tmp_path / "child"), image=ctx.state.image)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, child.stderr.read()
        deadline = time.monotonic() + 60
        while not _running_containers(run_id):
            assert time.monotonic() < deadline and child.poll() is None, "the child never started its pod"
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=90)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.strip() == "interrupted", err
    assert leftovers(run_id) == NOTHING
    events = [json.loads(line) for line in
              next((tmp_path / "child").glob("runs/*/*/events.jsonl")).read_text().splitlines()]  # fmt: skip
    assert events[-1]["result"] == "interrupted" and "cleanup_errors" not in events[-1]


def _running_containers(run_id: str) -> list[str]:
    label = f"label={RUN_LABEL}={label_value(run_id)}"
    return _podman("ps", "--quiet", "--filter", label, "--filter", "status=running").split()
