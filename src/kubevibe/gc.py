"""`kubevibe gc`: find and delete what crashed runs left behind, on the local engine and on a cluster.

Only objects carrying KubeVibe's labels are ever considered, and deletions go by name of objects found that way
(or, on a cluster, by a selector with both labels), so nothing without them can be touched:
  * podman: pods, containers and networks with the label `io.kubevibe.run` (the local target's), and with
    `--images` the images Build labelled `io.kubevibe.run` (never the base image: it has no run label);
  * KubeVibe's own loopback registry (with `--images`): tags `<run id>-s<step>` under `kubevibe/` (deleting
    manifests needs `storage.delete.enabled`, which localinfra/registry.py's configuration sets);
  * a cluster: namespaces labelled `app.kubernetes.io/managed-by=kubevibe` AND `io.kubevibe.run`.

Which leftovers may go (`decide`): a run that may still be going must keep its resources. A namespace names the
process that made it (annotation `io.kubevibe.owner`: host/pid/start time): alive on this host -> kept, dead ->
deleted. Otherwise the run directory says: run.json with an outcome other than "running" -> the run is over,
delete. Else (the run says running, or its directory is elsewhere) the leftover is deleted only once its run
started more than `--older-than` seconds ago (run ids begin with their start time). `--dry-run` lists the
decisions and deletes nothing.

Each provider lists its own leftovers (targets/local/gc.py: podman pods, containers, networks;
targets/kubernetes/gc.py: the `Cluster` of run namespaces); images, build containers and registry tags are
Build's and are listed here. Every place returns `kubevibe.leftover.Leftover` records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from kubevibe.engines.leftovers import BuildContainer, build_containers
from kubevibe.exec import CommandResult, run
from kubevibe.leftover import Leftover, owner_of, podman_time
from kubevibe.owner import label_alive
from kubevibe.targets.kubernetes.gc import Cluster, owner_alive
from kubevibe.targets.kubernetes.kubectl import KubeAccess
from kubevibe.targets.labels import RUN_LABEL
from kubevibe.targets.local.gc import podman_containers, podman_networks, podman_pods
from kubevibe.record.rundir import load_run

COMMAND_TIMEOUT_S = 60.0
DEFAULT_OLDER_THAN_S = 3600.0
REGISTRY_ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
])  # fmt: skip


# --- decisions (pure) ------------------------------------------------------------------------------------------------


def run_started(run_id: str) -> float | None:
    """Run ids begin with their UTC start time: 20261124T101500Z-abc123 (any case)."""
    m = re.match(r"^(\d{8}t\d{6}z)", run_id.lower())
    if not m:
        return None
    return datetime.strptime(m.group(1).upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()


def run_outcomes(runs_dir: Path) -> dict[str, str]:
    """{run id (lowercase): outcome in its run.json} for every run directory under runs_dir/<model>/<run id>."""
    out: dict[str, str] = {}
    if not runs_dir.is_dir():
        return out
    for path in runs_dir.glob("*/*/run.json"):
        try:
            outcome = load_run(path).outcome
        except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
            continue
        out[path.parent.name.lower()] = str(outcome or "")
    return out


def decide(leftover: Leftover, *, outcomes: dict[str, str], now: float, older_than: float,
           alive: Callable[[str], bool | None] | None = None) -> Leftover:
    """Set leftover.delete and .why (see the module docstring for the rules)."""
    if leftover.owner:
        state = (alive or owner_state)(leftover.owner)
        if state is True:
            leftover.delete, leftover.why = False, f"its process is still running ({leftover.owner})"
            return leftover
        if state is False:
            leftover.delete, leftover.why = True, f"its process has ended ({leftover.owner})"
            return leftover
    outcome = outcomes.get(leftover.run.lower())
    if outcome and outcome != "running":
        leftover.delete, leftover.why = True, f"its run has ended ({outcome})"
        return leftover
    started = run_started(leftover.run) or leftover.created
    age = now - started if started else None
    if age is not None and age >= older_than:
        leftover.delete = True
        leftover.why = f"its run started {_age(age)} ago and " + ("says it is still running, but has not ended"
                                                                  if outcome == "running" else "has no run record here")
        return leftover
    leftover.delete = False
    leftover.why = (f"its run may still be going (started {_age(age)} ago; --older-than {older_than:.0f} deletes "
                    "older ones)") if age is not None else "its age is unknown"
    return leftover


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- finding (pure parsers over the tools' JSON) ---------------------------------------------------------------------


def podman_images(data: Any) -> list[Leftover]:
    out = []
    for image in data or []:
        run_id = (image.get("Labels") or {}).get(RUN_LABEL)
        if run_id:
            names = image.get("Names") or [image.get("Id")]
            out.append(Leftover("podman", "image", str(names[0]), run_id, podman_time(image.get("Created")),
                                owner=owner_of(image.get("Labels")), extra={"id": image.get("Id"), "names": names}))
    return out


def build_leftovers(containers: Iterable[BuildContainer]) -> list[Leftover]:
    """buildah working containers an interrupted build left (marked by KubeVibe, see engines.leftovers)."""
    return [Leftover("podman", "build-container", c.name, c.run, c.created, "storage", owner=c.owner,
                     extra={"id": c.id}) for c in containers]


def owner_state(owner: str) -> bool | None:
    """Alive? for both owner forms: a local object's label (pid.ticks.boot) and a namespace's host/pid/ticks."""
    state = label_alive(owner)
    return state if state is not None else owner_alive(owner)


def registry_tags(catalog: dict[str, list[str]]) -> list[Leftover]:
    """Tags `<run id>-s<step>` of repositories kubevibe/<name> ({repository: tags})."""
    out = []
    for repo, tags in sorted(catalog.items()):
        if not repo.startswith("kubevibe/"):
            continue
        for tag in tags or []:
            m = re.fullmatch(r"(.+)-s\d+", tag)
            if m and run_started(m.group(1)) is not None:
                out.append(Leftover("registry", "tag", f"{repo}:{tag}", m.group(1), extra={"repo": repo, "tag": tag}))
    return out


# --- the places ------------------------------------------------------------------------------------------------------


class Podman:
    def __init__(self, binary: str, env: dict[str, str]):
        self.binary, self.env = binary, env

    def _json(self, *args: str) -> Any:
        result = run([self.binary, *args], timeout=COMMAND_TIMEOUT_S, env=self.env)
        result.check(hint="Is podman working? `kubevibe doctor` checks it.")
        return json.loads(result.stdout or "[]")

    def find(self, include_images: bool) -> list[Leftover]:
        label = f"label={RUN_LABEL}"
        pods = podman_pods(self._json("pod", "ps", "--filter", label, "--format", "json"))
        pod_ids = {str(p.extra.get("id")) for p in pods}
        found = pods + podman_containers(self._json("ps", "-a", "--filter", label, "--format", "json"), pod_ids)
        found += podman_networks(self._json("network", "ls", "--filter", label, "--format", "json"))
        found += build_leftovers(build_containers(self.binary, self.env))
        if include_images:
            found += podman_images(self._json("images", "--filter", label, "--format", "json"))
        return found

    def delete(self, leftover: Leftover) -> CommandResult:
        """Remove one labelled leftover. Networks and images without --force, which would also remove every
        container using them, labelled or not: one still in use stays, and the deletion reports it."""
        ref = str(leftover.extra.get("id") or leftover.name)
        argv = {"pod": ["pod", "rm", "--force", "--ignore", "--time", "0", ref],
                "container": ["rm", "--force", "--ignore", "--time", "0", ref],
                "build-container": ["rm", "--force", ref],  # a storage container: removing it unmounts it
                "network": ["network", "rm", ref],
                "image": ["rmi", *(leftover.extra.get("names") or [ref])]}[leftover.kind]  # every name: untagged
        return run([self.binary, *argv], timeout=COMMAND_TIMEOUT_S * 2, env=self.env)


class Registry:
    """KubeVibe's own loopback registry (the distribution registry API v2)."""

    def __init__(self, address: str, client: httpx.Client | None = None):
        self.base = f"http://{address}"
        self.client = client or httpx.Client(timeout=20, trust_env=False)

    def find(self) -> list[Leftover]:
        catalog: dict[str, list[str]] = {}
        repos: list[str] = []
        url: str | None = f"{self.base}/v2/_catalog"
        while url:  # paginated: the next page is in the Link header (`</v2/_catalog?last=x&n=100>; rel="next"`)
            answer = self.client.get(url)
            answer.raise_for_status()
            repos += answer.json().get("repositories") or []
            link = re.match(r'<([^>]+)>;\s*rel="next"', answer.headers.get("Link", ""))
            url = self.base + link.group(1) if link else None
        for repo in repos:
            if repo.startswith("kubevibe/"):
                answer = self.client.get(f"{self.base}/v2/{repo}/tags/list")
                catalog[repo] = (answer.json().get("tags") or []) if answer.status_code == 200 else []
        return registry_tags(catalog)

    def delete(self, leftover: Leftover) -> CommandResult:
        repo, tag = leftover.extra["repo"], leftover.extra["tag"]
        head = self.client.head(f"{self.base}/v2/{repo}/manifests/{tag}", headers={"Accept": REGISTRY_ACCEPT})
        digest = head.headers.get("Docker-Content-Digest")
        if head.status_code != 200 or not digest:
            return CommandResult(argv=["HEAD", f"{repo}:{tag}"], returncode=1, stderr=f"HTTP {head.status_code}")
        answer = self.client.delete(f"{self.base}/v2/{repo}/manifests/{digest}")
        ok = answer.status_code in (200, 202, 404)
        return CommandResult(argv=["DELETE", f"{repo}@{digest}"], returncode=0 if ok else 1,
                             stderr="" if ok else f"HTTP {answer.status_code}: {answer.text[:200]}")


