"""The whole pipeline through the real `kubevibe run` command on the real local engine, with replayed answers.

The model's answers come from a replay log, so these runs are exact and need no model; everything else is
real: podman builds and plays the pods, the loopback registry stores the images, helm packages the chart.
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
import yaml
from engine_helpers import NOTHING, leftovers, require_engine
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS

from kubevibe.exec import run as run_command
from kubevibe.llm.replay import write_replay_log
from kubevibe.podman_conf import podman_env
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.tools import find_tool

pytestmark = pytest.mark.engine

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
PROMPT = "Develop a credit card validation microservice"
TESTS = Path(__file__).parent / "fixtures" / "credit-card.tavern.yaml"  # the user's acceptance tests

SPEC = {
    "name": "credit-card", "description": "Validates card numbers with the Luhn algorithm.",
    "port": 80, "target_port": 5000,
    "endpoints": [{"method": "POST", "path": "/validate"}, {"method": "GET", "path": "/health"}],
    "test_cases": [
        {"name": "valid", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621486"},
         "expected_status": 200, "expected_json": {"valid": True}},
        {"name": "invalid", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621487"},
         "expected_status": 200, "expected_json": {"valid": False}},
    ],
}  # fmt: skip


def generated(**changes: str) -> str:
    files = {"pythonfilecontent": KNOWN_GOOD_CODE, "containerfilecontent": KNOWN_GOOD_DOCKERFILE,
             "yamlfilecontent": KNOWN_GOOD_MANIFEST, "requirements": KNOWN_GOOD_REQUIREMENTS}
    return json.dumps(files | changes)


def fix_answer(file: str, content: str) -> str:
    return json.dumps({"explanation": "repaired", "changes": [{"file": file, "content": content}]})


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


class Runs:
    """Runs made by a test; afterwards nothing of them may be left in podman, and their images are removed."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

    def start(self, answers: list[tuple[str, str]], *args: str) -> subprocess.Popen:
        log = write_replay_log(self.tmp_path / "answers.jsonl", answers)
        # The default runs directory, relative to the working directory, as a user gets it.
        return subprocess.Popen([*KUBEVIBE, "run", PROMPT, "--llm", f"replay:{log}", "--intent-method",
                                 "json-with-required", *args],
                                cwd=self.tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline"})

    def run(self, answers, *args) -> tuple[int, dict, Path]:
        proc = self.start(answers, *args, "--json")
        out, err = proc.communicate(timeout=600)
        assert "Traceback" not in err, err
        return proc.returncode, json.loads(out), self.run_dir()

    def run_dir(self) -> Path:
        (run,) = list((self.tmp_path / "runs").glob("*/*"))
        return run

    def cleanup(self) -> None:
        for run in (self.tmp_path / "runs").glob("*/*"):
            assert leftovers(run.name) == NOTHING, f"run {run.name} left resources behind"
        # By label, best effort: other runs on this machine add and remove images meanwhile, which can fail a
        # full listing ("image not known").
        binary, env = str(find_tool("podman")), podman_env()
        for run in (self.tmp_path / "runs").glob("*/*"):
            listed = run_command([binary, "images", "-q", "--filter", f"label={RUN_LABEL}={label_value(run.name)}"],
                                 timeout=60, env=env)
            for image in set(listed.stdout.split()):
                run_command([binary, "rmi", "--force", image], timeout=60, env=env)


def _image_names() -> list[str]:
    """podman's image names; retried, because `podman images` fails when another process removes an image
    while it lists them (other runs and test sessions share the image store)."""
    for _ in range(5):
        result = run_command([str(find_tool("podman")), "images", "--format", "{{.Repository}}:{{.Tag}}"],
                             timeout=60, env=podman_env())
        if result.ok:
            return result.stdout.split()
        time.sleep(1)
    return podman("images", "--format", "{{.Repository}}:{{.Tag}}").split()


@pytest.fixture
def runs(tmp_path):
    made = Runs(tmp_path)
    yield made
    made.cleanup()


def path_of(summary: dict) -> list[tuple[str, str, str]]:
    return [(t["from"], t["to"], t["result"]) for t in summary["transitions"]]


def test_known_good_set_reaches_success_and_its_chart_renders(runs):
    code, summary, run = runs.run([("intent", json.dumps(SPEC)), ("generate", generated())], "--tests", str(TESTS))
    assert code == 0, summary
    assert summary["outcome"] == "success"
    assert [s for s, _, _ in path_of(summary)] == ["INTENT", "GENERATE", "BUILD", "VALIDATE", "DEPLOY", "CONNECT",
                                                   "ACCEPT", "LOAD", "CHART"]
    verified = summary["verified"]
    assert verified | {"tests_passed": 2, "tests_total": 2} == verified
    assert all(verified[k] for k in ("built", "validated", "deployed", "reachable", "load", "charted"))
    tgz = run / summary["chart"]
    assert tgz.is_file() and tgz.suffix == ".tgz"
    rendered = run_command([str(find_tool("helm")), "template", "release", str(tgz)], timeout=60)
    assert rendered.ok, rendered.output
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d)
    assert kinds == ["Deployment", "Service"]
    assert summary["image"].split(":")[-1] in rendered.stdout  # the chart runs the image this run built
    assert (run / "artifacts" / "rev-000" / "myapp.py").read_text() == KNOWN_GOOD_CODE


