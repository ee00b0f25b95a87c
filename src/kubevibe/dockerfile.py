"""The one Dockerfile parser, and the static check that runs before anything the model wrote is built.

`parse(text)` gives the logical instructions (continuations joined with the `# escape=` character, comments and
heredoc bodies skipped), each with its physical line span, keyword, flags and arguments. The FROM rewrite at the
end of this module (`rewrite_from_lines`, driven by engines/baseimage.py), the EXPOSE reader and the pre-build check
below all use it, so they agree on what the Dockerfile says.

`precheck(text)` refuses what a build could use to reach outside its container. Debian 12's podman 4.3 / buildah
1.28 follow a symlink made in one stage when a later `RUN --mount=type=bind,rw,from=<stage>,source=<link>` mounts
it (CVE-2024-1753), so a Dockerfile is checked before Build runs it, whatever the engine's version. Refused
(docs/security.md says why each one):
- RUN --mount of type bind that is writable (rw, readwrite, ro=false) or comes from another stage, context or
  image (from=), or whose source climbs out (`..`, absolute paths are relative to the context and are allowed);
- RUN --mount type=cache with from= or source= (it seeds the cache from another stage, the same escape), ssh
  (the host's agent), or an unknown type; type=cache, tmpfs and secret stay allowed;
- RUN --security (insecure lifts the sandbox), --network (host reaches the host's network; the build's network
  is KubeVibe's choice, not the Dockerfile's), --device (host devices), any other RUN flag, and flags whose value
  uses a variable (it cannot be checked before the build);
- the same inside ONBUILD;
- `# syntax=` directives naming a frontend other than docker/dockerfile (BuildKit would run that image);
- COPY/ADD sources that climb out of the build context (`..`).
Allowed on purpose: COPY --from=<stage or image> (a copy, not a mount), ADD of a remote URL (network access, as
pip has; reported as a warning).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubevibe.pipeline.artifacts import DOCKERFILE

# --- parsing ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    start: int  # index of the first physical line
    end: int  # index after the last physical line
    text: str  # continuation lines joined
    keyword: str  # upper case: FROM, RUN, ...
    flags: tuple[tuple[str, str | None], ...] = field(default=())  # (name lower case, value) of leading --flags
    args: str = ""  # what follows the flags

    @property
    def line(self) -> int:  # 1-based, as editors and findings say it
        return self.start + 1


def directives(text: str) -> dict[str, str]:
    """Parser directives (`# syntax=...`, `# escape=...`): only comment lines at the very top count."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        found.setdefault(m.group(1).lower(), m.group(2))
    return found


def escape_char(text: str) -> str:
    value = directives(text).get("escape")
    return value if value in ("`", "\\") else "\\"


