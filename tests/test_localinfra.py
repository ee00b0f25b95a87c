"""Local infrastructure: pure parts (apt sources, configs, the pipe helper) and real-engine tests.

Engine tests use the real podman, base image and registry (no mocks). They skip only when podman itself is
absent; in CI scripts/bootstrap.sh has installed and set up everything, so there they really run. Whatever they
create (images, registry tags, a second registry) is removed again.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from kubevibe.engines import get_builder, map_base_image
from kubevibe.errors import SettingError
from kubevibe.exec import run
from kubevibe.localinfra import apt, baseimage, doctor
from kubevibe.localinfra import registry as loopback
from kubevibe.localinfra.apt import AptSource, choose_debian_mirror, parse_deb822_sources, parse_one_line_sources
from kubevibe.localinfra.baseimage import BASE_IMAGE
from kubevibe.localinfra.common import infra_paths
from kubevibe.podman_conf import podman_env
from kubevibe.tools import find_tool

needs_podman = pytest.mark.skipif(find_tool("podman") is None, reason="podman is not installed on this machine")


# --- apt sources and the Debian mirror (pure) ------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
"""


def test_parse_deb822_sources():
    sources = parse_deb822_sources(DEB822)
    assert sources == [
        AptSource("http://deb.debian.org/debian", ("bookworm", "bookworm-updates"), ("main",)),
        AptSource("http://deb.debian.org/debian-security", ("bookworm-security",), ("main",)),
    ]
    assert choose_debian_mirror(sources) == "http://deb.debian.org/debian"


def test_parse_deb822_disabled_stanza():
    text = "Types: deb\nURIs: http://a/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
    assert parse_deb822_sources(text) == []


def test_parse_one_line_sources():
    text = (
        "# comment\n"
        "deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://mirror.example/debian/ bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    sources = parse_one_line_sources(text)
    assert sources[0] == AptSource("http://mirror.example/debian", ("bookworm",), ("main", "contrib"))
    assert len(sources) == 3
    assert choose_debian_mirror(sources) == "http://mirror.example/debian"


def test_choose_mirror_prefers_suite_then_any_debian_archive():
    trixie = AptSource("http://ftp.de.debian.org/debian", ("trixie",), ("main",))
    other = AptSource("https://packages.cloud.google.com/apt", ("cloud-sdk",), ("main",))
    assert choose_debian_mirror([other, trixie]) == "http://ftp.de.debian.org/debian"
    assert choose_debian_mirror([other]) is None
    assert choose_debian_mirror([]) is None


def test_debian_mirror_override(monkeypatch):
    monkeypatch.setenv("KUBEVIBE_DEBIAN_MIRROR", "http://local.mirror/debian")
    assert apt.debian_mirror() == "http://local.mirror/debian"


def test_read_apt_sources_from_a_tree(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "x.list.disabled").write_text("deb http://ignored/debian bookworm main\n")
    uris = [s.uri for s in apt.read_apt_sources(tmp_path)]
    assert uris == ["http://one/debian", "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"]


# --- configs (pure) -------------------------------------------------------------------------------------------------


def test_registry_config(tmp_path):
    config = yaml.safe_load(loopback.render_registry_config("127.0.0.1:5999", tmp_path / "s"))
    assert config["version"] == 0.1
    assert config["http"]["addr"] == "127.0.0.1:5999"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "s")
    assert config["storage"]["delete"]["enabled"] is True


def test_registry_port_setting(monkeypatch):
    monkeypatch.delenv("KUBEVIBE_REGISTRY_PORT", raising=False)
    assert loopback.registry_address() == "127.0.0.1:5005"
    monkeypatch.setenv("KUBEVIBE_REGISTRY_PORT", "6123")
    assert loopback.registry_address() == "127.0.0.1:6123"
    for bad in ("abc", "0", "70000", "-1"):
        monkeypatch.setenv("KUBEVIBE_REGISTRY_PORT", bad)
        with pytest.raises(SettingError):
            loopback.registry_port()


def test_base_containerfile_behaves_like_official_python_image():
    text = baseimage.render_stand_in_containerfile(baseimage.DEFAULT_STAND_IN)
    assert text.startswith("# Generated by KubeVibe")
    assert f"FROM {baseimage.DEFAULT_STAND_IN.rootfs_image}" in text
    assert "python3 -m venv --system-site-packages /usr/local" in text
    assert "PATH=/usr/local/bin:" in text
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        assert f"{var}={baseimage.IMAGE_CA_BUNDLE}" in text
    assert "WORKDIR /\n" in text
    for pkg in ("flask", "fastapi", "uvicorn", "gunicorn", "pydantic"):  # nothing the official image lacks
        assert pkg not in text


# --- real engine ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_image():
    """The base image; built here if missing (scripts/bootstrap.sh normally did it already)."""
    return baseimage.ensure_base_image(progress=lambda msg: None)


@pytest.fixture(scope="module")
def registry():
    return loopback.ensure_registry()


def _podman(*args: str, timeout: float = 120):
    return run([str(find_tool("podman")), *args], timeout=timeout, env=podman_env())


@pytest.mark.engine
@needs_podman
def test_base_image_behaves_like_python_image(base_image):
    script = (
        "import importlib.util, os, shutil, sys, sysconfig;"
        "print(sys.version_info[:2], shutil.which('python'), shutil.which('pip'), os.getcwd(), os.getuid(),"
        " sysconfig.get_paths()['purelib'], os.path.isfile(os.environ['SSL_CERT_FILE']),"
        " [m for m in ('flask', 'fastapi', 'uvicorn', 'gunicorn', 'requests') if importlib.util.find_spec(m)])"
    )
    result = _podman("run", "--rm", base_image, "python", "-c", script)
    assert result.ok, result.output
    assert result.stdout.strip() == ("(3, 11) /usr/local/bin/python /usr/local/bin/pip / 0 "
                                     "/usr/local/lib/python3.11/site-packages True []")


