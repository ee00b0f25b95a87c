"""Acceptance test files: what untrusted tests may do, conversion of test cases to Tavern, running Tavern itself
against a real server on loopback, and `--tests` errors as one sentence with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from loopback import json_server

from kubevibe.acceptance.execute import run_tavern
from kubevibe.acceptance.tavern_file import TavernFileError, cases_to_tavern, check_untrusted, load_tests
from kubevibe.intent import TestCase

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
STAGE = "stages:\n  - name: s\n    request:\n      url: '{base_url}/x'\n      method: GET\n    response:\n"


def untrusted(text: str) -> None:
    check_untrusted(load_tests(text, trusted=False))


@pytest.mark.parametrize("text, reason", [
    ("test_name: t\n" + STAGE + "      status_code: 200\n      verify_response_with:\n        function: os:system\n",
     "verify_response_with"),
    ("test_name: t\n" + STAGE + "      json:\n        $ext:\n          function: os:getcwd\n", r"\$ext"),
    ("test_name: t\nstages:\n  - request: {url: !include /etc/passwd}\n    response: {}\n", "!include"),
    ("test_name: t\n" + STAGE.replace("'{base_url}/x'", "'http://10.0.0.1/x'") + "      status_code: 200\n",
     "base_url"),
    ("test_name: t\n" + STAGE.replace("/x'", "/{tavern.env_vars.HOME}'") + "      status_code: 200\n",
     "environment"),
    ("test_name: t\n" + STAGE.replace("method: GET", "method: POST\n      files: {f: /etc/passwd}") +
     "      status_code: 200\n", "files"),
    ("test_name: t\nincludes:\n  - !include common.yaml\n" + STAGE + "      status_code: 200\n", "!include"),
    ("test_name: a\n" + STAGE + "      status_code: 200\n---\ntest_name: a\n" + STAGE + "      status_code: 200\n",
     "two tests"),
], ids=["verify_response_with", "ext", "include-tag", "other-host", "env-vars", "files", "include-file",
        "duplicate-names"])
def test_tests_not_from_the_users_file_may_not_run_host_code(text, reason):
    with pytest.raises(TavernFileError, match=reason):
        untrusted(text)


def test_the_users_own_file_may_use_everything_tavern_offers():
    text = "test_name: t\n" + STAGE + "      status_code: 200\n      verify_response_with:\n        function: m:f\n"
    assert len(load_tests(text, trusted=True)) == 1


def test_value_matchers_are_allowed_in_untrusted_tests():
    untrusted("test_name: t\n" + STAGE + "      status_code: 200\n      json:\n        id: !anyint\n"
              "        name: !re_match '^a'\n      save:\n        json:\n          id: id\n")


def test_test_cases_become_tavern_with_braces_doubled_and_subset_json():
    cases = [TestCase(name="braces", method="POST", path="/items/{id}", body={"text": "{not a variable}"},
                      expected_status=201, expected_json={"text": "{x}"})]
    text = cases_to_tavern(cases, "header")
    (doc,) = load_tests(text, trusted=False)
    stage = doc["stages"][0]
    assert stage["request"]["url"] == "{base_url}/items/1"
    assert stage["request"]["json"] == {"text": "{{not a variable}}"}
    assert doc["strict"] == ["json:off"]  # extra keys in the answer are allowed, as Connect judges
    untrusted(text)


def test_tavern_runs_against_a_real_server_and_reports_expected_and_actual(tmp_path):
    def answer(method, path, body):
        return (200, {"valid": path == "/good", "extra": 1})

    tests = tmp_path / "t.tavern.yaml"
    tests.write_text(cases_to_tavern([
        TestCase(name="good", path="/good", expected_json={"valid": True}),
        TestCase(name="bad", path="/bad", expected_json={"valid": True}),
    ]))
    with json_server(answer) as (url, seen):
        result = run_tavern(tests, url, tmp_path / "work", timeout=120)
    assert [(o.name, o.passed) for o in result.outcomes] == [("good", True), ("bad", False)]
    bad = result.outcomes[1]
    assert bad.exchanges[-1]["status"] == 200 and '"valid": false' in bad.exchanges[-1]["body"]
    assert "valid" in bad.message
    assert [path for _, path, _, _ in seen] == ["/good", "/bad"]


@pytest.mark.parametrize("name, content, words", [
    ("missing.tavern.yaml", None, "Cannot read"),
    ("tests.yaml", "test_name: t\n", "must be a Tavern file"),
    ("empty.tavern.yaml", "", "no tests"),
    ("broken.tavern.yaml", "test_name: [\n", "not valid YAML"),
])
def test_a_bad_tests_file_is_one_sentence_and_exit_code_2(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    done = subprocess.run([*KUBEVIBE, "run", "Develop an echo service", "--llm", "embedded", "--tests", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "runs").glob("*/*"))  # nothing ran, nothing is left
