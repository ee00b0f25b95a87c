"""Where the service code goes in the build context: the name the Dockerfile and its command expect.

The artifact set keeps the code under the logical key "myapp.py" (the reference tool's name), but a model's
Dockerfile may `COPY app.py .`, `COPY src/ ./src` and run `python src/app.py`, or run `uvicorn main:app`.
Writing the code as myapp.py there makes a correct service fail to build or start, and a Fix round is spent on
a name. `service_file()` reads the Dockerfile (pure) and says which relative path the code should have; Build
writes it there and records the choice (RunState.service_file, run.json `service_file`), Fix shows it.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
import shlex
from pathlib import PurePosixPath

from kubevibe import dockerfile
from kubevibe.pipeline.artifacts import CODE, FILES

# `uvicorn main:app`, `gunicorn -b 0.0.0.0:8000 app:app`, `hypercorn src.app:app`, `flask --app app run`...
_ASGI_RUNNERS = ("uvicorn", "gunicorn", "hypercorn", "daphne", "waitress-serve", "granian")
_MODULE_ATTR_RE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):[A-Za-z_][\w().]*$")
_OPTIONS_WITH_VALUE = {"-b", "--bind", "-w", "--workers", "-k", "--worker-class", "--host", "--port", "-c",
                       "--config", "--timeout", "-t", "--log-level", "--threads", "--chdir", "--app-dir",
                       "--factory-name", "--access-logfile", "--error-logfile", "-e", "--env", "--name",
                       "--root-path", "--proxy-headers-x", "--forwarded-allow-ips", "--limit-concurrency"}  # fmt: skip


def _words(rest: str) -> list[str]:
    """The arguments of RUN/CMD/ENTRYPOINT/COPY in exec form (JSON array) or shell form."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list):
                return [str(v) for v in value]
        except json.JSONDecodeError:
            pass
    try:
        return shlex.split(rest)
    except ValueError:
        return rest.split()


def _safe_relative(path: str) -> str | None:
    """A normalised relative path inside the context, or None (absolute, .., glob, or not a .py file)."""
    path = path.strip()
    if not path or any(c in path for c in "*?[$"):
        return None
    p = PurePosixPath(path)
    parts = [x for x in p.parts if x not in (".", "")]
    if p.is_absolute() or ".." in parts or not parts:
        return None
    return "/".join(parts)


def _copies(text: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD from the build context (not --from another stage)."""
    out = []
    for inst in dockerfile.parse(text):
        if inst.keyword not in ("COPY", "ADD") or any(name == "from" for name, _ in inst.flags):
            continue
        words = _words(inst.args)
        if len(words) >= 2:
            out.append((words[:-1], words[-1]))
    return out


def _last_command(text: str) -> list[str]:
    """ENTRYPOINT + CMD words of the last stage (what the container runs)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for inst in dockerfile.parse(text):
        if inst.keyword == "FROM":
            entrypoint, cmd = [], []
        elif inst.keyword == "ENTRYPOINT":
            entrypoint = _words(inst.args)
        elif inst.keyword == "CMD":
            cmd = _words(inst.args)
    words = entrypoint + cmd
    if len(words) >= 3 and words[0] in ("sh", "/bin/sh", "bash", "/bin/bash") and words[1] == "-c":
        return _words(words[2])
    return words


def _script_of_command(words: list[str]) -> str | None:
    """The Python file a command runs: `python app.py`, `python -m app`, `uvicorn main:app`, `gunicorn app:app`."""
    for i, word in enumerate(words):
        name = PurePosixPath(word).name
        if re.fullmatch(r"python(3(\.\d+)?)?", name):
            rest = [w for w in words[i + 1:] if w not in ("-u", "-B", "-O", "-OO")]
            if rest[:1] == ["-m"] and len(rest) > 1 and rest[1] not in _ASGI_RUNNERS + ("flask",):
                return rest[1].replace(".", "/") + ".py"
            if rest[:1] == ["-m"] and len(rest) > 1:
                return _script_of_command(rest[1:])
            if rest and rest[0].endswith(".py"):
                return rest[0]
            return None
        if name in _ASGI_RUNNERS:
            skip = False
            for arg in words[i + 1:]:
                if skip:
                    skip = False
                    continue
                if arg in _OPTIONS_WITH_VALUE:
                    skip = True
                    continue
                if arg.startswith("-"):
                    continue
                m = _MODULE_ATTR_RE.match(arg)
                if m:
                    return m.group("module").replace(".", "/") + ".py"
            return None
        if name == "flask":
            for j, arg in enumerate(words[i + 1:], start=i + 1):
                if arg in ("--app", "-A") and j + 1 < len(words):
                    return words[j + 1].split(":")[0].replace(".", "/") + ".py"
                if arg.startswith("--app="):
                    return arg.split("=", 1)[1].split(":")[0].replace(".", "/") + ".py"
            return None
    return None


def service_file(dockerfile: str) -> str:
    """The relative path in the build context where the service code belongs; CODE ("myapp.py") by default."""
    copies = _copies(dockerfile)
    py_sources = [s for sources, _ in copies for s in sources if s.endswith(".py")]
    if any(_safe_relative(s) == CODE for s in py_sources):
        return CODE
    # 1. One Python file copied by name: that is the service.
    for source in py_sources:
        path = _safe_relative(source)
        if path and path not in FILES:
            return path
    # 2. Otherwise the file the command runs, found in what the COPY lines bring into the image.
    script = _script_of_command(_last_command(dockerfile))
    if script is None:
        return CODE
    script = script.lstrip("./") if not script.startswith("/") else script
    candidates: list[str] = []
    for sources, dest in copies:
        for source in sources:
            if any(c in source for c in "*?[") and fnmatch(PurePosixPath(script).name, source.lstrip("./")):
                candidates.append(PurePosixPath(script).name)  # `COPY *.py .` brings the script's file
                continue
            src = _safe_relative(source.rstrip("/")) if source.strip() not in (".", "./") else ""
            if src is None or src.endswith(".py") or src in FILES:
                continue
            # `COPY src/ ./src` + `python src/app.py` -> src/app.py; `COPY src/ .` + `python app.py` -> src/app.py
            name = PurePosixPath(script).name if script.startswith("/") else script
            dest_rel = dest.strip().rstrip("/")
            if src and dest_rel not in (".", "", "/app", "/code", "/usr/src/app", "/srv", "/opt/app", "/src"):
                tail = PurePosixPath(dest_rel).name
                if name.startswith(tail + "/"):
                    name = name[len(tail) + 1:]
            candidates.append(f"{src}/{name}" if src else name)
    for candidate in candidates:
        path = _safe_relative(candidate)
        if path and path not in FILES:
            return path
    return CODE
