"""THE transition table of the pipeline. Pure data: the runner follows it, the graph renderer draws it.

A stage returns an `Outcome`; the table maps (state, outcome) to the next state. Stages never choose the next
state themselves. Every non-terminal state also has a LIMIT transition to FAIL, taken by the runner when a run
limit (time, stage executions, fix attempts, consecutive failures) is reached.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class State(StrEnum):
    INTENT = "INTENT"
    GENERATE = "GENERATE"
    BUILD = "BUILD"
    VALIDATE = "VALIDATE"
    DEPLOY = "DEPLOY"
    CONNECT = "CONNECT"
    ACCEPT = "ACCEPT"  # the acceptance tests against the live deployment
    LOAD = "LOAD"  # the offered load against the live deployment, checked against the objectives
    CHART = "CHART"
    FIX = "FIX"
    REFINE = "REFINE"  # the first state of `kubevibe refine`: a follow-up change to a parent run's files
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    # Outcomes of FIX: where the pipeline resumes, decided by which artifacts the fix changed.
    RESUME_BUILD = "resume-build"  # code, Dockerfile or requirements changed
    RESUME_VALIDATE = "resume-validate"  # only the manifest changed
    REGENERATE = "regenerate"  # FIXFZERO=1: throw the artifacts away and generate from scratch
    LIMIT = "limit"  # taken by the runner, never returned by a stage


class Transition(NamedTuple):
    source: State
    outcome: Outcome
    target: State


START = State.INTENT
# Where runs may begin: a new request at INTENT, a refinement of an earlier run at REFINE (then Build onwards).
REFINE_START = State.REFINE
ENTRY_STATES = frozenset({START, REFINE_START})
TERMINAL = frozenset({State.SUCCESS, State.FAIL})

# The order of the main path; used for display and to pick "the earliest invalidated stage".
PIPELINE = (State.INTENT, State.GENERATE, State.BUILD, State.VALIDATE, State.DEPLOY, State.CONNECT, State.ACCEPT,
            State.LOAD,
            State.CHART)

_T = Transition
TRANSITIONS: tuple[Transition, ...] = (
    _T(State.INTENT, Outcome.OK, State.GENERATE),
    # Intent and Generate have no artifacts to fix yet: a failed answer is asked again (bounded by the limits).
    _T(State.INTENT, Outcome.FAILED, State.INTENT),
    _T(State.GENERATE, Outcome.OK, State.BUILD),
    _T(State.GENERATE, Outcome.FAILED, State.GENERATE),
    _T(State.BUILD, Outcome.OK, State.VALIDATE),
    _T(State.BUILD, Outcome.FAILED, State.FIX),
    _T(State.VALIDATE, Outcome.OK, State.DEPLOY),
    _T(State.VALIDATE, Outcome.FAILED, State.FIX),
    _T(State.DEPLOY, Outcome.OK, State.CONNECT),
    _T(State.DEPLOY, Outcome.FAILED, State.FIX),
    _T(State.CONNECT, Outcome.OK, State.ACCEPT),
    _T(State.CONNECT, Outcome.FAILED, State.FIX),
    _T(State.ACCEPT, Outcome.OK, State.LOAD),
    _T(State.ACCEPT, Outcome.FAILED, State.FIX),
    _T(State.LOAD, Outcome.OK, State.CHART),
    _T(State.LOAD, Outcome.FAILED, State.FIX),
    _T(State.CHART, Outcome.OK, State.SUCCESS),
    _T(State.CHART, Outcome.FAILED, State.FIX),
    _T(State.FIX, Outcome.RESUME_BUILD, State.BUILD),
    _T(State.FIX, Outcome.RESUME_VALIDATE, State.VALIDATE),
    _T(State.FIX, Outcome.REGENERATE, State.GENERATE),
    # A fix whose LLM call failed or that changed nothing is a failure: ask for a fix again (bounded).
    _T(State.FIX, Outcome.FAILED, State.FIX),
    # Refine: the follow-up's changes to the parent's files need a new image; an unusable answer is asked again.
    _T(State.REFINE, Outcome.OK, State.BUILD),
    _T(State.REFINE, Outcome.FAILED, State.REFINE),
) + tuple(_T(s, Outcome.LIMIT, State.FAIL) for s in State if s not in TERMINAL)

# The states during which the deployment Deploy made stays alive. The runner tears it down (cleanup
# "deployment") after any transition to a state outside this set (other than DEPLOY itself), and at every end.
DEPLOYED_STATES: frozenset[State] = frozenset({State.CONNECT, State.ACCEPT, State.LOAD})

# A deployment does not survive an interruption (it is always torn down), so a resumed run that stopped
# in a state that needs it must deploy again first.
RESUME_REDIRECT: dict[State, State] = {s: State.DEPLOY for s in DEPLOYED_STATES}

_NEXT: dict[tuple[State, Outcome], State] = {(t.source, t.outcome): t.target for t in TRANSITIONS}
if len(_NEXT) != len(TRANSITIONS):  # pragma: no cover - guards edits of the table
    raise AssertionError("the transition table has two targets for one (state, outcome)")


class UnknownTransition(Exception):
    pass


def next_state(state: State, outcome: Outcome) -> State:
    try:
        return _NEXT[(state, outcome)]
    except KeyError:
        raise UnknownTransition(f"no transition from {state} on {outcome}") from None
