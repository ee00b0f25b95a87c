"""The layered verdict of a run: what was verified, level by level, and the outcome it allows.

`success` means independent acceptance tests (from the user, a benchmark task, a reference of the bank, or the
test writer) all passed against the live deployment. A run that deployed and answered but was checked only by
tests the generator wrote itself (`intent`), or by none, is `unverified` (exit code 3), never `success`.
"""

from __future__ import annotations

from typing import Any

# Sources of acceptance tests that the code generator did not write.
INDEPENDENT_SOURCES = frozenset({"user", "benchmark", "reference", "test-writer"})
TEST_SOURCES = ("user", "benchmark", "reference", "test-writer", "intent")


def make_verdict(verified: dict[str, Any]) -> dict[str, Any]:
    """run.json `verdict` from RunState.verified (contract 4)."""
    acceptance = verified.get("acceptance")
    accepted = None
    if isinstance(acceptance, dict) and acceptance.get("total"):
        accepted = {"passed": int(acceptance.get("passed", 0)), "total": int(acceptance["total"]),
                    "source": str(acceptance.get("source"))}
    return {"built": bool(verified.get("built")), "validated": bool(verified.get("validated")),
            "deployed": bool(verified.get("deployed")), "reachable": bool(verified.get("reachable")),
            "accepted": accepted, "charted": bool(verified.get("charted"))}


def functionally_verified(verdict: dict[str, Any]) -> bool:
    accepted = verdict.get("accepted")
    return bool(accepted and accepted["source"] in INDEPENDENT_SOURCES and accepted["total"] > 0
                and accepted["passed"] == accepted["total"])


def outcome_of_completed_run(verdict: dict[str, Any]) -> str:
    """The outcome of a run that went through the whole pipeline: success only when functionally verified."""
    return "success" if functionally_verified(verdict) else "unverified"


def unverified_reason(verdict: dict[str, Any]) -> str:
    """What was and was not verified, for the final line of an unverified run."""
    done = [word for key, word in (("built", "built"), ("validated", "validated"), ("deployed", "deployed"),
                                   ("reachable", "answered"), ("charted", "charted")) if verdict.get(key)]
    accepted = verdict.get("accepted")
    if accepted and accepted["source"] == "intent":
        missing = (f"its {accepted['total']} tests were written by the same model as the code (source intent), "
                   "so it was not checked against the request by independent tests")
    else:
        missing = "no acceptance tests checked it against the request (give some with --tests FILE)"
    return f"{', '.join(done) or 'nothing verified'}; NOT verified: {missing}"
