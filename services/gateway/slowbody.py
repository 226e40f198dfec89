"""Slow request bodies: how long one may take, and how many may be slow at once.

A body trickled a byte a second would otherwise hold its request (an in-flight slot, a
connection, what it buffered) for ever. This pure ASGI middleware wraps ``receive``:

- the whole body must arrive within ``read_seconds`` of the request, plus one second per
  ``min_bytes_per_second`` received — a large upload at a reasonable rate always finishes,
  a trickle is cut off — and no wait for the next piece may exceed ``idle_seconds``;
  otherwise 408 and the connection is closed;
- a body still arriving ``slow_after_seconds`` after the request is *slow*: at most
  ``max_slow`` of those at once, ``max_slow_per_client`` per source address (forgeline.clientip);
  one more is refused with 503 and Retry-After, so slow clients cannot take every slot
  while fast ones (almost every request: a body in one piece) never wait for one.

Waiting only counts while the app asks for the body: time the app spends elsewhere is
not the client's. Headers have their own deadline (protocol.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.clientip import ClientAddress
from services.gateway.errors import ApiError


@dataclass(frozen=True, slots=True)
class BodyTimeouts:
    read_seconds: float
    idle_seconds: float
    min_bytes_per_second: int
    slow_after_seconds: float
    max_slow: int
    max_slow_per_client: int


class BodyGuard:
    """The slow-body state of one app: slow slots by source, and the bodies being waited for.
    The middleware below and the ingest path (fastpath.py) share one."""

    # How often waiting bodies are checked: one shared timer, not one per request (a timer
    # per receive cost more than the rest of this middleware); deadlines hold to this.
    SWEEP_SECONDS = 0.1

    def __init__(self, timeouts: BodyTimeouts, client_address: ClientAddress) -> None:
        self.timeouts = timeouts
        self.client_address = client_address
        self.slow = 0
        self.slow_by_client: dict[str, int] = {}
        self.waiting: set[_Body] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None

    def body(self, scope: Scope, receive: Receive) -> _Body:
        """The request's guarded body: read it with ``.receive``, ``.release()`` once answered."""
        return _Body(self, scope, receive)

    def wait_started(self, body: _Body) -> None:
        self.waiting.add(body)
        if self._sweep is None or self._sweep_loop is not body.loop:  # (a test may bring a new loop)
            self._sweep_loop = body.loop
            self._sweep = body.loop.call_later(self.SWEEP_SECONDS, self._check_waiting)

    def _check_waiting(self) -> None:
        self._sweep = None
        if not self.waiting or self._sweep_loop is None:
            return
        now = self._sweep_loop.time()
        for body in list(self.waiting):
            body.check(now)
        self._sweep = self._sweep_loop.call_later(self.SWEEP_SECONDS, self._check_waiting)


class SlowBodies:
    def __init__(
        self, app: ASGIApp, timeouts: BodyTimeouts, client_address: ClientAddress, guard: BodyGuard | None = None
    ) -> None:
        self.app = app
        self.guard = guard or BodyGuard(timeouts, client_address)

    @property
    def slow(self) -> int:
        return self.guard.slow

    @property
    def slow_by_client(self) -> dict[str, int]:
        return self.guard.slow_by_client

    @property
    def waiting(self) -> set[_Body]:
        return self.guard.waiting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(self.guard, scope, receive)
        try:
            await self.app(scope, body.receive, send)
        finally:
            body.release()


class _Body:
    """One request's body as it arrives; holds a slow slot from when it turns slow until it ends."""

    __slots__ = (
        "guard",
        "scope",
        "inner",
        "loop",
        "started",
        "slow_at",
        "received",
        "complete",
        "slot",
        "task",
        "wait_until",
        "idle_until",
        "cut",
    )

    def __init__(self, guard: BodyGuard, scope: Scope, receive: Receive) -> None:
        self.guard = guard
        self.scope = scope
        self.inner = receive
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.slow_at = self.started + guard.timeouts.slow_after_seconds
        self.received = 0
        self.complete = False
        self.slot: str | None = None  # the source address whose slow slot this body holds
        self.task: asyncio.Task[object] | None = None
        self.wait_until = 0.0
        self.idle_until = 0.0
        self.cut: ApiError | None = None  # why the wait was ended (the task cancelled)

    async def receive(self) -> Message:
        if self.complete:  # e.g. a wait for the client's disconnect after the body: not ours to time
            return await self.inner()
        t = self.guard.timeouts
        now = self.loop.time()
        if self.slot is None and now >= self.slow_at and not self._take_slot():
            raise _too_many_slow()
        self.idle_until = now + t.idle_seconds
        self.wait_until = min(self.idle_until, self.started + t.read_seconds + self.received / t.min_bytes_per_second)
        self.task = asyncio.current_task()
        self.guard.wait_started(self)
        try:
            message = await self.inner()
        except asyncio.CancelledError:
            if self.cut is None or self.task is None:
                raise  # not ours: the caller is being cancelled
            self.task.uncancel()
            raise self.cut from None
        finally:
            self.guard.waiting.discard(self)
        self.received += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True  # the last piece, or a disconnect
            self.release()
        return message

    def check(self, now: float) -> None:
        """Called while this body is waiting: end the wait past its deadline, or when it turns
        slow and no slow slot is left."""
        if self.cut is not None or self.task is None:
            return
        if now >= self.wait_until:
            self.cut = _too_slow(self.idle_until <= self.wait_until, self.guard.timeouts)
        elif self.slot is None and now >= self.slow_at and not self._take_slot():
            self.cut = _too_many_slow()
        else:
            return
        self.task.cancel()

    def _take_slot(self) -> bool:
        guard = self.guard
        source = guard.client_address.of(Request(self.scope))
        held = guard.slow_by_client.get(source, 0)
        if guard.slow >= guard.timeouts.max_slow or held >= guard.timeouts.max_slow_per_client:
            return False
        guard.slow += 1
        guard.slow_by_client[source] = held + 1
        self.slot = source
        return True

    def release(self) -> None:
        if self.slot is None:
            return
        guard, source, self.slot = self.guard, self.slot, None
        guard.slow -= 1
        held = guard.slow_by_client.pop(source) - 1
        if held:
            guard.slow_by_client[source] = held


def _too_slow(idle: bool, t: BodyTimeouts) -> ApiError:
    why = f"nothing arrived for {t.idle_seconds:g} s" if idle else "it arrived too slowly"
    return ApiError(
        408,
        {"error": f"Request Timeout: the request body did not arrive in time ({why})", "code": "body_timeout"},
        reason="body_timeout",
        headers={"Connection": "close"},  # the rest of the body is never read
    )


def _too_many_slow() -> ApiError:
    return ApiError(
        503,
        {
            "error": "Service Unavailable: too many slow request bodies at once; retry later",
            "code": "too_many_slow_bodies",
            "retry_after": 1,
        },
        reason="slow_bodies",
        headers={"Connection": "close", "Retry-After": "1"},
    )
