"""The target interface is all a provider needs: a third provider, defined and registered HERE (kubevibe is not
edited), runs the whole `kubevibe run` pipeline to SUCCESS; and nothing under targets/ reaches back into the
pipeline.

The third provider runs the image with plain `podman run` on a network of its own and publishes each Service
targetPort on 127.0.0.1 (what a docker-compose provider would do). The model is a replay log, the acceptance tests
the user's (`--tests`), so SUCCESS means the service answered them through this provider's handle.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS

from kubevibe.evidence import Evidence
from kubevibe.exec import CommandResult, run
from kubevibe.llm.replay import write_replay_log
from kubevibe.manifests import containers, pod_labels, workloads
from kubevibe.podman_conf import podman_env
from kubevibe.targets.base import (
    ContainerInfo,
    Deployment,
    DeploymentInfo,
    DeployRequest,
    PodInfo,
    StepScope,
    Target,
    TargetCapabilities,
    TargetFailure,
    service_port_infos,
)
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.tools import find_tool

TESTS_DIR = Path(__file__).parent
SRC = TESTS_DIR.parent / "src" / "kubevibe"
PROMPT = "Develop a credit card validation microservice: POST /validate {card_number} answers {card_number, valid}"
ACCEPTANCE = TESTS_DIR / "fixtures" / "credit-card.tavern.yaml"
PROVIDER = "podman-run"


# --- the third provider: only kubevibe.targets.base and plain podman ------------------------------------------------


def _network(run_id: str) -> str:
    return f"kvrun-{label_value(run_id)}"


class PodmanRunTarget(Target):
    name = PROVIDER
    capabilities = TargetCapabilities()  # the image stays on this machine; pods answer on loopback ports

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.podman = str(find_tool("podman"))

    def podman_run(self, args: list[str], log_file: Path | None = None, timeout: float = 60) -> CommandResult:
        return run([self.podman, *args], timeout=timeout, env=podman_env(), log_file=log_file)

    def deployment(self, request: DeployRequest) -> "PodmanRunDeployment":
        found = workloads(request.docs)
        if not found:
            raise TargetFailure("The manifest has no Deployment or Pod to run.",
                                [Evidence(kind="finding", title="nothing to deploy")])
        info = DeploymentInfo(target=self.name, run_id=request.run_id, network=_network(request.run_id),
                              expected_pods=1, service_ports=service_port_infos(request.docs))
        return PodmanRunDeployment(self, request, info, found[0])

    def attach(self, info: DeploymentInfo, scope: StepScope) -> "PodmanRunDeployment":
        return PodmanRunDeployment(self, scope, info, None)


class PodmanRunDeployment(Deployment):
    target: PodmanRunTarget

    def __init__(self, target: PodmanRunTarget, scope: StepScope, info: DeploymentInfo,
                 workload: dict[str, Any] | None):
        super().__init__(target, scope, info)
        self.workload = workload
        self.container = f"kvrun-{label_value(info.run_id)}-s{scope.step}"
        if info.pods:  # attached: the container Deploy made
            self.container = info.pods[0].name

    def _podman(self, *args: str, timeout: float = 60) -> CommandResult:
        return self.target.podman_run(list(args), self.scope.log_file, timeout)

    def start(self) -> DeploymentInfo:
        assert isinstance(self.scope, DeployRequest) and self.workload is not None
        request, label = self.scope, f"{RUN_LABEL}={label_value(self.info.run_id)}"
        self._podman("network", "create", "--label", label, _network(request.run_id)).check()
        argv = ["run", "--detach", "--pull=never", "--name", self.container, "--network", _network(request.run_id),
                "--label", label]
        for key, value in pod_labels(self.workload).items():
            argv += ["--label", f"{key}={value}"]
        for port in sorted({sp.target_port for sp in self.info.service_ports if sp.target_port}):
            argv += ["--publish", f"127.0.0.1::{port}"]
        first = containers(self.workload)[0]
        for env in first.get("env") or []:
            argv += ["--env", f"{env['name']}={env.get('value', '')}"]
        started = self._podman(*argv, request.image, timeout=request.timeout(120))
        if not started.ok:
            raise TargetFailure("podman run failed", [Evidence.from_command("podman run", started)], self.info)
        return self.status()

    def _inspect(self) -> dict[str, Any]:
        result = self._podman("container", "inspect", self.container)
        return (json.loads(result.stdout or "[]") or [{}])[0] if result.ok else {}

    def status(self) -> DeploymentInfo:
        entry = self._inspect()
        if not entry:
            self.info = self.info.model_copy(update={"pods": [], "containers": []})
            return self.info
        state = entry.get("State", {})
        network = (entry.get("NetworkSettings", {}).get("Networks") or {}).get(self.info.network) or {}
        labels = {k: v for k, v in (entry.get("Config", {}).get("Labels") or {}).items() if k != RUN_LABEL}
        pod = PodInfo(name=self.container, ip=network.get("IPAddress") or None, labels=labels)
        container = ContainerInfo(pod=self.container, name="app", engine_name=self.container,
                                  state=str(state.get("Status", "unknown")), exit_code=state.get("ExitCode"))
        self.info = self.info.model_copy(update={"pods": [pod], "containers": [container]})
        return self.info

    def _host_port(self, port: int) -> int | None:
        bindings = (self._inspect().get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        return int(bindings[0]["HostPort"]) if bindings else None

    def wait_ready(self, timeout: float) -> DeploymentInfo:
        deadline = time.monotonic() + timeout
        ports = [sp.target_port for sp in self.info.service_ports if sp.target_port]
        while True:
            info = self.status()
            if any(c.failed for c in info.containers):
                raise TargetFailure("the container exited", [Evidence(kind="finding", title="exited")], info)
            host_ports = [self._host_port(p) for p in ports]
            if info.containers and info.containers[0].state == "running" and all(host_ports) and \
                    all(_listens(hp) for hp in host_ports):  # type: ignore[arg-type]
                return info
            if time.monotonic() >= deadline:
                raise TargetFailure(f"not ready after {timeout:.0f}s", [], info)
            time.sleep(0.3)

    @contextlib.contextmanager
    def open_port(self, pod: PodInfo, port: int) -> Iterator[str]:
        host_port = self._host_port(port)
        if host_port is None:
            raise TargetFailure(f"port {port} is not published", [])
        yield f"http://127.0.0.1:{host_port}"

    def logs(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        result = self._podman("logs", self.container)
        text = result.stdout + result.stderr
        (directory / f"{self.container}-app.log").write_text(text, encoding="utf-8")
        return {f"{self.container}/app": text}

    def teardown(self) -> None:
        label = f"label={RUN_LABEL}={label_value(self.info.run_id)}"
        ids = self._podman("ps", "--all", "--quiet", "--filter", label).stdout.split()
        if ids:
            self._podman("rm", "--force", "--time", "0", *ids, timeout=120).check()
        if self._podman("network", "exists", _network(self.info.run_id)).ok:
            self._podman("network", "rm", "--force", _network(self.info.run_id)).check()


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- the whole pipeline through it ----------------------------------------------------------------------------------

# The child registers the provider in its own process (nothing in kubevibe names it) and runs the CLI's main().
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_target_provider import PROVIDER, PodmanRunTarget
from kubevibe.targets import register_target
register_target(PROVIDER, PodmanRunTarget)
sys.argv = ["kubevibe", *{argv!r}]
from kubevibe.cli import main
main()
"""


