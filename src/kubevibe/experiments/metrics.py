"""Reliability metrics: pure functions over rows (plain dicts as the store returns them). No I/O.

Which successes. `success` (functional success) means independent acceptance tests all passed against the live
deployment; `unverified` means the run deployed and answered but was not checked against the request; runtime
success (deployed and answered, whatever the tests said) is reported beside it, never instead of it. Every rate
called success, first-attempt success and passItr@k is on functional success (IaCGen's passItr@k counts a task
as passed when it passes within k iterations; here "passes" means its acceptance tests pass).

Which runs count. A run ends with success, unverified, fail, error or interrupted. `error` means the *tool* stopped (model
server unreachable, missing engine, a KubeVibe bug): it says nothing about the model, so error runs are shown
but left out of every rate. Interrupted or unstarted cells are not finished and are left out too. So n, the
denominator of every rate below, is the number of runs that ended with success, unverified or fail.

Definitions (per run, from its stage executions in step order):
  depth                 stage executions of a successful run (the shortest possible is 7: Intent to Chart)
  fix iterations        executions of FIX
  first-attempt success success without any failed stage execution (no fix, no repeated Intent/Generate)
  passItr@k             share of the n runs that succeeded with at most k fix iterations (passItr@0: no fix)
  repaired / re-failed  each FIX that produced new files repaired the stage whose failure it was shown (the
                        latest failed non-FIX execution before it); it *re-failed* when the next execution of
                        that stage failed again. Fix-loop stability = 1 - re-failed / repaired.
  performance fixes     FIX executions shown a failure of LOAD (a missed objective or a crash under load)
  SLO attainment        share of the n runs with stated objectives whose final files met them under load
  oscillation           artifact revisions are hashed; a revision whose hash equals an earlier, non-adjacent
                        revision (A, B, A) means the fix loop went back to files it had already left.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubevibe.pipeline.fsm import PIPELINE, State
from kubevibe.record.schema import TransitionEvent

Z95 = 1.959963984540054
# `unverified`: the pipeline completed but no independent acceptance tests passed: counted, never a success.
COUNTED = ("success", "unverified", "fail")
FINISHED = ("success", "unverified", "fail", "error")
FIX = State.FIX.value
STAGES: tuple[str, ...] = tuple(s.value for s in PIPELINE) + (FIX,)
REPAIRED_OUTCOMES = ("resume-build", "resume-validate", "regenerate")
NOT_EXECUTIONS = ("resumed", "limit", "interrupted", "error")

Row = dict[str, Any]


# -- intervals ------------------------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} is not between 0 and n={n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-16 off
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(s1: int, n1: int, s2: int, n2: int, z: float = Z95) -> tuple[float, float, float] | None:
    """p2 - p1 with Newcombe's hybrid score interval (method 10), built from the two Wilson intervals."""
    a, b = wilson(s1, n1, z), wilson(s2, n2, z)
    if a is None or b is None:
        return None
    p1, p2 = s1 / n1, s2 / n2
    (l1, u1), (l2, u2) = a, b
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return d, max(-1.0, low), min(1.0, high)


# -- one run --------------------------------------------------------------------------------------------------
def executions_from_events(events: Iterable[TransitionEvent]) -> list[Row]:
    """The stage executions among a run's events (not the runner's limit, stop and resume records)."""
    out = []
    for ev in events:
        if ev.to is None or ev.source is None or ev.result in NOT_EXECUTIONS:
            continue
        out.append({"step": ev.step, "stage": ev.source, "result": ev.result, "to_state": ev.to,
                    "duration_s": float(ev.duration_s or 0.0), "reason": ev.reason or "",
                    "revision": (ev.metrics or {}).get("revision"), "time": ev.time})
    return out


def repair_episodes(executions: Sequence[Row]) -> list[Row]:
    """Each FIX that produced new files: which stage it repaired and whether that stage failed again next time.

    refailed is None when the stage never ran again (the run hit a limit first)."""
    rows = sorted(executions, key=lambda r: r["step"])
    episodes = []
    for i, row in enumerate(rows):
        if row["stage"] != FIX or row["result"] not in REPAIRED_OUTCOMES:
            continue
        failed = next((r for r in reversed(rows[:i]) if r["stage"] != FIX and r["result"] == "failed"), None)
        if failed is None:
            continue
        again = next((r for r in rows[i + 1:] if r["stage"] == failed["stage"]), None)
        episodes.append({"fix_step": row["step"], "stage": failed["stage"], "failed_step": failed["step"],
                         "next_step": again["step"] if again else None,
                         "refailed": None if again is None else again["result"] == "failed"})
    return episodes


