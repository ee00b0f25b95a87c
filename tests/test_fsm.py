from kubevibe.pipeline import fsm
from kubevibe.pipeline.fsm import Outcome, State, next_state
from kubevibe.stages import STAGE_FUNCTIONS


def test_every_non_terminal_state_has_a_stage_and_a_limit_exit():
    for state in State:
        if state in fsm.TERMINAL:
            assert state not in STAGE_FUNCTIONS
            continue
        assert state in STAGE_FUNCTIONS
        assert next_state(state, Outcome.LIMIT) == State.FAIL


def test_main_path_reaches_success():
    state = fsm.START
    path = [state]
    while state not in fsm.TERMINAL:
        state = next_state(state, Outcome.OK)
        path.append(state)
    assert path == list(fsm.PIPELINE) + [State.SUCCESS]


def test_container_stage_failures_go_to_fix_and_fix_resumes_where_invalidated():
    for state in (State.BUILD, State.VALIDATE, State.DEPLOY, State.CONNECT, State.LOAD, State.CHART):
        assert next_state(state, Outcome.FAILED) == State.FIX
    assert next_state(State.FIX, Outcome.RESUME_BUILD) == State.BUILD
    assert next_state(State.FIX, Outcome.RESUME_VALIDATE) == State.VALIDATE
    assert next_state(State.FIX, Outcome.REGENERATE) == State.GENERATE
    # a failed fix is never a success: it does not lead back into the pipeline
    assert next_state(State.FIX, Outcome.FAILED) == State.FIX


def test_every_state_is_reachable_from_an_entry_state():
    seen, todo = set(fsm.ENTRY_STATES), list(fsm.ENTRY_STATES)
    while todo:
        s = todo.pop()
        for t in fsm.TRANSITIONS:
            if t.source == s and t.target not in seen:
                seen.add(t.target)
                todo.append(t.target)
    assert seen == set(State)


def test_unknown_transition_raises():
    import pytest

    with pytest.raises(fsm.UnknownTransition):
        next_state(State.BUILD, Outcome.RESUME_BUILD)


def test_resume_outcome_routing():
    from kubevibe.pipeline.artifacts import resume_outcome

    assert resume_outcome([]) is None
    assert resume_outcome(["vibe.yaml"]) == Outcome.RESUME_VALIDATE
    assert resume_outcome(["vibe.yaml", "Dockerfile"]) == Outcome.RESUME_BUILD
    assert resume_outcome(["myapp.py"]) == Outcome.RESUME_BUILD
    assert resume_outcome(["requirements.txt"]) == Outcome.RESUME_BUILD


def test_refine_goes_to_build_and_retries_an_unusable_answer():
    assert next_state(State.REFINE, Outcome.OK) == State.BUILD
    assert next_state(State.REFINE, Outcome.FAILED) == State.REFINE
def test_load_follows_connect_and_the_deployed_states_resume_at_deploy():
    assert next_state(State.CONNECT, Outcome.OK) == State.LOAD
    assert next_state(State.LOAD, Outcome.OK) == State.CHART
    assert fsm.DEPLOYED_STATES == {State.CONNECT, State.LOAD}
    assert all(fsm.RESUME_REDIRECT[s] == State.DEPLOY for s in fsm.DEPLOYED_STATES)
