"""One module per pipeline state, all with the same shape: `run(ctx: RunContext) -> StageResult`.

`STAGE_FUNCTIONS` maps each state of the transition table to its function ("module:function", imported
lazily so that, e.g., the container stages' dependencies are only loaded when a run gets there).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from kubevibe.pipeline.fsm import State

STAGE_FUNCTIONS: dict[State, str] = {
    State.INTENT: "kubevibe.stages.intent:run",
    State.GENERATE: "kubevibe.stages.generate:run",
    State.BUILD: "kubevibe.stages.build:run",
    State.VALIDATE: "kubevibe.stages.validate:run",
    State.DEPLOY: "kubevibe.stages.deploy:run",
    State.CONNECT: "kubevibe.stages.connect:run",
    State.LOAD: "kubevibe.stages.load:run",
    State.CHART: "kubevibe.stages.chart:run",
    State.FIX: "kubevibe.stages.fix:run",
    State.REFINE: "kubevibe.stages.refine:run",
}


def stage_function(state: State) -> Callable:
    module_name, _, func = STAGE_FUNCTIONS[state].partition(":")
    return getattr(importlib.import_module(module_name), func)
