"""Summaries of a run directory, for `kubevibe show` and the end of `kubevibe run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubevibe.record.lineage import chain
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import RunRecord


def run_summary(path: Path) -> dict[str, Any]:
    rundir = RunDir.open(path)
    run = rundir.read_run()
    events = rundir.read_events()
    llm_calls = rundir.read_llm_calls()
    stages = [e for e in events if e.result not in ("resumed",) and e.to is not None and e.result != "limit"]
    fixes = [e for e in stages if e.source == "FIX"]
    tokens = sum(c.completion_tokens for c in llm_calls)
    settings = run.settings or {}
    return {
        "run_id": run.run_id,
        "path": str(path),
        "prompt": run.prompt,
        "outcome": run.outcome,
        "final_state": run.final_state,
        "reason": run.reason,
        "llm": run.llm if "llm" in run.model_fields_set else {},
        "strategy": run.strategy,
        "style": run.style or settings.get("style") or "structured",
        "intent_method": settings.get("intent_method"),
        "steps": len(stages),
        "fix_iterations": len(fixes),
        "revisions": len(rundir.revisions()),
        "llm_calls": len(llm_calls),
        "completion_tokens": tokens,
        "image": run.image,
        "chart": run.chart,
        "verified": run.verified or {},
        "service_file": run.service_file,
        "stand_ins": run.stand_ins or [],
        "verdict": run.verdict,
        "acceptance": run.acceptance,
        "tests_from": tests_from(run),
        "parent": run.parent,
        "lineage": chain(rundir.path),  # the runs this one refines, nearest first
        "push": run.push,
        "load": run.load,
        "resources": resources_line(rundir, run.load),
        "slo": (run.verdict or {}).get("slo"),
        "transitions": [
            {"step": e.step, "from": e.source, "to": e.to, "result": e.result, "duration_s": e.duration_s,
             "reason": e.reason}
            for e in events
        ],
    }


def tests_from(run: RunRecord) -> str | None:
    """Where a run's test cases came from, from its run.json: "reference:<name>", "generic", or None (the intent)."""
    source = (run.intent or {}).get("spec_from")
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


def load_line(load: dict[str, Any] | None, slo: dict[str, Any] | None) -> str | None:
    """What LOAD measured and what it means, with the resources measured against those requested, e.g.
    'objectives met: p95 12 ms ...; memory measured 21.2 MiB, the manifest requested 128Mi'. None: no LOAD ran."""
    if not load:
        return None
    from kubevibe.load.report import LoadReport

    report = LoadReport.model_validate(load)
    if slo is not None:
        head = "objectives met" if slo.get("met") else "objectives NOT met (" + "; ".join(slo.get("missed") or
                                                                                        ["not measured"]) + ")"
    else:
        head = "no objectives stated"
    return f"{head}: {report.figures()}"


def resources_line(rundir: RunDir, load: dict[str, Any] | None) -> str | None:
    """Measured use against what is requested: the chart's sizing from the measurement, and the manifest's guess."""
    if not load:
        return None
    from kubevibe.load.report import sized_resources
    from kubevibe.manifests import ManifestError, containers, load_manifest, workloads

    sized = sized_resources(load)
    if sized is None:
        return None
    declared = "none"
    revisions = rundir.revisions()
    manifest = rundir.revision_dir(revisions[-1]) / "vibe.yaml" if revisions else None
    if manifest is not None and manifest.is_file():
        try:
            found = [c.get("resources") for d in workloads(load_manifest(manifest.read_text(encoding="utf-8")))
                     for c in containers(d) if isinstance(c.get("resources"), dict)]
        except ManifestError:
            found = []
        if found:
            declared = ", ".join(f"{k} {v}" for k, v in sorted((found[0].get("requests") or {}).items())) or "none"
    req, lim = sized["requests"], sized["limits"]
    return (f"measured peak {load.get('peak_memory_mib')} MiB, {load.get('peak_cpu')} cores -> chart requests "
            f"cpu {req['cpu']}, memory {req['memory']} (limits cpu {lim['cpu']}, memory {lim['memory']}); "
            f"the generated manifest requested {declared}")
def stand_in_lines(stand_ins: list[dict[str, Any]]) -> list[str]:
    """One line per stand-in that acted in a run (what would differ on a real registry and cluster)."""
    return [f"stand-in ({s.get('kind')}): {s.get('detail')}" for s in stand_ins]
