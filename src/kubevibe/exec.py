"""The one way KubeVibe runs external commands: an argument list, never a shell; always a timeout.

`run()` never raises for a failing command: it returns a `CommandResult` that stages attach to their evidence.
Callers that need success call `result.check()`. `run_pipe()` is the same for `producer | consumer`.
`start()` is for a child that outlives the call (a daemon, an experiment's cell, a port-forward): the caller owns
the process it returns, and `kill_group()` ends it with everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from kubevibe.errors import CommandError
from kubevibe.text import clip_middle, pretty_command

# Output kept per stream. Evidence for the Fix stage is trimmed again later to fit the model's context.
MAX_CAPTURE_CHARS = 200_000


__all__ = ["CommandResult", "kill_group", "pretty_command", "run", "run_pipe", "start"]  # pretty_command: callers print commands too


def _clip(text: str, limit: int = MAX_CAPTURE_CHARS) -> str:
    return clip_middle(text, limit // 2, limit // 2)


class CommandResult(BaseModel):
    argv: list[str]
    returncode: int | None  # None: timed out or could not start
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    error: str | None = None  # could not start (binary missing, ...)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command(self) -> str:
        return pretty_command(self.argv)

    @property
    def output(self) -> str:
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()

    def describe(self) -> str:
        if self.error:
            return f"{self.command}: {self.error}"
        if self.timed_out:
            return f"{self.command}: timed out after {self.duration_s:.0f}s"
        return f"{self.command}: exit {self.returncode}"

    def check(self, hint: str | None = None) -> "CommandResult":
        if not self.ok:
            raise CommandError(self.argv, self.returncode, self.error or self.output, hint)
        return self


def run(
    argv: Sequence[str | os.PathLike],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: str | None = None,
    log_file: Path | None = None,
) -> CommandResult:
    """Run argv with a timeout. The child gets its own process group so a timeout kills all of it.

    env: extra variables layered over os.environ.
    log_file: if given, the command and its full output are appended there (the per-stage log).
    """
    args = [os.fspath(a) for a in argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        result = CommandResult(argv=args, returncode=None, error=f"could not start: {exc.strerror or exc}")
        _log(log_file, result)
        return result
    timed_out = False
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        # Ctrl-C or SIGTERM while waiting: never leave the child behind.
        kill_group(proc)
        proc.communicate()
        raise
    result = CommandResult(
        argv=args,
        returncode=None if timed_out else proc.returncode,
        stdout=_clip(out or ""),
        stderr=_clip(err or ""),
        duration_s=round(time.monotonic() - start, 3),
        timed_out=timed_out,
    )
    _log(log_file, result)
    return result


def run_pipe(
    producer: list[str], consumer: list[str], *, timeout: float, env: dict[str, str], log_file: Path | None
) -> CommandResult:
    """`producer | consumer` without a shell: argv lists, both in their own process group, one overall timeout.

    run() runs one process; the base-image import needs tar's output streamed into `podman import -`
    (300 MB, so not through Python memory), hence this one.
    """
    start = time.monotonic()
    full_env = {**os.environ, **env}
    with tempfile.TemporaryFile() as producer_err:
        p1 = subprocess.Popen(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=producer_err,
                              start_new_session=True)  # fmt: skip
        try:
            p2 = subprocess.Popen(consumer, stdin=p1.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=full_env, start_new_session=True)  # fmt: skip
        except OSError:
            kill_group(p1)
            raise
        assert p1.stdout is not None
        p1.stdout.close()  # so tar gets SIGPIPE if podman exits early
        timed_out = False
        try:
            out, err = p2.communicate(timeout=timeout)
            p1.wait(timeout=max(5.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(p1)
            kill_group(p2)
            out, err = p2.communicate()
        except BaseException:
            # Ctrl-C or SIGTERM: the children are in their own sessions, so the signal never reached them.
            kill_group(p1)
            kill_group(p2)
            raise
        producer_err.seek(0)
        tar_err = producer_err.read().decode(errors="replace")
    codes = [p1.returncode, p2.returncode]
    result = CommandResult(
        argv=[*producer, "|", *consumer],
        returncode=None if timed_out else next((c for c in codes if c != 0), 0),
        stdout=out.decode(errors="replace"),
        stderr=(tar_err + err.decode(errors="replace")).strip(),
        duration_s=round(time.monotonic() - start, 3),
        timed_out=timed_out,
    )
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {pretty_command(producer)} | {pretty_command(consumer)}\n# {result.describe()}\n")
            fh.write(result.output + "\n\n")
    return result


def start(
    argv: Sequence[str | os.PathLike],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.STDOUT,
    text: bool = False,
    pass_fds: Sequence[int] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """Start argv in a session of its own (a Ctrl-C of ours does not reach it; kill_group ends all of it), stdin
    closed. env: the child's whole environment (None: ours). Raises OSError if it cannot start."""
    return subprocess.Popen([os.fspath(a) for a in argv], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            cwd=cwd, env=None if env is None else dict(env), text=text,
                            errors="replace" if text else None, start_new_session=True, pass_fds=tuple(pass_fds),
                            preexec_fn=preexec_fn)


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a child started with start_new_session=True and everything it started: SIGTERM, then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass


def _log(log_file: Path | None, result: CommandResult) -> None:
    if log_file is None:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {result.command}\n")
        fh.write(f"# {result.describe()} ({result.duration_s:.2f}s)\n")
        if result.stdout:
            fh.write(result.stdout.rstrip() + "\n")
        if result.stderr:
            fh.write("[stderr]\n" + result.stderr.rstrip() + "\n")
        fh.write("\n")
