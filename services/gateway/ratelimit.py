"""Fixed-window rate limits, in memory, per gateway replica.

Logister counts requests per token and endpoint in fixed windows (seed "Rate limits");
we do the same so that its clients see the same headers and reset times. With several
gateway replicas each enforces its own share; a shared store is a later concern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from forgeline.clock import Clock


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window ends
    retry_after: int  # seconds until then (at least 1)
    window_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class FixedWindowLimiter:
    # Expired windows are dropped once the table holds this many keys: an attacker
    # cycling source addresses cannot grow memory without bound.
    _PRUNE_AT = 10_000

    def __init__(self, limit: int, window_seconds: int, clock: Clock) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    def _window(self, now: float) -> int:
        return int(now // self.window_seconds)

    def hit(self, key: str, cost: int = 1) -> Decision:
        """Count ``cost`` requests for ``key`` (a batch counts each envelope) if they fit.

        A refused hit consumes nothing: a batch too large for what is left of the window
        is refused whole, and a smaller one may still pass.
        """
        now = self._clock.time()
        window = self._window(now)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
        if count + cost > self.limit:
            decision = self._decision(window, count, now)
            return replace(decision, allowed=False)
        count += cost
        if len(self._windows) >= self._PRUNE_AT:
            self._prune(window)
        self._windows[key] = (window, count)
        return self._decision(window, count, now)

    def peek(self, key: str) -> Decision:
        """The state for ``key`` without counting a request."""
        now = self._clock.time()
        window = self._window(now)
        start, count = self._windows.get(key, (window, 0))
        return self._decision(window, count if start == window else 0, now)

    def _decision(self, window: int, count: int, now: float) -> Decision:
        reset_at = (window + 1) * self.window_seconds
        return Decision(
            allowed=count <= self.limit,
            limit=self.limit,
            remaining=max(self.limit - count, 0),
            reset_at=reset_at,
            retry_after=max(1, math.ceil(reset_at - now)),
            window_seconds=self.window_seconds,
        )

    def _prune(self, window: int) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
