"""Waiting between polls: delays that grow from `first` by `factor` up to `maximum`, never past a deadline.

The shape every "check, then wait a little longer, until the deadline" loop shares (readiness of a deployment,
probing a service): the loop does its check, then `if not backoff.wait(): give up`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    deadline: float  # a clock() value
    first: float
    maximum: float
    factor: float = 1.5
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep  # tests pass a recorder to stay fast
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay = self.first

    def wait(self, now: float | None = None) -> bool:
        """Sleep the next delay, cut to what is left before the deadline, and return True; once the deadline has
        passed, return False without sleeping. now: the caller's clock() reading, if it has one."""
        now = self.clock() if now is None else now
        if now >= self.deadline:
            return False
        self.sleep(min(self.delay, self.deadline - now))
        self.delay = min(self.delay * self.factor, self.maximum)
        return True
