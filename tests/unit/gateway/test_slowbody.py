"""SlowBodies at the ASGI level: deadlines, the rate allowance, slots, and whose cancellation is whose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Message, Receive, Scope, Send

from forgeline.clientip import ClientAddress
from services.gateway.errors import ApiError
from services.gateway.slowbody import BodyTimeouts, SlowBodies

pytestmark = pytest.mark.unit

SCOPE: Scope = {"type": "http", "client": ("192.0.2.1", 5000), "headers": []}


def _guard(app: Callable[[Scope, Receive, Send], Awaitable[None]], **overrides: float) -> SlowBodies:
    values = {
        "read_seconds": 0.3,
        "idle_seconds": 1.0,
        "min_bytes_per_second": 100,
        "slow_after_seconds": 0.05,
        "max_slow": 4,
        "max_slow_per_client": 4,
        **overrides,
    }
    return SlowBodies(
        app,
        BodyTimeouts(
            read_seconds=values["read_seconds"],
            idle_seconds=values["idle_seconds"],
            min_bytes_per_second=int(values["min_bytes_per_second"]),
            slow_after_seconds=values["slow_after_seconds"],
            max_slow=int(values["max_slow"]),
            max_slow_per_client=int(values["max_slow_per_client"]),
        ),
        ClientAddress(()),
    )


class Reader:
    """An app that reads the whole body and remembers how it ended."""

    def __init__(self) -> None:
        self.body = b""
        self.error: ApiError | None = None
        self.took = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        try:
            while True:
                message = await receive()
                self.body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except ApiError as err:
            self.error = err
        self.took = time.monotonic() - started


def _client(pieces: list[bytes], every_s: float) -> Receive:
    queue: asyncio.Queue[Message] = asyncio.Queue()

    async def feed() -> None:
        for n, piece in enumerate(pieces):
            await asyncio.sleep(every_s)
            await queue.put({"type": "http.request", "body": piece, "more_body": n < len(pieces) - 1})

    asyncio.get_running_loop().create_task(feed())
    return queue.get


async def _nothing(message: Message) -> None:
    return None


def test_a_body_sent_at_the_minimum_rate_may_take_longer_than_the_deadline() -> None:
    async def go() -> Reader:
        reader = Reader()
        # 50 bytes every 0.1 s is 500 B/s against a 100 B/s minimum: 1 s in all, deadline 0.3 s.
        await _guard(reader)(SCOPE, _client([b"x" * 50] * 10, 0.1), _nothing)
        return reader

    reader = asyncio.run(go())
    assert reader.error is None
    assert reader.body == b"x" * 500
    assert reader.took > 0.9


def test_a_trickle_is_cut_at_the_deadline_and_its_slot_is_released() -> None:
    async def go() -> tuple[Reader, SlowBodies]:
        reader = Reader()
        guard = _guard(reader, min_bytes_per_second=10_000)  # (the rate allowance: negligible here)
        await guard(SCOPE, _client([b"x"] * 100, 0.02), _nothing)
        return reader, guard

    reader, guard = asyncio.run(go())
    assert reader.error is not None and reader.error.status == 408
    assert reader.error.headers["Connection"] == "close"
    assert 0.3 <= reader.took < 0.6
    assert (guard.slow, guard.slow_by_client, guard.waiting) == (0, {}, set())


def test_idle_timeout_names_the_gap() -> None:
    async def go() -> Reader:
        reader = Reader()
        await _guard(reader, read_seconds=5, idle_seconds=0.2)(SCOPE, _client([b"x", b"y"], 0.5), _nothing)
        return reader

    reader = asyncio.run(go())
    assert reader.error is not None and reader.error.status == 408
    assert "nothing arrived for 0.2 s" in reader.error.body["error"]


def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    async def go() -> list[Message]:
        seen: list[Message] = []
        queue: asyncio.Queue[Message] = asyncio.Queue()
        queue.put_nowait({"type": "http.request", "body": b"{}", "more_body": False})

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(await receive())
            seen.append(await receive())  # a streaming response listening for the disconnect

        async def disconnect_later() -> None:
            await asyncio.sleep(0.5)  # past the 0.3 s deadline and the 0.2 s idle bound
            queue.put_nowait({"type": "http.disconnect"})

        task = asyncio.get_running_loop().create_task(disconnect_later())
        await _guard(app, idle_seconds=0.2)(SCOPE, queue.get, _nothing)
        await task
        return seen

    assert [m["type"] for m in asyncio.run(go())] == ["http.request", "http.disconnect"]


def test_a_cancellation_that_is_not_ours_stays_a_cancellation() -> None:
    async def go() -> SlowBodies:
        reader = Reader()
        guard = _guard(reader, read_seconds=10, idle_seconds=10)
        task = asyncio.get_running_loop().create_task(guard(SCOPE, _client([b"x"] * 100, 0.02), _nothing))
        await asyncio.sleep(0.2)  # slow by now: it holds a slot
        assert guard.slow == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reader.error is None
        return guard

    guard = asyncio.run(go())
    assert (guard.slow, guard.slow_by_client, guard.waiting) == (0, {}, set())


def test_bodies_over_the_slow_bound_are_refused_with_503() -> None:
    async def go() -> list[Reader]:
        readers = [Reader() for _ in range(3)]

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await readers[scope["n"]](scope, receive, send)

        guard = _guard(app, max_slow=4, max_slow_per_client=2, read_seconds=0.4)
        await asyncio.gather(*(guard({**SCOPE, "n": n}, _client([b"x"] * 100, 0.02), _nothing) for n in range(3)))
        return readers

    statuses = sorted(r.error.status for r in asyncio.run(go()) if r.error is not None)
    assert statuses == [408, 408, 503]