def performance_fixes(executions: Sequence[Row]) -> int:
    """FIX executions whose failure to repair was LOAD's (the latest failed non-FIX execution before them)."""
    count, last_failed = 0, None
    for row in sorted(executions, key=lambda r: r["step"]):
        if row["stage"] == FIX:
            count += int(last_failed == State.LOAD.value)
        elif row["result"] == "failed":
            last_failed = row["stage"]
        else:
            last_failed = None if row["stage"] == last_failed else last_failed
    return count


def oscillations(revision_hashes: Sequence[str]) -> list[tuple[int, int]]:
    """(revision, earlier revision) pairs where a revision returns to an earlier, non-adjacent one's files."""
    found = []
    for j, h in enumerate(revision_hashes):
        earlier = [i for i in range(j - 1) if revision_hashes[i] == h]
        if earlier:
            found.append((j, earlier[-1]))
    return found


def run_metrics(outcome: str | None, executions: Sequence[Row], revision_hashes: Sequence[str] = ()) -> Row:
    """The per-run numbers stored in the runs table."""
    fixes = sum(1 for r in executions if r["stage"] == FIX)
    failed = sum(1 for r in executions if r["result"] == "failed")
    episodes = [e for e in repair_episodes(executions) if e["refailed"] is not None]
    success = outcome == "success"
    return {
        "depth": len(executions) if success else None,
        "fix_iterations": fixes,
        "first_attempt_success": int(success and failed == 0),
        "failed_executions": failed,
        "repaired": len(episodes),
        "refailed": sum(1 for e in episodes if e["refailed"]),
        "revisions": len(revision_hashes),
        "oscillations": len(oscillations(revision_hashes)),
    }


# -- groups of runs -------------------------------------------------------------------------------------------
DEFAULT_STYLE = "structured"


def group_key(run: Row) -> tuple[str, str, str, str]:
    return (run.get("model_label") or "?", run.get("intent_method") or "?", run.get("strategy") or "?",
            run.get("style") or DEFAULT_STYLE)


def group_label(key: Sequence[str], show_style: bool = False) -> str:
    """'model · method · strategy', and the style when the runs have more than one (or not the default)."""
    parts = list(key[:3])
    if len(key) > 3 and (show_style or key[3] != DEFAULT_STYLE):
        parts.append(key[3])
    return " · ".join(str(k) for k in parts)


def group_runs(runs: Iterable[Row], key: Callable[[Row], Any] = group_key) -> dict[Any, list[Row]]:
    groups: dict[Any, list[Row]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run)
    def order(item: tuple[Any, list[Row]]) -> tuple[str, ...]:
        key = item[0] if isinstance(item[0], tuple) else (item[0],)
        return tuple(str(x) for x in key)

    return dict(sorted(groups.items(), key=order))


def counted(runs: Iterable[Row]) -> list[Row]:
    return [r for r in runs if r.get("status") in COUNTED]


def pass_itr_at_k(runs: Sequence[Row], k: int) -> float | None:
    """Share of counted runs that succeeded with at most k fix iterations; None without counted runs."""
    done = counted(runs)
    if not done:
        return None
    return sum(1 for r in done if r["status"] == "success" and (r.get("fix_iterations") or 0) <= k) / len(done)


def pass_itr_curve(runs: Sequence[Row], k_max: int) -> list[tuple[int, float | None]]:
    return [(k, pass_itr_at_k(runs, k)) for k in range(k_max + 1)]


def failures_by_stage(executions: Iterable[Row]) -> tuple[Counter, Counter]:
    """(failed executions per stage, executions per stage)."""
    failed, total = Counter(), Counter()
    for r in executions:
        total[r["stage"]] += 1
        if r["result"] == "failed":
            failed[r["stage"]] += 1
    return failed, total


