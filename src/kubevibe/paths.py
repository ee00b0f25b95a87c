"""Where KubeVibe keeps its own data (base image build files, registry storage, podman config).

`KUBEVIBE_HOME` overrides the data directory; default `$XDG_DATA_HOME/kubevibe` or `~/.local/share/kubevibe`.
Runs go to `./runs` unless `--runs-dir` / `KUBEVIBE_RUNS_DIR` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubevibe.settings import machine_setting


def data_dir() -> Path:
    home = machine_setting("home")
    if home is not None:
        return home
    xdg = os.environ.get("XDG_DATA_HOME")  # the XDG convention's own variable, not a KubeVibe setting
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "kubevibe"
