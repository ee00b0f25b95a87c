"""Helpers of the experiment-harness tests: synthetic runs through the real Runner, a slow OpenAI-compatible model
server on loopback, and a small Chrome DevTools Protocol client for Debian's headless Chromium.

The synthetic runs are real run directories: the real Runner follows the real transition table and writes
events, step results, revisions and run.json; only the stage functions are scripted (the engine supports that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loopback import json_server

from kubevibe.pipeline.artifacts import ArtifactSet, resume_outcome
from kubevibe.pipeline.context import Evidence, RunContext, RunState, StageResult
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.pipeline.runner import Runner
from kubevibe.record.schema import LLMCallRecord
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings

FILES_A = {"myapp.py": "from flask import Flask\napp = Flask(__name__)\n\n@app.get('/health')\ndef health():\n"
                       "    return {'status': 'ok'}\n",
           "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\nRUN pip install -r /app/requirements.txt\n"
                         "CMD [\"python\", \"/app/myapp.py\"]\n",
           "vibe.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo\n",
           "requirements.txt": "requests\n"}
FILES_B = {**FILES_A, "requirements.txt": "flask==3.0.3\n"}
FILES_C = {**FILES_B, "vibe.yaml": FILES_A["vibe.yaml"] + "spec:\n  replicas: 1\n"}

BUILD_ERROR = Evidence(kind="command", title="podman build", command="podman build -t x .", exit_code=1,
                       stdout="STEP 3/4: RUN pip install -r /app/requirements.txt",
                       stderr="Traceback (most recent call last):\nModuleNotFoundError: No module named 'flask'")
VALIDATE_ERROR = Evidence(kind="finding", title="Deployment echo has no spec",
                          detail="spec.template is required <script>alert(1)</script>")


# Stage durations are measured by the runner; small sleeps give the time plots something to show.
SECONDS = {State.GENERATE: 0.03, State.BUILD: 0.02, State.FIX: 0.01, State.DEPLOY: 0.01, State.CONNECT: 0.005}


def _llm(ctx: RunContext, purpose: str, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
    ctx.record_llm_call(LLMCallRecord.model_validate({
        "time": datetime.now(timezone.utc).isoformat(), "step": ctx.step, "stage": str(ctx.stage),
        "purpose": purpose, "backend": "scripted", "model": "scripted-7b",
        "request": {"purpose": purpose, "prompt": "..."}, "schema": "X", "ok": True,
        "response": {"text": "{}", "model": "scripted-7b", "backend": "scripted", "prompt_tokens": prompt_tokens,
                     "completion_tokens": completion_tokens, "duration_s": seconds, "finish_reason": "stop"}}))


def generate(files: dict[str, str]):
    def stage(ctx: RunContext) -> StageResult:
        _llm(ctx, "generate", 800, 400, 2.5)
        return StageResult.ok("generated 4 files", artifacts=ArtifactSet(files=files))
    return stage


def fix_to(files: dict[str, str]):
    def stage(ctx: RunContext) -> StageResult:
        _llm(ctx, "fix", 1200, 300, 1.5)
        new = ArtifactSet(files=files)
        changed = new.changed_files(ctx.artifacts)
        return StageResult(outcome=resume_outcome(changed) or Outcome.FAILED, summary=f"changed {', '.join(changed)}",
                           artifacts=new if changed else None,
                           evidence=[Evidence(kind="llm", title="fix explanation", detail="pin flask")])
    return stage


def fail(evidence: Evidence, summary: str):
    return lambda ctx: StageResult.failed(summary, evidence=[evidence])


def ok(summary: str = "ok"):
    return lambda ctx: StageResult.ok(summary)


SCENARIOS: dict[str, dict[State, list]] = {
    # Intent .. Chart, all first time: 7 steps, no fix.
    "first-attempt": {State.GENERATE: [generate(FILES_A)]},
    # Build fails, a fix pins flask; Validate fails, a fix completes the manifest; then success. 11 steps, 2 fixes.
    "fix-loop": {State.GENERATE: [generate(FILES_A)],
                 State.BUILD: [fail(BUILD_ERROR, "the image did not build"), ok("built")],
                 State.VALIDATE: [fail(VALIDATE_ERROR, "1 finding"), ok("valid")],
                 State.FIX: [fix_to(FILES_B), fix_to(FILES_C)]},
    # The fix loop goes A -> B -> A -> B while Build keeps failing, until the fix limit (3): FAIL, 9 steps.
    "oscillation": {State.GENERATE: [generate(FILES_A)],
                    State.BUILD: [fail(BUILD_ERROR, "the image did not build")] * 4,
                    State.FIX: [fix_to(FILES_B), fix_to(FILES_A), fix_to(FILES_B)]},
}


class Script:
    def __init__(self, plan: dict[State, list]):
        self.plan = {k: list(v) for k, v in plan.items()}

    def __call__(self, state: State):
        def stage(ctx: RunContext) -> StageResult:
            time.sleep(SECONDS.get(state, 0.0))
            queue = self.plan.get(state)
            if queue:
                return queue.pop(0)(ctx)
            if state == State.ACCEPT:  # independent acceptance tests passed (the run may end in success)
                return StageResult.ok("2/2 acceptance tests passed", updates={"verified": {"acceptance": {
                    "passed": 2, "total": 2, "source": "user"}}})
            return StageResult.ok(f"{state.value.lower()} ok")
        return stage


def synthetic_run(runs_root: Path, scenario: str, *, prompt: str = "Develop an echo service",
                  model: str = "scripted-7b", intent_method: str = "none", max_fix_attempts: int = 3) -> Path:
    settings = Settings(runs_dir=runs_root, model=model, intent_method=intent_method,
                        max_fix_attempts=max_fix_attempts, llm="openai://127.0.0.1:9/v1")
    rundir = RunDir.create(runs_root, model)
    rundir.write_json("run.json", {
        "run_id": rundir.run_id, "prompt": prompt, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "outcome": "running", "llm": {"backend": "scripted", "model": model, "spec": settings.llm},
        "strategy": "full", "settings": settings.model_dump(mode="json"),
        "sources": {name: "default" for name in Settings.model_fields}})
    ctx = RunContext(settings=settings, rundir=rundir, llm=None, state=RunState(prompt=prompt, strategy="full"),  # type: ignore[arg-type]
                     artifacts=ArtifactSet(), run_id=rundir.run_id, deadline=time.monotonic() + 600)
    Runner(ctx, stages=Script(SCENARIOS[scenario])).run(State.INTENT)
    return rundir.path


# -- a slow OpenAI-compatible model server on loopback ----------------------------------------------------------
@contextmanager
def slow_model_server(delay: float, text: str = "this is not json"):
    """An OpenAI-compatible server that answers every chat completion with `text` after `delay` seconds (long
    enough to interrupt a run); yields its --llm spec."""

    def answer(method: str, path: str, body: Any) -> tuple:
        if method == "GET":  # /v1/models: the client discovers the one model served
            return 200, {"object": "list", "data": [{"id": "slow-model", "object": "model", "created": 0,
                                                     "owned_by": "test"}]}
        return 200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "slow-model",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}, delay

    with json_server(answer) as (url, _seen):
        yield f"openai://{url.removeprefix('http://')}/v1"


# -- headless Chromium through the DevTools protocol ----------------------------------------------------------
def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab over CDP: navigate, evaluate, screenshot; collects console errors and failed loads."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True, enable_multithread=False)
        self.next_id = 0
        self.errors: list[str] = []
        self.loaded = False
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _handle(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                     for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
            self.errors.append(f"http {params['response']['status']}: {params['response'].get('url')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.errors.append(f"load failed: {params.get('errorText')}")
        elif method == "Page.loadEventFired":
            self.loaded = True

    def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._handle(msg)

    def goto(self, url: str, timeout: float = 20) -> None:
        self.loaded = False
        self.errors.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.loaded:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {timeout}s")
            self._handle(json.loads(self.ws.recv()))
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))", await_promise=True)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path, width: int = 1400, max_height: int = 3000) -> Path:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        height = min(max_height, int(self.evaluate("document.documentElement.scrollHeight")))
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        import base64

        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.ws.close()


@contextmanager
def headless_chromium():
    """Debian's chromium, headless, with a fresh profile; yields a function that opens a new Page."""
    binary = chromium_path()
    assert binary, "chromium is not installed"
    profile = Path(tempfile.mkdtemp(prefix="kv-chromium-"))
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages: list[Page] = []

        def new_page() -> Page:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
            with urllib.request.urlopen(request, timeout=10) as resp:
                target = json.loads(resp.read())
            page = Page(target["webSocketDebuggerUrl"])
            pages.append(page)
            return page

        yield new_page
        for page in pages:
            page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def static_server(root: Path):
    """A loopback HTTP server of a directory (as a person would open the report through any web server)."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def screenshot_dir(tmp_path: Path) -> Path:
    """KUBEVIBE_SCREENSHOTS keeps the screenshots somewhere to look at; otherwise they go to tmp_path."""
    target = Path(os.environ.get("KUBEVIBE_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target
