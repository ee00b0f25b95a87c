"""Where a run's acceptance tests come from, and freezing them into the run directory.

In this order (contract 3): the user's file (`--tests`, source `user`) or a benchmark task's hidden tests
(`benchmark`), both frozen when the run starts; then, at the first ACCEPT, the bank reference's own test cases when
the scaffold adopted that reference's contract (`reference`); the test writer's tests, written before any code
existed (`test-writer`); the intent's declared test cases (`intent`, written by the generator's own model, so
not independent). The file that is run is always <run>/acceptance/acceptance.tavern.yaml, never changed after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubevibe.acceptance.tavern_file import TavernFileError, cases_to_tavern, check_untrusted, load_tests
from kubevibe.errors import UsageError
from kubevibe.intent import TestCase

ACCEPTANCE_DIR = "acceptance"
ACCEPTANCE_FILE = f"{ACCEPTANCE_DIR}/acceptance.tavern.yaml"
WRITER_FILE = f"{ACCEPTANCE_DIR}/test-writer.tavern.yaml"  # what the test writer produced (may be unused)


def record(source: str, tests: int, **_details: Any) -> dict[str, Any]:
    """RunState.acceptance / run.json `acceptance`: exactly source, file, tests (contract 3); where the tests came
    from in detail is in the frozen file's header comment and in run.json's intent and test_writer records."""
    return {"source": source, "file": ACCEPTANCE_FILE, "tests": tests}


def freeze_given_file(run_path: Path, tests_file: Path, source: str) -> dict[str, Any]:
    """Copy the --tests file (or a benchmark's tests) into the run, after checking it. UsageError if unusable."""
    if not tests_file.name.endswith(".tavern.yaml"):
        raise UsageError(f"The tests file {tests_file} must be a Tavern file whose name ends in .tavern.yaml.")
    try:
        text = tests_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot read the tests file {tests_file}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise UsageError(f"The tests file {tests_file} is not UTF-8 text.") from None
    try:
        docs = load_tests(text, trusted=source == "user")
        if source != "user":
            check_untrusted(docs)
    except TavernFileError as exc:
        raise UsageError(f"The tests file {tests_file} cannot be used: {exc}.") from None
    write_frozen(run_path, text)
    return record(source, len(docs), given=str(tests_file))


def write_frozen(run_path: Path, text: str, name: str = ACCEPTANCE_FILE) -> None:
    target = run_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def from_cases(run_path: Path, cases: list[TestCase], source: str, header: str, **extra: Any) -> dict[str, Any]:
    write_frozen(run_path, cases_to_tavern(cases, header))
    return record(source, len(cases), **extra)


def choose_at_accept(run_path: Path, intent: dict[str, Any] | None,
                     writer: dict[str, Any] | None) -> dict[str, Any] | None:
    """The acceptance record for a run that was given no tests, freezing its file; None: no tests at all."""
    from kubevibe.bank import get_reference

    intent = intent or {}
    spec_from = str(intent.get("spec_from") or "")
    if spec_from.startswith("reference:"):
        name = spec_from.partition(":")[2]
        try:
            reference = get_reference(name)
        except KeyError:
            reference = None
        if reference is not None and reference.spec.test_cases:
            return from_cases(run_path, reference.spec.test_cases, "reference",
                              f"test cases of the bank reference {name} (KubeVibe's own)", reference=name)
    if writer and writer.get("tests"):
        text = (run_path / WRITER_FILE).read_text(encoding="utf-8")
        write_frozen(run_path, text)
        return record("test-writer", int(writer["tests"]), model=writer.get("model"))
    cases = []
    for item in ((intent.get("spec") or {}).get("test_cases") or []):
        try:
            cases.append(TestCase.model_validate(item))
        except ValueError:
            continue
    if cases:
        return from_cases(run_path, cases, "intent", "the intent's own test cases (written by the generator's "
                          "model: not independent)")
    return None
