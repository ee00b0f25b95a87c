"""The conversational parser against hostile answers: what chat models really write, and worse."""

from __future__ import annotations

import pytest

from kubevibe.llm.chat_parse import parse_files
from kubevibe.pipeline.artifacts import CODE, DOCKERFILE, MANIFEST, REQUIREMENTS

PY = 'from flask import Flask\napp = Flask(__name__)\n\nif __name__ == "__main__":\n    app.run(host="0.0.0.0", port=5000)'
DOCKER = "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD [\"python\", \"myapp.py\"]"
YAML = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 80"


def fence(body: str, info: str = "", mark: str = "```") -> str:
    return f"{mark}{info}\n{body}\n{mark}"


@pytest.mark.parametrize("label", [
    "File: myapp.py", "**myapp.py**", "# myapp.py", "### 1. `myapp.py`", "myapp.py:", "`myapp.py`",
    "**File: `myapp.py`**", "Filename: myapp.py", "Here is `myapp.py`:", "- myapp.py (the service)",
])
def test_file_named_on_the_line_before_the_block(label):
    parsed = parse_files(f"Some prose.\n\n{label}\n{fence(PY, 'python')}\n\nMore prose.")
    assert parsed.files == {CODE: PY + "\n"}
    assert parsed.names[CODE] == "myapp.py"
    assert parsed.problem is None


@pytest.mark.parametrize("info", ['python title="myapp.py"', "python title=myapp.py", "python:myapp.py",
                                  "myapp.py", "{.python file=myapp.py}", "py filename='myapp.py'"])
def test_file_named_in_the_info_string(info):
    parsed = parse_files("Here you go:\n" + fence(PY, info))
    assert parsed.files == {CODE: PY + "\n"}


def test_file_named_in_a_first_line_comment_keeps_the_comment():
    parsed = parse_files(fence("# File: myapp.py\n" + PY, "python"))
    assert parsed.files[CODE].startswith("# File: myapp.py\n")


def test_tilde_fences_and_long_fences():
    answer = "File: Dockerfile\n" + fence(DOCKER, "", "~~~") + "\n\nFile: vibe.yaml\n" + fence(YAML, "yaml", "````")
    parsed = parse_files(answer)
    assert parsed.files == {DOCKERFILE: DOCKER + "\n", MANIFEST: YAML + "\n"}


def test_windows_line_endings():
    answer = ("File: myapp.py\n" + fence(PY, "python") + "\n\nFile: Dockerfile\n" + fence(DOCKER)).replace("\n", "\r\n")
    parsed = parse_files(answer)
    assert parsed.files == {CODE: PY + "\n", DOCKERFILE: DOCKER + "\n"}
    assert all("\r" not in c for c in parsed.files.values())


def test_unterminated_fence_runs_to_the_end_and_is_recorded():
    parsed = parse_files("File: myapp.py\n" + fence(PY, "python") + "\n\nFile: Dockerfile\n```\n" + DOCKER)
    assert parsed.files[DOCKERFILE] == DOCKER + "\n"
    assert any("not closed" in n and "Dockerfile" in n for n in parsed.notes)


def test_whole_answer_wrapped_in_a_markdown_block_with_nested_fences():
    inner = ("# The service\n\nFile: myapp.py\n" + fence(PY, "python") + "\n\nFile: Dockerfile\n"
             + fence(DOCKER, "dockerfile") + "\n\nThat is all.")
    for wrapped in (fence(inner, "markdown"), fence(inner, "md", "````")):
        parsed = parse_files("Here is my answer:\n\n" + wrapped + "\n\nGood luck!")
        assert parsed.files == {CODE: PY + "\n", DOCKERFILE: DOCKER + "\n"}, wrapped


def test_a_shorter_fence_inside_a_longer_one_stays_in_the_file():
    # CommonMark: only a fence at least as long as the opener closes it, so ```` keeps a docstring's ``` inside.
    code = 'DOC = """\n```json\n{"a": 1}\n```\n"""\n' + PY
    parsed = parse_files("File: myapp.py\n" + fence(code, "python", "````") + "\n\nFile: Dockerfile\n" + fence(DOCKER))
    assert parsed.files[CODE] == code + "\n"
    assert parsed.files[DOCKERFILE] == DOCKER + "\n"


@pytest.mark.parametrize("info", ["dockerfile", "Dockerfile", "docker", ""])
def test_a_dockerfile_block_with_no_name_is_recognised_by_language_or_content(info):
    parsed = parse_files("And the container:\n\n" + fence(DOCKER, info))
    assert parsed.files == {DOCKERFILE: DOCKER + "\n"}
    if info.lower() != "dockerfile":  # 'Dockerfile' as a language tag is a name too; both are fine
        assert any("content makes it Dockerfile" in n for n in parsed.notes)


