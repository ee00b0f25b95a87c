"""Structured versus conversational prompting (issue 16): the two styles side by side, per matrix group and pooled.

For each (model, intent method, strategy) run in both styles: success and first-attempt success with their 95%
Wilson intervals, the difference conversational − structured with Newcombe's interval (when it excludes 0 the
difference is unlikely to be chance at the 95% level), fix rounds, tokens, wall time and LLM time per run. Pure
functions over the summaries `metrics.summarize` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubevibe.experiments.metrics import newcombe_difference, summarize

STYLES = ("structured", "conversational")
SIDE_FIELDS = ("n", "success", "success_rate", "success_ci", "first_attempt", "first_attempt_rate",
               "first_attempt_ci", "fix_mean", "elapsed_mean", "llm_s_mean", "llm_calls_mean")


def _side(summary: dict[str, Any]) -> dict[str, Any]:
    side = {k: summary.get(k) for k in SIDE_FIELDS}
    prompt, completion = summary.get("prompt_tokens_mean"), summary.get("completion_tokens_mean")
    side["tokens_mean"] = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
    return side


def _pair(label: str, structured: dict[str, Any], conversational: dict[str, Any]) -> dict[str, Any]:
    a, b = _side(structured), _side(conversational)
    return {
        "label": label,
        "structured": a,
        "conversational": b,
        "success_diff": newcombe_difference(a["success"], a["n"], b["success"], b["n"]),
        "first_attempt_diff": newcombe_difference(a["first_attempt"], a["n"], b["first_attempt"], b["n"]),
    }


def style_comparison(summaries: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]],
                     executions: Sequence[dict[str, Any]] = (), calls: Sequence[dict[str, Any]] = ()) -> list[dict]:
    """One row per group run in both styles, then (with two or more such groups) all runs pooled per style.
    Empty when the runs have only one style."""
    by_cell: dict[tuple, dict[str, dict]] = {}
    for s in summaries:
        by_cell.setdefault((s["model"], s["method"], s["strategy"]), {})[s.get("style") or "structured"] = s
    rows = [_pair(" · ".join(cell), styles["structured"], styles["conversational"])
            for cell, styles in by_cell.items() if all(st in styles for st in STYLES)]
    if len(rows) > 1:
        pooled = {st: summarize([r for r in runs if (r.get("style") or "structured") == st], executions, calls)
                  for st in STYLES}
        rows.append(_pair("all runs", pooled["structured"], pooled["conversational"]))
    return rows
