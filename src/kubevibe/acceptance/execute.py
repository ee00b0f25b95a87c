"""Run a Tavern file with Tavern itself, in a subprocess, and read back one result per test.

A subprocess (`python -m pytest FILE --tavern-global-cfg=CFG`), so pytest's and Tavern's global state never leak
into the run process and a hanging test is bounded by a timeout. Per test: passed or not, Tavern's own message,
and the exchanges our recorder plugin saw (the actual responses).
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

import kubevibe
from kubevibe import exec as kexec


class TestOutcome(BaseModel):
    __test__ = False  # not a pytest class

    name: str
    file: str = ""  # the test file's name (when several files ran at once)
    passed: bool
    skipped: bool = False
    message: str = ""  # Tavern's failure text (what mismatched), trimmed
    exchanges: list[dict[str, Any]] = Field(default_factory=list)  # what was sent and what came back


class TavernRun(BaseModel):
    command: str
    exit_code: int | None
    outcomes: list[TestOutcome]
    output: str  # pytest's output (tail), for evidence when no test result could be read
    timed_out: bool = False

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.passed)


MESSAGE_LIMIT = 3000


def tavern_command(test_file: Path, global_cfg: Path, junit: Path) -> list[str]:
    # `=` with --tavern-global-cfg: the option takes several values and would swallow the file otherwise.
    # --noconftest and our own ini: nothing from the directories around the run directory takes part.
    return [sys.executable, "-m", "pytest", str(test_file), f"--tavern-global-cfg={global_cfg}",
            f"--junitxml={junit}", "--noconftest", "-p", "no:cacheprovider", "-p", "kubevibe.acceptance.recorder",
            "-c", str(global_cfg.with_name("pytest.ini")), "--rootdir", str(global_cfg.parent), "-q", "-rN",
            "--tb=short", "-o", "junit_family=xunit2"]


def run_tavern(test_file: Path, base_url: str, work_dir: Path, timeout: float) -> TavernRun:
    """Run every test of `test_file` against base_url; files of this execution go to work_dir."""
    return run_tavern_dir(test_file, base_url, work_dir, timeout)


def run_tavern_dir(tests: Path, base_url: str, work_dir: Path, timeout: float) -> TavernRun:
    """Run a Tavern file, or every *.tavern.yaml of a folder, against base_url."""
    work_dir.mkdir(parents=True, exist_ok=True)
    global_cfg = work_dir / "tavern-global.yaml"
    global_cfg.write_text(yaml.safe_dump({"name": "kubevibe", "variables": {"base_url": base_url}}),
                          encoding="utf-8")
    (work_dir / "pytest.ini").write_text("[pytest]\naddopts =\n", encoding="utf-8")
    junit, record = work_dir / "junit.xml", work_dir / "exchanges.jsonl"
    for stale in (junit, record):
        stale.unlink(missing_ok=True)
    # exec.run layers these over the environment; Tavern itself loads as an installed pytest plugin.
    # The recorder plugin is imported from this very kubevibe (whatever the working directory or a relative path).
    package_root = str(Path(kubevibe.__file__).resolve().parent.parent)
    python_path = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {"KUBEVIBE_ACCEPT_RECORD": str(record), "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_ADDOPTS": "",
           "PYTHONPATH": python_path}
    argv = tavern_command(tests, global_cfg, junit)
    result = kexec.run(argv, timeout=timeout, cwd=work_dir, env=env, log_file=work_dir / "commands.log")
    exchanges = _read_exchanges(record)
    outcomes = parse_junit(junit, exchanges) if junit.is_file() else []
    output = (result.stdout + "\n" + result.stderr).strip()
    return TavernRun(command=result.command, exit_code=result.returncode, outcomes=outcomes,
                     output=output[-MESSAGE_LIMIT:], timed_out=bool(result.timed_out))


def parse_junit(junit: Path, exchanges: list[dict[str, Any]] | None = None) -> list[TestOutcome]:
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError:
        return []
    outcomes = []
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped") is not None
        message = ""
        if failure is not None:
            message = ((failure.get("message") or "") + "\n" + (failure.text or "")).strip()
            if len(message) > MESSAGE_LIMIT:
                message = message[:MESSAGE_LIMIT // 3] + "\n...\n" + message[-2 * MESSAGE_LIMIT // 3:]
        mine = [e for e in exchanges or [] if e.get("test") == name]
        outcomes.append(TestOutcome(name=name, file=(case.get("classname") or "").rpartition("/")[2],
                                    passed=failure is None and not skipped, skipped=skipped,
                                    message=message, exchanges=mine))
    return outcomes


def _read_exchanges(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
