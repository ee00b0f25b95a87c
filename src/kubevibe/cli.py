"""The `kubevibe` command: parse, resolve settings, dispatch, render. No pipeline logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from kubevibe import __version__
from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.pipeline.context import Interrupted

app = typer.Typer(
    name="kubevibe",
    help="Turn a natural-language request into a built, validated, deployed and charted Kubernetes service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text, never rich markup: "HOST[:PORT][/PATH]" or "[env X]" are literal. This one
    # setting covers every command, so a new help string with brackets cannot break `--help` again.
    rich_markup_mode=None,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNVERIFIED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _version(value: bool) -> None:
    if value:
        out.print(f"kubevibe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    pass


# Options shared by `run` (and the experiment harness later). Each maps to one Settings field.
LlmOpt = Annotated[Optional[str], typer.Option("--llm", help="auto, ollama://HOST:PORT, openai://HOST:PORT/v1, "
                                               "embedded, replay:PATH  [env KUBEVIBE_LLM]")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name  [env MODEL]")]
KubeconfigOpt = Annotated[Optional[Path], typer.Option("--kubeconfig", help="kubeconfig file for the kubernetes "
                                                       "target  [env KUBECONFIG]")]
ContextOpt = Annotated[Optional[str], typer.Option("--context", help="kubeconfig context for the kubernetes target  "
                                                   "[env KUBEVIBE_CONTEXT]")]
PushOpt = Annotated[Optional[str], typer.Option("--push", help="Push the final image to REGISTRY/PATH with your own "
                                                "podman/docker login (e.g. ghcr.io/me)  [env KUBEVIBE_PUSH]")]

# Where an experiment's (or bench's) cells run: docs/ray.md.
ExecutorOpt = Annotated[Optional[str], typer.Option("--executor", help="Where the runs execute: local (processes "
                                                    "here) or ray (tasks on a Ray cluster)  [env KUBEVIBE_EXECUTOR]")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="With --executor ray: the head's "
                                                      "address, HOST:PORT; none: a local Ray "
                                                      "instance for the experiment  [env RAY_ADDRESS]")]

PolicyOpt = Annotated[Optional[str], typer.Option("--policy", help="Pod Security Standards level the manifests must "
                                                  "meet: baseline or restricted  [env KUBEVIBE_POLICY]")]


@app.command()
def run(
    prompt: Annotated[Optional[str], typer.Argument(help="The request; '-' or nothing reads standard input.")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", "-f", help="Read the request from a file.")] = None,
    llm: LlmOpt = None,
    model: ModelOpt = None,
    intent_method: Annotated[Optional[str], typer.Option("--intent-method", help="none, curated-llm-zero-shot, "
                             "curated-llm-few-shot, only-json-as-format, json-with-required  [env INTENT_METHOD]")] = None,
    ival_method: Annotated[Optional[str], typer.Option("--ival-method", help="none or llm-as-a-judge  [env IVAL_METHOD]")] = None,
    fix_from_zero: Annotated[Optional[bool], typer.Option("--fix-from-zero/--fix-minimal",
                             help="Regenerate from scratch on a failure instead of a minimal fix  [env FIXFZERO]")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds for the whole run  [env TIMEOUT]")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", "-n", help="Most stage executions  [env N]")] = None,
    max_fix_attempts: Annotated[Optional[int], typer.Option("--max-fixes", help="Most Fix executions")] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="auto, scaffold or full")] = None,
    builder: Annotated[Optional[str], typer.Option("--builder", help="podman or docker")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="local or kubernetes")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    registry: Annotated[Optional[str], typer.Option("--registry", help="Where images go: HOST[:PORT][/PATH] (pushed), "
                        "or kind://CLUSTER (loaded into kind's nodes); needed for --target kubernetes  "
                        "[env KUBEVIBE_REGISTRY]")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where run directories go (default ./runs)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed for the LLM")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature")] = None,
    k8s_version: Annotated[Optional[str], typer.Option("--k8s-version", help="Kubernetes version to validate against")] = None,
    allow_node_port: Annotated[Optional[bool], typer.Option("--allow-node-port/--no-node-port")] = None,
    policy: PolicyOpt = None,
    push: PushOpt = None,
    slo: Annotated[Optional[Path], typer.Option("--slo", help="YAML file of service-level objectives (load.rps, "
                   "load.duration_s, latency_ms.p50/p95/p99, error_rate_max, memory_mib_max) checked under load "
                   "by the LOAD stage  [env KUBEVIBE_SLO]")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file  [env KUBEVIBE_CONFIG]")] = None,
    style: Annotated[Optional[str], typer.Option("--style", help="structured (one schema-constrained request per "
                     "stage) or conversational (one chat conversation, files in fenced blocks)  "
                     "[env KUBEVIBE_STYLE]")] = None,
    tests: Annotated[Optional[Path], typer.Option("--tests", help="Acceptance tests: a Tavern file (*.tavern.yaml; "
                     "the service's URL is {base_url})  [env KUBEVIBE_TESTS]")] = None,
    tests_source: Annotated[Optional[str], typer.Option("--tests-source", hidden=True,
                            help="user or benchmark (set by `kubevibe bench`)")] = None,
    test_writer: Annotated[Optional[bool], typer.Option("--test-writer/--no-test-writer", help="Have an LLM write "
                           "acceptance tests before Generate (default: on, off for the embedded model)  "
                           "[env KUBEVIBE_TEST_WRITER]")] = None,
    test_llm: Annotated[Optional[str], typer.Option("--test-llm", help="LLM of the test writer (default: the "
                        "generator's)  [env KUBEVIBE_TEST_LLM]")] = None,
    test_model: Annotated[Optional[str], typer.Option("--test-model", help="Model of the test writer  "
                          "[env KUBEVIBE_TEST_MODEL]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON summary.")] = False,
) -> None:
    """Run the whole pipeline for one request."""
    from kubevibe.pipeline import signals

    flags = dict(llm=llm, model=model, intent_method=intent_method, ival_method=ival_method,
                 fix_from_zero=fix_from_zero, timeout=timeout, max_steps=max_steps,
                 max_fix_attempts=max_fix_attempts, strategy=strategy, builder=builder, target=target,
                 runs_dir=runs_dir, seed=seed, temperature=temperature, k8s_version=k8s_version,
                 allow_node_port=allow_node_port, kubeconfig=kubeconfig, context=context, registry=registry,
                 push=push, slo=slo, style=style, tests=tests, tests_source=tests_source, test_writer=test_writer,
                 test_llm=test_llm, test_model=test_model, policy=policy)
    with signals.handled(exiting=True):  # from here on SIGINT and SIGTERM end the run the same way, with a record
        _run_command(prompt, prompt_file, flags, config, quiet=quiet, as_json=as_json)


def _run_command(prompt: str | None, prompt_file: Path | None, flags: dict, config: Path | None, *, quiet: bool,
                 as_json: bool) -> None:
    from kubevibe.pipeline import signals
    from kubevibe.pipeline.session import new_session
    from kubevibe.settings import export_machine_settings, resolve_settings
    from kubevibe.targets.images import destination_of

    text = _read_prompt(prompt, prompt_file)
    resolved = resolve_settings(flags=flags, config_path=config)

    destination_of(resolved.settings.registry, resolved.settings.target)  # a bad --registry fails now, not at Build
    _check_push(resolved.settings.push)
    export_machine_settings(resolved)
    # From the run directory's creation to the Runner's start a signal is held, then recorded by the Runner.
    with signals.deferred():
        session = new_session(text, resolved)
        _run_session(session, quiet=quiet, as_json=as_json)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to continue.")],
    llm: LlmOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Continue an interrupted run from its last completed stage."""
    from kubevibe.pipeline import signals
    from kubevibe.pipeline.session import resume_session

    with signals.handled(exiting=True), signals.deferred():  # held until the Runner starts, then recorded
        session = resume_session(run_dir, llm_override=llm)
        _run_session(session, quiet=quiet, as_json=as_json)


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Summarise a run: outcome, transitions, what was verified."""
    from kubevibe.console import print_run_summary
    from kubevibe.record.show import run_summary

    summary = run_summary(run_dir)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    print_run_summary(out, summary)


@app.command()
def graph(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
) -> None:
    """Draw the run's FSM execution graph (DOT, and SVG when Graphviz is installed) into the run directory."""
    from kubevibe.pipeline.graph import write_graph
    from kubevibe.record.rundir import RunDir

    rundir = RunDir.open(run_dir)
    dot_path, svg_path = write_graph(rundir.read_jsonl("events.jsonl"), rundir.path)
    out.print(f"wrote {dot_path}" + (f" and {svg_path}" if svg_path else " (install graphviz for the SVG)"))


