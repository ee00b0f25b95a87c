"""The prototype user's loop through the real CLI and podman: run, refine with a follow-up, replay the refine,
export the result, build the exported folder from scratch and run its Tavern tests, push to a second registry.

The model's answers are scripted (replay logs); everything else is real: podman builds, plays and runs, the
loopback registries (KubeVibe's and a throw-away docker-registry started here), helm, tavern.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from engine_helpers import NOTHING, leftovers, podman, require_engine
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE
from test_e2e_local import PROMPT, SPEC, generated

from kubevibe.engines import map_base_image
from kubevibe.engines.podman import PodmanBuilder
from kubevibe.exec import run as run_command
from kubevibe.llm.replay import write_replay_log
from kubevibe.localinfra.baseimage import BASE_IMAGE
from kubevibe.localinfra.registry import render_registry_config
from kubevibe.podman_conf import podman_env
from kubevibe.tools import find_tool

pytestmark = pytest.mark.engine

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
FOLLOWUP = "Add an endpoint GET /cards that lists the supported card types"
CARDS_CODE = KNOWN_GOOD_CODE.replace('if __name__ == "__main__":\n', '''@app.route("/cards", methods=["GET"])
def cards():
    return jsonify({"cards": ["visa", "mastercard", "amex"]})


if __name__ == "__main__":
''')
REFINE_ANSWER = json.dumps({
    "explanation": "added GET /cards",
    "changes": [{"file": "myapp.py", "content": CARDS_CODE}],
    "endpoints": [{"method": "GET", "path": "/cards", "description": "the supported card types"}],
    "test_cases": [{"name": "cards listed", "method": "GET", "path": "/cards", "body": None, "expected_status": 200,
                    "expected_json": {"cards": ["visa", "mastercard", "amex"]}}],
    "retired_tests": [],
})
# The parent's acceptance tests, as the acceptance stage (issue 12) leaves them in a run directory.
PARENT_TESTS = """\
test_name: a valid number is accepted
stages:
  - name: valid
    request:
      url: "{base_url}/validate"
      method: POST
      json: {card_number: "4539578763621486"}
    response:
      status_code: 200
      strict: [json:off]
      json: {valid: true}
---
test_name: an invalid number is refused
stages:
  - name: invalid
    request:
      url: "{base_url}/validate"
      method: POST
      json: {card_number: "4539578763621487"}
    response:
      status_code: 200
      strict: [json:off]
      json: {valid: false}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - loopback only
                if reply.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} never answered")


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


