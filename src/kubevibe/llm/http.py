"""Retry and error policy shared by the HTTP backends (Ollama, OpenAI-compatible).

Only failures to *connect* are retried: the server may still be starting, and a refused connection costs
nothing. A read timeout during a long generation, or any HTTP error, is an answer about this call: retrying
would only double the wait (or hammer a server that already said no).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from kubevibe.errors import LLMUnavailable
from kubevibe.llm.base import LLMCallError

T = TypeVar("T")

# Connecting is quick when the server is up; only the generation itself may take the whole llm_timeout.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    wait_initial: float = 0.5  # seconds before the 2nd attempt, doubling after
    wait_max: float = 4.0
    sleep: Callable[[float], None] = time.sleep  # tests pass a recorder to stay fast


def connect_timeout(llm_timeout: float) -> float:
    return min(llm_timeout, CONNECT_TIMEOUT_S)


def is_connect_failure(exc: BaseException) -> bool:
    """True when the request never reached the server: refused, DNS failure, connect timeout.

    httpx (used by the ollama client) and httpx2 (used by the openai client) name these classes alike, and
    the openai client wraps them as the `__cause__` of its own error, so we match the class name on both
    levels. The ollama client re-raises httpx.ConnectError as a bare builtin ConnectionError. We do not walk
    further down the chain: a ConnectionResetError under a read error means the server died mid-answer.
    """
    for err in (exc, exc.__cause__):
        if err is not None and type(err).__name__ in ("ConnectError", "ConnectTimeout"):
            return True
    return isinstance(exc, ConnectionError)


def with_connect_retries(call: Callable[[], T], policy: RetryPolicy, unavailable: LLMUnavailable) -> T:
    """Run `call`, retrying connection failures only; raise `unavailable` once the attempts are used up."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.wait_initial, max=policy.wait_max),
        retry=retry_if_exception(is_connect_failure),
        sleep=policy.sleep,
        reraise=True,
    )
    try:
        return retrying(call)
    except Exception as exc:
        if is_connect_failure(exc):
            raise unavailable from exc
        raise


def status_error(status: int, body: str) -> LLMCallError:
    """One sentence for an HTTP error: the status and the start of the body, on one line."""
    excerpt = " ".join(body.split())[:200].rstrip(".") or "(empty body)"
    return LLMCallError(f"The server answered HTTP {status}: {excerpt}.")


def timeout_error(seconds: float) -> LLMCallError:
    return LLMCallError(f"The model did not answer within {seconds:.3g} s (the call's deadline: "
                        "KUBEVIBE_LLM_TIMEOUT, or what is left of TIMEOUT).")


def call_with_deadline(call: Callable[[], T], seconds: float, on_timeout: Callable[[], Exception]) -> T:
    """Run a blocking client call, but give up after `seconds` in total, whatever the server does.

    The client libraries only bound each read, so a server that never answers (or sends a byte every few
    seconds) would hold the call, and the run, past every limit. The call runs in a daemon worker thread; at the
    deadline the caller gets `on_timeout()` and the worker is abandoned (the client that ran it must not be used
    again: callers make a fresh one). A signal still interrupts the wait in the main thread.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="kubevibe-llm-call", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise on_timeout()
    if "error" in box:
        raise box["error"]
    return box["value"]
