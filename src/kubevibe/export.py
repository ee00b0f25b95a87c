"""`kubevibe export RUN DIR`: the run's result as a clean project folder a person would commit.

What DIR gets (from the run's last good revision, records/lineage.py, which for a finished run is the charted one):
  <service file>          the service source under the name its Dockerfile copies (run.json service_file, else
                          myapp.py)
  requirements.txt
  Dockerfile              exactly as the model wrote it: the base image it asked for. The local stand-in base
                          image is a build-time mapping of this machine (Build does it on a copy), never written here.
  chart/<name>/           the run's Helm chart (the directory, not only the .tgz); with --push (now, or at run time)
                          its values.yaml names the pushed image
  tests/acceptance.tavern.yaml, tests/tavern.config.yaml
                          the run's acceptance tests (Tavern), or, without them, the intent's declared test cases
                          written as Tavern tests; `{base_url}` is the service's address
  README.md               what the service does, its endpoints, how it was verified (with the stand-ins), and how
                          to build, push, install and test it

Safety: DIR must be empty (or missing) unless --force; a DIR that is a symlink is refused. Everything is written
into a staging directory inside DIR and then moved into place entry by entry; existing entries of those names are
replaced with --force (a symlink is unlinked, never followed). Nothing outside DIR is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubevibe.errors import UsageError
from kubevibe.intent import Intent, TestCase
from kubevibe.pipeline import artifacts as names
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.record.lineage import chain, last_good_revision
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import RunRecord
from kubevibe.record.show import tests_from, verification_line

ACCEPTANCE = Path("acceptance") / "acceptance.tavern.yaml"
TESTS_FILE = "tests/acceptance.tavern.yaml"
TAVERN_CONFIG = "tests/tavern.config.yaml"


@dataclass
class ExportResult:
    directory: Path
    files: list[str]
    image: str | None  # the image the chart's values name
    tests_source: str | None  # "acceptance:<source>", "intent", or None (no tests)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunFacts:
    """What an export needs to know about the run, read defensively from run.json and state.json."""

    rundir: RunDir
    run: RunRecord
    state: dict[str, Any]
    artifacts: ArtifactSet
    revision: int
    chart_dir: Path

    @property
    def intent(self) -> Intent | None:
        data = self.run.intent or self.state.get("intent")
        try:
            return Intent.model_validate(data) if data else None
        except ValueError:
            return None

    @property
    def service_file(self) -> str:
        name = self.run.service_file or self.state.get("service_file") or names.CODE
        return name if isinstance(name, str) and Path(name).name == name and name not in ("", ".", "..") else names.CODE


def read_run(path: Path) -> RunFacts:
    if not Path(path).is_dir():
        raise UsageError(f"There is no run at {path}: give a run directory (kubevibe runs lists them).")
    rundir = RunDir.open(Path(path))
    run = rundir.read_run()
    try:
        state = rundir.read_checkpoint().state or {}
    except UsageError:  # no checkpoint, or a damaged one: the state is unknown
        state = {}
    good = last_good_revision(rundir)
    charts = sorted(p.parent for p in (rundir.path / "chart").glob("*/Chart.yaml") if not p.parent.is_symlink())
    if good is None or not charts:
        raise UsageError(f"Run {rundir.run_id} did not get far enough to export: it has no "
                         f"{'built revision' if good is None else 'Helm chart'} (refine it or run the request again).")
    return RunFacts(rundir, run, state, ArtifactSet.read_from(rundir.revision_dir(good.revision)), good.revision,
                    charts[0])


# --- the target directory ---------------------------------------------------------------------------------------


def check_target(directory: Path, force: bool) -> None:
    """Whether DIR can take the export, without changing anything; one sentence (exit 2) when it cannot."""
    directory = Path(directory)
    if directory.is_symlink():
        raise UsageError(f"{directory} is a symbolic link; export writes only into a real directory.")
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"{directory} exists and is not a directory.")
        if any(directory.iterdir()) and not force:
            raise UsageError(f"{directory} is not empty; choose an empty folder, or pass --force to replace the "
                             "exported files in it.")
        if not _writable(directory):
            raise UsageError(f"Cannot write to {directory}: it is read-only.")
        return
    parent = next((p for p in directory.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"Cannot create {directory}: {parent} is not a directory.")
    if parent is not None and not _writable(parent):
        raise UsageError(f"Cannot create {directory}: {parent} is read-only.")


def prepare_target(directory: Path, force: bool) -> bool:
    """check_target(), then create DIR if missing; True if it was created here."""
    check_target(directory, force)
    directory = Path(directory)
    if directory.exists():
        return False
    try:
        directory.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"Cannot create {directory}: {exc.strerror or exc}.") from None
    return True


def _writable(path: Path) -> bool:
    """Writable for us, and not marked read-only for everyone (root may write anyway; a 0555 folder says don't)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def _move_into(staging: Path, directory: Path) -> None:
    for entry in sorted(staging.iterdir()):
        target = directory / entry.name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)  # rmtree removes links inside the tree, it never follows them
        os.replace(entry, target)


