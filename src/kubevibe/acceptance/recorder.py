"""A pytest plugin loaded into the Tavern subprocess (`-p kubevibe.acceptance.recorder`): it writes every
request/response exchange, with the test it belongs to, to the JSONL file named by KUBEVIBE_ACCEPT_RECORD, so
Fix evidence can show the actual response next to the expected one. Our own code, not part of any test file."""

from __future__ import annotations

import json
import os
from typing import Any

BODY_LIMIT = 2000
_current: dict[str, Any] = {"test": None, "request": None}


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get("KUBEVIBE_ACCEPT_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=repr) + "\n")


def pytest_runtest_setup(item: Any) -> None:
    _current["test"] = item.name


def pytest_tavern_beta_before_every_request(request_args: Any) -> None:
    _current["request"] = {k: request_args.get(k) for k in ("method", "url", "json", "params")}


def pytest_tavern_beta_after_every_response(expected: Any, response: Any) -> None:  # noqa: ARG001
    try:
        text = response.text
        status = response.status_code
        content_type = response.headers.get("content-type")
    except Exception as exc:  # noqa: BLE001 - a response we cannot read is still worth a line
        text, status, content_type = f"(unreadable: {exc!r})", None, None
    _write({"test": _current["test"], "request": _current["request"], "status": status,
            "content_type": content_type, "body": text[:BODY_LIMIT]})