@pytest.mark.engine
@needs_podman
def test_base_image_is_current(base_image):
    assert base_image == BASE_IMAGE
    assert baseimage.base_image_current()
    assert doctor.status()["base_image"]["present"] is True


@pytest.mark.engine
@needs_podman
def test_registry_answers_v2(registry):
    assert registry == loopback.registry_address()
    response = httpx.get(f"http://{registry}/v2/", trust_env=False, timeout=5)
    assert response.status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.engine
@needs_podman
def test_registry_started_on_demand_reused_and_stopped(tmp_path, monkeypatch):
    # A second registry of its own (own data dir and port), so the shared one is never disturbed.
    monkeypatch.setenv("KUBEVIBE_HOME", str(tmp_path))
    monkeypatch.setenv("KUBEVIBE_REGISTRY_PORT", str(_free_port()))
    address = loopback.registry_address()
    assert not loopback.registry_alive(address)
    try:
        assert loopback.ensure_registry() == address
        pid = loopback.read_pid(tmp_path / "registry" / "registry.pid")
        assert pid is not None and loopback.registry_alive(address)
        assert loopback.ensure_registry() == address  # reused, not restarted
        assert loopback.read_pid(tmp_path / "registry" / "registry.pid") == pid
    finally:
        stopped = loopback.stop_registry()
    assert stopped
    assert not loopback.registry_alive(address)
    assert not Path(f"/proc/{pid}").exists() or loopback._is_zombie(pid)


def _delete_from_registry(registry: str, repo: str, tag: str) -> None:
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    with httpx.Client(trust_env=False, timeout=10) as client:
        head = client.head(f"http://{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
        digest = head.headers.get("Docker-Content-Digest")
        if digest:
            client.delete(f"http://{registry}/v2/{repo}/manifests/{digest}")


@pytest.mark.engine
@needs_podman
def test_build_mapped_dockerfile_and_push(base_image, registry, tmp_path):
    builder = get_builder("podman")
    (tmp_path / "app.py").write_text("print('hello from kubevibe test')\n")
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY app.py .\nCMD ["python", "app.py"]\n'
    )
    text, records = map_base_image((tmp_path / "Dockerfile").read_text(), builder, base_image, policy="offline")
    if not builder.image_exists("python:3.11-slim"):  # the usual case: no public registry here
        assert records[0]["status"] == "mapped" and records[0]["to"] == base_image
        assert text.startswith(f"FROM {base_image}\n")
    (tmp_path / "Dockerfile.local").write_text(text)

    unique = uuid.uuid4().hex[:12]
    local_ref = f"localhost/kubevibe-test/app:{unique}"
    repo = f"kubevibe-test/app-{unique}"  # its own repository, so cleanup cannot touch anyone else's
    remote_ref = f"{registry}/{repo}:{unique}"
    try:
        result = builder.build(tmp_path, local_ref, timeout=600, dockerfile=tmp_path / "Dockerfile.local",
                               labels={"io.kubevibe.test": unique})  # fmt: skip
        assert result.ok, result.output[-2000:]
        assert builder.image_exists(local_ref)
        run_result = _podman("run", "--rm", local_ref)
        assert run_result.stdout.strip() == "hello from kubevibe test", run_result.output
        assert builder.tag(local_ref, remote_ref).ok
        pushed = builder.push(remote_ref, timeout=300)
        assert pushed.ok, pushed.output
        tags = httpx.get(f"http://{registry}/v2/{repo}/tags/list", trust_env=False, timeout=10).json()
        assert unique in tags["tags"]
    finally:
        _delete_from_registry(registry, repo, unique)
        builder.remove_image(remote_ref)
        builder.remove_image(local_ref)
    assert not builder.image_exists(local_ref) and not builder.image_exists(remote_ref)
    tags = httpx.get(f"http://{registry}/v2/{repo}/tags/list", trust_env=False, timeout=10).json()
    assert unique not in (tags.get("tags") or [])
    # The registry keeps an empty repository entry after a manifest delete; drop it from our storage too.
    repo_dir = infra_paths()["registry_storage"] / "docker/registry/v2/repositories" / repo
    if repo_dir.is_dir():
        shutil.rmtree(repo_dir)
        try:
            repo_dir.parent.rmdir()  # only if empty: another run may be using kubevibe-test/ right now
        except OSError:
            pass


@pytest.mark.engine
@needs_podman
def test_remove_missing_image_is_not_an_error():
    result = get_builder("podman").remove_image(f"localhost/kubevibe-test/none:{uuid.uuid4().hex[:8]}")
    assert result.ok


@pytest.mark.engine
@needs_podman
def test_podman_builder_info():
    info = get_builder("podman").info()
    assert info["available"] is True
    assert info["runtime"] == "runc"
    assert info["containers_conf"].endswith("podman/containers.conf")


@pytest.mark.engine
@needs_podman
def test_doctor_required_checks_pass(base_image, registry):
    checks = doctor.doctor()
    names = {c.name for c in checks}
    for expected in ("podman", "runc", "containers.conf", "debootstrap", "base image", "docker-registry binary",
                     "registry running", "helm", "kubectl", "hadolint", "dot (graphviz)",
                     "kubernetes_validate importable", "xllamacpp importable", "docker (optional)"):  # fmt: skip
        assert expected in names
    failing = [f"{c.name}: {c.detail} (fix: {c.fix_command})" for c in checks if c.required and not c.ok]
    assert failing == []
    assert all(c.fix_command for c in checks)