def time_by_stage(executions: Iterable[Row]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in executions:
        out[r["stage"]] += float(r.get("duration_s") or 0.0)
    return dict(out)


def by_test_source(done: Sequence[Row]) -> dict[str, Row]:
    """Functional success per source of the acceptance tests (user, benchmark, reference, test-writer, intent,
    none), with Wilson intervals: a success by the intent's own tests does not exist (such runs are unverified)."""
    out: dict[str, Row] = {}
    for source, members in group_runs(done, key=lambda r: r.get("accept_source") or "none").items():
        s = sum(1 for r in members if r["status"] == "success")
        first = sum(1 for r in members if r.get("first_attempt_success"))
        runtime = sum(1 for r in members if r.get("runtime_success"))
        out[source] = {"n": len(members), "success": s, "success_ci": wilson(s, len(members)),
                       "first_attempt": first, "runtime_success": runtime,
                       "runtime_ci": wilson(runtime, len(members))}
    return out


def stop_stage(run: Row, executions: Sequence[Row]) -> str | None:
    """The stage where a run that did not succeed stopped: its last failed stage (not FIX), if any."""
    if run.get("status") == "success":
        return None
    mine = sorted((e for e in executions if e.get("run_id") == run.get("run_id")), key=lambda e: e["step"])
    failed = [e for e in mine if e["result"] == "failed" and e["stage"] != FIX]
    if failed:
        return failed[-1]["stage"]
    return "none failed" if run.get("status") == "unverified" else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: Sequence[Row], executions: Sequence[Row] = (), llm_calls: Sequence[Row] = (),
              k_max: int | None = None) -> Row:
    """Everything the report shows for one group of runs. `executions` and `llm_calls` are those of these runs
    (rows carry `run_id`); only counted runs (success or fail) enter the rates and means."""
    done = counted(runs)
    ids = {r.get("run_id") for r in done}
    n = len(done)
    succ = [r for r in done if r["status"] == "success"]
    s = len(succ)
    first = sum(1 for r in done if r.get("first_attempt_success"))
    ex = [e for e in executions if e.get("run_id") in ids]
    calls = [c for c in llm_calls if c.get("run_id") in ids]
    failed, total = failures_by_stage(ex)
    times = time_by_stage(ex)
    repaired = sum(r.get("repaired") or 0 for r in done)
    refailed = sum(r.get("refailed") or 0 for r in done)
    if k_max is None:
        k_max = max([r.get("fix_iterations") or 0 for r in done], default=0)
    runtime = sum(1 for r in done if r.get("runtime_success"))
    return {
        "runs": len(runs),
        "n": n,
        "success": s,
        "fail": n - s,
        "unverified": sum(1 for r in done if r["status"] == "unverified"),
        "runtime_success": runtime,
        "runtime_rate": runtime / n if n else None,
        "runtime_ci": wilson(runtime, n),
        "runtime_only": sum(1 for r in done if r.get("runtime_success") and r["status"] != "success"),
        "by_source": by_test_source(done),
        "error": sum(1 for r in runs if r.get("status") == "error"),
        "unfinished": sum(1 for r in runs if r.get("status") not in FINISHED),
        "success_rate": s / n if n else None,
        "success_ci": wilson(s, n),
        "first_attempt": first,
        "first_attempt_rate": first / n if n else None,
        "first_attempt_ci": wilson(first, n),
        "pass_itr": pass_itr_curve(runs, k_max),
        "depth_mean": _mean([r["depth"] for r in succ if r.get("depth") is not None]),
        "depth_median": _median([r["depth"] for r in succ if r.get("depth") is not None]),
        "fix_mean": _mean([r.get("fix_iterations") or 0 for r in done]),
        "fix_mean_success": _mean([r.get("fix_iterations") or 0 for r in succ]),
        "steps_mean": _mean([r.get("steps") or 0 for r in done]),
        "repaired": repaired,
        "refailed": refailed,
        "refail_rate": refailed / repaired if repaired else None,
        "stability": 1 - refailed / repaired if repaired else None,
        "oscillating_runs": sum(1 for r in done if (r.get("oscillations") or 0) > 0),
        "oscillations": sum(r.get("oscillations") or 0 for r in done),
        "stage_failures": {st: failed.get(st, 0) for st in STAGES},
        "stage_executions": {st: total.get(st, 0) for st in STAGES},
        "stage_time_mean": {st: times.get(st, 0.0) / n if n else 0.0 for st in STAGES},
        "elapsed_mean": _mean([r.get("elapsed_s") or 0.0 for r in done]),
        "llm_calls_mean": len(calls) / n if n else None,
        "prompt_tokens_mean": sum(c.get("prompt_tokens") or 0 for c in calls) / n if n else None,
        "completion_tokens_mean": sum(c.get("completion_tokens") or 0 for c in calls) / n if n else None,
        "llm_s_mean": sum(c.get("duration_s") or 0.0 for c in calls) / n if n else None,
        **_slo_summary(done),
    }


def _slo_summary(done: Sequence[Row]) -> Row:
    """SLO attainment among the counted runs that stated objectives, and the fixes spent on performance."""
    stated = [r for r in done if r.get("slo_stated")]
    met = sum(1 for r in stated if r.get("slo_met"))
    p95 = [r["load_p95_ms"] for r in done if r.get("load_p95_ms") is not None]
    return {
        "slo_runs": len(stated),
        "slo_met": met,
        "slo_rate": met / len(stated) if stated else None,
        "slo_ci": wilson(met, len(stated)),
        "performance_fix_mean": _mean([r.get("performance_fixes") or 0 for r in done]),
        "load_p95_median": _median(p95),
    }
