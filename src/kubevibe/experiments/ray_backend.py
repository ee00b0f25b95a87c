"""The cells of an experiment as Ray tasks: `kubevibe experiment plan.yaml --executor ray [--ray-address ADDR]`.

Driver side (this process): one Ray task per launched cell, asking for one unit of the custom resource
`kubevibe_local` (a host declares as many as the runs it can carry at once: `ray start ... --resources
'{"kubevibe_local": 2}'`) and no CPU, so Ray never puts more runs on a host than it declared. The address comes
from --ray-address, else RAY_ADDRESS, else a local Ray instance is started for the experiment (as many
kubevibe_local as --workers) and stopped after it.

Worker side (`run_cell`, on any node that has KubeVibe set up): a scratch directory with the experiment's layout
(the cell's prompt and config files; for a resume, the run directory sent along), `kubevibe run` (or `resume`) as
a subprocess there, exactly the command line a local cell gets, then runs/<cell key>/ packed as a tar.gz and
returned through Ray's object store. The driver unpacks it into the experiment directory, so the run lands where
a local run would, and the SQLite store, resume, report and compare see no difference.

A lost worker (its process or node died: any Ray error that is not an exception of run_cell itself) makes the
cell start again on whatever node has room, at most MAX_ATTEMPTS times in all; each loss is written to the
cell's log and counted in the store's `attempts`. Ctrl-C: the pool signals the cells; the signal reaches the
workers through a small actor they poll (`Coordinator`), the runs are interrupted cleanly (SIGINT), packed and
returned, and recorded as interrupted, so running the command again resumes them. If a worker dies, its run gets
SIGTERM (PR_SET_PDEATHSIG) and tears its deployment down.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.exec import start
from kubevibe.experiments.backends import CellBackend, CellHandle, CellJob, Progress, child_env, kubevibe_argv

RESOURCE = "kubevibe_local"
MAX_ATTEMPTS = 3  # per launch of a cell: the first try and at most two more after lost workers
INSTALL_HINT = "pip install 'kubevibe[ray]'"
STOP_POLL_S = 0.5
START_POLL_S = 0.5
INTERRUPT_GRACE_S = 120.0  # after SIGINT, how long a run may take to clean up before it is killed


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT} "
                         "(scripts/bootstrap.sh --test installs it too).") from None
    return ray


class Coordinator:
    """A tiny actor (no CPU) the tasks report to and poll: where each try of a cell started (its number, node id,
    host name), and whether to stop (0 run, 1 interrupt cleanly, 2 kill)."""

    def __init__(self) -> None:
        self.level = 0
        self.starts: dict[str, tuple[int, str, str]] = {}

    def stop(self, level: int) -> None:
        self.level = max(self.level, level)

    def stop_level(self) -> int:
        return self.level

    def started(self, key: str, try_no: int, node: str, host: str) -> None:
        self.starts[key] = (try_no, node, host)

    def where(self) -> dict[str, tuple[int, str, str]]:
        return dict(self.starts)


# -- worker side ----------------------------------------------------------------------------------------------
def _run_process_setup() -> None:
    """In the run's process before exec. A Ray worker runs tasks with SIGINT blocked, and a blocked (or ignored)
    signal stays so across exec, so the run would never see Ctrl-C: it gets the default mask and handlers back.
    And SIGTERM when the Ray worker that started it dies, so the run cleans up (its cleanups tear down what it
    deployed) instead of living on unwatched."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pack(root: Path, rel: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
        if (root / rel).exists():
            tar.add(root / rel, arcname=rel)
    return buf.getvalue()


def run_cell(job_data: dict[str, Any], inputs: dict[str, bytes], resume_tar: bytes | None,
             coordinator: Any, try_no: int) -> dict[str, Any]:
    """A Ray task: run one cell's `kubevibe` command on this node and return its runs/<key>/ packed."""
    import ray

    job = CellJob(**{**job_data, "env_keys": frozenset(job_data["env_keys"])})
    node = ray.get_runtime_context().get_node_id()
    host = socket.gethostname()
    coordinator.started.remote(job.key, try_no, node, host)
    work = Path(tempfile.mkdtemp(prefix="kubevibe-cell-"))
    try:
        if _stop_level(coordinator) > 0:
            return {"rc": 130, "log": "interrupted before it started\n", "runs": None, "node": node, "host": host}
        for rel, data in inputs.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:  # inputs live inside the experiment layout
                raise ValueError(f"input {rel!r} is not a path inside the experiment directory")
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        if resume_tar:
            with tarfile.open(fileobj=io.BytesIO(resume_tar), mode="r:gz") as tar:
                tar.extractall(work, filter="data")
        log_path = work / "cell.log"
        with log_path.open("w", encoding="utf-8") as log:
            proc = start(kubevibe_argv(job), cwd=work, env=child_env(job.env_keys), stdout=log,
                         preexec_fn=_run_process_setup)
            try:
                rc = _watch(proc, coordinator)
            except BaseException:  # the task itself is being torn down: the run must not outlive it
                _end(proc)
                raise
        return {"rc": rc, "log": log_path.read_text(encoding="utf-8", errors="replace"),
                "runs": _pack(work, f"runs/{job.key}"), "node": node, "host": host}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stop_level(coordinator: Any) -> int:
    import ray

    try:
        return int(ray.get(coordinator.stop_level.remote(), timeout=10))
    except Exception:  # noqa: BLE001 - a lost coordinator means no one asks to stop; the run goes on
        return 0


