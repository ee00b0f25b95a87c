"""The prompting style as an experiment dimension: plan, matrix keys, store migration, grouping, the report table."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from exp_helpers import synthetic_run

from kubevibe.errors import UsageError
from kubevibe.experiments import metrics
from kubevibe.experiments.matrix import cell_key, expand, matrix_size
from kubevibe.experiments.plan import plan_from_flags, validate_plan
from kubevibe.experiments.report import overview_data, write_report
from kubevibe.experiments.store import MIGRATIONS, Store
from kubevibe.experiments.styles import style_comparison


def plan(**changes):
    data = {"name": "styles", "models": [{"llm": "openai://127.0.0.1:8000/v1", "model": "m1"}],
            "prompts": ["a service", "another"], "repetitions": 2, "styles": ["structured", "conversational"]}
    data.update(changes)
    return validate_plan(data, base_dir=Path("."), source="Plan p.yaml")


def test_styles_multiply_the_matrix_and_structured_keys_stay_as_they_were():
    p = plan()
    cells = expand(p)
    assert len(cells) == matrix_size(p) == 1 * 1 * 1 * 2 * 2 * 2 == 8
    assert {c.style for c in cells} == {"structured", "conversational"}
    structured = [c for c in cells if c.style == "structured"]
    # The same key as before styles existed, so old experiments find their finished cells.
    assert all(c.key == cell_key(c.model_label, c.intent_method, c.strategy, c.prompt, c.repetition)
               for c in structured)
    assert len({c.key for c in cells}) == 8
    assert all(c.row()["style"] == c.style for c in cells)
    assert "conversational" in next(c for c in cells if c.style == "conversational").describe()


@pytest.mark.parametrize("changes, needle", [
    ({"styles": ["chatty"]}, "styles[0]"),
    ({"styles": ["structured", "structured"]}, "styles lists 'structured' twice"),
    ({"styles": []}, "styles"),
    ({"settings": {"style": "conversational"}}, "settings.style is set by the experiment matrix"),
    ({"strategies": ["scaffold"]}, "scaffold strategy is structured prompting"),
])
def test_bad_styles_are_one_sentence(changes, needle):
    with pytest.raises(UsageError) as info:
        plan(**changes)
    assert needle in str(info.value)


def test_default_is_structured_and_flags_give_styles():
    assert validate_plan({"name": "x", "models": [{"llm": "embedded"}], "prompts": ["p"]}, base_dir=Path("."),
                         source="p").styles == ["structured"]
    flagged = plan_from_flags(name="f", llm="embedded", models=[], intent_methods=[], strategies=[],
                              prompts=["p"], prompts_file=None, repetitions=None, settings={},
                              styles=["conversational"])
    assert flagged.styles == ["conversational"]


def test_migration_3_gives_old_runs_the_structured_style(tmp_path):
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
    for version, name, sql in MIGRATIONS[:2]:
        con.executescript(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (version, name))
    con.execute("INSERT INTO runs (cell_key, model_label, status) VALUES ('k', 'm', 'success')")
    con.commit()
    con.close()
    store = Store(old)
    assert 3 in [v for v, *_ in store.db.execute("SELECT version FROM schema_migrations")]
    assert store.run_row("k")["style"] == "structured"
    store.close()


def test_runs_are_grouped_and_compared_by_style(tmp_path):
    runs_root = tmp_path / "runs"
    paths = {"structured": [synthetic_run(runs_root, s) for s in ("first-attempt", "first-attempt", "fix-loop", "oscillation")],
             "conversational": [synthetic_run(runs_root, s) for s in ("first-attempt", "oscillation", "oscillation", "oscillation")]}
    for style, dirs in paths.items():  # synthetic runs record their style as the CLI does
        for path in dirs:
            record = json.loads((path / "run.json").read_text())
            record["style"] = record["settings"]["style"] = style
            (path / "run.json").write_text(json.dumps(record))
    store = Store(":memory:", base_dir=tmp_path)
    store.ingest_directory(runs_root)
    runs = store.table("runs")
    assert sorted({r["style"] for r in runs}) == ["conversational", "structured"]
    overview = overview_data(runs, store.table("stage_executions"), store.table("llm_calls"))
    labels = [s["label"] for s in overview["summaries"]]
    assert labels == ["scripted-7b · none · auto · conversational", "scripted-7b · none · auto · structured"]
    (row,) = overview["style_rows"]
    s, c = row["structured"], row["conversational"]
    assert (s["success"], s["n"], c["success"], c["n"]) == (3, 4, 1, 4)
    assert s["success_ci"] == metrics.wilson(3, 4) and c["success_ci"] == metrics.wilson(1, 4)
    diff, low, high = row["success_diff"]
    assert diff == pytest.approx(-0.5) and low < diff < high
    assert s["tokens_mean"] > 0 and s["fix_mean"] > 0 and s["elapsed_mean"] is not None
    store.close()

    index = write_report(runs_root, tmp_path / "report")
    html = index.read_text()
    assert "Structured versus conversational prompting" in html
    assert "-50 pp" in html  # conversational − structured: 25% − 75%


def test_no_style_table_with_one_style():
    summaries = [{"model": "m", "method": "none", "strategy": "auto", "style": "structured", "n": 1}]
    assert style_comparison(summaries, []) == []


def test_an_experiment_runs_each_cell_in_its_style(tmp_path):
    import os
    import subprocess
    import sys

    from kubevibe.llm.replay import write_replay_log

    log = write_replay_log(tmp_path / "answers.jsonl", [("generate", "I would write a Flask app.")] * 4)
    (tmp_path / "plan.yaml").write_text(json.dumps({
        "name": "styled", "models": [{"llm": f"replay:{log}", "label": "scripted"}],
        "styles": ["structured", "conversational"], "prompts": ["Develop an echo service"],
        "settings": {"max_steps": 2}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEVIBE_")}
    proc = subprocess.run([sys.executable, "-m", "kubevibe.cli", "experiment", str(tmp_path / "plan.yaml"), "--dir",
                           str(tmp_path / "exp")], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    store = Store(tmp_path / "exp" / "experiment.sqlite")
    rows = {r["style"]: r for r in store.runs()}
    store.close()
    assert set(rows) == {"structured", "conversational"}
    for style, row in rows.items():
        record = json.loads((tmp_path / "exp" / row["run_dir"] / "run.json").read_text())
        assert record["style"] == style and row["status"] == "fail"
        calls = [json.loads(line) for line in (tmp_path / "exp" / row["run_dir"] / "llm.jsonl").read_text().splitlines()]
        assert (calls[0].get("style") == "conversational") == (style == "conversational")


def test_compare_pairs_a_structured_experiment_with_a_conversational_one(tmp_path):
    from kubevibe.experiments.compare import compare_data

    for style, scenarios in (("structured", ("first-attempt", "fix-loop")), ("conversational", ("oscillation",))):
        root = tmp_path / style
        for scenario in scenarios:
            path = synthetic_run(root, scenario)
            record = json.loads((path / "run.json").read_text())
            record["style"] = record["settings"]["style"] = style
            (path / "run.json").write_text(json.dumps(record))
    data = compare_data(tmp_path / "structured", tmp_path / "conversational")
    (row,) = data["rows"]
    assert row["label"] == "scripted-7b · none · auto"
    assert (row["a"]["success"], row["a"]["n"], row["b"]["success"], row["b"]["n"]) == (2, 2, 0, 1)
