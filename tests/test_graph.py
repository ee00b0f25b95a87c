"""The FSM graph is drawn from the one transition table, with the transitions a run took in bold."""

from kubevibe.pipeline.fsm import TRANSITIONS, State
from kubevibe.pipeline.graph import build_graph

EVENTS = [
    {"step": 1, "from": "INTENT", "to": "GENERATE", "result": "ok"},
    {"step": 2, "from": "GENERATE", "to": "BUILD", "result": "ok"},
    {"step": 3, "from": "BUILD", "to": "FIX", "result": "failed"},
    {"step": 4, "from": "FIX", "to": "BUILD", "result": "resume-build"},
    {"step": 5, "from": "BUILD", "to": "FIX", "result": "failed"},
    {"step": 5, "from": "FIX", "to": "FAIL", "result": "limit"},
]


def edge_lines(source: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in source.splitlines():
        line = line.strip()
        if "->" in line:
            left, _, rest = line.partition("->")
            target = rest.split("[")[0].strip()
            out[(left.strip(), target)] = rest
    return out


def test_every_table_transition_is_drawn_once_and_taken_ones_are_bold_with_steps():
    edges = edge_lines(build_graph(EVENTS).source)
    assert set(edges) == {(t.source.value, t.target.value) for t in TRANSITIONS}
    assert "penwidth=2.2" in edges[("BUILD", "FIX")] and 'label="3,5"' in edges[("BUILD", "FIX")]
    assert "gray70" in edges[("DEPLOY", "CONNECT")]
    assert "dashed" in edges[("FIX", "FAIL")] and "dashed" in edges[("INTENT", "FAIL")]


def test_terminal_states_are_double_circles():
    source = build_graph([]).source
    for state in (State.SUCCESS, State.FAIL):
        line = next(line for line in source.splitlines() if line.strip().startswith(state.value + " "))
        assert "peripheries=2" in line