# --- the command ------------------------------------------------------------------------------------------------------


@dataclass
class GcReport:
    leftovers: list[Leftover] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # places not looked at, and why
    errors: list[str] = field(default_factory=list)


def collect(places: Iterable[tuple[str, Callable[[], list[Leftover]]]], report: GcReport) -> None:
    for label, find in places:
        try:
            report.leftovers += find()
        except Exception as exc:  # noqa: BLE001 - one unreachable place must not hide the others
            output = str(getattr(exc, "output", "") or "").strip().splitlines()
            message = str(getattr(exc, "message", exc)).strip().splitlines()
            report.skipped.append(f"{label}: " + (output[-1] if output else message[0] if message
                                                  else type(exc).__name__))


def garbage_collect(*, podman: Podman | None, cluster: Cluster | None, registry: Registry | None,
                    include_images: bool, runs_dir: Path, older_than: float, dry_run: bool,
                    now: float | None = None, alive: Callable[[str], bool | None] | None = None) -> GcReport:
    report = GcReport()
    places: list[tuple[str, Callable[[], list[Leftover]]]] = []
    if podman is not None:
        places.append(("podman", lambda: podman.find(include_images)))
    if registry is not None and include_images:
        places.append(("registry", registry.find))
    if cluster is not None:
        places.append(("cluster", cluster.find))
    collect(places, report)
    outcomes = run_outcomes(runs_dir)
    moment = now if now is not None else datetime.now(timezone.utc).timestamp()
    for leftover in report.leftovers:
        decide(leftover, outcomes=outcomes, now=moment, older_than=older_than, alive=alive)
    if dry_run:
        return report
    order = {"pod": 0, "container": 1, "build-container": 1, "network": 2, "image": 3, "tag": 4, "namespace": 5}
    done_namespace_runs: set[str] = set()
    for leftover in sorted(report.leftovers, key=lambda x: order.get(x.kind, 9)):
        if not leftover.delete:
            continue
        handler = {"podman": podman, "cluster": cluster, "registry": registry}[leftover.place]
        if leftover.kind == "namespace":
            if leftover.run in done_namespace_runs:
                continue
            done_namespace_runs.add(leftover.run)
        result = handler.delete(leftover)  # type: ignore[union-attr]
        if not result.ok:
            report.errors.append(f"{leftover.place} {leftover.kind} {leftover.name}: "
                                 f"{(result.error or result.output or result.describe()).splitlines()[-1]}")
    return report