def _watch(proc: subprocess.Popen, coordinator: Any) -> int:
    """Wait for the run, passing on a stop request: SIGINT once, then SIGKILL (to its process group) when asked
    again or when it does not end within INTERRUPT_GRACE_S."""
    interrupted_at: float | None = None
    killed = False
    while True:
        try:
            return proc.wait(timeout=STOP_POLL_S)
        except subprocess.TimeoutExpired:
            pass
        level = _stop_level(coordinator)
        if level >= 1 and interrupted_at is None:
            proc.send_signal(signal.SIGINT)
            interrupted_at = time.monotonic()
        overdue = interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE_S
        if (level >= 2 or overdue) and not killed:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed = True


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM (the run cleans up), then SIGKILL to its process group if it does not end in time."""
    try:
        proc.terminate()
        proc.wait(timeout=INTERRUPT_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# -- driver side ----------------------------------------------------------------------------------------------
class _RayHandle(CellHandle):
    def __init__(self, backend: "RayCluster", job: CellJob, log: Path):
        super().__init__()
        self.backend = backend
        self.job = job
        self.log = log
        self.tries = 0
        self.announced = 0
        self.where: tuple[int, str, str] | None = None
        self.ref = self._submit()

    def _submit(self) -> Any:
        self.tries += 1
        return self.backend.submit(self.job, self.tries)

    def _say(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            out.write(text if text.endswith("\n") else text + "\n")

    def _announce(self, fresh: bool = False) -> None:
        """Write to the cell's log on which node this try runs, once the task said so."""
        if self.announced == self.tries:
            return
        where = self.backend.starts(fresh).get(self.job.key)
        if where is not None and where[0] == self.tries:
            self.where = where
            self.announced = self.tries
            self._say(f"--- try {self.tries} of attempt {self.job.attempt} runs on Ray node {where[1]} ({where[2]})")

    def poll(self) -> int | None:
        ray = self.backend.ray
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            self._announce()
            return None
        try:
            result = ray.get(self.ref)
        except ray.exceptions.RayTaskError as exc:  # run_cell itself failed on the worker: not a lost worker
            self._say(f"error: the Ray task of this cell failed: {_one_line(exc)}")
            return 1
        except ray.exceptions.TaskCancelledError:
            self._say("interrupted: the Ray task of this cell was cancelled")
            return 130
        except ray.exceptions.RayError as exc:  # the worker or its node died, or the result was lost with it
            self._announce(fresh=True)
            node = f" on Ray node {self.where[1]} ({self.where[2]})" if self.where else ""
            reason = f"{type(exc).__name__}{node}"
            if self.tries >= MAX_ATTEMPTS:
                self._say(f"error: the Ray worker running this cell was lost {self.tries} times (last: {reason})")
                return 1
            self.retries.append(reason)
            self._say(f"--- lost the Ray worker of try {self.tries} ({reason}: {_one_line(exc)[:300]}); "
                      "starting the cell again on another worker")
            self.where = None
            self.ref = self._submit()
            return None
        self._announce(fresh=True)  # a try that ended between two polls still says where it ran
        if self.announced != self.tries and result.get("node"):
            # The task's own start message can reach the coordinator after its result reached us (seen under
            # load): the result says where it ran as well.
            self.announced = self.tries
            self._say(f"--- try {self.tries} of attempt {self.job.attempt} runs on Ray node {result['node']} "
                      f"({result.get('host')})")
        if result.get("runs"):
            self.backend.unpack(result["runs"], self.job.key)
        self._say(result.get("log") or "")
        return int(result["rc"])

    def signal(self, sig: int) -> None:
        self.backend.stop(2 if sig == signal.SIGKILL else 1)