_HEREDOC_INSTR = re.compile(r"^\s*(run|copy|add)\s", re.IGNORECASE)
_HEREDOC = re.compile(r"<<-?[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")
_FLAG = re.compile(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(\"[^\"]*\"|'[^']*'|\S*))?")


def split_flags(rest: str) -> tuple[tuple[tuple[str, str | None], ...], str]:
    """Leading `--name[=value]` flags of an instruction's arguments, and what follows them."""
    flags: list[tuple[str, str | None]] = []
    rest = rest.lstrip()
    while rest.startswith("--"):
        m = _FLAG.match(rest)
        if not m or (m.end() < len(rest) and not rest[m.end()].isspace()):
            break
        value = m.group(2)
        if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        flags.append((m.group(1).lower(), value))
        rest = rest[m.end():].lstrip()
    return tuple(flags), rest


def _instruction(start: int, end: int, text: str) -> Instruction:
    keyword, _, rest = text.strip().partition(" ")
    flags, args = split_flags(rest)
    return Instruction(start, end, text, keyword.upper(), flags, args)


def parse(text: str) -> list[Instruction]:
    """Logical instructions in order; heredoc bodies (RUN <<EOF ... EOF) are skipped, never parsed."""
    lines = text.splitlines(keepends=True)
    esc = escape_char(text)
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        start = i
        first = lines[i].strip()
        if not first or first.startswith("#"):  # blank and comment lines never continue
            i += 1
            continue
        parts: list[str] = []
        while i < len(lines):
            raw = lines[i].rstrip("\r\n")
            i += 1
            if parts and (not raw.strip() or raw.lstrip().startswith("#")):
                continue  # Docker skips comments and blank lines inside a continuation
            stripped = raw.rstrip()
            if stripped.endswith(esc) and i < len(lines):
                parts.append(stripped[:-1])
                continue
            parts.append(raw)
            break
        joined = " ".join(p.strip() for p in parts if p.strip())
        out.append(_instruction(start, i, joined))
        heredocs = _HEREDOC.findall(joined) if _HEREDOC_INSTR.match(joined) else []
        for marker in heredocs:
            while i < len(lines) and lines[i].strip() != marker:
                i += 1
            i = min(i + 1, len(lines))
    return out


def exposed_ports(text: str) -> list[int]:
    """The TCP/UDP port numbers of every EXPOSE instruction, in order, without duplicates.

    `5000`, `5000/tcp` and ranges `8000-8002` are understood; variables (`$PORT`) cannot be known here and are
    skipped.
    """
    ports: list[int] = []
    for instruction in parse(text):
        if instruction.keyword != "EXPOSE":
            continue
        for token in instruction.args.split():
            number = token.split("/", 1)[0]
            if re.fullmatch(r"\d+", number):
                values = [int(number)]
            elif re.fullmatch(r"\d+-\d+", number):
                low, high = (int(x) for x in number.split("-"))
                values = list(range(low, high + 1)) if 0 < high - low < 1000 else [low]
            else:
                continue
            ports.extend(v for v in values if v not in ports)
    return ports


# --- the pre-build check ---------------------------------------------------------------------------------------------

Severity = Literal["refused", "warning"]


@dataclass(frozen=True)
class DockerfileFinding:
    line: int
    instruction: str  # RUN, COPY, ...
    rule: str  # mount-bind-rw, mount-from, network, security, device, ...
    message: str  # one sentence naming the line, the instruction and the reason
    severity: Severity = "refused"

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "instruction": self.instruction, "rule": self.rule, "message": self.message,
                "severity": self.severity}


ALLOWED_MOUNT_TYPES = frozenset({"bind", "cache", "tmpfs", "secret"})
_TRUE = {"", "true", "1", "yes"}
_MOUNT_KEYS = frozenset({
    "type", "source", "src", "target", "dst", "destination", "readonly", "ro", "rw", "readwrite", "from", "id",
    "sharing", "mode", "uid", "gid", "required", "size", "env", "bind-propagation", "relabel", "z", "Z",
    "bind-nonrecursive",
})


def mount_options(value: str) -> dict[str, str]:
    """`type=bind,source=x,rw` as {"type": "bind", "source": "x", "rw": ""} (BuildKit reads it as CSV)."""
    options: dict[str, str] = {}
    for row in csv.reader([value]):
        for item in row:
            if not item.strip():
                continue
            key, sep, val = item.strip().partition("=")
            options[key.strip() if key.strip() in ("z", "Z") else key.strip().lower()] = val.strip() if sep else ""
    return options


def _climbs_out(path: str) -> bool:
    return ".." in re.split(r"[\\/]+", path)


def _mount_findings(options: Mapping[str, str]) -> list[tuple[str, str]]:
    """(rule, why) for one --mount; [] when it is allowed."""
    kind = options.get("type", "bind").lower()
    if kind not in ALLOWED_MOUNT_TYPES:
        if kind == "ssh":
            return [("mount-ssh", "an ssh mount forwards the host's SSH agent into the build")]
        return [("mount-type", f"mount type {kind!r} is not one of {', '.join(sorted(ALLOWED_MOUNT_TYPES))}")]
    out: list[tuple[str, str]] = []
    unknown = sorted(k for k in options if k not in _MOUNT_KEYS)
    if unknown:
        out.append(("mount-option", f"mount option(s) {', '.join(unknown)} cannot be checked"))
    source = options.get("source", options.get("src", ""))
    if kind in ("bind", "cache") and "from" in options:
        out.append(("mount-from", f"a {kind} mount from another stage, context or image (from={options['from']}) "
                                  f"can follow a symlink made there onto the host (CVE-2024-1753)"))
    if kind == "bind":
        writable = (options.get("rw") in _TRUE if "rw" in options else False) or \
                   (options.get("readwrite") in _TRUE if "readwrite" in options else False) or \
                   options.get("readonly", options.get("ro")) in ("false", "0", "no")
        if writable:
            out.append(("mount-bind-rw", "a writable bind mount lets the build write through it (CVE-2024-1753 "
                                         "wrote to the host this way)"))
        if source and _climbs_out(source):
            out.append(("mount-source", f"the bind source {source!r} climbs out of the build context"))
    if kind == "cache" and source and "from" not in options:
        out.append(("mount-from", f"a cache mount with a source ({source!r}) seeds the cache from another "
                                  f"stage's files"))
    return out


