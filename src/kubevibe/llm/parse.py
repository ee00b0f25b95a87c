"""Tolerant parsing of model answers into validated pydantic objects.

Models wrap JSON in `<think>` blocks, code fences and prose, or stop half-way. We look for the JSON object,
parse it, and validate it against the schema. Any problem becomes an `AnswerError` with one sentence that
says what was wrong: it is recorded as the stage's failure reason, and never crashes the run.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

# Answers larger than this are refused before parsing: a runaway generation, not an answer.
MAX_ANSWER_CHARS = 2_000_000

_THINK_RE = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


class AnswerError(Exception):
    """The answer could not be turned into the expected object. `str()` is one sentence."""


def strip_thinking(text: str) -> str:
    return _THINK_RE.sub("", text)


def _candidates(text: str) -> list[str]:
    """Places where the JSON may be, most likely first."""
    out = []
    stripped = text.strip()
    out.append(stripped)
    out.extend(m.group(1).strip() for m in _FENCE_RE.finditer(text))
    # A balanced {...} (or [...]) scan from each opening brace, for JSON embedded in prose.
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        while start != -1 and len(out) < 50:
            end = _balanced_end(text, start, opener, closer)
            if end is not None:
                out.append(text[start : end + 1])
                start = text.find(opener, end + 1)
            else:
                start = text.find(opener, start + 1)
    return out


def _balanced_end(text: str, start: int, opener: str, closer: str) -> int | None:
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return i
    return None


def extract_json(text: str) -> Any:
    """The first JSON value found in the answer. Raises AnswerError saying why none was found."""
    if text is None or not text.strip():
        raise AnswerError("The answer was empty.")
    if len(text) > MAX_ANSWER_CHARS:
        raise AnswerError(f"The answer was {len(text)} characters long, more than the {MAX_ANSWER_CHARS} accepted.")
    body = strip_thinking(text)
    if not body.strip():
        raise AnswerError("The answer contained only a <think> block and no JSON.")
    for candidate in _candidates(body):
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
    if "{" in body and _balanced_end(body, body.find("{"), "{", "}") is None:
        raise AnswerError("The answer's JSON was cut off before its end (truncated output).")
    raise AnswerError("The answer contained no parseable JSON object.")


def parse_answer(text: str, model: type[T]) -> T:
    """Extract and validate. Raises AnswerError with the first schema problems named."""
    data = extract_json(text)
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # some models wrap the object in a list
    if not isinstance(data, dict):
        raise AnswerError(f"The answer's JSON was a {type(data).__name__}, not an object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{where}: {err['msg']}")
        raise AnswerError("The answer did not match the schema: " + "; ".join(problems) + ".") from None