class RayCluster(CellBackend):
    name = "ray"

    def __init__(self, address: str | None):
        self.address = address
        if address is None:
            _ephemeral_token()  # before Ray is imported: it reads its authentication settings then
        self.ray = import_ray()
        self.exp_path = Path(".")
        self.local_temp: str | None = None
        self.coordinator: Any = None
        self._remote: Any = None
        self._starts: dict[str, tuple[int, str, str]] = {}
        self._starts_at = 0.0
        self._stop_level = 0
        # What one run asks of a node: a unit of kubevibe_local and no CPU (it mostly waits on its subprocess).
        self._per_run: dict[str, Any] = {"num_cpus": 0, "resources": {RESOURCE: 1}}

    def describe(self) -> str:
        return f"ray at {self.address}" if self.address else "ray (a local instance for this experiment)"

    def start(self, exp_path: Path, workers: int | None, plan_workers: int, progress: Progress) -> int:
        ray = self.ray
        self.exp_path = exp_path
        quiet = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
        if self.address:
            try:
                ray.init(address=self.address, **quiet)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError by Ray version
                raise UsageError(f"Cannot connect to the Ray cluster at {self.address}: {_one_line(exc)}") from None
            total = ray.cluster_resources()
            capacity = int(total.get(RESOURCE, 0))
            if capacity < 1:  # a cluster not set up for KubeVibe: still usable, one run per CPU
                capacity = int(total.get("CPU", 0))
                if capacity < 1:
                    self.close()
                    raise UsageError(f"The Ray cluster at {self.address} has no node that offers {RESOURCE} or a "
                                     f"CPU; start workers with ray start --address {self.address} --resources "
                                     f"'{{\"{RESOURCE}\": 1}}' (one per run the host can carry).")
                self._per_run = {"num_cpus": 1}
                progress(f"no node of the Ray cluster declares {RESOURCE}: each run takes one CPU instead "
                         f"(declare it with ray start --resources '{{\"{RESOURCE}\": N}}', N runs at a time)")
        else:
            capacity = workers or plan_workers
            self.local_temp = tempfile.mkdtemp(prefix="kvray-", dir=_short_temp_parent())
            try:
                ray.init(address="local", num_cpus=1, resources={RESOURCE: capacity}, include_dashboard=False,
                         _temp_dir=self.local_temp, **quiet)
            except Exception as exc:  # noqa: BLE001 - whatever Ray raises, one sentence for the user
                self.close()
                raise KubeVibeError(f"Could not start a local Ray instance: {_one_line(exc)}",
                                    hint="give a running cluster with --ray-address") from None
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = ray.remote(num_cpus=0, max_restarts=0)(Coordinator)
        self.coordinator = actor.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        self._remote = ray.remote(run_cell).options(**self._per_run, max_retries=0)
        unit = RESOURCE if "resources" in self._per_run else "CPU"
        progress(f"executor: {self.describe()}, {capacity} × {unit} in the cluster")
        return workers or capacity

    def submit(self, job: CellJob, try_no: int) -> Any:
        inputs = {rel: (self.exp_path / rel).read_bytes() for rel in job.inputs}
        resume_tar = _pack(self.exp_path, job.resume) if job.resume else None
        data = {**asdict(job), "env_keys": sorted(job.env_keys)}
        return self._remote.remote(data, inputs, resume_tar, self.coordinator, try_no)

    def launch(self, job: CellJob, log: Path) -> CellHandle:
        return _RayHandle(self, job, log)

    def starts(self, fresh: bool = False) -> dict[str, tuple[int, str, str]]:
        if fresh or time.monotonic() - self._starts_at >= START_POLL_S:
            self._starts_at = time.monotonic()
            try:
                self._starts = self.ray.get(self.coordinator.where.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - only for the log line; the run is unaffected
                pass
        return self._starts

    def stop(self, level: int) -> None:
        if level > self._stop_level:
            self._stop_level = level
            self.coordinator.stop.remote(level)

    def unpack(self, data: bytes, key: str) -> None:
        """Put the run directories of runs/<key>/ from a worker into the experiment directory (a resumed run's
        directory is replaced by its newer copy)."""
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.exp_path))
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(staging, filter="data")
            for run_json in sorted(staging.glob(f"runs/{key}/*/*/run.json")):
                rel = run_json.parent.relative_to(staging)
                dest = self.exp_path / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    old = staging / "replaced"
                    dest.rename(old)
                    run_json.parent.rename(dest)
                    shutil.rmtree(old)
                else:
                    run_json.parent.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
        if self.local_temp:
            shutil.rmtree(self.local_temp, ignore_errors=True)
            self.local_temp = None


def _ephemeral_token() -> None:
    """Token authentication for the local instance, with a token that lives only in this process's environment
    (inherited by the instance's processes). Left alone, Ray would write one to ~/.ray/auth_token, and every later
    `ray start --head` of the user would then demand it. A token or mode the user chose is kept."""
    if not any(os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _short_temp_parent() -> str:
    """Where a local instance's temp dir goes: Ray's socket paths under it (about 70 characters more) must stay
    within the 107 bytes of a Unix socket address, so a long TMPDIR gives way to /tmp."""
    here = tempfile.gettempdir()
    return here if len(here) <= 30 or not os.access("/tmp", os.W_OK) else "/tmp"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__
