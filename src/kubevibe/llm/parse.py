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
# Everything up to the last closing tag: some chat templates open the think block in the prompt, so the
# answer holds only the closing tag.
_UNOPENED_THINK_RE = re.compile(r"^.*</(?:think|thinking|reasoning)>", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n(.*?)(?:```|$)", re.DOTALL)
# Inside brackets: a JSON string literal (to its closing quote, or to the end when cut off), or a bracket.
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[{}\[\]]', re.DOTALL)
_OPENER_RE = re.compile(r"[{\[]")
_CLOSERS = {"}": "{", "]": "["}
_MAX_CANDIDATES = 50

_JSON_TYPE_NAMES = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


class AnswerError(Exception):
    """The answer could not be turned into the expected object. `str()` is one sentence."""


def strip_thinking(text: str) -> str:
    return _UNOPENED_THINK_RE.sub("", _THINK_RE.sub("", text), count=1)


def _bracket_spans(text: str) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[int]]]:
    """Balanced {...} and [...] spans (start, end), and the openers never closed, in one linear pass.

    A stack per bracket kind: scanning forward from every opening brace was quadratic, and a truncated 2 MB
    answer took hours. String literals are skipped only inside brackets: between values, a quote is prose
    (`the 5" screen`) and must not swallow the JSON that follows.
    """
    stacks: dict[str, list[int]] = {"{": [], "[": []}
    spans: dict[str, list[tuple[int, int]]] = {"{": [], "[": []}
    pos, values = 0, 0
    while values < _MAX_CANDIDATES and (first := _OPENER_RE.search(text, pos)):
        for match in _TOKEN_RE.finditer(text, first.start()):
            token = match.group()
            if token in stacks:
                stacks[token].append(match.start())
            elif token in _CLOSERS and stacks[_CLOSERS[token]]:
                opener = _CLOSERS[token]
                spans[opener].append((stacks[opener].pop(), match.start()))
                if not stacks["{"] and not stacks["["]:  # back between values
                    pos, values = match.end(), values + 1
                    break
        else:
            break  # the end of the text, inside a bracket
    return spans, stacks


def _candidates(text: str) -> list[str]:
    """Places where the JSON may be, most likely first."""
    out = [text.strip()]
    out.extend(m.group(1).strip() for m in _FENCE_RE.finditer(text))
    # The outermost balanced {...} (then [...]) spans, for JSON embedded in prose.
    spans, unclosed = _bracket_spans(text)
    for opener in ("{", "["):
        # Spans after an opener that never closed are pieces of that cut-off value, not answers.
        limit = unclosed[opener][0] if unclosed[opener] else len(text)
        last_end = -1
        for start, end in sorted(spans[opener]):
            if start >= limit or len(out) >= _MAX_CANDIDATES:
                break
            if start > last_end:
                out.append(text[start : end + 1])
                last_end = end
    return out


def _is_truncated(text: str) -> bool:
    """True when the first `{` outside strings is never closed: the model stopped mid-object."""
    spans, unclosed = _bracket_spans(text)
    if not unclosed["{"]:
        return False
    return not spans["{"] or unclosed["{"][0] < min(start for start, _ in spans["{"])


def extract_json(text: str) -> Any:
    """The first JSON value found in the answer. Raises AnswerError saying why none was found."""
    if text is None or not text.strip():
        raise AnswerError("The answer was empty.")
    if len(text) > MAX_ANSWER_CHARS:
        raise AnswerError(f"The answer was {len(text)} characters long, more than the {MAX_ANSWER_CHARS} accepted.")
    body = strip_thinking(text)
    if not body.strip():
        raise AnswerError("The answer contained only a <think> block and no JSON.")
    too_deep = False
    for candidate in _candidates(body):
        try:
            # strict=False accepts raw newlines and tabs inside strings, which models write in file contents.
            return json.loads(candidate, strict=False)
        except RecursionError:
            too_deep = True
        except ValueError:  # JSONDecodeError, and also an integer of more than 4300 digits
            continue
    if _is_truncated(body):  # checked first: a cut-off deep answer is truncated, not too deep
        raise AnswerError("The answer's JSON was cut off before its end (truncated output).")
    if too_deep:
        raise AnswerError("The answer's JSON was nested too deeply to parse.")
    raise AnswerError("The answer contained no parseable JSON object.")


def parse_answer(text: str, model: type[T]) -> T:
    """Extract and validate. Raises AnswerError with the first schema problems named."""
    data = extract_json(text)
    if isinstance(data, str):
        try:
            data = extract_json(data)  # some models encode the object as a JSON string
        except AnswerError:
            pass
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # some models wrap the object in a list
    if not isinstance(data, dict):
        kind = "null" if data is None else _JSON_TYPE_NAMES.get(type(data), type(data).__name__)
        raise AnswerError(f"The answer's JSON was {kind}, not an object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{where}: {err['msg']}")
        raise AnswerError("The answer did not match the schema: " + "; ".join(problems) + ".") from None


_LOOP = re.compile(r"(.{6,80}?)\1{3,}.{0,80}$", re.S)


def repeated_tail(text: str) -> bool:
    """True when the text ends in one run of characters repeated four times or more (a cut-off last copy may
    follow): a generation that went round in circles until the token limit."""
    return bool(_LOOP.search(text[-1500:]))


# A generation stopped while it runs: one piece of 6-200 characters repeated 8 times or more, over at least
# RUNAWAY_SPAN characters, at the end of what was written so far. Stricter than repeated_tail (which explains an
# answer that already hit the token limit): a live check must never cut an answer that was merely regular.
_RUNAWAY = re.compile(r"(.{6,200}?)\1{7,}.{0,200}$", re.S)
RUNAWAY_SPAN = 240
RUNAWAY_WINDOW = 2400  # characters of the tail the check reads (8 copies of the longest piece, and the cut copy)


def runaway(text: str) -> bool:
    """True when a generation in progress is going round in circles (see _RUNAWAY); cheap on a long text."""
    match = _RUNAWAY.search(text[-RUNAWAY_WINDOW:])
    return bool(match) and len(match.group(0)) >= RUNAWAY_SPAN
