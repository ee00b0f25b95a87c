"""The faithful local engine's pure parts: which stand-in a FROM line gets, where the service code goes,
which ports Deploy waits for, and what the applied copy of a manifest drops."""

from __future__ import annotations

import pytest

from kubevibe.baseimages import STAND_INS, choose_stand_in, render_containerfile, stand_in_for_version
from kubevibe.buildcontext import service_file
from kubevibe.localinfra.apt import host_debian_suite
from kubevibe.targets.base import ContainerInfo, DeploymentInfo, PodInfo, ServicePortInfo
from kubevibe.targets.local.manifest import cpu_limits
from kubevibe.targets.local.status import readiness


@pytest.mark.parametrize(
    ("ref", "python", "faithful"),
    [
        ("python:3.11-slim", "3.11", True), ("python:3.11-slim-bookworm", "3.11", True),
        ("docker.io/library/python:3.13-slim", "3.13", True), ("python:3.13-slim-trixie", "3.13", True),
        ("python:3.11", "3.11", False), ("python:3.12-slim", "3.11", False), ("python:3.10-slim", "3.11", False),
        ("python:3.9", "3.11", False), ("python:3.14-slim", "3.13", False), ("python:latest", "3.13", False),
        ("python:3.11-alpine", "3.11", False), ("python:3.11-slim-bullseye", "3.11", False),
        ("python:3.11.9-slim", "3.11", False),
    ],
)  # fmt: skip
def test_each_python_tag_gets_the_nearest_stand_in(ref, python, faithful):
    choice = choose_stand_in(ref)
    assert choice is not None and choice.stand_in.python == python
    assert (not choice.notes) == faithful, choice.notes


def test_alpine_note_says_debian_no_apk_and_what_to_use():
    note = " ".join(choose_stand_in("python:3.12-alpine").notes)
    assert "Debian, not Alpine" in note and "`apk` is not available" in note
    assert "apt-get" in note and "useradd" in note and "python:3.11-slim" in note


def test_not_python_images_get_no_stand_in():
    for ref in ("node:20", "ghcr.io/x/python:3.11", "python:windowsservercore", "python:2.7-slim"):
        assert choose_stand_in(ref) is None


def test_stand_in_containerfile_has_the_official_layout_and_nothing_preinstalled():
    text = render_containerfile(stand_in_for_version("3.11"), python_version="3.11.2", pip_version="23.0.1",
                                ca_bundle_path="/etc/ssl/certs/x.crt")
    assert "python3 -m venv --system-site-packages /usr/local" in text
    assert "ENV PATH=/usr/local/bin:" in text and "LANG=C.UTF-8" in text
    assert "PYTHON_VERSION=3.11.2" in text and "PYTHON_PIP_VERSION=23.0.1" in text
    assert "WORKDIR /\n" in text and 'CMD ["python3"]' in text and "USER" not in text
    assert "EXTERNALLY-MANAGED" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs == [" && pip install --no-cache-dir --no-compile --disable-pip-version-check "
                        "setuptools==79.0.1 wheel==0.45.1 \\"]  # what the official 3.11 image ships, nothing more
    assert {s.suite for s in STAND_INS} == {"bookworm", "trixie"}
    assert "ln -sT python3.11 /usr/local/lib/python3.12" in text  # a 3.12 Dockerfile's paths still resolve


