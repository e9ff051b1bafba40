"""Per-worker circuit breaker: stop sending to a failing worker, probe it again later."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

from podium.config import BreakerPolicy

BreakerState = Literal["closed", "open", "half_open"]


class Breaker(Protocol):
    def allow(self) -> bool:
        """May a call go to the worker now? In half-open state only one probe is let through."""

    def record_success(self) -> None: ...

    def record_failure(self) -> None: ...

    @property
    def state(self) -> BreakerState: ...


class CircuitBreaker:
    """In-process breaker. ``failures`` consecutive failures open it; after ``reset_after``
    seconds one probe is allowed (half-open); its success closes it, its failure reopens it."""

    def __init__(
        self, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._policy.reset_after:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._policy.failures:
            self._opened_at = self._clock()
        self._probing = False
