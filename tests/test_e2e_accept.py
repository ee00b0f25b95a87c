"""Acceptance tests through the real `kubevibe run`: Tavern against the live deployment, Fix sees the failing test,
the verdict and the exit codes. Real podman, registry, helm and Tavern; the model is a replay log (scripted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import NOTHING, leftovers, podman, require_engine
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS

from kubevibe.llm.replay import write_replay_log

pytestmark = pytest.mark.engine

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
PROMPT = "Develop a credit card validation microservice: POST /validate {card_number} answers {card_number, valid}"
TESTS = Path(__file__).parent / "fixtures" / "credit-card.tavern.yaml"
# Subtly wrong: a doubled 5..9 keeps its 10 (off by one), so the Luhn sum is wrong for most numbers.
SUBTLY_WRONG = KNOWN_GOOD_CODE.replace("if digit > 9:", "if digit > 10:")
assert SUBTLY_WRONG != KNOWN_GOOD_CODE
ALWAYS_WRONG = KNOWN_GOOD_CODE.replace("return total % 10 == 0", "return True")


def generated(code: str = KNOWN_GOOD_CODE) -> str:
    return json.dumps({"pythonfilecontent": code, "containerfilecontent": KNOWN_GOOD_DOCKERFILE,
                       "yamlfilecontent": KNOWN_GOOD_MANIFEST, "requirements": KNOWN_GOOD_REQUIREMENTS})


def fix_code(code: str) -> str:
    return json.dumps({"explanation": "repaired", "changes": [{"file": "myapp.py", "content": code}]})


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


class Runs:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

    def run(self, answers, *args: str) -> tuple[int, dict, Path, str]:
        log = write_replay_log(self.tmp_path / "answers.jsonl", answers)
        proc = subprocess.run([*KUBEVIBE, "run", PROMPT, "--llm", f"replay:{log}", *args], cwd=self.tmp_path,
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline"})
        assert "Traceback" not in proc.stderr, proc.stderr
        runs = list((self.tmp_path / "runs").glob("*/*"))
        run = runs[0] if runs else None
        summary = json.loads(proc.stdout) if "--json" in args else {}
        return proc.returncode, summary, run, proc.stdout + proc.stderr

    def cleanup(self) -> None:
        for run in (self.tmp_path / "runs").glob("*/*"):
            assert leftovers(run.name) == NOTHING, f"run {run.name} left resources behind"
            try:
                images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").split()
            except AssertionError:  # podman lists images while other runs on the machine remove theirs
                images = []
            for image in images:
                if run.name in image:
                    podman("rmi", "--force", image)


@pytest.fixture
def runs(tmp_path):
    made = Runs(tmp_path)
    yield made
    made.cleanup()


def states(summary):
    return [(t["from"], t["result"]) for t in summary["transitions"]]


def test_a_correct_service_passes_the_users_tests_and_the_run_keeps_the_exact_file(runs):
    code, summary, run, _ = runs.run([("generate", generated())], "--tests", str(TESTS), "--json")
    assert code == 0, summary
    assert summary["outcome"] == "success"
    assert ("ACCEPT", "ok") in states(summary)
    record = json.loads((run / "run.json").read_text())
    assert record["acceptance"] == {"source": "user", "file": "acceptance/acceptance.tavern.yaml", "tests": 3}
    assert (run / "acceptance" / "acceptance.tavern.yaml").read_bytes() == TESTS.read_bytes()
    assert record["verdict"] == {"built": True, "validated": True, "deployed": True, "reachable": True,
                                 "accepted": {"passed": 3, "total": 3, "source": "user"}, "charted": True, "slo": None}


def test_a_subtly_wrong_service_is_caught_fix_sees_the_failing_test_and_the_repair_passes(runs):
    code, summary, run, _ = runs.run([("generate", generated(SUBTLY_WRONG)), ("fix", fix_code(KNOWN_GOOD_CODE))],
                                     "--tests", str(TESTS), "--json")
    assert code == 0, summary
    assert states(summary)[5:9] == [("CONNECT", "ok"), ("ACCEPT", "failed"), ("FIX", "resume-build"),
                                    ("BUILD", "ok")]
    assert summary["outcome"] == "success" and states(summary)[-3:] == [("ACCEPT", "ok"), ("LOAD", "ok"), ("CHART", "ok")]
    fix_call = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()][-1]
    prompt = fix_call["request"]["prompt"]
    assert fix_call["purpose"] == "fix"
    assert "acceptance test 'one digit changed' failed" in prompt
    assert "4539578763621487" in prompt  # the request
    assert "expected: status 200" in prompt and '"valid": false' in prompt  # the expected response
    assert 'actual: status 200' in prompt and '"valid":true' in prompt  # the actual response
    assert (run / "acceptance" / "acceptance.tavern.yaml").read_bytes() == TESTS.read_bytes()  # never changed


def test_an_always_wrong_model_ends_in_fail_never_success(runs):
    code, summary, run, out = runs.run([("generate", generated(ALWAYS_WRONG)),
                                        ("fix", fix_code(ALWAYS_WRONG.replace("True", "1 == 1")))],
                                       "--tests", str(TESTS), "--max-fixes", "1")
    assert code == 1
    assert "SUCCESS" not in out.split("verified:")[0].splitlines()[-1]
    record = json.loads((run / "run.json").read_text())
    assert record["outcome"] == "fail"
    assert record["verdict"]["reachable"] and record["verdict"]["accepted"]["passed"] < 3


def test_only_the_intents_own_tests_end_unverified_with_exit_code_3(runs):
    spec = {"name": "credit-card", "description": "Luhn", "port": 80, "target_port": 5000,
            "endpoints": [{"method": "POST", "path": "/validate"}],
            "test_cases": [{"name": "valid", "method": "POST", "path": "/validate",
                            "body": {"card_number": "4539578763621486"}, "expected_status": 200,
                            "expected_json": {"valid": True}}]}
    code, summary, run, out = runs.run([("intent", json.dumps(spec)), ("generate", generated())],
                                       "--intent-method", "json-with-required")
    assert code == 3, out
    final = [line for line in out.splitlines() if line.startswith("UNVERIFIED")]
    assert final and "NOT verified" in final[0] and "same model" in final[0]
    assert "SUCCESS" not in out
    record = json.loads((run / "run.json").read_text())
    assert record["outcome"] == "unverified"
    assert record["acceptance"]["source"] == "intent"
    assert record["verdict"]["accepted"] == {"passed": 1, "total": 1, "source": "intent"}
    shown = subprocess.run([*KUBEVIBE, "show", str(run)], capture_output=True, text=True, timeout=60)
    assert "unverified" in shown.stdout and "not independent" in shown.stdout


def test_the_test_writers_tests_are_frozen_before_generate_and_count_as_independent(runs):
    written = {"tests": [
        {"name": "valid card", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621486"},
         "expected_status": 200, "expected_json": {"valid": True}},
        {"name": "invalid card", "method": "POST", "path": "/validate",
         "body": {"card_number": "4539578763621487"}, "expected_status": 200, "expected_json": {"valid": False}},
    ]}
    code, summary, run, _ = runs.run([("test-writer", json.dumps(written)), ("generate", generated())], "--json")
    assert code == 0, summary
    calls = [json.loads(line)["purpose"] for line in (run / "llm.jsonl").read_text().splitlines()]
    assert calls == ["test-writer", "generate"]  # the tests existed before any code
    record = json.loads((run / "run.json").read_text())
    assert record["acceptance"]["source"] == "test-writer"
    assert record["verdict"]["accepted"] == {"passed": 2, "total": 2, "source": "test-writer"}
    frozen = (run / "acceptance" / "acceptance.tavern.yaml").read_text()
    assert "test_name: valid card" in frozen and "{base_url}/validate" in frozen


@pytest.mark.embedded
def test_the_embedded_model_on_a_request_the_bank_does_not_cover_ends_unverified(runs, tmp_path):
    # TIMEOUT bounds the run: what is checked is how a run ends that did deploy, not how long a 270M model tries.
    proc = subprocess.run([*KUBEVIBE, "run", "Develop a microservice that converts Markdown text to HTML", "--llm",
                           "embedded", "--json", "--timeout", "240"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=400,
                          env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline"})
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    if summary["outcome"] == "fail":
        pytest.skip("the embedded model's handler did not even deploy this time (not what this test checks)")
    assert proc.returncode == 3, summary
    assert summary["outcome"] == "unverified"
    run = next((tmp_path / "runs").glob("*/*"))
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["test_writer"] is None
    assert [c["purpose"] for c in map(json.loads, (run / "llm.jsonl").read_text().splitlines())].count(
        "test-writer") == 0  # off for the embedded model
    assert record["verdict"]["reachable"] and (record["verdict"]["accepted"] or {}).get("source") in (None, "intent")
    assert "NOT verified" in record["reason"]