def test_broken_dockerfile_fails_build_and_a_replayed_fix_repairs_it(runs):
    broken = KNOWN_GOOD_DOCKERFILE.replace("requirements.txt .", "requirement.txt .")
    code, summary, run = runs.run([("intent", json.dumps(SPEC)), ("generate", generated(containerfilecontent=broken)),
                                   ("fix", fix_answer("Dockerfile", KNOWN_GOOD_DOCKERFILE))])
    assert code == 3, summary  # only the intent's own tests checked it: unverified
    steps = path_of(summary)
    assert steps[2] == ("BUILD", "FIX", "failed")
    assert steps[3] == ("FIX", "BUILD", "resume-build")
    assert steps[-1] == ("CHART", "SUCCESS", "ok")
    fix_call = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()][-1]
    assert fix_call["purpose"] == "fix"
    assert "requirement.txt" in fix_call["request"]["prompt"]  # the build error reached the model
    assert (run / "artifacts" / "rev-001" / "Dockerfile").read_text() == KNOWN_GOOD_DOCKERFILE


def test_wrong_target_port_fails_connect_naming_the_port(runs):
    # Consistent at 5001 everywhere in the files, but the app listens on 5000: only Connect can find this.
    manifest = KNOWN_GOOD_MANIFEST.replace("5000", "5001")
    dockerfile = KNOWN_GOOD_DOCKERFILE.replace("EXPOSE 5000", "EXPOSE 5001")
    code, summary, run = runs.run([("intent", json.dumps(SPEC)),
                                   ("generate", generated(yamlfilecontent=manifest, containerfilecontent=dockerfile))],
                                  "--max-fixes", "1")
    assert code == 1 and summary["outcome"] == "fail"
    connect = next(t for t in summary["transitions"] if t["from"] == "CONNECT")
    assert connect["result"] == "failed"
    assert "5001" in connect["reason"] and "listens on port 5000" in connect["reason"]
    # the replay log has no fix answer: the Fix fails and is never counted as a success
    fix = next(t for t in summary["transitions"] if t["from"] == "FIX")
    assert fix["result"] == "failed"
    assert summary["verified"].get("reachable") is not True