# --- the files --------------------------------------------------------------------------------------------------


def export_run(run_path: Path, directory: Path, *, force: bool = False, image: str | None = None) -> ExportResult:
    """Write the project. `image`: the image the chart should run (a pushed one); default: the run's push, if any."""
    facts = read_run(run_path)
    pushed = facts.run.push or {}
    image = image or (pushed.get("image") if pushed.get("ok") else None)
    created = prepare_target(directory, force)
    directory = Path(directory).absolute()
    try:
        staging = Path(tempfile.mkdtemp(prefix=".kubevibe-export-", dir=directory))
    except OSError as exc:
        raise UsageError(f"Cannot write to {directory}: {exc.strerror or exc}.") from None
    try:
        try:
            result = _write_project(facts, staging, image)
            _move_into(staging, directory)
        except OSError as exc:
            raise UsageError(f"Cannot write to {directory}: {exc.strerror or exc}.") from None
    except BaseException:
        if created:  # nothing half-written is left behind in a folder this export made
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.directory = directory
    return result


def _write_project(facts: RunFacts, out: Path, image: str | None) -> ExportResult:
    files: list[str] = []

    def write(relative: str, text: str) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(relative)

    art = facts.artifacts
    write(facts.service_file, art.get(names.CODE))
    write("requirements.txt", art.get(names.REQUIREMENTS))
    write("Dockerfile", art.get(names.DOCKERFILE))
    write(".dockerignore", "chart/\ntests/\nREADME.md\n")

    chart_name = facts.chart_dir.name
    for source in sorted(facts.chart_dir.rglob("*")):
        if source.is_symlink() or not source.is_file():
            continue  # the chart is ours; a link in it is not followed
        relative = f"chart/{chart_name}/{source.relative_to(facts.chart_dir).as_posix()}"
        text = source.read_text(encoding="utf-8")
        if relative == f"chart/{chart_name}/values.yaml" and image:
            text = set_values_image(text, image)
        write(relative, text)

    tests_source, tests_text = acceptance_tests(facts)
    if tests_text:
        write(TESTS_FILE, tests_text)
        write(TAVERN_CONFIG, yaml.safe_dump({"name": "where the service answers",
                                             "variables": {"base_url": "http://127.0.0.1:8080"}}, sort_keys=False))
    final_image = image or facts.run.image or facts.state.get("image")
    write("README.md", readme(facts, chart_name, final_image, bool(image), tests_source))
    return ExportResult(out, files, final_image, tests_source)


def set_values_image(values_text: str, image: str) -> str:
    """values.yaml with image.repository and image.tag set to `image` (the rest, comments included, unchanged)."""
    from kubevibe.imageref import parse_image_ref

    ref = parse_image_ref(image)
    repository = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
    tag = ref.tag or "latest"
    block = re.search(r"(?m)^image:\n((?:[ \t]+.*\n|\n)*)", values_text)
    if block is None:
        return values_text + f"\nimage:\n  repository: {json.dumps(repository)}\n  tag: {json.dumps(tag)}\n"
    body = re.sub(r"(?m)^(\s+repository:).*$", lambda m: f"{m.group(1)} {json.dumps(repository)}", block.group(1), 1)
    body = re.sub(r"(?m)^(\s+tag:).*$", lambda m: f"{m.group(1)} {json.dumps(tag)}", body, 1)
    return values_text[:block.start(1)] + body + values_text[block.end(1):]


def acceptance_tests(facts: RunFacts) -> tuple[str | None, str | None]:
    """(where the tests come from, the Tavern text): the run's acceptance file, else the intent's test cases."""
    carried = facts.rundir.path / ACCEPTANCE
    if carried.is_file() and not carried.is_symlink():
        record = facts.run.acceptance or {}
        return f"acceptance:{record.get('source') or 'user'}", carried.read_text(encoding="utf-8")
    intent = facts.intent
    cases = intent.spec.test_cases if intent and intent.spec else []
    if not cases:
        return None, None
    return "intent", tavern_from_cases(cases)


