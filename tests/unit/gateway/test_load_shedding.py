"""The gateway sheds load beyond its in-flight limit instead of queueing without bound."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from services.gateway.middleware import RequestMetrics

pytestmark = pytest.mark.unit

ROUTE = "/api/v1/ingest_events"


class SlowApp:
    """Answers 201 once ``release`` is set; counts the requests that reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reached = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached += 1
        if scope["path"] == ROUTE:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: RequestMetrics, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    start, body = sent[0], sent[1]
    return start["status"], dict(start["headers"]), body["body"]


def test_requests_beyond_the_limit_get_503_with_retry_after_and_probes_still_answer() -> None:
    asyncio.run(_scenario())


async def _scenario() -> None:
    inner = SlowApp()
    app = RequestMetrics(inner, frozenset({ROUTE, "/health"}), max_in_flight=2)
    held = [asyncio.create_task(call(app, ROUTE)) for _ in range(2)]
    while inner.reached < 2:
        await asyncio.sleep(0)

    status, headers, body = await call(app, ROUTE)
    assert status == 503
    assert headers[b"retry-after"] == b"1"
    assert orjson.loads(body)["retry_after"] == 1
    assert inner.reached == 2  # the shed request never reached the route

    assert (await call(app, "/health"))[0] == 201  # probes are never shed

    inner.release.set()
    assert [result[0] for result in await asyncio.gather(*held)] == [201, 201]
    assert app.in_flight == 0
    assert (await call(app, ROUTE))[0] == 201  # capacity is back once the others finished
