"""--style conversational through the real `kubevibe run` and the real local engine.

The model is a scripted chat model on loopback speaking Ollama's /api/chat: its first answer (prose, one fenced
block per file) has a broken Dockerfile, and it repairs the Dockerfile only when the next user turn carries the
build's error. Then `replay` of that run reproduces it: the same path, the same files, the same messages sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import NOTHING, leftovers, podman, require_engine
from helpers import KNOWN_GOOD_CODE, KNOWN_GOOD_DOCKERFILE, KNOWN_GOOD_MANIFEST, KNOWN_GOOD_REQUIREMENTS
from loopback import json_server

from kubevibe.exec import run as run_command
from kubevibe.podman_conf import podman_env
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.tools import find_tool

pytestmark = pytest.mark.engine

TESTS = Path(__file__).parent / "fixtures" / "credit-card.tavern.yaml"
KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
PROMPT = "Develop a credit card validation microservice"
BROKEN_DOCKERFILE = KNOWN_GOOD_DOCKERFILE.replace("COPY requirements.txt .", "COPY requirement.txt .")

FIRST_ANSWER = f"""Sure! Here is a small Flask service that validates card numbers with the Luhn algorithm.\r
\r
**myapp.py**\r
```python\r
{KNOWN_GOOD_CODE.replace(chr(10), chr(13) + chr(10))}```\r
\r
File: Dockerfile
```dockerfile
{BROKEN_DOCKERFILE}```

The manifest:

```yaml title="vibe.yaml"
{KNOWN_GOOD_MANIFEST}```

requirements.txt:
~~~
{KNOWN_GOOD_REQUIREMENTS}~~~

Build it with podman and deploy it with kubectl apply -f vibe.yaml.
"""

REPAIR = f"""You are right: the Dockerfile copies `requirement.txt`, but the file is `requirements.txt`.

File: Dockerfile
```
{KNOWN_GOOD_DOCKERFILE}```