def test_privileged_pod_is_rejected_by_validate_before_anything_runs(runs):
    manifest = KNOWN_GOOD_MANIFEST.replace("        - name: app\n",
                                           "        - name: app\n          securityContext:\n"
                                           "            privileged: true\n")
    code, summary, run = runs.run([("intent", json.dumps(SPEC)), ("generate", generated(yamlfilecontent=manifest))],
                                  "--max-fixes", "0")
    assert code == 1
    validate = next(t for t in summary["transitions"] if t["from"] == "VALIDATE")
    assert validate["result"] == "failed" and "privileged" in validate["reason"]
    assert "DEPLOY" not in [t["from"] for t in summary["transitions"]]
    evidence = json.loads(next(run.glob("steps/*-validate/result.json")).read_text())["evidence"]
    assert any("privileged" in e["title"] and "app" in e["title"] for e in evidence)


def test_ctrl_c_during_deploy_leaves_nothing_behind(runs, tmp_path):
    slow = KNOWN_GOOD_CODE.replace('if __name__ == "__main__":\n', 'if __name__ == "__main__":\n'
                                   '    import time\n    time.sleep(60)\n')  # the pod runs but never listens
    proc = runs.start([("intent", json.dumps(SPEC)), ("generate", generated(pythonfilecontent=slow))])
    deadline = time.monotonic() + 240
    run_id = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "runs").glob("*/*/steps/*-deploy"))
        if found:
            run_id = found[0].parents[1].name
            if leftovers(run_id)["pods"]:
                break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    else:
        pytest.fail("the run never reached a running pod in Deploy")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert leftovers(run_id) == NOTHING
    record = json.loads((runs.run_dir() / "run.json").read_text())
    assert record["outcome"] == "interrupted"


def test_symlink_bind_mount_escape_is_refused_before_any_build(runs, tmp_path):
    # The CVE-2024-1753 shape aimed at a marker under a temp dir: if the engine ever ran it, the marker would
    # appear on the host. The pre-check must refuse it before any engine command, and Fix gets the reason.
    target_dir = tmp_path / "host-side"
    target_dir.mkdir()
    marker = target_dir / "escaped-marker"
    escape = (f"FROM localhost/kubevibe/python:3.11-bookworm AS base\n"
              f"RUN ln -s {target_dir} /hostlink\n"
              f"FROM localhost/kubevibe/python:3.11-bookworm\n"
              f"RUN --mount=type=bind,rw,source=/hostlink,target=/mnt,from=base touch /mnt/escaped-marker\n")
    code, summary, run = runs.run([("intent", json.dumps(SPEC)), ("generate", generated(containerfilecontent=escape))],
                                  "--max-fixes", "1")
    assert code == 1 and summary["outcome"] == "fail"
    build = next(t for t in summary["transitions"] if t["from"] == "BUILD")
    assert build["to"] == "FIX" and build["result"] == "failed"
    assert "Dockerfile pre-check" in build["reason"] and "from=base" in build["reason"]
    (step,) = run.glob("steps/*-build")
    evidence = json.loads((step / "result.json").read_text())["evidence"]
    assert {e["detail"] for e in evidence} == {"check: dockerfile-precheck (mount-from)",
                                               "check: dockerfile-precheck (mount-bind-rw)"}
    log = step / "commands.log"
    assert not log.exists() or " build " not in log.read_text()  # no engine command ran for this step
    assert not (step / "context").exists()
    fix_call = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()][-1]
    assert fix_call["purpose"] == "fix" and "CVE-2024-1753" in fix_call["request"]["prompt"]
    assert not marker.exists() and list(target_dir.iterdir()) == []
    assert images_of_run(run.name) == []
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["policy"] == "baseline" and record["policy"]["level"] == "baseline"


def images_of_run(run_id: str, attempts: int = 5) -> list[str]:
    """The run's images. Listing can fail while other jobs remove their images at the same moment ("image not
    known"): a bounded retry, then the error."""
    argv = [str(find_tool("podman")), "images", "--quiet", "--filter", f"label={RUN_LABEL}={label_value(run_id)}"]
    for attempt in range(attempts):
        result = run_command(argv, timeout=60, env=podman_env())
        if result.ok:
            return result.stdout.split()
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(result.describe() + "\n" + result.output)