def _generated() -> str:
    return json.dumps({"pythonfilecontent": KNOWN_GOOD_CODE, "containerfilecontent": KNOWN_GOOD_DOCKERFILE,
                       "yamlfilecontent": KNOWN_GOOD_MANIFEST, "requirements": KNOWN_GOOD_REQUIREMENTS})


@pytest.mark.engine
def test_a_third_provider_registered_in_a_test_runs_the_whole_pipeline_to_success(tmp_path):
    from engine_helpers import podman, require_engine

    require_engine()
    log = write_replay_log(tmp_path / "answers.jsonl", [("generate", _generated())])
    argv = ["run", PROMPT, "--llm", f"replay:{log}", "--target", PROVIDER, "--tests", str(ACCEPTANCE), "--json"]
    proc = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(TESTS_DIR), argv=argv)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline"})  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    run_dir = next((tmp_path / "runs").glob("*/*"))
    try:
        summary = json.loads(proc.stdout)
        assert proc.returncode == 0 and summary["outcome"] == "success", proc.stdout + proc.stderr
        states = [(t["from"], t["result"]) for t in summary["transitions"]]
        assert ("DEPLOY", "ok") in states and ("CONNECT", "ok") in states and ("ACCEPT", "ok") in states
        state = json.loads((run_dir / "state.json").read_text())
        assert state["state"]["deployment"]["target"] == PROVIDER
        record = json.loads((run_dir / "run.json").read_text())
        assert record["verdict"]["accepted"] == {"passed": 3, "total": 3, "source": "user"}
        deploy_log = next(run_dir.glob("steps/*-deploy/commands.log")).read_text()
        assert " run --detach --pull=never " in deploy_log  # the provider's own command, not kube play
    finally:
        label = f"label={RUN_LABEL}={label_value(run_dir.name)}"
        left = podman("ps", "--all", "--quiet", "--filter", label).split()
        networks = [n for n in podman("network", "ls", "--format", "{{.Name}}").split()
                    if n == _network(run_dir.name)]
        try:
            images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        except AssertionError:  # podman lists images while other runs on the machine remove theirs
            images = []
        for image in images:
            if run_dir.name.lower() in image.lower():
                podman("rmi", "--force", image)
    assert left == [] and networks == [], "the runner did not tear the third provider's deployment down"


# --- the layering: targets never reach back into the pipeline -------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_under_targets_imports_the_pipeline_or_the_stages():
    modules = sorted((SRC / "targets").rglob("*.py"))
    assert len(modules) >= 14  # base, labels, images, two provider folders
    upward = {str(m.relative_to(SRC)): sorted(n for n in _imports(m)
                                             if n.startswith(("kubevibe.pipeline", "kubevibe.stages")))
              for m in modules}
    assert {m: names for m, names in upward.items() if names} == {}


def test_every_provider_folder_has_the_same_file_names_and_no_module_is_over_600_lines():
    folders = [d for d in (SRC / "targets").iterdir() if d.is_dir() and (d / "__init__.py").exists()]
    assert sorted(d.name for d in folders) == ["kubernetes", "local"]
    for folder in folders:
        assert {"target.py", "manifest.py", "status.py", "gc.py"} <= {f.name for f in folder.iterdir()}, folder
    for module in (SRC / "targets").rglob("*.py"):
        assert len(module.read_text(encoding="utf-8").splitlines()) <= 600, module