@pytest.fixture
def user_registry(tmp_path):
    """A second, throw-away registry on loopback: the 'user's registry' that --push sends to."""
    binary = find_tool("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed")
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "user-registry.yml"
    config.write_text(render_registry_config(address, tmp_path / "user-registry-storage"))
    proc = subprocess.Popen([str(binary), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://{address}/v2/", timeout=30)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def catalog(address: str) -> list[str]:
    with urllib.request.urlopen(f"http://{address}/v2/_catalog", timeout=10) as reply:  # noqa: S310 - loopback
        return json.loads(reply.read())["repositories"]


def kubevibe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KUBEVIBE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline"})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def runs_under(root: Path) -> set[Path]:
    return set(root.glob("*/*"))


@pytest.fixture
def cleanup(tmp_path):
    extra: list[str] = []
    yield extra
    run_dirs = list(tmp_path.rglob("run.json"))
    for record in run_dirs:
        assert leftovers(record.parent.name) == NOTHING, f"run {record.parent.name} left resources behind"
    for image in image_names():
        if any(record.parent.name in image for record in run_dirs) or image in extra:
            run_command([str(find_tool("podman")), "rmi", "--force", image], timeout=60, env=podman_env())


def image_names(attempts: int = 5) -> list[str]:
    """podman's image list; retried, because another run removing an image at that moment makes the listing fail."""
    for _ in range(attempts):
        listed = run_command([str(find_tool("podman")), "images", "--format", "{{.Repository}}:{{.Tag}}"],
                             timeout=60, env=podman_env())
        if listed.ok:
            return listed.stdout.split()
        time.sleep(1)
    pytest.fail(f"podman images kept failing: {listed.output}")


def test_run_refine_replay_export_push(tmp_path, user_registry, cleanup):
    runs_root = tmp_path / "runs"
    # 1. the first run, pushed to the user's registry
    answers = write_replay_log(tmp_path / "parent.jsonl", [("intent", json.dumps(SPEC)), ("generate", generated())])
    users_tests = tmp_path / "parent.tavern.yaml"  # the user's acceptance tests: the parent's SUCCESS is verified
    users_tests.write_text(PARENT_TESTS)
    first = kubevibe(tmp_path, "run", PROMPT, "--llm", f"replay:{answers}", "--intent-method", "json-with-required",
                     "--tests", str(users_tests), "--push", f"{user_registry}/team", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    (parent,) = runs_under(runs_root)
    parent_run = json.loads((parent / "run.json").read_text())
    assert parent_run["push"]["ok"] is True
    assert parent_run["push"]["image"].startswith(f"{user_registry}/team/credit-card:")
    assert "team/credit-card" in catalog(user_registry)
    acceptance = parent / "acceptance" / "acceptance.tavern.yaml"
    assert acceptance.read_text() == PARENT_TESTS  # the exact file that was run

    # 2. refine: a new run from the parent's files, with the follow-up
    refine_log = write_replay_log(tmp_path / "refine.jsonl", [("refine", REFINE_ANSWER)])
    refined = kubevibe(tmp_path, "refine", str(parent), FOLLOWUP, "--llm", f"replay:{refine_log}", "--json")
    assert refined.returncode == 0, refined.stdout + refined.stderr
    (child,) = runs_under(runs_root) - {parent}
    summary = json.loads(refined.stdout)
    assert [t["from"] for t in summary["transitions"]][:2] == ["REFINE", "BUILD"]
    assert "INTENT" not in [t["from"] for t in summary["transitions"]]
    record = json.loads((child / "run.json").read_text())
    assert record["parent"]["run_id"] == parent.name
    assert (child / record["parent"]["run"]).resolve() == parent.resolve()
    assert record["refine"]["request"] == FOLLOWUP and record["prompt"] == FOLLOWUP
    # the parent's two declared tests and the new one all passed against the refined service
    assert record["verified"]["tests_total"] == 3 and record["verified"]["tests_passed"] == 3
    assert (child / "acceptance" / "acceptance.tavern.yaml").read_text() == acceptance.read_text()
    assert record["acceptance"]["tests"] == 2 and record["acceptance"]["from_run"] == parent.name
    assert (child / "artifacts" / "rev-000" / "myapp.py").read_text() == CARDS_CODE
    connect = next(child.glob("steps/*-connect/result.json")).read_text()
    assert "/cards" in connect
    assert "push" not in record  # --push is not inherited

    shown = kubevibe(tmp_path, "show", str(child))
    assert shown.returncode == 0 and f"refines:  {parent.name}" in shown.stdout

    listed = kubevibe(tmp_path, "ls", "--json")
    rows = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert rows[child.name]["parent"] == parent.name and rows[parent.name]["parent"] is None
    assert rows[child.name]["outcome"] == "success" and "3 of 3" in rows[child.name]["verdict"]

    # 3. replay reproduces the refine: same path, same files
    replayed = kubevibe(tmp_path, "refine", str(parent), FOLLOWUP, "--llm", f"replay:{child}",
                        "--runs-dir", str(tmp_path / "replayed"), "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    (again,) = runs_under(tmp_path / "replayed")
    steps = [(t["from"], t["to"], t["result"]) for t in json.loads(replayed.stdout)["transitions"]]
    assert steps == [(t["from"], t["to"], t["result"]) for t in summary["transitions"]]
    for name in ("myapp.py", "Dockerfile", "vibe.yaml", "requirements.txt"):
        assert (again / "artifacts/rev-000" / name).read_text() == (child / "artifacts/rev-000" / name).read_text()

    # 4. export: a clean project that builds from scratch and passes its Tavern tests
    project = tmp_path / "project"
    exported = kubevibe(tmp_path, "export", str(child), str(project))
    assert exported.returncode == 0, exported.stderr
    for name in ("myapp.py", "requirements.txt", "Dockerfile", "README.md", "tests/acceptance.tavern.yaml",
                 "chart/credit-card/Chart.yaml", "chart/credit-card/values.yaml",
                 "chart/credit-card/templates/deployment.yaml"):
        assert (project / name).is_file(), name
    assert (project / "myapp.py").read_text() == CARDS_CODE
    assert (project / "Dockerfile").read_text() == KNOWN_GOOD_DOCKERFILE  # the model's base image, not the stand-in
    build_files = [p for p in project.rglob("*") if p.is_file() and p.name != "README.md"]
    assert not any(BASE_IMAGE in p.read_text() for p in build_files)  # the stand-in is named only in the README
    readme = (project / "README.md").read_text()
    assert "GET /cards" in readme and "docker build" in readme and "helm install" in readme
    assert f"stand-in `{BASE_IMAGE}`" in readme and parent.name in readme

    helm = run_command([str(find_tool("helm")), "lint", "--strict", str(project / "chart/credit-card")], timeout=120)
    assert helm.ok, helm.output

    builder = PodmanBuilder()
    mapped, _ = map_base_image((project / "Dockerfile").read_text(), builder, BASE_IMAGE)  # at build time only
    build_dir = tmp_path / "mapped"
    build_dir.mkdir()
    (build_dir / "Dockerfile").write_text(mapped)
    tag = f"localhost/kubevibe-export-test:{secrets.token_hex(4)}"
    cleanup.append(tag)
    built = run_command([str(builder.binary), "build", "--no-cache", "-t", tag, "-f", str(build_dir / "Dockerfile"),
                         str(project)], timeout=600, env=podman_env())
    assert built.ok, built.output
    port = free_port()
    container = podman("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:5000", tag).strip()
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        config = tmp_path / "tavern.yaml"
        config.write_text(yaml.safe_dump({"name": "test", "variables": {"base_url": f"http://127.0.0.1:{port}"}}))
        tavern = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/acceptance.tavern.yaml", f"--tavern-global-cfg={config}"],
                                cwd=project, capture_output=True, text=True, timeout=300)
        assert tavern.returncode == 0, tavern.stdout + tavern.stderr
        assert "2 passed" in tavern.stdout
    finally:
        podman("rm", "--force", container)

    # 5. a second export into the same folder is refused; --force replaces the files
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    refused = kubevibe(tmp_path, "export", str(child), str(project))
    assert refused.returncode == 2 and "not empty" in refused.stderr
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before
    assert kubevibe(tmp_path, "export", str(child), str(project), "--force").returncode == 0

    # 6. export --push: the image goes to the user's registry and into the chart's values
    pushed_project = tmp_path / "pushed"
    pushed = kubevibe(tmp_path, "export", str(child), str(pushed_project), "--push", f"{user_registry}/shop")
    assert pushed.returncode == 0, pushed.stderr
    values = yaml.safe_load((pushed_project / "chart/credit-card/values.yaml").read_text())
    assert values["image"]["repository"] == f"{user_registry}/shop/credit-card"
    assert values["image"]["tag"] == record["image"].rsplit(":", 1)[1]
    assert "shop/credit-card" in catalog(user_registry)
    cleanup.extend([f"{user_registry}/shop/credit-card:{values['image']['tag']}", parent_run["push"]["image"]])
    shutil.rmtree(pushed_project)
    # a registry that does not answer: exit 1 with the reason, and nothing exported
    nowhere = f"127.0.0.1:{free_port()}/x"
    cleanup.append(f"{nowhere}/credit-card:{values['image']['tag']}")  # the tag made before the push failed
    unreachable = kubevibe(tmp_path, "export", str(child), str(tmp_path / "nowhere"), "--push", nowhere)
    assert unreachable.returncode == 1 and "push" in unreachable.stderr and not (tmp_path / "nowhere").exists()


def test_a_failed_push_turns_the_run_into_an_error_with_the_reason(tmp_path, engine):
    from helpers import make_context

    from kubevibe.pipeline.context import RunState
    from kubevibe.pipeline.runner import RunEnd
    from kubevibe.publish import record_push

    missing = f"{engine}/kubevibe/never-built:{secrets.token_hex(4)}-s1"
    ctx = make_context(tmp_path, settings_overrides={"push": f"127.0.0.1:{free_port()}/team"},
                       state=RunState(prompt="p", image=missing))
    ctx.rundir.write_json("run.json", {"run_id": ctx.run_id, "outcome": "success"})
    end = record_push(ctx, RunEnd(outcome="success", final_state="SUCCESS", reason="chart packaged"))
    assert end.outcome == "error" and "not pushed" in end.reason and "podman login" in end.hint
    record = json.loads((ctx.rundir.path / "run.json").read_text())
    assert record["outcome"] == "error" and record["push"]["ok"] is False
    assert record["push"]["image"].endswith("/team/never-built:" + missing.rsplit(":", 1)[1])
    assert (ctx.rundir.path / "push" / "commands.log").is_file()