The other files stay as they are.
"""

NO_IDEA = "I am not sure what went wrong; could you share more details?"


def carries_build_error(text: str) -> bool:
    return "requirement.txt" in text and "no such file or directory" in text.lower()


def scripted_reply(messages: list[dict]) -> str:
    """The scripted model: the files with a broken Dockerfile first; the repair only after the build error."""
    roles = [m["role"] for m in messages]
    if roles == ["system", "user"]:
        return FIRST_ANSWER
    if roles[-1] == "user" and carries_build_error(messages[-1]["content"]):
        return REPAIR
    return NO_IDEA


def scripted_chat(turns: list[list[dict]]):
    """An Ollama /api/chat server's answer function; `turns` collects the messages of every request."""

    def answer(method: str, path: str, body):
        if (method, path) != ("POST", "/api/chat"):
            return 404, {"error": f"no {path}"}
        messages = body["messages"]
        turns.append(messages)
        assert body.get("format") is None, "a conversational turn must not send a JSON schema"
        text = scripted_reply(messages)
        return 200, {"model": "scripted-chat", "created_at": "2026-01-01T00:00:00Z",
                     "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop",
                     "prompt_eval_count": sum(len(m["content"]) for m in messages) // 4,
                     "eval_count": len(text) // 4}

    return answer


def scripted_completions(turns: list[list[dict]]):
    """The same model behind OpenAI-compatible chat completions."""

    def answer(method: str, path: str, body):
        if (method, path) != ("POST", "/v1/chat/completions"):
            return 404, {"error": {"message": f"no {path}"}}
        assert "response_format" not in body, "a conversational turn must not send a JSON schema"
        turns.append(body["messages"])
        text = scripted_reply(body["messages"])
        return 200, {"id": f"c{len(turns)}", "object": "chat.completion", "created": 0, "model": "scripted-chat",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 100, "completion_tokens": len(text) // 4, "total_tokens": 0}}

    return answer


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


def kubevibe_run(cwd: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    # The user's acceptance tests make the run's SUCCESS a verified one (without them it would end unverified).
    proc = subprocess.run([*KUBEVIBE, "run", PROMPT, "--intent-method", "none", "--json", "--tests", str(TESTS),
                           "--no-test-writer", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KUBEVIBE_BASE_POLICY": "offline", **(env or {})})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def path_of(summary: dict) -> list[tuple[str, str, str]]:
    return [(t["from"], t["to"], t["result"]) for t in summary["transitions"]]


def llm_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]


@pytest.fixture
def cleanup_runs(tmp_path):
    yield
    runs = list(tmp_path.glob("**/runs/*/*"))
    for run in runs:
        assert leftovers(run.name) == NOTHING, f"run {run.name} left resources behind"
    for run in runs:  # only this run's images, by the run label every build sets
        for image in run_images(run.name):
            podman("rmi", "--force", image)


def run_images(run_id: str, attempts: int = 5) -> set[str]:
    """The IDs of a run's images. Listing can fail while other jobs on the machine remove their images at the
    same moment ("image not known"): a bounded retry, then the error."""
    argv = [str(find_tool("podman")), "images", "--quiet", "--filter", f"label={RUN_LABEL}={label_value(run_id)}"]
    for attempt in range(attempts):
        result = run_command(argv, timeout=60, env=podman_env())
        if result.ok:
            return set(result.stdout.split())
        if attempt < attempts - 1:
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError(result.describe() + "\n" + result.output)


def test_conversational_run_repairs_the_dockerfile_from_the_build_error_and_replays(tmp_path, cleanup_runs):
    turns: list[list[dict]] = []
    first = tmp_path / "first"
    first.mkdir()
    with json_server(scripted_chat(turns)) as (url, _seen):
        code, summary = kubevibe_run(first, "--llm", f"ollama://{url.removeprefix('http://')}", "--model",
                                     "scripted-chat", "--style", "conversational")
    assert code == 0, summary
    steps = path_of(summary)
    assert steps[:4] == [("INTENT", "GENERATE", "ok"), ("GENERATE", "BUILD", "ok"), ("BUILD", "FIX", "failed"),
                         ("FIX", "BUILD", "resume-build")]
    assert steps[-1] == ("CHART", "SUCCESS", "ok")
    assert len(turns) == 2  # one conversation: the opening, then the build error as the next user turn
    assert [m["role"] for m in turns[1]] == ["system", "user", "assistant", "user"]
    assert turns[1][2]["content"] == FIRST_ANSWER  # the answer goes back as it came, CRLF and all

    (run,) = list((first / "runs").glob("*/*"))
    record = json.loads((run / "run.json").read_text())
    assert record["style"] == "conversational" and record["settings"]["style"] == "conversational"
    assert record["sources"]["style"] == "flag"
    rev0, rev1 = run / "artifacts" / "rev-000", run / "artifacts" / "rev-001"
    assert (rev0 / "Dockerfile").read_text() == BROKEN_DOCKERFILE
    assert (rev0 / "myapp.py").read_text() == KNOWN_GOOD_CODE  # CRLF answer, LF file
    assert (rev1 / "Dockerfile").read_text() == KNOWN_GOOD_DOCKERFILE
    assert (rev1 / "myapp.py").read_text() == KNOWN_GOOD_CODE  # not in the repair: kept from rev-000
    fix_result = json.loads(next(run.glob("steps/*-fix/result.json")).read_text())
    assert fix_result["metrics"]["kept_files"] == ["myapp.py", "vibe.yaml", "requirements.txt"]
    calls = llm_records(run)
    assert [c["purpose"] for c in calls] == ["generate", "fix"]
    assert all(c["style"] == "conversational" and "schema" not in c for c in calls)
    assert calls[1]["request"]["messages"] == calls[1]["messages"] == turns[1]  # exactly what was sent

    # Replay: no model, no --style (the recorded run's is used), the same run again.
    second = tmp_path / "second"
    second.mkdir()
    code, replayed = kubevibe_run(second, "--llm", f"replay:{run}")
    assert code == 0, replayed
    assert path_of(replayed) == steps
    (again,) = list((second / "runs").glob("*/*"))
    assert json.loads((again / "run.json").read_text())["style"] == "conversational"
    for rev in ("rev-000", "rev-001"):
        for name in ("myapp.py", "Dockerfile", "vibe.yaml", "requirements.txt"):
            assert (again / "artifacts" / rev / name).read_text() == (run / "artifacts" / rev / name).read_text()
    sent = [c["request"]["messages"] for c in llm_records(again)]
    # The build's error text names per-run paths; everything else of the conversation is the same.
    assert sent[0] == turns[0]
    assert [m["role"] for m in sent[1]] == [m["role"] for m in turns[1]]
    assert sent[1][:3] == turns[1][:3] and carries_build_error(sent[1][3]["content"])


def test_conversational_run_over_openai_chat_completions(tmp_path, cleanup_runs):
    turns: list[list[dict]] = []
    with json_server(scripted_completions(turns)) as (url, _seen):
        code, summary = kubevibe_run(tmp_path, "--llm", f"openai://{url.removeprefix('http://')}/v1", "--model",
                                     "scripted-chat", env={"KUBEVIBE_STYLE": "conversational"})
    assert code == 0, summary
    assert [s for s, _, _ in path_of(summary)][:5] == ["INTENT", "GENERATE", "BUILD", "FIX", "BUILD"]
    assert len(turns) == 2 and carries_build_error(turns[1][-1]["content"])
