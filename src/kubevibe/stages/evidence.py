"""How much of a failure's evidence goes into a Fix prompt, and how it is rendered there.

Shared by both styles of Fix (stages/fix.py, structured; stages/conversational.py, one chat), which is why it
is here and not in either: neither stage imports the other for it.
"""

from __future__ import annotations

from kubevibe.llm.conversation import CHARS_PER_TOKEN
from kubevibe.pipeline.context import Evidence
from kubevibe.text import trim_middle

MIN_EVIDENCE_CHARS = 1500


def evidence_budget(num_ctx: int, files_chars: int) -> int:
    """Characters left for evidence once the files and instructions are in, never below a useful minimum."""
    return max(MIN_EVIDENCE_CHARS, num_ctx * CHARS_PER_TOKEN - files_chars - 2500)


def render_evidence(evidence: list[Evidence], budget: int) -> str:
    if not evidence:
        return "(the stage recorded no evidence)"
    # Findings are short and all matter; command output is long and gets what is left.
    per_item = max(300, budget // len(evidence))
    text = "\n\n".join(e.render(per_item) for e in evidence)
    return trim_middle(text, budget)