def _escape(value: Any) -> Any:
    """Tavern formats every string; literal braces must be doubled."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def tavern_from_cases(cases: list[TestCase]) -> str:
    """The declared test cases as one multi-document Tavern file; `{base_url}` is the service's address."""
    docs = []
    for number, case in enumerate(cases, start=1):
        name = case.name or f"{case.method} {case.path}"
        request: dict[str, Any] = {"url": "{base_url}" + _escape(case.path), "method": case.method.upper()}
        if case.body is not None:
            request["json"] = _escape(case.body)
        response: dict[str, Any] = {"status_code": case.expected_status}
        if case.expected_json is not None:
            response["json"] = _escape(case.expected_json)
            response["strict"] = ["json:off"]  # the case lists the keys that must be there; others may be too
        docs.append({"test_name": f"{number:02d} {_escape(name)}",
                     "stages": [{"name": _escape(name), "request": request, "response": response}]})
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


# --- README -----------------------------------------------------------------------------------------------------


def _verdict_lines(facts: RunFacts) -> list[str]:
    run = facts.run
    lines = [f"- outcome of run `{run.run_id}`: **{run.outcome}**"]
    verdict = run.verdict
    if isinstance(verdict, dict):
        lines.append("- verdict: " + ", ".join(f"{k}: {json.dumps(v)}" for k, v in verdict.items()))
    lines.append(f"- verified: {verification_line(run.verified or {}, tests_from(run))}")
    stand_ins = [s for s in run.stand_ins or [] if isinstance(s, dict)]
    mappings = facts.state.get("image_mappings") or []
    if stand_ins or mappings:
        lines.append("- what was a stand-in on the machine that verified it:")
        for s in stand_ins:
            lines.append(f"  - {s.get('kind')}: {s.get('detail')}")
        for m in mappings:
            if isinstance(m, dict) and m.get("to"):
                lines.append(f"  - base image: `FROM {m.get('from')}` was built from the local stand-in "
                             f"`{m.get('to')}` ({m.get('reason', '')}); the Dockerfile here keeps `{m.get('from')}`")
    else:
        lines.append("- stand-ins: none recorded")
    return lines


def readme(facts: RunFacts, chart_name: str, image: str | None, pushed: bool, tests_source: str | None) -> str:
    intent = facts.intent
    spec = intent.spec if intent else None
    title = spec.name if spec else chart_name
    request = facts.run.prompt or ""
    what = (spec.description if spec and spec.description else "") or (intent.text if intent else request)
    port = spec.target_port if spec else 5000
    ancestors = chain(facts.rundir.path)
    out = [f"# {title}", "", what.strip(), "", f"Made by KubeVibe from the request: \"{request.strip()}\""]
    if ancestors:
        out.append("refining earlier runs: " + " ← ".join(f"`{a['run_id']}`" + (f" (\"{a['prompt']}\")"
                                                                            if a.get("prompt") else "")
                                                     for a in ancestors))
    out += ["", "## Endpoints", ""]
    endpoints = spec.endpoints if spec else []
    out += [f"- `{e.method.upper()} {e.path}`" + (f": {e.description}" if e.description else "") for e in endpoints]
    if not endpoints:
        out.append("(none declared; see the source)")
    out += ["", "## How it was verified", "", *_verdict_lines(facts), ""]
    out += [f"Files: revision {facts.revision} of the run (`artifacts/rev-{facts.revision:03d}`)."]
    repo = "REGISTRY/PATH/" + chart_name
    build_ref = image if pushed and image else f"{repo}:TAG"
    out += ["", "## Build, push, install", "", "```sh",
            f"docker build -t {build_ref} .        # or: podman build",
            f"docker push {build_ref}",
            f"helm install {chart_name} ./chart/{chart_name}"
            + ("" if pushed else f" --set image.repository={repo} --set image.tag=TAG"),
            "```", ""]
    if pushed:
        out.append(f"The chart's values.yaml already names the pushed image `{image}`.")
    else:
        out.append(f"The chart's values.yaml still names the image of the verifying machine (`{image}`), which "
                   "only that machine can pull: push your build and set image.repository and image.tag.")
    out += ["", "## Tests", ""]
    if tests_source:
        where = "the run's acceptance tests" if tests_source.startswith("acceptance") else \
            "the test cases declared in the service's specification"
        out += [f"`{TESTS_FILE}` holds {where} (Tavern). With the service on a local port:", "", "```sh",
                f"docker run --rm -p 127.0.0.1:8080:{port} {build_ref}",
                "pip install tavern 'pytest<9'",
                f"python -m pytest {TESTS_FILE} --tavern-global-cfg={TAVERN_CONFIG}",
                "```", "", f"`{TAVERN_CONFIG}` sets `base_url`, the address the tests call."]
    else:
        out.append("The run had no declared tests.")
    return "\n".join(out) + "\n"
