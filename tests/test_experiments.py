"""The experiment harness's pure parts and its database: plan validation, matrix expansion, metrics with
hand-computed numbers, SQLite migrations and ingestion of real run directories."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from exp_helpers import synthetic_run

from kubevibe.errors import UsageError
from kubevibe.experiments import metrics
from kubevibe.experiments.matrix import cell_key, expand, matrix_size
from kubevibe.experiments.plan import load_plan, plan_from_flags, validate_plan
from kubevibe.experiments.store import MIGRATIONS, SCHEMA_VERSION, Store, open_results
from kubevibe.llm.replay import write_replay_log

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]


def plan_data(**changes):
    data = {"name": "t", "models": [{"llm": "openai://127.0.0.1:8000/v1", "model": "m1", "label": "one"},
                                    {"llm": "ollama://127.0.0.1:11434", "model": "m2"}],
            "intent_methods": ["none", "json-with-required"], "strategies": ["auto", "scaffold"],
            "prompts": ["a service", "another service", "a third"], "repetitions": 2,
            "settings": {"max_steps": 12, "seed": 100}}
    data.update(changes)
    return data


def validate(data, tmp_path=Path(".")):
    return validate_plan(data, base_dir=tmp_path, source="Plan p.yaml")


# -- plan -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes,needle", [
    ({"name": None}, "name"),
    ({"models": []}, "models"),
    ({"models": [{"model": "x"}]}, "the field 'models[0].llm' is required"),
    ({"models": [{"llm": "auto"}]}, "models[0].llm: 'auto' chooses a backend"),
    ({"models": [{"llm": "ftp://x"}]}, "models[0].llm: unknown LLM spec"),
    ({"intent_methods": ["telepathy"]}, "intent_methods[0]"),
    ({"strategies": ["auto", "auto"]}, "strategies lists 'auto' twice"),
    ({"repetitions": 0}, "repetitions"),
    ({"prompts": []}, "at least one prompt"),
    ({"prompts": ["x", "  "]}, "prompt 1 is empty"),
    ({"settings": {"max_steps": 0}}, "settings.max_steps"),
    ({"settings": {"strategy": "full"}}, "settings.strategy is set by the experiment matrix"),
    ({"settings": {"colour": "red"}}, "settings.colour is not a run setting"),
    ({"models": [{"llm": "embedded"}, {"llm": "embedded"}]}, "two models are labelled 'embedded'"),
    ({"models": [{"llm": "embedded", "settings": {"temperature": 9}}]}, "models[0].settings.temperature"),
    ({"surprise": 1}, "surprise"),
])
def test_plan_errors_are_one_sentence_naming_the_field(changes, needle):
    data = {k: v for k, v in plan_data(**changes).items() if v is not None}
    with pytest.raises(UsageError) as info:
        validate(data)
    message = info.value.message
    assert needle in message, message
    assert message.startswith("Plan p.yaml") and message.endswith(".") and "\n" not in message


def test_plan_file_prompts_file_and_relative_replay_paths(tmp_path):
    (tmp_path / "prompts.txt").write_text("# requests\nDevelop an echo service\n\nDevelop a todo service\n")
    write_replay_log(tmp_path / "answers.jsonl", [("generate", "x")])
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "name": "files", "models": [{"llm": "replay:answers.jsonl", "label": "rp"}],
        "prompts": ["Develop a kv store"], "prompts_file": "prompts.txt"}))
    plan = load_plan(tmp_path / "plan.yaml")
    assert plan.prompts == ["Develop a kv store", "Develop an echo service", "Develop a todo service"]
    assert plan.models[0].llm == f"replay:{tmp_path / 'answers.jsonl'}"
    assert plan.prompts_file is None and plan.intent_methods == ["none"] and plan.strategies == ["auto"]
    # The normalized form validates to the same plan (it is what the experiment directory keeps).
    assert validate(yaml.safe_load(plan.to_yaml())).identity() == plan.identity()
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_plan(tmp_path / "bad.yaml")
    with pytest.raises(UsageError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")


def test_plan_from_flags():
    plan = plan_from_flags(name="f", llm="embedded", models=["a", "b"], intent_methods=[], strategies=["full"],
                           prompts=["p"], prompts_file=None, repetitions=3, settings={"timeout": 60, "seed": None})
    assert [m.name for m in plan.models] == ["a", "b"] and plan.settings == {"timeout": 60}
    with pytest.raises(UsageError, match="--llm"):
        plan_from_flags(name=None, llm=None, models=[], intent_methods=[], strategies=[], prompts=["p"],
                        prompts_file=None, repetitions=None, settings={})


# -- matrix ---------------------------------------------------------------------------------------------------
def test_matrix_counts_and_stable_keys():
    plan = validate(plan_data())
    cells = expand(plan)
    assert len(cells) == matrix_size(plan) == 2 * 2 * 2 * 3 * 2 == 48
    assert len({c.key for c in cells}) == 48
    first = cells[0]
    assert (first.model_label, first.intent_method, first.strategy, first.prompt_index, first.repetition) == (
        "one", "none", "auto", 0, 0)
    assert first.key == cell_key("one", "none", "auto", "a service", 0)
    assert first.settings == {"max_steps": 12, "seed": 100}
    assert {c.seed for c in cells if c.repetition == 1} == {101}
    # Keys do not depend on the order of the plan's lists nor on the other cells.
    shuffled = validate(plan_data(prompts=["a third", "a service"], intent_methods=["json-with-required", "none"],
                                  repetitions=5))
    keys = {(c.model_label, c.intent_method, c.strategy, c.prompt, c.repetition): c.key for c in expand(shuffled)}
    for c in cells:
        if c.prompt in ("a third", "a service"):
            assert keys[(c.model_label, c.intent_method, c.strategy, c.prompt, c.repetition)] == c.key
    # Repetition-major order: the first cells cover every combination once before any repeats.
    assert [c.repetition for c in cells[:24]] == [0] * 24


# -- metrics --------------------------------------------------------------------------------------------------
def test_wilson_interval_hand_computed():
    low, high = metrics.wilson(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)
    low, high = metrics.wilson(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    low, high = metrics.wilson(10, 10)
    assert round(low, 4) == 0.7225 and high == 1.0
    assert metrics.wilson(0, 0) is None
    with pytest.raises(ValueError):
        metrics.wilson(3, 2)


def test_newcombe_difference_hand_computed():
    # Newcombe (1998), example (e): 56/70 vs 48/80 -> difference 0.2 with 95% CI (0.0524, 0.3339).
    d, low, high = metrics.newcombe_difference(48, 80, 56, 70)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def ex(step, stage, result, duration=1.0, run_id="r"):
    return {"run_id": run_id, "step": step, "stage": stage, "result": result, "duration_s": duration}


FIX_LOOP = [ex(1, "INTENT", "ok"), ex(2, "GENERATE", "ok"), ex(3, "BUILD", "failed"), ex(4, "FIX", "resume-build"),
            ex(5, "BUILD", "ok"), ex(6, "VALIDATE", "failed"), ex(7, "FIX", "failed"),
            ex(8, "FIX", "resume-validate"), ex(9, "VALIDATE", "failed"), ex(10, "FIX", "resume-build"),
            ex(11, "BUILD", "ok"), ex(12, "VALIDATE", "ok"), ex(13, "DEPLOY", "ok"), ex(14, "CONNECT", "ok"),
            ex(15, "CHART", "ok")]


def test_repair_episodes_and_run_metrics():
    episodes = metrics.repair_episodes(FIX_LOOP)
    # step 4 repaired BUILD (passed at 5); step 8 repaired VALIDATE (failed again at 9); step 10 repaired
    # VALIDATE (the next VALIDATE, step 12, passed). The failed fix at step 7 repaired nothing.
    assert [(e["fix_step"], e["stage"], e["next_step"], e["refailed"]) for e in episodes] == [
        (4, "BUILD", 5, False), (8, "VALIDATE", 9, True), (10, "VALIDATE", 12, False)]
    m = metrics.run_metrics("success", FIX_LOOP, ["a", "b", "c", "b"])
    assert m == {"depth": 15, "fix_iterations": 4, "first_attempt_success": 0, "failed_executions": 4,
                 "repaired": 3, "refailed": 1, "revisions": 4, "oscillations": 1}
    # (revision 3 has the files of revision 1, which is not adjacent to it: an oscillation b -> c -> b)


def test_oscillation_is_a_return_to_a_non_adjacent_revision():
    assert metrics.oscillations(["a", "b", "a"]) == [(2, 0)]
    assert metrics.oscillations(["a", "a", "b"]) == []  # adjacent equal: no change, not a return
    assert metrics.oscillations(["a", "b", "a", "b", "c"]) == [(2, 0), (3, 1)]
    assert metrics.oscillations([]) == []


def run_row(run_id, status, fixes=0, depth=None, first=0, repaired=0, refailed=0, osc=0, elapsed=10.0,
            model="m", method="none"):
    return {"run_id": run_id, "status": status, "fix_iterations": fixes, "depth": depth,
            "first_attempt_success": first, "repaired": repaired, "refailed": refailed, "oscillations": osc,
            "elapsed_s": elapsed, "steps": depth or 9, "model_label": model, "intent_method": method,
            "strategy": "auto"}


def test_group_summary_hand_computed():
    runs = [run_row("a", "success", 0, 7, first=1, elapsed=20), run_row("b", "success", 2, 11, repaired=2, elapsed=40),
            run_row("c", "success", 1, 9, repaired=1, refailed=0, elapsed=30),
            run_row("d", "fail", 3, repaired=3, refailed=3, osc=2, elapsed=50),
            run_row("e", "error"), run_row("f", "interrupted")]
    executions = [ex(3, "BUILD", "failed", 4.0, "b"), ex(4, "FIX", "resume-build", 2.0, "b"),
                  ex(3, "BUILD", "failed", 6.0, "d"), ex(5, "BUILD", "ok", 8.0, "a"),
                  ex(1, "INTENT", "ok", 1.0, "e")]  # e is an error run: not counted
    calls = [{"run_id": "a", "prompt_tokens": 100, "completion_tokens": 40, "duration_s": 2.0},
             {"run_id": "d", "prompt_tokens": 300, "completion_tokens": 60, "duration_s": 6.0},
             {"run_id": "e", "prompt_tokens": 999, "completion_tokens": 999, "duration_s": 99.0}]
    s = metrics.summarize(runs, executions, calls)
    assert (s["runs"], s["n"], s["success"], s["fail"], s["error"], s["unfinished"]) == (6, 4, 3, 1, 1, 1)
    assert s["success_rate"] == 0.75
    assert tuple(round(x, 4) for x in s["success_ci"]) == (0.3006, 0.9544)
    assert s["first_attempt_rate"] == 0.25
    assert s["pass_itr"] == [(0, 0.25), (1, 0.5), (2, 0.75), (3, 0.75)]
    assert s["depth_mean"] == 9 and s["depth_median"] == 9
    assert s["fix_mean"] == 1.5 and s["fix_mean_success"] == 1.0
    assert (s["repaired"], s["refailed"], s["refail_rate"], s["stability"]) == (6, 3, 0.5, 0.5)
    assert (s["oscillating_runs"], s["oscillations"]) == (1, 2)
    assert s["stage_failures"]["BUILD"] == 2 and s["stage_executions"]["BUILD"] == 3
    assert s["stage_executions"]["INTENT"] == 0  # the error run's execution is left out
    assert s["stage_time_mean"]["BUILD"] == (4.0 + 6.0 + 8.0) / 4
    assert s["elapsed_mean"] == 35.0
    assert s["llm_calls_mean"] == 0.5 and s["prompt_tokens_mean"] == 100.0 and s["completion_tokens_mean"] == 25.0
    assert s["llm_s_mean"] == 2.0
    empty = metrics.summarize([run_row("x", "error")])
    assert empty["n"] == 0 and empty["success_rate"] is None and empty["success_ci"] is None


# -- store ----------------------------------------------------------------------------------------------------
def test_migrations_run_once_and_in_order(tmp_path):
    db = tmp_path / "e.sqlite"
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
    store.close()
    # An old database (only migration 1) gets the rest on open; a current one gets nothing.
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
    con.executescript(MIGRATIONS[0][2])
    con.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', 'then')")
    con.commit()
    con.close()
    store = Store(old)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == []
    names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "runs_group" in names
    store.close()
    con = sqlite3.connect(old)
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'later')")
    con.commit()
    con.close()
    with pytest.raises(UsageError, match="newer KubeVibe"):
        Store(old)


def test_ingest_real_cli_runs_and_synthetic_runs(tmp_path):
    # Real runs of the real CLI that fail at Generate (no container engine needed).
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")] * 3)
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL", "N", "TIMEOUT", "INTENT_METHOD")}
    for prompt in ("Develop an echo service", "Develop a todo service"):
        done = subprocess.run([*KUBEVIBE, "run", prompt, "--llm", f"replay:{answers}", "-n", "3", "--json",
                               "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)
        assert done.returncode == 1, done.stderr
    for scenario in ("first-attempt", "fix-loop", "oscillation"):
        synthetic_run(tmp_path / "runs", scenario)

    store = Store(tmp_path / "x.sqlite", base_dir=tmp_path)
    assert store.ingest_directory(tmp_path / "runs") == 5
    runs = {r["run_id"]: r for r in store.runs()}
    cli_runs = [r for r in runs.values() if r["llm_backend"] == "replay"]
    assert len(cli_runs) == 2
    for r in cli_runs:
        assert (r["status"], r["final_state"], r["steps"], r["fix_iterations"], r["revisions"]) == ("fail", "FAIL", 3, 0, 0)
        assert r["llm_calls"] == 2 and r["run_dir"].startswith("runs/replay/")
        assert r["reason"] == "the limit of 3 stage executions (N) was reached"
    execs = store.table("stage_executions")
    cli_execs = [e for e in execs if e["run_id"] == cli_runs[0]["run_id"]]
    assert [(e["stage"], e["result"]) for e in cli_execs] == [("INTENT", "ok"), ("GENERATE", "failed"),
                                                              ("GENERATE", "failed")]
    assert all(e["evidence_count"] is not None for e in cli_execs)

    by_prompt_scn = {r["run_id"]: r for r in runs.values() if r["llm_backend"] == "scripted"}
    rows = sorted(by_prompt_scn.values(), key=lambda r: r["steps"])
    first, osc, loop = rows  # 8, 10 and 12 steps
    assert (first["status"], first["depth"], first["first_attempt_success"], first["fix_iterations"]) == ("success", 8, 1, 0)
    assert (loop["status"], loop["depth"], loop["fix_iterations"], loop["repaired"], loop["refailed"],
            loop["revisions"], loop["oscillations"]) == ("success", 12, 2, 2, 0, 3, 0)
    assert (osc["status"], osc["depth"], osc["fix_iterations"], osc["repaired"], osc["refailed"], osc["revisions"],
            osc["oscillations"]) == ("fail", None, 3, 3, 3, 4, 2)
    assert loop["prompt_tokens"] == 800 + 2 * 1200 and loop["completion_tokens"] == 400 + 2 * 300
    assert loop["llm_s"] == 2.5 + 2 * 1.5
    revs = [r for r in store.table("revisions") if r["run_id"] == osc["run_id"]]
    assert [r["hash"] for r in revs][0] == revs[2]["hash"] and revs[1]["hash"] == revs[3]["hash"]
    assert [r["step"] for r in revs] == [2, 4, 6, 8]
    # Loose runs get prompt indexes and repetition numbers.
    assert {r["prompt_index"] for r in runs.values()} == {0, 1}
    # Ingesting again replaces, never duplicates.
    store.ingest_directory(tmp_path / "runs")
    assert len(store.table("stage_executions")) == len(execs)

    out = store.export_csv(tmp_path / "csv")
    assert [p.name for p in out] == ["runs.csv", "stage_executions.csv", "llm_calls.csv", "revisions.csv"]
    with (tmp_path / "csv" / "runs.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 5 and {"cell_key", "status", "depth", "oscillations", "prompt_tokens"} <= set(table[0])
    with (tmp_path / "csv" / "llm_calls.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(store.table("llm_calls")) == 4 + 1 + 3 + 4
    store.close()
    # A directory of runs opens as results directly (in memory).
    with open_results(tmp_path / "runs") as results:
        assert len(results.runs()) == 5
    # The CLI's CSV export.
    done = subprocess.run([*KUBEVIBE, "report", str(tmp_path / "runs"), "--csv", str(tmp_path / "csv2")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.dumps(sorted(p.name for p in (tmp_path / "csv2").iterdir())) == json.dumps(
        ["llm_calls.csv", "revisions.csv", "runs.csv", "stage_executions.csv"])
