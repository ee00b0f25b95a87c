"""Where the cells of an experiment run: one small interface, local processes and a Ray cluster behind it.

The pool (executor.py) decides what to run and records what happened; a backend only starts a cell's
`kubevibe run` (or `kubevibe resume`) somewhere and says when it ended. Whatever the backend, the cell's run
directory ends up in the experiment directory under runs/<cell key>/ before `poll()` reports the exit code, and
what the subprocess printed is appended to logs/<cell key>.log, so the pool's bookkeeping is the same for all.

Paths in a cell's command line are relative to the experiment directory (the subprocess runs there, or in a
copy of its layout on a Ray worker), so a run records the same settings wherever it ran.

Selected by one setting, `executor` (`--executor`, KUBEVIBE_EXECUTOR): `commands.make_backend` is what `kubevibe
experiment` and `kubevibe bench` call (there, so that this module and ray_backend.py do not import each other).
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kubevibe.exec import start
from kubevibe.settings import CONFIG_ENV, ENV_VARS

EXECUTORS = ("local", "ray")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CellJob:
    key: str
    args: list[str]  # after `python -m kubevibe.cli`; paths relative to the experiment directory
    inputs: list[str]  # experiment-directory files the run reads (prompt, config, ...), relative: Ray ships them
    resume: str | None  # the run directory to resume, relative; None for a fresh run
    attempt: int
    env_keys: frozenset[str]  # the settings the plan sets (see child_env)


class CellHandle(ABC):
    """One launched cell. `retries` lists why it had to start again elsewhere (a lost worker), if it did."""

    def __init__(self) -> None:
        self.retries: list[str] = []

    @abstractmethod
    def poll(self) -> int | None:
        """The exit code once the run ended and its directory is in place; None while it runs."""

    @abstractmethod
    def signal(self, sig: int) -> None:
        """SIGINT: stop the run cleanly (it is recorded as interrupted); SIGKILL: kill it."""


class CellBackend(ABC):
    name: str

    @abstractmethod
    def start(self, exp_path: Path, workers: int | None, plan_workers: int, progress: Progress) -> int:
        """Get ready to launch cells of the experiment in exp_path; returns how many run at a time."""

    @abstractmethod
    def launch(self, job: CellJob, log: Path) -> CellHandle: ...

    def close(self) -> None:
        """Release what start() took (a Ray connection, a Ray instance started for the experiment)."""

    def describe(self) -> str:
        return self.name


def child_env(plan_settings_keys: set[str] | frozenset[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment (the caller's, or a worker's) without the variables that would change run settings behind
    the plan's back."""
    drop = set(ENV_VARS.values()) | {CONFIG_ENV}
    if "kubeconfig" not in plan_settings_keys:
        drop.discard(ENV_VARS["kubeconfig"])  # where the cluster is, not how the run behaves
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in drop and not k.startswith("RAY_AUTH_")}  # a Ray token is not the run's business
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kubevibe_argv(job: CellJob) -> list[str]:
    return [sys.executable, "-m", "kubevibe.cli", *job.args]


# -- local processes ------------------------------------------------------------------------------------------
@dataclass
class _LocalHandle(CellHandle):
    proc: subprocess.Popen
    log: IO[str]
    retries: list[str] = field(default_factory=list)

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and not self.log.closed:
            self.log.close()
        return rc

    def signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass


class LocalProcesses(CellBackend):
    """Each cell a subprocess of this one, in its own session (a Ctrl-C or crash of one run cannot take the others
    down), holding the experiment's lock so no second experiment process works in the directory meanwhile."""

    name = "local"

    def __init__(self, lock_fd: Callable[[], int | None] = lambda: None):
        self.lock_fd = lock_fd
        self.exp_path = Path(".")

    def start(self, exp_path: Path, workers: int | None, plan_workers: int, progress: Progress) -> int:
        self.exp_path = exp_path
        return workers or plan_workers

    def launch(self, job: CellJob, log: Path) -> CellHandle:
        out = log.open("a", encoding="utf-8")
        fd = self.lock_fd()
        proc = start(kubevibe_argv(job), cwd=self.exp_path, env=child_env(job.env_keys), stdout=out,
                     pass_fds=(fd,) if fd is not None else ())
        return _LocalHandle(proc=proc, log=out)
