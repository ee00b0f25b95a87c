"""`kubevibe report`: a static HTML report of an experiment (or of a directory of runs). Works offline.

  index.html         summary per model x method x strategy, plots (success with intervals, passItr@k, failures
                     by stage, time by stage), success per prompt, every run
  runs/<run id>.html a run: its FSM graph, transitions, the evidence that triggered each fix, every artifact
                     revision with the diff from the one before, its LLM calls
  graphs/            each run's FSM execution graph as DOT and SVG (pipeline.graph, from the transition table)
  data/              the tables as CSV, and the plan

Everything is local: CSS inline, plots inline SVG (plots.py), no JavaScript. Templates: kubevibe/assets/report/.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from kubevibe import __version__
from kubevibe.experiments import plots
from kubevibe.experiments.metrics import (
    COUNTED,
    STAGES,
    group_label,
    group_runs,
    oscillations,
    repair_episodes,
    summarize,
)
from kubevibe.experiments.store import DB_NAME, Store, open_results
from kubevibe.experiments.styles import style_comparison
from kubevibe.text import trim_middle
from kubevibe.record.lineage import chain
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import RunRecord
from kubevibe.record.show import tests_from, verification_line

PASS_K_MAX = 10  # passItr@k is shown for k = 0..10 (capped by the deepest fix loop seen)
EVIDENCE_CHARS = 6000
FILE_CHARS = 60_000


# -- templates ------------------------------------------------------------------------------------------------
def _load_template(name: str) -> str:
    return resources.files("kubevibe.assets").joinpath("report", name).read_text(encoding="utf-8")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_load_template), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = fmt_pct
    env.filters["ci"] = fmt_ci
    env.filters["num"] = fmt_num
    env.filters["secs"] = fmt_secs
    env.filters["short"] = lambda s, n=12: (s or "")[:n]
    return env


def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def fmt_ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"[{100 * ci[0]:.0f}%, {100 * ci[1]:.0f}%]"


def fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer() and digits == 0:
        return f"{int(value)}"
    return f"{value:.{digits}f}"


def fmt_secs(value: float | None) -> str:
    """Seconds with the precision that matters: 0.03s, 4.21s, 37.5s, 1204s."""
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}s"
    if value < 100:
        return f"{value:.1f}s"
    return f"{value:.0f}s"


# -- the whole report -----------------------------------------------------------------------------------------
def write_report(source: Path, out_dir: Path | None = None) -> Path:
    """Write the report for an experiment directory (or a directory of runs). Returns index.html."""
    source = Path(source)
    out_dir = Path(out_dir) if out_dir else source / "report"
    store = open_results(source)
    try:
        return _write(store, source, out_dir)
    finally:
        store.close()


def _write(store: Store, source: Path, out_dir: Path) -> Path:
    env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("runs", "graphs", "data"):
        if (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)  # a report is rewritten whole: no page of a run that left the store
        (out_dir / sub).mkdir()
    runs = store.table("runs")
    executions = store.table("stage_executions")
    calls = store.table("llm_calls")
    revisions = store.table("revisions")
    csv_files = [p.name for p in store.export_csv(out_dir / "data")]
    plan_file = source / "plan.yaml"
    if plan_file.is_file():
        shutil.copyfile(plan_file, out_dir / "data" / "plan.yaml")

    name = store.get_meta("name") or source.resolve().name
    overview = overview_data(runs, executions, calls)
    pages: dict[str, str] = {}
    for run in runs:
        if not run.get("run_id"):
            continue
        page = f"runs/{_page_name(run['run_id'])}.html"
        pages[run["cell_key"]] = page
        context = run_page_data(store, run, [e for e in executions if e["run_id"] == run["run_id"]],
                                [c for c in calls if c["run_id"] == run["run_id"]],
                                [r for r in revisions if r["run_id"] == run["run_id"]], out_dir)
        (out_dir / page).write_text(env.get_template("run.html").render(
            title=f"{name} · run {run['run_id']}", root="../", experiment=name, **context), encoding="utf-8")

    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html").render(
        title=f"{name} · KubeVibe experiment report", root="", experiment=name, source=str(source.resolve()),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        csv_files=csv_files, has_plan=plan_file.is_file(), pages=pages, stages=STAGES,
        is_experiment=(source / DB_NAME).is_file(), **overview), encoding="utf-8")
    return index


def _page_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


# -- index ----------------------------------------------------------------------------------------------------
def overview_data(runs: list[dict], executions: list[dict], calls: list[dict],
                  label_prefix: str = "") -> dict[str, Any]:
    groups = group_runs(runs)
    k_seen = max([r.get("fix_iterations") or 0 for r in runs if r.get("status") in COUNTED], default=0)
    k_max = min(PASS_K_MAX, max(3, k_seen))
    summaries = []
    show_style = len({key[3] for key in groups}) > 1
    for key, members in groups.items():
        s = summarize(members, executions, calls, k_max=k_max)
        s.update(key=key, label=label_prefix + group_label(key, show_style), model=key[0], method=key[1],
                 strategy=key[2], style=key[3])
        summaries.append(s)
    status_counts: dict[str, int] = {}
    for r in runs:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    prompts = sorted({(r.get("prompt_index"), r.get("prompt")) for r in runs}, key=lambda p: (p[0] is None, p[0] or 0))
    per_prompt = []
    for index, text in prompts:
        cells = []
        for s in summaries:
            members = [r for r in groups[s["key"]] if r.get("prompt") == text and r.get("status") in COUNTED]
            ok = sum(1 for r in members if r["status"] == "success")
            cells.append({"s": ok, "n": len(members)})
        per_prompt.append({"index": index, "prompt": text, "cells": cells})
    return {
        "runs": runs,
        "summaries": summaries,
        "status_counts": status_counts,
        "k_max": k_max,
        "per_prompt": per_prompt,
        "plots": overview_plots(summaries),
        "style_rows": style_comparison(summaries, runs, executions, calls),
        "show_style": show_style,
    }


def overview_plots(summaries: list[dict]) -> dict[str, Markup]:
    return {
        "success": Markup(plots.success_rates(
            [{"label": s["label"], "rate": s["success_rate"], "ci": s["success_ci"], "s": s["success"], "n": s["n"]}
             for s in summaries])),
        "pass_itr": Markup(plots.pass_itr_curves([{"label": s["label"], "points": s["pass_itr"]} for s in summaries])),
        "failures": Markup(plots.failure_heatmap(
            [{"label": s["label"], "failures": s["stage_failures"], "executions": s["stage_executions"]}
             for s in summaries if s["n"]], STAGES)),
        "time": Markup(plots.time_breakdown(
            [{"label": s["label"], "times": s["stage_time_mean"]} for s in summaries if s["n"]], STAGES)),
    }


# -- one run --------------------------------------------------------------------------------------------------
def run_page_data(store: Store, run: dict, executions: list[dict], calls: list[dict], revisions: list[dict],
                  out_dir: Path) -> dict[str, Any]:
    path = store.resolve_run_dir(run.get("run_dir"))
    rundir = RunDir(path) if path is not None and (path / "run.json").is_file() else None
    run_record = rundir.read_run() if rundir else RunRecord()
    record = run_record.dump()  # the page shows run.json as it is, keys as in the file
    events = [e.dump() for e in rundir.read_events()] if rundir else []
    graph_svg, graph_dot, graph_files = _graph(events, run["run_id"], out_dir, rundir)
    revs = revision_data(rundir, revisions) if rundir else []
    return {
        "run": run,
        "record": record,
        "run_path": str(path.resolve()) if path else None,
        "found": rundir is not None,
        "verified": verification_line(run_record.verified or {}, tests_from(run_record)),
        "lineage": chain(path) if rundir else [],  # a refined run's ancestors, nearest first
        "events": events,
        "fixes": fix_data(rundir, executions) if rundir else [],
        "failures": [e for e in executions if e["result"] == "failed" and e["stage"] != "FIX"],
        "revisions": revs,
        "calls": calls,
        "graph_svg": graph_svg,
        "graph_dot": graph_dot,
        "graph_files": graph_files,
        "settings": run_record.settings or {},
        "sources": run_record.sources or {},
    }


def _graph(events: list[dict], run_id: str, out_dir: Path, rundir: RunDir | None
           ) -> tuple[Markup | None, str, dict[str, str]]:
    """The run's graph: the fsm.dot/fsm.svg the experiment drew beside the run when they are up to date,
    otherwise drawn now (pipeline.graph, from the transition table)."""
    from kubevibe.pipeline.graph import write_graph

    name = _page_name(run_id)
    dot_path, svg_path = out_dir / "graphs" / f"{name}.dot", out_dir / "graphs" / f"{name}.svg"
    if rundir is not None and _graph_current(rundir.path):
        shutil.copyfile(rundir.path / "fsm.dot", dot_path)
        shutil.copyfile(rundir.path / "fsm.svg", svg_path)
    else:
        dot_path, svg_path = write_graph(events, out_dir / "graphs", name=name)
    files = {"dot": f"graphs/{dot_path.name}"}
    svg = None
    if svg_path is not None:
        files["svg"] = f"graphs/{svg_path.name}"
        text = svg_path.read_text(encoding="utf-8")
        svg = Markup(text[text.find("<svg"):])  # drop the XML prolog and DOCTYPE to inline it
    return svg, dot_path.read_text(encoding="utf-8"), files


def _graph_current(run_path: Path) -> bool:
    try:
        events = (run_path / "events.jsonl").stat().st_mtime
        return min((run_path / "fsm.dot").stat().st_mtime, (run_path / "fsm.svg").stat().st_mtime) >= events
    except OSError:
        return False


def fix_data(rundir: RunDir, executions: list[dict]) -> list[dict]:
    """For each FIX execution: the failure it was shown (stage, summary, evidence) and what it did."""
    rows = sorted(executions, key=lambda e: e["step"])
    episodes = {e["fix_step"]: e for e in repair_episodes(rows)}
    out = []
    for i, ex in enumerate(rows):
        if ex["stage"] != "FIX":
            continue
        trigger = next((r for r in reversed(rows[:i]) if r["stage"] != "FIX" and r["result"] == "failed"), None)
        fix_result = _step_result(rundir, ex["step"], ex["stage"])
        trigger_result = _step_result(rundir, trigger["step"], trigger["stage"]) if trigger else {}
        ep = episodes.get(ex["step"])
        out.append({
            "step": ex["step"], "result": ex["result"], "to": ex["to_state"], "summary": ex["reason"],
            "revision": ex.get("revision"), "trigger": trigger,
            "evidence": [_evidence(e) for e in trigger_result.get("evidence") or []],
            "fix_evidence": [_evidence(e) for e in fix_result.get("evidence") or []],
            "refailed": ep["refailed"] if ep else None, "next_step": ep["next_step"] if ep else None,
        })
    return out


def _step_result(rundir: RunDir, step: int, stage: str) -> dict:
    try:
        return json.loads((rundir.step_dir(step, stage) / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _evidence(e: dict) -> dict:
    return {
        "kind": e.get("kind", ""), "title": e.get("title", ""), "command": e.get("command"),
        "exit_code": e.get("exit_code"), "detail": trim_middle(e.get("detail") or "", EVIDENCE_CHARS),
        "stdout": trim_middle(e.get("stdout") or "", EVIDENCE_CHARS),
        "stderr": trim_middle(e.get("stderr") or "", EVIDENCE_CHARS),
    }


def revision_data(rundir: RunDir, revisions: list[dict]) -> list[dict]:
    """Each revision: its files, and the unified diff from the revision before."""
    by_rev = {r["rev"]: r for r in revisions}
    hashes = [by_rev[r]["hash"] if r in by_rev else "" for r in rundir.revisions()]
    returns = dict(oscillations(hashes))
    numbers = rundir.revisions()
    out = []
    previous: dict[str, str] = {}
    for index, rev in enumerate(numbers):
        directory = rundir.revision_dir(rev)
        files = {p.name: _read_text(p) for p in sorted(directory.iterdir()) if p.is_file()}
        diff = []
        if index > 0:
            for fname in sorted(set(previous) | set(files)):
                a, b = previous.get(fname, ""), files.get(fname, "")
                if a == b:
                    continue
                lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(),
                                                  f"rev-{numbers[index - 1]:03d}/{fname}", f"rev-{rev:03d}/{fname}",
                                                  lineterm="", n=3))
                diff.extend(_diff_line(line) for line in lines)
        row = by_rev.get(rev, {})
        out.append({"rev": rev, "step": row.get("step"), "hash": row.get("hash", ""), "files": files,
                    "diff": diff, "first": index == 0,
                    "returns_to": numbers[returns[index]] if index in returns else None,
                    "unchanged": index > 0 and not diff})
        previous = files
    return out


def _diff_line(line: str) -> dict[str, str]:
    if line.startswith(("+++", "---")):
        cls = "meta"
    elif line.startswith("@@"):
        cls = "hunk"
    elif line.startswith("+"):
        cls = "add"
    elif line.startswith("-"):
        cls = "del"
    else:
        cls = "ctx"
    return {"cls": cls, "text": line}


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "(not text)"
    return trim_middle(text, FILE_CHARS)


__all__ = ["write_report", "overview_data", "environment"]