@app.command()
def setup(
    stop_registry: Annotated[bool, typer.Option("--stop-registry", help="Stop the loopback registry KubeVibe "
                                                "started, and nothing else.")] = False,
) -> None:
    """Prepare the local engine: podman config, base image, registry (a service of the tool's own, reused by
    every run until stopped with --stop-registry)."""
    from kubevibe.localinfra.doctor import setup as set_up
    from kubevibe.localinfra.registry import stop_registry as stop

    if stop_registry:
        stopped = stop()
        out.print("registry stopped" if stopped else "no registry started by KubeVibe was running")
        return
    set_up(progress=lambda msg: out.print(msg, highlight=False, markup=False))


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files (multi-document YAML), Dockerfiles, chart "
                                                "directories, run directories, or directories holding them.")],
    policy: PolicyOpt = None,
    k8s_version: Annotated[Optional[str], typer.Option("--k8s-version", help="Kubernetes schema version")] = None,
    allow_node_port: Annotated[Optional[bool], typer.Option("--allow-node-port/--no-node-port")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON report.")] = False,
) -> None:
    """Check files offline as Validate and the Dockerfile pre-check would: exit 0 nothing refused, 1 refused,
    2 bad input."""
    from kubevibe.check import check_paths, summary
    from kubevibe.settings import resolve_settings

    settings = resolve_settings(flags=dict(policy=policy, k8s_version=k8s_version,
                                           allow_node_port=allow_node_port)).settings
    targets, findings = check_paths(paths, level=settings.policy, k8s_version=settings.k8s_version,
                                    allow_node_port=settings.allow_node_port)
    report = summary(findings, targets, settings.policy)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        for finding in findings:
            out.print(finding.text(), highlight=False, markup=False)
        verdict = "refused" if report["refused"] else "nothing refused"
        out.print(f"{verdict}: {report['refused']} refused, {report['warnings']} warning"
                  f"{'s' if report['warnings'] != 1 else ''} in {len(targets)} file{'s' if len(targets) != 1 else ''}"
                  f" (Pod Security Standards {settings.policy}, plus KubeVibe's own rules)",
                  highlight=False, markup=False)
    raise typer.Exit(report["exit_code"])


