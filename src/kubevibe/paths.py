"""Where KubeVibe keeps its own data (base image build files, registry storage, podman config).

`KUBEVIBE_HOME` overrides the data directory; default `$XDG_DATA_HOME/kubevibe` or `~/.local/share/kubevibe`.
Runs go to `./runs` unless `--runs-dir` / `KUBEVIBE_RUNS_DIR` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    env = os.environ.get("KUBEVIBE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "kubevibe"
