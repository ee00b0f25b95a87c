"""`kubevibe compare A B`: two experiments (e.g. two models, or two prompting methods) side by side.

Groups are matched by (model, intent method, strategy) when the two experiments share model labels, otherwise
by (intent method, strategy), so that two single-model experiments line up method by method; and by style too
when both ran the same styles (an experiment of each style lines up group by group). For each pair:
both success rates with their Wilson intervals, the difference B − A with Newcombe's interval (when it
excludes 0, the difference is unlikely to be chance at the 95% level), first-attempt success, fix iterations,
fix-loop stability. Prompts are matched by their text.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import zip_longest
from pathlib import Path
from typing import Any

from markupsafe import Markup

from kubevibe import __version__
from kubevibe.experiments import plots
from kubevibe.experiments.metrics import STAGES, newcombe_difference, summarize
from kubevibe.experiments.report import environment, overview_data
from kubevibe.experiments.store import open_results


def _side(path: Path) -> dict[str, Any]:
    store = open_results(path)
    try:
        runs = store.table("runs")
        executions = store.table("stage_executions")
        calls = store.table("llm_calls")
        name = store.get_meta("name") or Path(path).resolve().name
    finally:
        store.close()
    return {"path": str(Path(path).resolve()), "name": name, "runs": runs, "executions": executions, "calls": calls}


def compare_data(path_a: Path, path_b: Path) -> dict[str, Any]:
    a, b = _side(path_a), _side(path_b)
    if a["name"] == b["name"]:
        a["tag"], b["tag"] = f"A ({a['name']})", f"B ({b['name']})"
    else:
        a["tag"], b["tag"] = a["name"], b["name"]
    for side in (a, b):
        side.update(overview_data(side["runs"], side["executions"], side["calls"]))
        side["overall"] = summarize(side["runs"], side["executions"], side["calls"])
    models_a = {s["model"] for s in a["summaries"]}
    models_b = {s["model"] for s in b["summaries"]}
    by_model = bool(models_a & models_b)

    # Styles are matched when both sides ran the same ones; otherwise (A structured, B conversational: the
    # comparison of styles as two experiments) groups pair up regardless of style.
    by_style = {s["style"] for s in a["summaries"]} == {s["style"] for s in b["summaries"]}

    def align(s: dict) -> tuple:
        key = (s["model"], s["method"], s["strategy"]) if by_model else (s["method"], s["strategy"])
        return key + ((s["style"],) if by_style else ())

    keys = sorted({align(s) for s in a["summaries"]} | {align(s) for s in b["summaries"]})
    several_styles = by_style and len({key[-1] for key in keys}) > 1

    def label(key: tuple) -> str:  # the style only when it tells groups apart (as in the report)
        return " · ".join(key if not by_style or several_styles or key[-1] != "structured" else key[:-1])

    rows = []
    for key in keys:
        left = [s for s in a["summaries"] if align(s) == key]
        right = [s for s in b["summaries"] if align(s) == key]
        for sa, sb in zip_longest(left, right):
            rows.append(_pair(label(key), sa, sb))
    overall = _pair("all runs", a["overall"], b["overall"])

    prompts = sorted({r["prompt"] for r in a["runs"]} | {r["prompt"] for r in b["runs"]},
                     key=lambda p: _prompt_order(p, a["runs"], b["runs"]))
    per_prompt = []
    for p in prompts:
        cells = []
        for side in (a, b):
            done = [r for r in side["runs"] if r["prompt"] == p and r["status"] in ("success", "fail")]
            cells.append({"s": sum(1 for r in done if r["status"] == "success"), "n": len(done)})
        per_prompt.append({"prompt": p, "a": cells[0], "b": cells[1]})

    labelled = []
    for side in (a, b):
        for s in side["summaries"]:
            labelled.append({**s, "label": f"{side['tag']}: {s['label']}"})
    comparison_plots = {
        "success": Markup(plots.success_rates(
            [{"label": s["label"], "rate": s["success_rate"], "ci": s["success_ci"], "s": s["success"], "n": s["n"]}
             for s in labelled])),
        "pass_itr": Markup(plots.pass_itr_curves([{"label": s["label"], "points": s["pass_itr"]} for s in labelled])),
        "failures": Markup(plots.failure_heatmap(
            [{"label": s["label"], "failures": s["stage_failures"], "executions": s["stage_executions"]}
             for s in labelled if s["n"]], STAGES)),
    }
    return {"a": a, "b": b, "rows": rows, "overall": overall, "per_prompt": per_prompt, "by_model": by_model,
            "plots": comparison_plots}


def _prompt_order(prompt: str, *run_lists: list[dict]) -> tuple:
    for i, runs in enumerate(run_lists):
        for r in runs:
            if r["prompt"] == prompt and r.get("prompt_index") is not None:
                return (i, r["prompt_index"])
    return (len(run_lists), 0)


def _pair(label: str, sa: dict | None, sb: dict | None) -> dict[str, Any]:
    diff = None
    if sa and sb and sa["n"] and sb["n"]:
        diff = newcombe_difference(sa["success"], sa["n"], sb["success"], sb["n"])
    return {"label": label, "a": sa, "b": sb, "diff": diff,
            "a_label": sa.get("label", label) if sa else None, "b_label": sb.get("label", label) if sb else None,
            "significant": diff is not None and (diff[1] > 0 or diff[2] < 0)}


def write_compare(path_a: Path, path_b: Path, out: Path) -> Path:
    data = compare_data(path_a, path_b)
    out = Path(out)
    if out.suffix.lower() != ".html":
        out.mkdir(parents=True, exist_ok=True)
        out = out / "index.html"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    html = environment().get_template("compare.html").render(
        title=f"{data['a']['tag']} vs {data['b']['tag']}", root="", home=out.name, experiment="comparison",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__, **data)
    out.write_text(html, encoding="utf-8")
    return out


def text_rows(data: dict[str, Any]) -> list[list[str]]:
    """Rows for the terminal table: group, A, B, difference, fixes A/B, first attempt A/B."""
    from kubevibe.experiments.report import fmt_ci, fmt_num, fmt_pct

    def rate(s: dict | None) -> str:
        if not s or not s["n"]:
            return "–"
        return f"{s['success']}/{s['n']} {fmt_pct(s['success_rate'])} {fmt_ci(s['success_ci'])}"

    out = []
    for row in [*data["rows"], data["overall"]]:
        a, b, d = row["a"], row["b"], row["diff"]
        diff = "–" if d is None else f"{100 * d[0]:+.0f} pts [{100 * d[1]:+.0f}, {100 * d[2]:+.0f}]" + (
            " *" if row["significant"] else "")
        out.append([row["label"], rate(a), rate(b), diff,
                    f"{fmt_num(a['fix_mean'], 2) if a else '–'} / {fmt_num(b['fix_mean'], 2) if b else '–'}",
                    f"{fmt_pct(a['first_attempt_rate']) if a else '–'} / {fmt_pct(b['first_attempt_rate']) if b else '–'}"])
    return out