@app.command()
def doctor() -> None:
    """What is present, what is missing, and the command that installs it."""
    from kubevibe.localinfra.doctor import doctor as run_checks

    checks = run_checks()
    missing = 0
    for check in checks:
        mark = "[green]✓[/]" if check.ok else ("[red]✗[/]" if check.required else "[yellow]-[/]")
        out.print(f"{mark} {check.name:<24} {escape(check.detail)}", highlight=False)
        if not check.ok:
            missing += int(check.required)
            if check.fix_command:
                out.print(f"    fix: {check.fix_command}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if missing == 0 else EXIT_FAIL)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted, and why.")] = False,
    images: Annotated[bool, typer.Option("--images", help="Also remove run images (podman) and their tags in "
                                         "KubeVibe's local registry.")] = False,
    where: Annotated[str, typer.Option("--target", help="local, kubernetes or all")] = "all",
    older_than: Annotated[float, typer.Option("--older-than", help="Seconds: leftovers of a run that may still be "
                                              "going are kept until the run is this old")] = 3600.0,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where run directories are (default ./runs)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file  [env KUBEVIBE_CONFIG]")] = None,
) -> None:
    """Delete what crashed runs left behind (only objects labelled by KubeVibe): podman pods, containers and
    networks (with --images: run images and local registry tags), and cluster namespaces."""
    from kubevibe import gc as garbage
    from kubevibe.settings import resolve_settings

    settings = resolve_settings(flags=dict(kubeconfig=kubeconfig, context=context, runs_dir=runs_dir),
                                config_path=config).settings
    code = garbage.command(lambda line: out.print(line, highlight=False, markup=False), where=where,
                           include_images=images, dry_run=dry_run, older_than=older_than, settings=settings)
    raise typer.Exit(code)


