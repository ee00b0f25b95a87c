"""The small helpers that have one home each: text clipping and last lines (text.py), waiting between polls
(poll.py), starting a long-lived child (exec.start), and the environment variables read through settings."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kubevibe.errors import SettingError
from kubevibe.exec import kill_group, run_pipe, start
from kubevibe.poll import Backoff
from kubevibe.settings import debug_traceback, machine_setting, openai_api_key, resolve_settings
from kubevibe.text import clip_end, clip_middle, last_line, pretty_command, trim_middle


def test_clip_end_keeps_the_limit_with_its_ellipsis():
    assert clip_end("short", 10) == "short"
    assert clip_end("x" * 10, 10) == "x" * 10
    assert clip_end("abcdefghijk", 10) == "abcdefg..."
    assert clip_end("abcdefghijk", 10, "…") == "abcdefghi…"


def test_clip_middle_and_trim_middle_say_how_much_was_cut():
    assert clip_middle("abcdef", 3, 3) == "abcdef"
    assert clip_middle("abcdefgh", 2, 2) == "ab\n... [4 characters cut] ...\ngh"
    text = "h" * 100 + "t" * 200
    trimmed = trim_middle(text, 150)  # a third from the start, the rest less 40 from the end
    assert trimmed.startswith("h" * 50 + "\n...") and trimmed.endswith("t" * 60)
    assert "[190 characters cut]" in trimmed
    assert trim_middle("x" * 150, 150) == "x" * 150


def test_last_line_skips_blank_and_unwanted_lines_and_prefers():
    assert last_line("one\n two \n\n   \n") == "two"
    assert last_line("") is None and last_line("\n  \n") is None
    klog = "Error: it failed\nI0101 12:00 noise\n"
    assert last_line(klog, keep=lambda line: not line.startswith("I0")) == "Error: it failed"
    assert last_line("Error: first\nthen more\n", prefer=lambda line: line.startswith("Error")) == "Error: first"
    assert last_line("no errors here\n", keep=lambda line: line.startswith("error:")) is None


def test_pretty_command_is_pasteable():
    assert pretty_command(["echo", "a b", "it's"]) == "echo 'a b' 'it'\"'\"'s'"


def test_backoff_grows_to_its_maximum_and_never_sleeps_past_the_deadline():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    backoff = Backoff(deadline=5.0, first=1.0, maximum=2.0, clock=lambda: now[0], sleep=sleep)
    waits = 0
    while backoff.wait():
        waits += 1
    assert slept == [1.0, 1.5, 2.0, 0.5] and waits == 4 and now[0] == 5.0
    assert not backoff.wait() and len(slept) == 4  # past the deadline: no more sleeping


def test_start_runs_the_child_in_its_own_session(tmp_path):
    log = tmp_path / "child.log"
    with log.open("w") as out:
        proc = start([sys.executable, "-c", "import os, time; print(os.getsid(0) == os.getpid(), flush=True); "
                      "time.sleep(30)"], stdout=out, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not log.read_text().strip() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text().strip() == "True"  # the session leader: a Ctrl-C of ours does not reach it
    finally:
        kill_group(proc, grace=2.0)
    assert proc.returncode is not None


def test_run_pipe_streams_and_reports(tmp_path):
    producer = [sys.executable, "-c", "import sys; sys.stdout.write('x' * 200000)"]
    consumer = [sys.executable, "-c", "import sys; print(len(sys.stdin.read()))"]
    result = run_pipe(producer, consumer, timeout=30, env={}, log_file=tmp_path / "log")
    assert result.ok and result.stdout.strip() == "200000"
    assert "|" in (tmp_path / "log").read_text()
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('tar: boom'); sys.exit(2)"]
    result = run_pipe(failing, consumer, timeout=30, env={}, log_file=None)
    assert result.returncode == 2 and "boom" in result.stderr
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    t0 = time.monotonic()
    result = run_pipe(slow, consumer, timeout=1, env={}, log_file=None)
    assert result.timed_out and result.returncode is None and time.monotonic() - t0 < 15


def test_machine_settings_read_from_the_environment_with_the_run_checks():
    assert machine_setting("registry_port", {}) == 5005
    assert machine_setting("registry_port", {"KUBEVIBE_REGISTRY_PORT": " 6001 "}) == 6001
    with pytest.raises(SettingError, match="KUBEVIBE_REGISTRY_PORT.*a TCP port number"):
        machine_setting("registry_port", {"KUBEVIBE_REGISTRY_PORT": "70000"})
    assert machine_setting("base_policy", {"KUBEVIBE_BASE_POLICY": "OFFLINE"}) == "offline"
    with pytest.raises(SettingError, match="expected auto or offline"):
        machine_setting("base_policy", {"KUBEVIBE_BASE_POLICY": "sometimes"})
    assert machine_setting("home", {"KUBEVIBE_HOME": "~/kv"}) == Path("~/kv").expanduser()
    assert machine_setting("home", {"KUBEVIBE_HOME": ""}) is None
    assert machine_setting("debian_mirror", {"KUBEVIBE_DEBIAN_MIRROR": "http://m/debian"}) == "http://m/debian"
    with pytest.raises(SettingError):
        machine_setting("ollama_host", {"OLLAMA_HOST": "gpu box:11434"})


def test_debug_and_the_secret_key_are_read_in_settings_and_the_key_never_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no kubevibe.toml here
    assert debug_traceback({"KUBEVIBE_DEBUG": "1"}) and not debug_traceback({})
    assert openai_api_key({"OPENAI_API_KEY": "sk-secret"}) == "sk-secret" and openai_api_key({}) is None
    resolved = resolve_settings(env={"OPENAI_API_KEY": "sk-secret"})
    assert resolved.sources["openai_api_key"] == "env:OPENAI_API_KEY"
    assert "sk-secret" not in resolved.model_dump_json()
    assert resolve_settings(env={}).sources["openai_api_key"] == "unset"
