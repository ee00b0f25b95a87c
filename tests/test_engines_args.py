"""Pure tests: engine argument lists, image references, FROM rewriting. No engine needed, fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubevibe.engines import BUILDERS, DockerBuilder, PodmanBuilder, get_builder
from kubevibe.baseimages import python_image_match
from kubevibe.dockerfile import Decision, expand_args, rewrite_from_lines
from kubevibe.engines.base import build_arg_flags, label_flags
from kubevibe.engines.baseimage import KNOWN_PYTHON_TAGS, map_base_image, should_substitute
from kubevibe.engines.docker import (
    docker_build_argv,
    docker_image_exists_argv,
    docker_push_argv,
)
from kubevibe.engines.podman import (
    podman_build_argv,
    podman_image_exists_argv,
    podman_pull_argv,
    podman_push_argv,
)
from kubevibe.errors import SettingError, UsageError
from kubevibe.exec import CommandResult
from kubevibe.imageref import ImageRef, parse_image_ref
from kubevibe.podman_conf import podman_env, render_containers_conf

BASE = "localhost/kubevibe/python:3.11-bookworm"

# --- registry of builders -------------------------------------------------------------------------------------------


def test_get_builder_known_names():
    assert isinstance(get_builder("podman"), PodmanBuilder)
    assert isinstance(get_builder(" Docker "), DockerBuilder)
    assert set(BUILDERS) == {"podman", "docker"}


def test_get_builder_unknown_name_is_usage_error():
    with pytest.raises(UsageError) as exc:
        get_builder("buildkit")
    assert "buildkit" in exc.value.message
    assert "docker, podman" in exc.value.message
    assert exc.value.exit_code == 2


# --- podman argv ----------------------------------------------------------------------------------------------------


def test_podman_build_minimal():
    assert podman_build_argv("podman", Path("/ctx"), "localhost/a:1") == [
        "podman", "build", "--format", "docker", "--layers", "--cap-drop=ALL",
        "--cap-add=CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETFCAP,SETGID,SETUID", "-t", "localhost/a:1", "/ctx",
    ]  # fmt: skip


@pytest.mark.parametrize(("podman", "buildah", "vulnerable"), [
    ("4.3.1", "1.28.2", True), ("5.0.0", "1.35.0", True), ("5.0.1", "1.35.3", False), ("5.4.2", "1.39.3", False),
    ("5.4.2", None, False), (None, None, None),
])
def test_build_escape_status_by_version(podman, buildah, vulnerable):
    from kubevibe.engines.hardening import escape_status

    status = escape_status(podman, buildah)
    assert status.vulnerable is vulnerable
    assert "Dockerfile pre-check before every build" in status.text()
    if vulnerable:
        assert "known vulnerable to build-time escapes (CVE-2024-1753" in status.text()


def test_podman_build_all_options_context_last():
    argv = podman_build_argv(
        "/usr/bin/podman", Path("/ctx"), "t:1", dockerfile=Path("/ctx/Dockerfile.local"),
        build_args={"B": "2", "A": "x y"}, pull="never", labels={"io.kubevibe.run": "r1"},
    )  # fmt: skip
    assert argv[0] == "/usr/bin/podman"
    assert argv[-1] == "/ctx"
    assert argv[argv.index("-f") + 1] == "/ctx/Dockerfile.local"
    assert "--pull=never" in argv
    # build args sorted, each its own argument (no shell quoting needed for spaces)
    i = argv.index("--build-arg")
    assert argv[i : i + 4] == ["--build-arg", "A=x y", "--build-arg", "B=2"]
    assert argv[argv.index("--label") + 1] == "io.kubevibe.run=r1"


def test_podman_push_is_insecure_for_loopback_registry():
    assert podman_push_argv("podman", "127.0.0.1:5005/k/app:1") == [
        "podman", "push", "--tls-verify=false", "127.0.0.1:5005/k/app:1",
    ]  # fmt: skip
    assert podman_push_argv("podman", "r/x", tls_verify=True)[2] == "--tls-verify=true"


def test_podman_small_commands():
    assert podman_pull_argv("podman", "python:3.11") == ["podman", "pull", "python:3.11"]
    assert podman_pull_argv("podman", "x", tls_verify=False) == ["podman", "pull", "--tls-verify=false", "x"]
    assert PodmanBuilder("podman").tag_argv("a", "b") == ["podman", "tag", "a", "b"]
    assert podman_image_exists_argv("podman", "a") == ["podman", "image", "exists", "a"]
    assert PodmanBuilder("podman").rmi_argv("a") == ["podman", "rmi", "a"]
    assert PodmanBuilder("podman").rmi_argv("a", force=True) == ["podman", "rmi", "--force", "a"]


# --- docker argv ----------------------------------------------------------------------------------------------------


def test_docker_build_argv():
    argv = docker_build_argv("docker", Path("/c"), "t:1", dockerfile=Path("/c/D"), build_args={"X": "1"})
    assert argv == ["docker", "build", "-t", "t:1", "-f", "/c/D", "--build-arg", "X=1", "/c"]


def test_docker_build_pull_policies():
    assert "--pull" in docker_build_argv("docker", Path("/c"), "t", pull="always")
    assert "--pull" not in docker_build_argv("docker", Path("/c"), "t", pull="never")


def test_docker_small_commands():
    assert docker_push_argv("docker", "127.0.0.1:5005/a:1") == ["docker", "push", "127.0.0.1:5005/a:1"]
    assert DockerBuilder("docker").tag_argv("a", "b") == ["docker", "tag", "a", "b"]
    assert docker_image_exists_argv("docker", "a")[:3] == ["docker", "image", "inspect"]
    assert DockerBuilder("docker").rmi_argv("a", force=True) == ["docker", "rmi", "--force", "a"]


def test_flag_helpers_validate_names():
    assert build_arg_flags(None) == []
    assert label_flags({}) == []
    with pytest.raises(ValueError):
        build_arg_flags({"BAD-NAME": "1"})
    with pytest.raises(ValueError):
        label_flags({"a=b": "1"})


# --- podman configuration -------------------------------------------------------------------------------------------


def test_containers_conf_content():
    text = render_containers_conf()
    assert 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]' in text
    assert 'runtime = "runc"' in text
    assert 'cgroup_manager = "cgroupfs"' in text


def test_podman_env_points_to_written_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEVIBE_HOME", str(tmp_path))
    env = podman_env()
    conf = Path(env["CONTAINERS_CONF"])
    assert conf == tmp_path / "podman" / "containers.conf"
    assert conf.read_text() == render_containers_conf()


# --- image references -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("python", ImageRef(None, "python", None, None)),
        ("python:3.11-slim", ImageRef(None, "python", "3.11-slim", None)),
        ("library/python:3", ImageRef(None, "library/python", "3", None)),
        ("docker.io/library/python:3.12", ImageRef("docker.io", "library/python", "3.12", None)),
        ("localhost/kubevibe/python:3.11-bookworm", ImageRef("localhost", "kubevibe/python", "3.11-bookworm", None)),
        ("127.0.0.1:5005/k/app:1", ImageRef("127.0.0.1:5005", "k/app", "1", None)),
        ("registry:5000/app", ImageRef("registry:5000", "app", None, None)),
        ("python@sha256:abc", ImageRef(None, "python", None, "sha256:abc")),
        ("python:3.11@sha256:abc", ImageRef(None, "python", "3.11", "sha256:abc")),
        ("ghcr.io/org/img:v1", ImageRef("ghcr.io", "org/img", "v1", None)),
    ],
)
def test_parse_image_ref(ref, expected):
    assert parse_image_ref(ref) == expected


@pytest.mark.parametrize("tag", KNOWN_PYTHON_TAGS)
def test_known_python_tags_are_python_images(tag):
    assert python_image_match(f"python:{tag}")[0]
    assert python_image_match(f"docker.io/library/python:{tag}")[0]


@pytest.mark.parametrize(
    "ref",
    ["node:20", "python2:latest", "ghcr.io/x/python:3.11", "quay.io/python:3", "python:2.7-slim",
     "python:windowsservercore", "mypython:3.11", "library/pythonista:3", BASE],
)  # fmt: skip
def test_not_python_images(ref):
    assert python_image_match(ref) == (False, None)


def test_python_match_notes_differences():
    assert python_image_match("python:3.11-slim") == (True, None)
    assert python_image_match("python:3.13-slim-trixie") == (True, None)
    assert "taken as Python 3.13" in python_image_match("python")[1]
    ok, note = python_image_match("python:3.12-slim")
    assert ok and "3.12" in note and "nearest local stand-in has Python 3.11" in note
    ok, note = python_image_match("python:3.11-alpine")
    assert ok and "not Alpine" in note and "apk" in note and "apt-get" in note


# --- ARG expansion --------------------------------------------------------------------------------------------------


def test_expand_args():
    args = {"PY": "3.11", "VARIANT": "slim", "EMPTY": None}
    assert expand_args("python:${PY}-${VARIANT}", args) == "python:3.11-slim"
    assert expand_args("python:$PY", args) == "python:3.11"
    assert expand_args("python:${MISSING:-3.12}", args) == "python:3.12"
    assert expand_args("python:3.11${VARIANT:+-}${VARIANT}", args) == "python:3.11-slim"
    assert expand_args("python:${EMPTY}", args) is None
    assert expand_args("python:${NOPE}", args) is None


# --- FROM rewriting (pure) ------------------------------------------------------------------------------------------


def always(image: str) -> Decision:
    return Decision(BASE, "test: always map")


def python_only(image: str) -> Decision:
    if python_image_match(image)[0]:
        return Decision(BASE, "test")
    return Decision(None, "no local stand-in", unmapped=True)


def test_simple_from_rewritten():
    text, records = rewrite_from_lines("FROM python:3.11-slim\nRUN pip install flask\n", always)
    assert text == f"FROM {BASE}\nRUN pip install flask\n"
    assert records == [{"line": 1, "from": "python:3.11-slim", "to": BASE, "status": "mapped",
                        "reason": "test: always map"}]  # fmt: skip


def test_keyword_case_alias_and_indent_kept():
    text, records = rewrite_from_lines("  from python:3.12 as Builder\nRUN true\n", always)
    assert text.splitlines()[0] == f"  from {BASE} as Builder"
    assert records[0]["from"] == "python:3.12"


def test_platform_flag_dropped_and_recorded_other_flags_kept():
    src = "FROM --platform=$BUILDPLATFORM --foo=bar python:3.11-slim AS build\n"
    text, records = rewrite_from_lines(src, always)
    assert text == f"FROM --foo=bar {BASE} AS build\n"
    assert records[0]["dropped_flags"] == ["--platform=$BUILDPLATFORM"]


def test_multi_stage_stage_references_left_alone():
    src = (
        "FROM python:3.11-slim AS build\n"
        "RUN pip wheel -r requirements.txt -w /w\n"
        "FROM build AS test\n"
        "FROM python:3.11-slim\n"
        "COPY --from=build /w /w\n"
    )
    calls = []

    def decide(image):
        calls.append(image)
        return always(image)

    text, records = rewrite_from_lines(src, decide)
    lines = text.splitlines()
    assert lines[0] == f"FROM {BASE} AS build"
    assert lines[2] == "FROM build AS test"
    assert lines[3] == f"FROM {BASE}"
    assert [r["line"] for r in records] == [1, 4]
    assert calls == ["python:3.11-slim"]  # one decision per distinct image


def test_stage_reference_is_case_insensitive_and_scratch_skipped():
    src = "FROM python:3.11 AS Base\nFROM base\nFROM scratch\nCOPY --from=Base /a /a\n"
    text, records = rewrite_from_lines(src, always)
    assert text.splitlines()[1:3] == ["FROM base", "FROM scratch"]
    assert len(records) == 1


def test_arg_based_from_resolved_from_default():
    src = 'ARG PY_VERSION=3.11\nARG VARIANT="slim"\nFROM python:${PY_VERSION}-${VARIANT}\n'
    text, records = rewrite_from_lines(src, always)
    assert text.splitlines()[:2] == ["ARG PY_VERSION=3.11", 'ARG VARIANT="slim"']
    assert text.splitlines()[2] == f"FROM {BASE}"
    assert records[0]["from"] == "python:3.11-slim"


def test_arg_based_from_resolved_from_build_args():
    src = "ARG BASE_IMAGE\nFROM $BASE_IMAGE\n"
    text, records = rewrite_from_lines(src, always, build_args={"BASE_IMAGE": "python:3.10-slim"})
    assert text.splitlines()[1] == f"FROM {BASE}"
    assert records[0]["from"] == "python:3.10-slim"


def test_unresolvable_arg_from_left_alone_and_reported():
    src = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n"
    text, records = rewrite_from_lines(src, always)
    assert text == src
    assert records == [{"line": 2, "from": "${BASE_IMAGE}", "to": None, "status": "unresolved",
                        "reason": "uses a build argument without a value; left unchanged"}]  # fmt: skip


def test_arg_after_first_from_is_not_global():
    src = "FROM python:3.11\nARG PY=3.12\nFROM python:${PY}\n"
    _, records = rewrite_from_lines(src, always)
    assert records[1]["status"] == "unresolved"


def test_unmapped_image_reported_not_changed():
    src = "FROM node:20-slim\nRUN npm ci\n"
    text, records = rewrite_from_lines(src, python_only)
    assert text == src
    assert records[0]["status"] == "unmapped"
    assert records[0]["to"] is None


def test_kept_image_has_no_record():
    text, records = rewrite_from_lines("FROM python:3.11\n", lambda image: Decision(None, "present locally"))
    assert text == "FROM python:3.11\n"
    assert records == []


def test_continuation_lines_joined_and_replaced():
    src = "FROM \\\n    python:3.11-slim \\\n    AS app\nRUN echo hi\n"
    text, records = rewrite_from_lines(src, always)
    assert text == f"FROM {BASE} AS app\nRUN echo hi\n"
    assert records[0]["line"] == 1


def test_continuation_of_other_instructions_untouched():
    src = "FROM python:3.11\nRUN apt-get update \\\n    && echo FROM python:3.9\n"
    text, records = rewrite_from_lines(src, always)
    assert text.splitlines()[1:] == ["RUN apt-get update \\", "    && echo FROM python:3.9"]
    assert len(records) == 1


def test_comments_and_heredocs_are_not_parsed_as_from():
    src = (
        "# syntax=docker/dockerfile:1.4\n"
        "# FROM python:3.9 is what we used before\n"
        "FROM python:3.11-slim\n"
        "RUN <<EOF\n"
        "FROM python:2.7\n"
        "EOF\n"
        "COPY <<-'CONF' /etc/app.conf\n"
        "FROM x\n"
        "CONF\n"
        "RUN echo $((1<<2))\n"
        "FROM python:3.11-slim AS second\n"
    )
    text, records = rewrite_from_lines(src, always)
    assert [r["line"] for r in records] == [3, 11]
    assert "FROM python:2.7\n" in text and "FROM x\n" in text
    assert "# FROM python:3.9 is what we used before\n" in text


def test_escape_directive_backtick():
    src = "# escape=`\nFROM `\n  python:3.11\nRUN dir c:\\\n"
    text, records = rewrite_from_lines(src, always)
    assert text == f"# escape=`\nFROM {BASE}\nRUN dir c:\\\n"
    assert len(records) == 1


def test_crlf_line_endings_preserved():
    text, _ = rewrite_from_lines("FROM python:3.11\r\nRUN true\r\n", always)
    assert text == f"FROM {BASE}\r\nRUN true\r\n"


def test_no_trailing_newline_preserved():
    text, _ = rewrite_from_lines("FROM python:3.11", always)
    assert text == f"FROM {BASE}"


def test_no_from_at_all():
    assert rewrite_from_lines("RUN true\n", always) == ("RUN true\n", [])
    assert rewrite_from_lines("", always) == ("", [])


# --- map_base_image and the decision, with a stand-in builder -------------------------------------------------------


class FakeBuilder:
    """Answers image_exists/pull from fixed sets; records pull attempts."""

    def __init__(self, local=(), pullable=()):
        self.local, self.pullable, self.pulled = set(local), set(pullable), []

    def image_exists(self, ref):
        return ref in self.local

    def pull(self, ref, *, timeout, log_file=None):
        self.pulled.append((ref, timeout))
        if ref in self.pullable:
            return CommandResult(argv=["pull", ref], returncode=0)
        return CommandResult(argv=["pull", ref], returncode=125, stderr="Error: no such host")


def test_should_substitute_policies():
    b = FakeBuilder(local={"python:3.11"}, pullable={"python:3.12"})
    assert should_substitute(b, "python:3.11") == (False, "present locally")
    assert should_substitute(b, "python:3.12", pull_timeout=5) == (False, "pulled")
    needed, reason = should_substitute(b, "python:3.10")
    assert needed and "no such host" in reason
    needed, reason = should_substitute(b, "python:3.12", policy="offline")
    assert needed and "offline" in reason
    assert b.pulled == [("python:3.12", 5), ("python:3.10", 30.0)]


def test_map_base_image_end_to_end_with_fake_builder():
    b = FakeBuilder(local={"python:3.11-slim"})
    src = "FROM python:3.11-slim AS a\nFROM python:3.12-slim AS b\nFROM node:20\nFROM " + BASE + "\n"
    text, records = map_base_image(src, b, BASE, policy="auto")
    lines = text.splitlines()
    assert lines[0] == "FROM python:3.11-slim AS a"  # present locally: kept
    assert lines[1] == f"FROM {BASE} AS b"
    assert lines[2] == "FROM node:20"
    assert lines[3] == f"FROM {BASE}"
    by_status = {r["status"]: r for r in records}
    assert by_status["mapped"]["from"] == "python:3.12-slim"
    assert "3.12" in by_status["mapped"]["note"]
    assert by_status["unmapped"]["from"] == "node:20"
    assert BASE not in [p[0] for p in b.pulled]  # the base itself is never looked up


def test_map_base_image_offline_never_pulls():
    b = FakeBuilder()
    _, records = map_base_image("FROM python:3.11-slim\n", b, BASE, policy="offline")
    assert b.pulled == []
    assert records[0]["status"] == "mapped"


def test_map_base_image_without_builder_maps_python_only():
    text, records = map_base_image("FROM python:3\nFROM golang:1.22\n", None, BASE, policy="offline")
    assert text == f"FROM {BASE}\nFROM golang:1.22\n"
    assert [r["status"] for r in records] == ["mapped", "unmapped"]


def test_policy_from_environment(monkeypatch):
    b = FakeBuilder()
    monkeypatch.setenv("KUBEVIBE_BASE_POLICY", "offline")
    map_base_image("FROM python:3.11\n", b, BASE)
    assert b.pulled == []
    monkeypatch.setenv("KUBEVIBE_BASE_POLICY", "sometimes")
    with pytest.raises(SettingError):
        map_base_image("FROM python:3.11\n", b, BASE)