@app.command()
def experiment(
    plan: Annotated[Optional[Path], typer.Argument(help="PLAN.yaml, or an experiment directory to continue. "
                                                   "Without it, the plan comes from the flags below.")] = None,
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Experiment directory "
                                                      "(default ./experiments/<plan name>)")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", help="Runs at a time (default: the plan's, "
                                                   "else 1)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the matrix and the number of runs; run nothing.")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Run again the cells whose run ended "
                                               "with an error (the tool's, not the model's).")] = False,
    restart_interrupted: Annotated[bool, typer.Option("--restart-interrupted", help="Start interrupted runs "
                                                      "afresh instead of resuming them.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="Without a plan: the experiment's name")] = None,
    llm: LlmOpt = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Without a plan: a model name "
                                                       "(repeat for several)")] = None,
    intent_method: Annotated[Optional[list[str]], typer.Option("--intent-method", help="Without a plan: an "
                                                               "intent method (repeat for several)")] = None,
    strategy: Annotated[Optional[list[str]], typer.Option("--strategy", help="Without a plan: auto, scaffold "
                                                          "or full (repeat for several)")] = None,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Without a plan: structured or "
                                                       "conversational (repeat for both)")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Without a plan: a request "
                                                        "(repeat for several)")] = None,
    prompts_file: Annotated[Optional[Path], typer.Option("--prompts-file", help="Without a plan: one request "
                                                         "per line")] = None,
    repetitions: Annotated[Optional[int], typer.Option("--repetitions", "-r", help="Without a plan: runs per "
                                                       "cell")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Without a plan: seconds per run")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", "-n", help="Without a plan: most stage "
                                                     "executions per run")] = None,
    max_fix_attempts: Annotated[Optional[int], typer.Option("--max-fixes", help="Without a plan: most Fix "
                                                            "executions per run")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Without a plan: base seed (repetition r: "
                                                "seed + r)")] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Run a matrix of models x intent methods x strategies x styles x prompts x repetitions; resumable."""
    from kubevibe.experiments import commands

    flags = dict(name=name, llm=llm, models=model or [], intent_methods=intent_method or [],
                 strategies=strategy or [], styles=style or [], prompts=prompt or [], prompts_file=prompts_file,
                 repetitions=repetitions,
                 settings=dict(timeout=timeout, max_steps=max_steps, max_fix_attempts=max_fix_attempts, seed=seed))
    code = commands.experiment(out, plan_path=plan, directory=directory, workers=workers, dry_run=dry_run,
                               retry_errors=retry_errors, restart_interrupted=restart_interrupted, flags=flags,
                               executor=executor, ray_address=ray_address)
    raise typer.Exit(code)


@app.command()
def bench(
    suite: Annotated[Optional[str], typer.Argument(help="A folder of tasks, or `default` (the shipped suite).")] = None,
    llm: LlmOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name")] = None,
    repeat: Annotated[int, typer.Option("--repeat", "-k", help="Runs per task")] = 1,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Runs at a time")] = 1,
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Experiment directory (default "
                                                      "experiments/bench-SUITE-MODEL)")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per run")] = None,
    max_fix_attempts: Annotated[Optional[int], typer.Option("--max-fixes", help="Most Fix executions per run "
                                                            "(the k of passItr@k)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Base seed (repetition r: seed + r)")] = None,
    check_references: Annotated[bool, typer.Option("--check-references", help="Only check the suite: every "
                                "reference passes its tests and every reference/wrong.py fails them (no model).")] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Run KubeVibe-Bench: every task through the whole pipeline with its hidden acceptance tests."""
    from kubevibe.experiments import commands

    settings = dict(timeout=timeout, max_fix_attempts=max_fix_attempts, seed=seed)
    raise typer.Exit(commands.bench(out, suite=suite, llm=llm, model=model, repeat=repeat, workers=workers,
                                    directory=directory, check_references=check_references, settings=settings,
                                    executor=executor, ray_address=ray_address))