def command(say: Callable[[str], None], *, where: str, include_images: bool, dry_run: bool, older_than: float,
            settings: Any) -> int:
    """What `kubevibe gc` does; returns the exit code (1 if a deletion failed or an asked-for place was unreachable)."""
    from kubevibe.errors import UsageError
    from kubevibe.podman_conf import podman_env
    from kubevibe.tools import find_tool

    if where not in ("local", "kubernetes", "all"):
        raise UsageError(f"--target {where!r}: choose local, kubernetes or all.")
    podman = registry = cluster = None
    skipped: list[str] = []
    if where in ("local", "all"):
        binary = find_tool("podman")
        if binary is None:
            skipped.append("podman: not installed")
        else:
            podman = Podman(str(binary), podman_env())
            if include_images:
                from kubevibe.localinfra.registry import registry_address, registry_alive

                if registry_alive():
                    registry = Registry(registry_address())
                else:
                    skipped.append(f"registry: KubeVibe's registry at {registry_address()} is not running")
    if where in ("kubernetes", "all"):
        kubectl = find_tool("kubectl")
        if kubectl is None:
            skipped.append("cluster: kubectl is not installed")
        else:
            cluster = Cluster(KubeAccess.from_settings(settings, str(kubectl)))
    report = garbage_collect(podman=podman, cluster=cluster, registry=registry, include_images=include_images,
                             runs_dir=Path(settings.runs_dir), older_than=older_than, dry_run=dry_run)
    for leftover in report.leftovers:
        say(leftover.line(dry_run))
    for text in skipped + report.skipped:
        say(f"skipped      {text}")
    for text in report.errors:
        say(f"error        {text}")
    asked = (podman is not None) + (cluster is not None) + (registry is not None)
    looked_nowhere = where == "all" and asked - len(report.skipped) <= 0
    if looked_nowhere:  # with --target all one unreachable place is normal (no cluster); none at all is not
        say("error        could look nowhere: neither podman nor a cluster could be asked")
    doomed = sum(1 for x in report.leftovers if x.delete)
    kept = len(report.leftovers) - doomed
    verb = "would delete" if dry_run else "deleted"
    say(f"{verb} {doomed - (0 if dry_run else len(report.errors))}, kept {kept}"
        + ("" if report.leftovers else " (nothing labelled by KubeVibe found)"))
    asked_unreachable = where != "all" and bool(report.skipped or skipped)
    return 1 if report.errors or asked_unreachable or looked_nowhere else 0
