"""The one retry loop of the processors: back off and try again until it works.

Nothing is committed while a call is being retried, so a stuck sink stalls its consumer
rather than losing data. ``retriable`` says which failures are worth another try (the rest
are raised at once); ``give_up(attempt)`` lets a stopping processor leave a dead sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from forgeline.telemetry.metrics import PROCESSOR_RETRIES

log = logging.getLogger(__name__)
T = TypeVar("T")


async def backoff(attempt: int, cap_s: float = 10.0) -> None:
    await asyncio.sleep(min(0.1 * 2**attempt, cap_s))


def _never(attempt: int) -> bool:
    return False


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    service: str,
    reason: str,
    retriable: Callable[[Exception], bool],
    give_up: Callable[[int], bool] = _never,
    what: str = "",
) -> T:
    """``await call()`` until it returns; a retriable failure counts a retry (``reason``) and backs off."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as err:
            if not retriable(err) or give_up(attempt):
                raise
            PROCESSOR_RETRIES.labels(service=service, reason=reason).inc()
            log.warning(
                f"{reason} call failed; retrying",
                extra={"service": service, "call": what, "error": repr(err)[:500], "attempt": attempt},
            )
            await backoff(attempt)
            attempt += 1