@app.command()
def report(
    source: Annotated[Path, typer.Argument(help="An experiment directory (or a directory of runs).")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the report "
                                                    "(default SOURCE/report)")] = None,
    csv_dir: Annotated[Optional[Path], typer.Option("--csv", help="Only export the tables as CSV files into "
                                                    "this directory.")] = None,
) -> None:
    """Write a static HTML report (works offline): summary, plots, a page per run."""
    from kubevibe.experiments import commands

    raise typer.Exit(commands.report(out, source=source, out=out_dir, csv_dir=csv_dir))


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Experiment A (directory).")],
    b: Annotated[Path, typer.Argument(help="Experiment B (directory).")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write the comparison as an HTML page "
                                                 "(a .html file, or a directory for index.html).")] = None,
) -> None:
    """Two experiments side by side: success with intervals, the difference, fixes, stability."""
    from kubevibe.experiments import commands

    raise typer.Exit(commands.compare(out, a=a, b=b, html=html))


# --- the user's loop: refine a run, take the result away, list the runs (issue 17) -----------------------------------


def _check_push(push: str | None) -> None:
    if push:
        from kubevibe.publish import check_push_target

        check_push_target(push)  # a bad --push fails now, not after the whole run


@app.command()
def refine(
    run_dir: Annotated[Path, typer.Argument(help="The run to start from (its last good revision of the files).")],
    followup: Annotated[str, typer.Argument(help="What to change, e.g. \"add GET /cards that lists the card "
                                            "types\".")],
    llm: LlmOpt = None,
    model: ModelOpt = None,
    tests: Annotated[Optional[Path], typer.Option("--tests", help="Acceptance tests (Tavern) that replace the "
                                                  "parent's")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds for the whole run  [env TIMEOUT]")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", "-n", help="Most stage executions  [env N]")] = None,
    max_fix_attempts: Annotated[Optional[int], typer.Option("--max-fixes", help="Most Fix executions")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where the new run goes (default: next to "
                                                     "the parent)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed for the LLM")] = None,
    push: PushOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file  [env KUBEVIBE_CONFIG]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON summary.")] = False,
) -> None:
    """A new run that changes an earlier run's service as a follow-up request says, then builds, checks and
    charts it again (settings not given are the parent's)."""
    from kubevibe.pipeline import signals
    from kubevibe.pipeline.refine import refine_session
    from kubevibe.settings import export_machine_settings, resolve_settings

    flags = dict(llm=llm, model=model, timeout=timeout, max_steps=max_steps, max_fix_attempts=max_fix_attempts,
                 runs_dir=runs_dir, seed=seed, push=push)
    resolved = resolve_settings(flags=flags, config_path=config)
    _check_push(resolved.settings.push)
    export_machine_settings(resolved)
    # As for `run`: SIGINT and SIGTERM end the refine with a record; held until the Runner starts.
    with signals.handled(exiting=True), signals.deferred():
        session = refine_session(run_dir, followup, resolved, tests=tests)
        _run_session(session, quiet=quiet, as_json=as_json)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="The run to export.")],
    directory: Annotated[Path, typer.Argument(help="The folder to write the project into (empty or new).")],
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder, replacing the exported "
                                        "files.")] = False,
    push: Annotated[Optional[str], typer.Option("--push", help="Push the run's image to REGISTRY/PATH with your "
                                                "own podman/docker login, and name it in the chart's values")] = None,
    builder: Annotated[Optional[str], typer.Option("--builder", help="podman or docker (for --push)")] = None,
) -> None:
    """A clean project folder: service source, requirements, Dockerfile, Helm chart, Tavern tests, README."""
    from kubevibe.export import check_target, export_run, read_run
    from kubevibe.publish import push_image

    image = None
    if push:
        _check_push(push)
        facts = read_run(run_dir)  # a bad RUN fails before anything is pushed
        source = facts.run.image or facts.state.get("image")
        if not source:
            raise UsageError(f"Run {facts.rundir.run_id} has no image to push.")
        check_target(directory, force)  # a folder that cannot take the export is refused before the push
        record = push_image(source, push, builder_name=builder or facts.run.settings.get("builder")
                            or "podman")
        if not record.ok:
            err.print(f"[red]error:[/] {escape(record.error or 'push failed')}", highlight=False)
            raise typer.Exit(EXIT_FAIL)
        out.print(f"pushed {record.image}", highlight=False, markup=False)
        image = record.image
    result = export_run(run_dir, directory, force=force, image=image)
    out.print(f"exported {len(result.files)} files to {result.directory}"
              + (f"; tests: {result.tests_source}" if result.tests_source else "; no tests")
              + (f"; chart image {result.image}" if result.image else ""), highlight=False, markup=False)


