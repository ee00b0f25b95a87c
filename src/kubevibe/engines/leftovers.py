"""What an interrupted or timed-out `podman build` leaves: buildah working containers (with their overlay mounts).

buildah keeps no labels on its working containers, so a podman build run by KubeVibe marks them another way:
`--add-host kubevibe-run-<run>:127.0.0.1` and `--add-host kubevibe-owner-<owner>:127.0.0.1`, which buildah stores
in the container's buildah.json (CommonBuildOpts.AddHost) and which cost nothing inside the build (two /etc/hosts
lines). The Build stage removes its run's containers after every build that did not finish cleanly, and `gc`
finds those of crashed processes by the same marks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevibe.exec import run
from kubevibe.owner import OWNER_LABEL
from kubevibe.targets.base import RUN_LABEL

RUN_HOST_PREFIX = "kubevibe-run-"
OWNER_HOST_PREFIX = "kubevibe-owner-"
MARKER_ADDRESS = "127.0.0.1"
COMMAND_TIMEOUT_S = 60.0


def marker_flags(labels: Mapping[str, str] | None) -> list[str]:
    """--add-host flags that mark a build's working containers with its run and owner labels."""
    labels = labels or {}
    flags = []
    for key, prefix in ((RUN_LABEL, RUN_HOST_PREFIX), (OWNER_LABEL, OWNER_HOST_PREFIX)):
        if labels.get(key):
            flags.append(f"--add-host={prefix}{labels[key]}:{MARKER_ADDRESS}")
    return flags


@dataclass
class BuildContainer:
    id: str
    name: str
    run: str  # the run label value
    owner: str  # the owner label value ("" if unmarked)
    created: float | None


def parse_markers(add_hosts: list[str]) -> tuple[str, str]:
    """(run label, owner label) from buildah's AddHost entries; "" where absent."""
    run_label = owner_label = ""
    for entry in add_hosts or []:
        host = str(entry).rsplit(":", 1)[0]
        if host.startswith(RUN_HOST_PREFIX):
            run_label = host.removeprefix(RUN_HOST_PREFIX)
        elif host.startswith(OWNER_HOST_PREFIX):
            owner_label = host.removeprefix(OWNER_HOST_PREFIX)
    return run_label, owner_label


def _storage_paths(binary: str, env: Mapping[str, str] | None) -> tuple[Path, str] | None:
    result = run([binary, "info", "--format", "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}"],
                 timeout=COMMAND_TIMEOUT_S, env=env)
    if not result.ok or "\t" not in result.stdout:
        return None
    root, driver = result.stdout.strip().split("\t", 1)
    return Path(root), driver


def build_containers(binary: str, env: Mapping[str, str] | None) -> list[BuildContainer]:
    """The buildah working containers that carry KubeVibe's marks (none of anyone else's)."""
    listed = run([binary, "ps", "--external", "--all", "--format", "json"], timeout=COMMAND_TIMEOUT_S, env=env)
    listed.check(hint="Is podman working? `kubevibe doctor` checks it.")
    storage = _storage_paths(binary, env)
    if storage is None:
        return []
    root, driver = storage
    out = []
    for entry in json.loads(listed.stdout or "[]") or []:
        if str(entry.get("State") or "").lower() != "storage":
            continue  # a real container (a pod's), not a build's
        cid = str(entry.get("Id") or "")
        state = _buildah_state(root / f"{driver}-containers" / cid / "userdata" / "buildah.json")
        if state is None:
            continue
        run_label, owner_label = parse_markers((state.get("CommonBuildOpts") or {}).get("AddHost") or [])
        if run_label:
            names = entry.get("Names") or [cid]
            created = entry.get("Created")
            out.append(BuildContainer(cid, str(names[0]), run_label, owner_label,
                                      float(created) if isinstance(created, (int, float)) else None))
    return out


def _buildah_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_build_containers(binary: str, env: Mapping[str, str] | None, run_label: str,
                            log_file: Path | None = None) -> list[str]:
    """Remove the working containers (and so their mounts) a build of this run left; returns their ids."""
    doomed = [c.id for c in build_containers(binary, env) if c.run == run_label]
    if doomed:
        run([binary, "rm", "--force", *doomed], timeout=COMMAND_TIMEOUT_S * 2, env=env,
            log_file=log_file).check(hint=f"Remove them by hand: podman rm -f {' '.join(doomed)}")
    return doomed
