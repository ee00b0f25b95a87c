"""Hostile model answers against the tolerant parser: the right object, or AnswerError with one sentence."""

from __future__ import annotations

import random
import time

import pytest
from pydantic import BaseModel, ConfigDict

from kubevibe.llm.parse import MAX_ANSWER_CHARS, AnswerError, extract_json, parse_answer

GOOD = '{"name": "cc", "port": 5000}'


class Service(BaseModel):
    name: str
    port: int
    files: dict[str, str] = {}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


OK_CASES = {
    "plain": GOOD,
    "think block first": '<think>Maybe {"name": "wrong", "port": 1}?</think>\n' + GOOD,
    "thinking tag, any case": "<Thinking>hmm</THINKING>" + GOOD,
    "only the closing think tag": 'I reason {"name": "wrong", "port": 1}...\n</think>\n\n' + GOOD,
    "json fence": "Here it is:\n```json\n" + GOOD + "\n```\nDone.",
    "fence without language": "```\n" + GOOD + "\n```",
    "unclosed fence": "```json\n" + GOOD + "\n",
    "fence with CRLF": "```json\r\n" + GOOD + "\r\n```",
    "fences inside a string":
        '```json\n{"name": "cc", "port": 5000, "files": {"README.md": "```bash\\nrun\\n```"}}\n```',
    "prose before and after": "Sure! Here is the service: " + GOOD + " Let me know if you need more.",
    "templating braces in prose": "I used {name} placeholders.\n" + GOOD,
    "stray quote in prose": 'For the 5" screen:\n' + GOOD,
    "two objects": GOOD + '\n{"name": "other", "port": 1}',
    "list wrapping the object": "[" + GOOD + "]",
    "list wrapping in prose": "Result: [" + GOOD + "] ok",
    "braces and escaped quotes in strings":
        'Answer: {"name": "cc", "port": 5000, "files": {"a.py": "s = \\"}{\\"\\nd = {\\"x\\": [1, 2]}\\n"}} end',
    "object encoded as a JSON string": '"{\\"name\\": \\"cc\\", \\"port\\": 5000}"',
    "extra fields ignored by the model": '{"name": "cc", "port": 5000, "replicas": 3}',
    "byte order mark": "\ufeff" + GOOD,
    "raw newlines and tabs in a string": '{"name": "cc", "port": 5000, "files": {"a.py": "x = 1\n\ty = 2\n"}}',
    "raw newlines in a fenced string": '```json\n{"name": "cc", "port": 5000, "files": {"a.py": "s = \\"}\\"\n"}}\n```',
    "raw newlines in a string in prose":
        'Here:\n{"name": "cc", "port": 5000, "files": {"a.py": "x = 1\ny = 2\n"}}\nBye.',
    "number as a string is coerced": '{"name": "cc", "port": "5000"}',
}


@pytest.mark.parametrize("text", OK_CASES.values(), ids=OK_CASES.keys())
def test_finds_the_object(text):
    service = parse_answer(text, Service)
    assert (service.name, service.port) == ("cc", 5000)


def test_keeps_string_contents_intact():
    text = OK_CASES["braces and escaped quotes in strings"]
    assert parse_answer(text, Service).files == {"a.py": 's = "}{"\nd = {"x": [1, 2]}\n'}


def test_non_utf8_ish_text_survives():
    service = parse_answer('{"name": "caf\udce9 \u00e9 \ufffd \x00", "port": 5000}', Service)
    assert service.name.startswith("caf")


ERROR_CASES = {
    "empty": ("", "The answer was empty."),
    "whitespace": ("  \n\t ", "The answer was empty."),
    "only a think block": ('<think>{"name": "cc", "port": 5000}</think>', "only a <think> block"),
    "unclosed think block": ('<think>I will answer {"name": "cc", "port": 5000}', "only a <think> block"),
    "truncated": ('{"name": "cc", "port": 50', "cut off before its end"),
    "truncated after a complete inner object": ('{"files": {"a": "b"}, "name": "cc", "po', "cut off before its end"),
    "truncated inside a fence": ('```json\n{"name": "cc", "files": {"app.py": "impo', "cut off before its end"),
    "wrong type": ('{"name": "cc", "port": "eighty"}', "port: Input should be a valid integer"),
    "wrong nested type": ('{"name": "cc", "port": 1, "files": {"a": 1}}', "files.a: Input should be a valid string"),
    "missing field": ('{"name": "cc"}', "did not match the schema: port: Field required."),
    "array of two": ("[" + GOOD + ", " + GOOD + "]", "The answer's JSON was an array, not an object."),
    "number": ("42", "The answer's JSON was a number, not an object."),
    "null": ("null", "The answer's JSON was null, not an object."),
    "plain string": ('"hello"', "The answer's JSON was a string, not an object."),
    "prose only": ("I cannot help with that.", "no parseable JSON object"),
    "python dict syntax": ("{'name': 'cc', 'port': 5000}", "no parseable JSON object"),
    "integer too long for Python": ('{"name": "cc", "port": ' + "9" * 5000 + "}", "no parseable JSON object"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deeply nested and cut off": ('{"a": ' * 300_000, "cut off before its end"),
    "huge": ("x" * (MAX_ANSWER_CHARS + 1), "more than the 2000000 accepted"),
}


@pytest.mark.parametrize("text, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_says_what_is_wrong(text, message):
    with pytest.raises(AnswerError) as info:
        parse_answer(text, Service)
    assert message in str(info.value)
    assert str(info.value).endswith(".")


def test_extra_fields_are_named_when_the_model_forbids_them():
    expected = r"^The answer did not match the schema: port: Extra inputs are not permitted\.$"
    with pytest.raises(AnswerError, match=expected):
        parse_answer(GOOD, Strict)


def test_none_is_an_empty_answer():
    with pytest.raises(AnswerError, match="empty"):
        extract_json(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "{ " * 900_000,  # unbalanced braces everywhere: once took quadratic time
    "{}" * 900_000,
    '"{' * 900_000,
    "[" * 900_000 + "{",
    "<think>" * 200_000,
    "```json\n" * 200_000,
    "a" * (MAX_ANSWER_CHARS - 10) + "</think>",
])
def test_large_hostile_answers_are_handled_quickly(text):
    started = time.monotonic()
    try:
        parse_answer(text, Service)
    except AnswerError:
        pass
    # A guard against quadratic work, not a speed test: on ~1.8M characters quadratic parsing takes hours, linear
    # well under a second; 60 s never fails on a loaded machine and still catches the regression.
    assert time.monotonic() - started < 60


def test_fuzzed_answers_raise_only_answer_errors():
    rng = random.Random(20250101)
    pieces = ["{", "}", "[", "]", '"', "\\", ":", ",", " ", "\n", "<think>", "</think>", "```", "```json\n",
              '"name"', '"port"', "5000", '"cc"', "null", "é", "\udcff", "\x00"]
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        try:
            result = parse_answer(text, Service)
        except AnswerError as exc:
            assert str(exc).endswith(".")
        else:
            assert isinstance(result, Service)
