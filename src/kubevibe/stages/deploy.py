"""Deploy: run the manifest's workloads with the built image on the chosen target, and wait until they run.

Succeeds when every container runs (and serves or stays up); Connect then checks the service over HTTP. On
failure the evidence is the engine's output, the container states and the last log lines of a container that
exited ("container app exited with code 1; last log lines: ..."), and the deployment is torn down at once:
Fix gets the evidence, and the next Deploy starts from nothing. On success the handle stays with the context
(`ctx.hold_deployment`): Connect, Accept and Load use it, and the runner tears it down.
"""

from __future__ import annotations

from kubevibe.errors import KubeVibeError
from kubevibe.manifests import ManifestError, load_manifest
from kubevibe.pipeline.artifacts import MANIFEST
from kubevibe.pipeline.context import Evidence, RunContext, StageResult
from kubevibe.stages import targeting
from kubevibe.targets import TargetFailure

# A start slower than this is reported (with the CPU limit), so a later timeout is not a surprise.
SLOW_START_S = 10.0


def run(ctx: RunContext) -> StageResult:
    if not ctx.state.image:
        raise KubeVibeError("Deploy has no image to run: Build has not succeeded in this run.")
    try:
        docs = load_manifest(ctx.artifacts.get(MANIFEST))
    except ManifestError as exc:  # Validate passed this file, but a resumed run may arrive with a changed one
        return StageResult.failed(f"{MANIFEST} cannot be read: {exc.message}",
                                  evidence=[Evidence(kind="finding", title=exc.message)])  # fmt: skip
    target = targeting.target_of(ctx)
    try:
        handle = target.deployment(targeting.request(ctx, docs, ctx.state.image))
        # Held before anything exists: an interrupt from here on still removes what was created, and the
        # previous Deploy of this run is torn down first.
        ctx.hold_deployment(handle)
        handle.start()
        # Until the declared ports listen, a container exits, or KUBEVIBE_READY_TIMEOUT (recorded in run.json).
        info = handle.wait_ready(ctx.timeout(ctx.settings.ready_timeout))
    except TargetFailure as failure:
        ctx.run_cleanup("deployment")  # logs are already in the evidence and the stage directory
        # The played copy's notes stay out of failure evidence: replicas or dropped ports are not what broke,
        # and Fix should not be tempted to "repair" them.
        notes = failure.info.notes if failure.info else []
        return StageResult.failed(f"Deploy failed: {failure.summary}", evidence=failure.evidence,
                                  updates={"deployment": None, "stand_ins": _stand_ins(ctx, notes)})  # fmt: skip
    handle.logs(ctx.stage_dir / "logs")  # the start-up logs, kept with the run
    pods = ", ".join(f"{p.name} ({p.ip or 'no address'})" for p in info.pods)
    evidence = _notes_evidence(info.notes)
    if info.ready_s is not None and info.ready_s > SLOW_START_S:
        limits = ", ".join(f"{v} for container {k}" for k, v in info.cpu_limits.items()) or "none set"
        evidence.append(Evidence(kind="note", title=f"slow start: the service took {info.ready_s:.0f}s to listen "
                                 f"(CPU limit: {limits}; KUBEVIBE_READY_TIMEOUT {ctx.settings.ready_timeout:g}s)"))
    metrics: dict[str, object] = {"pods": len(info.pods)}
    if info.ready_s is not None:
        metrics["ready_s"] = info.ready_s
    return StageResult.ok(
        f"Deployed on {target.name}: {pods}" + (f"; listening after {info.ready_s:.0f}s" if info.ready_s else ""),
        evidence=evidence,
        updates={"deployment": info.model_dump(mode="json"), "stand_ins": _stand_ins(ctx, info.notes)},
        metrics=metrics,
    )


def _stand_ins(ctx: RunContext, notes: list[str]) -> list[dict[str, str]]:
    """The target's changes to the applied copy, as run.json stand-ins: what would differ on a real cluster."""
    new = [{"kind": "dropped-field" if "dropped" in note else f"{ctx.settings.target}-target", "detail": note}
           for note in notes]  # fmt: skip
    return ctx.state.stand_ins_plus(new)


def _notes_evidence(notes: list[str]) -> list[Evidence]:
    if not notes:
        return []
    return [Evidence(kind="note", title="what the target changed in the played copy of the manifest",
                     detail="\n".join(notes))]  # fmt: skip
