"""refine/export/runs without an engine: bad input (one sentence, exit 2), the last good revision, the listing,
the exported project's files, and the intent's test cases as Tavern tests run for real against a loopback server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_INTENT, KNOWN_GOOD_MANIFEST
from loopback import json_server

from kubevibe.errors import UsageError
from kubevibe.export import export_run, set_values_image, tavern_from_cases
from kubevibe.intent import TestCase
from kubevibe.pipeline.artifacts import ArtifactSet
from kubevibe.publish import check_push_target, pushed_reference
from kubevibe.record.lineage import last_good_revision, stages_passed
from kubevibe.record.schema import TransitionEvent
from kubevibe.record.rundir import RunDir

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
INTENT = {**KNOWN_GOOD_INTENT, "spec": {**KNOWN_GOOD_INTENT["spec"], "test_cases": [
    {"name": "valid", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621486"},
     "expected_status": 200, "expected_json": {"valid": True}}]}}
VALUES = """\
replicaCount: 1

image:
  # The image KubeVibe built for this run.
  repository: "127.0.0.1:5005/kubevibe/credit-card"
  tag: "abc-s3"
  pullPolicy: "IfNotPresent"

service:
  port: 80
"""


def ev(source: str, target: str, result: str = "ok", revision: int | None = None) -> dict:
    event = {"from": source, "to": target, "result": result, "reason": ""}
    if revision is not None:
        event["metrics"] = {"revision": revision}
    return event


def make_run(root: Path, name: str, events: list[dict], *, chart: bool = True, **run: object) -> Path:
    path = root / "test-model" / name
    path.mkdir(parents=True)
    files = ArtifactSet(files={"myapp.py": KNOWN_GOOD_CODE, "Dockerfile": KNOWN_GOOD_DOCKERFILE,
                               "vibe.yaml": KNOWN_GOOD_MANIFEST, "requirements.txt": "flask==3.0.3\n"})
    for event in events:
        if "metrics" in event:
            files.write_to(path / "artifacts" / f"rev-{event['metrics']['revision']:03d}")
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    record = {"run_id": name, "prompt": "credit card validation", "outcome": "success",
              "created": "2026-12-01T10:00:00+00:00", "llm": {"model": "test-model"}, "intent": INTENT,
              "verified": {"built": True, "reachable": True, "tests_passed": 1, "tests_total": 1},
              "image": "127.0.0.1:5005/kubevibe/credit-card:abc-s3"} | run
    (path / "run.json").write_text(json.dumps(record))
    if chart:
        (path / "chart/credit-card/templates").mkdir(parents=True)
        (path / "chart/credit-card/Chart.yaml").write_text("apiVersion: v2\nname: credit-card\nversion: 0.1.0\n")
        (path / "chart/credit-card/values.yaml").write_text(VALUES)
        (path / "chart/credit-card/templates/service.yaml").write_text("kind: Service\n")
    return path


FULL = [ev("INTENT", "GENERATE"), ev("GENERATE", "BUILD", revision=0), ev("BUILD", "VALIDATE"),
        ev("VALIDATE", "DEPLOY"), ev("DEPLOY", "CONNECT"), ev("CONNECT", "CHART"), ev("CHART", "SUCCESS")]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KUBEVIBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_sentence_exit_2(proc: subprocess.CompletedProcess, words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], proc.stderr


# --- last good revision ------------------------------------------------------------------------------------------


def test_last_good_revision_is_the_one_verified_furthest_later_on_a_tie(tmp_path):
    events = [ev("GENERATE", "BUILD", revision=0), ev("BUILD", "VALIDATE"), ev("VALIDATE", "DEPLOY"),
              ev("DEPLOY", "CONNECT"), ev("CONNECT", "FIX", "failed"), ev("FIX", "BUILD", "resume-build", revision=1),
              ev("BUILD", "FIX", "failed"), ev("FIX", "BUILD", "resume-build", revision=2), ev("BUILD", "VALIDATE"),
              ev("VALIDATE", "DEPLOY"), ev("DEPLOY", "CONNECT")]
    assert stages_passed([TransitionEvent.model_validate(e) for e in events]) == {0: 4, 2: 4}  # rev 1 never built
    run = make_run(tmp_path, "r", events)
    good = last_good_revision(RunDir(run))
    assert good is not None and good.revision == 2 and good.verified_to == "DEPLOY"


def test_a_run_whose_files_never_built_has_no_good_revision(tmp_path):
    run = make_run(tmp_path, "r", [ev("GENERATE", "BUILD", revision=0), ev("BUILD", "FIX", "failed")])
    assert last_good_revision(RunDir(run)) is None


# --- bad input ---------------------------------------------------------------------------------------------------


def test_refine_bad_input_is_one_sentence_and_exit_2(tmp_path):
    one_sentence_exit_2(cli("refine", str(tmp_path / "nope"), "add GET /cards", cwd=tmp_path), "no run at")
    never_built = make_run(tmp_path, "never-built", [ev("GENERATE", "BUILD", revision=0), ev("BUILD", "FIX", "failed")],
                           chart=False, outcome="fail")
    one_sentence_exit_2(cli("refine", str(never_built), "add GET /cards", cwd=tmp_path), "did not get far enough")
    good = make_run(tmp_path, "good", FULL)
    one_sentence_exit_2(cli("refine", str(good), "   ", cwd=tmp_path), "follow-up request is empty")
    one_sentence_exit_2(cli("refine", str(good), "x", "--tests", str(tmp_path / "none.yaml"), cwd=tmp_path),
                        "does not exist")
    one_sentence_exit_2(cli("refine", str(good), "x", "--push", "http://nowhere", cwd=tmp_path), "--push")
    assert sorted(p.name for p in (tmp_path / "test-model").iterdir()) == ["good", "never-built"]  # no run made


def test_export_bad_input_is_one_sentence_and_exit_2(tmp_path):
    one_sentence_exit_2(cli("export", str(tmp_path / "nope"), str(tmp_path / "out"), cwd=tmp_path), "no run at")
    no_chart = make_run(tmp_path, "no-chart", FULL[:3], chart=False, outcome="fail")
    one_sentence_exit_2(cli("export", str(no_chart), str(tmp_path / "out"), cwd=tmp_path), "Helm chart")
    run = make_run(tmp_path, "good", FULL)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_sentence_exit_2(cli("export", str(run), str(a_file / "out"), cwd=tmp_path), "Cannot create")
    one_sentence_exit_2(cli("export", str(run), "/proc/kubevibe-export", cwd=tmp_path), "Cannot create")
    one_sentence_exit_2(cli("export", str(run), str(a_file), cwd=tmp_path), "not a directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_sentence_exit_2(cli("export", str(run), str(locked), cwd=tmp_path), "read-only")
        one_sentence_exit_2(cli("export", str(run), str(locked / "sub"), cwd=tmp_path), "read-only")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    one_sentence_exit_2(cli("export", str(run), str(busy), cwd=tmp_path), "not empty")
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    link = tmp_path / "link"
    link.symlink_to(busy)
    one_sentence_exit_2(cli("export", str(run), str(link), "--force", cwd=tmp_path), "symbolic link")
    assert not (tmp_path / "out").exists()


def test_export_force_replaces_its_files_without_following_links(tmp_path):
    run = make_run(tmp_path, "good", FULL)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    target = tmp_path / "project"
    target.mkdir()
    (target / "chart").symlink_to(outside)  # a link where the chart goes: unlinked, never followed
    (target / "notes.txt").write_text("mine")
    result = export_run(run, target, force=True)
    assert (outside / "precious").read_text() == "keep" and sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert not (target / "chart").is_symlink() and (target / "chart/credit-card/Chart.yaml").is_file()
    assert (target / "notes.txt").read_text() == "mine"
    assert not [p for p in target.iterdir() if p.name.startswith(".kubevibe-export-")]
    assert "myapp.py" in result.files and result.tests_source == "intent"


# --- the exported project ----------------------------------------------------------------------------------------


def test_export_writes_the_project_and_a_readme_that_says_how_it_was_verified(tmp_path):
    run = make_run(tmp_path, "good", FULL, stand_ins=[{"kind": "kube-api", "detail": "podman kube play"}],
                   service_file="app.py")
    (run / "state.json").write_text(json.dumps({"state": {"image_mappings": [
        {"line": "1", "from": "python:3.11-slim", "to": "localhost/kubevibe/python:3.11", "status": "mapped",
         "reason": "no registry"}]}}))
    result = export_run(run, tmp_path / "out", image="ghcr.io/me/credit-card:1.0")
    out = tmp_path / "out"
    assert (out / "app.py").read_text() == KNOWN_GOOD_CODE and not (out / "myapp.py").exists()
    assert (out / "Dockerfile").read_text() == KNOWN_GOOD_DOCKERFILE
    values = yaml.safe_load((out / "chart/credit-card/values.yaml").read_text())
    assert values["image"] == {"repository": "ghcr.io/me/credit-card", "tag": "1.0", "pullPolicy": "IfNotPresent"}
    assert "# The image KubeVibe built" in (out / "chart/credit-card/values.yaml").read_text()
    readme = (out / "README.md").read_text()
    for text in ("POST /validate", "kube-api: podman kube play", "FROM python:3.11-slim", "docker build -t "
                 "ghcr.io/me/credit-card:1.0", "helm install credit-card ./chart/credit-card", "--tavern-global-cfg"):
        assert text in readme, text
    assert result.image == "ghcr.io/me/credit-card:1.0"


def test_set_values_image_only_touches_the_image_block():
    text = set_values_image(VALUES + "other:\n  tag: keep\n", "localhost:5001/team/cards:v2")
    data = yaml.safe_load(text)
    assert data["image"]["repository"] == "localhost:5001/team/cards" and data["image"]["tag"] == "v2"
    assert data["other"]["tag"] == "keep" and data["service"]["port"] == 80


def test_intent_test_cases_become_tavern_tests_that_pass_and_fail_for_real(tmp_path):
    cases = [TestCase(name="valid {braces}", method="POST", path="/validate", body={"card_number": "4539{1}"},
                      expected_status=200, expected_json={"valid": True}),
             TestCase(name="health", path="/health", expected_status=200)]
    (tmp_path / "acceptance.tavern.yaml").write_text(tavern_from_cases(cases))

    def answer(method, path, body):
        if path == "/validate":
            return 200, {"valid": body == {"card_number": "4539{1}"}, "extra": 1}
        return 200, {"status": "ok"}

    def tavern(base_url: str) -> subprocess.CompletedProcess:
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"name": "t", "variables": {"base_url": base_url}}))
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "acceptance.tavern.yaml",
                               f"--tavern-global-cfg={tmp_path / 'cfg.yaml'}"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    with json_server(answer) as (url, seen):
        passed = tavern(url)
        assert passed.returncode == 0 and "2 passed" in passed.stdout, passed.stdout
        assert ("POST", "/validate", {"card_number": "4539{1}"}) in [s[:3] for s in seen]
    with json_server(lambda m, p, b: (200, {"valid": False})) as (url, _):
        failed = tavern(url)
        assert failed.returncode != 0 and "1 failed" in failed.stdout, failed.stdout


# --- push targets ------------------------------------------------------------------------------------------------


def test_pushed_reference_keeps_name_and_tag_under_the_users_path():
    image = "127.0.0.1:5005/kubevibe/credit-card:abc-s3"
    assert pushed_reference("ghcr.io/me", image) == "ghcr.io/me/credit-card:abc-s3"
    assert pushed_reference("localhost:5001/team/x", image) == "localhost:5001/team/x/credit-card:abc-s3"
    assert pushed_reference("ghcr.io/me/cards:1.0", image) == "ghcr.io/me/cards:1.0"
    for bad in ("", "http://ghcr.io/me", "ghcr.io/me/", "just-a-name", "a b/c"):
        with pytest.raises(UsageError):
            check_push_target(bad)


# --- runs / ls ---------------------------------------------------------------------------------------------------


def test_runs_lists_outcome_verdict_request_age_and_lineage_with_filters(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "20261201T100000Z-aaa", FULL)
    make_run(root, "20261201T110000Z-bbb", FULL, created="2026-12-01T11:00:00+00:00", prompt="add GET /cards",
             parent={"run": "../20261201T100000Z-aaa", "run_id": "20261201T100000Z-aaa"})
    make_run(root, "20261201T120000Z-ccc", FULL[:3], chart=False, created="2026-12-01T12:00:00+00:00",
             outcome="fail", llm={"model": "other"})
    (root / "test-model" / "20261201T130000Z-ddd").mkdir()
    (root / "test-model" / "20261201T130000Z-ddd" / "run.json").write_text("{broken")

    rows = json.loads(cli("runs", "--json", cwd=tmp_path).stdout)
    assert [r["run_id"] for r in rows[1:]] == ["20261201T120000Z-ccc", "20261201T110000Z-bbb", "20261201T100000Z-aaa"]
    assert rows[0]["outcome"] == "unreadable"
    child = rows[2]
    assert child["parent"] == "20261201T100000Z-aaa" and child["request"] == "add GET /cards"
    assert "declared tests (intent) passed 1 of 1" in child["verdict"] and child["age_s"] > 0
    assert [r["run_id"] for r in json.loads(cli("ls", "--json", "--outcome", "fail", cwd=tmp_path).stdout)] == \
        ["20261201T120000Z-ccc"]
    assert [r["run_id"] for r in json.loads(cli("runs", "--json", "--model", "other", cwd=tmp_path).stdout)] == \
        ["20261201T120000Z-ccc"]
    table = cli("ls", cwd=tmp_path)
    assert table.returncode == 0 and "20261201T110000Z-bbb" in table.stdout and "add GET /cards" in table.stdout
    assert "no runs under" in cli("runs", "--runs-dir", str(tmp_path / "empty"), cwd=tmp_path).stdout


def test_show_prints_the_chain_of_a_refined_run(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "p1", FULL, prompt="credit card validation")
    make_run(root, "p2", FULL, prompt="add GET /cards", parent={"run": "../p1", "run_id": "p1"})
    make_run(root, "p3", FULL, prompt="add DELETE /cards", parent={"run": "../p2", "run_id": "p2"})
    shown = cli("show", str(root / "test-model" / "p3"), cwd=tmp_path)
    assert 'refines:  p2 "add GET /cards" ← p1 "credit card validation"' in shown.stdout, shown.stdout
    summary = json.loads(cli("show", str(root / "test-model" / "p3"), "--json", cwd=tmp_path).stdout)
    assert [a["run_id"] for a in summary["lineage"]] == ["p2", "p1"]


# --- the Refine stage --------------------------------------------------------------------------------------------


def _refine_ctx(tmp_path: Path, answer: dict, artifacts: ArtifactSet | None = None, **refine: object):
    from helpers import make_context

    from kubevibe.llm.replay import ReplayClient, write_replay_log
    from kubevibe.pipeline.context import RunState
    from kubevibe.pipeline.fsm import State
    from kubevibe.settings import Settings

    tmp_path.mkdir(parents=True, exist_ok=True)
    log = write_replay_log(tmp_path / "answers.jsonl", [("refine", json.dumps(answer))])
    llm = ReplayClient.from_settings(str(log), Settings())
    state = RunState(prompt="p", intent=INTENT, strategy="full",
                     refine={"request": "add GET /cards", "parent_revision": 0, **refine})
    return make_context(tmp_path, artifacts, state=state, stage=State.REFINE, llm=llm)


def test_refine_stage_adds_the_new_tests_retires_the_named_ones_and_fails_on_no_change(tmp_path):
    from kubevibe.pipeline.fsm import Outcome
    from kubevibe.stages import refine

    code = KNOWN_GOOD_CODE + "\n# cards\n"
    answer = {"explanation": "x", "changes": [{"file": "myapp.py", "content": code}],
              "endpoints": [{"method": "GET", "path": "/cards"}, {"method": "POST", "path": "/validate"}],
              "test_cases": [{"name": "cards", "path": "/cards"}], "retired_tests": ["valid"]}
    result = refine.run(_refine_ctx(tmp_path / "a", answer))
    assert result.outcome == Outcome.OK and result.artifacts.get("myapp.py") == code
    spec = result.updates["intent"]["spec"]
    assert [t["name"] for t in spec["test_cases"]] == ["cards"]  # "valid" retired, "cards" added
    assert [(e["method"], e["path"]) for e in spec["endpoints"]] == [("POST", "/validate"), ("GET", "/health"),
                                                                     ("GET", "/cards")]
    unchanged = {"explanation": "nothing", "changes": [{"file": "myapp.py", "content": KNOWN_GOOD_CODE}]}
    assert refine.run(_refine_ctx(tmp_path / "b", unchanged)).outcome == Outcome.FAILED


def test_a_resumed_refine_without_files_starts_again_from_the_parents(tmp_path):
    from kubevibe.pipeline.fsm import Outcome
    from kubevibe.stages import refine

    parent = make_run(tmp_path / "runs", "parent", FULL)
    answer = {"explanation": "x", "changes": [{"file": "vibe.yaml", "content": KNOWN_GOOD_MANIFEST + "# c\n"}]}
    result = refine.run(_refine_ctx(tmp_path / "c", answer, ArtifactSet(), parent_dir=str(parent)))
    assert result.outcome == Outcome.OK
    assert result.artifacts.get("myapp.py") == KNOWN_GOOD_CODE and result.metrics["changed_files"] == ["vibe.yaml"]


def test_refine_carries_the_parents_tests_or_takes_new_ones_and_records_its_parent(tmp_path):
    from kubevibe.llm.replay import write_replay_log

    root = tmp_path / "runs"
    parent = make_run(root, "20261201T100000Z-aaa", FULL, acceptance={"source": "benchmark", "tests": 1})
    (parent / "acceptance").mkdir()
    (parent / "acceptance/acceptance.tavern.yaml").write_text("test_name: a\nstages:\n  - name: s\n    request: {url: \"{base_url}/health\", method: GET}\n    response: {status_code: 200}\n")
    mine = tmp_path / "mine.tavern.yaml"
    mine.write_text("test_name: b\nstages:\n  - name: s\n    request: {url: \"{base_url}/health\", method: GET}\n    response: {status_code: 200}\n---\ntest_name: c\nstages:\n  - name: s\n    request: {url: \"{base_url}/health\", method: GET}\n    response: {status_code: 200}\n")
    empty_log = write_replay_log(tmp_path / "none.jsonl", [])
    children = []
    for extra in ([], ["--tests", str(mine)]):
        before = set(root.glob("*/*"))
        # The log has no answer, so REFINE fails and the one-step limit ends the run: only the set-up is checked.
        proc = cli("refine", str(parent), "add GET /cards", "--llm", f"replay:{empty_log}", "--max-steps", "1",
                   *extra, cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (child,) = set(root.glob("*/*")) - before
        children.append(child)
    carried, given = children
    record = json.loads((carried / "run.json").read_text())
    link = record["parent"].pop("run")
    assert not Path(link).is_absolute() and (carried / link).resolve() == parent.resolve()
    assert record["parent"] == {"run_id": "20261201T100000Z-aaa", "revision": 0, "verified_to": "CHART"}
    assert record["acceptance"] | {"source": "benchmark", "tests": 1, "from_run": "20261201T100000Z-aaa"} == \
        record["acceptance"]
    assert (carried / "acceptance/acceptance.tavern.yaml").read_text() == (parent / "acceptance/acceptance.tavern.yaml").read_text()
    assert record["sources"]["runs_dir"] == "parent:20261201T100000Z-aaa" and record["strategy"] == "full"
    events = [json.loads(line) for line in (carried / "events.jsonl").read_text().splitlines()]
    assert events[0]["from"] == "REFINE" and events[0]["result"] == "failed"
    assert (given / "acceptance/acceptance.tavern.yaml").read_text() == mine.read_text()
    assert json.loads((given / "run.json").read_text())["acceptance"]["source"] == "user"


def test_conversational_refine_is_the_next_turn_of_the_parents_conversation(tmp_path):
    from helpers import make_context

    from kubevibe.llm.conversation import Conversation
    from kubevibe.llm.replay import ReplayClient, write_replay_log
    from kubevibe.pipeline.context import RunState
    from kubevibe.pipeline.fsm import Outcome, State
    from kubevibe.settings import Settings
    from kubevibe.stages import refine

    code = KNOWN_GOOD_CODE + "\n# lists the cards\n"
    reply = f"Here is the change.\n\nFile: myapp.py\n```python\n{code}```\n"
    log = write_replay_log(tmp_path / "answers.jsonl", [("refine", reply), ("refine", reply)])
    llm = ReplayClient.from_settings(str(log), Settings())
    parent_turns = [{"role": "system", "content": "sys"}, {"role": "user", "content": "build it"},
                    {"role": "assistant", "content": "the parent's answer"}]
    conversation = Conversation.model_validate({"messages": parent_turns}).model_dump(mode="json")
    state = RunState(prompt="p", intent=INTENT, strategy="full", conversation=conversation,
                     refine={"request": "add GET /cards", "parent_revision": 0})
    ctx = make_context(tmp_path, None, state=state, stage=State.REFINE, llm=llm,
                       settings_overrides={"style": "conversational"})
    result = refine.run(ctx)
    assert result.outcome == Outcome.OK, result.summary
    assert result.artifacts.get("myapp.py") == code and result.metrics["changed_files"] == ["myapp.py"]
    sent = ctx.rundir.read_jsonl("llm.jsonl")[-1]["messages"]
    assert [m["content"] for m in sent[:3]] == ["sys", "build it", "the parent's answer"]  # the parent's turns
    assert "add GET /cards" in sent[-1]["content"] and sent[-1]["role"] == "user"
    # The same answer again changes nothing: a failed refine turn, never a success.
    ctx.artifacts = result.artifacts
    ctx.state.conversation = result.updates["conversation"]
    assert refine.run(ctx).outcome == Outcome.FAILED
