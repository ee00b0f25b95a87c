"""`kubevibe check PATH...` through the real CLI: manifests, Dockerfiles, charts (real helm), run directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli", "check"]

RESTRICTED_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: base
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: container1
    image: registry.k8s.io/pause
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
"""
PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: priv
spec:
  containers:
  - name: app
    image: registry.k8s.io/pause
    securityContext:
      privileged: true
      capabilities:
        add: [CHOWN]
"""
ESCAPE = ("FROM python:3.11-slim AS base\nRUN ln -s / /l\nFROM python:3.11-slim\n"
          "RUN --mount=type=bind,rw,source=/l,target=/mnt,from=base touch /mnt/x\n")


def check(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*KUBEVIBE, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                            env={**os.environ, **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_lone_pod_passes_both_levels_with_warnings_only(tmp_path):
    write(tmp_path, "pod.yaml", RESTRICTED_POD)
    for level in ("baseline", "restricted"):
        result = check("pod.yaml", "--policy", level, cwd=tmp_path)
        assert result.returncode == 0, result.stdout
        assert "pod.yaml: warning [consistency] pod.yaml has no Deployment" in result.stdout
        assert "refused [" not in result.stdout


def test_multi_document_findings_one_per_line_with_field_path(tmp_path):
    write(tmp_path, "all.yaml", RESTRICTED_POD + "---\n" + PRIVILEGED_POD)
    result = check("all.yaml", cwd=tmp_path)
    assert result.returncode == 1
    refused = [line for line in result.stdout.splitlines() if ": refused [" in line]
    assert refused == [
        "all.yaml: refused [policy baseline privileged] Pod priv: container 'app': "
        "spec.containers[0].securityContext.privileged is true, which the Pod Security Standards forbid at level "
        "baseline (privileged: privileged containers disable most security mechanisms)."]
    restricted = check("all.yaml", "--policy", "restricted", "--json", cwd=tmp_path)
    assert restricted.returncode == 1
    report = json.loads(restricted.stdout)
    assert report["policy"] == "restricted" and report["exit_code"] == 1
    fields = {(f["level"], f["field"]) for f in report["findings"] if f["severity"] == "refused"}
    assert ("baseline", "spec.containers[0].securityContext.privileged") in fields
    assert ("restricted", "spec.containers[0].securityContext.capabilities.add[0]") in fields
    assert ("restricted", "spec.containers[0].securityContext.allowPrivilegeEscalation") in fields


def test_a_kubectl_list_is_checked_item_by_item(tmp_path):
    import yaml

    items = list(yaml.safe_load_all(RESTRICTED_POD + "---\n" + PRIVILEGED_POD))
    write(tmp_path, "list.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    report = json.loads(check("list.yaml", "--json", cwd=tmp_path).stdout)
    assert [f["object"] for f in report["findings"] if f["severity"] == "refused"] == ["Pod priv"]


def test_policy_from_the_environment(tmp_path):
    write(tmp_path, "pod.yaml", PRIVILEGED_POD.replace("privileged: true", "privileged: false"))
    assert check("pod.yaml", cwd=tmp_path).returncode == 0
    assert check("pod.yaml", cwd=tmp_path, env={"KUBEVIBE_POLICY": "restricted"}).returncode == 1


def test_kubevibe_rules_are_named_and_namespace_is_a_warning(tmp_path):
    manifest = KNOWN_GOOD_MANIFEST.replace("name: credit-card\n", "name: credit-card\n  namespace: shop\n", 1)
    write(tmp_path, "svc.yaml", manifest.replace("type: ClusterIP", "type: NodePort"))
    report = json.loads(check("svc.yaml", "--json", cwd=tmp_path).stdout)
    kinds = {(f["severity"], f.get("level"), f.get("rule")) for f in report["findings"]}
    assert ("warning", "kubevibe", "namespace") in kinds
    assert ("refused", "kubevibe", "service-type") in kinds
    assert report["exit_code"] == 1
    assert check("svc.yaml", "--allow-node-port", cwd=tmp_path).returncode == 0  # the namespace alone only warns


def test_dockerfile_escape_is_refused_and_a_clean_one_passes(tmp_path):
    write(tmp_path, "Dockerfile", ESCAPE)
    result = check("Dockerfile", cwd=tmp_path)
    assert result.returncode == 1
    assert "Dockerfile: refused [dockerfile mount-from] Dockerfile line 4: RUN --mount=" in result.stdout
    write(tmp_path, "ok/Dockerfile", KNOWN_GOOD_DOCKERFILE)
    assert check("ok/Dockerfile", cwd=tmp_path).returncode == 0


@pytest.mark.skipif(shutil.which("helm") is None and not (Path(sys.executable).parent / "helm").exists(),
                    reason="helm is not installed")
def test_chart_directory_is_rendered_with_helm_template(tmp_path):
    write(tmp_path, "chart/Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    write(tmp_path, "chart/values.yaml", "hostNetwork: true\n")
    write(tmp_path, "chart/templates/pod.yaml", RESTRICTED_POD.replace(
        "spec:\n", "spec:\n  hostNetwork: {{ .Values.hostNetwork }}\n", 1))
    result = check("chart", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "chart: refused [policy baseline hostNamespaces] Pod base: spec.hostNetwork is true" in result.stdout


def test_run_directory_checks_its_latest_revision(tmp_path):
    run = tmp_path / "runs" / "m" / "r1"
    write(run, "run.json", "{}")
    write(run, "artifacts/rev-000/vibe.yaml", PRIVILEGED_POD)
    write(run, "artifacts/rev-001/vibe.yaml", KNOWN_GOOD_MANIFEST)
    write(run, "artifacts/rev-001/Dockerfile", KNOWN_GOOD_DOCKERFILE)
    result = check(str(run), "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert [f["kind"] for f in report["files"]] == ["manifest", "dockerfile"]


@pytest.mark.parametrize(("setup", "arg", "message"), [
    (lambda p: None, "missing.yaml", "missing.yaml does not exist."),
    (lambda p: write(p, "bad.yaml", "kind: [\n"), "bad.yaml", "bad.yaml is not valid YAML"),
    (lambda p: write(p, "empty.yaml", "# nothing\n"), "empty.yaml", "empty.yaml contains no Kubernetes objects."),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, setup, arg, message):
    setup(tmp_path)
    result = check(arg, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
