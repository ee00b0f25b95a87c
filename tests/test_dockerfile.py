"""kubevibe.dockerfile: the one parser, and the pre-build check that refuses what could reach outside a build."""

from __future__ import annotations

import pytest

from kubevibe import dockerfile
from kubevibe.stages.build import precheck_result

# The CVE-2024-1753 shape: a symlink made in one stage, mounted writable from a later one.
ESCAPE = """\
FROM python:3.11-slim AS base
RUN ln -s / /rootfslink
FROM python:3.11-slim
RUN --mount=type=bind,rw,source=/rootfslink,target=/mnt,from=base touch /mnt/tmp/marker
"""


def rules(text: str) -> list[str]:
    return [f.rule for f in dockerfile.refusals(text)]


def test_the_symlink_escape_is_refused_naming_line_and_reason():
    found = dockerfile.refusals(ESCAPE)
    assert [f.rule for f in found] == ["mount-from", "mount-bind-rw"]
    assert all(f.line == 4 and f.instruction == "RUN" for f in found)
    assert found[0].message.startswith("Dockerfile line 4: RUN --mount=type=bind,rw,source=/rootfslink")
    assert "CVE-2024-1753" in found[0].message


@pytest.mark.parametrize(("line", "rule"), [
    ("RUN --mount=type=bind,source=x,target=/x,rw=true true", "mount-bind-rw"),
    ("RUN --mount=type=bind,source=x,target=/x,readwrite true", "mount-bind-rw"),
    ("RUN --mount=type=bind,source=x,target=/x,ro=false true", "mount-bind-rw"),
    ("RUN --mount=source=x,target=/x,rw true", "mount-bind-rw"),  # bind is the default type
    ("RUN --mount=type=bind,from=builder,source=/app,target=/x true", "mount-from"),
    ("RUN --mount=type=bind,from=docker.io/library/alpine,target=/x true", "mount-from"),
    ("RUN --mount=type=bind,source=../..,target=/x true", "mount-source"),
    ("RUN --mount=type=cache,from=base,source=/link,target=/root/.cache true", "mount-from"),
    ("RUN --mount=type=ssh true", "mount-ssh"),
    ("RUN --mount=type=weird,target=/x true", "mount-type"),
    ("RUN --mount=type=$T,target=/x true", "flag-variable"),
    ("RUN --network=host curl x", "network"),
    ("RUN --network=none true", "network"),
    ("RUN --security=insecure true", "security"),
    ("RUN --device=/dev/fuse true", "device"),
    ("RUN --privileged true", "flag"),
    ('RUN --mount="type=bind,rw,target=/x" true', "mount-bind-rw"),
    ("ONBUILD RUN --mount=type=bind,rw,target=/x true", "mount-bind-rw"),
    ("COPY ../secrets /x", "copy-source"),
])
def test_refused_instructions(line, rule):
    assert rules(f"FROM python:3.11-slim\n{line}\n") == [rule]


@pytest.mark.parametrize("line", [
    "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt",
    "RUN --mount=type=cache,id=pip,sharing=locked,target=/root/.cache pip install flask",
    "RUN --mount=type=secret,id=token,required=true cat /run/secrets/token",
    "RUN --mount=type=tmpfs,target=/tmp,size=64m true",
    "RUN --mount=type=bind,source=requirements.txt,target=/tmp/req.txt pip install -r /tmp/req.txt",
    "RUN --mount=type=bind,target=/src,ro true",
    "COPY --from=builder /app /app",
    "COPY --chown=1000:1000 --chmod=755 . /app",
    "ADD https://example.com/file.tar.gz /tmp/",
    "RUN echo --network=host is only text here",
    "RUN <<EOF\n--mount=type=bind,rw inside a heredoc is shell text\nEOF",
])
def test_allowed_instructions(line):
    assert rules(f"FROM python:3.11-slim\n{line}\n") == []


def test_remote_add_is_a_warning():
    (found,) = dockerfile.precheck("FROM python:3.11-slim\nADD https://example.com/x.tgz /x\n")
    assert found.severity == "warning" and found.rule == "add-url"


def test_continuations_and_the_escape_directive_are_followed():
    text = "# escape=`\nFROM python:3.11-slim\nRUN --network=none `\n    --mount=type=bind,rw,target=/x `\n    true\n"
    assert [(f.line, f.rule) for f in dockerfile.refusals(text)] == [(3, "network"), (3, "mount-bind-rw")]


@pytest.mark.parametrize(("syntax", "refused"), [
    ("docker/dockerfile:1", False), ("docker/dockerfile:1.7-labs", False), ("docker.io/docker/dockerfile:1", False),
    ("evil.example/frontend:latest", True),
])
def test_syntax_directive(syntax, refused):
    assert (rules(f"# syntax={syntax}\nFROM python:3.11-slim\n") == ["syntax"]) is refused


def test_parse_gives_keywords_flags_and_lines():
    (first, second) = dockerfile.parse("FROM --platform=linux/amd64 python:3.11 AS b\n\n# c\nRUN --mount=type=cache,"
                                       "target=/c \\\n  pip install x\n")
    assert (first.keyword, first.flags, first.args, first.line) == ("FROM", (("platform", "linux/amd64"),),
                                                                   "python:3.11 AS b", 1)
    assert (second.keyword, second.flags[0][0], second.args, second.line) == ("RUN", "mount", "pip install x", 4)


def test_build_stage_result_for_a_refusal_carries_every_finding():
    result = precheck_result(ESCAPE)
    assert result is not None and result.outcome.value == "failed"
    assert result.summary.startswith("Dockerfile pre-check: 2 refusals, nothing was built: Dockerfile line 4")
    assert [e.detail for e in result.evidence] == ["check: dockerfile-precheck (mount-from)",
                                                   "check: dockerfile-precheck (mount-bind-rw)"]
    assert precheck_result("FROM python:3.11-slim\nRUN true\n") is None
