"""Tavern test files: parse, check what a test may do, convert KubeVibe test cases into Tavern tests.

A Tavern file is YAML, one test per document (`test_name`, `stages` of `request`/`response`). The service's base
URL is the format variable `{base_url}`. Tests not from the user's own file are untrusted text (a model or a
download wrote them): they may only send HTTP requests to `{base_url}` and compare answers; anything that runs
code or reads files on the host (`$ext`, `!include`, `verify_response_with`, `tavern.env_vars`, ...) is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from kubevibe.intent import TestCase

# Tavern's YAML tags that only match or convert values (tavern/_core/loader.py); every other tag is refused.
SAFE_TAGS = ("!anything", "!anynumber", "!anyint", "!anyfloat", "!anystr", "!anybool", "!anylist", "!anydict",
             "!int", "!float", "!bool", "!raw", "!re_match", "!re_fullmatch", "!re_search", "!approx",
             "!force_original_structure")

TEST_KEYS = {"test_name", "stages", "strict", "marks", "_xfail", "includes"}
INCLUDE_KEYS = {"name", "description", "variables"}  # inline includes: variables only, no files
STAGE_KEYS = {"name", "id", "request", "response", "max_retries", "delay_before", "delay_after", "skip", "only"}
REQUEST_KEYS = {"url", "method", "json", "headers", "params", "data", "timeout", "cookies", "auth",
                "follow_redirects", "verify"}
RESPONSE_KEYS = {"status_code", "json", "headers", "save", "strict", "redirect_query_params", "cookies"}
SAFE_MARKS = {"skip", "xfail", "slow"}
BASE_URL = "{base_url}"


class TavernFileError(Exception):
    """The file cannot be used as acceptance tests; the message says why in one sentence."""


class _Tag:
    def __init__(self, tag: str, value: Any):
        self.tag, self.value = tag, value

    def __repr__(self) -> str:
        return f"{self.tag} {self.value!r}"


class _CheckingLoader(yaml.SafeLoader):
    """SafeLoader that keeps Tavern's value tags as markers and fails on any other tag."""


class _AnyTagLoader(yaml.SafeLoader):
    """For the user's own file: any tag (Tavern decides what it means), kept as a marker."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> _Tag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return _Tag("!" + tag_suffix, value)


for _tag in SAFE_TAGS:
    _CheckingLoader.add_constructor(_tag, lambda loader, node, t=_tag: _construct_tag(loader, t[1:], node))
_AnyTagLoader.add_multi_constructor("!", _construct_tag)


def load_tests(text: str, *, trusted: bool) -> list[dict[str, Any]]:
    """The test documents of a Tavern file (empty documents dropped). Raises TavernFileError."""
    loader = _AnyTagLoader if trusted else _CheckingLoader
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]  # noqa: S506 - SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        raise TavernFileError(f"it uses the YAML tag {exc.problem.split()[-1] if exc.problem else '?'}, which "
                              "could run code or read files on this machine; only Tavern's value matchers "
                              f"({', '.join(SAFE_TAGS[:4])}, ...) are allowed in tests not from your own file"
                              ) from None
    except yaml.YAMLError as exc:
        raise TavernFileError(f"it is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not docs:
        raise TavernFileError("it has no tests")
    for number, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict) or not isinstance(doc.get("test_name"), str) or not doc["test_name"].strip():
            raise TavernFileError(f"document {number} is not a Tavern test (a mapping with a test_name)")
        stages = doc.get("stages")
        if not isinstance(stages, list) or not stages:
            raise TavernFileError(f"test {doc['test_name']!r} has no stages")
    names = [d["test_name"] for d in docs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise TavernFileError(f"two tests are named {duplicate!r}; each test needs its own name")
    return docs


def check_untrusted(docs: list[dict[str, Any]]) -> None:
    """Refuse anything in tests not from the user's file that could run host code, read host files, read the
    environment or reach another host than the service under test. Raises TavernFileError with the reason."""
    for doc in docs:
        name = doc["test_name"]
        _only_keys(doc, TEST_KEYS, f"test {name!r}")
        for include in doc.get("includes") or []:
            if not isinstance(include, dict):
                raise TavernFileError(f"test {name!r} includes a file; only inline includes (variables) are allowed")
            _only_keys(include, INCLUDE_KEYS, f"test {name!r} include")
        for mark in doc.get("marks") or []:
            if not (isinstance(mark, str) and mark in SAFE_MARKS):
                raise TavernFileError(f"test {name!r} has the mark {mark!r}; only {sorted(SAFE_MARKS)} are allowed")
        for index, stage in enumerate(doc["stages"], start=1):
            where = f"test {name!r} stage {index}"
            if not isinstance(stage, dict):
                raise TavernFileError(f"{where} is not a mapping (stage references are not allowed)")
            _only_keys(stage, STAGE_KEYS, where)
            request, response = stage.get("request"), stage.get("response") or {}
            if not isinstance(request, dict) or not isinstance(response, dict):
                raise TavernFileError(f"{where} needs a request mapping and a response mapping")
            _only_keys(request, REQUEST_KEYS, where + " request")
            _only_keys(response, RESPONSE_KEYS, where + " response")
            if "verify" in request and not isinstance(request["verify"], bool):
                raise TavernFileError(f"{where} names a certificate file for verify; only true or false is allowed")
            url = request.get("url")
            if not isinstance(url, str) or not url.startswith(BASE_URL):
                raise TavernFileError(f"{where} requests {url!r}; tests may only call the service, with a url "
                                      "that starts with {base_url}")
            save = response.get("save")
            if save is not None and (not isinstance(save, dict) or set(save) - {"json", "headers"}):
                raise TavernFileError(f"{where} saves with {sorted(save) if isinstance(save, dict) else save!r}; "
                                      "only json and headers values may be saved")
        _no_host_access(doc, f"test {name!r}")


def _only_keys(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(mapping) - allowed)
    if extra:
        raise TavernFileError(f"{where} uses {', '.join(map(repr, extra))}, which is not allowed in tests not from "
                              f"your own file (allowed: {', '.join(sorted(allowed))})")


_HOST_FORMAT = re.compile(r"\{\s*tavern\s*\.")  # {tavern.env_vars.X} reads the host's environment


def _no_host_access(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ext" or key == "verify_response_with":
                raise TavernFileError(f"{where} uses {key}, which runs Python functions on this machine; only "
                                      "your own test file (--tests) may do that")
            _no_host_access(item, where)
    elif isinstance(value, list):
        for item in value:
            _no_host_access(item, where)
    elif isinstance(value, str) and _HOST_FORMAT.search(value):
        raise TavernFileError(f"{where} formats {value!r}, which reads this machine's environment")
    elif isinstance(value, _Tag):
        _no_host_access(value.value, where)


# -- writing Tavern from KubeVibe test cases ------------------------------------------------------------------------


def escape_format(value: Any) -> Any:
    """Tavern formats every string of a test: literal braces must be doubled."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, list):
        return [escape_format(v) for v in value]
    if isinstance(value, dict):
        return {escape_format(k) if isinstance(k, str) else k: escape_format(v) for k, v in value.items()}
    return value


