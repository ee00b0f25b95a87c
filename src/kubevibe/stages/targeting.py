"""What stages hand a target, built from the run context in one place: the provider, the step's scope, Deploy's
request, and the deployment handle the runner holds (re-attached from state.json when this process has none).

Nothing below the stages sees the RunContext: targets get a `StepScope` / `DeployRequest` of plain values.
"""

from __future__ import annotations

from typing import Any

from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.pipeline.context import RunContext
from kubevibe.targets import Deployment, DeploymentInfo, DeployRequest, StepScope, Target, get_target, images
from kubevibe.targets.labels import RUN_LABEL, label_value


def target_of(ctx: RunContext, name: str | None = None) -> Target:
    """The provider of --target (or of a recorded deployment's target), made with the run's settings."""
    return get_target(name or ctx.settings.target, ctx.settings)


def scope(ctx: RunContext) -> StepScope:
    """This stage execution's scope: its directory and command log, the run's deadline and policy."""
    return StepScope(run_id=ctx.run_id, step=ctx.step, work_dir=ctx.stage_dir, log_file=ctx.log_file,
                     deadline=ctx.deadline, policy=ctx.settings.policy, allow_node_port=ctx.settings.allow_node_port,
                     image=ctx.state.image, image_preloaded=_image_preloaded(ctx), cleanups=ctx)  # fmt: skip


def request(ctx: RunContext, docs: list[dict[str, Any]], image: str) -> DeployRequest:
    """What Deploy asks the target to run."""
    base = scope(ctx).model_dump(exclude={"image"})
    return DeployRequest(**base, docs=docs, image=image, labels={RUN_LABEL: label_value(ctx.run_id)},
                         cleanups=ctx)  # fmt: skip


def deployment(ctx: RunContext, what: str) -> Deployment:
    """The live deployment for this stage: the handle Deploy gave the runner, else one re-attached from the
    recorded DeploymentInfo (a resumed run). Its commands go to this stage's log from now on."""
    if ctx.deployment is not None:
        return ctx.deployment.use(scope(ctx))
    if not ctx.state.deployment:
        raise KubeVibeError(f"{what} has no deployment to reach: Deploy has not succeeded in this run.")
    info = DeploymentInfo.model_validate(ctx.state.deployment)
    return target_of(ctx, info.target).attach(info, scope(ctx))


def _image_preloaded(ctx: RunContext) -> bool:
    try:
        return images.destination_of(ctx.settings.registry, ctx.settings.target).preloaded
    except UsageError:  # no registry setting where one is needed: Build has said so already
        return False
