"""Summaries of a run directory, for `kubevibe show` and the end of `kubevibe run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubevibe.records.rundir import RunDir


def run_summary(path: Path) -> dict[str, Any]:
    rundir = RunDir.open(path)
    run = rundir.read_json("run.json")
    events = rundir.read_jsonl("events.jsonl")
    llm_calls = rundir.read_jsonl("llm.jsonl")
    stages = [e for e in events if e.get("result") not in ("resumed",) and e.get("to") is not None
              and e.get("result") != "limit"]
    fixes = [e for e in stages if e["from"] == "FIX"]
    tokens = sum((c.get("response") or {}).get("completion_tokens") or 0 for c in llm_calls)
    return {
        "run_id": run.get("run_id"),
        "path": str(path),
        "prompt": run.get("prompt"),
        "outcome": run.get("outcome"),
        "final_state": run.get("final_state"),
        "reason": run.get("reason"),
        "llm": run.get("llm", {}),
        "strategy": run.get("strategy"),
        "intent_method": run.get("settings", {}).get("intent_method"),
        "steps": len(stages),
        "fix_iterations": len(fixes),
        "revisions": len(rundir.revisions()),
        "llm_calls": len(llm_calls),
        "completion_tokens": tokens,
        "image": run.get("image"),
        "chart": run.get("chart"),
        "verified": run.get("verified") or {},
        "verdict": run.get("verdict"),
        "acceptance": run.get("acceptance"),
        "tests_from": tests_from(run),
        "transitions": [
            {"step": e.get("step"), "from": e.get("from"), "to": e.get("to"), "result": e.get("result"),
             "duration_s": e.get("duration_s"), "reason": e.get("reason")}
            for e in events
        ],
    }


def tests_from(run: dict[str, Any]) -> str | None:
    """Where a run's test cases came from, from its run.json: "reference:<name>", "generic", or None (the intent)."""
    source = (run.get("intent") or {}).get("spec_from")
    return None if source in (None, "", "intent") else source


def verification_line(verified: dict[str, Any], tests_from: str | None = None) -> str:
    """Exactly what was checked, e.g. 'built, validated, deployed, reachable, declared tests passed 3 of 4'.

    tests_from: see tests_from(); None when the tests are the intent's own."""
    parts = []
    for key, word in (("built", "built"), ("validated", "validated"), ("deployed", "deployed"),
                      ("reachable", "reachable"), ("charted", "chart packaged")):
        if verified.get(key):
            parts.append(word)
    total = verified.get("tests_total")
    if total:
        if tests_from is None:
            source = "intent"
        elif tests_from == "generic":
            source = "generic spec: no reference was close, so only GET /health is checked"
        else:
            source = tests_from.replace(":", " ")
        parts.append(f"declared tests ({source}) passed {verified.get('tests_passed', 0)} of {total}")
    elif verified.get("reachable") and not verified.get("acceptance"):
        parts.append("no declared tests")
    acceptance = verified.get("acceptance")
    if isinstance(acceptance, dict) and acceptance.get("total"):
        independent = "" if acceptance.get("source") != "intent" else ", not independent"
        parts.append(f"acceptance tests ({acceptance.get('source')}{independent}) passed "
                     f"{acceptance.get('passed', 0)} of {acceptance['total']}")
    elif verified.get("reachable") and verified.get("accepted") is False:
        parts.append("no acceptance tests")
    return ", ".join(parts) if parts else "nothing verified"