def runs(
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where run directories are (default ./runs)")] = None,
    outcome: Annotated[Optional[str], typer.Option("--outcome", help="Only runs with this outcome (success, fail, "
                                                   "unverified, error, interrupted, running)")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only runs of this model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file  [env KUBEVIBE_CONFIG]")] = None,
) -> None:
    """The runs under the runs directory, newest first: outcome, verdict, request, age, lineage."""
    from kubevibe.console import print_run_rows
    from kubevibe.record.listing import list_runs
    from kubevibe.settings import resolve_settings

    root = resolve_settings(flags=dict(runs_dir=runs_dir), config_path=config).settings.runs_dir
    rows = list_runs(Path(root), outcome=outcome, model=model)
    if as_json:
        out.print_json(json.dumps([r.model_dump() for r in rows]))
        return
    if not rows:
        out.print(f"no runs under {root}" + (" matching the filters" if outcome or model else ""))
        return
    print_run_rows(out, rows)


app.command("runs")(runs)
app.command("ls", help="Alias of `runs`.")(runs)


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    if prompt_file is not None:
        if prompt is not None:
            raise UsageError("Give the request either as an argument or with --prompt-file, not both.")
        try:
            return prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"Cannot read the prompt file {prompt_file}: {exc.strerror}.") from None
        except UnicodeDecodeError:
            raise UsageError(f"The prompt file {prompt_file} is not UTF-8 text.") from None
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError('No request given: kubevibe run "Develop a credit card validation microservice".')
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8", "surrogateescape")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"The request on standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                             f"offset {exc.start}).") from None
    return prompt


def _run_session(session, *, quiet: bool, as_json: bool) -> None:
    from kubevibe.console import ConsoleReporter, print_run_end
    from kubevibe.record.show import run_summary

    show_progress = not (quiet or as_json)
    if show_progress:
        llm = session.ctx.llm
        out.print(f"run {session.ctx.run_id} → {session.path}", highlight=False, markup=False)
        reason = f" ({session.choice.reason})" if session.choice else ""
        out.print(f"llm: {llm.describe()}{reason}; strategy: {session.ctx.state.strategy}; "
                  f"style: {session.ctx.settings.style}", highlight=False, markup=False)
    reporter = ConsoleReporter(out) if show_progress else None
    end = session.run(reporter)
    summary = run_summary(session.path)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
    else:
        print_run_end(out, end, summary, session.path, quiet=quiet)
    code = {"success": EXIT_OK, "unverified": EXIT_UNVERIFIED, "interrupted": EXIT_INTERRUPTED}.get(end.outcome,
                                                                                                EXIT_FAIL)
    raise typer.Exit(code)


def main() -> None:
    """Entry point: every error a user can cause ends in one sentence and an exit code, never a traceback.

    Usage errors of the command line itself (unknown flag, bad type) are typer's: usage text and exit 2.
    """
    try:
        from kubevibe.preflight import check_argv

        check_argv(sys.argv)  # before anything is created
        app()  # standalone mode: typer turns typer.Exit and its own usage errors into exit codes
    except KubeVibeError as exc:
        err.print(f"[red]error:[/] {escape(exc.message)}", highlight=False)
        if exc.hint:
            err.print(f"hint: {exc.hint}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):  # before a run directory existed: nothing to record
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback only on request
        from kubevibe.settings import debug_traceback

        if debug_traceback():
            raise
        err.print(f"[red]internal error:[/] {escape(repr(exc))} (set KUBEVIBE_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(EXIT_FAIL)


if __name__ == "__main__":
    main()