def test_unnamed_manifest_and_requirements_are_recognised_but_shell_commands_are_not():
    answer = "\n\n".join([fence(YAML, "yaml"), fence("flask==3.0.3\ngunicorn>=21", "text"),
                          fence("podman build -t x .\nkubectl apply -f vibe.yaml", "bash")])
    parsed = parse_files(answer)
    assert parsed.files == {MANIFEST: YAML + "\n", REQUIREMENTS: "flask==3.0.3\ngunicorn>=21\n"}
    assert any("bash" in i for i in parsed.ignored)


def test_a_file_given_twice_the_last_wins_and_it_is_recorded():
    answer = ("File: Dockerfile\n" + fence("FROM python:3.10") + "\n\nOops, corrected:\n\nFile: Dockerfile\n"
              + fence(DOCKER))
    parsed = parse_files(answer)
    assert parsed.files == {DOCKERFILE: DOCKER + "\n"}
    assert parsed.duplicates == [DOCKERFILE]
    assert any("more than once" in n for n in parsed.notes)


def test_the_service_file_is_mapped_to_myapp_py_and_the_models_name_is_kept():
    answer = "File: app.py\n" + fence(PY, "python") + "\n\nFile: tests/test_app.py\n" + fence("def test(): pass")
    parsed = parse_files(answer)
    assert parsed.files == {CODE: PY + "\n"}
    assert parsed.names[CODE] == "app.py"
    assert any("second Python file" in i for i in parsed.ignored)


def test_several_yaml_files_make_one_manifest():
    deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x"
    answer = "File: deployment.yaml\n" + fence(deployment, "yaml") + "\n\nFile: service.yaml\n" + fence(YAML, "yaml")
    parsed = parse_files(answer)
    assert parsed.files[MANIFEST] == deployment + "\n---\n" + YAML + "\n"
    assert parsed.names[MANIFEST] == "deployment.yaml + service.yaml"


def test_a_compose_file_is_not_a_manifest():
    parsed = parse_files("File: docker-compose.yml\n" + fence("services:\n  app:\n    build: .", "yaml"))
    assert not parsed.ok
    assert "docker-compose.yml" in parsed.problem


@pytest.mark.parametrize("answer, reason", [
    ("", "empty"),
    ("   \n ", "empty"),
    (None, "empty"),
    ("I would write a Flask app with a /validate endpoint and a Dockerfile based on python:3.11.", "no fenced"),
    ("<think>Let me think about the files.</think>Sorry, I cannot help with that.", "no fenced"),
    ("File: notes.md\n```markdown\njust notes\n```", "not one of the service's files"),
    ("```\n\n```", "empty"),
])
def test_prose_only_and_useless_answers_are_a_reason_never_a_crash(answer, reason):
    parsed = parse_files(answer)
    assert not parsed.ok and parsed.files == {}
    assert parsed.problem and (reason in parsed.problem or any(reason in i for i in parsed.ignored))


def test_a_runaway_answer_is_refused_quickly():
    parsed = parse_files("```\n" + "x" * 2_100_000)
    assert not parsed.ok and "characters long" in parsed.problem


def test_thinking_is_not_taken_for_files():
    answer = "<think>\nFile: Dockerfile\n```\nFROM bad\n```\n</think>\nFile: Dockerfile\n" + fence(DOCKER)
    assert parse_files(answer).files == {DOCKERFILE: DOCKER + "\n"}


def test_a_shell_block_after_a_line_naming_a_file_is_not_that_file():
    answer = "Install with `pip install -r requirements.txt`:\n" + fence("pip install -r requirements.txt", "bash")
    parsed = parse_files(answer + "\n\nFile: requirements.txt\n" + fence("flask==3.0.3"))
    assert parsed.files == {REQUIREMENTS: "flask==3.0.3\n"}
    assert any("commands" in i for i in parsed.ignored)


def test_prose_naming_another_file_yields_to_the_content():
    answer = "The Dockerfile will copy this file:\n" + fence(YAML, "yaml")
    parsed = parse_files(answer)
    assert parsed.files == {MANIFEST: YAML + "\n"}


@pytest.mark.parametrize("unit", ["```markdown\n", "```json\n", "```\n", "~~~\n```\n", "File: x.py\n", "`" * 3 + "a\n"])
def test_hostile_repetitions_end_without_a_crash(unit):
    import time

    started = time.monotonic()
    parsed = parse_files(unit * (1_000_000 // len(unit)))
    assert parsed.problem is not None or parsed.files is not None
    assert time.monotonic() - started < 30  # linear: about a second on an idle machine


def test_abbreviations_in_prose_are_not_file_names():
    parsed = parse_files("The manifest (e.g. for minikube, v1.2):\n" + fence(YAML, "yaml"))
    assert parsed.files == {MANIFEST: YAML + "\n"}