def test_host_debian_suite(tmp_path):
    for text, suite in (("12.11\n", "bookworm"), ("13.1\n", "trixie"), ("trixie/sid\n", "trixie")):
        (tmp_path / "v").write_text(text)
        assert host_debian_suite(tmp_path / "v") == suite
    assert host_debian_suite(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ('COPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY app.py .\nCMD ["python","app.py"]', "app.py"),
        ('COPY . .\nCMD ["uvicorn","main:app","--host","0.0.0.0"]', "main.py"),
        ('WORKDIR /code\nCOPY ./app /code/app\nCMD ["uvicorn", "app.main:app", "--port", "80"]', "app/main.py"),
        ("WORKDIR /app\nCOPY src/ ./src\nCMD python src/app.py", "src/app.py"),
        ('WORKDIR /app\nCOPY src/ .\nCMD ["gunicorn", "-b", "0.0.0.0:8000", "-w", "2", "app:app"]', "src/app.py"),
        ("COPY myapp.py .\nCMD python myapp.py", "myapp.py"),
        ('COPY . /app\nWORKDIR /app\nENTRYPOINT ["python"]\nCMD ["server.py"]', "server.py"),
        ('COPY . .\nCMD ["sh","-c","exec gunicorn --bind 0.0.0.0:$PORT wsgi:app"]', "wsgi.py"),
        ('COPY . .\nCMD ["python","-m","flask","--app","web","run"]', "web.py"),
        ("COPY . .\nCMD python -m service", "service.py"),
        ('COPY requirements.txt *.py ./\nCMD ["python", "app.py"]', "app.py"),
        ('COPY ../secret.py .\nCMD ["python", "/etc/passwd"]', "myapp.py"),  # never outside the context
        ("COPY --from=builder /install /usr/local\nCOPY . .", "myapp.py"),
    ],
)  # fmt: skip
def test_service_file_follows_the_dockerfile(dockerfile, expected):
    assert service_file("FROM python:3.11-slim\n" + dockerfile + "\n") == expected


def _info(listening, loopback=(), state="running"):
    return DeploymentInfo(
        target="local", run_id="r", expected_pods=1,
        pods=[PodInfo(name="p", labels={"app": "a"}, listening=listening, loopback_only=list(loopback))],
        containers=[ContainerInfo(pod="p", name="app", engine_name="p-app", state=state)],
        service_ports=[ServicePortInfo(service="s", port=80, target_port=8000, selector={"app": "a"})],
    )  # fmt: skip


def test_readiness_waits_for_the_declared_port_not_the_clock():
    since = {"p-app": 0.0}
    assert readiness(_info([8000]), since, now=0.5) is None
    waiting = readiness(_info([]), since, now=100.0)  # a slow start: still waited for after 100 s
    assert waiting is not None and "does not listen on port 8000 yet" in waiting
    assert readiness(_info([5000]), since, now=1.0) is not None  # listening elsewhere: give it a moment...
    assert readiness(_info([5000]), since, now=6.0) is None  # ...then Connect names the wrong port
    assert readiness(_info([], loopback=[8000]), since, now=6.0) is None
    assert "is exited" in readiness(_info([8000], state="exited"), since, now=1.0)
    assert readiness(_info(None), since, now=6.0) is None  # sockets unknown: the old settle rule


def test_cpu_limits_of_the_played_workloads():
    docs = [{"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "x", "resources": {"limits": {"cpu": "30m"}}}, {"name": "side", "image": "y"}]}}}}]
    assert cpu_limits(docs) == {"app": "30m"}


def test_stand_ins_are_recorded_once_each_and_printed_one_per_line():
    from kubevibe.pipeline.context import RunState
    from kubevibe.record.show import stand_in_lines

    state = RunState(prompt="x", stand_ins=[{"kind": "base-image", "detail": "FROM python:3.11-slim -> x"}])
    merged = state.stand_ins_plus([{"kind": "base-image", "detail": "FROM python:3.11-slim -> x"},
                                   {"kind": "dropped-field", "detail": "metadata.namespace 'default' dropped"}])
    assert [s["kind"] for s in merged] == ["base-image", "dropped-field"]
    assert stand_in_lines(merged)[1] == "stand-in (dropped-field): metadata.namespace 'default' dropped"


def test_ready_timeout_is_a_setting_with_its_environment_variable():
    from kubevibe.errors import SettingError
    from kubevibe.settings import resolve_settings

    resolved = resolve_settings(env={"KUBEVIBE_READY_TIMEOUT": "45"})
    assert resolved.settings.ready_timeout == 45.0 and resolved.sources["ready_timeout"] == "env:KUBEVIBE_READY_TIMEOUT"
    with pytest.raises(SettingError):
        resolve_settings(env={"KUBEVIBE_READY_TIMEOUT": "-1"})
