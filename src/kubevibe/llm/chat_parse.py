"""Files out of a conversational answer: prose with one fenced code block per file, each naming its file.

Tolerant of what chat models write: ``` and ~~~ fences, with or without a language tag; the file named on the line
before the block (`File: x`, `**x**`, `### x`, `x:`, `` `x` ``), in the info string (```python title="x"```,
```python:x```, ```x```), or in a first-line comment (`# File: x`); a whole answer wrapped in a ```markdown block;
Windows line endings; a block left unterminated at the end of the answer; a Dockerfile, manifest or requirements
block with no name at all, recognised by its language and content.

Strict about what it takes: only the four files of a service, mapped to their logical keys (artifacts.FILES; the
service's Python file is always `myapp.py`, the model's own name is kept in `names`); a file given twice keeps
the last block and says so; anything else (shell commands, a compose file, a second Python module) is left out
and said so. An answer with no usable file has `files == {}` and a `problem` sentence: never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kubevibe.llm.parse import MAX_ANSWER_CHARS, strip_thinking
from kubevibe.pipeline import artifacts as names

_FENCE_RE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_ATTR_RE = re.compile(r"""(?:title|file|filename|name|path)\s*=\s*["']?(?P<name>[^"'\s}]+)""", re.IGNORECASE)
# A file name as models write it: a path with an extension, or one of the extensionless names we know.
_NAME_RE = re.compile(r"(?P<name>(?:[\w.-]+/)*(?:[\w-][\w.-]*\.[A-Za-z0-9]{1,8}|Dockerfile|Containerfile|"
                      r"dockerfile|containerfile)(?:\.[\w-]+)?)")
_LABEL_RE = re.compile(r"^\W*(?:file(?:name)?|path|name)\s*[:=-]\s*", re.IGNORECASE)
_COMMENT_NAME_RE = re.compile(r"^\s*(?:#|//|--)\s*(?:(?:file(?:name)?|path)\s*:\s*)?(?P<name>\S+)\s*$", re.IGNORECASE)
_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(\[[\w,\s-]+\])?\s*([=<>!~]=?\s*[\w.*+-]+\s*,?\s*)*$")

MARKDOWN_LANGS = frozenset({"markdown", "md"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console", "zsh", "powershell", "ps", "cmd", "terminal"})
DOCKER_LANGS = frozenset({"dockerfile", "docker", "containerfile"})
YAML_LANGS = frozenset({"yaml", "yml"})
PYTHON_LANGS = frozenset({"python", "py", "python3"})
TEXT_LANGS = frozenset({"text", "txt", "plaintext", "requirements", "pip", "ini", ""})
# Names the service's Python file may have, the likeliest first: it is the one module a service needs.
SERVICE_NAMES = ("myapp.py", "app.py", "main.py", "server.py", "service.py")


@dataclass
class Block:
    info: str  # the fence's info string, e.g. 'python title="myapp.py"'
    content: str
    before: str  # the last non-empty prose line before the block
    closed: bool = True

    @property
    def language(self) -> str:
        first = self.info.split()[0] if self.info.split() else ""
        return first.split(":")[0].strip("{}.").lower()


@dataclass
class ParsedFiles:
    files: dict[str, str] = field(default_factory=dict)  # logical key (artifacts.FILES) -> content
    names: dict[str, str] = field(default_factory=dict)  # logical key -> the name the model gave (or how found)
    notes: list[str] = field(default_factory=list)  # what was tolerated: duplicates, guesses, unterminated blocks
    ignored: list[str] = field(default_factory=list)  # blocks left out, and why
    duplicates: list[str] = field(default_factory=list)  # logical keys given more than once (the last won)
    blocks: int = 0
    problem: str | None = None  # set when no usable file was found

    @property
    def ok(self) -> bool:
        return bool(self.files)

    def record(self) -> dict:
        return {"files": sorted(self.files), "names": self.names, "notes": self.notes, "ignored": self.ignored,
                "duplicates": self.duplicates, "blocks": self.blocks, "problem": self.problem}


MAX_BLOCKS = 100  # a service is four files; an answer with hundreds of blocks is a runaway, read only so far
MAX_MARKDOWN_NESTING = 2  # a Markdown wrapper inside a wrapper is opened; deeper is hostile, left as it is


def split_blocks(text: str, _nesting: int = 0) -> list[Block]:
    """Every top-level fenced block, in order, in one pass over the lines. A ```markdown block holding fences is
    opened up: its own blocks are returned instead (models wrap whole answers that way)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    last_prose = ""
    i = 0
    while i < len(lines) and len(blocks) <= MAX_BLOCKS:
        opened = _FENCE_RE.match(lines[i])
        if not opened:
            if lines[i].strip():
                last_prose = lines[i].strip()
            i += 1
            continue
        fence, info = opened["fence"], opened["info"].strip()
        is_markdown = info.split()[0].lower() in MARKDOWN_LANGS if info.split() else False
        depth, j, body = 0, i + 1, []
        closed = False
        while j < len(lines):
            inner = _FENCE_RE.match(lines[j])
            if inner and inner["fence"][0] == fence[0]:
                if inner["info"].strip():
                    if is_markdown:
                        depth += 1  # a fence with a language inside Markdown opens a nested block
                elif depth:
                    depth -= 1
                elif len(inner["fence"]) >= len(fence):
                    closed = True
                    break
            body.append(lines[j])
            j += 1
        content = "\n".join(body)
        nested = split_blocks(content, _nesting + 1) if is_markdown and _nesting < MAX_MARKDOWN_NESTING else []
        if nested:
            blocks.extend(nested)
        else:
            blocks.append(Block(info=info, content=content, before=last_prose, closed=closed))
        last_prose = ""
        i = j + 1
    return blocks


def _clean_name(candidate: str) -> str | None:
    """A file name out of a label line such as '**File: `myapp.py`**' or '### 2. Dockerfile:'."""
    text = candidate.strip().strip("*_#>`'\" -").strip()
    text = re.sub(r"^\d+[.)]\s*", "", text)
    text = _LABEL_RE.sub("", text).strip("*_`'\" :")
    text = re.sub(r"\s*\(.*\)$", "", text).strip("*_`'\" :")  # "myapp.py (the service)"
    match = _NAME_RE.fullmatch(text)
    if match:
        return match["name"]
    # "Here is the Dockerfile:" / "Create `myapp.py` with:": one token in a short sentence that names a kind of
    # file a service has (so "e.g." or "v1.2" in prose is no file name)
    tokens = [t.strip("*_`'\":,.()") for t in candidate.split()]
    found = [t for t in tokens if _NAME_RE.fullmatch(t) and _service_kind(t)]
    if len(found) == 1 and len(candidate) <= 120:
        return found[0]
    return None


def _service_kind(name: str) -> bool:
    lower = PurePosixPath(name).name.lower()
    return lower in ("dockerfile", "containerfile") or lower.endswith((".py", ".yaml", ".yml", ".dockerfile")) \
        or (lower.startswith("requirements") and lower.endswith(".txt"))


def block_name(block: Block) -> tuple[str | None, str]:
    """The file a block names, and how it was found (for the record)."""
    if (attr := _ATTR_RE.search(block.info)) is not None:
        return attr["name"], "info string"
    parts = block.info.split()
    if parts:
        first = parts[0].strip("{}")
        if ":" in first and _NAME_RE.fullmatch(first.split(":", 1)[1]):
            return first.split(":", 1)[1], "info string"
        for position, token in enumerate(parts):
            token = token.strip("{}")
            # The first word is usually the language (```dockerfile); a later bare word is a name
            # (```docker Dockerfile).
            extensionless = position > 0 and token.lower() in ("dockerfile", "containerfile")
            if _NAME_RE.fullmatch(token) and ("." in token or extensionless):
                return token, "info string"
    first_line = next((line for line in block.content.split("\n") if line.strip()), "")
    comment = _COMMENT_NAME_RE.match(first_line)
    if comment and _NAME_RE.fullmatch(comment["name"].strip("`'\"")):
        return comment["name"].strip("`'\""), "first-line comment"
    if block.before and (name := _clean_name(block.before)):
        return name, "line before the block"
    return None, ""


def logical_key(name: str, content: str) -> str | None:
    """Which of the service's files a named block is; None for any other file."""
    base = PurePosixPath(name.replace("\\", "/")).name
    lower = base.lower()
    if lower in ("dockerfile", "containerfile") or lower.endswith((".dockerfile", ".containerfile")) \
            or lower.startswith(("dockerfile.", "containerfile.")):
        return names.DOCKERFILE
    if lower.startswith("requirements") and lower.endswith(".txt"):
        return names.REQUIREMENTS
    if lower.endswith((".yaml", ".yml")):
        return names.MANIFEST if _looks_like_manifest(content) else None
    if lower.endswith(".py"):
        return names.CODE
    return None


def _looks_like_manifest(content: str) -> bool:
    return bool(re.search(r"^apiVersion\s*:", content, re.M)) and bool(re.search(r"^kind\s*:", content, re.M))


def _looks_like_dockerfile(content: str) -> bool:
    lines = [line.strip() for line in content.split("\n") if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and lines[0].upper().startswith(("FROM ", "ARG "))


def _looks_like_requirements(content: str) -> bool:
    lines = [line.strip() for line in content.split("\n") if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(_REQUIREMENT_RE.match(line) for line in lines)


def recognise(block: Block) -> str | None:
    """The logical key of an unnamed block, from its language and content; None when it is not a service file."""
    lang, content = block.language, block.content
    if lang in SHELL_LANGS:
        return None
    if lang in DOCKER_LANGS or (lang in TEXT_LANGS and _looks_like_dockerfile(content)):
        return names.DOCKERFILE
    if (lang in YAML_LANGS or lang in TEXT_LANGS) and _looks_like_manifest(content):
        return names.MANIFEST
    if lang in PYTHON_LANGS:
        return names.CODE
    if lang in TEXT_LANGS and _looks_like_requirements(content):
        return names.REQUIREMENTS
    return None


def parse_files(answer: str | None, service_file: str | None = None) -> ParsedFiles:
    """The service files in a conversational answer. Never raises: a useless answer has `problem` set."""
    out = ParsedFiles()
    if answer is None or not answer.strip():
        out.problem = "The answer was empty."
        return out
    if len(answer) > MAX_ANSWER_CHARS:
        out.problem = f"The answer was {len(answer)} characters long, more than the {MAX_ANSWER_CHARS} accepted."
        return out
    text = strip_thinking(answer.replace("\r\n", "\n").replace("\r", "\n"))
    blocks = split_blocks(text)
    out.blocks = len(blocks)
    if len(blocks) > MAX_BLOCKS:
        out.notes.append(f"the answer had more than {MAX_BLOCKS} code blocks; only the first {MAX_BLOCKS} were read")
        blocks = blocks[:MAX_BLOCKS]
    if not blocks:
        out.problem = ("The answer had no fenced code block, so it gave no file (each file must be in its own "
                       "``` block named by a `File: NAME` line).")
        return out
    python_candidates: list[tuple[str, str]] = []  # (name, content) of every .py block, to choose the service
    manifests: list[tuple[str, str]] = []
    for index, block in enumerate(blocks, start=1):
        content = block.content.strip("\n")
        if not content.strip():
            out.ignored.append(f"block {index} was empty")
            continue
        if block.language in SHELL_LANGS:  # commands to run ("pip install -r requirements.txt"), never a file
            out.ignored.append(f"block {index} (a {block.language} block) holds commands, not a file")
            continue
        name, how = block_name(block)
        key = logical_key(name, content) if name else recognise(block)
        guessed = recognise(block)
        if name and how == "line before the block" and guessed not in (None, key):
            # Prose before a block may mention another file ("the Dockerfile copies it:"); the content decides.
            out.notes.append(f"block {index}: the line before it names {name}, but its content is {guessed}")
            name, key = None, guessed
        if key is None:
            what = f"{name!r}" if name else f"an unnamed {block.language or 'untagged'} block"
            out.ignored.append(f"block {index} ({what}) is not one of the service's files")
            continue
        if not name:
            name = key
            out.notes.append(f"block {index} named no file; its content makes it {key}")
        elif how != "line before the block":
            out.notes.append(f"block {index}: {name} named in the {how}")
        if not block.closed:
            out.notes.append(f"block {index} ({name}) was not closed; taken to the end of the answer")
        if key == names.CODE:
            python_candidates.append((name, content))
        elif key == names.MANIFEST:
            manifests.append((name, content))
        else:
            _put(out, key, name, content)
    if python_candidates:
        _choose_service(out, python_candidates, service_file)
    if manifests:
        _join_manifests(out, manifests)
    if not out.files:
        out.problem = (f"None of the answer's {out.blocks} code block(s) was a file of the service "
                       f"({'; '.join(out.ignored[:5]) or 'no names'}{'; ...' if len(out.ignored) > 5 else ''}); "
                       "name each block with a `File: NAME` line.")
    return out


def _put(out: ParsedFiles, key: str, name: str, content: str) -> None:
    if key in out.files:
        out.duplicates.append(key)
        out.notes.append(f"{key} was given more than once; the last block ({name}) is used")
    out.files[key] = content + "\n"
    out.names[key] = name


def _choose_service(out: ParsedFiles, candidates: list[tuple[str, str]], service_file: str | None) -> None:
    """One Python file is the service: the one named like it (the last such block), else the last one."""
    preferred = [n for n in ((service_file,) if service_file else ()) + SERVICE_NAMES if n]
    by_base = [PurePosixPath(n).name for n, _ in candidates]
    chosen_base = next((p for p in preferred if p in by_base), None)
    for name, content in candidates:
        base = PurePosixPath(name).name
        if chosen_base is None or base == chosen_base:
            _put(out, names.CODE, name, content)
        else:
            out.ignored.append(f"{name!r} is a second Python file; only {chosen_base} is the service")


def _join_manifests(out: ParsedFiles, manifests: list[tuple[str, str]]) -> None:
    """Several YAML files (deployment.yaml, service.yaml) make one manifest; one name twice: the last wins."""
    latest: dict[str, str] = {}
    for name, content in manifests:
        if name in latest:
            out.duplicates.append(names.MANIFEST)
            out.notes.append(f"{name} was given more than once; the last block is used")
        latest[name] = content
    if len(latest) == 1:
        ((name, content),) = latest.items()
        out.files[names.MANIFEST] = content + "\n"
        out.names[names.MANIFEST] = name
        return
    docs = [c.strip("\n").removeprefix("---\n") for c in latest.values()]
    out.files[names.MANIFEST] = "\n---\n".join(docs) + "\n"
    out.names[names.MANIFEST] = " + ".join(latest)
    out.notes.append(f"{len(latest)} YAML files ({', '.join(latest)}) were joined into one manifest")