def concrete_path(path: str) -> str:
    from kubevibe.stages.connect import concrete_path as connect_path

    return connect_path(path)


def case_to_test(case: TestCase, name: str) -> dict[str, Any]:
    """One Tavern test from a test case. The expected JSON is a subset (extra keys allowed, as Connect judges);
    `expected_contains` has no Tavern equivalent without running host code, so it is left out (noted)."""
    request: dict[str, Any] = {"url": BASE_URL + escape_format(concrete_path(case.path)),
                               "method": case.method.upper()}
    if case.body is not None:
        request["json"] = escape_format(case.body)
    response: dict[str, Any] = {"status_code": case.expected_status}
    if case.expected_json:
        response["json"] = escape_format(case.expected_json)
    return {"test_name": name, "strict": ["json:off"],
            "stages": [{"name": f"{case.method.upper()} {case.path}", "request": request, "response": response}]}


def cases_to_tavern(cases: list[TestCase], header: str = "") -> str:
    """A multi-document Tavern file from test cases, in their order (tests of a stateful service depend on it).

    Tavern runs each document as its own test; the cases keep their order because pytest collects in file order.
    """
    docs, seen = [], set()
    for number, case in enumerate(cases, start=1):
        name = case.name or f"{case.method.upper()} {case.path}"
        if name in seen:
            name = f"{name} ({number})"
        seen.add(name)
        docs.append(case_to_test(case, name))
    text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return (f"# {header}\n" if header else "") + text


def describe_stage(stage: dict[str, Any], base_url: str) -> tuple[str, str]:
    """(request, expected response) of a Tavern stage as short text for Fix evidence."""
    request = stage.get("request") or {}
    url = str(request.get("url", "")).replace(BASE_URL, base_url)
    text = f"{str(request.get('method', 'GET')).upper()} {url}"
    if "json" in request:
        text += " with JSON body " + json.dumps(request["json"], default=repr)[:800]
    response = stage.get("response") or {}
    expected = f"status {response.get('status_code', 200)}"
    if "json" in response:
        expected += ", JSON " + json.dumps(response["json"], default=repr)[:800]
    return text, expected
