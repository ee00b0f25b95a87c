"""Objectives under load through the real `kubevibe run` on the real local engine, with replayed answers.

Real podman pods, a real Locust load (in its own process) on the loopback port published for the run, podman
stats for the resource use, helm for the chart. Only the model's answers are scripted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from engine_helpers import require_engine
from helpers import KNOWN_GOOD_CODE
from test_e2e_local import SPEC, Runs, fix_answer, generated, path_of

TESTS = Path(__file__).parent / "fixtures" / "credit-card.tavern.yaml"  # the user's acceptance tests

pytestmark = pytest.mark.engine

# The issue's own example: a handler that sleeps 300 ms must miss a p95 of 100 ms at 10 rps.
SLOW_CODE = KNOWN_GOOD_CODE.replace("def validate():\n", "def validate():\n    import time\n    time.sleep(0.3)\n")
# Dies for good (restartPolicy Never in the played copy) after a few requests.
CRASHING_CODE = KNOWN_GOOD_CODE.replace(
    "def validate():\n",
    "def validate():\n    import os\n    validate.calls = getattr(validate, 'calls', 0) + 1\n"
    "    if validate.calls > 8:\n        os._exit(3)\n",
)
SLO_TEXT = """\
load: {rps: 10, duration_s: 5}
latency_ms: {p95: 100, p99: 250}
error_rate_max: 0.01
memory_mib_max: 256
"""


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


@pytest.fixture
def runs(tmp_path):
    made = Runs(tmp_path)
    yield made
    made.cleanup()


def slo_file(tmp_path: Path, text: str = SLO_TEXT) -> str:
    path = tmp_path / "slo.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_slow_handler_misses_p95_fix_gets_the_figures_and_the_repaired_service_meets_the_objectives(runs, tmp_path):
    answers = [("intent", json.dumps(SPEC)), ("generate", generated(pythonfilecontent=SLOW_CODE)),
               ("fix", fix_answer("myapp.py", KNOWN_GOOD_CODE))]
    code, summary, run = runs.run(answers, "--slo", slo_file(tmp_path), "--tests", str(TESTS))
    steps = path_of(summary)
    assert ("ACCEPT", "LOAD", "ok") in steps
    missed = next(t for t in summary["transitions"] if t["from"] == "LOAD")
    assert missed["result"] == "failed" and missed["to"] == "FIX"
    measured_p95 = float(re.search(r"p95 latency (\d+) ms > 100 ms", missed["reason"]).group(1))
    assert measured_p95 >= 300  # every /validate sleeps 300 ms

    fix_call = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()][-1]
    assert fix_call["purpose"] == "fix"
    fix_prompt = fix_call["request"]["prompt"]
    assert f"p95 latency {measured_p95:.0f} ms > 100 ms" in fix_prompt  # the measured figure reached the model
    assert "errors by status" in fix_prompt and "peak memory" in fix_prompt
    assert "Werkzeug development server" in fix_prompt  # what served it
    assert "p95 <= 100 ms" in fix_prompt  # the objectives themselves

    assert code == 0, summary
    assert steps[-2:] == [("LOAD", "CHART", "ok"), ("CHART", "SUCCESS", "ok")]
    record = json.loads((run / "run.json").read_text())
    slo = record["verdict"]["slo"]
    assert slo["met"] is True and slo["offered_rps"] == 10
    assert slo["p95_ms"] <= 100 and slo["error_rate"] == 0
    assert slo["achieved_rps"] >= 8 and slo["peak_memory_mib"] > 1
    assert record["slo"]["source"] == "file"

    # the chart's resources come from this measurement, not from the manifest's guess (100m/128Mi)
    load = record["load"]
    values = yaml.safe_load(next((run / "chart").glob("*/values.yaml")).read_text())
    requested = values["resources"]["requests"]
    assert requested["memory"] == f"{max(16, -int(-load['peak_memory_mib'] // 1))}Mi"
    assert values["resources"]["limits"]["memory"] == f"{2 * int(requested['memory'][:-2])}Mi"
    readme = next((run / "chart").glob("*/README.md")).read_text()
    assert "sized from measurement" in readme and "10 rps for 5 s" in readme


def test_a_service_that_crashes_under_load_is_reported_with_its_error_rate(runs, tmp_path):
    answers = [("intent", json.dumps(SPEC)), ("generate", generated(pythonfilecontent=CRASHING_CODE))]
    code, summary, run = runs.run(answers, "--slo", slo_file(tmp_path), "--max-fixes", "0")
    assert code == 1 and summary["outcome"] == "fail"
    load = next(t for t in summary["transitions"] if t["from"] == "LOAD")
    assert load["result"] == "failed"
    assert "stopped during the load" in load["reason"]
    error_rate = float(re.search(r"error rate ([\d.]+)% > 1.0%", load["reason"]).group(1)) / 100
    record = json.loads((run / "run.json").read_text())
    assert record["load"]["error_rate"] == pytest.approx(error_rate, abs=0.001)
    assert error_rate > 0.5  # ~50 requests, 8 answered
    assert record["load"]["errors_by_status"].get("connection", 0) + record["load"]["errors_by_status"].get(
        "timeout", 0) > 0
    assert record["verdict"]["slo"]["met"] is False
    evidence = json.loads(next(run.glob("steps/*-load/result.json")).read_text())["evidence"]
    assert any("exited" in e["detail"] for e in evidence if e["kind"] == "load")


def test_without_objectives_load_measures_briefly_and_sizes_the_chart(runs):
    code, summary, run = runs.run([("intent", json.dumps(SPEC)), ("generate", generated())], "--tests", str(TESTS))
    assert code == 0, summary
    load = next(t for t in summary["transitions"] if t["from"] == "LOAD")
    assert load["result"] == "ok" and "no objectives stated" in load["reason"]
    record = json.loads((run / "run.json").read_text())
    assert record["verdict"]["slo"] is None
    assert record["load"]["sent"] > 0 and record["load"]["base_url"].startswith("http://127.0.0.1:")
    values = (next((run / "chart").glob("*/values.yaml"))).read_text()
    assert "Resources sized from measurement" in values