def _run_findings(instruction: Instruction, line: int, label: str) -> list[DockerfileFinding]:
    out: list[DockerfileFinding] = []

    def refuse(rule: str, flag: str, why: str) -> None:
        out.append(DockerfileFinding(line, label, rule,
                                     f"{DOCKERFILE} line {line}: {label} {flag} is refused, because {why}."))

    for name, value in instruction.flags:
        shown = f"--{name}" + (f"={value}" if value is not None else "")
        if value is not None and "$" in value:
            refuse("flag-variable", shown, "its value uses a variable, which cannot be checked before the build")
        elif name == "mount":
            for rule, why in _mount_findings(mount_options(value or "")):
                refuse(rule, shown, why)
        elif name == "network":
            refuse("network", shown, "a build step may not choose its network (host reaches the host's network "
                                     "and services; KubeVibe decides the build's network)")
        elif name == "security":
            refuse("security", shown, "--security=insecure runs the step without the container sandbox, and "
                                      "KubeVibe never grants it")
        elif name == "device":
            refuse("device", shown, "it gives the build step a device of the host")
        else:
            refuse("flag", shown, f"--{name} is not a RUN flag KubeVibe allows (only --mount of type cache, "
                                  f"tmpfs, secret and read-only bind from the build context)")
    return out


def _copy_findings(instruction: Instruction, label: str) -> list[DockerfileFinding]:
    flags = dict(instruction.flags)
    out: list[DockerfileFinding] = []
    if "from" in flags:
        return out  # copies out of another stage or image, confined to its file system
    sources = instruction.args.split()[:-1] if not instruction.args.lstrip().startswith("[") else []
    for source in sources:
        if re.match(r"(?i)^(https?|git|ssh)://|^git@", source):
            if instruction.keyword == "ADD":
                out.append(DockerfileFinding(instruction.line, label, "add-url",
                                             f"{DOCKERFILE} line {instruction.line}: ADD downloads {source} during "
                                             f"the build (allowed, like pip; prefer a pinned package).", "warning"))
            continue
        if _climbs_out(source):
            out.append(DockerfileFinding(instruction.line, label, "copy-source",
                                         f"{DOCKERFILE} line {instruction.line}: {label} source {source!r} is "
                                         f"refused, because it climbs out of the build context."))
    return out


def _check(instruction: Instruction, label_prefix: str = "") -> list[DockerfileFinding]:
    label = label_prefix + instruction.keyword
    if instruction.keyword == "RUN":
        return _run_findings(instruction, instruction.line, label)
    if instruction.keyword in ("COPY", "ADD"):
        return _copy_findings(instruction, label)
    if instruction.keyword == "ONBUILD" and instruction.args.strip():
        inner = _instruction(instruction.start, instruction.end, instruction.args)
        return _check(inner, "ONBUILD ")
    return []


def precheck(text: str) -> list[DockerfileFinding]:
    """Every refusal (and warning) for this Dockerfile, in line order; no refusal means it may be built."""
    findings: list[DockerfileFinding] = []
    syntax = directives(text).get("syntax")
    if syntax and not re.fullmatch(r"(docker\.io/)?docker/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?",
                                   syntax):
        findings.append(DockerfileFinding(1, "# syntax", "syntax",
                                          f"{DOCKERFILE} line 1: the parser directive syntax={syntax} is refused, "
                                          f"because BuildKit would run that frontend image to read the Dockerfile; "
                                          f"use docker/dockerfile:1 or remove the line."))
    for instruction in parse(text):
        findings.extend(_check(instruction))
    return findings


def refusals(text: str) -> list[DockerfileFinding]:
    return [f for f in precheck(text) if f.severity == "refused"]


# --- the FROM rewrite (pure): engines/baseimage.py decides, this changes the lines -----------------------------------


