"""The ingest POSTs' own ASGI path answers exactly as Starlette's stack would, and does what
its middleware does: the same handlers, load shedding, slow-body guard, error rendering, metrics."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from forgeline.bus.embedded import EmbeddedBus
from forgeline.clientip import ClientAddress
from forgeline.config import Settings
from services.gateway.app import INGEST_PATHS, GatewayApp, create_app
from services.gateway.errors import (
    ApiError,
    JSONResponse,
    render_api_error,
    render_http_exception,
    render_os_error,
    render_unexpected,
)
from services.gateway.middleware import Load, RequestMetrics
from services.gateway.slowbody import BodyGuard, BodyTimeouts, SlowBodies

pytestmark = pytest.mark.unit

Handler = Callable[[Request], Awaitable[Response]]
TIMEOUTS = BodyTimeouts(
    read_seconds=0.3,
    idle_seconds=1.0,
    min_bytes_per_second=100,
    slow_after_seconds=0.05,
    max_slow=4,
    max_slow_per_client=4,
)


def build(path: str, handler: Handler, *, fast: bool, max_in_flight: int = 100) -> GatewayApp:
    """The gateway's app shape around one POST route: with the ingest path, or without (Starlette's stack only)."""
    client_address = ClientAddress(())
    known = frozenset({path, "/health"})
    load = Load(max_in_flight)
    bodies = BodyGuard(TIMEOUTS, client_address)
    routes = [
        Route("/health", _health, methods=["GET"]),
        Route(path, handler, methods=["POST"]),
    ]
    return GatewayApp(
        ingest={path: handler} if fast else {},
        load=load,
        bodies=bodies,
        routes=routes,
        middleware=[
            Middleware(RequestMetrics, known_paths=known, max_in_flight=max_in_flight, load=load),
            Middleware(SlowBodies, timeouts=TIMEOUTS, client_address=client_address, guard=bodies),
        ],
        exception_handlers={
            ApiError: render_api_error,
            HTTPException: render_http_exception,
            OSError: render_os_error,
            Exception: render_unexpected,
        },
    )


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class Answer:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, error: BaseException | None):
        self.status, self.headers, self.body, self.error = status, headers, body, error

    def key(self) -> tuple[int, list[tuple[bytes, bytes]], bytes, str | None]:
        return self.status, self.headers, self.body, type(self.error).__name__ if self.error else None


async def call(
    app: GatewayApp,
    path: str,
    body: bytes = b"{}",
    method: str = "POST",
    pieces: list[bytes] | None = None,
) -> Answer:
    """One request at the ASGI level; ``pieces``: the body in parts, then nothing more (a stalled client)."""
    queue = list(pieces) if pieces is not None else [body]
    sent: list[Message] = []

    async def receive() -> Message:
        if queue:
            piece = queue.pop(0)
            return {"type": "http.request", "body": piece, "more_body": pieces is not None}
        await asyncio.Event().wait()  # no more body, no disconnect
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer t")],
        "client": ("192.0.2.1", 5000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    error: BaseException | None = None
    try:
        await app(scope, receive, send)
    except Exception as exc:
        error = exc
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start["headers"]), content, error)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_total(route: str, status: str) -> float:
    return sample("forgeline_gateway_requests_total", {"route": route, "status": status})


def rejections(route: str, reason: str) -> float:
    return sample("forgeline_gateway_rejections_total", {"route": route, "reason": reason})


def timed(route: str) -> float:
    return sample("forgeline_gateway_request_duration_seconds_count", {"route": route})


async def accepted(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return JSONResponse({"id": "e1", "got": body, "auth": request.headers.get("authorization")}, 201, {"X-Id": "e1"})


async def refused(request: Request) -> Response:
    raise ApiError(429, {"error": "Rate limit exceeded", "retry_after": 3}, "rate_limited", {"Retry-After": "3"})


async def not_found(request: Request) -> Response:
    raise HTTPException(404, "Not Found")


async def disk_full(request: Request) -> Response:
    raise OSError(errno.ENOSPC, "No space left on device")


async def broken(request: Request) -> Response:
    raise ValueError("a bug")


async def other_os_error(request: Request) -> Response:
    raise OSError(errno.EACCES, "Permission denied")


async def reads_body(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())}, 201)


@pytest.mark.parametrize("handler", [accepted, refused, not_found, disk_full, broken, other_os_error])
def test_the_ingest_path_answers_as_starlettes_stack_and_counts_the_same(handler: Handler) -> None:
    path = f"/test/fastpath/same/{handler.__name__}"

    async def scenario() -> None:
        answers = {}
        counted = {}
        for fast in (False, True):
            before = {s: requests_total(path, s) for s in ("201", "404", "429", "500", "503")}
            answers[fast] = await call(build(path, handler, fast=fast), path, b'{"a": 1}')
            counted[fast] = {s: requests_total(path, s) - before[s] for s in before}
        assert answers[True].key() == answers[False].key()
        assert counted[True] == counted[False]
        assert sum(counted[True].values()) == 1  # one count per request, under its status

    asyncio.run(scenario())


def test_refusals_keep_their_body_headers_and_rejection_label() -> None:
    path = "/test/fastpath/refused"
    before = rejections(path, "rate_limited"), timed(path)
    answer = asyncio.run(call(build(path, refused, fast=True), path))
    assert answer.status == 429
    assert orjson.loads(answer.body) == {"error": "Rate limit exceeded", "retry_after": 3}
    assert (b"retry-after", b"3") in answer.headers
    assert (b"content-type", b"application/json") in answer.headers
    assert (rejections(path, "rate_limited"), timed(path)) == (before[0] + 1, before[1] + 1)


def test_a_bug_is_a_json_500_and_still_raised_for_the_servers_log() -> None:
    path = "/test/fastpath/broken"
    answer = asyncio.run(call(build(path, broken, fast=True), path))
    assert (answer.status, orjson.loads(answer.body)) == (500, {"error": "Internal Server Error"})
    assert isinstance(answer.error, ValueError)


def test_other_methods_on_an_ingest_path_go_through_starlette() -> None:
    path = "/test/fastpath/method"
    before = requests_total(path, "405")
    answer = asyncio.run(call(build(path, accepted, fast=True), path, method="GET"))
    assert answer.status == 405
    assert orjson.loads(answer.body) == {"error": "Method Not Allowed"}
    assert requests_total(path, "405") == before + 1


def test_both_paths_share_one_in_flight_limit_and_probes_are_never_shed() -> None:
    path = "/test/fastpath/shed"
    release = asyncio.Event()
    reached = 0

    async def held(request: Request) -> Response:
        nonlocal reached
        reached += 1
        await release.wait()
        return JSONResponse({}, 201)

    app = build(path, held, fast=True, max_in_flight=2)

    async def scenario() -> None:
        before = requests_total(path, "503"), rejections(path, "overloaded")
        waiting = [asyncio.create_task(call(app, path)) for _ in range(2)]
        while reached < 2:
            await asyncio.sleep(0)
        assert app.load.in_flight == 2
        shed = await call(app, path)
        assert shed.status == 503
        assert (b"retry-after", b"1") in shed.headers
        assert orjson.loads(shed.body)["retry_after"] == 1
        assert reached == 2  # the shed request never reached the handler
        assert (requests_total(path, "503"), rejections(path, "overloaded")) == (before[0] + 1, before[1] + 1)
        assert (await call(app, "/health", method="GET")).status == 200
        release.set()
        assert [a.status for a in await asyncio.gather(*waiting)] == [201, 201]
        assert app.load.in_flight == 0
        assert (await call(app, path)).status == 201

    asyncio.run(scenario())


def test_a_stalled_body_on_the_ingest_path_is_cut_off_and_its_slot_released() -> None:
    path = "/test/fastpath/stalled"
    app = build(path, reads_body, fast=True)

    async def scenario() -> None:
        answer = await asyncio.wait_for(call(app, path, pieces=[b'{"a":']), 10)  # unguarded: it would wait for ever
        assert answer.status == 408
        assert orjson.loads(answer.body)["code"] == "body_timeout"
        assert (b"connection", b"close") in answer.headers
        assert (app.bodies.slow, app.bodies.slow_by_client, app.bodies.waiting) == (0, {}, set())
        assert app.load.in_flight == 0
        whole = await call(app, path, b"x" * 10)
        assert (whole.status, orjson.loads(whole.body)) == (201, {"size": 10})

    asyncio.run(scenario())


def test_json_response_headers_are_built_once_and_custom_ones_win() -> None:
    plain = JSONResponse({"a": 1}, 201)
    assert plain.body == b'{"a":1}'
    assert plain.raw_headers == [(b"content-length", b"7"), (b"content-type", b"application/json")]
    custom = JSONResponse([1], 200, {"Retry-After": "3", "Content-Type": "application/problem+json"})
    assert custom.raw_headers == [
        (b"retry-after", b"3"),
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"3"),
    ]
    assert custom.headers["retry-after"] == "3"


def test_every_ingest_post_of_the_gateway_takes_the_ingest_path(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, EmbeddedBus(tmp_path / "bus"))
    assert isinstance(app, GatewayApp)
    posts = [route for route in app.routes if isinstance(route, Route) and "POST" in (route.methods or ())]
    held: dict[str, Any] = {route.path: route.endpoint for route in posts}
    assert set(app.ingest) == INGEST_PATHS
    for path, endpoint in app.ingest.items():
        assert endpoint == held[path]  # the same handler the Route holds
    assert "/api/v1/ingest_events" in app.ingest and "/api/events" in app.ingest
