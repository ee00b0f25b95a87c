"""Generate: the artifacts, by the run's style and strategy (the strategies are in kubevibe.generation).

  full      the reference tool's way: one structured request for all four files (generation/full.py)
  scaffold  for small models: the tool renders Dockerfile, manifest and service skeleton from the intent and
            the nearest reference deployment; the model writes only the handler bodies (generation/scaffold.py)
  the conversational style writes the files in one chat instead (stages/conversational.py)
"""

from __future__ import annotations

from kubevibe.generation.full import generate_full
from kubevibe.pipeline.context import RunContext, StageResult


def run(ctx: RunContext) -> StageResult:
    if ctx.settings.style == "conversational":
        from kubevibe.stages import conversational

        return conversational.generate(ctx)
    if ctx.state.strategy == "scaffold":
        from kubevibe.generation import scaffold

        return scaffold.generate(ctx)
    return generate_full(ctx)
