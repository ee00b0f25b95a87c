"""The FSM execution graph of a run, drawn from THE transition table (kubevibe.pipeline.fsm.TRANSITIONS).

Every state is drawn; possible transitions in grey (limit exits dashed); transitions the run took in bold,
labelled with their step numbers; SUCCESS and FAIL as double circles.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import graphviz

from kubevibe.exec import run as run_command
from kubevibe.pipeline.fsm import TERMINAL, TRANSITIONS, Outcome, State


def build_graph(events: list[dict]) -> graphviz.Digraph:
    taken: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ev in events:
        if ev.get("from") and ev.get("to") and ev.get("result") not in ("resumed",):
            taken[(ev["from"], ev["to"])].append(str(ev.get("step", "")))
    dot = graphviz.Digraph("kubevibe_fsm", graph_attr={"rankdir": "LR", "nodesep": "0.5", "ranksep": "0.6"},
                           node_attr={"shape": "circle", "fontname": "Helvetica", "fontsize": "11",
                                      "width": "1.0", "fixedsize": "true"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "10", "arrowsize": "0.7"})
    visited = {ev.get("from") for ev in events} | {ev.get("to") for ev in events}
    for state in State:
        attrs = {"peripheries": "2"} if state in TERMINAL else {}
        if state.value in visited:
            attrs.update(style="filled", fillcolor="#e8f0fe")
        dot.node(state.value, state.value.capitalize(), **attrs)
    drawn: set[tuple[str, str]] = set()
    for t in TRANSITIONS:
        key = (t.source.value, t.target.value)
        if key in drawn:
            continue
        drawn.add(key)
        # Limit exits (any state -> FAIL when time, steps or fixes run out) are dashed: they are the runner's, not
        # a stage's outcome.
        style = "dashed" if t.outcome == Outcome.LIMIT else "solid"
        if key in taken:
            dot.edge(*key, label=",".join(taken[key]), penwidth="2.2", color="black", fontcolor="black",
                     fontsize="12", style=style)
        else:
            dot.edge(*key, color="gray70", fontcolor="gray50", style=style)
    # A transition outside the table would be a bug; draw it red rather than hide it.
    for key, steps in taken.items():
        if key not in drawn:
            dot.edge(*key, label=",".join(steps), color="red", penwidth="2.2")
    return dot


def write_graph(events: list[dict], out_dir: Path, name: str = "fsm") -> tuple[Path, Path | None]:
    """Write NAME.dot, and NAME.svg when Graphviz's `dot` is installed. Returns both paths (svg None if not)."""
    dot = build_graph(events)
    out_dir.mkdir(parents=True, exist_ok=True)
    dot_path = out_dir / f"{name}.dot"
    dot_path.write_text(dot.source, encoding="utf-8")
    svg_path = out_dir / f"{name}.svg"
    result = run_command(["dot", "-Tsvg", str(dot_path), "-o", str(svg_path)], timeout=60)
    return dot_path, (svg_path if result.ok else None)