_FROM_RE = re.compile(
    r"^\s*(?P<kw>from)\s+(?P<flags>(?:--\S+\s+)*)(?P<image>\S+)(?:\s+(?P<as>as)\s+(?P<alias>\S+))?\s*$",
    re.IGNORECASE,
)
_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<mod>:[-+][^}]*)?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_args(value: str, args: Mapping[str, str | None]) -> str | None:
    """Substitute $VAR / ${VAR} / ${VAR:-default} / ${VAR:+alt} from args; None if a variable has no value."""
    missing = False

    def repl(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group("braced") or m.group("plain")
        val = args.get(name)
        mod = m.group("mod")
        if mod and mod.startswith(":-"):
            return val if val else mod[2:]
        if mod and mod.startswith(":+"):
            return mod[2:] if val else ""
        if val is None:
            missing = True
            return ""
        return val

    result = _VAR_RE.sub(repl, value)
    return None if missing else result


def _global_arg(text: str) -> tuple[str, str | None] | None:
    """("NAME", default or None) for an `ARG NAME[=default]` instruction."""
    m = re.match(r"^\s*arg\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?\s*$", text, re.IGNORECASE)
    if not m:
        return None
    default = m.group(2)
    if default is not None:
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] and default[0] in "\"'":
            default = default[1:-1]
    return m.group(1), default


@dataclass(frozen=True)
class Decision:
    """What to do with one FROM image: `to` is the replacement (None: keep the line as it is)."""

    to: str | None
    reason: str
    note: str | None = None
    unmapped: bool = False  # unavailable and no stand-in exists: reported, left unchanged


def rewrite_from_lines(
    dockerfile_text: str,
    decide: Callable[[str], Decision],
    build_args: Mapping[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Rewrite FROM images for which `decide(image).to` is set; return (new text, records).

    `decide` is called once per distinct resolved image. Stage names (FROM builder), `scratch`, and FROMs whose
    ARGs have no value are left alone; unresolved ones get a record with status "unresolved". Only the FROM
    line changes; the `AS name` part and flags other than --platform are kept. --platform is dropped on
    substitution because the local base exists for the host platform only.
    """
    lines = dockerfile_text.splitlines(keepends=True)
    global_args: dict[str, str | None] = {}
    stages: set[str] = set()
    seen_from = False
    decisions: dict[str, Decision] = {}
    records: list[dict[str, Any]] = []
    replacements: dict[int, tuple[int, str]] = {}  # first physical line -> (end, new physical line)

    for logical in parse(dockerfile_text):
        text = logical.text
        if not seen_from:
            arg = _global_arg(text)
            if arg:  # only ARGs before the first FROM can be used in FROM lines
                name, default = arg
                global_args[name] = (build_args or {}).get(name, default)
                continue
        m = _FROM_RE.match(text)
        if not m:
            continue
        seen_from = True
        raw_image, alias = m.group("image"), m.group("alias")
        line_no = logical.start + 1
        image = expand_args(raw_image, global_args) if "$" in raw_image else raw_image
        is_stage_or_scratch = image is not None and (image.lower() in stages or image.lower() == "scratch")
        if alias:
            stages.add(alias.lower())
        if image is None:
            records.append({"line": line_no, "from": raw_image, "to": None, "status": "unresolved",
                            "reason": "uses a build argument without a value; left unchanged"})  # fmt: skip
            continue
        if is_stage_or_scratch:
            continue  # an earlier stage or the empty image: nothing to pull
        if image not in decisions:
            decisions[image] = decide(image)
        decision = decisions[image]
        if decision.to is None:
            if decision.unmapped:
                records.append({"line": line_no, "from": image, "to": None, "status": "unmapped",
                                "reason": decision.reason})  # fmt: skip
            continue
        flags = m.group("flags").split()
        kept = [f for f in flags if not f.lower().startswith("--platform")]
        record: dict[str, Any] = {"line": line_no, "from": image, "to": decision.to, "status": "mapped",
                                  "reason": decision.reason}  # fmt: skip
        if decision.note:
            record["note"] = decision.note
        if len(kept) != len(flags):
            record["dropped_flags"] = [f for f in flags if f not in kept]
        records.append(record)
        parts = [m.group("kw"), *kept, decision.to] + ([m.group("as"), alias] if alias else [])
        last = lines[logical.end - 1]
        ending = "\r\n" if last.endswith("\r\n") else ("\n" if last.endswith("\n") else "")
        indent = lines[logical.start][: len(lines[logical.start]) - len(lines[logical.start].lstrip())]
        replacements[logical.start] = (logical.end, indent + " ".join(parts) + ending)

    return _apply(lines, replacements) if replacements else dockerfile_text, records


def _apply(lines: list[str], replacements: dict[int, tuple[int, str]]) -> str:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in replacements:
            end, new_line = replacements[i]
            out.append(new_line)
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "".join(out)
